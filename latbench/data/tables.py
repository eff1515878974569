"""What a source adapter returns: per space, arch strings and per-device latencies, plus provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SpaceTables:
    """One space's measurements from one source: arch strings by id, and latencies per device."""

    archs: list[str]
    latency: dict[str, np.ndarray]  # device -> ms, aligned with archs
    reference_ids: list[int] = field(default_factory=list)  # hardware-embedding reference archs


@dataclass
class SourceTables:
    name: str
    spaces: dict[str, SpaceTables]
    files: list[dict]  # provenance: path, sha256, url
