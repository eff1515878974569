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
import math
import re
from importlib import resources
from pathlib import Path

from latbench.io import write_text
from latbench.leaderboard import board as lb
from latbench.leaderboard.generated import render_checkout_docs
from latbench.leaderboard.ranking import ALPHA, nemenyi_q
from latbench.tasks.spec import list_tasks

#: Per task on the page: the mean over trials of these metrics (None where an entry lacks one).
_METRICS = ("spearman", *lb.BOARD_METRICS)
#: One colour per method (Okabe-Ito's eight, then Paul Tol's "muted" nine; both colour-blind-safe
#: sets), and one marker shape per method, so two methods never share a colour nor a marker up to 14
#: methods and never share both up to 238: the shape tells apart what a colour-vision deficiency merges.
PALETTE = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499",
)  # fmt: skip
MARKERS = (
    "circle", "square", "triangle-up", "diamond", "triangle-down", "pentagon", "hexagon", "star",
    "plus", "cross", "triangle-left", "triangle-right", "thin-diamond", "octagon",
)  # fmt: skip
#: The same shapes in matplotlib's notation (:mod:`latbench.plots` draws the README's charts).
MPL_MARKERS = dict(zip(MARKERS, ("o", "s", "^", "D", "v", "p", "h", "*", "P", "X", "<", ">", "d", "8")))


def method_styles(names) -> dict[str, dict[str, str]]:
    """Colour and marker per method name, by the names' sorted order (the page and the charts agree)."""
    return {
        n: {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)]} for i, n in enumerate(sorted(set(names)))
    }


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
            "styles": method_styles(e.method.name for e in entries if e.suite == suite),
        }
    out_entries, ranked = [], {}
    for e in entries:
        per_k: dict[str, dict] = {}
        for r in e.results:
            trials = sorted(r.trials, key=lambda t: t.trial)
            per_k.setdefault(str(r.shots), {})[r.task] = {
                **{m: r.aggregate[m]["mean"] if m in r.aggregate else None for m in _METRICS},
                "trials": [t.mean["spearman"] for t in trials],
                "trial_ids": [t.trial for t in trials],
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
                "schema": e.schema_version,
                "seconds": e.seconds,
                "date": e.date,
                "k": per_k,
            }
        )
    most = 2
    for suite in lb.SUITES:
        for k in lb.SUITE_SHOTS:
            table = lb.ranking(entries, suite, k)
            if not table.rows:
                continue
            most = max(most, len(table.rows))
            ranked.setdefault(suite, {})[str(k)] = {
                "rows": {
                    r["entry"]: {
                        "rank": r["rank"],
                        "mean_rank": r["mean_rank"],
                        "p_next": r["p_next"],
                        "ci": list(r["ci"]),
                        "std": r["std"],
                    }
                    for r in table.rows
                },
                "order": [r["entry"] for r in table.rows],
                "n_units": table.n_units,
                "statistic": table.statistic,
                "pvalue": table.pvalue,
                "cd": table.cd if math.isfinite(table.cd) else None,
                "cliques": [list(c) for c in table.cliques],
            }
    return {
        # the newest entry's date, not the clock: the same entries render byte for byte the same page
        "generated": max((e.date for e in entries), default="no entries"),
        "shots": list(lb.SUITE_SHOTS),
        "alpha": ALPHA,
        "nemenyi_q": {str(k): nemenyi_q(k, ALPHA) for k in range(2, most + 1)},
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
            table = lb.ranking(entries, suite, k)
            if not table.rows:
                continue
            parts.append(f"<h3>{e(suite)} suite, k = {k}</h3><p>{e(lb.paired_test_line(table))}</p>")
            parts.append(_html_table(lb.RANK_COLUMNS, [lb.rank_cells(r) for r in table.rows]))
            parts.append(_html_table(lb.NAS_COLUMNS, [lb.nas_cells(r) for r in table.rows]))
    return "".join(parts) or "<p>No entries yet.</p>"


def _html_table(columns, rows: list[list[str]]) -> str:
    """An HTML table of plain text cells, every cell escaped."""
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_PLACEHOLDER = re.compile(r"__(DATA|NOSCRIPT|GENERATED|COUNT)__")


def render_html(entries: list) -> str:
    """The page: ``templates/index.html`` with its placeholders filled in one pass, so text that comes
    from entries (method names, notes) can never be taken for a placeholder."""
    data = page_data(entries)
    values = {
        "DATA": _json_for_script(data),
        "NOSCRIPT": _noscript_tables(entries),
        "GENERATED": html.escape(data["generated"]),
        "COUNT": f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}",
    }
    template = resources.files("latbench.leaderboard").joinpath("templates/index.html").read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def render_site(entries: list, out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` atomically (temp file + rename) and return its path."""
    return write_text(Path(out_dir) / "index.html", render_html(entries))


def render(entries: list[lb.Entry], folder: Path) -> list[Path]:
    """The board's README.md, its JSON schema and the static page site/index.html, written atomically;
    for the checkout's own board also the generated blocks of the checkout's ``README.md`` and
    ``docs/results.md`` (:mod:`latbench.leaderboard.generated`), rendered before anything is written.
    The charts the README shows (``site/*.svg``) are :func:`latbench.plots.plot_board`'s."""
    folder = Path(folder)
    docs = render_checkout_docs(entries, folder)
    lb.export_schema(folder / "entry.schema.json")
    written = [
        write_text(folder / "README.md", lb.render_markdown(entries)),
        folder / "entry.schema.json",
        render_site(entries, folder / "site"),
    ]
    return written + [write_text(path, text) for path, text in docs.items()]
