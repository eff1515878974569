"""Faithful vs adapted kernel-level baselines on the tasks whose devices have kernel tables.

    python benchmarks/kernel_variants.py --trials 5 [--campaign kernel-campaigns/] \
        --out benchmarks/results/kernel-variants.md

Runs nn-meter, litepred and opwise-* with ``variant=adapted`` (trained on end-to-end latency) and
``variant=faithful`` (trained on the measured kernel latencies) on ``measured-nb201-kernels`` and
``measured-fbnet-kernels`` at k = 5 / 10 / 20 (official protocol), plus, with ``--campaign``,
faithful nn-Meter from a ``latbench profile-kernels`` campaign alone (k = 0). Adaptation cost =
target measurements and their estimated device time: each measured arch costs the profiler's
5 warm-up + 20 timed forwards + 5 kernel-breakdown passes (30 x its latency); a campaign costs its
logged wall time (sampling, timing and model fitting).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from latbench.data import store
from latbench.eval.runner import evaluate
from latbench.methods.registry import make_method
from latbench.tasks.spec import load_task

METHODS = ["nn-meter", "litepred", "opwise-lasso", "opwise-rf", "opwise-gbdt", "opwise-mlp"]
TASKS = ["measured-nb201-kernels", "measured-fbnet-kernels"]
PASSES_PER_ARCH = 30  # profiler defaults: 5 warm-up + 20 timed + 5 kernel-breakdown passes


def ensure_kernel_tasks() -> None:
    """The kernel tasks are user tasks (their target's retest is below the official threshold):
    make them as the nn-Meter docs page does, if they are not there yet."""
    from latbench.tasks import spec, user

    known = {t.id for t in spec.list_tasks()}
    for task in TASKS:
        if task not in known:
            space = task.split("-")[1]
            user.create_task(task, space, ["epyc-2c-torch-t1-bs1-fp32"], ["epyc-2c-torch-t2-bs1-fp32"], allow_noisy=True)


def device_seconds(task, trial) -> float:
    table = store.load_latency(task.space)
    return sum(PASSES_PER_ARCH * float(np.sum(table.device(d)[ids])) / 1000 for d, ids in trial.measured.items())


def row(method, variant, task, res, k) -> str:
    r = next(x for x in res.results if x.shots == k)
    a = r.aggregate
    cost = np.mean([device_seconds(task, t) for t in r.trials])
    secs = np.mean([sum(t.seconds.values()) for t in r.trials])

    def c(m, d=3):
        return f"{a[m]['mean']:.{d}f} ± {a[m]['std']:.{d}f}"

    return (
        f"| {method} | {variant} | {k} | {c('spearman')} | {c('mape', 1)} | {c('acc10', 2)} | {c('rmse', 2)} | "
        f"{k} archs, {cost:.2f} s | {secs:.1f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--shots", nargs="+", type=int, default=[5, 10, 20])
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--campaign", type=Path, nargs="*", default=[], help="`latbench profile-kernels --out` folders.")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/kernel-variants.md"))
    args = ap.parse_args()
    ensure_kernel_tasks()
    info = store.info()
    lines = [
        "# Faithful vs adapted kernel-level baselines",
        "",
        f"`python benchmarks/kernel_variants.py --trials {args.trials}"
        + (f" --campaign {' '.join(map(str, args.campaign))}" if args.campaign else "")
        + "`; dataset "
        f"{info['dataset_version']}, official protocol, mean ± std over {args.trials} trials; "
        "adaptation cost = target archs measured and their estimated device time "
        f"({PASSES_PER_ARCH} forwards each); time = fit + adapt + predict seconds per trial on this machine.",
        "",
    ]
    for task_id in TASKS:
        task = load_task(task_id)
        lines += [
            f"## {task_id} ({', '.join(task.source)} -> {', '.join(task.target)}; difficulty {task.difficulty:.3f})",
            "",
            "| method | variant | k | Spearman ρ | MAPE % | ±10 % | RMSE ms | adaptation cost | time s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m in args.methods:
            for variant in ("adapted", "faithful"):
                tic = time.perf_counter()
                res = evaluate(make_method(m, variant=variant), [task], shots=args.shots, trials=args.trials)
                lines += [row(m, variant, task, res, k) for k in args.shots]
                print(f"{task_id} {m} {variant}: {time.perf_counter() - tic:.0f} s", flush=True)
        for folder in args.campaign:
            res = evaluate(
                make_method("nn-meter", variant="faithful", campaign=str(folder)),
                [task],
                shots=[0, *args.shots],
                trials=args.trials,
            )
            lines += [row(f"nn-meter + campaign `{folder.name}`", "faithful", task, res, k) for k in [0, *args.shots]]
        lines.append("")
    if args.campaign:
        lines += [
            "Campaigns (`campaign-<op>.json`):",
            "",
            "| device | op | sampler | configurations | contended | held-out ±10 % (last round) | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in sorted(p for folder in args.campaign for p in folder.glob("*/campaign-*.json")):
            c = json.loads(f.read_text())
            lines.append(
                f"| {c['device']} | {c['op']} | {c['sampler']} | {c['measured']} | {c['contended']} | "
                f"{c['history'][-1]['acc10']:.3f} | {c['seconds']} |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
