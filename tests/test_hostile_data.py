"""Hostile input to the data layer: registered sources, the published dataset card, and builds that are killed or overlap.

Issue #18's promises, each checked here:

- ``data add-source`` registers nothing ``data build`` cannot build: unsafe or clashing names,
  the same folder twice, bad kernel tables, a ``retest.json`` without ``spearman``, an empty table,
  names that would write outside the sources folder are all one-line errors with nothing changed;
  ``data sources list|remove`` manage what is registered;
- nothing from the data becomes markup in the dataset card ``data push`` publishes (device names
  follow one pattern, free text from meta.json is escaped);
- ``data build`` always leaves a whole dataset: a kill at any point of the swap, two builds at
  once, leftovers of killed builds.

Sources are made from a committed device's files (no measuring) and builds use only the measured
source with a tiny committed root (``LATBENCH_MEASURED``), so each build takes a second or two.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clirun import run_cli
from hostile import hold

from latbench.data import build as build_mod
from latbench.data import card, measured, store
from latbench.errors import DataError

COMMITTED = {space: measured.PACKAGE_DIR / space / "epyc-2c-torch-t1-bs1-fp32" for space in ("nb201", "fbnet")}
DEV = "mylab-torch-t1-bs1-fp32"
HOSTILE_TEXT = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "![x](https://evil.example/p.png)",
    "a | b | c",
    "line\nbreak <b>bold</b>",
]


# ------------------------------------------------------------------------------------ helpers
def make_device(
    root: Path,
    device: str = DEV,
    *,
    space: str = "nb201",
    n: int = 5,
    folder_name: str | None = None,
    meta: dict | None = None,
    kernels: bool = True,
    retest: dict | None = None,
) -> Path:
    """``root/<space>/<device>/`` in the layout `latbench profile` writes, from a committed device's files."""
    src = COMMITTED[space]
    dst = root / space / (folder_name or device)
    dst.mkdir(parents=True)
    m = json.loads((src / "meta.json").read_text())
    m["device"] = device
    m.update(meta or {})
    (dst / "meta.json").write_text(json.dumps(m))
    lat = pq.read_table(src / "latency.parquet").slice(0, n)
    pq.write_table(lat, dst / "latency.parquet")
    if kernels:
        k = pq.read_table(src / "kernels.parquet")
        keep = set(lat.column("arch").to_pylist())
        mask = pa.array([a in keep for a in k.column("arch").to_pylist()])
        pq.write_table(k.filter(mask), dst / "kernels.parquet")
    default = {"archs": 5, "spearman": 0.9, "median_abs_rel_diff": 0.1}
    (dst / "retest.json").write_text(json.dumps(retest if retest is not None else default))
    return dst


def committed_meta() -> dict:
    return json.loads((COMMITTED["nb201"] / "meta.json").read_text())


def listing(folder: Path) -> dict[str, bytes]:
    """Every file and link under ``folder`` (lock files aside: taking a lock writes the taker's pid)."""
    if not folder.exists():
        return {}
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.name in (".sources.lock", store.LOCK_NAME):
            continue
        if p.is_symlink():
            out[str(p.relative_to(folder))] = b"-> " + os.readlink(p).encode()
        elif p.is_file():
            out[str(p.relative_to(folder))] = p.read_bytes()
    return out


def one_line(msg: str) -> str:
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


cli = run_cli


