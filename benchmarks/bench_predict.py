"""Prediction throughput and per-trial cost of latency predictors (archs per second, on this machine).

For each method and task: one official trial is built, the method is fitted on the source devices
and adapted to every target device (timed), then ``predict`` is timed on ``--n`` arch ids drawn
uniformly from the whole space (one call per target device, best of ``--repeat`` calls). A second
``fit`` in the same process is timed too, since some methods cache per-process work (whole-space
features, source models) that later trials reuse::

    python benchmarks/bench_predict.py --methods latref opwise-lasso flops --tasks hard-3 hard-5 hard-6 -k 10
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np

from latbench.data import store
from latbench.methods.registry import make_method
from latbench.protocol.trial import make_trial
from latbench.tasks.spec import load_task


def bench(name: str, task_id: str, k: int, n: int, repeat: int) -> dict:
    spec = load_task(task_id)
    space = store.get_space(spec.space)
    table = store.load_latency(spec.space)
    trial = make_trial(spec, 0, k, table, reference_ids=space.reference_ids, kernels=store.load_kernels(spec.space))
    tic = time.perf_counter()
    fitted = make_method(name).fit(trial.source, space, trial.seed)
    t_fit = time.perf_counter() - tic
    tic = time.perf_counter()
    make_method(name).fit(trial.source, space, trial.seed)
    t_refit = time.perf_counter() - tic
    m = copy.deepcopy(fitted)
    tic = time.perf_counter()
    for dev, oracle in trial.oracles.items():
        m.adapt(dev, oracle)
    t_adapt = time.perf_counter() - tic
    ids = np.random.default_rng(0).integers(0, len(space), n)
    m.predict(spec.target[0], ids[:10])  # warm any lazy state
    best = np.inf
    for _ in range(repeat):
        tic = time.perf_counter()
        for dev in spec.target:
            m.predict(dev, ids)
        best = min(best, (time.perf_counter() - tic) / len(spec.target))
    return {"fit": t_fit, "refit": t_refit, "adapt": t_adapt / len(spec.target), "rate": n / best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["latref"])
    ap.add_argument("--tasks", nargs="+", default=["hard-3", "hard-5", "hard-6"])
    ap.add_argument("-k", "--shots", type=int, default=10)
    ap.add_argument("--n", type=int, default=1_000_000, help="arch ids per predict call")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"# {os.cpu_count()} CPUs visible; k = {args.shots}; {args.n:,} ids per predict call")
    print("| method | task | space | first fit (s) | later fit (s) | adapt per target (s) | predict (archs/s) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.methods:
        for task_id in args.tasks:
            r = bench(name, task_id, args.shots, args.n, args.repeat)
            space = load_task(task_id).space
            print(
                f"| {name} | {task_id} | {space} | {r['fit']:.2f} | {r['refit']:.2f} | {r['adapt']:.3f} | {r['rate']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
