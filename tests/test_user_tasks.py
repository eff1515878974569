"""Your own device end to end: `latbench data import` (latencies measured elsewhere), `latbench tasks
create` (a task over them), evaluation, and the official tasks staying as they are."""

from __future__ import annotations

import functools
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from latbench.cli import app
from latbench.data import imports, measured
from latbench.errors import DataError, TaskError
from latbench.spaces.nb201 import NB201Space
from latbench.tasks import generation

COMMITTED = measured.package_dir() / "nb201" / "epyc-2c-ort-t1-bs1-fp32"


def _committed_archs(n: int) -> list[str]:
    """The first ``n`` archs the shipped NB201 devices measured (the 10 reference archs first)."""
    return pq.read_table(COMMITTED / "latency.parquet", columns=["arch"]).column("arch").to_pylist()[:n]


def _latencies(archs: list[str], device: str) -> np.ndarray:
    """Made-up but plausible latencies (test data): a device-specific mix of FLOPs and params, with noise."""
    space = NB201Space(archs)
    ids = space.arch_ids()
    rng = np.random.default_rng(sum(device.encode()))
    a, b = rng.uniform(0.2, 1.0, 2)
    return 0.05 + a * space.flops(ids) / 100 + b * space.params(ids) + rng.normal(0, 0.01, len(ids)) ** 2


def _write_import(folder, devices: dict, *, column="arch", archs=None, meta_extra=None, fmt="csv"):
    """A table + metadata file as a user would write them; returns (table path, meta path)."""
    archs = archs if archs is not None else _committed_archs(300)
    rows = {"device": [], column: [], "latency_ms": []}
    for name in devices:
        rows["device"] += [name] * len(archs)
        rows[column] += list(archs)
        strings = all(isinstance(a, str) for a in archs)
        lat = _latencies(archs, name) if strings else np.random.default_rng(len(archs)).uniform(0.5, 2, len(archs))
        rows["latency_ms"] += lat.tolist()
    table = pa.table(rows)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"lab.{fmt}"
    if fmt == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    meta = {"space": "nb201", "devices": devices, **(meta_extra or {})}
    (folder / "lab.yaml").write_text(yaml.safe_dump(meta))
    return path, folder / "lab.yaml"


@pytest.fixture()
def empty_home(tmp_path, monkeypatch):
    """A LATBENCH_HOME with no dataset and no registered source."""
    from latbench.data import store

    monkeypatch.setenv("LATBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LATBENCH_USER_TASKS", raising=False)
    store.clear_cache()
    yield tmp_path / "home"
    store.clear_cache()


def _registered(home) -> list:
    sources = home / "sources"
    return [p.name for p in sources.iterdir()] if sources.is_dir() else []


# ---------------------------------------------------------------- the import format
def test_import_keeps_unknown_fields_null_and_says_unknown(empty_home, tmp_path):
    table, meta = _write_import(
        tmp_path / "in",
        {"jetson-trt": {"hardware": "NVIDIA Jetson Orin", "family": "embedded", "batch": 1}, "lab-cpu": None},
        meta_extra={"origin": "ACME lab, TensorRT 8.6"},
    )
    target = imports.import_source(table, meta, "acme")
    assert target == empty_home / "sources" / "acme"
    devices = {d.meta.device: d for d in measured.read_root(target)}
    assert set(devices) == {"jetson-trt", "lab-cpu"} and all(d.imported and len(d.archs) == 300 for d in devices.values())
    row = devices["jetson-trt"].metadata_row("latbench-measured")
    assert row["origin"] == "ACME lab, TensorRT 8.6" and row["family"] == "embedded" and row["batch_size"] == 1
    assert row["precision"] is None and row["retest_spearman"] is None and row["retest_median_rel_diff"] is None
    bare = devices["lab-cpu"].metadata_row("latbench-measured")
    assert bare["family"] is None and bare["hardware"] is None and bare["batch_size"] is None
    for text in ("unknown hardware", "runtime unknown", "batch unknown", "precision unknown"):
        assert text in bare["description"]
    assert "None" not in bare["description"] and "None" not in row["description"]
    stored = json.loads((target / "nb201" / "lab-cpu" / "meta.json").read_text())
    assert stored["setting"] == {"runtime": None, "device": None, "threads": None, "batch": None, "precision": None}


