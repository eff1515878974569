"""Sweep checkpoints: a stopped sweep resumes with the same numbers, runs only the missing units,
re-runs stale ones, and refuses files that are not its own (each refusal names the file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep import _cli, _metrics

from latbench.eval import checkpoints, executors, runner, sweep, units
from latbench.eval.checkpoints import CheckpointError
from latbench.leaderboard import board as lb
from latbench_baselines.flops import FLOPsRegression

TASKS = "easy-1,hard-4"
SHOTS = [5, 10]
TRIALS = 2


def _count_units(monkeypatch) -> list:
    """Every unit the sweep actually runs (rather than loads) is appended to the returned list."""
    ran, real = [], executors.run_unit
    monkeypatch.setattr(executors, "run_unit", lambda u, worker=False: ran.append((u.task.id, u.trial)) or real(u, worker))
    return ran


def _run(root, method="flops", params=None):
    _, tasks = lb.select_tasks(TASKS)
    return runner.run(sweep.make_methods([method], params or {}), tasks, shots=SHOTS, trials=TRIALS, checkpoint=root)[0]


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.json"))


def test_resume_runs_only_missing_units_with_identical_numbers(data, tmp_path, monkeypatch):
    root = tmp_path / "ck"
    first = _run(root)
    files = _files(root)
    assert len(files) == 2 * TRIALS and all(f.startswith("flops/") for f in files)
    ran = _count_units(monkeypatch)
    again = _run(root)
    assert ran == [] and _metrics(again.results) == _metrics(first.results) and again.seconds == first.seconds
    (root / files[0]).unlink()  # as if the sweep had stopped before this unit
    ran.clear()
    resumed = _run(root)
    assert len(ran) == 1 and _metrics(resumed.results) == _metrics(first.results)
    assert _files(root) == files


def test_key_covers_parameters_task_trial_shots_and_protocol(data, tmp_path):
    _, tasks = lb.select_tasks(TASKS)

    def path(params=None, task=0, trial=0, shots=(5, 10), protocol="official"):
        ((label, method),) = sweep.make_methods(["opwise-lasso"], params or {})
        unit = units.Unit(0, label, method, tasks[task], trial, shots, protocol=protocol)
        return checkpoints.path_for(tmp_path, unit)

    variants = [path(), path({"alpha": 1e-3}), path(task=1), path(trial=1), path(shots=(5,)), path(protocol="help-paper")]
    assert len(set(variants)) == len(variants)
    assert path() == path({"alpha": 1e-4})  # the default, spelled out, is the same unit


def test_non_json_parameters_round_trip(data, tmp_path):
    """A parameter of inf (not valid JSON) must not break saving, nor make the unit unfindable."""
    from latbench.eval.units import Outcome

    class WithInf(FLOPsRegression):
        def get_params(self, deep=True):
            return {"cap": float("inf"), "dims": (1, 2)}

    _, tasks = lb.select_tasks(TASKS)
    unit = units.Unit(0, "with-inf", WithInf(), tasks[0], 0, (5,))
    trial = _run(tmp_path / "ref").results[0].trials[0]
    checkpoints.save(tmp_path / "ck", unit, Outcome(0, [trial], "", 1.5, "host"))
    loaded = checkpoints.load(tmp_path / "ck", unit)
    assert loaded.trials == [trial] and loaded.seconds == 1.5


def test_stale_data_hash_is_run_again_and_overwritten(data, tmp_path, monkeypatch):
    root = tmp_path / "ck"
    _run(root)
    path = root / _files(root)[0]
    doc = json.loads(path.read_text())
    doc["data_hash"] = "0" * 64  # written against other data
    path.write_text(json.dumps(doc))
    ran = _count_units(monkeypatch)
    _run(root)
    assert len(ran) == 1 and json.loads(path.read_text())["data_hash"] != "0" * 64


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: json.dumps([d]), "not a latbench-unit-checkpoint/1 file"),
        (lambda d: json.dumps({**d, "key": {**d["key"], "task": "hard-1"}}), "belongs to another unit"),
        (lambda d: json.dumps({**d, "key": {**d["key"], "trial": 7}}), "holds trial 1, its key says 7"),
        (lambda d: json.dumps({**d, "key": "flops"}), "malformed 'key'"),
        (lambda d: json.dumps({**d, "trials": d["trials"][:1]}), "one trial result per shot count"),
        (lambda d: json.dumps({**d, "trials": [{**t, "extra": 1} for t in d["trials"]]}), "malformed trial result"),
        (lambda d: json.dumps(d).replace('"spearman": ', '"spearman": NaN, "x": ', 1), "not valid JSON"),
        (lambda d: json.dumps({**d, "seconds": -1}), "invalid 'seconds'"),
        (lambda d: " " * (checkpoints.MAX_BYTES + 1), "bytes"),
    ],
)
def test_foreign_or_malformed_file_is_refused_by_name(data, tmp_path, corrupt, message):
    root = tmp_path / "ck"
    _run(root)
    path = root / _files(root)[-1]
    bad = corrupt(json.loads(path.read_text()))
    path.write_text(bad)
    with pytest.raises(CheckpointError, match="not usable") as e:
        _run(root)
    assert str(path) in str(e.value) and message in str(e.value)
    assert path.read_text() == bad  # never silently replaced


def test_failed_sweep_keeps_finished_units_and_resume_completes(data, tmp_path, monkeypatch):
    """The CLI path: a unit fails, no entry is written, the finished units stay; a rerun of the
    same command (the failure gone) runs only the failed unit and writes the entry."""
    root, out = tmp_path / "ck", tmp_path / "out"
    args = [
        "sweep",
        "--methods",
        "test_sweep:LateFailure",
        "--tasks",
        TASKS,
        "--shots",
        "5,10",
        "--trials",
        str(TRIALS),
        "--checkpoint",
        str(root),
        "--out",
        str(out),
    ]
    res = _cli(*args)
    assert res.exit_code == 1 and "injected failure" in res.stderr
    assert "the finished units are kept in" in " ".join(res.stderr.split())
    assert not out.exists() and len(_files(root)) == 2 * TRIALS - 1
    import test_sweep

    monkeypatch.setattr(test_sweep.LateFailure, "fit", test_sweep.FLOPsRegression.fit)
    res = _cli(*args)
    assert res.exit_code == 0, res.output + res.stderr
    assert f"{2 * TRIALS - 1} of {2 * TRIALS} units already finished" in " ".join(res.stderr.split())
    assert (out / "test-sweep-latefailure.json").is_file() and len(_files(root)) == 2 * TRIALS


def test_code_fingerprint_ignores_docs_but_not_code():
    base = 'def f(x):\n    """Doc."""\n    return x + 1  # comment\n'
    assert checkpoints.source_fingerprint(base) == checkpoints.source_fingerprint(
        'def f(x):\n    """Other words."""\n    return x + 1\n'
    )
    assert checkpoints.source_fingerprint(base) != checkpoints.source_fingerprint('def f(x):\n    """Doc."""\n    return x + 2\n')
    assert checkpoints.code_fingerprint("latbench_baselines.flops") and checkpoints.code_fingerprint("no.such.module") == ""


class Slow(FLOPsRegression):
    """FLOPs regression whose fit takes 1.5 s: longer than the test's time budget."""

    name = "slow"

    def fit(self, source, space, seed):
        time.sleep(1.5)
        return super().fit(source, space, seed)


