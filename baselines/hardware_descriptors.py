"""Hardware descriptor table for every device name in latbench's data (used by ``mlp-hwparams``).

Syed & Srinivasan (arXiv 2101.00732) append a GPU's CUDA cores, memory size and memory bandwidth
to the one-hot arch vector; this table extends the idea to every hardware family in latbench's
data (GPUs, CPUs, phones, an embedded board, two simulated accelerators): family, cores, clock,
memory and bandwidth, with each row naming its source and the fields to double-check (``unsure``).
Device names carry the batch size as a ``_<n>`` suffix (none: batch 1). See the documentation
page baselines/mlp (``docs/baselines/mlp.md``).
"""

from __future__ import annotations

import math
import re

import numpy as np

from latbench.errors import MethodError

_NV = "NVIDIA product page / data sheet"
_ARK = "Intel ARK (cores, base clock, 6 memory channels, max DDR4 speed); bandwidth derived = 6 x MT/s x 8 B"

#: hardware key -> descriptor row. Keys are device names without the batch suffix.
HARDWARE: dict[str, dict] = {
    # ---- desktop / server GPUs --------------------------------------------------------------
    "1080ti": dict(
        family="desktop GPU",
        name="NVIDIA GeForce GTX 1080 Ti (Pascal)",
        cores=3584,
        clock_ghz=1.480,
        memory_gb=11,
        bandwidth_gbs=484.0,
        source=_NV,
        unsure=(),
    ),
    "2080ti": dict(
        family="desktop GPU",
        name="NVIDIA GeForce RTX 2080 Ti (Turing)",
        cores=4352,
        clock_ghz=1.350,
        memory_gb=11,
        bandwidth_gbs=616.0,
        source=_NV + "; cores/memory/bandwidth identical to Syed & Srinivasan's code",
        unsure=(),
    ),
    "titan_rtx": dict(
        family="desktop GPU",
        name="NVIDIA TITAN RTX (Turing)",
        cores=4608,
        clock_ghz=1.350,
        memory_gb=24,
        bandwidth_gbs=672.0,
        source=_NV,
        unsure=(),
    ),
    "titanx": dict(
        family="desktop GPU",
        name="NVIDIA TITAN X (Pascal, 2016)",
        cores=3584,
        clock_ghz=1.417,
        memory_gb=12,
        bandwidth_gbs=480.0,
        source=_NV + "; HELP does not say which Titan X: Pascal inferred because its latencies sit next to "
        "the 1080 Ti / Titan Xp ones (NB201 batch 256 median: titanx 24.6 ms, 1080ti 22.6, titanxp 20.6); a "
        "Maxwell GTX TITAN X (3072 cores, 336.5 GB/s, ~6 vs ~11-12 FP32 TFLOPS) should be far slower",
        unsure=("variant",),
    ),
    "titanxp": dict(
        family="desktop GPU",
        name="NVIDIA TITAN Xp (Pascal)",
        cores=3840,
        clock_ghz=1.405,
        memory_gb=12,
        bandwidth_gbs=547.7,
        source=_NV,
        unsure=(),
    ),
    "v100": dict(
        family="desktop GPU",
        name="NVIDIA Tesla V100 (Volta)",
        cores=5120,
        clock_ghz=1.245,
        memory_gb=16,
        bandwidth_gbs=900.0,
        source=_NV + "; form factor (PCIe/SXM2) and 16 vs 32 GB not stated by HELP",
        unsure=("memory_gb", "clock_ghz"),
    ),
    # ---- desktop / server CPUs (per socket) -----------------------------------------------------
    "gold_6226": dict(
        family="desktop CPU",
        name="Intel Xeon Gold 6226",
        cores=12,
        clock_ghz=2.7,
        memory_gb=None,
        bandwidth_gbs=140.8,
        source=_ARK + " (DDR4-2933)",
        unsure=("bandwidth_gbs",),
    ),
    "gold_6240": dict(
        family="desktop CPU",
        name="Intel Xeon Gold 6240",
        cores=18,
        clock_ghz=2.6,
        memory_gb=None,
        bandwidth_gbs=140.8,
        source=_ARK + " (DDR4-2933)",
        unsure=("bandwidth_gbs",),
    ),
    "silver_4114": dict(
        family="desktop CPU",
        name="Intel Xeon Silver 4114",
        cores=10,
        clock_ghz=2.2,
        memory_gb=None,
        bandwidth_gbs=115.2,
        source=_ARK + " (DDR4-2400)",
        unsure=("bandwidth_gbs",),
    ),
    "silver_4210r": dict(
        family="desktop CPU",
        name="Intel Xeon Silver 4210R",
        cores=10,
        clock_ghz=2.4,
        memory_gb=None,
        bandwidth_gbs=115.2,
        source=_ARK + " (DDR4-2400)",
        unsure=("bandwidth_gbs",),
    ),
    # ---- phones ---------------------------------------------------------------------------------
    "samsung_a50": dict(
        family="mobile phone",
        name="Samsung Galaxy A50 (Exynos 9610: 4x A73 2.3 GHz + 4x A53 1.7 GHz)",
        cores=8,
        clock_ghz=2.3,
        memory_gb=4,
        bandwidth_gbs=None,
        source="Samsung Exynos 9610 product page; RAM 4 or 6 GB by model",
        unsure=("memory_gb",),
    ),
    "samsung_s7": dict(
        family="mobile phone",
        name="Samsung Galaxy S7 (Exynos 8890 or Snapdragon 820 by region)",
        cores=8,
        clock_ghz=2.3,
        memory_gb=4,
        bandwidth_gbs=None,
        source="Samsung Galaxy S7 spec sheet (4 GB LPDDR4); SoC variant not stated by HELP",
        unsure=("cores", "clock_ghz"),
    ),
    "pixel2": dict(
        family="mobile phone",
        name="Google Pixel 2 (Snapdragon 835: 4x 2.35 GHz + 4x 1.9 GHz)",
        cores=8,
        clock_ghz=2.35,
        memory_gb=4,
        bandwidth_gbs=29.8,
        source="Qualcomm Snapdragon 835 spec (LPDDR4X 1866 MHz dual-channel); Google Pixel 2 spec (4 GB)",
        unsure=("bandwidth_gbs",),
    ),
    "essential_ph_1": dict(
        family="mobile phone",
        name="Essential Phone PH-1 (Snapdragon 835)",
        cores=8,
        clock_ghz=2.35,
        memory_gb=4,
        bandwidth_gbs=29.8,
        source="Qualcomm Snapdragon 835 spec; Essential PH-1 spec (4 GB)",
        unsure=("bandwidth_gbs",),
    ),
    "pixel3": dict(
        family="mobile phone",
        name="Google Pixel 3 (Snapdragon 845: 4x 2.8 GHz + 4x 1.77 GHz)",
        cores=8,
        clock_ghz=2.8,
        memory_gb=4,
        bandwidth_gbs=29.8,
        source="Qualcomm Snapdragon 845 spec (LPDDR4X 1866 MHz, 4x16-bit); Google Pixel 3 spec (4 GB)",
        unsure=("bandwidth_gbs",),
    ),
    # ---- embedded / accelerators ----------------------------------------------------------------
    "raspi4": dict(
        family="embedded",
        name="Raspberry Pi 4 Model B (BCM2711, 4x Cortex-A72 1.5 GHz)",
        cores=4,
        clock_ghz=1.5,
        memory_gb=4,
        bandwidth_gbs=12.8,
        source="Raspberry Pi 4 product brief (LPDDR4-3200, 1/2/4/8 GB); bandwidth derived = 3200 MT/s x 4 B",
        unsure=("memory_gb", "bandwidth_gbs"),
    ),
    "eyeriss": dict(
        family="ASIC",
        name="Eyeriss (HW-NAS-Bench's simulated estimate)",
        cores=168,
        clock_ghz=0.2,
        memory_gb=None,
        bandwidth_gbs=None,
        source="Chen et al., JSSC 2017 (168 PEs, 200 MHz, 108 KB global buffer); HW-NAS-Bench simulates it",
        unsure=("cores", "clock_ghz"),
    ),
    "fpga": dict(
        family="FPGA",
        name="FPGA accelerator on Xilinx ZC706 (Zynq-7045; HW-NAS-Bench's estimate)",
        cores=900,
        clock_ghz=None,
        memory_gb=1,
        bandwidth_gbs=None,
        source="Xilinx Zynq-7000 product table (XC7Z045: 900 DSP slices); ZC706 board has 1 GB PS DDR3; "
        "board recalled from HW-NAS-Bench, design clock unknown",
        unsure=("cores", "memory_gb"),
    ),
}
HARDWARE["titan_xp"] = HARDWARE["titanxp"]  # the OFA files spell it with an underscore

