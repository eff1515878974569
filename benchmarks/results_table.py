"""Run methods on tasks under the official protocol and write the markdown tables README shows.

    python benchmarks/results_table.py --methods flops flops-params lookup --shots 5 10 20 \
        --tasks all --trials 5 --out benchmarks/results/official.md

Also writes the task table (id, space, sizes, difficulty) to ``<out>.tasks.md``; with
``--json-dir`` it keeps every raw EvalResult JSON, so each figure can be traced to a run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from latbench.eval.runner import evaluate
from latbench.methods.registry import make_method
from latbench.tasks.spec import select


def task_table(tasks) -> str:
    rows = ["| task | tier | space | #source | #target | #valid | difficulty |", "|---|---|---|---|---|---|---|"]
    rows += [
        f"| {t.id} | {t.tier or t.kind} | {t.space} | {len(t.source)} | {len(t.target)} | {len(t.valid)} | {t.difficulty:.3f} |"
        for t in tasks
    ]
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="+", default=["flops"])
    ap.add_argument("--shots", nargs="+", type=int, default=[5, 10, 20])
    ap.add_argument("--tasks", default="all")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/official.md"))
    ap.add_argument("--json-dir", type=Path, default=None, help="Also keep every raw EvalResult JSON here.")
    args = ap.parse_args()
    tasks = select(args.tasks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".tasks.md").write_text(task_table(tasks))
    all_results: dict[str, dict[int, dict]] = {}
    for method in args.methods:
        r = evaluate(make_method(method), tasks, shots=args.shots, trials=args.trials)
        if args.json_dir:
            r.write(args.json_dir / f"{method}.json")
        all_results[method] = {k: {x.task: x.aggregate for x in r.results if x.shots == k} for k in args.shots}
        print(f"{method}: done")

    def cell(agg, metric, digits=3):
        return f"{agg[metric]['mean']:.{digits}f} ± {agg[metric]['std']:.{digits}f}"

    cols = [(m, k) for m in args.methods for k in args.shots]
    lines = [
        f"Spearman rho, mean ± std over {args.trials} trials (per trial: mean over target devices); "
        "official protocol, k target measurements.",
        "",
        "| task | " + " | ".join(f"{m} k={k}" for m, k in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    lines += [f"| {t.id} | " + " | ".join(cell(all_results[m][k][t.id], "spearman") for m, k in cols) + " |" for t in tasks]
    k = args.shots[-1]
    lines += [
        "",
        f"MAPE % and ±10 % accuracy at k={k}:",
        "",
        "| task | " + " | ".join(f"{m} MAPE | {m} ±10%" for m in args.methods) + " |",
        "|---|" + "---|---|" * len(args.methods),
    ]
    lines += [
        f"| {t.id} | "
        + " | ".join(
            f"{cell(all_results[m][k][t.id], 'mape', 1)} | {cell(all_results[m][k][t.id], 'acc10', 2)}" for m in args.methods
        )
        + " |"
        for t in tasks
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