@pytest.mark.parametrize("workers, started", [(1, 1), (2, 2)])
@pytest.mark.slow
def test_time_budget_stops_starting_units_and_keeps_the_finished(data, tmp_path, workers, started):
    """Budget 0.6 s: the first unit (or the first ``workers`` units) start, nothing after; the
    stopped run names what remains; the same command without a budget finishes from there."""
    root, out = tmp_path / "ck", tmp_path / "out"
    args = [
        "sweep",
        "--methods",
        "test_checkpoints:Slow",
        "--tasks",
        TASKS,
        "--shots",
        "5",
        "--trials",
        str(TRIALS),
        "--workers",
        str(workers),
        "--checkpoint",
        str(root),
        "--out",
        str(out),
    ]
    res = _cli(*args, "--time-budget", "0.01")
    text = " ".join(res.stderr.split())
    assert res.exit_code == 1, res.output + res.stderr
    assert f"time budget of 0.01 min spent: {started} of {2 * TRIALS} units finished" in text
    assert f"{2 * TRIALS - started} to go; run the same command again to continue" in text
    assert len(_files(root)) == started and not out.exists()
    res = _cli(*args)
    assert res.exit_code == 0, res.output + res.stderr
    assert f"{started} of {2 * TRIALS} units already finished" in " ".join(res.stderr.split())
    assert len(_files(root)) == 2 * TRIALS and (out / "test-checkpoints-slow.json").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--time-budget", "5"], "--time-budget needs --checkpoint DIR"),
        (["--time-budget", "0", "--checkpoint", "ck"], "--time-budget must be > 0 minutes"),
        (["--time-budget", "5", "--checkpoint", "ck", "--ray-address", "local"], "local workers only"),
    ],
)
def test_time_budget_arguments_are_checked_before_any_work(data, tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    res = _cli("sweep", "--methods", "flops", "--tasks", "easy-1", "--out", "out", *extra)
    assert res.exit_code == 1 and message in " ".join(res.stderr.split())
    assert "sweep:" not in res.stderr and list(tmp_path.iterdir()) == []


class Sleeper(FLOPsRegression):
    """A unit that would run for a minute: the driver is stopped long before it ends."""

    name = "sleeper"

    def fit(self, source, space, seed):
        time.sleep(60)
        return super().fit(source, space, seed)


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc: no psutil needed)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
@pytest.mark.slow
def test_sigterm_stops_the_workers_too(data, tmp_path):
    """``kill DRIVER`` must not leave spawned workers computing units nobody will collect."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "latbench.cli",
            "sweep",
            "--methods",
            "test_checkpoints:Sleeper",
            "--tasks",
            TASKS,
            "--shots",
            "5",
            "--trials",
            "1",
            "--workers",
            "2",
            "--checkpoint",
            str(tmp_path / "ck"),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _children(proc.pid)
    assert len(workers) >= 2, proc.communicate(timeout=5)
    time.sleep(2)
    proc.terminate()
    proc.wait(timeout=30)  # not the 60 s a unit takes
    assert proc.returncode != 0
    time.sleep(0.5)
    alive = [
        w
        for w in workers
        if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[:1]
    ]
    assert alive == [] and not (tmp_path / "out").exists() and not list((tmp_path / "ck").rglob("*.json"))


# ------------------------------------------------------ the fingerprint covers the code that runs
@pytest.fixture()
def fresh_code_cache():
    """Fingerprints are cached per process: forget them around a test that edits code."""
    checkpoints.clear_code_cache()
    yield
    checkpoints.clear_code_cache()


def _edit_source(monkeypatch, module: str, edit) -> None:
    """Make the fingerprint see ``edit(source)`` as ``module``'s source (as if the file were edited)."""
    real = checkpoints._source
    monkeypatch.setattr(checkpoints, "_source", lambda name: edit(real(name)) if name == module else real(name))
    checkpoints.clear_code_cache()