def test_import_without_origin_names_the_file_and_parquet_works(empty_home, tmp_path):
    table, meta = _write_import(tmp_path / "in", {"lab-cpu": {"retest": {"archs": 50, "spearman": 0.97}}}, fmt="parquet")
    target = imports.import_source(table, meta)  # source name from the file name
    assert target.name == "lab"
    (d,) = measured.read_root(target)
    assert d.meta.origin == "imported from lab.parquet" and d.retest["spearman"] == 0.97
    assert d.metadata_row("x")["retest_spearman"] == 0.97


def test_profile_meta_without_core_count_never_shows_none_cores(tmp_path):
    meta = json.loads((COMMITTED / "meta.json").read_text())
    del meta["hardware"]["cpu_cores"]
    d = measured.MeasuredDevice(measured.Meta.model_validate(meta), ["a"], np.ones(1))
    row = d.metadata_row("latbench-measured")
    assert row["origin"] == "latbench profile" and "cores" not in row["description"] and "None" not in row["description"]
    meta["hardware"]["cpu_cores"] = 2
    row = measured.MeasuredDevice(measured.Meta.model_validate(meta), ["a"], np.ones(1)).metadata_row("x")
    assert row["description"].startswith("AMD EPYC (2 cores);")


def test_index_keyed_tables_get_a_message_that_says_what_to_do(empty_home, tmp_path):
    ids = list(range(40))
    table, meta = _write_import(tmp_path / "a", {"lab-cpu": None}, column="arch", archs=ids)
    with pytest.raises(DataError, match="column arch holds numbers, not arch strings.*name the column arch_id"):
        imports.import_source(table, meta, "x")
    table, meta = _write_import(tmp_path / "b", {"lab-cpu": None}, column="arch_id", archs=ids)
    with pytest.raises(DataError, match="arch_id needs the dataset built with HELP.*or give arch strings"):
        imports.import_source(table, meta, "x")
    assert _registered(empty_home) == []
    # a profile-style folder keyed by index: add-source says the same
    folder = tmp_path / "folder" / "nb201" / "lab-cpu"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"device": "lab-cpu", "space": "nb201", "origin": "me"}))
    pq.write_table(pa.table({"arch": ids, "latency_ms": np.ones(40)}), folder / "latency.parquet")
    with pytest.raises(DataError, match="column types arch: int64.*keys latencies by arch string.*arch_id column"):
        measured.add_source(tmp_path / "folder", "x")
    assert _registered(empty_home) == []


def test_arch_ids_map_to_the_dataset_arch_strings(data, tmp_path):
    from latbench.data import store

    space = store.load_space("nb201")
    ids = [int(i) for i in space.reference_ids] + [3, 77, 15000]
    table, meta = _write_import(tmp_path / "in", {"lab-cpu": None}, column="arch_id", archs=ids)
    (folder,) = imports.write_folder(table, meta, tmp_path / "out")  # converted only (not registered in the session home)
    archs = pq.read_table(folder / "latency.parquet").column("arch").to_pylist()
    assert archs == [space.arch_str(i) for i in ids]
    table, meta = _write_import(tmp_path / "bad", {"lab-cpu": None}, column="arch_id", archs=[0, 15625])
    with pytest.raises(DataError, match=r"row 2: arch_id 15625 is not in \[0, 15625\)"):
        imports.write_folder(table, meta, tmp_path / "out2")


@pytest.mark.parametrize(
    "case, message",
    [
        ("family", "devices.lab-cpu.family: 'toaster' is not one of"),
        ("name", "devices: device"),
        ("space", "space: 'nb999' is not one of"),
        ("extra-device", "no rows for device(s) lab-gpu"),
        ("unknown-device", "device(s) lab-cpu are not in the metadata file"),
        ("duplicate", "appears twice"),
        ("no-latency", "needs a latency_ms column"),
        ("bad-arch", "row 2: nb201"),
        ("txt", "expected a .csv or .parquet file"),
        ("not-yaml", "not valid YAML or JSON"),
        ("negative", "not finite and positive"),
    ],
)
def test_import_rejects_bad_input_and_registers_nothing(empty_home, tmp_path, case, message):
    archs = _committed_archs(20)
    devices = {"lab-cpu": {"family": "toaster"} if case == "family" else None}
    if case == "name":
        devices = {"../evil": None}
    table, meta = _write_import(tmp_path / "in", devices, archs=archs)
    data = yaml.safe_load(meta.read_text())
    if case == "space":
        data["space"] = "nb999"
    elif case == "extra-device":
        data["devices"]["lab-gpu"] = None
    elif case == "unknown-device":
        data["devices"] = {"other": None}
    meta.write_text(yaml.safe_dump(data))
    t = pq.read_table(table) if table.suffix == ".parquet" else __import__("pyarrow.csv").csv.read_csv(table)
    if case == "duplicate":
        t = pa.concat_tables([t, t.slice(0, 1)])
    elif case == "no-latency":
        t = t.drop(["latency_ms"])
    elif case == "bad-arch":
        t = t.set_column(1, "arch", pa.array([archs[0], "|nor_conv_9x9~0|", *archs[2:]]))
    elif case == "negative":
        t = t.set_column(2, "latency_ms", pa.array([-1.0] + t.column("latency_ms").to_pylist()[1:]))
    pq.write_table(t, tmp_path / "in" / "lab.parquet")
    table = tmp_path / "in" / "lab.parquet"
    if case == "txt":
        table = table.rename(table.with_suffix(".txt"))
    if case == "not-yaml":
        meta.write_text("space: [unclosed\n")
    with pytest.raises(DataError, match=re.escape(message)):
        imports.import_source(table, meta, "acme")
    assert _registered(empty_home) == []


