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
import re
import time
from importlib import resources
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
        out_entries.append(
            {
                "id": e.entry_id,
                "method": e.method.name,
                "version": e.method.version,
                "status": e.status,
                "protocol": e.protocol,
                "predictions": e.protocol == lb.PREDICTIONS_PROTOCOL,
                "suite": e.suite,
                "seconds": e.seconds,
                "date": e.date,
                "k": per_k,
            }
        )
    for suite in lb.SUITES:
        for k in lb.SUITE_SHOTS:
            rows = lb.rank(entries, suite, k)
            if rows:
                ranked.setdefault(suite, {})[str(k)] = {
                    r["entry"]: {"rank": r["rank"], "ci": list(r["ci"]), "std": r["std"]} for r in rows
                }
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "shots": list(lb.SUITE_SHOTS),
        "suites": suites,
        "entries": out_entries,
        "ranked": ranked,
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
            parts.append(
                f"<h3>{e(suite)} suite, k = {k}</h3><table><tr><th>rank</th><th>method</th><th>Spearman</th>"
                "<th>95 % CI</th><th>Kendall</th><th>MAPE %</th><th>±10 %</th><th>time (s)</th><th>status</th></tr>"
            )
            for r in rows:
                parts.append(
                    f"<tr><td>{r['rank']}</td><td>{e(r['method'])}</td><td>{r['spearman']:.3f} ± {r['std']:.3f}</td>"
                    f"<td>[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]</td><td>{r['kendall']:.3f}</td><td>{r['mape']:.1f}</td>"
                    f"<td>{r['acc10']:.2f}</td><td>{e(lb._time_cell(r))}</td><td>{e(lb._status_cell(r))}</td></tr>"
                )
            parts.append("</table>")
    return "".join(parts) or "<p>No entries yet.</p>"


_PLACEHOLDER = re.compile(r"__(DATA|NOSCRIPT|GENERATED|COUNT)__")


def render_html(entries: list) -> str:
    """The page: ``templates/index.html`` with its placeholders filled in one pass, so text that comes
    from entries (method names, notes) can never be taken for a placeholder."""
    data = page_data(entries)
    values = {
        "DATA": _json_for_script(data),
        "NOSCRIPT": _noscript_tables(entries),
        "GENERATED": html.escape(data["generated"]),
        "COUNT": str(len(entries)),
    }
    template = resources.files("latbench.leaderboard").joinpath("templates/index.html").read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def render_site(entries: list, out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` atomically (temp file + rename) and return its path."""
    return write_text(Path(out_dir) / "index.html", render_html(entries))


def render(entries: list[lb.Entry], folder: Path) -> list[Path]:
    """The board's README.md, its JSON schema and the static page site/index.html, written atomically."""
    folder = Path(folder)
    lb.export_schema(folder / "entry.schema.json")
    return [
        write_text(folder / "README.md", lb.render_markdown(entries)),
        folder / "entry.schema.json",
        render_site(entries, folder / "site"),
    ]