def test_fingerprint_covers_imported_helpers_and_the_evaluation_code():
    modules = checkpoints.code_modules("latbench_baselines.flops")
    assert {
        "latbench_baselines.flops",
        "latbench_baselines",
        "latbench.methods.fitting",
        "latbench.methods.base",
        "latbench.eval.units",
        "latbench.eval.trials",
        "latbench.protocol.scoring",
        "latbench.protocol.trial",
    } <= set(modules)
    # a function-local import counts too (kernel_bank imports kernel_sampling inside a function)
    assert "latbench.measure.kernel_sampling" in checkpoints.code_modules("latbench_baselines.opwise")
    assert not any(m.startswith(("numpy", "sklearn", "torch")) for m in modules)
    assert set(checkpoints.unit_key(_unit())) == set(checkpoints.KEY_FIELDS)


def _unit(method="flops", trial=0):
    _, tasks = lb.select_tasks(TASKS)
    ((label, m),) = sweep.make_methods([method], {})
    return units.Unit(0, label, m, tasks[0], trial, tuple(SHOTS))


FLOOR = "floor = 1e-3 * (float(np.min(shots))"


def test_editing_a_shared_helper_reruns_the_unit_but_a_docstring_edit_does_not(data, tmp_path, monkeypatch, fresh_code_cache):
    """The issue: a new floor in ``latbench.methods.fitting.positive_floor`` must not reuse the ``flops`` units."""
    root = tmp_path / "ck"
    before_fp, before_path = checkpoints.code_fingerprint("latbench_baselines.flops"), checkpoints.path_for(root, _unit())
    _run(root)
    first = _files(root)
    ran = _count_units(monkeypatch)

    _edit_source(
        monkeypatch,
        "latbench.methods.fitting",
        lambda s: s.replace('"""Clip predictions to a small positive floor', '"""Clip, to a tiny positive floor,'),
    )
    assert checkpoints.code_fingerprint("latbench_baselines.flops") == before_fp
    assert checkpoints.path_for(root, _unit()) == before_path
    _run(root)
    assert ran == [] and _files(root) == first  # docs only: every unit is loaded

    assert FLOOR in checkpoints._source("latbench.methods.fitting")
    _edit_source(monkeypatch, "latbench.methods.fitting", lambda s: s.replace(FLOOR, FLOOR.replace("1e-3", "1e-4")))
    assert checkpoints.code_fingerprint("latbench_baselines.flops") != before_fp
    assert checkpoints.path_for(root, _unit()) != before_path
    _run(root)
    assert len(ran) == 2 * TRIALS  # every unit ran again, none was loaded
    assert len(_files(root)) == 2 * len(first)  # the new units beside the old ones (prune removes those)


