"""``latbench sweep``: the same numbers (bit for bit) from ``evaluate``, in-process, spawned
processes and a local Ray instance; a failing unit is named and leaves no output; bad arguments
fail before any work; ``leaderboard baselines --workers``.

Everything runs the cheap ``flops`` baseline on two small tasks (NB201 and FBNet) so the module
stays well under a minute; the methods that fail on purpose are defined here and loaded by the
workers as ``test_sweep:Class`` (spawned workers inherit pytest's sys.path).
"""

from __future__ import annotations

import json
import sys

import pytest
from clirun import run_cli

from latbench.eval import runner, sweep, units
from latbench.leaderboard import board as lb
from latbench_baselines.flops import FLOPsRegression

TASKS = "easy-1,hard-4"
SHOTS = [5, 10]
TRIALS = 2


class LateFailure(FLOPsRegression):
    """Fails only in the last unit (hard-4, trial 1), after every other unit has succeeded."""

    name = "late-failure"

    def fit(self, source, space, seed):
        from latbench.protocol.trial import trial_seed
        from latbench.tasks.spec import load_task

        if seed == trial_seed(load_task("hard-4"), 1):
            raise RuntimeError("injected failure in fit")
        return super().fit(source, space, seed)


def _metrics(results) -> str:
    """Every result block without the timings (the only thing allowed to differ), as exact JSON."""
    blocks = [r.model_dump() if hasattr(r, "model_dump") else json.loads(json.dumps(r)) for r in results]
    for b in blocks:
        for t in b["trials"]:
            t.pop("seconds")
    return json.dumps(blocks, sort_keys=True)


def _sweep(workers: int, ray_address: str | None = None):
    _, tasks = lb.select_tasks(TASKS)
    return runner.run(
        sweep.make_methods(["flops"], {}), tasks, shots=SHOTS, trials=TRIALS, workers=workers, ray_address=ray_address
    )[0]


_cli = run_cli


@pytest.fixture(scope="module")
def reference(built_home):
    """``runner.evaluate`` itself: what every executor must reproduce."""
    from latbench.data import store
    from latbench.eval.runner import evaluate
    from latbench.methods.registry import make_method
    from latbench.tasks.spec import select

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATBENCH_HOME", str(built_home))
        store.clear_cache()
        return evaluate(make_method("flops"), select(TASKS), shots=SHOTS, trials=TRIALS)


# -------------------------------------------------------------------------------- determinism
def test_in_process_matches_evaluate(data, reference):
    result = _sweep(workers=1)
    assert _metrics(result.results) == _metrics(reference.results)
    assert [(r.task, r.shots) for r in result.results] == [(r.task, r.shots) for r in reference.results]
    assert (result.method, result.method_params, result.dataset_hash) == (
        reference.method,
        reference.method_params,
        reference.dataset_hash,
    )


def test_processes_via_cli_match_evaluate(data, reference, tmp_path):
    res = _cli(
        "sweep",
        "--methods",
        "flops",
        "--tasks",
        TASKS,
        "--shots",
        "5,10",
        "--trials",
        str(TRIALS),
        "--workers",
        "2",
        "--out",
        str(tmp_path),
    )
    assert res.exit_code == 0, res.output + res.stderr
    assert f"[{2 * TRIALS}/{2 * TRIALS}]" in res.stderr and "sweep wall time" in res.stderr
    entry = lb.load_entry(tmp_path / "flops.json")  # the `latbench submit` format
    assert _metrics(entry.results) == _metrics(reference.results)
    assert entry.method.code_ref == "latbench_baselines.flops:FLOPsRegression" and entry.suite == TASKS
    assert entry.shots == SHOTS and entry.trials == TRIALS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flops.json"]


@pytest.mark.slow
def test_ray_local_matches_evaluate(data, reference):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'latbench[ray]'): the Ray executor is untested")
    result = _sweep(workers=2, ray_address="local")
    assert _metrics(result.results) == _metrics(reference.results)