def cli_error(res) -> str:
    """The one ``error: ...`` line a failing command ends with (progress notes may come before it)."""
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 1 and lines and lines[-1].startswith("error: "), (res.exit_code, res.stdout, res.stderr)
    assert sum(x.startswith("error: ") for x in lines) == 1 and "Traceback" not in res.stderr
    return one_line(lines[-1])


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A fresh LATBENCH_HOME, and a tiny committed root (one nb201 device) so builds take a second."""
    h = tmp_path / "home"
    committed = tmp_path / "committed"
    make_device(committed, "epyc-2c-torch-t1-bs1-fp32", n=6)
    monkeypatch.setenv("LATBENCH_HOME", str(h))
    monkeypatch.setenv("LATBENCH_MEASURED", str(committed))
    monkeypatch.delenv("LATBENCH_MIRROR", raising=False)
    store.clear_cache()
    yield h
    store.clear_cache()


def tiny_build(out: Path | None = None, **kw) -> dict:
    return build_mod.build(out, sources=("latbench-measured",), mirror=None, **kw)


def dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


# -------------------------------------------------------------- 1. add-source: nothing a build cannot read
def _hurt(dev: Path, how: str) -> None:
    k = dev / "kernels.parquet"
    if how == "kernel-bad-arch":
        t = pq.read_table(k)
        archs = t.column("arch").to_pylist()
        archs[0] = "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"
        pq.write_table(t.set_column(0, "arch", pa.array(archs)), k)
    elif how == "kernel-arch-not-measured":
        t = pq.read_table(k)
        lat = pq.read_table(dev / "latency.parquet")
        pq.write_table(lat.slice(1), dev / "latency.parquet")  # the first arch keeps kernel rows, loses its latency
    elif how == "kernel-types":
        t = pq.read_table(k)
        pq.write_table(t.set_column(3, "h", pa.array([f"h{v}" for v in t.column("h").to_pylist()])), k)
    elif how == "kernel-nulls":
        t = pq.read_table(k)
        v = t.column("latency_ms").to_pylist()
        v[0] = None
        pq.write_table(t.set_column(9, "latency_ms", pa.array(v, pa.float64())), k)
    elif how == "retest-no-spearman":
        (dev / "retest.json").write_text(json.dumps({"archs": 5}))
    elif how == "retest-not-json":
        (dev / "retest.json").write_text("{spearman: high")
    elif how == "retest-out-of-range":
        (dev / "retest.json").write_text(json.dumps({"archs": 5, "spearman": 7}))
    elif how == "empty-parquet":
        lat = pq.read_table(dev / "latency.parquet")
        pq.write_table(lat.slice(0, 0), dev / "latency.parquet")
        (dev / "kernels.parquet").unlink()
    elif how == "arch-not-string":
        lat = pq.read_table(dev / "latency.parquet")
        pq.write_table(lat.set_column(0, "arch", pa.array(np.arange(lat.num_rows))), dev / "latency.parquet")
    elif how == "latency-strings":
        lat = pq.read_table(dev / "latency.parquet")
        pq.write_table(
            lat.set_column(1, "latency_ms", pa.array([str(v) for v in lat.column("latency_ms").to_pylist()])),
            dev / "latency.parquet",
        )
    elif how.startswith("meta:"):
        meta = json.loads((dev / "meta.json").read_text())
        key, value = how[5:].split("=", 1)
        target = meta
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = json.loads(value)
        (dev / "meta.json").write_text(json.dumps(meta))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how, needle",
    [
        ("kernel-bad-arch", "nor_conv_9x9"),
        ("kernel-arch-not-measured", "has kernel rows but no latency"),
        ("kernel-types", "do not convert"),
        ("kernel-nulls", "missing values in column(s) latency_ms"),
        ("retest-no-spearman", "retest.json: invalid: spearman: Field required"),
        ("retest-not-json", "retest.json: invalid"),
        ("retest-out-of-range", "spearman: must be in [-1, 1]"),
        ("empty-parquet", "no measured archs"),
        ("arch-not-string", "column types arch: int64"),
        ("latency-strings", "expected strings and numbers"),
        ('meta:setting.runtime="tensorrt"', "unknown runtime 'tensorrt'"),
        ('meta:setting.precision="int8"', "use --runtime onnxruntime"),
        ('meta:setting.space="fbnet"', "differs from space 'nb201'"),
        ("meta:reference_archs=5", "reference_archs must be a list"),
        ('meta:hardware.cpu_model=["a", "b"]', "cpu_model must be a string"),
        ('meta:hardware.cpu_cores="many"', "cpu_cores must be an integer"),
    ],
)
@pytest.mark.slow
def test_add_source_refuses_what_would_break_the_build(home, tmp_path, how, needle):
    src = tmp_path / "src"
    dev = make_device(src)
    _hurt(dev, how)
    with pytest.raises(DataError) as e:
        measured.add_source(src, "mine")
    msg = one_line(str(e.value))
    assert needle in msg and (str(dev) in msg or str(src) in msg), msg
    assert listing(home) == {}


@pytest.mark.parametrize("how", ["kernel-bad-arch", "retest-no-spearman", "empty-parquet"])
def test_add_source_cli_error_line_and_nothing_registered(home, tmp_path, how):
    src = tmp_path / "src"
    _hurt(make_device(src), how)
    cli_error(cli("data", "add-source", str(src), "--name", "mine"))
    assert listing(home) == {}


@pytest.mark.parametrize(
    "device, needle",
    [
        ("<img src=x onerror=alert(1)>", "is not a valid name"),
        ("MyLab-torch-t1-bs1-fp32", "is not a valid name"),
        ("-torch-t1-bs1-fp32", "is not a valid name"),
        ("a" * 101, "is not a valid name"),
        ("1080ti_1", "upstream (HELP) device names"),
        ("pixel3", "upstream (HELP) device names"),
        ("eyeriss", "upstream (HELP) device names"),
    ],
)
def test_add_source_refuses_unsafe_or_upstream_device_names(home, tmp_path, device, needle):
    src = tmp_path / "src"
    make_device(src, device)
    with pytest.raises(DataError) as e:
        measured.add_source(src, "mine")
    assert needle in one_line(str(e.value))
    assert listing(home) == {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["../x", "..", "/tmp/latbench-abs-x", ".hidden", "a/b", "x y", "", "<img src=x>", "X"])
def test_add_source_name_stays_inside_the_sources_folder(home, tmp_path, name):
    src = tmp_path / "src"
    make_device(src)
    before = listing(tmp_path)
    with pytest.raises(DataError, match="not a valid name") as e:
        measured.add_source(src, name)
    one_line(str(e.value))
    assert listing(tmp_path) == before and not Path("/tmp/latbench-abs-x").exists()
    err = cli_error(cli("data", "add-source", str(src), "--name", name))
    assert "not a valid name" in err and listing(tmp_path) == before


def test_default_name_from_an_odd_folder_name_is_made_safe(home, tmp_path):
    src = tmp_path / "My Results (v2)!"
    make_device(src)
    assert measured.add_source(src).name == "my-results-v2"


def test_same_folder_under_two_names_is_refused(home, tmp_path):
    src = tmp_path / "src"
    make_device(src)
    measured.add_source(src, "first")
    before = listing(home)
    with pytest.raises(DataError, match="already registered by source 'first'") as e:
        measured.add_source(src, "second")
    assert "sources remove first" in one_line(str(e.value))
    assert listing(home) == before
    tiny_build()  # what is registered still builds


def test_two_folders_with_one_device_name_are_refused(home, tmp_path):
    make_device(tmp_path / "a")
    make_device(tmp_path / "b", n=3)
    measured.add_source(tmp_path / "a", "a")
    with pytest.raises(DataError, match=f"nb201/{DEV} already registered by source 'a'"):
        measured.add_source(tmp_path / "b", "b")


def test_same_name_twice_is_refused(home, tmp_path):
    make_device(tmp_path / "a")
    make_device(tmp_path / "b", "other-torch-t1-bs1-fp32")
    measured.add_source(tmp_path / "a", "lab")
    with pytest.raises(DataError, match="already registered"):
        measured.add_source(tmp_path / "b", "lab")


def test_device_with_the_committed_name_is_refused(home, tmp_path):
    make_device(tmp_path / "a", "epyc-2c-torch-t1-bs1-fp32")
    with pytest.raises(DataError, match="already ship with latbench"):
        measured.add_source(tmp_path / "a", "a")


def test_every_accepted_source_builds(home, tmp_path):
    """What add-source accepts, data build reads: several sources, kernels, retest, fbnet and nb201."""
    make_device(tmp_path / "a")
    make_device(tmp_path / "b", "lab2-torch-t1-bs1-fp32", n=8, retest={"archs": 3, "spearman": None})
    make_device(tmp_path / "b", "lab2-torch-t1-bs1-fp32", space="fbnet", n=4)
    make_device(
        tmp_path / "c",
        "lab3-ort-t1-bs1-fp32",
        kernels=False,
        meta={"setting": {**committed_meta()["setting"], "runtime": "onnxruntime"}},
    )
    for name in "abc":
        measured.add_source(tmp_path / name, name)
    info = tiny_build()
    assert set(info["spaces"]["nb201"]["devices"]) == {
        "epyc-2c-torch-t1-bs1-fp32",
        DEV,
        "lab2-torch-t1-bs1-fp32",
        "lab3-ort-t1-bs1-fp32",
    }
    assert info["spaces"]["fbnet"]["devices"] == ["lab2-torch-t1-bs1-fp32"]
    roots = {f["root"] for s in info["sources"] for f in s["files"]}
    assert not any(str(tmp_path) in r for r in roots)  # no local paths in the published latbench.json
    assert "registered source a" in roots


def test_archs_outside_the_datasets_space_are_refused(data, tmp_path, monkeypatch):
    """FBNet/OFA archs are HELP's sample: an arch outside it could never be placed by a build with HELP."""
    from latbench.spaces import space_class
    from latbench.spaces.fbnet import NUM_LAYERS, OPS

    home = tmp_path / "home"
    home.mkdir()
    (home / "dataset").symlink_to(data / "dataset")  # the session's dataset (built with HELP), a fresh registry
    monkeypatch.setenv("LATBENCH_HOME", str(home))
    store.clear_cache()
    rng = np.random.default_rng(0)
    fb = space_class("fbnet")
    known = store.load_space("fbnet")
    foreign = [fb.from_raw(rng.integers(0, len(OPS), NUM_LAYERS).tolist()) for _ in range(3)]
    foreign = [a for a in foreign if a not in set(known.arch_str(i) for i in known.arch_ids())]
    assert foreign
    src = tmp_path / "src"
    dev = make_device(src, space="fbnet", kernels=False, n=3)
    lat = pq.read_table(dev / "latency.parquet")
    archs = [*lat.column("arch").to_pylist()[:-1], foreign[0]]
    pq.write_table(lat.set_column(0, "arch", pa.array(archs)), dev / "latency.parquet")
    with pytest.raises(DataError, match="archs are not among the 5000 fbnet archs of the dataset") as e:
        measured.add_source(src, "mine")
    one_line(str(e.value))
    assert not (home / "sources").exists()
    store.clear_cache()


