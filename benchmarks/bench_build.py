"""Time `latbench data build` from the local mirror (the README's build-time figure).

LATBENCH_MIRROR=../shared/sources python benchmarks/bench_build.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not os.environ.get("LATBENCH_MIRROR"):
        sys.exit("set LATBENCH_MIRROR to the source mirror (e.g. ../shared/sources)")
    times = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "LATBENCH_HOME": home}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "latbench.cli", "data", "build"], env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    print(
        f"latbench data build (mirror, {os.cpu_count()} CPUs): median {statistics.median(times):.1f} s over {len(times)} runs "
        f"(min {min(times):.1f}, max {max(times):.1f})"
    )


if __name__ == "__main__":
    main()
