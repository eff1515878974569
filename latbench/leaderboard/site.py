"""The leaderboard's static page: ``leaderboard/site/index.html``, one self-contained file.

No external assets (no CDN, fonts or scripts from the network): inline CSS, vanilla JS and inline
SVG, so the page works from ``file://`` and offline. The per-task, per-shot numbers of every entry
are embedded as a JSON blob; the page builds from them

- a ranking table per suite and shot count (click a header to sort; rank, method, Spearman ± std
  over trials, 95 % bootstrap interval over tasks, Kendall, MAPE, ±10 %, time, status),
- filters by tier and by space that recompute every column over the chosen tasks,
- a line plot of mean Spearman vs k per method, and a methods x tasks heatmap of Spearman.

With all tasks selected the rank, interval and std are the ones :func:`latbench.leaderboard.rank`
computed (the numbers of ``leaderboard/README.md``); with a filter the page recomputes them with the
same rules (seeded bootstrap over the chosen tasks, rank = 1 + methods whose interval lies entirely
above). Entries are untrusted input: strings reach the page only through ``html.escape`` (the
no-script fallback) or ``textContent`` (the script), and the JSON blob has ``<``, ``>`` and ``&``
escaped so it cannot close its ``<script>`` element.

Self-test hook for headless browsers: opening ``index.html#selftest`` makes the script click the
Spearman header twice, then untick the nb201 space filter, and write the row orders and the
filtered Spearman cells into ``<pre id="selftest">`` as JSON.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from latbench.io import write_text
from latbench.leaderboard import board as lb
from latbench.tasks.spec import list_tasks

_METRICS = ("spearman", "kendall", "mape", "acc10")


def _group(task) -> str:
    return task.tier or task.kind


def page_data(entries: list) -> dict:
    """The JSON blob the page's script reads (also handy for tests)."""
    all_tasks = list_tasks()
    suites = {}
    for suite, kind in lb.SUITES.items():
        tasks = [t for t in all_tasks if t.kind == kind]
        suites[suite] = {
            "tasks": [{"id": t.id, "group": _group(t), "space": t.space} for t in tasks],
            "groups": list(dict.fromkeys(_group(t) for t in tasks)),
            "spaces": list(dict.fromkeys(t.space for t in tasks)),
        }
    out_entries, ranked = [], {}
    for e in entries:
        per_k: dict[str, dict] = {}
        for r in e.results:
            trials = sorted(r.trials, key=lambda t: t.trial)
            per_k.setdefault(str(r.shots), {})[r.task] = {
                **{m: r.aggregate[m]["mean"] for m in _METRICS},
                "trials": [t.mean["spearman"] for t in trials],
            }
        out_entries.append({
            "id": e.entry_id, "method": e.method.name, "version": e.method.version, "status": e.status,
            "protocol": e.protocol, "predictions": e.protocol == lb.PREDICTIONS_PROTOCOL, "suite": e.suite,
            "seconds": e.seconds, "date": e.date, "k": per_k,
        })
    for suite in lb.SUITES:
        for k in lb.SUITE_SHOTS:
            rows = lb.rank(entries, suite, k)
            if rows:
                ranked.setdefault(suite, {})[str(k)] = {
                    r["entry"]: {"rank": r["rank"], "ci": list(r["ci"]), "std": r["std"]} for r in rows
                }
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "shots": list(lb.SUITE_SHOTS),
        "suites": suites, "entries": out_entries, "ranked": ranked,
    }


def _json_for_script(data: dict) -> str:
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _noscript_tables(entries: list) -> str:
    """Plain HTML tables of the unfiltered rankings, for readers without JavaScript."""
    e = html.escape
    parts = []
    for suite in lb.SUITES:
        for k in lb.SUITE_SHOTS:
            rows = lb.rank(entries, suite, k)
            if not rows:
                continue
            parts.append(f"<h3>{e(suite)} suite, k = {k}</h3><table><tr><th>rank</th><th>method</th><th>Spearman</th>"
                         "<th>95 % CI</th><th>Kendall</th><th>MAPE %</th><th>±10 %</th><th>time (s)</th><th>status</th></tr>")
            for r in rows:
                parts.append(
                    f"<tr><td>{r['rank']}</td><td>{e(r['method'])}</td><td>{r['spearman']:.3f} ± {r['std']:.3f}</td>"
                    f"<td>[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]</td><td>{r['kendall']:.3f}</td><td>{r['mape']:.1f}</td>"
                    f"<td>{r['acc10']:.2f}</td><td>{e(lb._time_cell(r))}</td><td>{e(lb._status_cell(r))}</td></tr>")
            parts.append("</table>")
    return "".join(parts) or "<p>No entries yet.</p>"


