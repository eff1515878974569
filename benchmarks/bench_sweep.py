"""Wall time of the full baseline board through ``latbench sweep``, serial vs parallel workers.

The board = ``flops``, ``flops-params`` and ``lookup`` on the main suite at k = 5, 10, 20 with the
protocol's 5 trials (3 methods x 18 tasks x 5 trials = 270 units at the time of writing). Each configuration runs as a user runs it (a fresh
``latbench sweep`` process, dataset already built); the script also checks that every worker count
gives the same metrics bit for bit, and prints a markdown table.

    nice -n 19 python benchmarks/bench_sweep.py --workers 1,2 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = "flops,flops-params,lookup"


def metrics(folder: Path) -> str:
    """Every entry's results without timings, as exact JSON (what must not depend on the workers)."""
    out = {}
    for p in sorted(folder.glob("*.json")):
        blocks = json.loads(p.read_text())["results"]
        for b in blocks:
            for t in b["trials"]:
                t.pop("seconds")
        out[p.name] = blocks
    return json.dumps(out, sort_keys=True)


def run_once(workers: int, out: Path) -> tuple[float, float, float]:
    """(end-to-end seconds including process start, the sweep's own wall time, CPU seconds of all its processes)."""
    cmd = [
        sys.executable,
        "-m",
        "latbench.cli",
        "sweep",
        "--methods",
        METHODS,
        "--tasks",
        "main",
        "--shots",
        "5,10,20",
        "--trials",
        "5",
        "--workers",
        str(workers),
        "--out",
        str(out),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    total = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes the pool workers, which the CLI reaps
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    m = re.search(r"sweep wall time ([0-9.]+) s", proc.stderr)
    return total, float(m.group(1)) if m else float("nan"), cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (the first is the baseline)")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    load_before = os.getloadavg()
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for w in counts:
            for r in range(args.repeats):
                out = Path(tmp) / f"w{w}-r{r}"
                total, wall, cpu = run_once(w, out)
                got = metrics(out)
                reference = reference or got
                rows.append((w, r + 1, total, wall, cpu, got == reference))
                print(f"workers={w} run {r + 1}: {total:.1f} s end to end (sweep {wall:.1f} s, CPU {cpu:.1f} s)", file=sys.stderr)
    from latbench.leaderboard.board import suite_tasks

    n_tasks = len(suite_tasks("main"))
    base = statistics.median(t for w, _, t, _, _, _ in rows if w == counts[0])
    print(
        f"Full baseline board ({METHODS.replace(',', ', ')}; main suite of {n_tasks} tasks, k = 5/10/20, 5 trials = "
        f"{3 * n_tasks * 5} units) on {os.cpu_count()} CPU cores; load average before "
        f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (the machine may be shared and under load).\n"
    )
    print(
        f"| workers | run | wall s (end to end) | sweep wall s | CPU s (all processes) | speed-up vs workers={counts[0]} | same metrics |"
    )
    print("|---|---|---|---|---|---|---|")
    for w, r, total, wall, cpu, same in rows:
        print(f"| {w} | {r} | {total:.1f} | {wall:.1f} | {cpu:.1f} | {base / total:.2f}x | {'yes' if same else 'NO'} |")
    print(
        "\nCPU s counts every process of the run: with more workers it grows by what each worker repeats "
        "(start-up, dataset load, per-process caches such as lookup's layer features); wall time can only "
        "approach CPU s / workers when that many cores are free."
    )
    if not all(same for *_, same in rows):
        sys.exit("metrics differ between worker counts")


if __name__ == "__main__":
    main()
