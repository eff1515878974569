"""Hostile checkpoint folders (issue #18): a sweep unit edited by hand, or something that is not a
unit file at all, is refused with a one-line error naming its path, and nothing on disk changes.

A unit's results are validated like a leaderboard entry's trials when the unit is loaded (metric
ranges, per-trial mean/worst recomputed, devices = the task's targets, seeds, measured archs within
the budget and the query pool), so neither ``sweep`` nor ``leaderboard baselines --checkpoint`` can
assemble an entry from numbers no run produced. Every case runs the real CLI (``sweep``,
``leaderboard baselines``, ``checkpoints prune``) against a copy of one genuine checkpoint folder
(``flops`` on two tasks), and compares the folder byte for byte before and after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import run_cli
from hostile import snapshot

from latbench.eval import checkpoints, runner, sweep
from latbench.leaderboard import board as lb
from latbench.protocol.metrics import HIGHER_IS_BETTER, METRICS

TASKS = "easy-1,hard-4"
SHOTS = [5, 10]
TRIALS = 2
SWEEP = ["sweep", "--methods", "flops", "--tasks", TASKS, "--shots", "5,10", "--trials", str(TRIALS)]


# ------------------------------------------------------------------------------------ helpers
_cli = run_cli


def one_line_error(res, *needles: str) -> str:
    """The command failed with exactly one line on stderr, ``error: ...``, holding every needle."""
    assert res.exit_code not in (0, None), res.output
    lines = res.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def genuine(built_home, tmp_path_factory) -> Path:
    """A checkpoint folder of a real sweep: flops on easy-1 and hard-4, shots 5 and 10, 2 trials."""
    from latbench.data import store

    root = tmp_path_factory.mktemp("genuine") / "ck"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATBENCH_HOME", str(built_home))
        store.clear_cache()
        _, tasks = lb.select_tasks(TASKS)
        runner.run(sweep.make_methods(["flops"], {}), tasks, shots=SHOTS, trials=TRIALS, checkpoint=root)
        store.clear_cache()
    assert len(list(root.rglob("*.json"))) == 2 * TRIALS
    return root


@pytest.fixture()
def ck(genuine, data, tmp_path) -> Path:
    """This test's copy of the genuine checkpoint folder."""
    root = tmp_path / "ck"
    shutil.copytree(genuine, root)
    return root


def unit_file(root: Path, task: str = "easy-1", trial: int = 0) -> Path:
    (path,) = (root / "flops" / task).glob(f"trial{trial}-*.json")
    return path


def recompute(tr: dict) -> None:
    for m in METRICS:
        vals = [d[m] for d in tr["devices"].values()]
        tr["mean"][m] = sum(vals) / len(vals)
        tr["worst"][m] = (min if HIGHER_IS_BETTER[m] else max)(vals)


def _first(tr: dict) -> str:
    return next(iter(tr["devices"]))


def _set(metric, value, consistent=True):
    def edit(doc):
        tr = doc["trials"][0]
        tr["devices"][_first(tr)][metric] = value
        if consistent:
            recompute(tr)

    return edit


def _drop_device(doc):
    tr = doc["trials"][0]
    del tr["devices"][_first(tr)]
    recompute(tr)


def _extra_device(doc):
    tr = doc["trials"][0]
    tr["devices"]["my-fake-phone"] = dict(tr["devices"][_first(tr)])
    recompute(tr)


def _rename_device(doc):
    tr = doc["trials"][0]
    first = _first(tr)
    tr["devices"]["not-a-target"] = tr["devices"].pop(first)
    tr["measured"]["not-a-target"] = tr["measured"].pop(first)


def _measure(how):
    def edit(doc):
        from latbench.tasks.spec import load_task

        pools = load_task("easy-1").pools
        tr = doc["trials"][0]  # k = 5
        dev = _first(tr)
        if how == "over-k":
            tr["measured"][dev] = sorted(set(tr["measured"][dev]) | set(pools.query_pool[:6]))
        elif how == "outside-pool":
            tr["measured"][dev] = list(tr["measured"][dev][:4]) + [int(pools.eval[0])]
        else:  # measurements on a device that is not a target
            tr["measured"]["not-a-target"] = list(tr["measured"][dev][:2])

    return edit


def _nest(depth):
    def edit(doc):
        nested: object = 1
        for _ in range(depth):
            nested = [nested]
        doc["host"] = nested

    return edit