def test_add_source_waits_for_the_registry_lock_then_says_who_holds_it(home, tmp_path, monkeypatch):
    make_device(tmp_path / "a")
    monkeypatch.setattr(measured, "REGISTRY_WAIT", 0.3)
    holder = hold(home / ".sources.lock")
    try:
        with pytest.raises(DataError, match=f"pid {holder.pid}") as e:
            measured.add_source(tmp_path / "a", "a")
        one_line(str(e.value))
        assert not (home / "sources").exists()
    finally:
        holder.kill()
        holder.wait()
    measured.add_source(tmp_path / "a", "a")  # a dead holder's lock file does not block


def test_killed_add_source_leftover_is_invisible_and_cleaned(home, tmp_path):
    make_device(tmp_path / "a")
    scratch = home / "sources" / f".x.tmp-{dead_pid()}"
    make_device(scratch, "half-torch-t1-bs1-fp32")
    assert measured.registered() == {}
    measured.add_source(tmp_path / "a", "a")
    assert sorted(p.name for p in (home / "sources").iterdir()) == ["a"]


def test_source_copied_with_changes_midway_is_refused(home, tmp_path, monkeypatch):
    """The copy is what builds read: it is checked again before it is renamed into place."""
    make_device(tmp_path / "a")
    real = shutil.copyfile

    def corrupting(src, dst, *a, **k):
        real(src, dst, *a, **k)
        if Path(dst).name == "retest.json":
            Path(dst).write_text("{}")

    monkeypatch.setattr(measured.shutil, "copyfile", corrupting)
    with pytest.raises(DataError, match="retest.json: invalid"):
        measured.add_source(tmp_path / "a", "a")
    assert measured.registered() == {} and [p.name for p in (home / "sources").iterdir()] == []


