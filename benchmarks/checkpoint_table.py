"""Tabulate a sweep's checkpoint folder, finished or not: how far a grid that is still running has got.

    python benchmarks/checkpoint_table.py my-sweep-units \
        --compare leaderboard/entries/mlp-finetune-*.json --out my-sweep.md

Per method: Spearman rho per task and shot count, mean ± std over the trials finished so far
(their number in brackets when fewer than planned: the suite's 5, or ``--trials``), the units
finished out of the planned grid, and the mean seconds per unit by space; with ``--compare
ENTRY...`` (board entries) also the mean over the tasks a method has finished (all trials) next to
each entry's mean on the same tasks, so a partial grid can be compared fairly; then all methods
side by side in one table. Only units whose data hash matches the built dataset and whose method
code is the current one count (stale ones are reported); nothing here runs a method.
"""

from __future__ import annotations

import argparse
import importlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from latbench.data import store
from latbench.eval import checkpoints
from latbench.leaderboard import board as lb
from latbench.tasks.spec import load_task


def spearman_by_task_k(records) -> dict:
    """(task, k) -> {trial: mean Spearman over the task's targets}."""
    by = defaultdict(dict)
    for r in records:
        for k, t in zip(r.key["shots"], r.trials):
            by[r.key["task"], k][t.trial] = t.mean["spearman"]
    return by


def cell(by, task_id, k, trials) -> str:
    """'mean ± std' over the finished trials, their count in brackets when fewer than planned."""
    vals = np.array(list(by.get((task_id, k), {}).values()))
    if not len(vals):
        return "–"
    n = "" if len(vals) == trials else f" ({len(vals)})"
    return f"{vals.mean():.3f} ± {vals.std():.3f}{n}"


def method_table(records, tasks, shots, trials) -> list[str]:
    by = spearman_by_task_k(records)
    lines = ["| task | space | " + " | ".join(f"k={k}" for k in shots) + " |", "|---|---|" + "---|" * len(shots)]
    lines += [f"| {task.id} | {task.space} | " + " | ".join(cell(by, task.id, k, trials) for k in shots) + " |" for task in tasks]
    return lines