def render_html(entries: list) -> str:
    data = page_data(entries)
    return (_TEMPLATE.replace("__DATA__", _json_for_script(data))
            .replace("__NOSCRIPT__", _noscript_tables(entries))
            .replace("__GENERATED__", html.escape(data["generated"]))
            .replace("__COUNT__", str(len(entries))))


def render_site(entries: list, out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` atomically (temp file + rename) and return its path."""
    return write_text(Path(out_dir) / "index.html", render_html(entries))


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>latbench leaderboard</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1200px; padding: 0 1rem; color: #1d2330; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
h2 { font-size: 1.15rem; margin-top: 1.8rem; }
.sub { color: #5b6475; font-size: .9rem; }
.controls { display: flex; flex-wrap: wrap; gap: 1.2rem; align-items: center; margin: 1rem 0; padding: .6rem .8rem; background: #f4f6fa; border-radius: 6px; }
.controls fieldset { border: none; padding: 0; margin: 0; display: flex; gap: .5rem; align-items: center; }
.controls legend { float: left; font-weight: 600; margin-right: .4rem; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid #e1e5ee; text-align: right; white-space: nowrap; }
th { background: #eef1f7; position: sticky; top: 0; }
#ranking th { cursor: pointer; user-select: none; }
#ranking th:hover { background: #dde3ef; }
td.method, th.method { text-align: left; }
td.method { max-width: 22rem; overflow: hidden; text-overflow: ellipsis; }
.tied { color: #8a5a00; font-size: .75rem; margin-left: .2rem; }
.verified { color: #1b7a32; font-weight: 600; }
.unverified { color: #8a8f99; }
#heatmap td { text-align: center; min-width: 2.2rem; padding: .3rem .3rem; font-variant-numeric: tabular-nums; }
#heatmap td.method { text-align: left; padding-right: .6rem; }
#heatmap th.task { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: 500; }
#plot text { font-size: 12px; fill: #1d2330; }
.note { color: #5b6475; font-size: .85rem; max-width: 60rem; }
.empty { color: #8a8f99; padding: 1rem 0; }
</style>
</head>
<body>
<h1>latbench leaderboard</h1>
<div class="sub">Few-shot latency prediction on unseen hardware. __COUNT__ entries; generated __GENERATED__.</div>
<p class="note">Ranked by mean Spearman &rho; over the chosen tasks (&plusmn; std over trials; 95 % bootstrap interval over tasks).
A method's rank is 1 + the number of methods whose interval lies entirely above its own: methods whose intervals overlap share a rank (marked &ldquo;tied&rdquo;).
Click a column header to sort. The tier and space filters recompute every column over the chosen tasks.</p>
<noscript>__NOSCRIPT__</noscript>
<div class="controls">
  <label>Suite <select id="suite"></select></label>
  <label>k (shots) <select id="shots"></select></label>
  <fieldset id="groups"><legend>Tier</legend></fieldset>
  <fieldset id="spaces"><legend>Space</legend></fieldset>
  <span id="taskcount" class="sub"></span>
</div>
<table id="ranking">
  <thead><tr>
    <th data-key="rank">rank</th><th data-key="method" class="method">method</th><th data-key="spearman">Spearman</th>
    <th data-key="ci">95 % CI</th><th data-key="kendall">Kendall</th><th data-key="mape">MAPE %</th>
    <th data-key="acc10">&plusmn;10 %</th><th data-key="seconds">time (s)</th><th data-key="status">status</th>
  </tr></thead>
  <tbody></tbody>
</table>
<div id="ranking-empty" class="empty" hidden>No entries for this suite and filter.</div>
<h2>Mean Spearman vs k</h2>
<div id="plot"></div>
<h2>Per-task Spearman (<span id="heatk"></span>)</h2>
<div style="overflow-x:auto"><table id="heatmap"></table></div>
<pre id="selftest" hidden></pre>
<script type="application/json" id="board-data">__DATA__</script>
<script>
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("board-data").textContent);
  const HIGHER = { spearman: true, kendall: true, acc10: true, ci: true, rank: false, method: false, mape: false, seconds: false, status: false };
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const state = { suite: null, k: String(DATA.shots[1] || DATA.shots[0]), sortKey: "rank", sortDir: 1, groups: {}, spaces: {} };
  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => { const n = document.createElement(tag); if (text !== undefined) n.textContent = text; if (cls) n.className = cls; return n; };

  function mean(a) { return a.reduce((s, x) => s + x, 0) / a.length; }
  function std(a) { const m = mean(a); return Math.sqrt(mean(a.map((x) => (x - m) * (x - m)))); }
  function mulberry32(seed) {
    return function () {
      seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function percentile(sorted, p) {  // numpy's default (linear) interpolation
    const pos = (sorted.length - 1) * p / 100, lo = Math.floor(pos), hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }
  function bootstrap(values) {
    const rnd = mulberry32(0), n = values.length, draws = [];
    for (let b = 0; b < 1000; b++) { let s = 0; for (let i = 0; i < n; i++) s += values[Math.floor(rnd() * n)]; draws.push(s / n); }
    draws.sort((a, b) => a - b);
    return [percentile(draws, 2.5), percentile(draws, 97.5)];
  }

  function suiteTasks() {
    const s = DATA.suites[state.suite];
    return s.tasks.filter((t) => state.groups[t.group] && state.spaces[t.space]).map((t) => t.id);
  }
  function allSelected() {
    const s = DATA.suites[state.suite];
    return s.groups.every((g) => state.groups[g]) && s.spaces.every((x) => state.spaces[x]);
  }
  function entriesOf(suite) { return DATA.entries.filter((e) => e.suite === suite); }

  // One row per entry of the suite at shot count k over the chosen tasks (null if it has none).
  function summarize(e, k, tasks) {
    const blocks = tasks.map((t) => (e.k[k] || {})[t]).filter((b) => b);
    if (!blocks.length) return null;
    const nTrials = Math.min(...blocks.map((b) => b.trials.length));
    const perTrial = [];
    for (let i = 0; i < nTrials; i++) perTrial.push(mean(blocks.map((b) => b.trials[i])));
    const sp = blocks.map((b) => b.spearman);
    return { entry: e, method: e.method, status: e.status, predictions: e.predictions, seconds: e.seconds,
             spearman: mean(sp), std: std(perTrial), ci: bootstrap(sp), kendall: mean(blocks.map((b) => b.kendall)),
             mape: mean(blocks.map((b) => b.mape)), acc10: mean(blocks.map((b) => b.acc10)), n: blocks.length };
  }
  function rows(k) {
    const tasks = suiteTasks();
    const out = entriesOf(state.suite).map((e) => summarize(e, k, tasks)).filter((r) => r);
    const official = allSelected() && DATA.ranked[state.suite] && DATA.ranked[state.suite][k];
    for (const r of out) {
      const pre = official && official[r.entry.id];
      if (pre) { r.ci = pre.ci; r.std = pre.std; }
    }
    for (const r of out) {
      const pre = official && official[r.entry.id];
      r.rank = pre ? pre.rank : 1 + out.filter((p) => p !== r && p.ci[0] > r.ci[1]).length;
    }
    for (const r of out) r.tied = out.some((p) => p !== r && p.rank === r.rank);
    return out;
  }

  function sortValue(r, key) {
    if (key === "ci") return r.ci[0];
    if (key === "seconds") return r.predictions ? Infinity : r.seconds;
    return r[key];
  }
  function sortRows(list) {
    const key = state.sortKey, dir = state.sortDir;
    return list.slice().sort((a, b) => {
      const x = sortValue(a, key), y = sortValue(b, key);
      const c = typeof x === "string" ? x.localeCompare(y) : (x < y ? -1 : x > y ? 1 : 0);
      return c !== 0 ? dir * c : (b.spearman - a.spearman) || a.method.localeCompare(b.method);
    });
  }

  function renderTable(list) {
    const body = $("ranking").tBodies[0];
    body.replaceChildren();
    $("ranking-empty").hidden = list.length > 0;
    for (const r of sortRows(list)) {
      const tr = document.createElement("tr");
      tr.setAttribute("data-entry", r.entry.id);
      tr.setAttribute("data-method", r.method);
      const rank = el("td", String(r.rank));
      if (r.tied) rank.appendChild(el("span", "tied", "tied"));
      tr.appendChild(rank);
      const m = el("td", r.method, "method");
      m.title = r.entry.id + (r.entry.version && r.entry.version !== "unversioned" ? " (version " + r.entry.version + ")" : "");
      tr.appendChild(m);
      tr.appendChild(el("td", r.spearman.toFixed(3) + " \u00b1 " + r.std.toFixed(3)));
      tr.appendChild(el("td", "[" + r.ci[0].toFixed(3) + ", " + r.ci[1].toFixed(3) + "]"));
      tr.appendChild(el("td", r.kendall.toFixed(3)));
      tr.appendChild(el("td", r.mape.toFixed(1)));
      tr.appendChild(el("td", r.acc10.toFixed(2)));
      tr.appendChild(el("td", r.predictions ? "n/a" : r.seconds.toFixed(0)));
      tr.appendChild(el("td", r.status + (r.predictions ? " (predictions)" : ""), r.status));
      body.appendChild(tr);
    }
    for (const th of $("ranking").tHead.rows[0].cells) {
      const key = th.getAttribute("data-key");
      th.textContent = th.textContent.replace(/ [\u25b2\u25bc]$/, "");
      if (key === state.sortKey) th.textContent += state.sortDir === 1 ? " \u25b2" : " \u25bc";
    }
  }

  function svg(tag, attrs, text) {
    const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function renderPlot() {
    const tasks = suiteTasks(), shots = DATA.shots.map(String);
    const series = entriesOf(state.suite).map((e) => ({ e, pts: shots.map((k) => { const r = summarize(e, k, tasks); return r ? [Number(k), r.spearman] : null; }).filter((p) => p) }))
      .filter((s) => s.pts.length);
    const W = 760, H = 320, L = 56, R = 230, T = 14, B = 40;
    const box = $("plot");
    box.replaceChildren();
    if (!series.length) { box.appendChild(el("div", "No entries for this suite and filter.", "empty")); return; }
    const ys = series.flatMap((s) => s.pts.map((p) => p[1]));
    const span = Math.max(0.2, Math.max(...ys) - Math.min(...ys) + 0.1);
    const step = [0.05, 0.1, 0.2, 0.25, 0.5].find((s) => span / s <= 6) || 0.5;
    const y0 = Math.max(-1, Math.floor((Math.min(...ys) - 0.04) / step) * step);
    const y1 = Math.min(1, Math.ceil((Math.max(...ys) + 0.04) / step) * step);
    const x0 = Math.min(...DATA.shots), x1 = Math.max(...DATA.shots);
    const px = (x) => L + (W - L - R) * (Math.log(x) - Math.log(x0)) / (Math.log(x1) - Math.log(x0) || 1);
    const py = (y) => T + (H - T - B) * (1 - (y - y0) / (y1 - y0));
    const root = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "mean Spearman vs k per method" });
    for (let i = 0; i <= Math.round((y1 - y0) / step); i++) {
      const y = y0 + step * i;
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), stroke: "#e1e5ee" }));
      root.appendChild(svg("text", { x: L - 6, y: py(y) + 4, "text-anchor": "end" }, y.toFixed(2)));
    }
    for (const k of DATA.shots) {
      root.appendChild(svg("line", { x1: px(k), x2: px(k), y1: T, y2: H - B, stroke: "#eef1f7" }));
      root.appendChild(svg("text", { x: px(k), y: H - B + 16, "text-anchor": "middle" }, "k=" + k));
    }
    root.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "shots per target device (log scale)"));
    root.appendChild(svg("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", transform: "rotate(-90 14 " + (T + H - B) / 2 + ")" }, "mean Spearman"));
    series.forEach((s, i) => {
      const c = COLORS[i % COLORS.length];
      const g = svg("g", { "data-method": s.e.method });
      g.appendChild(svg("polyline", { points: s.pts.map((p) => px(p[0]) + "," + py(p[1])).join(" "), fill: "none", stroke: c, "stroke-width": 2 }));
      for (const p of s.pts) {
        const dot = svg("circle", { cx: px(p[0]), cy: py(p[1]), r: 3.5, fill: c });
        dot.appendChild(svg("title", {}, s.e.method + ", k=" + p[0] + ": " + p[1].toFixed(3)));
        g.appendChild(dot);
      }
      root.appendChild(g);
      const ly = T + 8 + i * 18;
      root.appendChild(svg("line", { x1: W - R + 14, x2: W - R + 34, y1: ly, y2: ly, stroke: c, "stroke-width": 2 }));
      const label = s.e.method.length > 28 ? s.e.method.slice(0, 27) + "\u2026" : s.e.method;
      root.appendChild(svg("text", { x: W - R + 40, y: ly + 4 }, label));
    });
    box.appendChild(root);
  }

  function heatColor(v) {  // Spearman -> red (<= 0) .. yellow .. green (1)
    const t = Math.max(0, Math.min(1, v));
    return "hsl(" + Math.round(120 * t) + ", 70%, " + Math.round(80 - 12 * t) + "%)";
  }
  function renderHeatmap(list) {
    const tasks = suiteTasks(), table = $("heatmap");
    $("heatk").textContent = "k = " + state.k + ", cell colour: red \u2264 0 \u2026 green = 1";
    table.replaceChildren();
    if (!list.length) return;
    const head = document.createElement("tr");
    head.appendChild(el("th", "method", "method"));
    for (const t of tasks) head.appendChild(el("th", t, "task"));
    table.appendChild(head);
    for (const r of sortRows(list)) {
      const tr = document.createElement("tr");
      tr.appendChild(el("td", r.method, "method"));
      for (const t of tasks) {
        const b = (r.entry.k[state.k] || {})[t];
        const td = el("td", b ? b.spearman.toFixed(2) : "\u2013");
        if (b) { td.style.background = heatColor(b.spearman); td.title = r.method + " on " + t + ": " + b.spearman.toFixed(3); }
        tr.appendChild(td);
      }
      table.appendChild(tr);
    }
  }

  function render() {
    const list = rows(state.k);
    $("taskcount").textContent = suiteTasks().length + " of " + DATA.suites[state.suite].tasks.length + " tasks";
    renderTable(list);
    renderPlot();
    renderHeatmap(list);
  }

  function checkboxes(box, names, store) {
    box.querySelectorAll("label").forEach((n) => n.remove());
    for (const name of names) {
      store[name] = true;
      const label = el("label"), cb = document.createElement("input");
      cb.type = "checkbox"; cb.checked = true; cb.value = name;
      cb.addEventListener("change", () => { store[name] = cb.checked; render(); });
      label.appendChild(cb); label.appendChild(document.createTextNode(" " + name));
      box.appendChild(label);
    }
  }
  function selectSuite(suite) {
    state.suite = suite;
    state.groups = {}; state.spaces = {};
    checkboxes($("groups"), DATA.suites[suite].groups, state.groups);
    checkboxes($("spaces"), DATA.suites[suite].spaces, state.spaces);
    render();
  }

  const suites = Object.keys(DATA.suites);
  const withEntries = suites.filter((s) => entriesOf(s).length);
  for (const s of suites) { const o = el("option", s + " (" + entriesOf(s).length + ")"); o.value = s; $("suite").appendChild(o); }
  for (const k of DATA.shots) { const o = el("option", String(k)); o.value = String(k); $("shots").appendChild(o); }
  $("shots").value = state.k;
  $("suite").value = withEntries[0] || suites[0];
  $("suite").addEventListener("change", () => selectSuite($("suite").value));
  $("shots").addEventListener("change", () => { state.k = $("shots").value; render(); });
  for (const th of $("ranking").tHead.rows[0].cells) {
    th.addEventListener("click", () => {
      const key = th.getAttribute("data-key");
      if (state.sortKey === key) state.sortDir = -state.sortDir;
      else { state.sortKey = key; state.sortDir = HIGHER[key] ? -1 : 1; }
      render();
    });
  }
  selectSuite($("suite").value);

  if (location.hash === "#selftest") {
    const order = () => Array.from($("ranking").tBodies[0].rows, (tr) => tr.getAttribute("data-entry"));
    const th = $("ranking").querySelector('th[data-key="spearman"]');
    const initial = order();
    th.click();
    const first = order();
    th.click();
    const second = order();
    const cb = document.querySelector('#spaces input[value="nb201"]');  // then filter: drop the nb201 tasks
    let filtered = null;
    if (cb) {
      cb.checked = false;
      cb.dispatchEvent(new Event("change"));
      filtered = { tasks: $("taskcount").textContent,
                   rows: Array.from($("ranking").tBodies[0].rows, (tr) => [tr.getAttribute("data-entry"), tr.cells[2].textContent]) };
    }
    const out = $("selftest");
    out.textContent = JSON.stringify({ initial: initial, first: first, second: second, filtered: filtered });
    out.hidden = false;
  }
})();
</script>
</body>
</html>
"""


def render(entries: list[lb.Entry], folder: Path) -> list[Path]:
    """The board's README.md, its JSON schema and the static page site/index.html, written atomically."""
    folder = Path(folder)
    lb.export_schema(folder / "entry.schema.json")
    return [write_text(folder / "README.md", lb.render_markdown(entries)), folder / "entry.schema.json",
            render_site(entries, folder / "site")]
