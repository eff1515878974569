"""Time the main job end to end as a user runs it (process start included), data already built.

python benchmarks/bench_eval.py --method flops --task hard-3 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="flops")
    ap.add_argument("--task", default="hard-3")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "latbench.cli", "eval", "--method", args.method, "--task", args.task]
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up: builds the data if missing, fills OS caches
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    print(
        f"latbench eval --method {args.method} --task {args.task} ({os.cpu_count()} CPUs): "
        f"median {statistics.median(times):.2f} s over {len(times)} runs (min {min(times):.2f}, max {max(times):.2f})"
    )


if __name__ == "__main__":
    main()