PLUGIN = {
    "__init__.py": '"""A third-party method package."""\n',
    "helpers.py": '"""Shared helper."""\n\ndef shift(pred):\n    """Doc."""\n    return pred + 0.0\n',
    "extra.py": "SCALE = 1.0\n",
    "method.py": (
        "from latbench_baselines.flops import FLOPsRegression\nfrom .helpers import shift\n\n\n"
        'class Shifted(FLOPsRegression):\n    name = "shifted"\n\n    def predict(self, device, arch_ids):\n'
        "        from . import extra\n\n        return shift(super().predict(device, arch_ids)) * extra.SCALE\n"
    ),
}


def test_real_file_edits_in_a_methods_own_package(data, tmp_path, monkeypatch, fresh_code_cache):
    """Files edited on disk: relative and function-local imports of the method's package are followed."""
    pkg = tmp_path / "src" / "ckplug"
    pkg.mkdir(parents=True)
    for name, text in PLUGIN.items():
        (pkg / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    assert {"ckplug", "ckplug.method", "ckplug.helpers", "ckplug.extra", "latbench.methods.fitting"} <= set(
        checkpoints.code_modules("ckplug.method")
    )
    root = tmp_path / "ck"
    _run(root, "ckplug.method:Shifted")
    ran = _count_units(monkeypatch)
    try:
        (pkg / "helpers.py").write_text(PLUGIN["helpers.py"].replace('"""Doc."""', '"""Other words."""  # note'))
        checkpoints.clear_code_cache()
        _run(root, "ckplug.method:Shifted")
        assert ran == []
        (pkg / "extra.py").write_text("SCALE = 1.0 * 1\n")
        checkpoints.clear_code_cache()
        _run(root, "ckplug.method:Shifted")
        assert len(ran) == 2 * TRIALS
    finally:
        for name in list(sys.modules):
            if name == "ckplug" or name.startswith("ckplug."):
                del sys.modules[name]


# -------------------------------------------------------------------------- checkpoints prune
def _stale_copy(root: Path, src: Path, **key_changes) -> Path:
    """A well-formed unit of another key (as an older code/version would have written it), at that key's path."""
    doc = json.loads(src.read_text())
    doc["key"] = {**doc["key"], **key_changes}
    path = checkpoints._key_path(root, doc["key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_prune_removes_only_units_no_sweep_would_load(data, tmp_path, monkeypatch, fresh_code_cache):
    root = tmp_path / "ck"
    _run(root)
    current = _files(root)
    src = root / current[0]
    stale = [
        _stale_copy(root, src, code="0123456789abcdef"),  # older code
        _stale_copy(root, src, latbench_version="0.0.1"),
        _stale_copy(root, src, protocol_version="0"),
        _stale_copy(root, src, **{"class": "old_baselines.flops:FLOPsRegression"}),  # module renamed since
        _stale_copy(root, src, **{"class": "latbench_baselines.flops:Gone"}),  # class removed
        _stale_copy(root, src, method="old-flops", **{"class": "test_checkpoints:Slow"}),
    ]  # not where its key says:
    moved = stale[-1].with_name("trial0-" + "f" * 16 + ".json")
    stale[-1].rename(moved)
    stale[-1] = moved
    (root / "notes.txt").write_text("not JSON: left alone")
    everything = _files(root)

    res = _cli("checkpoints", "prune", str(root), "--dry-run")
    assert res.exit_code == 0, res.output + res.stderr
    assert f"kept {len(current)} unit(s), would remove {len(stale)} stale" in res.output
    assert all(f"would remove {p}" in res.output for p in stale) and _files(root) == everything

    res = _cli("checkpoints", "prune", str(root))
    assert res.exit_code == 0, res.output + res.stderr
    assert f"kept {len(current)} unit(s), removed {len(stale)} stale" in res.output
    assert _files(root) == current and (root / "notes.txt").exists()
    assert not (root / "old-flops").exists()  # folders left empty go too
    ran = _count_units(monkeypatch)
    _run(root)
    assert ran == []  # what was kept is exactly what the sweep loads

    # the case: after a helper edit every unit of the method is stale
    _edit_source(monkeypatch, "latbench.methods.fitting", lambda s: s.replace(FLOOR, FLOOR.replace("1e-3", "1e-4")))
    res = _cli("checkpoints", "prune", str(root))
    assert res.exit_code == 0 and f"kept 0 unit(s), removed {len(current)} stale" in res.output
    assert _files(root) == []


def _write(root: Path, name: str, text: str) -> Path:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: _write(root, "notes.json", '{"a": 1}'), "is not a unit checkpoint (not a latbench-unit-checkpoint/1 file)"),
        (lambda root: _write(root, "x/y.json", "{oops"), "not valid JSON"),
    ],
)
def test_prune_refuses_a_missing_folder_or_foreign_json_and_removes_nothing(data, tmp_path, make_bad, message):
    root = tmp_path / "ck"
    _run(root)
    stale = _stale_copy(root, root / _files(root)[0], code="0123456789abcdef")
    before = _files(root)
    target = make_bad(root)
    res = _cli("checkpoints", "prune", str(target))
    text = " ".join(res.stderr.split())
    assert res.exit_code == 1 and text.startswith("error: ") and message in text, res.output + res.stderr
    assert "does not exist" in text or "nothing removed" in text
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert stale.exists() and set(before) <= set(_files(root))


