"""The data layer: sources -> verified files -> safe unpickling -> the Hugging Face dataset.

What the issue asks of it, each checked against the real HELP mirror (``conftest.mirror``):

- row counts through ``datasets.load_dataset`` and every latency bit-equal to the source file;
- NB201 arch ids in the official order, HELP's reference archs flagged;
- an idempotent, atomic build that records a dataset version and a content hash;
- every kind of bad input (checksum, truncation, missing file, wrong length, NaN/negative latency,
  unknown arch, a pickle smuggling a callable) gives one clear line naming the file, exit code 1 from
  the CLI, and leaves the previous good dataset untouched;
- the download path end to end against a real HTTP server on 127.0.0.1;
- the restricted unpickler on its own.

Bad sources are built at test time in ``tmp_path`` as a mirror of symlinks to the real files with
only the corrupted file replaced (and, for content errors, a patched copy of the pinned manifest so
the corrupted file passes its checksum and reaches the reader).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import json
import math
import os
import pickle
import pickletools
import re
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from latbench import paths
from latbench.data import measured, store
from latbench.data import sources as sources_mod
from latbench.data.build import SCHEMA_VERSION, build
from latbench.data.devices import FAMILIES
from latbench.data.help import SPACE_DIRS
from latbench.data.safe_pickle import load_pt, loads
from latbench.errors import DataError, UnsafePickleError
from latbench.tasks.dataset import build_dataset

SPACES = ("nb201", "fbnet", "ofa")
EXPECTED_ROWS = {"nb201": 421_875, "fbnet": 135_000, "ofa": 60_000}
NB201_ARCHS = 15_625
PINNED_MANIFEST = json.loads((sources_mod.MANIFEST_DIR / "help.json").read_text())

NB201_LAT = "data/nasbench201/latency/1080ti_1.pt"
NB201_IDX = "data/nasbench201/str_arch2idx.pt"
FBNET_LAT = "data/fbnet/latency/pixel3.pt"
BAD_ARCH = "|conv_7x7~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


# ----------------------------------------------------------------------------------- helpers
def _latency_files(space: str) -> dict[str, str]:
    """device -> manifest path of every latency file of a space."""
    prefix = f"{SPACE_DIRS[space]}/latency/"
    return {
        e["path"][len(prefix) : -3]: e["path"]
        for e in PINNED_MANIFEST["files"]
        if e["path"].startswith(prefix) and e["path"].endswith(".pt")
    }


def _content_hash(dataset: Path) -> str:
    return json.loads((dataset / "latbench.json").read_text())["content_hash"]


def _hidden_siblings(dataset: Path) -> list[str]:
    """What builds left next to ``dataset``: hidden siblings other than its versions folder ``.<name>.d``
    (``store.versions_dir``), and inside that anything but the build lock and the version ``dataset`` links to."""
    versions = store.versions_dir(dataset)
    current = store.current_version(dataset)
    left = [p.name for p in dataset.parent.iterdir() if p.name.startswith(".") and p != versions]
    if versions.is_dir():
        left += [f"{versions.name}/{p.name}" for p in versions.iterdir() if p.name != store.LOCK_NAME and p != current]
    return sorted(left)


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def _torch_save(obj, path: Path) -> bytes:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path.read_bytes()


def _torch_bytes(obj) -> bytes:
    """The bytes torch.save writes for ``obj`` (the same zip layout as HELP's files)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_zip(pickle_bytes: bytes) -> bytes:
    """A torch-style zip around a hand-made pickle, written without ever unpickling it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


class _Smuggler:
    """Pickles as a call of ``fn(*args)``: what a malicious .pt file contains."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _globals_in(pickle_bytes: bytes) -> list[str]:
    """Module.name of every global a pickle references, read with pickletools (no unpickling)."""
    found, strings = [], []
    for op, arg, _ in pickletools.genops(pickle_bytes):
        if op.name == "GLOBAL":
            found.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.append(".".join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def _evil_pickle(marker: Path, protocol: int = 2) -> bytes:
    """A latency list whose last element runs ``touch marker`` when unpickled by the normal pickle module."""
    data = pickle.dumps([1.0, 2.0, _Smuggler(os.system, f"touch {marker}")], protocol=protocol)
    assert any(g.endswith(".system") for g in _globals_in(data)), "the payload must really reference os.system"
    return data


def _real_bytes(mirror: Path, rel: str) -> bytes:
    return (mirror / "help" / rel).read_bytes()


def _col(ds, name: str):
    """One column of a ``datasets.Dataset`` as a pyarrow array (honours select(); no per-row Python)."""
    return ds.with_format("arrow")[name]


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf_datasets_cache")


@pytest.fixture(scope="module")
def dataset_dir(built_home) -> Path:
    return built_home / "dataset"


@pytest.fixture(scope="module")
def load_hf(dataset_dir, hf_cache):
    import datasets

    @functools.cache
    def load(config: str):
        return datasets.load_dataset(str(dataset_dir), config, cache_dir=str(hf_cache))

    return load


@pytest.fixture()
def previous_good(tmp_path, dataset_dir) -> Path:
    """A copy of the session's good dataset at ``tmp_path/out/dataset``: what a failed build must keep."""
    out = tmp_path / "out" / "dataset"
    shutil.copytree(dataset_dir, out)
    return out


@pytest.fixture()
def bad_mirror(tmp_path, mirror, monkeypatch):
    """Factory: a mirror of symlinks to the real files, with some files replaced (bytes) or removed (None).

    With ``patch_manifest=True`` the replaced files get their real size and sha256 in a patched copy of
    the pinned manifest (``sources.MANIFEST_DIR`` is pointed at it), so they pass verification and the
    content checks of the reader are what must catch them.
    """

    def make(replace: dict[str, bytes | None], *, patch_manifest: bool = False) -> Path:
        root = tmp_path / "mirror"
        help_dir = root / "help"
        help_dir.mkdir(parents=True)
        (help_dir / "MANIFEST.json").symlink_to(mirror / "help" / "MANIFEST.json")
        manifest = json.loads(json.dumps(PINNED_MANIFEST))
        unknown = set(replace) - {e["path"] for e in manifest["files"]}
        assert not unknown, f"not in the manifest: {unknown}"
        for entry in manifest["files"]:
            rel = entry["path"]
            target = help_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel not in replace:
                target.symlink_to(mirror / "help" / rel)
            elif replace[rel] is not None:
                target.write_bytes(replace[rel])
                if patch_manifest:
                    entry["size"] = len(replace[rel])
                    entry["sha256"] = hashlib.sha256(replace[rel]).hexdigest()
        if patch_manifest:
            manifests = tmp_path / "manifests"
            manifests.mkdir()
            (manifests / "help.json").write_text(json.dumps(manifest, indent=1))
            monkeypatch.setattr(sources_mod, "MANIFEST_DIR", manifests)
        return root

    return make


def _assert_untouched(out: Path, old_hash: str, old_listing: dict[str, int]) -> None:
    assert (out / "latbench.json").is_file(), "the failed build removed the previous dataset"
    assert _content_hash(out) == old_hash
    assert _listing(out) == old_listing
    assert _hidden_siblings(out) == [], "a failed build left temporary folders behind"


def _cli_build(mirror_root: Path, out: Path):
    from clirun import run_cli

    return run_cli("data", "build", "--mirror", mirror_root, "--out", out)


# ------------------------------------------------------------------------ 1. counts via datasets
@pytest.mark.parametrize("space", SPACES)
@pytest.mark.slow
def test_load_dataset_row_counts_per_space(load_hf, space):
    ds = load_hf(space)
    assert list(ds) == ["train"]
    help_rows = ds["train"].filter(lambda r: r["source"] == "help")  # the rest: devices latbench measured
    assert help_rows.num_rows == EXPECTED_ROWS[space]
    n_devices = len(_latency_files(space))
    assert help_rows.num_rows % n_devices == 0
    assert set(help_rows.unique("device")) == set(_latency_files(space))
    assert ds["train"].unique("space") == [space]
    assert set(ds["train"].unique("source")) <= {"help", "latbench-measured"}


@pytest.mark.slow
def test_load_dataset_nb201_is_27_devices_times_15625_archs(load_hf):
    ds = load_hf("nb201")["train"]
    assert len(_latency_files("nb201")) == 27
    assert EXPECTED_ROWS["nb201"] == 27 * NB201_ARCHS
    arch_ids = _col(ds, "arch_id").to_numpy()[_col(ds, "source").to_numpy(zero_copy_only=False) == "help"]
    assert arch_ids.min() == 0 and arch_ids.max() == NB201_ARCHS - 1
    assert np.array_equal(np.bincount(arch_ids), np.full(NB201_ARCHS, 27))


def test_load_dataset_archs_nb201_has_one_row_per_arch(load_hf):
    ds = load_hf("archs-nb201")["train"]
    assert ds.num_rows == NB201_ARCHS
    assert _col(ds, "arch_id").to_pylist() == list(range(NB201_ARCHS))
    assert len(set(_col(ds, "arch").to_pylist())) == NB201_ARCHS


def test_load_dataset_devices_one_row_per_device_with_known_family(load_hf):
    rows = load_hf("devices")["train"].to_list()
    names = [r["device"] for r in rows]
    assert len(names) == len(set(names)), "duplicate device rows"
    every_device = set().union(*(_latency_files(s) for s in SPACES))
    measured_devices = {
        d.meta.device for d in measured.read_all().devices.get("nb201", []) + measured.read_all().devices.get("fbnet", [])
    }
    assert set(names) == every_device | measured_devices
    for r in rows:
        assert r["family"] in FAMILIES, r
        expected_source = "latbench-measured" if r["device"] in measured_devices else "help"
        assert r["source"] == expected_source and r["hardware"] and r["description"]
    by_name = {r["device"]: r for r in rows}
    assert by_name["1080ti_32"]["batch_size"] == 32
    assert by_name["eyeriss"]["batch_size"] is None
    assert by_name["raspi4"]["family"] == "embedded"


def test_dataset_card_declares_every_config(dataset_dir):
    import yaml

    text = (dataset_dir / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    names = {c["config_name"] for c in header["configs"]}
    assert {"nb201", "fbnet", "ofa", "archs-nb201", "archs-fbnet", "archs-ofa", "devices"} <= names
    for c in header["configs"]:
        for f in c["data_files"]:
            assert (dataset_dir / f["path"]).is_file(), f
    assert _content_hash(dataset_dir) in text


# ----------------------------------------------------------------- 2. latencies equal the source
@pytest.mark.parametrize("space", SPACES)
def test_every_latency_equals_the_source_file(data, mirror, space):
    table = store.load_latency(space)
    files = _latency_files(space)
    assert set(table.complete_devices()) == set(files)  # the devices latbench measured cover a sample
    for device, rel in files.items():
        raw = load_pt(mirror / "help" / rel)
        assert isinstance(raw, list)
        expected = np.array([float(v) for v in raw], dtype=np.float64)
        got = table.device(device)
        assert got.dtype == np.float64
        assert got.shape == expected.shape, device
        assert np.array_equal(got, expected), f"{space}/{device}: latencies differ from {rel}"


@pytest.mark.parametrize("space", SPACES)
def test_random_hf_rows_equal_the_source_file(load_hf, mirror, space):
    ds = load_hf(space)["train"]
    rng = np.random.default_rng(1234)
    rows = [r for r in ds.select(rng.choice(ds.num_rows, 100, replace=False).tolist()).to_list() if r["source"] == "help"]
    files = _latency_files(space)
    cache: dict[str, list] = {}
    for r in rows:
        raw = cache.setdefault(r["device"], load_pt(mirror / "help" / files[r["device"]]))
        assert r["latency_ms"] == float(raw[r["arch_id"]]), r  # exact, float64
        assert isinstance(r["latency_ms"], float)
    if space == "nb201":
        idx = load_pt(mirror / "help" / NB201_IDX)
        by_id = {i: s for s, i in idx.items()}
        for r in rows:
            assert r["arch"] == by_id[r["arch_id"]]


def test_parquet_latency_column_is_float64(dataset_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for space in SPACES:
        assert pq.read_schema(dataset_dir / "data" / f"{space}.parquet").field("latency_ms").type == pa.float64()


# -------------------------------------------------------------------- 3. arch ids and references
def test_nb201_arch_ids_follow_str_arch2idx(load_hf, mirror):
    idx = load_pt(mirror / "help" / NB201_IDX)
    assert len(idx) == NB201_ARCHS
    by_id = [None] * NB201_ARCHS
    for s, i in idx.items():
        by_id[i] = s
    archs = load_hf("archs-nb201")["train"]
    assert _col(archs, "arch").to_pylist() == by_id
    # the long table repeats the same id -> string mapping for every device
    lat = load_hf("nb201")["train"]
    first = lat.select(range(NB201_ARCHS))
    assert _col(first, "arch_id").to_pylist() == list(range(NB201_ARCHS))
    assert _col(first, "arch").to_pylist() == by_id


@pytest.mark.parametrize("space", SPACES)
def test_reference_archs_equal_hardware_embedding_index(load_hf, mirror, space):
    refs = load_pt(mirror / "help" / SPACE_DIRS[space] / "hardware_embedding_index.pt")
    archs = load_hf(f"archs-{space}")["train"]
    flagged = [i for i, r in zip(_col(archs, "arch_id").to_pylist(), _col(archs, "reference").to_pylist()) if r]
    assert len(flagged) == 10
    assert flagged == sorted(int(i) for i in refs)


def test_store_reference_ids_match_hardware_embedding_index(data, mirror):
    refs = load_pt(mirror / "help" / "data/nasbench201/hardware_embedding_index.pt")
    assert sorted(store.load_space("nb201").reference_ids.tolist()) == sorted(refs)


# ------------------------------------------------------------- 4. version, hash, idempotence, atomic
@pytest.mark.real_data
def test_latbench_json_records_version_hash_and_provenance(dataset_dir):
    info = json.loads((dataset_dir / "latbench.json").read_text())
    h = info["content_hash"]
    assert len(h) == 64 and int(h, 16) >= 0
    assert info["schema_version"] == SCHEMA_VERSION
    assert info["dataset_version"] == f"{SCHEMA_VERSION}+{h[:12]}"
    for space in SPACES:
        c = info["spaces"][space]
        measured_here = measured.read_all().devices.get(space, [])
        assert c["rows"] == EXPECTED_ROWS[space] + sum(len(d.archs) for d in measured_here)
        assert c["devices"] == sorted([*_latency_files(space), *(d.meta.device for d in measured_here)])
    src, own = info["sources"]
    assert src["name"] == "help" and src["license"] == "MIT"
    assert src["files"] == PINNED_MANIFEST["files"]
    assert own["name"] == "latbench-measured" and len(own["files"]) == sum(len(v) for v in measured.read_all().devices.values())


def test_content_hash_does_not_depend_on_the_parquet_writer(dataset_dir, mirror, tmp_path, monkeypatch):
    """The hash is over the data, not file bytes: parquet files carry the writer's pyarrow version
    (and compression), so hashing them gave another dataset version under another pyarrow."""
    import pyarrow.parquet as pq

    from latbench.data import build as build_mod

    write = pq.write_table
    monkeypatch.setattr(build_mod.pq, "write_table", lambda table, path, **kw: write(table, path, compression="gzip"))
    info = build(tmp_path / "dataset", mirror=mirror)
    assert info["content_hash"] == _content_hash(dataset_dir)
    kernels = sorted((tmp_path / "dataset/data").glob("kernels-*.parquet"))
    assert kernels, "the build wrote no kernel table, so this test checks nothing"
    assert kernels[0].read_bytes() != (dataset_dir / "data" / kernels[0].name).read_bytes()


def test_rebuild_is_idempotent_and_swaps_atomically(dataset_dir, mirror, tmp_path):
    """Rebuilding over a copy of the session build: same content hash and identical parquet files."""
    out = tmp_path / "dataset"
    shutil.copytree(dataset_dir, out)
    (out / "stale-file-from-an-older-build.txt").write_text("x")
    info = build_dataset(out, mirror=mirror)  # as the session's build: with the task configs
    assert info["content_hash"] == _content_hash(dataset_dir) == _content_hash(out)
    assert info["dataset_version"] == json.loads((dataset_dir / "latbench.json").read_text())["dataset_version"]
    assert not (out / "stale-file-from-an-older-build.txt").exists(), "the build merged into the old folder"
    assert _hidden_siblings(out) == []
    assert _hidden_siblings(dataset_dir) == []
    old, new = _listing(dataset_dir), _listing(out)
    assert set(old) == set(new)
    for rel in old:
        if rel.endswith(".parquet"):
            assert (out / rel).read_bytes() == (dataset_dir / rel).read_bytes(), rel


@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_crash_while_writing_keeps_previous_dataset_and_removes_temp(fault, mirror, previous_good, monkeypatch):
    """A build that dies half-way through writing (disk full, Ctrl-C): old dataset intact, no temp folder."""
    from latbench.data import build as build_mod

    written = []

    def crash(path, *args, **kwargs):  # after the first latency parquet is on disk in the temp folder
        written.append(path)
        assert any(p.name.startswith(".") for p in path.parents), f"build writes outside a temp folder: {path}"
        assert next(path.parent.glob("*.parquet"), None) is not None
        raise fault

    monkeypatch.setattr(build_mod, "_write_archs", crash)
    old_hash, old_listing = _content_hash(previous_good), _listing(previous_good)
    with pytest.raises(type(fault)):
        build(previous_good, mirror=mirror)
    assert written, "the fault was not injected"
    _assert_untouched(previous_good, old_hash, old_listing)


def test_an_error_inside_atomic_path_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    from latbench.io import atomic_path, write_text

    path = write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(path) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_device_without_metadata_row_is_a_data_error():
    from latbench.data.devices import describe

    with pytest.raises(DataError, match="mystery_npu_1.*no metadata row"):
        describe("mystery_npu_1", "help")
    assert describe("titan_rtx_256", "help")["batch_size"] == 256


# ------------------------------------------------------------------------------- 5. bad input
def _case_checksum(mirror: Path, tmp: Path):
    data = bytearray(_real_bytes(mirror, NB201_LAT))
    data[len(data) // 2] ^= 0xFF
    return {NB201_LAT: bytes(data)}, False, DataError, ["sha256", NB201_LAT]


def _case_truncated(mirror: Path, tmp: Path):
    data = _real_bytes(mirror, NB201_LAT)
    return {NB201_LAT: data[: len(data) // 2]}, False, DataError, ["truncated", str(len(data) // 2), str(len(data)), NB201_LAT]


def _case_missing(mirror: Path, tmp: Path):
    return {NB201_LAT: None}, False, DataError, ["missing", NB201_LAT]


def _case_wrong_length(mirror: Path, tmp: Path):
    values = load_pt(mirror / "help" / NB201_LAT)[:-1]
    return {NB201_LAT: _torch_bytes(values)}, True, DataError, [NB201_LAT, "15624", "15625"]


def _case_nan(mirror: Path, tmp: Path):
    values = load_pt(mirror / "help" / FBNET_LAT)
    values[17] = float("nan")
    return {FBNET_LAT: _torch_bytes(values)}, True, DataError, [FBNET_LAT, "NaN", "arch 17"]


def _case_negative(mirror: Path, tmp: Path):
    values = load_pt(mirror / "help" / FBNET_LAT)
    values[42] = -abs(values[42])
    return {FBNET_LAT: _torch_bytes(values)}, True, DataError, [FBNET_LAT, "not positive", "arch 42"]


def _case_unknown_arch(mirror: Path, tmp: Path):
    idx = load_pt(mirror / "help" / NB201_IDX)
    victim = next(s for s, i in idx.items() if i == 123)
    patched = {(BAD_ARCH if s == victim else s): i for s, i in idx.items()}
    return {NB201_IDX: _torch_bytes(patched)}, True, DataError, [NB201_IDX, "unknown architecture", BAD_ARCH, "conv_7x7"]


def _case_smuggled_callable(mirror: Path, tmp: Path):
    marker = tmp / "pwned"
    return {NB201_LAT: _torch_zip(_evil_pickle(marker))}, True, UnsafePickleError, [NB201_LAT, "system"]


BAD_CASES = {
    "checksum_mismatch": _case_checksum,
    "truncated_file": _case_truncated,
    "missing_file": _case_missing,
    "wrong_array_length": _case_wrong_length,
    "nan_latency": _case_nan,
    "negative_latency": _case_negative,
    "unknown_arch_string": _case_unknown_arch,
    "smuggled_callable": _case_smuggled_callable,
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_fails_with_one_line_error_and_keeps_previous_dataset(case, bad_mirror, mirror, previous_good, tmp_path):
    replace, patch, exc_type, needles = BAD_CASES[case](mirror, tmp_path)
    root = bad_mirror(replace, patch_manifest=patch)
    old_hash, old_listing = _content_hash(previous_good), _listing(previous_good)

    with pytest.raises(exc_type) as e:
        build(previous_good, mirror=root)
    msg = str(e.value)
    assert "\n" not in msg, f"not a one-line error: {msg!r}"
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    [rel] = replace
    assert str(root / "help" / rel) in msg, f"the error must name the file: {msg!r}"
    if case == "smuggled_callable":
        assert "os.system" in msg or "posix.system" in msg, msg
        assert not (tmp_path / "pwned").exists(), "the smuggled command ran"

    _assert_untouched(previous_good, old_hash, old_listing)


@pytest.mark.parametrize("case", ["checksum_mismatch", "unknown_arch_string", "smuggled_callable"])
def test_cli_build_bad_input_exits_1_with_single_error_line(case, bad_mirror, mirror, previous_good, tmp_path):
    replace, patch, _, needles = BAD_CASES[case](mirror, tmp_path)
    root = bad_mirror(replace, patch_manifest=patch)
    old_hash, old_listing = _content_hash(previous_good), _listing(previous_good)

    result = _cli_build(root, previous_good)
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    stderr = result.stderr
    everything = result.output + stderr
    assert "Traceback" not in everything
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, stderr
    [line] = error_lines
    [rel] = replace
    assert str(root / "help" / rel) in line, line  # the whole message, path included, on that one line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert "ready at" not in result.stdout
    assert not (tmp_path / "pwned").exists()
    _assert_untouched(previous_good, old_hash, old_listing)


def _fbnet_meta(mirror: Path, arch0) -> dict:
    meta = load_pt(mirror / "help" / "data/fbnet/metainfo.pt")
    meta["arch"][0] = arch0
    return meta


#: well-formed pickles with the wrong structure: (file, object builder, words the error must contain)
MALFORMED = {
    "latency_strings": (NB201_LAT, lambda m: ["1.5"] * NB201_ARCHS, ["not all numbers", "str"]),
    "latency_nested_lists": (NB201_LAT, lambda m: [[1.5]] * NB201_ARCHS, ["not all numbers", "list"]),
    "latency_bools": (NB201_LAT, lambda m: [True] * NB201_ARCHS, ["not all numbers", "bool"]),
    "latency_not_a_list": (NB201_LAT, lambda m: {"1080ti_1": [1.0]}, ["expected a list"]),
    "reference_index_not_int": ("data/nasbench201/hardware_embedding_index.pt", lambda m: ["x"] * 10, ["reference arch index"]),
    "reference_index_float": ("data/nasbench201/hardware_embedding_index.pt", lambda m: [1.7] * 10, ["reference arch index"]),
    "reference_index_out_of_range": ("data/ofa/hardware_embedding_index.pt", lambda m: [0, 10**6], ["out of range"]),
    "fbnet_arch_not_a_dict": ("data/fbnet/metainfo.pt", lambda m: _fbnet_meta(m, 5), ["arch 0", "op_idx_list"]),
    "fbnet_arch_without_op_idx_list": ("data/fbnet/metainfo.pt", lambda m: _fbnet_meta(m, {"x": 1}), ["arch 0", "op_idx_list"]),
    "fbnet_arch_pt_not_lists": ("data/fbnet/arch.pt", lambda m: [5] * 5000, ["disagrees with metainfo.pt"]),
    "fbnet_arch_pt_disagrees": ("data/fbnet/arch.pt", lambda m: load_pt(m / "help/data/fbnet/arch.pt")[::-1], ["disagrees"]),
    "ofa_arch_not_a_dict": ("data/ofa/ofa_archs.pt", lambda m: {"arch": [5] * 5000}, ["unknown architecture"]),
    "nb201_duplicate_index": (
        NB201_IDX,
        lambda m: {s: min(i, 1) for s, i in load_pt(m / "help" / NB201_IDX).items()},
        ["not a unique id"],
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_source_structure_is_one_error_line_not_a_traceback(case, bad_mirror, mirror, previous_good):
    """Right checksum, readable pickle, wrong shape of data: still `error: <file>: ...`, exit 1, nothing written."""
    rel, make, needles = MALFORMED[case]
    root = bad_mirror({rel: _torch_bytes(make(mirror))}, patch_manifest=True)
    old_hash, old_listing = _content_hash(previous_good), _listing(previous_good)

    result = _cli_build(root, previous_good)
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output + result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert str(root / "help" / rel) in error_lines[0]
    for needle in needles:
        assert needle in error_lines[0], f"{needle!r} not in {error_lines[0]!r}"
    _assert_untouched(previous_good, old_hash, old_listing)


@pytest.mark.parametrize("where", ["arch_string", "mirror_path"])
def test_cli_error_line_keeps_square_brackets_verbatim(where, bad_mirror, mirror, tmp_path, monkeypatch):
    if where == "arch_string":
        idx = load_pt(mirror / "help" / NB201_IDX)
        victim = next(s for s, i in idx.items() if i == 0)
        patched = {("[/x]" if s == victim else s): i for s, i in idx.items()}
        root = bad_mirror({NB201_IDX: _torch_bytes(patched)}, patch_manifest=True)
        needle = "'[/x]'"
    else:
        data = bytearray(_real_bytes(mirror, NB201_LAT))
        data[100] ^= 0xFF
        root = bad_mirror({NB201_LAT: bytes(data)})
        root = root.rename(root.parent / "mirror[v2]")
        needle = str(root / "help" / NB201_LAT)
    result = _cli_build(root, tmp_path / "out" / "dataset")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), repr(result.exception)
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert needle in line, line


def test_bad_mirror_folder_is_a_clear_error(tmp_path, previous_good):
    with pytest.raises(DataError, match="mirror folder for source 'help' not found"):
        build(previous_good, mirror=tmp_path / "nowhere")
    assert _hidden_siblings(previous_good) == []


def test_unpatched_symlink_mirror_builds_like_the_real_one(bad_mirror, mirror):
    """Sanity check of the bad-mirror fixture: with nothing replaced every file verifies."""
    from latbench.data.sources import fetch, get_source

    root = bad_mirror({})
    files = fetch(get_source("help"), mirror=root)
    assert len(files) == len(PINNED_MANIFEST["files"])


# ------------------------------------------------------------------------ 6. the download path
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serve(folder: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture()
def download_env(tmp_path, monkeypatch):
    """LATBENCH_HOME in tmp_path, no mirror, and no proxy between us and 127.0.0.1."""
    home = tmp_path / "home"
    monkeypatch.setenv("LATBENCH_HOME", str(home))
    monkeypatch.delenv("LATBENCH_MIRROR", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    yield home
    store.clear_cache()


def test_download_build_end_to_end_over_http(download_env, mirror, dataset_dir, tmp_path):
    from latbench.data.sources import fetch, get_source

    out = download_env / "dataset"
    with _serve(mirror / "help") as url:
        info = build(out, mirror=None, base_url=url)  # HELP over HTTP + the committed measurements
    assert info["content_hash"] == _content_hash(dataset_dir) == _content_hash(out)
    cache = paths.download_dir() / "help"
    assert cache == download_env / "downloads" / "help"
    for entry in PINNED_MANIFEST["files"]:
        local = cache / entry["path"]
        assert local.is_file(), entry["path"]
        assert local.stat().st_size == entry["size"]
        assert hashlib.sha256(local.read_bytes()).hexdigest() == entry["sha256"]
    assert _hidden_siblings(out) == []

    # a cached file went bad, and the server now hands out corrupted bytes for it
    rel = "data/nasbench201/hardware_embedding_index.pt"
    cached = cache / rel
    good = cached.read_bytes()
    cached.write_bytes(good[:-3] + b"bad")
    evil = tmp_path / "evil"
    (evil / rel).parent.mkdir(parents=True)
    (evil / rel).write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    old_listing = _listing(out)
    with _serve(evil) as bad_url:
        with pytest.raises(DataError) as e:
            build(out, mirror=None, base_url=bad_url, sources=("help",))
    msg = str(e.value)
    assert "sha256" in msg and bad_url in msg and rel in msg, msg
    assert "\n" not in msg
    _assert_untouched(out, info["content_hash"], old_listing)

    # the good server again: the bad cached file is re-downloaded, the rest is reused
    with _serve(mirror / "help") as url:
        files = fetch(get_source("help"), base_url=url)
    assert files[rel] == cached and cached.read_bytes() == good


def test_download_http_404_is_a_clear_error(download_env, tmp_path, previous_good):
    empty = tmp_path / "empty"
    empty.mkdir()
    old_hash, old_listing = _content_hash(previous_good), _listing(previous_good)
    with _serve(empty) as url:
        with pytest.raises(DataError) as e:
            build(previous_good, mirror=None, base_url=url, sources=("help",))
    msg = str(e.value)
    assert "download failed" in msg and url in msg, msg
    assert "404" in msg, msg
    assert "\n" not in msg
    first = PINNED_MANIFEST["files"][0]["path"]
    assert not (paths.download_dir() / "help" / first).exists(), "a failed download left a file in the cache"
    _assert_untouched(previous_good, old_hash, old_listing)


@pytest.mark.parametrize("base_url", ["127.0.0.1:9", "ftp2://127.0.0.1:9", "http://"])
def test_download_malformed_base_url_is_a_download_error_not_a_checksum_error(download_env, base_url):
    from latbench.data.sources import fetch, get_source

    with pytest.raises(DataError) as e:
        fetch(get_source("help"), base_url=base_url)
    msg = str(e.value)
    assert "download failed" in msg and "sha256" not in msg, msg


def test_download_from_unreachable_server_is_a_clear_error(download_env):
    from latbench.data.sources import fetch, get_source

    with _serve(download_env) as url:  # take a free port, then close it: nothing listens there
        pass
    with pytest.raises(DataError, match="download failed"):
        fetch(get_source("help"), base_url=url)


# --------------------------------------------------------------------- 7. the safe unpickler
@pytest.mark.parametrize(
    "obj",
    [
        [1.5, 2.25, float("inf")],
        {"a": [1, 2, 3], "b": ("x", None, True), "c": {"nested": [1.0e-300]}},
        {"|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|": 7},
    ],
)
def test_safe_unpickler_round_trips_plain_data(obj, tmp_path):
    p = tmp_path / "plain.pt"
    _torch_save(obj, p)
    assert load_pt(p) == obj
    assert loads(pickle.dumps(obj, protocol=2)) == obj
    raw = tmp_path / "plain.pkl"  # a raw pickle (not a zip) is read too
    raw.write_bytes(pickle.dumps(obj, protocol=4))
    assert load_pt(raw) == obj


def test_safe_unpickler_allows_numpy_scalars(tmp_path, mirror):
    arch = load_pt(mirror / "help" / "data/ofa/ofa_archs.pt")["arch"][0]
    assert arch["r"] == 204
    assert isinstance(arch["r"], np.integer)
    obj = {"i": np.int64(3), "f": np.float32(0.5), "d": np.float64(math.pi)}
    p = tmp_path / "np.pt"
    _torch_save(obj, p)
    got = load_pt(p)
    assert got == obj and got["f"].dtype == np.float32


def test_safe_unpickler_rejects_torch_tensors(tmp_path):
    import torch

    p = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), p)
    with pytest.raises(UnsafePickleError) as e:
        load_pt(p)
    msg = str(e.value)
    assert str(p) in msg and "torch" in msg and "\n" not in msg, msg


def test_safe_unpickler_rejects_persistent_ids():
    class StoragePickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", "0") if isinstance(obj, bytearray) else None

    buf = io.BytesIO()
    StoragePickler(buf, protocol=2).dump([1, bytearray(b"xx")])
    assert not _globals_in(buf.getvalue())
    with pytest.raises(UnsafePickleError, match="tensor/storage reference"):
        loads(buf.getvalue(), "weights.pt")


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_safe_unpickler_rejects_smuggled_callable_without_running_it(protocol, tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    p.write_bytes(_torch_zip(_evil_pickle(marker, protocol)))
    with pytest.raises(UnsafePickleError) as e:
        load_pt(p)
    msg = str(e.value)
    assert ("os.system" in msg or "posix.system" in msg) and str(p) in msg, msg
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):  # the raw pickle, outside a zip
        loads(_evil_pickle(marker, protocol), "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("fn", [eval, exec, getattr, __import__, shutil.rmtree])
def test_safe_unpickler_rejects_other_callables(fn, tmp_path):
    data = pickle.dumps(_Smuggler(fn, "x"), protocol=2)
    with pytest.raises(UnsafePickleError, match=r"refuses to load"):
        loads(data, "x.pt")


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a pickle", b"\x80\x02]q\x00(K\x01K\x02"])
def test_safe_unpickler_garbage_is_a_data_error(content, tmp_path):
    p = tmp_path / "garbage.pt"
    p.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_pt(p)
    assert not isinstance(e.value, UnsafePickleError)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_safe_unpickler_corrupt_zip_is_a_data_error(tmp_path):
    good = _torch_save([1.0, 2.0], tmp_path / "ok.pt")
    p = tmp_path / "corrupt.pt"
    # keep the zip directory (so it is recognised as a zip) but break the member data
    i = good.index(b"data.pkl") + 20
    p.write_bytes(good[:i] + b"\x00" * 40 + good[i + 40 :])
    with pytest.raises(DataError) as e:
        load_pt(p)
    assert str(p) in str(e.value)


def test_load_pt_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_pt(tmp_path / "nope.pt")


# ------------------------------------------------------------------------------- CLI: data info
def test_cli_data_info_shows_version_and_counts(data):
    from typer.testing import CliRunner

    from latbench.cli import app

    result = CliRunner().invoke(app, ["data", "info"])
    assert result.exit_code == 0, result.output
    assert store.info()["dataset_version"] in result.stdout
    for space in SPACES:
        assert f"{store.info()['spaces'][space]['rows']:,}" in result.stdout


def test_cli_data_info_without_dataset_is_one_error_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from latbench.cli import app

    monkeypatch.setenv("LATBENCH_HOME", str(tmp_path / "empty-home"))
    store.clear_cache()
    try:
        result = CliRunner().invoke(app, ["data", "info"])
    finally:
        store.clear_cache()
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        line for line in result.stderr.splitlines() if line.strip()
    ]
    assert "no latbench dataset here" in result.stderr


# ------------------------------------------------- 8. progress, partial (offline) builds, runnable tasks
def test_fetch_reports_every_verified_file(mirror):
    seen = []
    files = sources_mod.fetch(
        sources_mod.get_source("help"), mirror=mirror, on_file=lambda e, total: seen.append((e["path"], total))
    )
    assert [p for p, _ in seen] == [e["path"] for e in PINNED_MANIFEST["files"]] == list(files)
    assert {t for _, t in seen} == {len(PINNED_MANIFEST["files"])}


@pytest.fixture(scope="module")
def partial_home(tmp_path_factory):
    """A dataset built offline (no mirror, an unreachable download host): the measured devices only,
    with every progress call and log line of the build recorded."""
    from unittest import mock

    home = tmp_path_factory.mktemp("partial_home")
    calls: list[tuple[str, int, int]] = []
    logs: list[str] = []
    with mock.patch.dict(os.environ, {"LATBENCH_HOME": str(home)}):
        os.environ.pop("LATBENCH_MIRROR", None)
        info = build_dataset(
            home / "dataset",
            mirror=None,
            base_url="http://127.0.0.1:9/",
            on_progress=lambda *c: calls.append(c),
            log=logs.append,
        )
    store.clear_cache()
    return home, info, calls, logs


@pytest.mark.slow
def test_build_reports_progress_of_every_stage(partial_home):
    _, _, calls, _ = partial_home
    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages == ["read latbench-measured", "spaces", "kernels", "tasks"]  # the HELP download failed first
    for stage in stages:
        done = [d for s, d, _ in calls if s == stage]
        totals = {t for s, _, t in calls if s == stage}
        assert len(totals) == 1 and done == sorted(done) and done[-1] == totals.pop(), stage
    from latbench.tasks.spec import list_tasks

    assert [t for s, _, t in calls if s == "tasks"][0] == len(list_tasks())


@pytest.mark.slow
def test_partial_build_log_counts_devices_and_every_skipped_task(partial_home):
    from latbench.tasks.spec import list_tasks

    logs = partial_home[3]
    assert "reading latbench-measured: 6 measured devices in 2 spaces" in logs
    line = next(line for line in logs if line.startswith("wrote "))
    written, skipped = (int(n) for n in re.fullmatch(r"wrote (\d+) task configs \((\d+) skipped: .*\)", line).groups())
    assert written >= 1 and written + skipped == len([t for t in list_tasks() if t.kind != "user"])  # user tasks are no configs


@pytest.mark.slow
def test_partial_build_records_the_missing_source_and_what_adds_it(partial_home, tmp_path, monkeypatch):
    from latbench.data import freshness

    home, info, _, _ = partial_home
    assert info["missing_sources"] == ["help"]
    assert "**partial**: built without the source(s) `help`" in (home / "dataset" / "README.md").read_text()
    monkeypatch.delenv("LATBENCH_MIRROR", raising=False)
    offline = freshness.advice(info)
    assert (
        offline.where is None
        and offline.command == "latbench data build"
        and "with network or LATBENCH_MIRROR" in offline.message
    )
    mirror = tmp_path / "mirror"
    (mirror / "help").mkdir(parents=True)
    tip = freshness.advice(info, mirror=mirror)
    assert tip.where == "mirror" and tip.command == f"LATBENCH_MIRROR={mirror} latbench data build"
    monkeypatch.setenv("LATBENCH_MIRROR", str(mirror))
    assert freshness.advice(info).command == "latbench data build"  # the mirror is already in the environment
    explicit = {**info, "missing_sources": []}  # `data build --sources latbench-measured`: nothing is missing
    assert freshness.advice(explicit, mirror=mirror) is None
    legacy = {k: v for k, v in info.items() if k != "missing_sources"}  # built before the field existed
    assert freshness.missing_sources(legacy) == ["help"]


@pytest.mark.slow
def test_data_info_on_a_partial_dataset_shows_runnable_tasks_and_the_command(partial_home, monkeypatch):
    from typer.testing import CliRunner

    from latbench.cli import app
    from latbench.tasks.runnable import runnable
    from latbench.tasks.spec import list_tasks

    home, info, _, _ = partial_home
    monkeypatch.setenv("LATBENCH_HOME", str(home))
    monkeypatch.delenv("LATBENCH_MIRROR", raising=False)
    monkeypatch.setattr("latbench.data.freshness.reachable", lambda name, timeout=0: False)
    store.clear_cache()
    try:
        result = CliRunner().invoke(app, ["data", "info"])
    finally:
        store.clear_cache()
    assert result.exit_code == 0, result.output
    ok = [t.id for t in list_tasks() if runnable(t, info)]
    assert ok and all(t.startswith("measured-") for t in ok)
    assert f"tasks runnable on this data: {len(ok)} of {len(list_tasks())}" in result.stdout
    assert "with network or LATBENCH_MIRROR set, run `latbench data build`" in " ".join(result.stdout.split())


def _partial_copy(partial_home, tmp_path, monkeypatch, mirror: Path) -> dict:
    """A copy of the partial dataset as LATBENCH_HOME, with LATBENCH_MIRROR=mirror; its info."""
    home, info, _, _ = partial_home
    work = tmp_path / "home"
    shutil.copytree(home / "dataset", work / "dataset")
    monkeypatch.setenv("LATBENCH_HOME", str(work))
    monkeypatch.setenv("LATBENCH_MIRROR", str(mirror))
    store.clear_cache()
    return info


@pytest.mark.slow
def test_a_failed_rebuild_keeps_the_partial_dataset_and_the_command_goes_on(partial_home, tmp_path, monkeypatch, capsys):
    from latbench.cli.common import ensure_data

    broken = tmp_path / "mirror"
    (broken / "help").mkdir(parents=True)  # the source's folder, without its files
    info = _partial_copy(partial_home, tmp_path, monkeypatch, broken)
    try:
        ensure_data()
        assert store.info()["content_hash"] == info["content_hash"]
    finally:
        store.clear_cache()
    err = " ".join(capsys.readouterr().err.split())
    assert "LATBENCH_MIRROR has them: rebuilding (`latbench data build`)" in err
    assert "warning: rebuild failed (" in err and "going on with the partial dataset" in err


@pytest.mark.slow
def test_first_data_command_completes_a_partial_dataset_from_the_mirror(partial_home, mirror, tmp_path, monkeypatch):
    from latbench.cli.common import ensure_data

    _partial_copy(partial_home, tmp_path, monkeypatch, mirror)
    try:
        ensure_data()
        store.clear_cache()
        assert store.info()["missing_sources"] == []
        assert set(store.info()["spaces"]) == set(SPACES)
        ensure_data()  # complete now: nothing more to do
    finally:
        store.clear_cache()


def test_runnable_names_the_missing_devices(data):
    from latbench.tasks.runnable import missing_devices, runnable
    from latbench.tasks.spec import load_task

    task = load_task("hard-3")
    assert runnable(task) and missing_devices(task) == []
    info = {"spaces": {task.space: {"devices": list(task.source)}}}
    assert missing_devices(task, info) == [d for d in (*task.valid, *task.target)]
    assert not runnable(task, {"spaces": {}})
