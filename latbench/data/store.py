"""Read the built dataset back into arrays (fast, cached): what tasks, protocol and methods use.

Also the on-disk layout that keeps a dataset in place whatever happens to a build::

    <parent>/<name>            -> .<name>.d/v-<ns>-<pid>   (a relative symlink: the dataset readers open)
    <parent>/.<name>.d/        versions: the current one, briefly the next one; build.lock; tmp-<pid>

A build writes ``.<name>.d/tmp-<pid>``, renames it to a version, then switches the symlink with
one ``os.replace`` (atomic: every reader sees the old dataset or the new one, never none) and
removes the old version. ``latbench.paths.data_dir()`` stays the path to open
(``datasets.load_dataset(str(data_dir()), "nb201")`` follows the link). A build holds
``build.lock`` (one build per dataset at a time) and first clears what killed builds left; a
dataset folder from before this layout is moved into ``.<name>.d`` at the next build. Should a
kill ever leave ``<name>`` missing while a whole version (or an ``.<name>.old-<pid>`` folder of
an older latbench) exists, the next read or build links it back (:func:`repair`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latbench import paths
from latbench.errors import DataError, LatbenchError, did_you_mean
from latbench.io import fsync_dir
from latbench.locks import FileLock, LockBusy, pid_alive
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
    r = root()
    return (r / "latbench.json").is_file() or (repair(r) and (r / "latbench.json").is_file())


def _require() -> Path:
    if not is_built():
        raise DataError(f"{root()}: no latbench dataset here; run `latbench data build` (or set LATBENCH_HOME)")
    return root()


@functools.cache
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


@functools.cache
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


@functools.cache
def load_kernels(space: str) -> dict:
    """Per-layer kernel latencies of the devices with a kernel table (``kernels-<space>`` config).

    device -> DataFrame sorted by (arch_id, layer) with columns arch_id, layer, the timed layer's
    signature (op, h, cin, cout, kernel, stride, groups: how ``latbench.kernels`` matches a row to
    its layer) and latency_ms; an empty dict when no device of the space has one (the HELP devices
    are end-to-end only).
    """
    import pyarrow.parquet as pq

    path = _require() / "data" / f"kernels-{space}.parquet"
    if not path.is_file():
        return {}
    want = ["device", "arch_id", "layer", "op", "h", "cin", "cout", "kernel", "stride", "groups", "latency_ms"]
    have = set(pq.read_schema(path).names)
    df = pq.read_table(path, columns=[c for c in want if c in have], read_dictionary=["op"] if "op" in have else None).to_pandas()
    df["arch_id"] = df["arch_id"].astype(np.int64)
    return {
        str(dev): g.drop(columns="device").sort_values(["arch_id", "layer"]).reset_index(drop=True)
        for dev, g in df.groupby("device", sort=True)
    }


@functools.cache
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
        flops=t.column("flops_m").to_numpy(),
        params=t.column("params_m").to_numpy(),
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


# ---- the dataset folder: a symlink switched atomically between version folders -----------------
LOCK_NAME = "build.lock"


def versions_dir(out: Path) -> Path:
    """``.<name>.d`` next to the dataset ``out``: its versions, build lock and temporary folders."""
    out = Path(out)
    return out.parent / f".{out.name}.d"


def current_version(out: Path) -> Path | None:
    """The version folder ``out`` links to, if ``out`` is such a link."""
    out = Path(out)
    if not out.is_symlink():
        return None
    target = Path(os.path.normpath(out.parent / os.readlink(out)))
    return target if target.parent == versions_dir(out) else None


def _versions(out: Path) -> list[Path]:
    """Whole versions (with latbench.json), newest first."""
    vd = versions_dir(out)
    if not vd.is_dir():
        return []
    found = []
    for p in vd.iterdir():
        parts = p.name.split("-")
        if p.name.startswith("v-") and len(parts) >= 3 and parts[1].isdigit() and (p / "latbench.json").is_file():
            found.append((int(parts[1]), p.name, p))
    return [p for _, _, p in sorted(found, reverse=True)]


def _legacy_old(out: Path) -> list[Path]:
    """``.<name>.old-<pid>`` folders: what an older latbench's two-rename swap left when killed in between."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    prefix = f".{out.name}.old-"
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())