def test_ray_missing_is_a_clear_error(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(units.SweepError, match=r"pip install 'latbench\[ray\]'"):
        _sweep(workers=2, ray_address="local")


# ------------------------------------------------------------------------------------ failures
@pytest.mark.parametrize("workers", [1, 2])
def test_failing_unit_is_named_and_nothing_is_written(data, tmp_path, workers):
    out = tmp_path / "out"
    res = _cli(
        "sweep",
        "--methods",
        "flops,test_sweep:LateFailure",
        "--tasks",
        TASKS,
        "--shots",
        "5",
        "--trials",
        str(TRIALS),
        "--workers",
        str(workers),
        "--out",
        str(out),
    )
    assert res.exit_code == 1, res.output
    assert (
        "error: method 'test_sweep:LateFailure' on task hard-4 trial 1 failed: late-failure.fit() raised "
        "RuntimeError: injected failure in fit"
    ) in res.stderr
    assert "no results or entries written" in res.stderr and "Traceback" not in res.stderr + res.output
    assert not out.exists() or list(out.iterdir()) == []  # not even flops.json, whose units all succeeded


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "flopz"], "unknown method 'flopz' (did you mean flops"),
        (["--methods", "flops,flops"], "--methods: 'flops' is listed twice"),
        (["--methods", "flops", "--workers", "0"], "--workers must be an int >= 1 (got 0)"),
        (["--methods", "flops", "--tasks", "easy-99"], "unknown task 'easy-99'"),
        (["--methods", "flops", "--shots", "5,x"], "--shots expects comma-separated integers"),
        (["--methods", "flops", "--trials", "0"], "--trials must be an int >= 1, got 0"),
        (["--methods", "flops", "--shots", "5,-1"], "--shots must be distinct ints >= 0, got [5, -1]"),
        (["--methods", "flops", "--tasks", "easy-1", "--store"], "--store needs a whole suite"),
        (["--methods", "flops", "--param", "nope=1"], "method 'flops': bad parameters"),
    ],
)
def test_bad_arguments_fail_before_any_work(data, tmp_path, args, message):
    out = tmp_path / "out"
    res = _cli("sweep", *args, "--out", str(out))
    assert res.exit_code == 1, res.output
    assert message in res.stderr.replace("\n", " ")
    assert "sweep:" not in res.stderr  # refused before planning any unit
    assert not out.exists()


# ------------------------------------------------------------------------ leaderboard baselines
def test_baselines_workers_store_the_same_verified_entries(data, tmp_path, monkeypatch):
    from latbench.tasks.spec import select

    monkeypatch.setattr(lb, "suite_tasks", lambda suite: select(TASKS))  # a 2-task "suite" keeps this cheap
    stored = {}
    for workers in (1, 2):
        board = tmp_path / f"board{workers}"
        monkeypatch.setenv("LATBENCH_LEADERBOARD", str(board))
        res = _cli("leaderboard", "baselines", "--method", "flops", "--workers", str(workers))
        assert res.exit_code == 0, res.output + res.stderr
        (path,) = (board / "entries").glob("*.json")
        assert res.stdout == f"flops: {path.stem}\n"
        stored[workers] = lb.load_entry(path)
    assert stored[1].status == stored[2].status == "verified"
    assert _metrics(stored[1].results) == _metrics(stored[2].results)
    assert len(stored[1].results) == 2 * len(lb.SUITE_SHOTS) and stored[1].trials == lb.SUITE_TRIALS