# ---------------------------------------------------------------------- 2. sources list / remove
def test_sources_list_and_remove(home, tmp_path):
    assert "no registered sources" in cli("data", "sources", "list").stdout
    make_device(tmp_path / "a")
    measured.add_source(tmp_path / "a", "lab")
    res = cli("data", "sources", "list")
    assert res.exit_code == 0 and "lab" in res.stdout and f"nb201/{DEV}" in res.stdout and "ok" in res.stdout
    assert DEV in tiny_build()["spaces"]["nb201"]["devices"]
    err = cli_error(cli("data", "sources", "remove", "lba"))
    assert "no registered source 'lba'" in err and "did you mean lab" in err
    res = cli("data", "sources", "remove", "lab")
    assert res.exit_code == 0 and not (home / "sources" / "lab").exists()
    assert DEV not in tiny_build()["spaces"]["nb201"]["devices"]


@pytest.mark.parametrize("name", ["../decoy", "..", str(Path("/tmp")), "", ".lab"])
def test_sources_remove_never_deletes_outside_the_registry(home, tmp_path, name):
    decoy = home / "decoy"
    decoy.mkdir(parents=True)
    (decoy / "keep.txt").write_text("x")
    make_device(tmp_path / "a")
    measured.add_source(tmp_path / "a", "lab")
    before = listing(home)
    err = cli_error(cli("data", "sources", "remove", name))
    assert "no registered source" in err
    assert listing(home) == before and Path("/tmp").is_dir()


