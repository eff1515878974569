"""``latbench data build``: sources -> a local Hugging Face dataset repository (parquet + card).

The output needs no loading script: ``datasets.load_dataset(str(data_dir()), "nb201")``. Layout::

    README.md                    dataset card; its YAML ``configs:`` lists every config
    latbench.json                dataset version, content hash, provenance (read by results)
    data/<space>.parquet         long format: space, arch_id, arch, device, latency_ms, source
    data/archs-<space>.parquet   per-arch features: encodings, FLOPs, params, activations
    data/devices.parquet         device metadata
    data/tasks/<task>/{train,test}.parquet   one config per task (source / target device rows)

The build writes into a temporary sibling folder and swaps it in with renames, so a failed build
leaves the previous good dataset untouched, and building twice from the same inputs gives the same
content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from latbench import __version__, paths
from latbench.data import card
from latbench.data.devices import describe
from latbench.data.sources import SOURCES, SourceTables, fetch, get_source
from latbench.errors import DataError

#: Bumped when the layout or the meaning of a column changes.
SCHEMA_VERSION = "1.0"
SPACES = ("nb201", "fbnet", "ofa")


def build(
    out: Path | None = None,
    *,
    sources: tuple[str, ...] = tuple(SOURCES),
    mirror: Path | None = None,
    base_url: str | None = None,
    progress: bool = False,
    log=lambda msg: None,
) -> dict:
    """Fetch, verify, convert; returns the dataset's ``latbench.json`` info."""
    t0 = time.perf_counter()
    out = Path(out or paths.data_dir())
    mirror = mirror if mirror is not None else paths.mirror()
    tables: list[SourceTables] = []
    for name in sources:
        source = get_source(name)
        log(f"fetching {name} ({'mirror ' + str(mirror) if mirror else 'download'})")
        files = fetch(source, mirror=mirror, base_url=base_url, progress=progress)
        log(f"reading {name}: {len(files)} files verified")
        tables.append(source.read(files))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        info = _write(tmp, tables, log)
        info["build_seconds"] = round(time.perf_counter() - t0, 2)
        (tmp / "latbench.json").write_text(json.dumps(info, indent=2) + "\n")
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    from latbench.data import store

    store.clear_cache()
    log(f"built {out} in {info['build_seconds']} s (content hash {info['content_hash'][:12]})")
    return info


