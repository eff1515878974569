"""Model selection for ``latref`` on held-out *source* devices: no target device of any task is used.

For each task, each of (up to ``--max-devices``) source devices in turn becomes a pseudo-target:

- ``loso`` (leave one source out): the other source devices are the sources;
- ``lco`` (leave a cluster out): the sources are the other source devices whose Spearman with the
  pseudo-target on the task's source sample is below 0.8 (at least two must remain), which mimics
  the hard tier (a target no source ranks like).

The pseudo-task keeps the task's pools (source sample, query pool, evaluation set) and the official
protocol; a method sees only the remaining source devices. Prints mean Spearman per variant, mode
and k, over all pseudo-targets (and per space with ``--per-space``)::

    python benchmarks/latref_selection.py --tasks generated,literature --shots 5 10 20 \\
        --variant opwise-lasso --variant latref --variant 'latref:{"select": "random"}'
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections import defaultdict

import numpy as np
from scipy.stats import spearmanr

from latbench.data import store
from latbench.methods.registry import make_method
from latbench.protocol.trial import make_trial
from latbench.tasks.spec import select

LCO_MAX_RHO = 0.8


def pseudo_tasks(spec, table, mode: str, max_devices: int):
    """(pseudo-target, pseudo-task) pairs of ``spec`` for ``mode`` (see the module docstring)."""
    src = list(spec.source)
    sample = np.asarray(spec.pools.source_sample)
    lat = table.rows(src)[:, sample]
    rho = spearmanr(lat, axis=1).statistic if len(src) > 2 else np.corrcoef(lat)
    out = []
    for i in np.linspace(0, len(src) - 1, min(max_devices, len(src))).round().astype(int):
        rest = [d for j, d in enumerate(src) if j != i and (mode == "loso" or rho[i, j] < LCO_MAX_RHO)]
        if len(rest) < 2:
            continue
        task = spec.model_copy(update={"source": tuple(rest), "target": (src[i],), "valid": ()})
        out.append((src[i], task))
    return out


def parse_variant(text: str):
    name, _, params = text.partition(":")
    return text, name, (json.loads(params) if params else {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="generated", help="task selector (generated = the main suite)")
    ap.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--modes", default="loso,lco")
    ap.add_argument("--max-devices", type=int, default=3)
    ap.add_argument("--trial", type=int, default=0)
    ap.add_argument("--variant", action="append", required=True, help="method[:JSON params]")
    ap.add_argument("--per-space", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="print every pseudo-target's Spearman")
    args = ap.parse_args()
    specs = select(args.tasks)
    variants = [parse_variant(v) for v in args.variant]
    scores: dict = defaultdict(list)
    seconds: dict = defaultdict(float)
    for spec in specs:
        table = store.load_latency(spec.space)
        space = store.get_space(spec.space)
        for mode in args.modes.split(","):
            for dev, task in pseudo_tasks(spec, table, mode, args.max_devices):
                truth = table.device(dev)
                for label, name, params in variants:
                    tic = time.perf_counter()
                    fitted = None
                    for k in args.shots:
                        trial = make_trial(task, args.trial, k, table, reference_ids=space.reference_ids)
                        if fitted is None:
                            fitted = make_method(name, **params).fit(trial.source, space, trial.seed)
                        m = copy.deepcopy(fitted)
                        m.adapt(dev, trial.oracles[dev])
                        ids = trial.eval_ids[dev]
                        rho = spearmanr(truth[ids], m.predict(dev, ids)).statistic
                        for key in ((label, mode, k, "all"), (label, mode, k, spec.space)):
                            scores[key].append(rho)
                        if args.verbose:
                            print(f"{spec.id} {mode} {dev} k={k} {label}: {rho:.3f}", flush=True)
                    seconds[label] += time.perf_counter() - tic
        print(f"# {spec.id} done", flush=True)
    groups = ["all"] + (sorted({s.space for s in specs}) if args.per_space else [])
    header = "| variant | mode | group | n | " + " | ".join(f"k={k}" for k in args.shots) + " | s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for label, _, _ in variants:
        for mode in args.modes.split(","):
            for g in groups:
                vals = [scores[(label, mode, k, g)] for k in args.shots]
                if not vals[0]:
                    continue
                cells = " | ".join(f"{np.mean(v):.3f}" for v in vals)
                print(f"| {label} | {mode} | {g} | {len(vals[0])} | {cells} | {seconds[label]:.0f} |")


if __name__ == "__main__":
    main()