def test_hand_written_meta_json_may_leave_profiler_fields_out(empty_home, tmp_path):
    folder = tmp_path / "src" / "nb201" / "lab-cpu"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"arch": _committed_archs(12), "latency_ms": np.linspace(1, 2, 12)}), folder / "latency.parquet")
    (folder / "meta.json").write_text(json.dumps({"device": "lab-cpu", "space": "nb201", "origin": "my phone farm"}))
    (d,) = measured.read_root(tmp_path / "src")
    assert d.imported and d.meta.setting.batch is None and d.meta.origin == "my phone farm"
    # without an origin the file is profiler output, whose settings are required
    (folder / "meta.json").write_text(json.dumps({"device": "lab-cpu", "space": "nb201"}))
    with pytest.raises(DataError, match="meta.json: invalid: setting"):
        measured.add_source(tmp_path / "src", "x")
    (folder / "meta.json").write_text(json.dumps({"device": "lab-cpu", "space": "nb201", "origin": "latbench profile"}))
    with pytest.raises(DataError, match="meta.json: invalid: setting"):
        measured.add_source(tmp_path / "src", "x")
    assert _registered(empty_home) == []


# ---------------------------------------------------------------- generated measured tasks
def _measured_table(devices: dict[str, bool]):
    """A LatencyTable over 120 NB201 archs: 6 complete public devices and measured devices (True: GPU) on 80 archs."""
    from latbench.data.store import LatencyTable

    archs = NB201Space.all_archs()[::131][:120]
    space = NB201Space(archs)
    space.reference_ids = np.arange(5)
    rng = np.random.default_rng(0)
    base = space.flops(space.arch_ids()) + 1.0
    names, rows = [], []
    for i in range(6):
        names.append(f"pub{i}")
        rows.append(base * rng.uniform(0.5, 2) + rng.normal(0, 3, len(base)) ** 2)
    for name in devices:
        row = base + rng.normal(0, 2, len(base)) ** 2
        row[80:] = np.nan
        names.append(name)
        rows.append(row)
    order = np.argsort(names)
    return LatencyTable("nb201", tuple(np.array(names)[order]), np.array(rows)[order]), space