def point(out: Path, version: Path) -> None:
    """Make ``out`` a relative symlink to ``version`` in one atomic rename (a symlink replaces a symlink)."""
    out = Path(out)
    link = versions_dir(out) / f"link-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(version, out.parent), link)
    try:
        os.replace(link, out)
    except BaseException:
        link.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)


def recover(out: Path, log=lambda msg: None) -> bool:
    """Under the build lock: if ``out`` holds no dataset but a whole one was left aside, link it back."""
    out = Path(out)
    if (out / "latbench.json").is_file() or (out.is_dir() and not out.is_symlink()):
        return False  # a dataset, or a real folder that is not ours to replace
    candidates = _versions(out)
    if not candidates:
        legacy = [p for p in _legacy_old(out) if (p / "latbench.json").is_file()]
        if not legacy:
            return False
        vd = versions_dir(out)
        vd.mkdir(parents=True, exist_ok=True)
        version = vd / f"v-0-{legacy[-1].name.rsplit('-', 1)[-1]}-recovered"
        os.rename(legacy[-1], version)
        candidates = [version]
    point(out, candidates[0])
    log(f"recovered the dataset at {out} (a build was stopped while switching datasets)")
    return True


def repair(out: Path) -> bool:
    """Reader side of :func:`recover`: best effort, never waits (a running build leaves a dataset anyway)."""
    out = Path(out)
    if out.is_dir() and not out.is_symlink():
        return False
    if not versions_dir(out).is_dir() and not _legacy_old(out):
        return False
    try:
        versions_dir(out).mkdir(parents=True, exist_ok=True)
        lock = FileLock(versions_dir(out) / LOCK_NAME).acquire(0)
    except (LockBusy, OSError):
        return False
    try:
        return recover(out)
    except OSError:
        return False
    finally:
        lock.release()


@contextlib.contextmanager
def build_lock(out: Path, timeout: float, log=lambda msg: None) -> Iterator[None]:
    """Hold the build lock of the dataset ``out``: waits up to ``timeout`` seconds for another build."""
    vd = versions_dir(out)
    try:
        vd.mkdir(parents=True, exist_ok=True)
        lock = FileLock(vd / LOCK_NAME)
    except OSError as e:
        raise DataError(f"{vd}: cannot create the build folder ({e.strerror or e})") from None
    try:
        lock.acquire(0)
    except LockBusy as e:
        log(f"waiting for another `latbench data build` ({e.holder}) of {out} to finish")
        try:
            lock.acquire(timeout)
        except LockBusy as e:
            raise DataError(
                f"{out}: another `latbench data build` ({e.holder}) is writing this dataset and did not finish "
                f"within {timeout:g} s; wait for it (or stop it), then build again"
            ) from None
    try:
        yield
    finally:
        lock.release()


def clean_stale(out: Path, log=lambda msg: None) -> None:
    """Under the build lock: remove what killed builds left (temporary folders, orphan versions, links)."""
    out = Path(out)
    vd = versions_dir(out)
    keep = current_version(out)
    stale: list[Path] = []
    if vd.is_dir():
        for p in vd.iterdir():
            if p.name == LOCK_NAME or p == keep:
                continue
            if p.name.startswith(("tmp-", "link-")) or (p.name.startswith("v-") and p.is_dir()):
                stale.append(p)  # no other build runs (we hold the lock): nothing here is in use
    if out.parent.is_dir():
        for p in out.parent.iterdir():  # the older layout's siblings (and the test suite's synthetic builder)
            for marker in (".tmp-", ".old-"):
                prefix = f".{out.name}{marker}"
                if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit() and not pid_alive(int(p.name[len(prefix) :])):
                    stale.append(p)
    size = 0
    for p in stale:
        if p.is_symlink() or p.is_file():
            p.unlink(missing_ok=True)
            continue
        size += sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(p, ignore_errors=True)
    if stale:
        log(f"removed {len(stale)} leftover(s) of stopped builds ({size / 1e6:.1f} MB)")
