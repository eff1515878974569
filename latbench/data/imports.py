"""``latbench data import``: latencies measured elsewhere -> a registered ``latbench-measured`` source.

The input is two files (the format is documented in ``docs/data.md``, "Importing latencies measured
elsewhere"):

- a table, CSV or parquet, one row per (device, arch): ``latency_ms`` and either ``arch`` (arch
  strings in any spelling the space accepts) or ``arch_id`` (the built dataset's arch ids: for
  nb201 the official NAS-Bench-201 index); a ``device`` column unless the metadata names one device;
- a metadata file, YAML or JSON: the ``space``, an optional ``origin`` (who measured, how) and one
  entry per device, every field optional (family, hardware, cpu_cores, runtime, threads, batch,
  precision, notes, retest): what is left out is stored as null and shown as unknown.

The importer writes each device as a folder like ``latbench profile``'s (``meta.json`` with the
device's ``origin``, ``latency.parquet`` keyed by arch string, ``retest.json`` when the metadata
gives one) and registers them with :func:`latbench.data.measured.add_source`, so they go through
exactly the checks of profiler output and nothing is registered unless everything passes.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from latbench.data import measured
from latbench.data.devices import FAMILIES
from latbench.errors import DataError
from latbench.spaces import SPACE_CLASSES
from latbench.text import name_problem, slug

TABLE_SUFFIXES = (".csv", ".parquet")


class RetestInfo(BaseModel):
    """A device's test-retest noise, if it was measured: archs timed twice, and the agreement."""

    model_config = ConfigDict(extra="forbid")
    archs: int = Field(ge=0)
    spearman: float | None = Field(default=None, ge=-1.0, le=1.0)
    median_abs_rel_diff: float | None = Field(default=None, ge=0.0)


class DeviceInfo(BaseModel):
    """What is known about one imported device; every field may be left out (unknown)."""

    model_config = ConfigDict(extra="forbid")
    family: str | None = None
    hardware: str | None = Field(default=None, max_length=200)
    cpu_cores: int | None = Field(default=None, ge=1)
    gpu: bool | None = None
    runtime: str | None = Field(default=None, max_length=200)
    threads: int | None = Field(default=None, ge=1)
    batch: int | None = Field(default=None, ge=1)
    precision: str | None = Field(default=None, max_length=40)
    notes: str | None = Field(default=None, max_length=2000)
    retest: RetestInfo | None = None

    @field_validator("family")
    @classmethod
    def _family(cls, v: str | None) -> str | None:
        if v is not None and v not in FAMILIES:
            raise ValueError(f"{v!r} is not one of {', '.join(FAMILIES)} (leave it out if unknown)")
        return v


class ImportMeta(BaseModel):
    """The metadata file of an import."""

    model_config = ConfigDict(extra="forbid")
    space: str
    origin: str | None = Field(default=None, min_length=1, max_length=200)
    devices: dict[str, DeviceInfo | None] = Field(min_length=1)

    @field_validator("space")
    @classmethod
    def _space(cls, v: str) -> str:
        if v not in SPACE_CLASSES:
            raise ValueError(f"{v!r} is not one of {', '.join(SPACE_CLASSES)}")
        return v

    @field_validator("devices")
    @classmethod
    def _names(cls, v: dict) -> dict:
        for name in v:
            if name_problem(name):
                raise ValueError(f"device {name_problem(name)}")
        return v


def read_meta(path: Path) -> ImportMeta:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid YAML or JSON ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with space, devices (and optionally origin)")
    try:
        return ImportMeta.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(file)"
        raise DataError(f"{path}: {loc}: {' '.join(str(err['msg']).removeprefix('Value error, ').split())}") from None


