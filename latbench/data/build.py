"""``latbench data build``: sources -> a local Hugging Face dataset repository (parquet + card).

The output needs no loading script: ``datasets.load_dataset(str(data_dir()), "nb201")``. Layout::

    README.md                    dataset card; its YAML ``configs:`` lists every config
    latbench.json                dataset version, content hash, provenance (read by results)
    data/<space>.parquet         long format: space, arch_id, arch, device, latency_ms, source
    data/archs-<space>.parquet   per-arch features: encodings, FLOPs, params, activations
    data/devices.parquet         device metadata
    data/kernels-<space>.parquet per-layer kernel latencies of the profiler-measured devices
    data/tasks/<task>/{train,test}.parquet   one config per task (source / target device rows)

Sources: HELP's files (downloaded or from a mirror) and the ``latbench-measured`` folders (the
project's committed measurements plus any ``latbench data add-source``). With the default sources,
a HELP download that fails for lack of network is reported and the build goes on with the measured
data alone (a smaller dataset whose arch ids are the measured archs' order); an integrity failure
(checksum, bad file) always stops the build.

The build writes into a temporary folder and switches it in atomically (``out`` is a symlink to a
version folder, replaced in one rename: see :mod:`latbench.data.store`), so a failed or killed
build leaves the previous good dataset in place, and building twice from the same inputs gives the
same content hash. One build per dataset at a time (a lock; a second build waits, up to
``lock_timeout``); each build first clears the temporary folders killed builds left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from latbench import __version__, paths
from latbench.data import card, store
from latbench.data import measured as measured_source
from latbench.data.devices import describe
from latbench.data.sources import SOURCES, DownloadError, SourceTables, check_source_name, fetch, get_source
from latbench.errors import DataError
from latbench.kernels import decomposition as kernels
from latbench.spaces import space_class

#: Bumped when the layout or the meaning of a column changes.
SCHEMA_VERSION = "1.0"
SPACES = ("nb201", "fbnet", "ofa")
#: Seconds a build waits for another build of the same dataset to finish before giving up.
LOCK_TIMEOUT = 900.0

#: ``on_progress(stage, done, total)``: called as each build stage advances (see :func:`build`).
ProgressFn = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def build(
    out: Path | None = None,
    *,
    sources: tuple[str, ...] | None = None,
    mirror: Path | None = None,
    base_url: str | None = None,
    progress: bool = False,
    tasks: Sequence = (),
    lock_timeout: float | None = None,
    log=lambda msg: None,
    on_progress: ProgressFn = _no_progress,
) -> dict:
    """Fetch, verify, convert; returns the dataset's ``latbench.json`` info.

    ``sources``: names from :data:`SOURCES` and/or ``"latbench-measured"``; default all of them,
    tolerating a HELP download that fails for lack of network (see the module docstring).
    ``tasks``: the task specs to write as one dataset config each (the caller passes the task
    registry's tasks; the data layer does not import the task layer that sits above it).
    ``lock_timeout``: seconds to wait for another build of the same ``out`` (default :data:`LOCK_TIMEOUT`).
    ``on_progress(stage, done, total)``: each stage's progress, for a progress bar: ``fetch <source>``
    (files downloaded or taken from the mirror, each verified), ``read <source>`` (files converted),
    ``spaces``, ``kernels`` (spaces written) and ``tasks`` (task configs written).
    ``progress``: pooch's own per-file download bar (leave it off when ``on_progress`` draws one).
    """
    for name in sources or ():  # before the lock and the folder: a typo changes nothing
        check_source_name(name, also=(measured_source.SOURCE_NAME,))
    out = Path(out or paths.data_dir()).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with store.build_lock(out, LOCK_TIMEOUT if lock_timeout is None else lock_timeout, log):
        store.recover(out, log)
        store.clean_stale(out, log)
        return _build_locked(out, sources, mirror, base_url, progress, tasks, log, on_progress)


def _build_locked(out: Path, sources, mirror, base_url, progress, tasks, log, on_progress: ProgressFn = _no_progress) -> dict:
    t0 = time.perf_counter()
    mirror = mirror if mirror is not None else paths.mirror()
    default = sources is None
    sources = tuple(SOURCES) + (measured_source.SOURCE_NAME,) if default else tuple(sources)
    tables: list[SourceTables] = []
    measured = None
    missing: list[str] = []  # default sources that could not be downloaded (a partial build)
    for name in sources:
        if name == measured_source.SOURCE_NAME:
            on_progress(f"read {name}", 0, 1)
            measured = measured_source.read_all()
            on_progress(f"read {name}", 1, 1)
            n_devices = len({m.meta.device for devices in measured.devices.values() for m in devices})
            log(f"reading {name}: {n_devices} measured devices in {len(measured.devices)} spaces")
            continue
        source = get_source(name)
        log(f"fetching {name} ({'mirror ' + str(mirror) if mirror else 'download'})")
        try:
            files = fetch(
                source, mirror=mirror, base_url=base_url, progress=progress, on_file=_counter(f"fetch {name}", on_progress)
            )
        except DownloadError as e:
            if not default:
                raise
            missing.append(name)
            log(f"warning: {e}; building from the measured data only (set LATBENCH_MIRROR or get network for the full dataset)")
            continue
        log(f"reading {name}: {len(files)} files verified")
        tables.append(source.read(_ReportingFiles(files, f"read {name}", on_progress)))
    if not tables and not measured:
        raise DataError("no data to build: no source could be read (and no measured data is installed)")

    tmp = store.versions_dir(out) / f"tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        info = _write(tmp, tables, measured, tasks, log, missing=missing, on_progress=on_progress)
        info["build_seconds"] = round(time.perf_counter() - t0, 2)
        (tmp / "latbench.json").write_text(json.dumps(info, indent=2) + "\n")
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    store.clear_cache()
    log(f"built {out} in {info['build_seconds']} s (content hash {info['content_hash'][:12]})")
    return info


def _swap(new: Path, out: Path) -> None:
    """Make the finished folder ``new`` the dataset at ``out``; at every instant ``out`` is a whole dataset.

    1. ``new`` becomes a version folder ``.<name>.d/v-<ns>-<pid>`` (a rename; not yet visible);
    2. ``out``, a symlink, is replaced by one pointing at it (``os.replace``: atomic);
    3. the previous version is removed.
    A kill after 1 leaves the old dataset in place and an orphan version the next build removes. A
    dataset folder of the older layout (a real folder at ``out``) is first moved into ``.<name>.d``:
    a kill right then leaves no ``out``, which the next read or build links back (``store.repair``).
    """
    out = Path(out).absolute()
    vd = store.versions_dir(out)
    vd.mkdir(parents=True, exist_ok=True)
    version = vd / f"v-{time.time_ns()}-{os.getpid()}"
    os.rename(new, version)
    old = store.current_version(out)
    if out.is_dir() and not out.is_symlink():
        old = vd / f"v-0-{os.getpid()}-legacy"
        os.rename(out, old)
    store.point(out, version)
    if old is not None and old != version:
        shutil.rmtree(old, ignore_errors=True)


def _counter(stage: str, on_progress: ProgressFn):
    """A per-file callback for :func:`fetch` that reports ``stage`` file by file."""
    done = [0]

    def on_file(entry: dict, total: int) -> None:
        done[0] += 1
        on_progress(stage, done[0], total)

    return on_file


class _ReportingFiles(Mapping):
    """A source adapter's ``{path: local file}``, reporting each file's first read as ``stage`` progress
    (the adapters read every file once, so this is their conversion progress, file by file)."""

    def __init__(self, files: dict[str, Path], stage: str, on_progress: ProgressFn):
        self._files, self._stage, self._on_progress, self._seen = files, stage, on_progress, set()

    def __getitem__(self, key: str) -> Path:
        value = self._files[key]
        if key not in self._seen:
            self._seen.add(key)
            self._on_progress(self._stage, len(self._seen), len(self._files))
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def _write(
    root: Path, tables: list[SourceTables], measured, tasks: Sequence, log, missing=(), on_progress: ProgressFn = _no_progress
) -> dict:

    (root / "data").mkdir(parents=True)
    digest = hashlib.sha256(SCHEMA_VERSION.encode())
    configs, counts, device_rows, device_hashes = [], {}, {}, {}
    summaries: dict[str, dict] = {}  # space -> device -> card.latency_summary (the card's limitations)
    kernel_rows: dict[str, int] = {}
    merged = _merge(tables)
    if measured:
        device_rows.update(_merge_measured(merged, measured))
    present = [sp for sp in SPACES if sp in merged]
    with_kernels = [sp for sp in present if measured and measured.devices.get(sp)]
    for n_space, space_name in enumerate(present, 1):
        archs, latency, refs = merged[space_name]
        space = space_class(space_name)(archs)
        log(f"{space_name}: {len(archs)} archs x {len(latency)} devices")
        _write_latency(root / f"data/{space_name}.parquet", space_name, archs, latency)
        _write_archs(root / f"data/archs-{space_name}.parquet", space, refs)
        configs += [(space_name, f"data/{space_name}.parquet"), (f"archs-{space_name}", f"data/archs-{space_name}.parquet")]
        rows = int(sum(np.isfinite(v).sum() for v, _ in latency.values()))
        counts[space_name] = {"archs": len(archs), "devices": sorted(latency), "rows": rows}
        arch_digest = hashlib.sha256(space_name.encode() + "\n".join(archs).encode())
        digest.update(space_name.encode() + "\n".join(archs).encode())
        device_hashes[space_name] = {}
        for dev in sorted(latency):
            values = dev.encode() + np.ascontiguousarray(latency[dev][0], dtype="<f8").tobytes()
            digest.update(values)
            device_hashes[space_name][dev] = hashlib.sha256(arch_digest.digest() + values).hexdigest()
            if dev not in device_rows:
                device_rows[dev] = describe(dev, latency[dev][1])
            summaries.setdefault(space_name, {})[dev] = card.latency_summary(latency[dev][0])
        on_progress("spaces", n_space, len(present))
        if space_name in with_kernels:
            kernels = _write_kernels(root / f"data/kernels-{space_name}.parquet", space, measured.devices[space_name])
            if kernels is not None:
                configs.append((f"kernels-{space_name}", f"data/kernels-{space_name}.parquet"))
                digest.update(table_digest(kernels))
                kernel_rows[f"kernels-{space_name}"] = kernels.num_rows
            on_progress("kernels", with_kernels.index(space_name) + 1, len(with_kernels))
    devices = pa.Table.from_pylist([device_rows[d] for d in sorted(device_rows)])
    pq.write_table(devices, root / "data/devices.parquet")
    configs.append(("devices", "data/devices.parquet"))
    digest.update(json.dumps([device_rows[d] for d in sorted(device_rows)], sort_keys=True).encode())

    info = {
        "name": "latbench",
        "schema_version": SCHEMA_VERSION,
        "content_hash": digest.hexdigest(),
        "dataset_version": f"{SCHEMA_VERSION}+{digest.hexdigest()[:12]}",
        "latbench_version": __version__,
        "spaces": counts,
        # per (space, device): sha256 of the arch strings and that device's latencies, so a result can
        # quote the hash of exactly the data it read (store.data_hash) and stay valid when devices are added
        "device_hashes": device_hashes,
        "sources": [{"name": t.name, "files": t.files, **_source_meta(t.name)} for t in tables]
        + ([_measured_meta(measured)] if measured else []),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # default sources this build could not download: `latbench data build` with network or a mirror adds them
        "missing_sources": list(missing),
    }
    split_configs = _write_task_configs(root, merged, tasks, log, partial=not tables, on_progress=on_progress)
    text = card.render(info, configs, split_configs, list(device_rows.values()), latency=summaries, kernel_rows=kernel_rows)
    (root / "README.md").write_text(text)
    return info


def _source_meta(name: str) -> dict:
    s = SOURCES[name]
    meta = {"title": s.title, "homepage": s.homepage, "license": s.license, "citation": s.citation}
    return {**meta, "commit": s.manifest.get("commit")}


def _measured_meta(measured) -> dict:
    files = []
    for devs in measured.devices.values():
        for d in devs:
            files.append(
                {
                    "path": f"{d.meta.space}/{d.meta.device}",
                    "archs": len(d.archs),
                    "root": _root_label(d.folder.parent.parent),
                    "settings": _measured_settings(d.meta),
                    "retest": d.retest,
                }
            )
    return {
        "name": measured_source.SOURCE_NAME,
        "files": files,
        "title": "latbench profiler measurements",
        "homepage": "https://github.com/latbench/latbench",
        "license": "MIT",
        "citation": "measured with `latbench profile` (see each device's meta.json)",
    }


def _measured_settings(meta) -> dict:
    """The measurement settings of one measured device, from its ``meta.json`` (what the card's protocol
    section and measured-devices table show). A setting the file lacks or leaves null is left out, never
    guessed: an imported device (``latbench data import``) may know none of them."""
    extra = meta.model_extra or {}
    guard = extra.get("contention_guard") if isinstance(extra.get("contention_guard"), dict) else {}
    setting = meta.setting.model_dump()
    hw = meta.hardware or {}
    gpu = setting.get("device") == "cuda"
    name = hw.get("name") or (hw.get("gpu_model") if gpu else hw.get("cpu_model")) or hw.get("cpu_model")
    cores = hw.get("cpu_cores")
    out = {
        **setting,
        "origin": getattr(meta, "origin", measured_source.PROFILE_ORIGIN),
        "protocol_version": getattr(meta, "protocol_version", None),
        "rotate_inputs": extra.get("rotate_inputs"),
        "kernel_passes": extra.get("kernel_passes"),
        "contention_share": guard.get("share"),
        "contention_max_wait_s": guard.get("max_wait_s"),
        "hardware": f"{name} ({cores} cores)" if name and isinstance(cores, int) and not gpu else name,
        "cpu_cores": cores,
        "torch": hw.get("torch"),
        "onnxruntime": hw.get("onnxruntime"),
    }
    return {k: v for k, v in out.items() if v is not None}


def _root_label(root: Path) -> str:
    """Where a measured device came from, without the local path (the dataset is published)."""
    if root == measured_source.package_dir():
        return "latbench (committed measurements)"
    if root.parent == measured_source.user_sources_dir():
        return f"registered source {root.name}"
    return root.name


def _merge_measured(merged: dict, measured) -> dict[str, dict]:
    """Add the measured devices (keyed by arch string) to ``merged``; NaN where an arch was not measured.

    A space no other source provides takes its arch list from the measured data (the order they
    were measured in: reference archs first). Returns the measured devices' metadata rows.
    """
    rows = {}
    for space, devices in sorted(measured.devices.items()):
        if space not in merged:
            archs: list[str] = []
            seen = set()
            refs: list[str] = []
            for d in devices:
                refs += [a for a in (d.meta.model_extra or {}).get("reference_archs") or [] if a not in refs]
                for a in d.archs:
                    if a not in seen:
                        seen.add(a)
                        archs.append(a)
            pos = {a: i for i, a in enumerate(archs)}
            merged[space] = (archs, {}, sorted(pos[a] for a in refs if a in pos))
        archs, latency, _ = merged[space]
        index = {a: i for i, a in enumerate(archs)}
        for d in devices:
            if d.meta.device in latency:
                raise DataError(
                    f"{d.folder}: device {d.meta.device!r} of {space} already provided by source {latency[d.meta.device][1]!r}"
                )
            missing = [a for a in d.archs if a not in index]
            if missing:
                raise DataError(
                    f"{d.folder}: {len(missing)} measured archs are not in the {space} space of this build (e.g. {missing[0]!r})"
                )
            values = np.full(len(archs), np.nan)
            values[[index[a] for a in d.archs]] = d.latency
            latency[d.meta.device] = (values, measured_source.SOURCE_NAME)
            rows[d.meta.device] = d.metadata_row(measured_source.SOURCE_NAME, also=rows.get(d.meta.device))
    return rows


def table_digest(table: pa.Table) -> bytes:
    """sha256 of a table's column names, types and values -- not of its parquet bytes, which carry
    the writer's pyarrow version, so the content hash is the same whatever pyarrow built it."""
    h = hashlib.sha256()
    for name, col in zip(table.column_names, table.columns):
        h.update(json.dumps([name, str(col.type)]).encode())
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            h.update(json.dumps(col.to_pylist()).encode())
        else:
            values = col.to_numpy()
            h.update(np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes())
    return h.digest()


def _write_kernels(path: Path, space, devices) -> pa.Table | None:
    """One table of every measured device's per-layer kernel latencies (devices without them
    skipped), written to ``path``; returns the table written."""
    parts = []
    for d in devices:
        if d.kernels is None:
            continue
        t = d.kernels
        archs = t.column("arch").combine_chunks()
        if pa.types.is_dictionary(archs.type):  # a filtered table keeps its old dictionary: rebuild it
            archs = archs.dictionary_decode()
        archs = archs.dictionary_encode()  # space.index once per arch, not per row
        ids = np.array([space.index(a) for a in archs.dictionary.to_pylist()], dtype=np.int32)[archs.indices.to_numpy()]
        # the layer index into the current layer list (it may have gained unprofiled ops since the measurement)
        sig = {c: t.column(c).to_numpy() for c in kernels.SIGNATURE}
        layer = kernels.match_layers(space, {"arch_id": ids, **sig})
        t = t.set_column(t.schema.get_field_index("layer"), "layer", pa.array(layer, t.schema.field("layer").type))
        t = t.drop(["arch"])
        t = t.add_column(0, "device", pa.array([d.meta.device] * len(ids), pa.string()))
        t = t.add_column(1, "arch_id", pa.array(ids))
        parts.append(t.cast(pa.schema([(f.name, pa.string() if f.name in ("device", "op") else f.type) for f in t.schema])))
    if not parts:
        return None
    table = pa.concat_tables(parts)
    pq.write_table(table, path, compression="zstd")
    return table


def _merge(tables: list[SourceTables]) -> dict[str, tuple[list[str], dict[str, tuple[np.ndarray, str]], list[int]]]:
    """Per space: arch strings, device -> (latencies, source), reference ids. Sources must agree on archs."""
    merged: dict = {}
    for t in tables:
        for space, st in t.spaces.items():
            if space not in merged:
                merged[space] = (st.archs, {}, st.reference_ids)
            archs, latency, _ = merged[space]
            if st.archs != archs:
                raise DataError(f"source {t.name!r}: {space} arch list differs from the one already loaded")
            for dev, values in st.latency.items():
                if dev in latency:
                    raise DataError(
                        f"source {t.name!r}: device {dev!r} of {space} already provided by source {latency[dev][1]!r}"
                    )
                latency[dev] = (values, t.name)
    return merged


def _write_latency(path: Path, space: str, archs: list[str], latency: dict) -> None:
    """Long format, one row per measured (arch, device): unmeasured pairs have no row."""
    devices = sorted(latency)
    n = len(archs)
    ids = np.arange(n, dtype=np.int32)
    values = np.concatenate([latency[d][0] for d in devices])
    keep = np.isfinite(values)
    table = pa.table(
        {
            "space": pa.array([space] * int(keep.sum()), pa.string()),
            "arch_id": pa.array(np.tile(ids, len(devices))[keep]),
            "arch": pa.array(np.array(archs * len(devices), dtype=object)[keep].tolist(), pa.string()),
            "device": pa.array(np.repeat(devices, n)[keep].tolist(), pa.string()),
            "latency_ms": pa.array(values[keep], pa.float64()),
            "source": pa.array(np.repeat([latency[d][1] for d in devices], n)[keep].tolist(), pa.string()),
        }
    )
    pq.write_table(table, path, row_group_size=len(archs) * 4)


def _write_archs(path: Path, space, refs: list[int]) -> None:
    ids = space.arch_ids()
    onehot = space.onehot(ids)
    adj, feats = space.graph(ids)
    n_nodes = adj.shape[1]
    table = pa.table(
        {
            "arch_id": pa.array(ids.astype(np.int32)),
            "arch": pa.array([space.arch_str(i) for i in ids], pa.string()),
            "flops_m": pa.array(space.flops(ids)),
            "params_m": pa.array(space.params(ids)),
            "activations_m": pa.array(space.activations(ids)),
            "reference": pa.array(np.isin(ids, refs)),
            "onehot": pa.FixedSizeListArray.from_arrays(pa.array(onehot.ravel(), pa.float32()), onehot.shape[1]),
            "adjacency": pa.FixedSizeListArray.from_arrays(pa.array(adj.ravel().astype(np.uint8), pa.uint8()), n_nodes * n_nodes),
            "node_features": pa.FixedSizeListArray.from_arrays(
                pa.array(feats.ravel(), pa.float32()), feats.shape[1] * feats.shape[2]
            ),
        }
    )
    table = table.replace_schema_metadata({"graph_nodes": str(n_nodes), "node_features": str(feats.shape[2])})
    pq.write_table(table, path)


def _write_task_configs(
    root: Path, merged: dict, tasks: Sequence, log, partial: bool = False, on_progress: ProgressFn = _no_progress
) -> list[tuple[str, dict[str, str]]]:
    """One config per committed task: ``train`` = source/valid device rows, ``test`` = target rows.

    ``partial`` (a build without the HELP source): tasks naming devices the build lacks are skipped.
    """
    out, skipped = [], 0
    for n_task, task in enumerate(tasks):
        on_progress("tasks", n_task, len(tasks))
        if not task.id or task.id.startswith(".") or any(c in task.id for c in "/\\\0"):
            raise DataError(
                f"task {task.id!r}: its id names a dataset folder, so it must be one plain name (no '/', no leading '.')"
            )
        if task.space not in merged:  # only in a partial build: no source of this space was read
            skipped += 1
            continue
        archs, latency, _ = merged[task.space]
        if partial and any(d not in latency for d in task.source + task.valid + task.target):
            skipped += 1
            continue
        task.check_devices(set(latency))
        role = task.arch_roles(len(archs), space_class(task.space)(archs) if task.arch_pools else None)
        folder = root / "data" / "tasks" / task.id
        folder.mkdir(parents=True)
        for split, devs in (("train", task.source + task.valid), ("test", task.target)):
            n = len(archs)
            values = np.concatenate([latency[d][0] for d in devs])
            keep = np.isfinite(values)  # measured devices cover a sample of the archs
            table = pa.table(
                {
                    "arch_id": pa.array(np.tile(np.arange(n, dtype=np.int32), len(devs))[keep]),
                    "arch": pa.array(np.array(archs * len(devs), dtype=object)[keep].tolist(), pa.string()),
                    "device": pa.array(np.repeat(devs, n)[keep].tolist(), pa.string()),
                    "device_role": pa.array(np.repeat([task.device_role(d) for d in devs], n)[keep].tolist(), pa.string()),
                    "arch_role": pa.array(np.tile(role, len(devs))[keep].tolist(), pa.string()),
                    "latency_ms": pa.array(values[keep], pa.float64()),
                }
            )
            pq.write_table(table, folder / f"{split}.parquet")
        out.append((task.id, {"train": f"data/tasks/{task.id}/train.parquet", "test": f"data/tasks/{task.id}/test.parquet"}))
    on_progress("tasks", len(tasks), len(tasks))
    log(f"wrote {len(out)} task configs" + (f" ({skipped} skipped: their devices need the HELP source)" if skipped else ""))
    return out