def wide_table(fresh, tasks, shots, trials) -> list[str]:
    """Every method side by side, one column per (method, k)."""
    by = {m: spearman_by_task_k(recs) for m, recs in sorted(fresh.items())}
    cols = [(m, k) for m in by for k in shots]
    lines = ["| task | " + " | ".join(f"{m} k={k}" for m, k in cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {task.id} | " + " | ".join(cell(by[m], task.id, k, trials) for m, k in cols) + " |" for task in tasks]
    return lines


def compact_table(fresh, tasks, shots) -> list[str]:
    """One row per method, one column per task, 'k5 / k10 / k20' means: what README shows for a suite.

    A cell is empty where a (task, k) has no finished trial; the last column is the mean over tasks,
    given only where the method has every task, and ``trials`` says how many trials each cell averages.
    """
    head = "| method | trials | " + " | ".join(t.id for t in tasks) + " | mean |"
    lines = [head, "|---|---|" + "---|" * (len(tasks) + 1)]
    for m, recs in sorted(fresh.items()):
        by = spearman_by_task_k(recs)
        counts = sorted({len(by.get((t.id, k), {})) for t in tasks for k in shots} - {0})
        cells, means = [], {k: [] for k in shots}
        for t in tasks:
            vals = [by.get((t.id, k)) for k in shots]
            if not all(vals):
                cells.append("–")
                continue
            mk = [float(np.mean(list(v.values()))) for v in vals]
            for k, x in zip(shots, mk):
                means[k].append(x)
            cells.append(" / ".join(f"{x:.2f}" for x in mk))
        full = all(len(v) == len(tasks) for v in means.values())
        mean = " / ".join(f"{np.mean(means[k]):.3f}" for k in shots) if full else "–"
        n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        lines.append(f"| {m} | {n} | " + " | ".join(cells) + f" | {mean} |")
    return lines


def complete_means(records, shots, trials) -> dict[str, dict[int, float]]:
    """task -> k -> mean Spearman over trials, for tasks with all ``trials`` finished."""
    out = defaultdict(dict)
    for (task, k), vals in spearman_by_task_k(records).items():
        if len(vals) == trials:
            out[task][k] = float(np.mean(list(vals.values())))
    return {t: v for t, v in out.items() if len(v) == len(shots)}


def comparison(method: str, records, entries, shots, trials) -> list[str]:
    done = complete_means(records, shots, trials)
    if not done:
        return []
    tasks = sorted(done)
    rows = [
        f"Mean Spearman over the {len(tasks)} tasks `{method}` has finished ({', '.join(tasks)}):",
        "",
        "| method | " + " | ".join(f"k={k}" for k in shots) + " |",
        "|---|" + "---|" * len(shots),
        f"| {method} | " + " | ".join(f"{np.mean([done[t][k] for t in tasks]):.3f}" for k in shots) + " |",
    ]
    for e in entries:
        agg = {(r.task, r.shots): r.aggregate["spearman"]["mean"] for r in e.results}
        rows.append(
            f"| {e.method.name} (board) | " + " | ".join(f"{np.mean([agg[t, k] for t in tasks]):.3f}" for k in shots) + " |"
        )
    return rows + [""]


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def current_code(rec) -> bool:
    """Whether the unit was run by the method's current code (the fingerprint a sweep would reuse)."""
    module = rec.key["class"].split(":")[0]
    importlib.import_module(module)
    return rec.key["code"] == checkpoints.code_fingerprint(module)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--suite", default="main")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--trials",
        type=int,
        default=lb.SUITE_TRIALS,
        help="Trials planned per task (for a grid run with fewer than the suite's); units of later trials are left out.",
    )
    ap.add_argument("--compare", type=Path, nargs="*", default=[], help="Board entry files to compare with on the same tasks.")
    args = ap.parse_args()
    tasks = lb.suite_tasks(args.suite)
    shots = list(lb.SUITE_SHOTS)
    entries = [lb.load_entry(p) for p in args.compare]
    fresh, stale = defaultdict(list), 0
    for rec in checkpoints.scan(args.checkpoint):
        task = load_task(rec.key["task"])
        if rec.data_hash != store.data_hash([task]) or rec.key["task_version"] != task.version or not current_code(rec):
            stale += 1
            continue
        if rec.key["shots"] == shots and rec.key["protocol"] == "official" and task in tasks and rec.key["trial"] < args.trials:
            fresh[rec.key["method"]].append(rec)
    planned = len(tasks) * args.trials
    out = [
        f"Official protocol, suite `{args.suite}`; Spearman rho, mean ± std over the trials finished "
        f"(count in brackets when fewer than {args.trials}). From `{args.checkpoint}`"
        + (f"; {stale} stale unit(s) ignored." if stale else "."),
        "",
    ]
    for method in sorted(fresh):
        recs = fresh[method]
        secs = defaultdict(list)
        for r in recs:
            secs[load_task(r.key["task"]).space].append(r.seconds)
        timing = ", ".join(f"{sp} {duration(np.mean(v))} ({len(v)})" for sp, v in sorted(secs.items()))
        out += [
            f"### `{method}`: {len(recs)} of {planned} units",
            "",
            f"Mean wall time per unit (task x trial, all k), by space: {timing}.",
            "",
        ]
        out += comparison(method, recs, entries, shots, args.trials)
        out += method_table(recs, tasks, shots, args.trials) + [""]
    if len(fresh) > 1:
        out += [
            "### All methods",
            "",
            f"Spearman rho at k = {' / '.join(map(str, shots))} per task (mean over the finished trials):",
            "",
        ]
        out += compact_table(fresh, tasks, shots) + [""]
        out += wide_table(fresh, tasks, shots, args.trials) + [""]
    text = "\n".join(out)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
