"""Time one (task, trial) unit of each learned baseline on the CPU and on CUDA, and compare the results.

python benchmarks/bench_learned_device.py --task easy-1 --quick        # a few minutes in all
python benchmarks/bench_learned_device.py --task easy-1                # the methods' own settings
python benchmarks/bench_learned_device.py --methods help,nasflat --out bench-device.md

Each row is one unit (fit on the sources, adapt and predict on every target, k = 10) run through
``latbench.evaluate`` in this process, as ``latbench eval`` runs it. CUDA rows are skipped when
torch sees no GPU. The last column is the largest difference of a per-device Spearman between the
CPU and the CUDA run: a GPU computes in another order, so results agree to float tolerance, not
bit for bit. The data must be built (``latbench data build``). ``--quick`` cuts epochs/episodes so
that a pass fits a short GPU lease; its timings are per-unit costs at those settings, not the
methods' defaults.
"""

from __future__ import annotations

import argparse
import os
import time

#: Learned baselines with a ``device`` parameter.
METHODS = ("help", "brp-nas", "nasflat", "mlp-finetune", "mlp-hwparams")
#: --quick: fewer epochs / episodes, the same networks.
QUICK = {
    "help": {"num_episodes": 200},
    "brp-nas": {"epochs": 20, "finetune_epochs": 10},
    "nasflat": {"epochs": 3},
    "mlp-finetune": {"epochs": 2},
    "mlp-hwparams": {"epochs": 1},
}


def run_unit(name: str, task, device: str, params: dict, shots: int):
    """(seconds, per-device Spearman dict) of one unit of ``name`` on ``device``."""
    from latbench import evaluate
    from latbench.methods.registry import make_method

    method = make_method(name, **params, device=device)
    t0 = time.perf_counter()
    result = evaluate(method, [task], shots=shots, trials=1)
    seconds = time.perf_counter() - t0
    return seconds, {d: m["spearman"] for d, m in result.results[0].trials[0].devices.items()}


def main() -> None:
    import torch

    from latbench.tasks.spec import load_task

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="easy-1")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS))
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="fewer epochs/episodes (see QUICK)")
    ap.add_argument("--out", help="also write the table to this Markdown file")
    args = ap.parse_args()
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        ap.error(f"not a learned baseline with a device parameter: {', '.join(unknown)}")
    task = load_task(args.task)
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    lines = [
        f"task {task.id}, k = {args.shots}, 1 trial, {'--quick settings' if args.quick else 'default settings'}; "
        f"{os.cpu_count()} CPUs (torch threads: each method's num_threads, default 1), GPU: {gpu}; torch {torch.__version__}",
        "",
        "| method | settings | CPU s | CUDA s | speed-up | max abs diff of per-device Spearman |",
        "|---|---|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for name in names:
        params = QUICK[name] if args.quick else {}
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        t_cpu, rho_cpu = run_unit(name, task, "cpu", params, args.shots)
        if cuda:
            t_gpu, rho_gpu = run_unit(name, task, "cuda", params, args.shots)
            diff = max(abs(rho_cpu[d] - rho_gpu[d]) for d in rho_cpu)
            row = f"| {name} | {shown} | {t_cpu:.1f} | {t_gpu:.1f} | {t_cpu / t_gpu:.1f}x | {diff:.2e} |"
        else:
            row = f"| {name} | {shown} | {t_cpu:.1f} | skipped (no CUDA) | | |"
        lines.append(row)
        print(row, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