def test_source_registered_before_the_checks_is_named_by_the_build_and_removable(home, tmp_path):
    """An older latbench accepted a retest.json without spearman: the build names the source and the way out."""
    dev = make_device(home / "sources" / "old", retest={"archs": 5})
    assert dev.is_dir()
    with pytest.raises(DataError) as e:
        tiny_build()
    msg = one_line(str(e.value))
    assert "registered source 'old'" in msg and "latbench data sources remove old" in msg
    res = cli("data", "sources", "list")
    assert "broken: " in res.stdout and "spearman" in res.stdout
    measured.remove_source("old")
    tiny_build()


# ------------------------------------------------------------------ 3. the dataset card: no markup from data
@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_free_text_from_meta_is_inert_in_the_card_data_push_publishes(home, tmp_path, text):
    from latbench.data.push import push

    src = tmp_path / "src"
    make_device(src, meta={"hardware": {**committed_meta()["hardware"], "cpu_model": text}})
    measured.add_source(src, "lab")  # free text is data: accepted, and kept as is in the data
    tiny_build()
    row = next(r for r in store.load_devices() if r["device"] == DEV)
    assert text in row["hardware"] and text in row["description"]

    class Api:
        def create_repo(self, *a, **k):
            return "https://hub.example/datasets/org/x"

        def upload_folder(self, **kw):
            self.readme = (Path(kw["folder_path"]) / "README.md").read_text()

    api = Api()
    push("org/x", api=api)
    line = next(x for x in api.readme.splitlines() if x.startswith(f"| `{DEV}` |"))
    assert_inert_row(line)
    assert "<img" not in api.readme and "<script" not in api.readme and "<b>" not in api.readme


def assert_inert_row(line: str) -> None:
    """A devices-table row whose cells hold no markup: five cells, no raw tag, no unescaped markdown opener."""
    cells = re.split(r"(?<!\\)\|", line)
    assert len(cells) == 7 and cells[0] == cells[-1] == "", line  # no injected column, no broken row
    for cell in cells[2:6]:
        assert "<" not in cell and ">" not in cell, cell
        assert not re.search(r"(?<!\\)[\[\]!*_`~]", cell), cell


def test_card_render_escapes_every_cell_even_names_that_skipped_validation():
    info = {
        "dataset_version": "v",
        "content_hash": "h",
        "latbench_version": "0",
        "built_at": "t",
        "spaces": {},
        "sources": [
            {
                "name": "latbench-measured",
                "license": "MIT",
                "files": [{"path": "nb201/<img src=x onerror=alert(1)>", "archs": 3, "root": "r"}],
            }
        ],
    }
    devices = [
        {"device": name, "family": "server CPU", "hardware": name, "batch_size": "<b>1</b>", "origin": name}
        for name in HOSTILE_TEXT
    ]
    text = card.render(info, [], [], devices)
    assert "<img" not in text and "<script" not in text and "<b>" not in text
    rows = [x for x in text.splitlines() if x.startswith("| ") and "server CPU" in x]
    assert len(rows) == len(HOSTILE_TEXT)
    for row in rows:
        assert_inert_row(row)
        assert not re.search(r"(?<!\\)[\[\]!*_`~]", re.split(r"(?<!\\)\|", row)[1]), row  # unsafe names: escaped text


def test_hostile_device_folder_name_never_reaches_the_card(home, tmp_path):
    src = tmp_path / "src"
    name = "<img src=x onerror=alert(1)>"
    make_device(src, name)
    cli_error(cli("data", "add-source", str(src), "--name", "lab"))
    assert listing(home) == {}