def test_measured_tasks_target_only_reliable_devices_and_cover_gpus():
    info = generation.MeasuredInfo
    devices = {
        "cpu-torch-t1": info(gpu=False, runtime="torch", kernels=True, retest_spearman=0.95),
        "cpu-torch-t2": info(gpu=False, runtime="torch", kernels=True, retest_spearman=0.33),  # noisy: source only
        "cpu-ort-t1": info(gpu=False, runtime="onnxruntime", kernels=False, retest_spearman=0.97),
        "cpu-ort-t2": info(gpu=False, runtime="onnxruntime", kernels=False, retest_spearman=0.40),
        "cpu-ort-x": info(gpu=False, runtime="onnxruntime", kernels=False, retest_spearman=None),  # never retested
        "h100-torch": info(gpu=True, runtime="torch", kernels=False, retest_spearman=0.99),
        "h100-graphs": info(gpu=True, runtime="torch-graphs", kernels=False, retest_spearman=0.98),
        "a100-graphs": info(gpu=True, runtime="torch-graphs", kernels=False, retest_spearman=0.5),
    }
    table, space = _measured_table({d: devices[d].gpu for d in devices})
    public = [f"pub{i}" for i in range(6)]
    tasks = {t.id: t for t in generation.measured_tasks(table, space, devices, public)}
    assert set(tasks) == {
        "measured-nb201-public",
        "measured-nb201-runtime",
        "measured-nb201-kernels",
        "measured-nb201-public-gpu",
        "measured-nb201-runtime-gpu",
    }
    assert tasks["measured-nb201-public"].target == ("cpu-ort-t1", "cpu-torch-t1")
    assert tasks["measured-nb201-public-gpu"].target == ("h100-graphs", "h100-torch")
    assert tasks["measured-nb201-public-gpu"].source == tuple(public)
    assert tasks["measured-nb201-runtime"].source == ("cpu-torch-t1", "cpu-torch-t2")  # a noisy device stays a source
    assert tasks["measured-nb201-runtime"].target == ("cpu-ort-t1",)
    assert tasks["measured-nb201-runtime-gpu"].target == ("h100-graphs",)
    assert tasks["measured-nb201-kernels"].target == ("cpu-torch-t1",) and tasks["measured-nb201-kernels"].source == (
        "cpu-torch-t2",
    )
    for t in tasks.values():
        assert all(devices[d].reliable for d in t.target) and t.kind == "measured"
        assert t.generator["retest_min_spearman"] == generation.RETEST_MIN_SPEARMAN
        pools = t.arch_pools
        assert len(pools.source_sample) + len(pools.query_pool) + len(pools.eval) == 80
        assert {space.arch_str(i) for i in range(5)} <= set(pools.query_pool)  # reference archs in the pool
    # nothing reliable: no task; too few common archs: no task
    calm = {d: generation.MeasuredInfo(i.gpu, i.runtime, i.kernels, 0.5) for d, i in devices.items()}
    assert generation.measured_tasks(table, space, calm, public) == []
    values = table.values.copy()
    values[[table.devices.index(d) for d in devices], 30:] = np.nan
    short = type(table)(table.space, table.devices, values)
    assert generation.measured_tasks(short, space, devices, public) == []


@pytest.mark.slow
def test_official_generation_ignores_user_devices(data, tmp_path, monkeypatch):
    """A registered device, even one measured on every arch, changes no official task."""
    from latbench.data import store

    out = tmp_path / "tasks"
    assert generation.write_or_check(out)  # a fresh generation of the session data
    real = store.load_latency

    @functools.cache  # (store.clear_cache clears it at teardown, like the real one)
    def with_user_devices(space):
        t = real(space)
        complete = t.values[0] * 1.7 + 0.3  # like a HELP device: the generated suite would have picked it
        partial = np.where(np.arange(t.values.shape[1]) < 500, t.values[1], np.nan)
        values = np.vstack([t.values, complete, partial])
        return type(t)(t.space, (*t.devices, "zz-user-full", "zz-user-part"), values)

    monkeypatch.setattr(store, "load_latency", with_user_devices)
    assert "zz-user-full" in with_user_devices("nb201").complete_devices()
    assert generation.write_or_check(out, check=True) == []


def test_generate_refuses_a_dataset_without_help(data, monkeypatch, tmp_path):
    from latbench.data import store

    info = store.info()
    offline = {**info, "sources": [s for s in info["sources"] if s["name"] != "help"]}
    monkeypatch.setattr(store, "info", functools.cache(lambda: offline))
    with pytest.raises(TaskError, match="built without it"):
        generation.write_or_check(tmp_path / "tasks")
    assert not (tmp_path / "tasks").exists()


def test_version_goes_up_only_when_the_content_changes(data, tmp_path):
    from latbench.tasks.spec import load_task

    task = load_task("measured-nb201-runtime")
    path = tmp_path / f"{task.id}.yaml"
    path.write_text(task.model_copy(update={"version": 7}).to_yaml())
    assert generation.versioned(task, path).version == 7
    changed = task.model_copy(update={"description": "other"})
    assert generation.versioned(changed, path).version == 8
    assert generation.versioned(task, None).version == task.version


