"""The ``latbench-measured`` source: latencies the project (or a user) measured with ``latbench profile``.

Two places hold such folders, both laid out as ``<root>/<space>/<device>/{meta.json,
latency.parquet[, kernels.parquet, retest.json]}``:

- the project's own measurements, committed in the package (``latbench/data/measured/``), so a
  build works with no network and no mirror;
- folders a user registered with ``latbench data add-source DIR`` (copied, after validation, to
  ``LATBENCH_HOME/sources/<name>/``).

Unlike the HELP source, a measured device covers a sample of the space (the reference archs
first, then a seeded sample), so its latencies are keyed by arch *string*; the build maps them onto
the space's arch ids and leaves the rest of the matrix missing. Every file is validated: meta.json
against a schema, latencies finite and positive, arch strings valid in their space, no duplicates.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from latbench import paths
from latbench.errors import DataError, UnknownArchError
from latbench.spaces import space_class

PACKAGE_DIR = Path(__file__).parent / "measured"
SOURCE_NAME = "latbench-measured"
KERNEL_COLUMNS = ["arch", "layer", "op", "h", "cin", "cout", "kernel", "stride", "groups", "latency_ms"]


class Setting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    space: str
    runtime: str
    device: str
    threads: int
    batch: int
    precision: str
    warmup: int
    repeats: int


class Meta(BaseModel):
    """The ``meta.json`` a profile run writes first in every device folder."""

    model_config = ConfigDict(extra="allow")
    device: str
    space: str
    setting: Setting
    hardware: dict
    protocol_version: int
    seed: int
    started_at: str


@dataclass
class MeasuredDevice:
    meta: Meta
    archs: list[str]  # canonical strings
    latency: np.ndarray  # ms, aligned with archs
    kernels: object | None = None  # pyarrow.Table with KERNEL_COLUMNS, or None
    retest: dict | None = None
    folder: Path | None = None

    def metadata_row(self, source: str) -> dict:
        s, hw = self.meta.setting, self.meta.hardware
        where = hw.get("gpu_model") if s.device == "cuda" else f"{hw.get('cpu_model')} ({hw.get('cpu_cores')} cores)"
        runtime = {"torch": "PyTorch eager", "torch-graphs": "PyTorch + CUDA graphs", "onnxruntime": "ONNX Runtime CPU"}.get(s.runtime, s.runtime)
        threads = f", {s.threads} thread{'s' if s.threads > 1 else ''}" if s.device == "cpu" else ""
        return {
            "device": self.meta.device, "family": "server GPU" if s.device == "cuda" else "server CPU",
            "hardware": where, "batch_size": s.batch, "precision": s.precision, "source": source,
            "origin": "latbench profile",
            "description": f"{where}; {runtime}{threads}, batch {s.batch}, {s.precision}; torch {hw.get('torch')}"
                           + (f", onnxruntime {hw['onnxruntime']}" if s.runtime == "onnxruntime" and "onnxruntime" in hw else "")
                           + (f"; test-retest Spearman {self.retest['spearman']} on {self.retest['archs']} archs" if self.retest else ""),
        }


@dataclass
class MeasuredSet:
    """Every measured device found, per space."""

    devices: dict[str, list[MeasuredDevice]] = field(default_factory=dict)
    roots: list[Path] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(self.devices.values())


def user_sources_dir() -> Path:
    return paths.home() / "sources"


def package_dir() -> Path:
    """The committed measurements (``LATBENCH_MEASURED`` overrides it, e.g. to build without them)."""
    env = os.environ.get("LATBENCH_MEASURED")
    return Path(env).expanduser().resolve() if env is not None else PACKAGE_DIR


def roots() -> list[Path]:
    """The committed folder, then every user-added folder (sorted, so builds are reproducible)."""
    base = package_dir()
    out = [base] if base.is_dir() else []
    user = user_sources_dir()
    if user.is_dir():
        out += sorted(p for p in user.iterdir() if p.is_dir() and not p.name.startswith("."))
    return out


def read_all(folders: list[Path] | None = None) -> MeasuredSet:
    found = MeasuredSet(roots=list(folders if folders is not None else roots()))
    names: dict[str, Path] = {}
    for root in found.roots:
        for dev in read_root(root):
            key = f"{dev.meta.space}/{dev.meta.device}"
            if key in names:
                raise DataError(f"{dev.folder}: device {dev.meta.device!r} ({dev.meta.space}) is also in {names[key]}; rename one (`latbench profile --name`)")
            names[key] = dev.folder
            found.devices.setdefault(dev.meta.space, []).append(dev)
    return found


def read_root(root: Path) -> list[MeasuredDevice]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    devices = []
    for space_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dev_dir in sorted(p for p in space_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            devices.append(read_device(dev_dir))
    return devices


def read_device(folder: Path) -> MeasuredDevice:
    """Validate and read one device folder (meta.json + latency.parquet [+ kernels.parquet])."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    try:
        meta = Meta.model_validate_json((folder / "meta.json").read_bytes())
    except OSError:
        raise DataError(f"{folder}: no meta.json (is this a `latbench profile` output folder?)") from None
    except ValidationError as e:
        err = e.errors()[0]
        raise DataError(f"{folder / 'meta.json'}: invalid: {'.'.join(map(str, err['loc'])) or '(file)'}: {err['msg']}") from None
    if meta.space != folder.parent.name or meta.device != folder.name:
        raise DataError(f"{folder}: meta.json says {meta.space}/{meta.device}, but the folder is {folder.parent.name}/{folder.name}")
    path = folder / "latency.parquet"
    if not path.is_file():
        raise DataError(f"{path}: missing; finish the run (`latbench profile` again converts the JSONL) before adding it")
    try:
        space_cls = space_class(meta.space)
    except Exception as e:
        raise DataError(f"{folder}: {e}") from None
    try:
        t = pq.read_table(path, columns=["arch", "latency_ms"])
    except Exception as e:
        raise DataError(f"{path}: not a readable parquet file with columns arch, latency_ms ({type(e).__name__})") from None
    raw = t.column("arch").to_pylist()
    try:
        archs = [space_cls.canonical(a) for a in raw]
    except UnknownArchError as e:
        raise DataError(f"{path}: {e}") from None
    if len(set(archs)) != len(archs):
        raise DataError(f"{path}: duplicate archs")
    lat = np.asarray(t.column("latency_ms").to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = ~np.isfinite(lat) | (lat <= 0)
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} latencies are not finite and positive (e.g. {archs[int(np.argmax(bad))]!r})")
    kernels = None
    kpath = folder / "kernels.parquet"
    if kpath.is_file():
        try:
            kernels = pq.read_table(kpath)
        except Exception as e:
            raise DataError(f"{kpath}: unreadable ({type(e).__name__})") from None
        if kernels.column_names != KERNEL_COLUMNS:
            raise DataError(f"{kpath}: columns {kernels.column_names}, expected {KERNEL_COLUMNS}")
        kl = kernels.column("latency_ms").to_numpy()
        if not np.isfinite(kl).all() or (kl < 0).any():
            raise DataError(f"{kpath}: kernel latencies must be finite and >= 0")
    retest = None
    if (folder / "retest.json").is_file():
        retest = json.loads((folder / "retest.json").read_text())
    return MeasuredDevice(meta, archs, lat, kernels, retest, folder)


def add_source(folder: Path, name: str | None = None) -> Path:
    """Validate a profile output folder and register a copy under ``LATBENCH_HOME/sources``."""
    folder = Path(folder).resolve()
    devices = read_root(folder)  # raises on anything invalid: nothing is copied then
    if not devices:
        raise DataError(f"{folder}: no device folders (<space>/<device>/meta.json) inside")
    base = package_dir()
    committed = {(d.meta.space, d.meta.device) for d in (read_root(base) if base.is_dir() else [])}
    clash = [f"{d.meta.space}/{d.meta.device}" for d in devices if (d.meta.space, d.meta.device) in committed]
    if clash:
        raise DataError(f"{folder}: device name(s) {', '.join(clash)} already ship with latbench; rerun `latbench profile --name ...`")
    target = user_sources_dir() / (name or folder.name)
    if target.exists():
        raise DataError(f"{target}: a source with this name is already registered (pass --name, or remove it)")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for d in devices:
            dst = tmp / d.meta.space / d.meta.device
            dst.mkdir(parents=True)
            for f in ("meta.json", "latency.parquet", "kernels.parquet", "retest.json"):
                if (d.folder / f).is_file():
                    shutil.copy2(d.folder / f, dst / f)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