FAMILIES = ("desktop GPU", "desktop CPU", "mobile phone", "embedded", "ASIC", "FPGA")
FEATURE_NAMES = tuple(f"family={f}" for f in FAMILIES) + (
    "log2_cores",
    "clock_ghz",
    "log2_memory_gb",
    "log2_bandwidth_gbs",
    "log2_batch",
)

_BATCH = re.compile(r"^(?P<hw>.+)_(?P<bs>\d+)$")


def split_device(device: str) -> tuple[str, int]:
    """(hardware key, batch size) of a device name; the batch is 1 when the name has no suffix."""
    m = _BATCH.match(device)
    if m and m.group("hw") in HARDWARE:
        return m.group("hw"), int(m.group("bs"))
    if device in HARDWARE:
        return device, 1
    raise MethodError(
        f"device {device!r} has no hardware descriptor in baselines/hardware_descriptors.py; "
        f"add a row for its hardware (known: {', '.join(sorted(HARDWARE))})"
    )


def lookup(device: str) -> dict:
    """The descriptor row of a device, with its batch size added."""
    key, batch = split_device(device)
    return {"device": device, "hardware": key, "batch_size": batch, **HARDWARE[key]}


def _log2(v) -> float:
    return math.log2(v) if v is not None and v > 0 else float("nan")


def raw_features(device: str) -> np.ndarray:
    """The descriptor vector (``FEATURE_NAMES`` order); unknown values are NaN."""
    row = lookup(device)
    fam = [1.0 if row["family"] == f else 0.0 for f in FAMILIES]
    clock = float(row["clock_ghz"]) if row["clock_ghz"] is not None else float("nan")
    return np.array(
        fam + [_log2(row["cores"]), clock, _log2(row["memory_gb"]), _log2(row["bandwidth_gbs"]), _log2(row["batch_size"])],
        dtype=np.float64,
    )


def feature_matrix(devices) -> np.ndarray:
    return np.stack([raw_features(d) for d in devices])