def test_a_user_task_whose_pools_overlap_is_refused(tmp_path, monkeypatch):
    """A hand-edited user task with an evaluation arch also in its query pool: load_task refuses it."""
    from latbench.tasks import spec

    data = spec.load_task("hard-3").model_dump(mode="json") | {"id": "mine", "kind": "user"}
    monkeypatch.setenv("LATBENCH_USER_TASKS", str(tmp_path))
    path = tmp_path / "mine.yaml"
    path.write_text(spec.dump_yaml(data))
    spec.clear_cache()
    try:
        assert spec.load_task("mine").pools == spec.load_task("hard-3").pools  # the copy as such is a valid task
        pools = data["pools"]
        pools["query_pool"] = [pools["eval"][0], *pools["query_pool"]]
        path.write_text(spec.dump_yaml(data))
        spec.clear_cache()
        with pytest.raises(TaskError, match=r"mine\.yaml: invalid task: .*pools must be disjoint"):
            spec.load_task("mine")
    finally:
        spec.clear_cache()


# ---------------------------------------------------------------- your own device, end to end
@pytest.fixture(scope="module")
def own_home(tmp_path_factory):
    """A dataset built offline (measured data only) with two imported devices: 300 NB201 archs each."""
    from latbench.data import store
    from latbench.tasks.dataset import build_dataset

    home = tmp_path_factory.mktemp("own_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATBENCH_HOME", str(home))
        mp.delenv("LATBENCH_USER_TASKS", raising=False)
        store.clear_cache()
        table, meta = _write_import(
            home.parent / f"{home.name}-in",
            {
                "lab-gpu": {"family": "server GPU", "hardware": "NVIDIA H100", "gpu": True, "batch": 1, "precision": "fp16",
                            "retest": {"archs": 50, "spearman": 0.99, "median_abs_rel_diff": 0.01}},
                "lab-cpu": {"hardware": "Intel Xeon 8480", "cpu_cores": 56, "runtime": "ONNX Runtime"},
            },
            meta_extra={"origin": "ACME lab"},
        )  # fmt: skip
        imports.import_source(table, meta, "acme")
        build_dataset(sources=("latbench-measured",))
    store.clear_cache()
    return home


@pytest.fixture()
def own(own_home, monkeypatch):
    from latbench.data import store
    from latbench.tasks import spec

    monkeypatch.setenv("LATBENCH_HOME", str(own_home))
    monkeypatch.delenv("LATBENCH_USER_TASKS", raising=False)
    store.clear_cache()
    spec.clear_cache()
    yield own_home
    for p in (own_home / "tasks").glob("*.yaml"):
        p.unlink()
    store.clear_cache()
    spec.clear_cache()


def _cli(*args):
    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_own_devices_in_the_devices_config(own):
    from latbench.data import store

    rows = {r["device"]: r for r in store.load_devices()}
    gpu, cpu = rows["lab-gpu"], rows["lab-cpu"]
    assert gpu["origin"] == cpu["origin"] == "ACME lab"
    assert gpu["family"] == "server GPU" and gpu["retest_spearman"] == 0.99 and gpu["retest_median_rel_diff"] == 0.01
    assert cpu["family"] is None and cpu["retest_spearman"] is None and "Intel Xeon 8480 (56 cores)" in cpu["description"]
    # a committed device measured in two spaces: its worst retest (per space in latbench.json)
    shipped = {
        d.meta.space: d.retest for d in measured.read_root(measured.package_dir()) if d.meta.device == "epyc-2c-ort-t1-bs1-fp32"
    }
    row = rows["epyc-2c-ort-t1-bs1-fp32"]
    assert row["retest_spearman"] == min(r["spearman"] for r in shipped.values())
    assert row["retest_median_rel_diff"] == max(r["median_abs_rel_diff"] for r in shipped.values())
    assert "nb201 archs" in row["description"] and "fbnet archs" in row["description"]


@pytest.mark.slow
def test_create_a_task_over_own_devices_and_evaluate_it(own):
    from latbench.leaderboard.board import suite_tasks
    from latbench.tasks.spec import load_task

    res = _cli("tasks", "create", "mine", "--space", "nb201", "--target", "lab-gpu", "--source", "lab-cpu",
               "--source", "epyc-2c-ort-t1-bs1-fp32")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "no test-retest" not in res.output  # the target's retest is known (0.99)
    path = own / "tasks" / "mine.yaml"
    assert path.is_file()
    task = load_task("mine")
    assert task.kind == "user" and task.target == ("lab-gpu",) and task.generator["archs_measured_on_all"] == 300
    refs = _committed_archs(10)
    assert set(refs) <= set(task.arch_pools.query_pool)  # the reference archs are in the query pool
    assert len(task.arch_pools.eval) == 150 and len(task.arch_pools.source_sample) == 75
    res = _cli("eval", "--method", "flops", "--task", "mine", "--trials", "1", "-k", "5")
    assert res.exit_code == 0, res.output
    assert "mine" in res.output
    res = _cli("tasks", "list")
    assert res.exit_code == 0, res.output
    lines = {line.split("│")[1].strip(): line for line in res.output.splitlines() if line.count("│") > 3}
    assert "user" in lines["mine"] and lines["mine"].rstrip(" │").endswith("yes")
    assert "no: needs HELP" in lines["help-nb201"] and "yes" in lines["measured-nb201-runtime"]
    assert all(t.id != "mine" for suite in ("main", "literature") for t in suite_tasks(suite))  # never on the board