def test_baselines_in_slices_keep_units_in_the_home_and_store_a_verified_entry(data, tmp_path, monkeypatch):
    """A board too slow for one run: `baselines --time-budget` without --checkpoint keeps the finished
    units in the user's latbench home, the same command continues from them, and the entry it stores
    is verified (every unit ran in a `baselines` run) with the metrics of one uninterrupted run."""
    import itertools
    import re
    import time
    import types

    import latbench.cli.leaderboard as cli
    from latbench import paths
    from latbench.eval import executors
    from latbench.tasks.spec import select

    monkeypatch.setattr(lb, "suite_tasks", lambda suite: select(TASKS))  # a 2-task "suite": 10 units
    board = tmp_path / "board"
    monkeypatch.setenv("LATBENCH_LEADERBOARD", str(board))
    units = cli.baselines_units_dir("main", ["flops"])
    assert units.parent == paths.home() / "baselines" and not units.exists()

    ticks = itertools.count()  # the budget's clock moves one second per reading: a few units start, then none
    fake = types.SimpleNamespace(perf_counter=time.perf_counter, monotonic=lambda: float(next(ticks)))
    monkeypatch.setattr(executors, "time", fake)
    res = _cli("leaderboard", "baselines", "--method", "flops", "--time-budget", "0.05")
    assert res.exit_code == 1, res.output
    err = " ".join(res.stderr.split())
    m = re.search(rf"time budget of 0.05 min spent: (\d+) of 10 units finished and kept in {re.escape(str(units))}", err)
    assert m and 0 < int(m.group(1)) < 10, err
    assert not board.exists()  # nothing stored, nothing vouched for
    assert len([p for p in units.rglob("*.json")]) == int(m.group(1))

    monkeypatch.setattr(executors, "time", time)
    res = _cli("leaderboard", "baselines", "--method", "flops", "--time-budget", "60")
    assert res.exit_code == 0, res.output
    assert f"{m.group(1)} of 10 units already finished" in " ".join(res.stderr.split())
    (path,) = (board / "entries").glob("*.json")
    assert res.stdout == f"flops: {path.stem}\n"  # no "unverified" note
    sliced = lb.load_entry(path)
    assert sliced.status == "verified"
    assert lb.verification(path.stem, path.parent)["by"] == "leaderboard baselines --time-budget"
    assert not units.exists()  # stored: the next sliced run starts afresh

    monkeypatch.setenv("LATBENCH_LEADERBOARD", str(tmp_path / "whole"))
    res = _cli("leaderboard", "baselines", "--method", "flops")
    assert res.exit_code == 0, res.output
    (whole,) = lb.list_entries(tmp_path / "whole" / "entries")
    assert _metrics(sliced.results) == _metrics(whole.results)


def test_baselines_replace_keeps_one_entry_per_method_and_suite(data, tmp_path, monkeypatch):
    from latbench.tasks.spec import select

    board = tmp_path / "board"
    monkeypatch.setenv("LATBENCH_LEADERBOARD", str(board))

    def run(tasks: str, suite: str = "main", *extra: str) -> str:
        monkeypatch.setattr(lb, "suite_tasks", lambda s: select(tasks))
        res = _cli("leaderboard", "baselines", "--method", "flops", "--suite", suite, *extra)
        assert res.exit_code == 0, res.output + res.stderr
        return res.stdout

    run("easy-1")  # the "old" main entry
    run("medium-1", "literature")  # same method, other suite: never touched by a main-suite --replace
    run("hard-4")  # without --replace a second main entry is stored beside the first
    stems = {p.stem for p in (board / "entries").glob("*.json")}
    assert len(stems) == 3 and {p.stem for p in (board / "verified").glob("*.json")} == stems

    out = run(TASKS, "main", "--replace")
    kept = {p.stem for p in (board / "entries").glob("*.json")}
    removed = stems - kept
    assert len(removed) == 2 and len(kept) == 2  # both earlier main entries went, the literature one stayed
    assert {e.suite for e in lb.list_entries(board / "entries")} == {"main", "literature"}
    assert {p.stem for p in (board / "verified").glob("*.json")} == kept  # their ledger records went with them
    for stem in removed:
        assert f"removed {stem} (superseded, --replace)" in out
    (main,) = [e for e in lb.list_entries(board / "entries") if e.suite == "main"]
    assert {r.task for r in main.results} == set(TASKS.split(",")) and main.status == "verified"

    run(TASKS, "main", "--replace")  # a re-run that reproduces the entry replaces it: not a duplicate of it
    (again,) = [e for e in lb.list_entries(board / "entries") if e.suite == "main"]
    assert again.status == "verified" and lb.same_results(again, main)


def test_a_kernel_method_gives_the_same_numbers_with_one_worker_or_two(data):
    """Two workers split the tasks between two processes, so each meets the archs (and spaces) in
    another order than the single process does; kernel-level methods must not notice."""
    from latbench.tasks.spec import select

    tasks = select("hard-1,hard-3")  # one each: hard-3 runs in a fresh process, or after hard-1
    one, two = (runner.run(sweep.make_methods(["opwise-lasso"], {}), tasks, shots=[5], trials=1, workers=w)[0] for w in (1, 2))
    assert _metrics(one.results) == _metrics(two.results)
