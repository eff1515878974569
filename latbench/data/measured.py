"""The ``latbench-measured`` source: latencies the project (or a user) measured with ``latbench
profile``, or imported from elsewhere (``latbench data import``, :mod:`latbench.data.imports`).

Two places hold such folders, both laid out as ``<root>/<space>/<device>/{meta.json,
latency.parquet[, kernels.parquet, retest.json]}``. A ``meta.json`` is a profile run's
(:class:`Meta`: every setting required) unless it names an ``origin`` other than ``latbench
profile``: then it is imported data (:class:`ImportedMeta`), whose other fields may be missing or
null (unknown).

- the project's own measurements, committed in the package (``latbench/data/measured/``), so a
  build works with no network and no mirror;
- folders a user registered with ``latbench data add-source DIR`` (copied, after validation, to
  ``LATBENCH_HOME/sources/<name>/``).

Unlike the HELP source, a measured device covers a sample of the space (the reference archs
first, then a seeded sample), so its latencies are keyed by arch *string*; the build maps them onto
the space's arch ids and leaves the rest of the matrix missing. Every file is validated: meta.json
against a schema (its settings as ``latbench profile`` checks them, the device name by
:data:`latbench.text.NAME_PATTERN`), at least one arch, latencies finite and positive, arch strings
valid in their space, no duplicates, the kernel table's columns, types and archs, ``retest.json``.

``add_source`` checks everything ``data build`` will read before it registers anything, so a
registered source never breaks a build: the source name (one safe folder name under
``LATBENCH_HOME/sources``), device names unique across the committed data, every registered
source and the pinned upstream (HELP) devices, and, when the built dataset holds HELP's data,
archs that exist in HELP's sample of the space. ``list_sources`` / ``remove_source`` back
``latbench data sources list|remove``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from latbench import paths
from latbench.errors import DataError, LatbenchError, UnknownArchError, did_you_mean
from latbench.locks import FileLock, LockBusy
from latbench.spaces import space_class
from latbench.text import name_problem, slug

PACKAGE_DIR = Path(__file__).parent / "measured"
SOURCE_NAME = "latbench-measured"
KERNEL_COLUMNS = ["arch", "layer", "op", "h", "cin", "cout", "kernel", "stride", "groups", "latency_ms"]
#: What to do with latencies keyed by index (the message of every check that finds one).
INDEX_HINT = (
    "latbench keys latencies by arch string (e.g. nb201 '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|'); "
    "for a table keyed by index use `latbench data import` with an arch_id column (the dataset's arch ids: "
    "NAS-Bench-201's official index for nb201)"
)
#: Seconds add-source / sources remove wait for another one to finish.
REGISTRY_WAIT = 30.0


#: ``origin`` of the devices measured by ``latbench profile`` (imported devices carry their own).
PROFILE_ORIGIN = "latbench profile"


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


def _safe_device(v: str) -> str:
    if name_problem(v):
        raise ValueError(f"device {name_problem(v)}")
    return v


def _hardware_text(v: dict) -> dict:
    for key in ("name", "cpu_model", "gpu_model", "torch", "onnxruntime"):  # what the card and devices table show
        if v.get(key) is not None and not isinstance(v[key], str):
            raise ValueError(f"{key} must be a string or null")
    cores = v.get("cpu_cores")
    if cores is not None and (not isinstance(cores, int) or isinstance(cores, bool) or cores < 1):
        raise ValueError("cpu_cores must be an integer >= 1, or null")
    return v


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

    check_device = field_validator("device")(_safe_device)
    check_hardware = field_validator("hardware")(_hardware_text)

    @property
    def origin(self) -> str:
        return PROFILE_ORIGIN

    @model_validator(mode="after")
    def _consistent(self) -> Meta:
        from latbench.measure.profiler import ProfileError
        from latbench.measure.profiler import Setting as ProfileSetting

        if self.setting.space != self.space:
            raise ValueError(f"setting.space {self.setting.space!r} differs from space {self.space!r}")
        try:
            ProfileSetting(**self.setting.model_dump()).check()
        except ProfileError as e:
            raise ValueError(f"setting: {e}") from None
        refs = (self.model_extra or {}).get("reference_archs")
        if refs is not None and (not isinstance(refs, list) or not all(isinstance(a, str) for a in refs)):
            raise ValueError("reference_archs must be a list of arch strings")
        return self


class ImportedSetting(BaseModel):
    """How an imported device ran: every field may be null (unknown), the runtime is free text."""

    model_config = ConfigDict(extra="forbid")
    runtime: str | None = None
    device: str | None = None  # "cpu" / "cuda" where known
    threads: int | None = Field(default=None, ge=1)
    batch: int | None = Field(default=None, ge=1)
    precision: str | None = None


class ImportedMeta(BaseModel):
    """The ``meta.json`` of a device measured elsewhere (written by ``latbench data import``, or by hand).

    Only ``device``, ``space`` and ``origin`` (who measured it, how: anything but ``"latbench
    profile"``) are required; every other field may be missing or null, and is shown as unknown.
    """

    model_config = ConfigDict(extra="allow")
    device: str
    space: str
    origin: str = Field(min_length=1, max_length=200)
    family: str | None = None
    hardware: dict = Field(default_factory=dict)
    setting: ImportedSetting = Field(default_factory=ImportedSetting)
    seed: int | None = None
    started_at: str | None = None

    check_device = field_validator("device")(_safe_device)
    check_hardware = field_validator("hardware")(_hardware_text)

    @field_validator("origin")
    @classmethod
    def _not_profile(cls, v: str) -> str:
        if v.strip() == PROFILE_ORIGIN:
            raise ValueError(f"{PROFILE_ORIGIN!r} is the origin of `latbench profile` output, whose meta.json has its settings")
        return v

    @field_validator("family")
    @classmethod
    def _family(cls, v: str | None) -> str | None:
        from latbench.data.devices import FAMILIES

        if v is not None and v not in FAMILIES:
            raise ValueError(f"family {v!r} is not one of {', '.join(FAMILIES)} (or null: unknown)")
        return v


def parse_meta(data: bytes) -> Meta | ImportedMeta:
    """A device folder's ``meta.json``: imported data when it names an ``origin`` other than
    ``latbench profile``, else a profile run's (whose settings are all required)."""
    import json

    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        raw = None
    if isinstance(raw, dict) and raw.get("origin") not in (None, PROFILE_ORIGIN):
        return ImportedMeta.model_validate(raw)
    return Meta.model_validate_json(data)


class Retest(BaseModel):
    """``retest.json``: the test-retest noise of a device (what the dataset's device description quotes)."""

    model_config = ConfigDict(extra="allow")
    archs: int
    spearman: float | None
    median_abs_rel_diff: float | None = None

    @field_validator("archs")
    @classmethod
    def _archs(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("spearman")
    @classmethod
    def _rho(cls, v: float | None) -> float | None:
        if v is not None and not -1.0 <= v <= 1.0:
            raise ValueError("must be in [-1, 1] or null")
        return v


@dataclass
class MeasuredDevice:
    meta: Meta | ImportedMeta
    archs: list[str]  # canonical strings
    latency: np.ndarray  # ms, aligned with archs
    kernels: object | None = None  # pyarrow.Table with KERNEL_COLUMNS, or None
    retest: dict | None = None
    folder: Path | None = None

    @property
    def imported(self) -> bool:
        return isinstance(self.meta, ImportedMeta)

    def metadata_row(self, source: str, also: dict | None = None) -> dict:
        """The device's row of the ``devices`` config; unknown fields are null (and "unknown" in the description).

        The config has one row per device name, and one name may be measured in several spaces:
        ``also`` is the row made from the same device in another space. The retest columns then
        hold the worst of the spaces (lowest Spearman, largest median relative difference) and the
        description quotes each space's; ``latbench.json`` keeps every space's ``retest.json``.
        """
        s, hw = self.meta.setting, self.meta.hardware
        gpu = s.device == "cuda"
        name = hw.get("name") or (hw.get("gpu_model") if gpu else hw.get("cpu_model")) or hw.get("cpu_model")
        cores = hw.get("cpu_cores")
        where = (name or "unknown hardware") + (f" ({cores} cores)" if cores and not gpu else "")
        if self.imported:
            family = self.meta.family
        else:
            family = "server GPU" if gpu else "server CPU"
        runtime = {"torch": "PyTorch eager", "torch-graphs": "PyTorch + CUDA graphs", "onnxruntime": "ONNX Runtime CPU"}.get(
            s.runtime, s.runtime or "runtime unknown"
        )
        threads = f", {s.threads} thread{'s' if s.threads > 1 else ''}" if s.threads and not gpu else ""
        versions = ""
        if not self.imported:
            versions = f"; torch {hw.get('torch')}" + (
                f", onnxruntime {hw['onnxruntime']}" if s.runtime == "onnxruntime" and "onnxruntime" in hw else ""
            )
        retest = self.retest or {}
        rho, diff = retest.get("spearman"), retest.get("median_abs_rel_diff")
        noise = [f"{rho} on {retest['archs']} {self.meta.space} archs"] if rho is not None else []
        if also is not None:  # the same device measured in another space
            tail = also["description"].partition(_NOISE)[2]
            noise = ([tail] if tail else []) + noise
            rho = min((x for x in (rho, also.get("retest_spearman")) if x is not None), default=None)
            diff = max((x for x in (diff, also.get("retest_median_rel_diff")) if x is not None), default=None)
        description = (
            f"{where}; {runtime}{threads}, batch {s.batch or 'unknown'}, {s.precision or 'precision unknown'}"
            + versions
            + (f"; measured by {self.meta.origin}" if self.imported else "")
            + (_NOISE + ", ".join(noise) if noise else "")
        )
        return {
            "device": self.meta.device,
            "family": family,
            "hardware": name,
            "batch_size": s.batch,
            "precision": s.precision,
            "source": source,
            "origin": self.meta.origin,
            "description": description,
            "retest_spearman": rho,
            "retest_median_rel_diff": diff,
        }


_NOISE = "; test-retest Spearman "


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
    user = user_sources_dir()
    for root in found.roots:
        try:
            devices = read_root(root)
        except DataError as e:
            if Path(root).parent != user:
                raise
            # registered before add-source checked everything: say how to get rid of it
            raise DataError(
                f"registered source {root.name!r}: {e} (remove it with `latbench data sources remove {root.name}`)"
            ) from None
        for dev in devices:
            key = f"{dev.meta.space}/{dev.meta.device}"
            if key in names:
                raise DataError(
                    f"{dev.folder}: device {dev.meta.device!r} ({dev.meta.space}) is also in {names[key]}; "
                    "rename one (`latbench profile --name`)"
                )
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
        meta = parse_meta((folder / "meta.json").read_bytes())
    except OSError:
        raise DataError(
            f"{folder}: no meta.json (is this a `latbench profile` or `latbench data import` output folder?)"
        ) from None
    except ValidationError as e:
        raise DataError(f"{folder / 'meta.json'}: invalid: {_first_error(e)}") from None
    if meta.space != folder.parent.name or meta.device != folder.name:
        raise DataError(
            f"{folder}: meta.json says {meta.space}/{meta.device}, but the folder is {folder.parent.name}/{folder.name}"
        )
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
    if not _is_text(t.schema.field("arch").type) or not _is_numeric(t.schema.field("latency_ms").type):
        raise DataError(
            f"{path}: column types arch: {t.schema.field('arch').type}, "
            f"latency_ms: {t.schema.field('latency_ms').type}; "
            "expected strings and numbers" + (f": {INDEX_HINT}" if _is_numeric(t.schema.field("arch").type) else "")
        )
    if t.num_rows == 0:
        raise DataError(f"{path}: no measured archs (an empty table); measure some with `latbench profile` first")
    raw = t.column("arch").to_pylist()
    archs = canonical_archs(space_cls, raw, path)
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
        kernels = _check_kernels(kernels, kpath, space_cls, set(archs))
    retest = None
    rpath = folder / "retest.json"
    if rpath.is_file():
        try:
            retest = Retest.model_validate_json(rpath.read_bytes()).model_dump()
        except ValidationError as e:
            raise DataError(f"{rpath}: invalid: {_first_error(e)}") from None
        except OSError as e:
            raise DataError(f"{rpath}: unreadable ({e.strerror or type(e).__name__})") from None
    return MeasuredDevice(meta, archs, lat, kernels, retest, folder)


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    msg = " ".join(str(err["msg"]).removeprefix("Value error, ").split())
    loc = ".".join(map(str, err["loc"]))
    return f"{loc}: {msg}" if loc else msg


def _is_text(t) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_numeric(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)


def canonical_archs(space_cls, raw: list, path: Path) -> list[str]:
    """Every arch of a file in its canonical spelling; a clear error naming the (1-based) row otherwise."""
    out = []
    for row, a in enumerate(raw, 1):
        if not isinstance(a, str):
            what = "missing" if a is None else f"{type(a).__name__}, not a string"
            raise DataError(f"{path}: row {row}: arch is {what}; {INDEX_HINT}")
        try:
            out.append(space_cls.canonical(a))
        except UnknownArchError as e:
            raise DataError(f"{path}: row {row}: {e}") from None
    return out


def _kernel_schema():
    import pyarrow as pa

    ints = ("layer", "h", "cin", "cout", "kernel", "stride", "groups")
    return pa.schema(
        [
            (c, pa.string() if c in ("arch", "op") else pa.float64() if c == "latency_ms" else pa.int64() if c in ints else None)
            for c in KERNEL_COLUMNS
        ]
    )


def _check_kernels(kernels, kpath: Path, space_cls, archs: set[str]):
    """The kernel table in the types the build concatenates, its archs valid and all measured (latency table)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if kernels.column_names != KERNEL_COLUMNS:
        raise DataError(f"{kpath}: columns {kernels.column_names}, expected {KERNEL_COLUMNS}")
    nulls = [c for c in KERNEL_COLUMNS if kernels.column(c).null_count]
    if nulls:
        raise DataError(f"{kpath}: missing values in column(s) {', '.join(nulls)}")
    arch_col = kernels.column("arch")
    if not _is_text(arch_col.type):
        raise DataError(f"{kpath}: column arch is {arch_col.type}, expected strings")
    schema = _kernel_schema()
    try:
        rest = [kernels.column(f.name).cast(f.type, safe=True) for f in schema if f.name != "arch"]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise DataError(
            f"{kpath}: column types {[str(t) for t in kernels.schema.types]} do not convert to "
            f"{[str(f.type) for f in schema]} ({' '.join(str(e).split())[:120]})"
        ) from None
    kernels = pa.Table.from_arrays([arch_col, *rest], schema=pa.schema([("arch", arch_col.type), *list(schema)[1:]]))
    kl = kernels.column("latency_ms").to_numpy()
    if not np.isfinite(kl).all() or (kl < 0).any():
        raise DataError(f"{kpath}: kernel latencies must be finite and >= 0")
    unique = pc.unique(arch_col.cast(pa.string()))
    for a in canonical_archs(space_cls, unique.to_pylist(), kpath):
        if a not in archs:
            raise DataError(f"{kpath}: arch {a!r} has kernel rows but no latency in latency.parquet")
    return kernels


@contextlib.contextmanager
def _registry() -> Iterator[None]:
    """Hold the lock of the registered sources (add-source / sources remove), kept next to the
    sources folder (``LATBENCH_HOME/.sources.lock``) so a refused add-source leaves that folder as it was."""
    home = paths.home()
    home.mkdir(parents=True, exist_ok=True)
    lock = FileLock(home / ".sources.lock")
    try:
        lock.acquire(REGISTRY_WAIT)
    except LockBusy as e:
        raise DataError(
            f"{user_sources_dir()}: another `latbench data add-source` or `sources remove` ({e.holder}) is changing "
            "the registered sources; try again when it is done"
        ) from None
    try:
        yield
    finally:
        lock.release()


def pinned_device_names() -> dict[str, str]:
    """Device name -> source name of every device a pinned upstream source provides (HELP's latency files)."""
    from latbench.data.help import SPACE_DIRS
    from latbench.data.sources import SOURCES

    prefixes = tuple(f"{d}/latency/" for d in SPACE_DIRS.values())
    return {
        e["path"].rsplit("/", 1)[1][:-3]: "help"
        for e in SOURCES["help"].manifest["files"]
        if e["path"].startswith(prefixes) and e["path"].endswith(".pt")
    }


def registered() -> dict[str, Path]:
    """Registered source name -> its folder under ``LATBENCH_HOME/sources`` (what ``data build`` reads)."""
    user = user_sources_dir()
    if not user.is_dir():
        return {}
    return {p.name: p for p in sorted(user.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _device_keys(root: Path) -> set[tuple[str, str]]:
    """(space, device) of every device folder under a root, from the folder names (which
    :func:`read_device` requires to match meta.json)."""
    return {
        (sd.name, dd.name)
        for sd in Path(root).iterdir()
        if sd.is_dir() and not sd.name.startswith(".")
        for dd in sd.iterdir()
        if dd.is_dir() and not dd.name.startswith(".")
    }


def dataset_space(space: str):
    """The space of the built dataset when that dataset holds HELP's data for it (its arch list is then
    HELP's, which every measured arch must belong to); None when there is nothing to check against."""
    from latbench.data import store

    try:
        info = store.info()
        if space not in info.get("spaces", {}) or not any(s.get("name") == "help" for s in info.get("sources", [])):
            return None
        return store.load_space(space)
    except (LatbenchError, OSError, ValueError, KeyError):
        return None


def check_new_devices(devices: list[MeasuredDevice], folder: Path) -> None:
    """What would make every later ``data build`` fail once ``devices`` are registered, beyond
    :func:`read_device`'s checks of each folder: a device name already taken (by the committed
    measurements, a registered source or an upstream device) or archs outside the dataset's space."""
    keys = [(d.meta.space, d.meta.device) for d in devices]
    base = package_dir()
    committed = _device_keys(base) if base.is_dir() else set()
    clash = [f"{s}/{n}" for s, n in keys if (s, n) in committed]
    if clash:
        raise DataError(
            f"{folder}: device name(s) {', '.join(clash)} already ship with latbench; rerun `latbench profile --name ...`"
        )
    pinned = pinned_device_names()
    clash = [f"{s}/{n}" for s, n in keys if n in pinned]
    if clash:
        raise DataError(
            f"{folder}: device name(s) {', '.join(clash)} are upstream (HELP) device names; "
            "rerun `latbench profile --name ...` with another hardware name"
        )
    for name, root in registered().items():
        clash = [f"{s}/{n}" for s, n in keys if (s, n) in _device_keys(root)]
        if clash:
            raise DataError(
                f"{folder}: device(s) {', '.join(clash)} already registered by source {name!r} ({root}); "
                f"remove it first (`latbench data sources remove {name}`) or rename (`latbench profile --name ...`)"
            )
    spaces: dict = {}
    for d in devices:
        if d.meta.space not in spaces:
            spaces[d.meta.space] = dataset_space(d.meta.space)
        space = spaces[d.meta.space]
        if space is None:
            continue
        missing = []
        for a in d.archs:
            try:
                space.index(a)
            except UnknownArchError:
                missing.append(a)
        if missing:
            raise DataError(
                f"{d.folder}: {len(missing)} archs are not among the {len(space)} {d.meta.space} archs of the "
                f"dataset (e.g. {missing[0]!r}); a build could not place them"
            )


def add_source(folder: Path, name: str | None = None) -> Path:
    """Validate a profile output folder and register a copy under ``LATBENCH_HOME/sources/<name>``.

    Nothing is written unless every check passes (see the module docstring); the copy is made in a
    hidden folder, checked again, then renamed into place, so a build never sees half a source.
    """
    folder = Path(folder).expanduser().resolve()
    if name is None:
        name = slug(folder.name)
        if not name:
            raise DataError(f"{folder}: no source name can be made from the folder's name; pass --name")
    elif name_problem(name):
        raise DataError(f"source name {name_problem(name)}")
    devices = read_root(folder)  # raises on anything invalid: nothing is copied then
    if not devices:
        raise DataError(f"{folder}: no device folders (<space>/<device>/meta.json) inside")
    sources = user_sources_dir()
    with _registry():
        check_new_devices(devices, folder)
        target = sources / name
        if target.exists() or target.is_symlink():
            raise DataError(f"{target}: a source with this name is already registered (pass --name, or remove it)")
        sources.mkdir(parents=True, exist_ok=True)
        _clean_scratch(sources)
        tmp = sources / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for d in devices:
                dst = tmp / d.meta.space / d.meta.device
                dst.mkdir(parents=True)
                for f in ("meta.json", "latency.parquet", "kernels.parquet", "retest.json"):
                    if (d.folder / f).is_file():
                        shutil.copyfile(d.folder / f, dst / f)
            copied = read_root(tmp)  # what builds will read is the copy: check it, not only the original
            if sorted((d.meta.space, d.meta.device, len(d.archs)) for d in copied) != sorted(
                (d.meta.space, d.meta.device, len(d.archs)) for d in devices
            ):
                raise DataError(f"{folder}: changed while it was being copied; try again")
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _clean_scratch(sources: Path) -> None:
    """Hidden leftovers of killed add-source / remove runs (only called under the registry lock)."""
    for p in sources.iterdir():
        if p.name.startswith(".") and (".tmp-" in p.name or ".removing-" in p.name) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def list_sources() -> list[dict]:
    """Every registered source: name, folder, devices ``[(space, device, archs)]``, and the problem
    that would stop a build (None when it reads cleanly)."""
    out = []
    for name, root in registered().items():
        try:
            devices = [(d.meta.space, d.meta.device, len(d.archs)) for d in read_root(root)]
            problem = None
        except DataError as e:
            devices, problem = [], str(e)
        out.append({"name": name, "folder": root, "devices": devices, "problem": problem})
    return out


def remove_source(name: str) -> Path:
    """Unregister a source (its devices leave the dataset at the next ``data build``); returns its former folder."""
    with _registry():
        have = registered()
        if name not in have:  # only an existing entry of the sources folder: never a path elsewhere
            listed = ", ".join(have) or "none"
            raise DataError(f"no registered source {name!r}{did_you_mean(str(name), have)} (registered: {listed})")
        target = have[name]
        trash = target.with_name(f".{name}.removing-{os.getpid()}")
        target.rename(trash)  # atomic: a build sees the whole source or none of it
        shutil.rmtree(trash, ignore_errors=True)
    return target
