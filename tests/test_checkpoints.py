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

from latbench_baselines.flops import FLOPsRegression
from latbench.eval import checkpoints, executors, runner, sweep, units
from latbench.leaderboard import board as lb
from latbench.eval.checkpoints import CheckpointError

from test_sweep import _cli, _metrics

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
        (label, method), = sweep.make_methods(["opwise-lasso"], params or {})
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


@pytest.mark.parametrize("corrupt, message", [
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
])
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
    args = ["sweep", "--methods", "test_sweep:LateFailure", "--tasks", TASKS, "--shots", "5,10", "--trials", str(TRIALS),
            "--checkpoint", str(root), "--out", str(out)]
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
        'def f(x):\n    """Other words."""\n    return x + 1\n')
    assert checkpoints.source_fingerprint(base) != checkpoints.source_fingerprint(
        'def f(x):\n    """Doc."""\n    return x + 2\n')
    assert checkpoints.code_fingerprint("latbench_baselines.flops") and checkpoints.code_fingerprint("no.such.module") == ""


class Slow(FLOPsRegression):
    """FLOPs regression whose fit takes 1.5 s: longer than the test's time budget."""

    name = "slow"

    def fit(self, source, space, seed):
        time.sleep(1.5)
        return super().fit(source, space, seed)


@pytest.mark.parametrize("workers, started", [(1, 1), (2, 2)])
def test_time_budget_stops_starting_units_and_keeps_the_finished(data, tmp_path, workers, started):
    """Budget 0.6 s: the first unit (or the first ``workers`` units) start, nothing after; the
    stopped run names what remains; the same command without a budget finishes from there."""
    root, out = tmp_path / "ck", tmp_path / "out"
    args = ["sweep", "--methods", "test_checkpoints:Slow", "--tasks", TASKS, "--shots", "5", "--trials", str(TRIALS),
            "--workers", str(workers), "--checkpoint", str(root), "--out", str(out)]
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


@pytest.mark.parametrize("extra, message", [
    (["--time-budget", "5"], "--time-budget needs --checkpoint DIR"),
    (["--time-budget", "0", "--checkpoint", "ck"], "--time-budget must be > 0 minutes"),
    (["--time-budget", "5", "--checkpoint", "ck", "--ray-address", "local"], "local workers only"),
])
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
def test_sigterm_stops_the_workers_too(data, tmp_path):
    """``kill DRIVER`` must not leave spawned workers computing units nobody will collect."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "latbench.cli", "sweep", "--methods", "test_checkpoints:Sleeper",
                             "--tasks", TASKS, "--shots", "5", "--trials", "1", "--workers", "2",
                             "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "out")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[:1]]
    assert alive == [] and not (tmp_path / "out").exists() and not list((tmp_path / "ck").rglob("*.json"))
