"""Read the built dataset back into arrays (fast, cached): what tasks, protocol and methods use."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latbench import paths
from latbench.errors import DataError, LatbenchError, did_you_mean
from latbench.spaces import SearchSpace, space_class


@dataclass(frozen=True)
class LatencyTable:
    """All latencies of one space: ``values[d, a]`` = ms of arch id ``a`` on ``devices[d]``.

    NaN where a device has no measurement of an arch (profiler-measured devices cover a sample).
    """

    space: str
    devices: tuple[str, ...]
    values: np.ndarray

    def device(self, name: str) -> np.ndarray:
        try:
            return self.values[self.devices.index(name)]
        except ValueError:
            raise LatbenchError(f"{self.space}: unknown device {name!r}{did_you_mean(name, self.devices)}") from None

    def measured(self, names) -> np.ndarray:
        """Arch ids measured on every device in ``names``."""
        return np.flatnonzero(np.isfinite(self.rows(names)).all(axis=0))

    def complete_devices(self) -> tuple[str, ...]:
        """Devices with a latency for every arch of the space (the HELP devices)."""
        return tuple(d for d, row in zip(self.devices, self.values) if np.isfinite(row).all())

    def rows(self, names) -> np.ndarray:
        return np.stack([self.device(n) for n in names]) if len(names) else np.zeros((0, self.values.shape[1]))


def root() -> Path:
    return paths.data_dir()


def is_built() -> bool:
    return (root() / "latbench.json").is_file()


def _require() -> Path:
    if not is_built():
        raise DataError(f"{root()}: no latbench dataset here; run `latbench data build` (or set LATBENCH_HOME)")
    return root()


@functools.lru_cache(maxsize=None)
def info() -> dict:
    return json.loads((_require() / "latbench.json").read_text())


def data_hash(tasks) -> str:
    """sha256 of the data ``tasks`` read: arch strings and latencies of their spaces' devices.

    Unlike the dataset's content hash it does not change when devices the tasks do not use are
    added (e.g. a new measured device), so leaderboard entries stay comparable across such builds.
    """
    import hashlib

    hashes = info().get("device_hashes")
    if hashes is None:
        raise DataError("the built dataset predates per-device hashes: run `latbench data build` again")
    lines = set()
    for t in tasks:
        for dev in (*t.source, *t.valid, *t.target):
            h = hashes.get(t.space, {}).get(dev)
            if h is None:
                raise DataError(f"task {t.id}: device {dev!r} ({t.space}) is not in the built dataset")
            lines.add(f"{t.space}/{dev}:{h}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def load_latency(space: str) -> LatencyTable:
    import pyarrow.parquet as pq

    path = _require() / "data" / f"{space}.parquet"
    if not path.is_file():
        raise DataError(f"{path}: space {space!r} is not in the built dataset (spaces: {', '.join(info()['spaces'])})")
    t = pq.read_table(path, columns=["arch_id", "device", "latency_ms"])
    dev = t.column("device").combine_chunks().dictionary_encode()
    names = tuple(dev.dictionary.to_pylist())
    order = np.argsort(names)
    codes = np.argsort(order)[dev.indices.to_numpy()]
    n_archs = int(t.column("arch_id").to_numpy().max()) + 1
    values = np.full((len(names), n_archs), np.nan)
    values[codes, t.column("arch_id").to_numpy()] = t.column("latency_ms").to_numpy()
    return LatencyTable(space, tuple(sorted(names)), values)


@functools.lru_cache(maxsize=None)
def load_kernels(space: str) -> dict:
    """Per-layer kernel latencies of the devices with a kernel table (``kernels-<space>`` config).

    device -> DataFrame sorted by (arch_id, layer) with columns arch_id, layer, latency_ms; an empty
    dict when no device of the space has one (the HELP devices are end-to-end only).
    """
    import pyarrow.parquet as pq

    path = _require() / "data" / f"kernels-{space}.parquet"
    if not path.is_file():
        return {}
    df = pq.read_table(path, columns=["device", "arch_id", "layer", "latency_ms"]).to_pandas()
    df["arch_id"] = df["arch_id"].astype(np.int64)
    return {str(dev): g.drop(columns="device").sort_values(["arch_id", "layer"]).reset_index(drop=True)
            for dev, g in df.groupby("device", sort=True)}


@functools.lru_cache(maxsize=None)
def load_space(space: str) -> SearchSpace:
    """The space as in the built dataset (arch ids = dataset ``arch_id``), with cached features."""
    import pyarrow.parquet as pq

    path = _require() / "data" / f"archs-{space}.parquet"
    if not path.is_file():
        raise DataError(f"{path}: no arch table for space {space!r}; run `latbench data build`")
    t = pq.read_table(path)
    meta = t.schema.metadata
    n_nodes, n_feat = int(meta[b"graph_nodes"]), int(meta[b"node_features"])
    obj = space_class(space)(t.column("arch").to_pylist())
    n = t.num_rows

    def flat(col, dtype):
        return np.asarray(t.column(col).combine_chunks().flatten().to_numpy(), dtype=dtype)

    obj.set_features(
        flops=t.column("flops_m").to_numpy(), params=t.column("params_m").to_numpy(),
        activations=t.column("activations_m").to_numpy(),
        onehot=flat("onehot", np.float32).reshape(n, -1),
        adjacency=flat("adjacency", np.float32).reshape(n, n_nodes, n_nodes),
        node_features=flat("node_features", np.float32).reshape(n, n_nodes, n_feat),
    )
    obj.reference_ids = np.flatnonzero(t.column("reference").to_numpy(zero_copy_only=False))
    return obj


def load_devices() -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(_require() / "data" / "devices.parquet").to_pylist()


def clear_cache() -> None:
    for fn in (info, load_latency, load_kernels, load_space):
        fn.cache_clear()


#: The name the rest of latbench uses: a space with its dataset features (cached per process).
get_space = load_space
