"""Adapter for HELP's public latency files (github.com/HayeonLee/HELP, ``data/``).

Layout: ``data/<space dir>/latency/<device>.pt`` is a list of per-arch latencies in ms, aligned
with the space's arch list: NB201 in official index order (``str_arch2idx.pt``), FBNet from
``metainfo.pt`` (22 op indices per arch; ``arch.pt`` holds the same lists and is cross-checked),
OFA from ``ofa_archs.pt`` (ks/e/d/r dicts). ``hardware_embedding_index.pt`` lists the 10 reference
archs of HELP's hardware embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latbench.data.safe_pickle import load_pt
from latbench.data.tables import SourceTables, SpaceTables
from latbench.errors import DataError, UnknownArchError
from latbench.spaces import space_class

SPACE_DIRS = {"nb201": "data/nasbench201", "fbnet": "data/fbnet", "ofa": "data/ofa"}


def read_help(source, files: dict[str, Path]):
    spaces = {name: _read_space(name, prefix, files) for name, prefix in SPACE_DIRS.items()}
    manifest = source.manifest
    return SourceTables(name=source.name, spaces=spaces, files=manifest["files"])


def _read_space(space: str, prefix: str, files: dict[str, Path]):
    archs = _read_archs(space, prefix, files)
    latency = {}
    for rel in sorted(files):
        if rel.startswith(f"{prefix}/latency/") and rel.endswith(".pt"):
            device = rel.rsplit("/", 1)[1][:-3]
            latency[device] = _latency_array(files[rel], len(archs))
    ref_path = files[f"{prefix}/hardware_embedding_index.pt"]
    refs = _expect(load_pt(ref_path), list, ref_path)
    if any(not _is_int(i) or not 0 <= i < len(archs) for i in refs):
        raise DataError(f"{ref_path}: reference arch index out of range [0, {len(archs)}) or not an int")
    refs = [int(i) for i in refs]
    return SpaceTables(archs=archs, latency=latency, reference_ids=refs)


def _read_archs(space: str, prefix: str, files: dict[str, Path]) -> list[str]:
    cls = space_class(space)
    if space == "nb201":
        path = files[f"{prefix}/str_arch2idx.pt"]
        mapping = _expect(load_pt(path), dict, path)
        archs: list[str | None] = [None] * len(mapping)
        for s, i in mapping.items():
            if not isinstance(i, int) or not 0 <= i < len(mapping) or archs[i] is not None:
                raise DataError(f"{path}: index {i!r} of {s!r} is not a unique id in [0, {len(mapping)})")
            archs[i] = _canonical(cls.canonical, s, path)
        return archs  # type: ignore[return-value]
    if space == "fbnet":
        path = files[f"{prefix}/metainfo.pt"]
        entries = _expect(_expect(load_pt(path), dict, path).get("arch"), list, path)
        bad = next((i for i, a in enumerate(entries) if not isinstance(a, dict) or "op_idx_list" not in a), None)
        if bad is not None:
            raise DataError(f"{path}: arch {bad} is not a dict with an 'op_idx_list'")
        raw = [a["op_idx_list"] for a in entries]
        archs = [_canonical(cls.from_raw, a, path) for a in raw]
        alt_path = files[f"{prefix}/arch.pt"]
        alt = _expect(load_pt(alt_path), list, alt_path)
        if len(alt) != len(raw) or any(not isinstance(a, (list, tuple)) or list(a) != list(b) for a, b in zip(alt, raw)):
            raise DataError(f"{alt_path}: arch list disagrees with {path.name}")
        return archs
    path = files[f"{prefix}/ofa_archs.pt"]
    raw = _expect(_expect(load_pt(path), dict, path).get("arch"), list, path)
    return [_canonical(cls.from_raw, a, path) for a in raw]


def _canonical(fn, raw, path: Path) -> str:
    try:
        return fn(raw)
    except UnknownArchError as e:
        raise DataError(f"{path}: unknown architecture: {e}") from None


def _expect(obj, typ, path: Path):
    if not isinstance(obj, typ):
        raise DataError(f"{path}: expected a {typ.__name__}, found {type(obj).__name__}")
    return obj


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number_type(t: type) -> bool:
    # np.asarray(..., float64) would also take "1.5", True and [1.5]: not latencies
    return issubclass(t, (int, float, np.integer, np.floating)) and not issubclass(t, (bool, np.bool_))


def _latency_array(path: Path, n: int) -> np.ndarray:
    values = _expect(load_pt(path), list, path)
    if len(values) != n:
        raise DataError(f"{path}: {len(values)} latencies, expected {n} (one per arch)")
    if not all(_is_number_type(t) for t in set(map(type, values))):
        bad = next(i for i, v in enumerate(values) if not _is_number_type(type(v)))
        raise DataError(f"{path}: latencies are not all numbers (arch {bad}: {type(values[bad]).__name__} {values[bad]!r:.40})")
    arr = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: {int(bad.sum())} latencies are NaN, infinite or not positive (first at arch {i}: {arr[i]})")
    return arr