#: (id, edit of the unit's JSON document (or raw bytes to write), what the error says)
TAMPERED = [
    ("spearman-5.0", _set("spearman", 5.0), "rank correlations must lie in [-1, 1]"),
    ("spearman-5.0-mean-left", _set("spearman", 5.0, consistent=False), "rank correlations must lie in [-1, 1]"),
    ("kendall-below-minus-1", _set("kendall", -1.5), "rank correlations must lie in [-1, 1]"),
    ("negative-mape", _set("mape", -0.5), "negative error or accuracy outside [0, 1]"),
    ("negative-rmse", _set("rmse", -2.0), "negative error or accuracy outside [0, 1]"),
    ("accuracy-above-1", _set("acc10", 1.5), "negative error or accuracy outside [0, 1]"),
    ("better-spearman-mean-not-recomputed", _set("spearman", 0.999, consistent=False), "mean spearman"),
    ("worst-edited", lambda d: d["trials"][0]["worst"].update(mape=0.0), "worst mape 0.0 does not recompute"),
    ("mean-edited", lambda d: d["trials"][1]["mean"].update(kendall=0.99), "k=10: mean kendall 0.99 does not recompute"),
    ("device-dropped", _drop_device, "devices"),
    ("device-added", _extra_device, "devices"),
    ("device-renamed", _rename_device, "devices"),
    ("measured-over-k", _measure("over-k"), "measured archs exceed k=5 or leave the query pool"),
    ("measured-outside-pool", _measure("outside-pool"), "measured archs exceed k=5 or leave the query pool"),
    ("measured-on-non-target", _measure("non-target"), "measurements on devices that are not targets"),
    ("seed-changed", lambda d: d["trials"][0].update(seed=12345), "seed 12345 is not the protocol's seed"),
    ("negative-trial-seconds", lambda d: d["trials"][0]["seconds"].update(fit=-1.0), "seconds must be finite and >= 0"),
    ("string-metric", _set("spearman", "high", consistent=False), "malformed trial result"),
    ("shots-not-ints", lambda d: d["key"].update(shots=["5", "10"]), "malformed 'key'"),
    ("nested-past-the-limit", _nest(40), "nested deeper than"),
    ("nested-past-recursion", lambda d: b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
]


# -------------------------------------------------------------------------- tampered unit files
@pytest.mark.parametrize("name,edit,message", TAMPERED, ids=[c[0] for c in TAMPERED])
def test_sweep_refuses_a_tampered_unit(ck, tmp_path, name, edit, message):
    path = unit_file(ck)
    doc = json.loads(path.read_text())
    raw = edit(doc)
    path.write_bytes(raw if isinstance(raw, bytes) else json.dumps(doc, indent=1).encode())
    before = snapshot(ck)
    out = tmp_path / "out"
    res = _cli(*SWEEP, "--checkpoint", ck, "--out", out)
    one_line_error(res, str(path), message)
    assert "sweep wall time" not in res.stderr  # refused while loading, before any unit ran
    assert snapshot(ck) == before and not out.exists()
    with pytest.raises(checkpoints.CheckpointError, match="not usable"):  # the API refuses it the same way
        checkpoints.load(ck, _unit(path))


def _unit(path: Path):
    """The sweep unit whose checkpoint ``path`` is."""
    from latbench.eval import units

    _, tasks = lb.select_tasks(TASKS)
    ((label, m),) = sweep.make_methods(["flops"], {})
    for task in tasks:
        for trial in range(TRIALS):
            u = units.Unit(0, label, m, task, trial, tuple(SHOTS))
            if checkpoints.path_for(path.parents[2], u) == path:
                return u
    raise AssertionError(f"no unit for {path}")


def test_prune_refuses_a_tampered_unit_and_removes_nothing(ck):
    path = unit_file(ck, "hard-4", 1)
    doc = json.loads(path.read_text())
    _set("spearman", 5.0)(doc)
    path.write_text(json.dumps(doc))
    stale = ck / "flops" / "easy-1" / ("trial0-" + "0" * 16 + ".json")  # an old unit prune would otherwise remove
    shutil.copy(unit_file(ck), stale)
    before = snapshot(ck)
    res = _cli("checkpoints", "prune", ck)
    one_line_error(res, "nothing removed", str(path), "rank correlations must lie in [-1, 1]")
    assert snapshot(ck) == before


# ------------------------------------------------------------------ things that are not unit files
def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("a folder where a unit's file belongs")


def _replace_with_link_to_device(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")  # reading it would never end


@pytest.mark.parametrize(
    "make, message",
    [
        (_replace_with_dir, "a directory, not a checkpoint file"),
        (_replace_with_link_to_device, "not a regular file"),
    ],
    ids=["directory-at-unit-path", "symlink-to-dev-zero"],
)
def test_not_a_unit_file_at_the_units_path(ck, tmp_path, make, message):
    if make is _replace_with_link_to_device and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    path = unit_file(ck)
    make(path)
    before = snapshot(ck)
    res = _cli(*SWEEP, "--checkpoint", ck, "--out", tmp_path / "out")
    one_line_error(res, str(path), message)
    assert snapshot(ck) == before and not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_at_the_units_path_does_not_block(ck, tmp_path):
    """Opening a FIFO for reading blocks until someone writes: the loader must refuse it unopened
    (a real process, so a hang fails the test by its timeout instead of hanging the suite)."""
    path = unit_file(ck)
    path.unlink()
    os.mkfifo(path)
    before = snapshot(ck)
    proc = subprocess.run(
        [sys.executable, "-m", "latbench.cli", *SWEEP, "--checkpoint", str(ck), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and str(path) in lines[-1] and "not a regular file" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(ck) == before


def test_checkpoint_folder_that_is_a_file(data, tmp_path):
    root = tmp_path / "ck"
    root.write_text("not a folder")
    res = _cli(*SWEEP, "--checkpoint", root, "--out", tmp_path / "out")
    one_line_error(res, f"--checkpoint {root} is not a folder")
    assert root.read_text() == "not a folder" and not (tmp_path / "out").exists()


def test_file_where_the_methods_folder_belongs(data, tmp_path):
    """Saving a finished unit fails: one line naming the file it could not write, nothing else written."""
    root = tmp_path / "ck"
    root.mkdir()
    (root / "flops").write_text("in the way")
    before = snapshot(root)
    res = _cli(*SWEEP, "--checkpoint", root, "--out", tmp_path / "out")
    one_line_error(res, "cannot save checkpoint", str(root / "flops"))
    assert snapshot(root) == before and not (tmp_path / "out").exists()


# ------------------------------------------------------------ leaderboard baselines --checkpoint
def _baselines(monkeypatch, board: Path, ck: Path):
    from latbench.tasks.spec import select

    monkeypatch.setattr(lb, "suite_tasks", lambda suite: select(TASKS))  # a 2-task "suite" keeps this cheap
    monkeypatch.setenv("LATBENCH_LEADERBOARD", str(board))
    return _cli("leaderboard", "baselines", "--method", "flops", "--checkpoint", ck)


def test_baselines_refuses_a_unit_edited_to_spearman_5(data, tmp_path, monkeypatch):
    """The issue's case: `baselines --checkpoint` used to store whatever the units said, as verified."""
    ck = tmp_path / "ck"
    res = _baselines(monkeypatch, tmp_path / "board-a", ck)
    assert res.exit_code == 0, res.output + res.stderr
    path = sorted(ck.rglob("*.json"))[3]
    doc = json.loads(path.read_text())
    _set("spearman", 5.0)(doc)
    recompute(doc["trials"][0])
    path.write_text(json.dumps(doc))
    board, before_ck = tmp_path / "board-b", snapshot(ck)
    res = _baselines(monkeypatch, board, ck)
    one_line_error(res, str(path), "rank correlations must lie in [-1, 1]")
    assert snapshot(ck) == before_ck and snapshot(board) == {}


def test_baselines_from_loaded_units_is_unverified(data, tmp_path, monkeypatch):
    """Units loaded from disk are not a re-run: the entry is stored unverified, and the command says so."""
    ck = tmp_path / "ck"
    res = _baselines(monkeypatch, tmp_path / "board-a", ck)
    assert res.exit_code == 0, res.output + res.stderr
    (first,) = lb.list_entries(tmp_path / "board-a" / "entries")
    assert first.status == "verified"  # every unit ran in that command
    res = _baselines(monkeypatch, tmp_path / "board-b", ck)
    assert res.exit_code == 0, res.output + res.stderr
    assert "(unverified: 10 of 10 units were loaded from" in " ".join(res.stdout.split())
    (path,) = (tmp_path / "board-b" / "entries").glob("*.json")
    assert lb.load_entry(path).status == "unverified"
    assert [e.status for e in lb.list_entries(path.parent)] == ["unverified"]
    assert not (tmp_path / "board-b" / lb.LEDGER_DIR).exists()
