"""Metadata for every device name in the data: family, hardware, batch size, precision, origin, retest noise.

A "device" in latbench is hardware plus measurement settings (batch size, runtime, precision), so
``1080ti_1`` and ``1080ti_32`` are two devices. The batch size is parsed from the name's suffix
where the name encodes one. Precision is recorded only where the upstream source states it; HELP
does not, so it is left empty rather than guessed.
"""

from __future__ import annotations

import re

from latbench.errors import DataError

FAMILIES = ("desktop GPU", "desktop CPU", "server GPU", "server CPU", "mobile phone", "embedded", "ASIC", "FPGA")

#: name prefix -> (family, hardware, origin of the measurements)
_HELP_HW = {
    "1080ti": ("desktop GPU", "NVIDIA GeForce GTX 1080 Ti", "HELP"),
    "2080ti": ("desktop GPU", "NVIDIA GeForce RTX 2080 Ti", "HELP"),
    "titan_rtx": ("desktop GPU", "NVIDIA Titan RTX", "HELP"),
    "titanx": ("desktop GPU", "NVIDIA Titan X", "HELP"),
    "titanxp": ("desktop GPU", "NVIDIA Titan Xp", "HELP"),
    "titan_xp": ("desktop GPU", "NVIDIA Titan Xp", "HELP"),
    "v100": ("desktop GPU", "NVIDIA Tesla V100 (server GPU)", "HELP"),
    "gold_6226": ("desktop CPU", "Intel Xeon Gold 6226", "HELP"),
    "gold_6240": ("desktop CPU", "Intel Xeon Gold 6240", "HELP"),
    "silver_4114": ("desktop CPU", "Intel Xeon Silver 4114", "HELP"),
    "silver_4210r": ("desktop CPU", "Intel Xeon Silver 4210R", "HELP"),
    "samsung_a50": ("mobile phone", "Samsung Galaxy A50 (Exynos 9610)", "HELP"),
    "samsung_s7": ("mobile phone", "Samsung Galaxy S7", "HELP"),
    "pixel2": ("mobile phone", "Google Pixel 2 (Snapdragon 835)", "HELP"),
    "essential_ph_1": ("mobile phone", "Essential Phone PH-1 (Snapdragon 835)", "HELP"),
    "pixel3": ("mobile phone", "Google Pixel 3 (Snapdragon 845)", "HW-NAS-Bench via HELP"),
    "raspi4": ("embedded", "Raspberry Pi 4 (ARM Cortex-A72 CPU)", "HW-NAS-Bench via HELP"),
    "eyeriss": ("ASIC", "Eyeriss accelerator (HW-NAS-Bench's estimate)", "HW-NAS-Bench via HELP"),
    "fpga": ("FPGA", "FPGA accelerator (HW-NAS-Bench's estimate)", "HW-NAS-Bench via HELP"),
}

_BATCH = re.compile(r"^(?P<hw>.+)_(?P<bs>\d+)$")


def describe(name: str, source: str) -> dict:
    """The metadata row of a device name; unknown names fail loudly (new hardware needs a row)."""
    hw_key, batch = name, None
    m = _BATCH.match(name)
    if m and m.group("hw") in _HELP_HW:
        hw_key, batch = m.group("hw"), int(m.group("bs"))
    if hw_key not in _HELP_HW:
        raise DataError(f"device {name!r} from source {source!r} has no metadata row in latbench/data/devices.py")
    family, hardware, origin = _HELP_HW[hw_key]
    desc = f"{hardware}" + (f", batch size {batch}" if batch else "") + f"; measurements from {origin}"
    return {
        "device": name,
        "family": family,
        "hardware": hardware,
        "batch_size": batch,
        "precision": None,
        "source": source,
        "origin": origin,
        "description": desc,
        # test-retest noise: only known for devices measured twice (latbench's own; HELP did not retest)
        "retest_spearman": None,
        "retest_median_rel_diff": None,
    }
