"""Measured devices in the dataset: the committed measurements, `data add-source`, validation, offline builds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from latbench.cli import app
from latbench.data import measured
from latbench.errors import DataError
from latbench.measure import profiler


@pytest.fixture(scope="module")
def profiled(built_home, tmp_path_factory):
    """A real `latbench profile` output: 10 NB201 archs on this CPU, torch eager with kernel breakdown."""
    from latbench.data import store

    store.clear_cache()
    out = tmp_path_factory.mktemp("profiled")
    s = profiler.Setting("nb201", "torch", "cpu", 1, 1, "fp32", warmup=1, repeats=3)
    profiler.profile(store.load_space("nb201"), [s], out, 10, name_prefix="usercpu", max_wait=0)
    return out


@pytest.fixture()
def user_home(data, tmp_path, monkeypatch):
    """A fresh LATBENCH_HOME (no registered sources) that reuses the session's HELP mirror."""
    from latbench.data import store

    home = tmp_path / "home"
    monkeypatch.setenv("LATBENCH_HOME", str(home))
    store.clear_cache()
    yield home
    store.clear_cache()


def test_committed_measurements_are_in_the_dataset(data):
    import datasets

    from latbench import paths
    from latbench.data import store

    committed = measured.read_root(measured.package_dir())
    by_space = {}
    for d in committed:
        by_space.setdefault(d.meta.space, []).append(d)
    assert len(by_space["nb201"]) >= 5 and all(len(d.archs) >= 2000 for d in by_space["nb201"])
    assert len(by_space["fbnet"]) >= 5 and all(len(d.archs) >= 1000 for d in by_space["fbnet"])
    for d in committed:  # test-retest noise recorded for every committed device
        assert d.retest and d.retest["archs"] >= 40 and d.retest["spearman"] is not None
    ds = datasets.load_dataset(str(paths.data_dir()), "nb201")["train"].to_pandas()
    for d in by_space["nb201"]:
        rows = ds[ds.device == d.meta.device].set_index("arch")["latency_ms"]
        assert len(rows) == len(d.archs)
        assert np.array_equal(rows.loc[d.archs].to_numpy(), d.latency)  # exact values, mapped by arch string
        assert (ds[ds.device == d.meta.device]["source"] == "latbench-measured").all()
    kernels = datasets.load_dataset(str(paths.data_dir()), "kernels-nb201")["train"]
    assert set(kernels.unique("device")) == {d.meta.device for d in by_space["nb201"] if d.kernels is not None}
    devices = {r["device"]: r for r in store.load_devices()}
    d0 = by_space["nb201"][0]
    assert devices[d0.meta.device]["origin"] == "latbench profile" and devices[d0.meta.device]["precision"]
    # reliability is data: every measured device's retest in the devices config (the worst of its spaces)
    for name in {d.meta.device for d in committed}:
        retests = [d.retest for d in committed if d.meta.device == name]
        assert devices[name]["retest_spearman"] == min(r["spearman"] for r in retests)
        assert devices[name]["retest_median_rel_diff"] == max(r["median_abs_rel_diff"] for r in retests)
    help_rows = [r for r in devices.values() if r["source"] == "help"]
    assert help_rows and all(r["retest_spearman"] is None and r["retest_median_rel_diff"] is None for r in help_rows)


def test_generated_measured_tasks_never_target_a_noisy_device(data):
    from latbench.tasks.generation import RETEST_MIN_SPEARMAN
    from latbench.tasks.spec import select

    retest = {(d.meta.space, d.meta.device): d.retest["spearman"] for d in measured.read_root(measured.package_dir())}
    tasks = select("measured")
    assert tasks
    for t in tasks:
        assert all(retest[t.space, d] >= RETEST_MIN_SPEARMAN for d in t.target), t.id
        assert t.generator["retest_min_spearman"] == RETEST_MIN_SPEARMAN
    noisy = [k for k, rho in retest.items() if rho < RETEST_MIN_SPEARMAN]
    assert noisy and not any((t.space, d) in noisy for t in tasks for d in t.target)


def test_measured_tasks_run_from_the_cli(data):
    res = CliRunner().invoke(app, ["eval", "--method", "lookup", "--task", "measured-nb201-runtime", "--trials", "1", "-k", "10"])
    assert res.exit_code == 0, res.output
    assert "measured-nb201-runtime" in res.output