@pytest.mark.slow
def test_create_refuses_what_would_make_a_bad_task(own):
    from latbench.tasks.spec import load_task

    res = _cli("tasks", "create", "mine", "--space", "nb201", "--target", "lab-gpu")  # --source help by default
    assert res.exit_code == 1 and "no HELP devices" in res.output and "LATBENCH_MIRROR" in res.output
    res = _cli("tasks", "create", "mine", "--space", "nb201", "--target", "epyc-2c-torch-t2-bs1-fp32", "--source", "lab-cpu")
    assert res.exit_code == 1 and "--allow-noisy" in res.output and "(0.78)" in res.output
    res = _cli("tasks", "create", "mine", "--space", "nb201", "--target", "epyc-2c-torch-t2-bs1-fp32", "--source", "lab-cpu",
               "--allow-noisy")  # fmt: skip
    assert res.exit_code == 0 and "noisy target(s) kept" in res.output, res.output
    again = ["tasks", "create", "mine", "--space", "nb201", "--target", "lab-gpu", "--source", "lab-cpu"]
    res = _cli(*again)
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = _cli(*again, "--overwrite")
    assert res.exit_code == 0 and load_task("mine").version == 2  # other content: next version
    for args, message in [
        (["measured-nb201-runtime", "--target", "lab-gpu", "--source", "lab-cpu"], "is an official task"),
        (["x", "--target", "lab-gpu", "--source", "lab-gpu"], "both source and target"),
        (["x", "--target", "lab-gpux", "--source", "lab-cpu"], "did you mean lab-gpu"),
        (["../x", "--target", "lab-gpu", "--source", "lab-cpu"], "task name"),
    ]:
        res = _cli("tasks", "create", *args[:1], "--space", "nb201", *args[1:])
        assert res.exit_code == 1 and message in res.output, res.output
    # a file in the user folder cannot pose as an official task
    (own / "tasks" / "fake.yaml").write_text(
        (own / "tasks" / "mine.yaml").read_text().replace("id: mine", "id: fake").replace("kind: user", "kind: measured")
    )
    res = _cli("tasks", "list")
    assert res.exit_code == 1 and "must have kind: user" in res.output


@pytest.mark.slow
def test_create_into_another_folder_says_how_to_use_it(own, tmp_path, monkeypatch):
    res = _cli("tasks", "create", "elsewhere", "--space", "nb201", "--target", "lab-gpu", "--source", "lab-cpu",
               "--tasks-dir", str(tmp_path / "mytasks"))  # fmt: skip
    assert res.exit_code == 0 and f"LATBENCH_USER_TASKS={tmp_path / 'mytasks'}" in res.output
    monkeypatch.setenv("LATBENCH_USER_TASKS", str(tmp_path / "mytasks"))
    res = _cli("eval", "--method", "flops", "--task", "elsewhere", "--trials", "1", "-k", "5")
    assert res.exit_code == 0, res.output


def test_create_with_a_help_target_takes_every_other_help_device_as_sources(data, tmp_path):
    """`--target pixel3` alone: the default `--source help` leaves the target out instead of refusing it."""
    from latbench.data import store
    from latbench.tasks.user import create_task, help_devices

    task, path, _ = create_task("mine", "nb201", "pixel3", folder=tmp_path)  # one device name, not its letters
    assert task.target == ("pixel3",) and path == tmp_path / "mine.yaml"
    assert set(task.source) == set(help_devices(store.load_latency("nb201"))) - {"pixel3"}
    res = CliRunner().invoke(
        app,
        [
            "tasks",
            "create",
            "mine2",
            "--space",
            "nb201",
            "--target",
            "pixel3",
            "--source",
            "pixel3",
            "--tasks-dir",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 1 and "both source and target" in res.output  # a device named as both still is refused