def test_prune_refuses_when_a_methods_module_fails_to_import(data, tmp_path, monkeypatch):
    """A broken edit (or a missing dependency) says nothing about the unit: no guessing, nothing removed."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ckbroken.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    root = tmp_path / "ck"
    _run(root)
    stale = _stale_copy(root, root / _files(root)[0], **{"class": "ckbroken:Method"})
    res = _cli("checkpoints", "prune", str(root), "--allow-import", "ckbroken")
    assert res.exit_code == 1 and "importing ckbroken failed" in " ".join(res.stderr.split()) and stale.exists()
    sys.modules.pop("ckbroken", None)


def test_prune_finds_modules_of_meta_path_finders_without_importing_them(data, tmp_path, monkeypatch):
    """Editable installs find their modules through a finder on sys.meta_path, not sys.path: such a
    unit is neither "gone" (and deleted) nor imported without --allow-import."""
    import importlib.machinery

    src = tmp_path / "hidden" / "metapkg"
    src.mkdir(parents=True)
    marker = tmp_path / "ran"
    (src / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (src / "mod.py").write_text("")

    class Finder:  # like setuptools' editable finder: knows metapkg's folder, which is not on sys.path
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "metapkg":
                return importlib.machinery.PathFinder.find_spec(name, [str(src.parent)])
            return None

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder()])
    root = tmp_path / "ck"
    _run(root)
    unit = _stale_copy(root, root / _files(root)[0], method="meta", **{"class": "metapkg.mod:Method"})
    res = _cli("checkpoints", "prune", str(root))
    assert res.exit_code == 1 and "name module 'metapkg.mod', which is not a registered method" in " ".join(res.stderr.split())
    assert unit.exists() and not marker.exists() and "metapkg" not in sys.modules


def test_prune_never_imports_a_module_a_checkpoint_names_unless_allowed(data, tmp_path, monkeypatch):
    """A checkpoint folder may come from elsewhere: the module its key names runs only when the user
    allows it (--allow-import); a module that no longer exists is stale without importing anything."""
    (tmp_path / "src" / "ckpkg").mkdir(parents=True)
    marker = tmp_path / "ran"
    (tmp_path / "src" / "ckpkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "src" / "ckpkg" / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    root = tmp_path / "ck"
    _run(root)
    foreign = _stale_copy(root, root / _files(root)[0], method="foreign", **{"class": "ckpkg.evil:Method"})
    gone = _stale_copy(root, root / _files(root)[0], method="gone", **{"class": "ckpkg.nosuch:Method"})
    before = _files(root)
    for args in ((), ("--dry-run",)):
        res = _cli("checkpoints", "prune", str(root), *args)
        text = " ".join(res.stderr.split())
        assert res.exit_code == 1 and "name module 'ckpkg.evil', which is not a registered method" in text, text
        assert "--allow-import ckpkg.evil" in text and "nothing was pruned" in text
        assert not marker.exists() and "ckpkg" not in sys.modules and _files(root) == before

    res = _cli("checkpoints", "prune", str(root), "--allow-import", "ckpkg")
    assert res.exit_code == 0, res.stderr
    assert marker.exists() and not foreign.exists() and not gone.exists()  # imported; Method is not a class there
    for name in ("ckpkg.evil", "ckpkg"):
        sys.modules.pop(name, None)