@pytest.mark.slow
def test_offline_build_uses_the_committed_measurements(user_home, tmp_path, monkeypatch):
    """No network and no mirror: the build still yields a working dataset from the committed data."""
    import datasets

    from latbench.tasks.dataset import build_dataset as build

    monkeypatch.delenv("LATBENCH_MIRROR", raising=False)
    out = tmp_path / "ds"
    info = build(out, mirror=None, base_url="http://127.0.0.1:9/")  # nothing listens there
    assert [s["name"] for s in info["sources"]] == ["latbench-measured"]
    ds = datasets.load_dataset(str(out), "nb201")["train"]
    assert ds.num_rows > 0 and set(ds.unique("source")) == {"latbench-measured"}
    card = (out / "README.md").read_text()
    assert "measured-nb201-runtime" in card and "help-nb201" not in card  # tasks needing HELP are left out
    from latbench.tasks.runnable import missing_devices
    from latbench.tasks.spec import load_task

    assert missing_devices(load_task("help-nb201"), info) and not missing_devices(load_task("measured-nb201-runtime"), info)
    with pytest.raises(DataError, match="download failed"):  # an explicit HELP build still fails loudly
        build(tmp_path / "ds2", mirror=None, base_url="http://127.0.0.1:9/", sources=("help",))
    assert not (tmp_path / "ds2").exists()


@pytest.mark.slow
def test_add_source_then_build_includes_the_new_device(user_home, profiled, mirror):
    from latbench.data import store

    res = CliRunner().invoke(app, ["data", "add-source", str(profiled), "--name", "mylab"])
    assert res.exit_code == 0, res.output
    assert "nb201/usercpu-torch-t1-bs1-fp32 (10 archs)" in res.output
    res = CliRunner().invoke(app, ["data", "build", "--mirror", str(mirror)])
    assert res.exit_code == 0, res.output
    table = store.load_latency("nb201")
    row = table.device("usercpu-torch-t1-bs1-fp32")
    assert np.isfinite(row).sum() == 10
    again = CliRunner().invoke(app, ["data", "add-source", str(profiled), "--name", "mylab"])
    assert again.exit_code == 1 and "already registered" in again.output


def _broken(profiled, tmp_path, how: str):
    src = tmp_path / "src"
    shutil.copytree(profiled, src)
    dev = src / "nb201" / "usercpu-torch-t1-bs1-fp32"
    lat = pq.read_table(dev / "latency.parquet")
    if how == "no-meta":
        (dev / "meta.json").unlink()
    elif how == "bad-meta":
        meta = json.loads((dev / "meta.json").read_text())
        del meta["setting"]
        (dev / "meta.json").write_text(json.dumps(meta))
    elif how == "renamed-folder":
        dev.rename(dev.with_name("other-name"))
    elif how in ("negative", "nan", "unknown-arch", "duplicate"):
        archs, values = lat.column("arch").to_pylist(), lat.column("latency_ms").to_numpy().copy()
        if how == "negative":
            values[3] = -1.0
        elif how == "nan":
            values[0] = np.nan
        elif how == "unknown-arch":
            archs[2] = "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"
        else:
            archs[1] = archs[0]
        pq.write_table(
            lat.set_column(0, "arch", pa.array(archs)).set_column(1, "latency_ms", pa.array(values)), dev / "latency.parquet"
        )
    elif how == "not-parquet":
        (dev / "latency.parquet").write_bytes(b"PAR1 this is not parquet")
    elif how == "pickle":
        (dev / "latency.parquet").unlink()
        (dev / "latency.pkl").write_bytes(b"\x80\x04K\x01.")
    elif how == "kernel-columns":
        k = pq.read_table(dev / "kernels.parquet")
        pq.write_table(k.drop(["groups"]), dev / "kernels.parquet")
    return src


@pytest.mark.parametrize(
    "how, message",
    [
        ("no-meta", "no meta.json"),
        ("bad-meta", "meta.json: invalid: setting"),
        ("renamed-folder", "meta.json says nb201/usercpu-torch-t1-bs1-fp32"),
        ("negative", "not finite and positive"),
        ("nan", "not finite and positive"),
        ("unknown-arch", "nor_conv_9x9"),
        ("duplicate", "duplicate archs"),
        ("not-parquet", "not a readable parquet"),
        ("pickle", "latency.parquet: missing"),
        ("kernel-columns", "columns"),
    ],
)
@pytest.mark.slow
def test_add_source_rejects_bad_folders_and_registers_nothing(user_home, profiled, tmp_path, how, message):
    src = _broken(profiled, tmp_path, how)
    res = CliRunner().invoke(app, ["data", "add-source", str(src)])
    assert res.exit_code == 1 and message in res.output, res.output
    assert not (user_home / "sources").exists() or not any((user_home / "sources").iterdir())


def test_add_source_refuses_names_of_committed_devices(user_home, tmp_path):
    committed = measured.read_root(measured.package_dir())[0]
    src = tmp_path / "copy"
    shutil.copytree(committed.folder, src / committed.meta.space / committed.meta.device)
    with pytest.raises(DataError, match="already ship with latbench"):
        measured.add_source(src)