# -------------------------------------------------------------------- 4. builds: always a whole dataset
def _hash(out: Path) -> str:
    return json.loads((out / "latbench.json").read_text())["content_hash"]


def _left(out: Path) -> list[str]:
    """Leftovers next to ``out``: hidden siblings but its versions folder, and in that anything but the
    lock and the current version."""
    vd = store.versions_dir(out)
    left = [p.name for p in out.parent.iterdir() if p.name.startswith(".") and p != vd]
    if vd.is_dir():
        left += [p.name for p in vd.iterdir() if p.name != store.LOCK_NAME and p != store.current_version(out)]
    return sorted(left)


def test_build_layout_is_a_link_to_a_version(home):
    info = tiny_build()
    out = home / "dataset"
    assert out.is_symlink() and store.current_version(out) is not None and not os.path.isabs(os.readlink(out))
    assert store.is_built() and store.info()["content_hash"] == info["content_hash"] and _left(out) == []
    import datasets

    ds = datasets.load_dataset(str(out), "nb201", cache_dir=str(home / "hf"))["train"]
    assert ds.num_rows == 6  # the tiny committed device's archs, read through the link


def test_kill_between_the_version_rename_and_the_link_switch_keeps_the_old_dataset(home, monkeypatch):
    out = home / "dataset"
    tiny_build()
    old_target, old = os.readlink(out), listing(out)
    with monkeypatch.context() as m:
        m.setattr(store, "point", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            tiny_build()
    assert os.readlink(out) == old_target and listing(out) == old and store.is_built()
    assert len(_left(out)) == 1  # the finished new version, never linked: an orphan
    logs: list[str] = []
    tiny_build(log=logs.append)
    assert _left(out) == [] and any("leftover" in m for m in logs)


def _swap_script(home: Path, committed: str, where: str) -> str:
    return textwrap.dedent(f"""
        import os
        os.environ["LATBENCH_HOME"] = {str(home)!r}; os.environ["LATBENCH_MEASURED"] = {committed!r}
        os.environ.pop("LATBENCH_MIRROR", None)
        from latbench.data import build, store
        real_rename = os.rename
        def rename(a, b):
            real_rename(a, b)
            if {where!r} == "after-first-rename" or (str(b).endswith("-legacy") and {where!r} == "after-legacy-rename"):
                os._exit(137)  # SIGKILL-like: no finally, no except
        os.rename = rename
        build.build(None, sources=("latbench-measured",), mirror=None)
    """)


def test_real_kill_between_the_renames_leaves_a_dataset(home):
    out = home / "dataset"
    tiny_build()
    before = listing(out)
    p = subprocess.run([sys.executable, "-c", _swap_script(home, os.environ["LATBENCH_MEASURED"], "after-first-rename")])
    assert p.returncode == 137
    assert listing(out) == before and store.is_built()
    tiny_build()
    assert _left(out) == [] and store.is_built()


def test_real_kill_while_moving_an_old_layout_dataset_is_recovered_by_the_next_read(home):
    out = home / "dataset"
    tiny_build()
    real = home / "real-copy"
    shutil.copytree(out, real)
    out.unlink()
    real.rename(out)  # a dataset folder as older latbench versions left it
    p = subprocess.run([sys.executable, "-c", _swap_script(home, os.environ["LATBENCH_MEASURED"], "after-legacy-rename")])
    assert p.returncode == 137
    assert not out.exists() and not out.is_symlink()  # the one window of the migration: no link yet
    store.clear_cache()
    assert store.is_built()  # a read puts a whole version back
    assert out.is_symlink() and (out / "README.md").is_file() and (out / "data" / "nb201.parquet").is_file()


def test_leftover_of_an_older_latbench_kill_is_restored(home):
    out = home / "dataset"
    tiny_build()
    old = home / f".dataset.old-{dead_pid()}"
    shutil.copytree(out, old)
    shutil.rmtree(store.versions_dir(out))
    out.unlink()  # what the old two-rename swap left when killed between its renames
    assert store.is_built() and out.is_symlink() and not old.exists()
    assert _hash(out) == store.info()["content_hash"]


def test_stale_temporary_folders_of_dead_builds_are_removed_at_build_start(home):
    out = home / "dataset"
    tiny_build()
    vd = store.versions_dir(out)
    pid = dead_pid()
    junk = [vd / f"tmp-{pid}", home / f".dataset.tmp-{pid}", home / f".dataset.old-{pid}", vd / "v-1-1"]
    for j in junk:
        (j / "data").mkdir(parents=True)
        (j / "data" / "big.parquet").write_bytes(b"x" * 100_000)
    (vd / f"link-{pid}").symlink_to("nowhere")
    alive = home / f".dataset.tmp-{os.getpid()}"  # a live process's build (tests/synthetic.py names it so)
    alive.mkdir()
    logs: list[str] = []
    tiny_build(log=logs.append)
    assert not any(j.exists() for j in junk) and not (vd / f"link-{pid}").is_symlink()
    assert alive.is_dir() and _left(out) == [alive.name]
    assert any("removed 5 leftover(s) of stopped builds (0.4 MB)" in m for m in logs), logs


def test_second_build_fails_clearly_while_another_holds_the_lock(home, monkeypatch):
    out = home / "dataset"
    tiny_build()
    before = listing(home)
    holder = hold(store.versions_dir(out) / store.LOCK_NAME)
    try:
        with pytest.raises(DataError) as e:
            tiny_build(lock_timeout=0.3)
        msg = one_line(str(e.value))
        assert f"pid {holder.pid}" in msg and "another `latbench data build`" in msg
        monkeypatch.setattr(build_mod, "LOCK_TIMEOUT", 0.3)
        err = cli_error(cli("data", "build", "--sources", "latbench-measured"))
        assert f"pid {holder.pid}" in err
        assert listing(home) == before
        t0 = time.monotonic()
        assert store.is_built() and time.monotonic() - t0 < 1  # readers never wait for a build
    finally:
        holder.kill()
        holder.wait()


def test_second_build_waits_for_the_first(home):
    out = home / "dataset"
    holder = hold(store.versions_dir(out) / store.LOCK_NAME, seconds=1.5)
    logs: list[str] = []
    t0 = time.monotonic()
    tiny_build(lock_timeout=60, log=logs.append)
    assert time.monotonic() - t0 >= 1.0 and holder.wait() == 0
    assert any(f"waiting for another `latbench data build` (pid {holder.pid})" in m for m in logs)
    assert store.is_built() and _left(out) == []


def test_concurrent_builds_both_succeed_and_leave_one_whole_dataset(home):
    out = home / "dataset"
    script = _swap_script(home, os.environ["LATBENCH_MEASURED"], "never")
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    assert not any("Directory not empty" in e for e in errs)
    assert store.is_built() and _left(out) == [] and len(list(store.versions_dir(out).iterdir())) == 2  # lock + current


def test_dangling_link_is_not_a_dataset_and_the_build_replaces_it(home):
    out = home / "dataset"
    tiny_build()
    shutil.rmtree(store.current_version(out))
    store.clear_cache()
    assert not store.is_built()
    with pytest.raises(DataError, match="no latbench dataset here"):
        store.info()
    tiny_build()
    assert store.is_built() and _left(out) == []


def test_a_users_own_link_is_replaced_but_its_target_untouched(home, tmp_path):
    out = home / "dataset"
    tiny_build()
    elsewhere = tmp_path / "big-disk" / "ds"
    shutil.copytree(out, elsewhere)
    before = listing(elsewhere)
    out.unlink()
    out.symlink_to(elsewhere)
    tiny_build()
    assert store.current_version(out) is not None and listing(elsewhere) == before


def test_failed_build_of_a_new_folder_leaves_no_dataset_and_no_temp(home, tmp_path, monkeypatch):
    out = tmp_path / "fresh" / "ds"
    monkeypatch.setattr(build_mod, "_write_archs", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        tiny_build(out)
    assert not out.exists() and _left(out) == []


def test_task_id_cannot_write_outside_the_dataset(home, tmp_path):
    class Task:
        id = "../../escape"
        space = "nb201"
        source = valid = target = ()

    with pytest.raises(DataError, match="one plain name"):
        tiny_build(tmp_path / "ds", tasks=[Task()])
    assert not (tmp_path / "escape").exists() and not (tmp_path / "ds").exists()