def read_table(path: Path):
    """The latency table as a pyarrow Table (CSV or parquet)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: expected a .csv or .parquet file")
    try:
        return pq.read_table(path) if suffix == ".parquet" else pcsv.read_csv(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    except Exception as e:  # pyarrow's parse errors
        raise DataError(f"{path}: not a readable {suffix[1:]} table ({' '.join(str(e).split())[:160]})") from None


def _arch_strings(table, path: Path, space: str) -> list[str]:
    """Canonical arch strings of every row, from ``arch`` (strings) or ``arch_id`` (dataset ids)."""
    import pyarrow as pa

    from latbench.spaces import space_class

    names = table.column_names
    if "arch" in names and "arch_id" in names:
        raise DataError(f"{path}: has both arch and arch_id columns; keep one")
    if "arch" in names:
        col = table.column("arch")
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            raise DataError(
                f"{path}: column arch holds numbers, not arch strings: latbench keys latencies by arch string; if they are "
                f"the dataset's arch ids (NAS-Bench-201's official index for nb201), name the column arch_id"
            )
        return measured.canonical_archs(space_class(space), col.to_pylist(), path)
    if "arch_id" not in names:
        raise DataError(f"{path}: needs an arch column (arch strings) or an arch_id column (the dataset's arch ids)")
    col = table.column("arch_id")
    if not pa.types.is_integer(col.type) or col.null_count:
        raise DataError(f"{path}: column arch_id must hold whole numbers (the dataset's arch ids), got {col.type}")
    space_obj = measured.dataset_space(space)
    if space_obj is None:
        raise DataError(
            f"{path}: arch_id needs the dataset built with HELP's {space} data (its arch ids are HELP's order: "
            f"NAS-Bench-201's official index for nb201); run `latbench data build` with network or LATBENCH_MIRROR, "
            "or give arch strings in an arch column"
        )
    ids = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)
    bad = (ids < 0) | (ids >= len(space_obj))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: row {row + 1}: arch_id {ids[row]} is not in [0, {len(space_obj)}) ({space} in this dataset)")
    return [space_obj.arch_str(int(i)) for i in ids]


def _device_column(table, path: Path, meta: ImportMeta) -> list[str]:
    names = list(meta.devices)
    if "device" not in table.column_names:
        if len(names) != 1:
            raise DataError(f"{path}: no device column, but the metadata names {len(names)} devices; add a device column")
        return [names[0]] * table.num_rows
    values = table.column("device").to_pylist()
    unknown = sorted({str(v) for v in values if v not in meta.devices})
    if unknown:
        raise DataError(f"{path}: device(s) {', '.join(unknown[:5])} are not in the metadata file (it names {', '.join(names)})")
    absent = [n for n in names if n not in set(values)]
    if absent:
        raise DataError(f"{path}: no rows for device(s) {', '.join(absent)} of the metadata file")
    return values


def device_meta(name: str, info: DeviceInfo, meta: ImportMeta, source_file: str) -> dict:
    """The ``meta.json`` of one imported device (unknown fields null)."""
    hardware = {"name": info.hardware, "cpu_cores": info.cpu_cores}
    return {
        "device": name,
        "space": meta.space,
        "origin": meta.origin or f"imported from {source_file}",
        "family": info.family,
        "hardware": hardware,
        "setting": {
            "runtime": info.runtime,
            "device": None if info.gpu is None else ("cuda" if info.gpu else "cpu"),
            "threads": info.threads,
            "batch": info.batch,
            "precision": info.precision,
        },
        "notes": info.notes,
        "imported_from": source_file,
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_folder(table_path: Path, meta_path: Path, out: Path) -> list[Path]:
    """Convert an import (table + metadata) into device folders under ``out/<space>/<device>``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table_path, meta_path = Path(table_path), Path(meta_path)
    meta = read_meta(meta_path)
    table = read_table(table_path)
    if "latency_ms" not in table.column_names:
        raise DataError(f"{table_path}: needs a latency_ms column (milliseconds per forward pass); has {table.column_names}")
    if table.num_rows == 0:
        raise DataError(f"{table_path}: no rows")
    lat_col = table.column("latency_ms")
    if not (pa.types.is_integer(lat_col.type) or pa.types.is_floating(lat_col.type)):
        raise DataError(f"{table_path}: column latency_ms must hold numbers, got {lat_col.type}")
    latency = np.asarray(lat_col.to_numpy(zero_copy_only=False), dtype=np.float64)
    archs = _arch_strings(table, table_path, meta.space)
    devices = np.asarray(_device_column(table, table_path, meta), dtype=object)
    folders = []
    for name, info in meta.devices.items():
        rows = np.flatnonzero(devices == name)
        dev_archs = [archs[i] for i in rows]
        if len(set(dev_archs)) != len(dev_archs):
            dup = next(a for a in dev_archs if dev_archs.count(a) > 1)
            raise DataError(f"{table_path}: device {name}: arch {dup!r} appears twice (one row per device and arch)")
        folder = Path(out) / meta.space / name
        folder.mkdir(parents=True)
        info = info or DeviceInfo()
        (folder / "meta.json").write_text(json.dumps(device_meta(name, info, meta, table_path.name), indent=2) + "\n")
        pq.write_table(
            pa.table({"arch": pa.array(dev_archs, pa.string()), "latency_ms": latency[rows]}), folder / "latency.parquet"
        )
        if info.retest is not None:
            (folder / "retest.json").write_text(json.dumps(info.retest.model_dump(), indent=2) + "\n")
        folders.append(folder)
    return folders


def import_source(table_path: Path, meta_path: Path, name: str | None = None) -> Path:
    """Convert and register an import; returns the registered folder (``LATBENCH_HOME/sources/<name>``).

    ``name`` defaults to the table file's name; nothing is registered unless every check passes.
    """
    table_path = Path(table_path).expanduser()
    if name is None:
        name = slug(table_path.stem)
        if not name:
            raise DataError(f"{table_path}: no source name can be made from the file's name; pass --name")
    with tempfile.TemporaryDirectory(prefix="latbench-import-") as tmp:
        write_folder(table_path, meta_path, Path(tmp) / name)
        return measured.add_source(Path(tmp) / name, name)