def _swap(new: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _write(root: Path, tables: list[SourceTables], log) -> dict:
    from latbench.spaces import space_class

    (root / "data").mkdir(parents=True)
    digest = hashlib.sha256(SCHEMA_VERSION.encode())
    configs, counts, device_rows = [], {}, {}
    merged = _merge(tables)
    for space_name in SPACES:
        if space_name not in merged:
            continue
        archs, latency, refs = merged[space_name]
        space = space_class(space_name)(archs)
        log(f"{space_name}: {len(archs)} archs x {len(latency)} devices")
        _write_latency(root / f"data/{space_name}.parquet", space_name, archs, latency)
        _write_archs(root / f"data/archs-{space_name}.parquet", space, refs)
        configs += [(space_name, f"data/{space_name}.parquet"), (f"archs-{space_name}", f"data/archs-{space_name}.parquet")]
        counts[space_name] = {"archs": len(archs), "devices": sorted(latency), "rows": len(archs) * len(latency)}
        digest.update(space_name.encode() + "\n".join(archs).encode())
        for dev in sorted(latency):
            digest.update(dev.encode() + np.ascontiguousarray(latency[dev][0], dtype="<f8").tobytes())
            device_rows.setdefault(dev, describe(dev, latency[dev][1]))
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
        "sources": [{"name": t.name, "files": t.files, **_source_meta(t.name)} for t in tables],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    split_configs = _write_task_configs(root, merged, log)
    (root / "README.md").write_text(card.render(info, configs, split_configs, list(device_rows.values())))
    return info


def _source_meta(name: str) -> dict:
    s = SOURCES[name]
    return {"title": s.title, "homepage": s.homepage, "license": s.license, "citation": s.citation}


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
                    raise DataError(f"source {t.name!r}: device {dev!r} of {space} already provided by source {latency[dev][1]!r}")
                latency[dev] = (values, t.name)
    return merged


def _write_latency(path: Path, space: str, archs: list[str], latency: dict) -> None:
    devices = sorted(latency)
    n = len(archs)
    ids = np.arange(n, dtype=np.int32)
    table = pa.table({
        "space": pa.array([space] * (n * len(devices)), pa.string()),
        "arch_id": pa.array(np.tile(ids, len(devices))),
        "arch": pa.array(archs * len(devices), pa.string()),
        "device": pa.array(np.repeat(devices, n).tolist(), pa.string()),
        "latency_ms": pa.array(np.concatenate([latency[d][0] for d in devices]), pa.float64()),
        "source": pa.array(np.repeat([latency[d][1] for d in devices], n).tolist(), pa.string()),
    })
    pq.write_table(table, path, row_group_size=len(archs) * 4)


def _write_archs(path: Path, space, refs: list[int]) -> None:
    ids = space.arch_ids()
    onehot = space.onehot(ids)
    adj, feats = space.graph(ids)
    n_nodes = adj.shape[1]
    table = pa.table({
        "arch_id": pa.array(ids.astype(np.int32)),
        "arch": pa.array([space.arch_str(i) for i in ids], pa.string()),
        "flops_m": pa.array(space.flops(ids)),
        "params_m": pa.array(space.params(ids)),
        "activations_m": pa.array(space.activations(ids)),
        "reference": pa.array(np.isin(ids, refs)),
        "onehot": pa.FixedSizeListArray.from_arrays(pa.array(onehot.ravel(), pa.float32()), onehot.shape[1]),
        "adjacency": pa.FixedSizeListArray.from_arrays(pa.array(adj.ravel().astype(np.uint8), pa.uint8()), n_nodes * n_nodes),
        "node_features": pa.FixedSizeListArray.from_arrays(pa.array(feats.ravel(), pa.float32()), feats.shape[1] * feats.shape[2]),
    })
    table = table.replace_schema_metadata({"graph_nodes": str(n_nodes), "node_features": str(feats.shape[2])})
    pq.write_table(table, path)


def _write_task_configs(root: Path, merged: dict, log) -> list[tuple[str, dict[str, str]]]:
    """One config per committed task: ``train`` = source/valid device rows, ``test`` = target rows."""
    from latbench import tasks as task_registry

    out = []
    for task in task_registry.list_tasks():
        if task.space not in merged:
            continue
        archs, latency, _ = merged[task.space]
        task.check_devices(set(latency))
        role = task.arch_roles(len(archs))
        folder = root / "data" / "tasks" / task.id
        folder.mkdir(parents=True)
        for split, devs in (("train", task.source + task.valid), ("test", task.target)):
            n = len(archs)
            table = pa.table({
                "arch_id": pa.array(np.tile(np.arange(n, dtype=np.int32), len(devs))),
                "arch": pa.array(archs * len(devs), pa.string()),
                "device": pa.array(np.repeat(devs, n).tolist(), pa.string()),
                "device_role": pa.array(np.repeat([task.device_role(d) for d in devs], n).tolist(), pa.string()),
                "arch_role": pa.array(np.tile(role, len(devs)).tolist(), pa.string()),
                "latency_ms": pa.array(np.concatenate([latency[d][0] for d in devs]), pa.float64()),
            })
            pq.write_table(table, folder / f"{split}.parquet")
        out.append((task.id, {"train": f"data/tasks/{task.id}/train.parquet", "test": f"data/tasks/{task.id}/test.parquet"}))
    log(f"wrote {len(out)} task configs")
    return out
