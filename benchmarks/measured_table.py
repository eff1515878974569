"""Markdown table of the committed profiler measurements (the README's "Measured devices" table).

    python benchmarks/measured_table.py            # reads latbench/data/measured/

Per device: archs measured, median latency, median relative IQR of the timed runs, runs kept as
contended (no quiet window found), seconds per arch of the run, and the test-retest Spearman.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from latbench.data import measured


def rows(root: Path):
    for d in measured.read_root(root):
        t = pq.read_table(d.folder / "latency.parquet").to_pandas()
        rel_iqr = float(np.median(t["iqr_ms"] / t["latency_ms"]))
        contended = int(t["contended"].fillna(False).sum()) if "contended" in t else 0
        yield {
            "space": d.meta.space,
            "device": d.meta.device,
            "archs": len(d.archs),
            "median_ms": float(np.median(d.latency)),
            "rel_iqr": rel_iqr,
            "contended": contended,
            "kernels": d.kernels is not None,
            "retest": f"{d.retest['spearman']:.3f} ({d.retest['archs']} archs)" if d.retest else "—",
        }


def main(root: Path = measured.PACKAGE_DIR) -> str:
    lines = [
        "| space | device | archs | median latency (ms) | median IQR / median | contended runs kept | kernel table | test-retest Spearman |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows(root):
        lines.append(
            f"| {r['space']} | `{r['device']}` | {r['archs']:,} | {r['median_ms']:.3f} | {r['rel_iqr']:.3f} | "
            f"{r['contended']} | {'yes' if r['kernels'] else 'no'} | {r['retest']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else measured.PACKAGE_DIR))
