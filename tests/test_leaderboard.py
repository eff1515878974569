"""The leaderboard: validation of malformed submissions (entries and prediction folders), atomic
storage under concurrent real processes, ranking with ties, the rendered README and page (also in
headless Chromium), verify, and the documented example predictor.

One official flops run of the main suite (~20 s) is shared by the whole module: it goes through
``latbench submit`` and its per-trial predictions are captured into a ``--predictions`` folder.
Every test points ``LATBENCH_LEADERBOARD`` at its own temporary folder; the repository's
``leaderboard/`` is never written (one test reads it: the committed board must stay valid and rendered).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hostile import legacy_schema
from pydantic import ValidationError
from typer.testing import CliRunner

from latbench.cli import app
from latbench.errors import DataError
from latbench.leaderboard import board as lb
from latbench.leaderboard import generated
from latbench.methods.registry import builtin_methods
from latbench.protocol.metrics import HIGHER_IS_BETTER, LEGACY_METRICS, METRICS

BUILTIN = builtin_methods()

REPO = Path(__file__).resolve().parents[1]
XSS = "<script>alert(1)</script>"


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def flops(built_home, tmp_path_factory):
    """`latbench submit --method flops --suite main`, plus that run's predictions as CSV files."""
    import latbench.eval.trials as runner
    from latbench.data import store

    root = tmp_path_factory.mktemp("flops")
    captured = {}
    original = runner.run_trial

    def spy(method, task, t, shots, *args, **kwargs):
        run = original(method, task, t, shots, *args, **kwargs)
        captured[(task.id, t, shots)] = (run.trial.eval_ids, run.predictions)
        return run

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATBENCH_HOME", str(built_home))
        mp.setenv("LATBENCH_LEADERBOARD", str(root / "board-unused"))
        mp.setattr(runner, "run_trial", spy)
        store.clear_cache()
        res = CliRunner().invoke(app, ["submit", "--method", "flops", "--suite", "main", "--out", str(root / "flops.json")])
        assert res.exit_code == 0, res.output
        preds = root / "predictions"
        for (task, t, k), (eval_ids, pred) in captured.items():
            for dev, y in pred.items():
                lb.write_prediction_csv(lb.prediction_path(preds, task, k, t, dev), eval_ids[dev], y)
        store.clear_cache()
    return SimpleNamespace(path=root / "flops.json", text=(root / "flops.json").read_text(), predictions=preds)


@pytest.fixture(scope="module")
def scored(flops, built_home, tmp_path_factory):
    """`latbench submit --method flops --predictions DIR`: the flops run's predictions, scored."""
    from latbench.data import store

    out = tmp_path_factory.mktemp("scored") / "from_predictions.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATBENCH_HOME", str(built_home))
        store.clear_cache()
        res = CliRunner().invoke(app, ["submit", "--method", "flops", "--predictions", str(flops.predictions), "--out", str(out)])
        assert res.exit_code == 0, res.output
        store.clear_cache()
    return out


@pytest.fixture()
def board(data, tmp_path, monkeypatch):
    """An empty leaderboard folder for this test (LATBENCH_LEADERBOARD)."""
    folder = tmp_path / "board"
    monkeypatch.setenv("LATBENCH_LEADERBOARD", str(folder))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return (
        {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}
    )


def block(d: dict, task: str = "easy-1", k: int = 5) -> dict:
    return next(r for r in d["results"] if r["task"] == task and r["shots"] == k)


def recompute(b: dict, metrics=METRICS) -> None:
    """Make a block's per-trial mean/worst and its aggregate consistent with its per-device metrics."""
    for tr in b["trials"]:
        for m in metrics:
            vals = [v[m] for v in tr["devices"].values()]
            tr["mean"][m] = float(np.mean(vals))
            tr["worst"][m] = float((min if HIGHER_IS_BETTER[m] else max)(vals))
    for m in metrics:
        vals = np.array([tr["mean"][m] for tr in b["trials"]])
        b["aggregate"][m] = {"mean": float(vals.mean()), "std": float(vals.std())}


def shifted(text: str, delta: float, name: str) -> lb.Entry:
    """A synthetic entry: the flops entry with every task's Spearman moved by ``delta`` (ranking only)."""
    d = json.loads(text)
    d["method"].update(name=name, code_ref=f"synthetic:{name}")
    for r in d["results"]:
        for tr in r["trials"]:
            tr["mean"]["spearman"] += delta
        r["aggregate"]["spearman"]["mean"] += delta
    return lb.Entry.model_validate(d)


# ------------------------------------------------------------------------ malformed entries
def _first_device(d, **kw):
    return next(iter(block(d, **kw)["trials"][0]["devices"]))


def _set_metric(d, metric, value):
    b = block(d)
    b["trials"][0]["devices"][_first_device(d)][metric] = value


def _measure(d, how):
    from latbench.tasks.spec import load_task

    b = block(d)  # easy-1, k = 5
    pools = load_task("easy-1").pools
    ids = list(pools.query_pool[:6]) if how == "over-k" else list(pools.query_pool[:4]) + [pools.eval[0]]
    b["trials"][0]["measured"][_first_device(d)] = ids


def _drop_task(d):
    d["results"] = [r for r in d["results"] if r["task"] != "hard-6"]
    del d["task_versions"]["hard-6"]


def _drop_k20(d):
    d["results"] = [r for r in d["results"] if r["shots"] != 20]
    d["shots"] = [5, 10]


def _stray_block(d):
    extra = json.loads(json.dumps(block(d)))
    extra["shots"] = 15
    d["results"].append(extra)


def _nan_token(d):
    _set_metric(d, "mape", float("nan"))
    return json.dumps(d).encode()  # json writes the bare token NaN


def _inf_token(d):
    _set_metric(d, "rmse", float("inf"))
    return json.dumps(d).encode()  # Infinity


def _overflow(d):
    return re.sub(rb'"seconds": [0-9.e+-]+', b'"seconds": 1e999', json.dumps(d).encode(), count=1)  # parses to inf


MALFORMED = [
    # (id, mutate the entry dict (or return raw bytes), expected message)
    ("missing-field", lambda d: d.pop("dataset_hash"), r"schema error at dataset_hash: Field required"),
    ("extra-field", lambda d: d.update(bonus_points=10), r"schema error at bonus_points: Extra inputs are not permitted"),
    ("wrong-type", lambda d: d.update(trials="five"), r"schema error at trials: Input should be a valid integer"),
    ("top-level-array", lambda d: b"[1, 2, 3]", r"schema error at \(entry\)"),
    ("not-json", lambda d: b"method: flops\nspearman: 0.9\n", r"not valid JSON"),
    ("non-utf8-garbage", lambda d: b"\xff\xfe\x00\x81garbage\xc3(", r"not UTF-8 text"),
    ("pickle", lambda d: pickle.dumps(d), r"looks like a pickle; entries must be JSON"),
    (
        "eval-results-file",
        lambda d: json.dumps({k: v for k, v in d.items() if k != "suite"} | {"method_params": {}}).encode(),
        r"a `latbench eval --out` results file, not a leaderboard entry; `latbench submit",
    ),
    ("unknown-suite", lambda d: d.update(suite="olympics"), r"unknown suite 'olympics'"),
    ("zero-width-in-name", lambda d: d["method"].update(name="fl\u200bops"), r"method\.name: holds an invisible character"),
    ("look-alike-name", lambda d: d["method"].update(name="fl\u043eps"), r"method\.name: .*a method name is printable ASCII"),
    ("escape-in-hardware", lambda d: d.update(hardware="cpu \x1b[31mred"), r"hardware: holds an invisible character"),
    ("bidi-in-a-key", lambda d: d["method"]["params"].update({"a\u202eb": 1}), r"method\.params\.a.b: holds an invisible"),
    ("string-for-int", lambda d: d.update(trials="5"), r"schema error at trials: Input should be a valid integer"),
    ("blank-letter-in-notes", lambda d: d.update(notes="fine\u3164print"), r"notes: holds an invisible character"),
    ("disguised-version", lambda d: d.update(dataset_version="1.0+f9433cd188aa\u2800"), r"dataset_version: holds an invisible"),
    (
        "version-with-markup",
        lambda d: d["method"].update(version="<b>1</b>"),
        r"schema error at method\.version: String should match",
    ),
    (
        "repeated-key",
        lambda d: json.dumps(d).replace('"suite"', '"suite": "main", "suite"', 1).encode(),
        r"key 'suite' appears twice",
    ),
    ("huge-hardware", lambda d: d.update(hardware="x" * 5000), r"schema error at hardware: String should have at most 300"),
    ("huge-seconds", lambda d: d.update(seconds=1e300), r"schema error at seconds: Input should be less than or equal to"),
    (
        "stale-dataset-hash",
        lambda d: d.update(dataset_hash="0" * 64),
        r"dataset hash 000000000000\.\.\. does not match the current dataset",
    ),
    (
        "non-official-protocol",
        lambda d: d.update(protocol="help-paper-v1"),
        r"protocol 'help-paper-v1': the board only accepts official-v1",
    ),
    (
        "block-protocol",
        lambda d: block(d).update(protocol="official-v1-source-all"),
        r"easy-1 k=5: protocol 'official-v1-source-all' differs",
    ),
    (
        "stale-task-version",
        lambda d: d["task_versions"].update({"medium-2": d["task_versions"]["medium-2"] + 1}),
        r"task medium-2: version 2 in the entry, current is 1",
    ),
    (
        "stale-block-task-version",
        lambda d: block(d, "hard-2", 10).update(task_version=7),
        r"hard-2 k=10: task_version 7, current is 1",
    ),
    (
        "extra-task-version",
        lambda d: d["task_versions"].update({"help-nb201": 1}),  # a literature task in a main-suite entry
        r"tasks \['help-nb201'\] are not part of suite 'main'",
    ),
    (
        "block-wrong-space",
        lambda d: block(d).update(space="fbnet"),  # easy-1 is an nb201 task
        r"easy-1 k=5: space/difficulty \(fbnet, [0-9.]+\) differ from the task file \(nb201, ",
    ),
    (
        "block-wrong-difficulty",
        lambda d: block(d).update(difficulty=0.5),
        r"easy-1 k=5: space/difficulty \(nb201, 0\.5\) differ from the task file \(nb201, ",
    ),
    ("missing-task", _drop_task, r"missing task\(s\) hard-6: suite 'main' needs all of"),
    ("missing-shot-count", _drop_k20, r"needs shots \[5, 10, 20\] and 5 trials \(entry has shots \[5, 10\]"),
    ("missing-block", lambda d: d["results"].remove(block(d, "medium-4", 10)), r"missing results for task medium-4 at k=10"),
    ("stray-block", _stray_block, r"result blocks outside suite 'main'"),
    ("missing-trial", lambda d: block(d)["trials"].pop(), r"easy-1 k=5: needs trials 0\.\.4, has \[0, 1, 2, 3\]"),
    (
        "missing-device",
        lambda d: block(d)["trials"][2]["devices"].pop(_first_device(d)),
        r"easy-1 k=5 trial 2: devices .* expected",
    ),
    ("nan-token", _nan_token, r"non-finite number NaN in JSON"),
    ("infinity-token", _inf_token, r"non-finite number Infinity in JSON"),
    ("overflow-number", _overflow, r"number 1e999 overflows to infinity"),
    (
        "negative-mape",
        lambda d: _set_metric(d, "mape", -3.0),
        r"easy-1 k=5 trial 0 .*: negative error or accuracy outside \[0, 1\]",
    ),
    ("accuracy-above-1", lambda d: _set_metric(d, "acc10", 1.5), r"negative error or accuracy outside \[0, 1\]"),
    ("spearman-above-1", lambda d: _set_metric(d, "spearman", 1.2), r"rank correlations must lie in \[-1, 1\]"),
    ("negative-seconds", lambda d: d.update(seconds=-5.0), r"seconds must be a finite number >= 0"),
    (
        "mean-not-recomputing",
        lambda d: block(d)["trials"][1]["mean"].update(kendall=0.999),
        r"easy-1 k=5 trial 1: mean kendall 0\.999 does not recompute",
    ),
    ("worst-not-recomputing", lambda d: block(d)["trials"][1]["worst"].update(mape=0.0), r"worst mape 0\.0 does not recompute"),
    (
        "aggregate-not-recomputing",
        lambda d: block(d, "hard-3", 20)["aggregate"]["spearman"].update(mean=0.99),
        r"hard-3 k=20: aggregate spearman .* does not recompute",
    ),
    (
        "wrong-trial-seed",
        lambda d: block(d)["trials"][3].update(seed=12345),
        r"easy-1 k=5 trial 3: seed 12345 is not the protocol's seed",
    ),
    ("measured-over-k", lambda d: _measure(d, "over-k"), r"measured archs exceed k=5 or leave the query pool"),
    ("measured-outside-pool", lambda d: _measure(d, "outside"), r"measured archs exceed k=5 or leave the query pool"),
    ("self-verified", lambda d: d.update(status="verified"), r"only `latbench leaderboard verify` marks an entry verified"),
    ("duplicate", lambda d: None, r"duplicate entry: flops-[0-9a-f]{10}\.json is already on the board"),
    (
        "duplicate-renamed",
        lambda d: d["method"].update(name="FLOPs (again)"),
        r"duplicate entry: the same code_ref and results are already on the board",
    ),
]


@pytest.mark.parametrize("name,mutate,message", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_entry_rejected_board_unchanged(name, mutate, message, flops, board, tmp_path):
    lb.store_entry(lb.Entry.model_validate_json(flops.text))  # the board already holds the genuine entry
    before = snapshot(board)
    d = json.loads(flops.text)
    raw = mutate(d)
    path = tmp_path / "submission.json"
    path.write_bytes(raw if isinstance(raw, bytes) else json.dumps(d, indent=1).encode())
    with pytest.raises(lb.LeaderboardError, match=message):
        lb.add(path)
    assert snapshot(board) == before


def test_entry_too_large_rejected(flops, board, tmp_path, monkeypatch):
    monkeypatch.setattr(lb, "MAX_ENTRY_BYTES", 10_000)
    before = snapshot(board)
    with pytest.raises(lb.LeaderboardError, match=r"larger than the 10,000-byte limit for an entry"):
        lb.add(flops.path)
    assert snapshot(board) == before == {}


def test_cli_add_reports_one_line_error(flops, board, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(flops.text.replace('"suite": "main"', '"suite": "olympics"', 1))
    res = CliRunner().invoke(app, ["leaderboard", "add", str(bad)])
    assert res.exit_code == 1
    assert "error:" in res.output and "unknown suite 'olympics'" in res.output and "Traceback" not in res.output
    assert snapshot(board) == {}


# ----------------------------------------------------------------------- predictions folders
@pytest.mark.slow
def test_predictions_reproduce_the_submitted_run(flops, scored, board):
    """Scoring the run's own predictions gives exactly the metrics `submit --method flops` recorded."""
    out = scored
    scored, ran = lb.load_entry(out), lb.load_entry(flops.path)
    assert scored.protocol == lb.PREDICTIONS_PROTOCOL and ran.protocol == lb.OFFICIAL_PROTOCOL
    assert (scored.method.name, scored.method.code_ref) == ("flops", "latbench_baselines.flops:FLOPsRegression")
    assert "elsewhere" in scored.notes
    ran_blocks = {(r.task, r.shots): r for r in ran.results}
    assert set(ran_blocks) == {(r.task, r.shots) for r in scored.results}
    for r in scored.results:
        ref = ran_blocks[(r.task, r.shots)]
        for a, b in zip(r.trials, ref.trials):
            assert a.seed == b.seed and all(v == [] for v in a.measured.values())
            for dev, metrics in a.devices.items():
                for m, v in metrics.items():
                    assert v == pytest.approx(b.devices[dev][m], rel=1e-12, abs=1e-12), (r.task, r.shots, dev, m)
        for m in METRICS:
            assert r.aggregate[m]["mean"] == pytest.approx(ref.aggregate[m]["mean"], rel=1e-12, abs=1e-12)
    stored = lb.add(out)  # validate() accepts the predictions protocol
    assert stored.name == f"{scored.entry_id}.json"
    assert "unverified (predictions)" in lb.render_markdown(lb.list_entries())


@contextlib.contextmanager
def altered(path: Path, content: bytes | None):
    """Temporarily replace (or, with None, remove) one file of the shared predictions folder."""
    original = path.read_bytes() if path.exists() else None
    try:
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
        yield
    finally:
        if original is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(original)


def _rows(text: str) -> list[str]:
    return text.strip().splitlines()


def _pred_case(kind: str, text: str, eval_ids, query_pool, other_ids) -> bytes | None:
    lines = _rows(text)
    header, rows = lines[0], lines[1:]
    if kind == "wrong-ids":  # a file for another task's evaluation set
        return ("\n".join([header] + [f"{i},1.5" for i in other_ids]) + "\n").encode()
    if kind == "wrong-length":
        return ("\n".join([header] + rows[:-1]) + "\n").encode()
    if kind == "duplicate-ids":
        rows[-1] = rows[0].split(",")[0] + ",2.5"
    if kind == "id-outside-eval-set":
        rows[7] = f"{query_pool[0]},2.5"
    if kind == "negative-latency":
        rows[3] = rows[3].split(",")[0] + ",-0.25"
    if kind == "nan-latency":
        rows[3] = rows[3].split(",")[0] + ",nan"
    if kind == "non-integer-id":
        rows[5] = rows[5].split(",")[0] + ".0," + rows[5].split(",")[1]
    if kind == "extra-column":
        rows[2] += ",extra"
    if kind == "wrong-header":
        header = "id,ms"
    if kind == "missing-file":
        return None
    if kind == "pickle":
        return pickle.dumps({int(i): 1.0 for i in eval_ids})
    if kind == "parquet":
        return b"PAR1\x15\x04\x15\x00" + b"\x00" * 32 + b"PAR1"
    if kind == "non-utf8":
        return b"arch_id,latency_ms\n1,\xff\xfe\n"
    return ("\n".join([header] + rows) + "\n").encode()


PRED_CASES = [
    ("wrong-ids", r"arch id\(s\) are not in the task's evaluation set"),
    ("wrong-length", r"1999 rows, expected 2000 \(one per evaluation arch\); missing e\.g\. arch \d+"),
    ("duplicate-ids", r":2001: duplicate arch_id \d+ \(first on line 2\)"),
    ("id-outside-eval-set", r"1 arch id\(s\) are not in the task's evaluation set \(e\.g\. \d+, line 9\)"),
    ("negative-latency", r":5: latency_ms must be a finite number > 0, got -0\.25"),
    ("nan-latency", r":5: latency_ms must be a finite number > 0, got nan"),
    ("non-integer-id", r":7: arch_id '\d+\.0' is not a non-negative integer"),
    ("extra-column", r":4: expected 2 columns \(arch_id,latency_ms\), got 3"),
    ("wrong-header", r"the first line must be the header arch_id,latency_ms \(got 'id,ms'\)"),
    ("missing-file", r"missing 1 of 1215 prediction files, e\.g\. .*easy-1/k5/trial0/"),
    ("pickle", r"looks like a pickle; predictions must be CSV"),
    ("parquet", r"binary content; predictions must be a CSV text file"),
    ("non-utf8", r"not a UTF-8 CSV file"),
]


@pytest.mark.parametrize("kind,message", PRED_CASES, ids=[c[0] for c in PRED_CASES])
def test_malformed_predictions_rejected(kind, message, flops, board):
    from latbench.tasks.spec import load_task

    task = load_task("easy-1")  # scored first, so a broken file there fails fast
    path = lb.prediction_path(flops.predictions, "easy-1", 5, 0, task.target[0])
    content = _pred_case(kind, path.read_text(), task.pools.eval, task.pools.query_pool, load_task("easy-2").pools.eval)
    with altered(path, content), pytest.raises(lb.LeaderboardError, match=message):
        lb.score_predictions(flops.predictions, suite="main", method="flops")
    assert snapshot(board) == {}


def test_predictions_rows_in_another_order_score_the_same(flops, board):
    """A predictions file is matched to the evaluation set by its arch_id column, not by row order."""
    from latbench.data import store
    from latbench.protocol.metrics import compute
    from latbench.tasks.spec import load_task

    task = load_task("easy-1")
    dev = task.target[0]
    path = lb.prediction_path(flops.predictions, "easy-1", 5, 0, dev)
    header, *rows = _rows(path.read_text())
    y = store.load_latency(task.space).device(dev)[list(task.pools.eval)]
    original = lb.read_prediction_csv(path, task.pools.eval)
    with altered(path, ("\n".join([header, *rows[::-1]]) + "\n").encode()):
        reversed_rows = lb.read_prediction_csv(path, task.pools.eval)
    assert np.array_equal(reversed_rows, original) and not np.array_equal(original, original[::-1])
    assert compute(y, reversed_rows) == compute(y, original)


def test_predictions_folder_limits(flops, board, monkeypatch):
    from latbench.tasks.spec import load_task

    stray = flops.predictions / "easy-1" / "k5" / "model.pkl"
    with (
        altered(stray, b"\x80\x04junk"),
        pytest.raises(lb.LeaderboardError, match=r"model\.pkl: unexpected file in the predictions folder"),
    ):
        lb.score_predictions(flops.predictions, suite="main", method="flops")
    monkeypatch.setattr(lb, "MAX_PREDICTION_BYTES", 1000)
    with pytest.raises(lb.LeaderboardError, match=r"larger than the 1,000-byte limit for a predictions file"):
        lb.score_predictions(flops.predictions, suite="main", method="flops")
    with pytest.raises(lb.LeaderboardError, match=r"predictions folder not found"):
        lb.score_predictions(flops.predictions / "nope", suite="main", method="flops")
    # the CLI: one-line error, no entry file written
    path = lb.prediction_path(flops.predictions, "easy-1", 5, 0, load_task("easy-1").target[0])
    monkeypatch.setattr(lb, "MAX_PREDICTION_BYTES", 1_000_000)
    out = flops.predictions.parent / "never.json"
    with altered(path, None):
        res = CliRunner().invoke(app, ["submit", "--method", "mine", "--predictions", str(flops.predictions), "--out", str(out)])
    assert res.exit_code == 1 and "error:" in res.output and "missing 1 of 1215" in res.output
    assert not out.exists()


# --------------------------------------------------------------------------------- concurrency
@pytest.mark.slow
def test_concurrent_adds_with_real_processes(flops, board, tmp_path):
    """8 different entries and 8 copies of one entry, added by 16 simultaneous processes."""
    different = []
    for i in range(8):
        d = json.loads(flops.text)
        d["method"].update(name=f"flops copy {i}", code_ref=f"latbench_baselines.flops:FLOPsRegression#copy{i}")
        b = block(d, "medium-5", 10)  # results of their own: the same results under another name are refused
        dev = next(dv for dv, m in b["trials"][2]["devices"].items() if abs(m["spearman"]) < 0.9)
        b["trials"][2]["devices"][dev]["spearman"] -= 0.001 * (i + 1)
        recompute(b)
        p = tmp_path / f"different-{i}.json"
        p.write_text(json.dumps(d))
        different.append(p)
    same = tmp_path / "same.json"
    same.write_text(flops.text)
    env = {**os.environ, "LATBENCH_LEADERBOARD": str(board)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "latbench.cli", "leaderboard", "add", str(p)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in [*different, *[same] * 8]
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    done = [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]
    assert all(rc == 0 for rc, _, _ in done[:8]), done[:8]
    same_rc = [rc for rc, _, _ in done[8:]]
    assert same_rc.count(0) == 1 and same_rc.count(1) == 7, done[8:]
    for rc, _out, err in done[8:]:
        if rc:
            assert err.startswith("error: ") and "same.json: duplicate entry" in err and "Traceback" not in err
    entries = board / "entries"
    names = sorted(p.name for p in entries.iterdir())
    assert not [n for n in names if n.startswith(".")], f"temp files left: {names}"
    assert len(names) == 9
    stored = lb.list_entries()
    assert {e.method.name for e in stored} == {f"flops copy {i}" for i in range(8)} | {"flops"}
    assert all(f"{e.entry_id}.json" in names for e in stored)


# ------------------------------------------------------------------------------------- ranking
def test_rank_is_paired_over_task_trial_units(flops):
    """Every (task, trial) unit of the suite is one paired comparison: a method 0.02 below another on
    every unit is told apart (its bootstrap interval over tasks still overlaps); unrelated noise is not."""
    base = lb.Entry.model_validate_json(flops.text)
    close = shifted(flops.text, -0.02, "a bit worse")
    rows = lb.rank([close, base], "main", 10)
    assert [(r["method"], r["rank"], r["mean_rank"]) for r in rows] == [("flops", 1, 1.0), ("a bit worse", 2, 2.0)]
    assert rows[0]["ci"][0] <= rows[1]["ci"][1]  # the old rule (overlapping intervals) could not tell them apart
    assert rows[0]["p_next"] < 1e-6 and rows[1]["p_next"] is None
    table = lb.ranking([close, base], "main", 10)
    assert table.n_units == 18 * 5 and table.rejected and table.cliques == []
    # a chain: mid and low each 0.1 apart; with three methods on 90 units all three are told apart
    mid, low = shifted(flops.text, -0.1, "mid"), shifted(flops.text, -0.2, "low")
    rows = lb.rank([low, mid, base], "main", 10)
    assert [(r["method"], r["rank"]) for r in rows] == [("flops", 1), ("mid", 2), ("low", 3)]
    assert [r["spearman"] for r in rows] == sorted((r["spearman"] for r in rows), reverse=True)
    # a method that is better on some units and worse on others by the same amount: no evidence
    d = json.loads(flops.text)
    d["method"].update(name="noisy", code_ref="synthetic:noisy")
    for i, r in enumerate(d["results"]):
        for tr in r["trials"]:
            tr["mean"]["spearman"] += 0.01 if (i + tr["trial"]) % 2 else -0.01
    noisy = lb.Entry.model_validate(d)
    table = lb.ranking([noisy, base], "main", 10)
    assert not table.rejected and [r["rank"] for r in table.rows] == [1, 1] and table.cliques == [(0, 1)]
    assert lb.rank([base], "literature", 10) == []
    fresh = base.results[0].trials[0].devices
    assert all(set(m) == set(METRICS) for m in fresh.values())  # a new run holds every metric
    row = lb.rank([base], "main", 10)[0]
    assert all(row[m] is not None and np.isfinite(row[m]) for m in lb.BOARD_METRICS)


def test_schema_one_entries_validate_and_show_missing_metrics(flops, board):
    """An entry stored before the robust and NAS metrics (schema 1) stays valid, keeps its content hash
    (so its ledger record), and shows those metrics as missing; a schema-2 entry must have them all."""
    d = json.loads(flops.text)
    for r in d["results"]:
        for tr in r["trials"]:
            for name in ("devices",):
                tr[name] = {dev: {k: v for k, v in m.items() if k in LEGACY_METRICS} for dev, m in tr[name].items()}
            tr["mean"] = {k: v for k, v in tr["mean"].items() if k in LEGACY_METRICS}
            tr["worst"] = {k: v for k, v in tr["worst"].items() if k in LEGACY_METRICS}
        r["aggregate"] = {k: v for k, v in r["aggregate"].items() if k in LEGACY_METRICS}
    with pytest.raises(
        lb.LeaderboardError,
        match=r"metrics do not match entry schema 2 \(missing budget_p10_precision, .*mdape.*run the method again",
    ):
        lb.validate(lb.Entry.model_validate(d))
    d["schema_version"] = "1"
    old = lb.Entry.model_validate(d)
    lb.validate(old)
    assert json.loads(old.model_dump_json()) == d  # nothing added on load: stored files keep their content hash
    path = lb.store_entry(old)
    lb.record_verification(old, path.stem, by="leaderboard verify", folder=path.parent)
    assert [e.status for e in lb.list_entries()] == ["verified"]
    row = lb.rank(lb.list_entries(), "main", 20)[0]
    assert row["mdape"] is None and row["top5_recall"] is None and row["kendall"] is not None
    new = json.loads(flops.text)
    new["schema_version"] = "1"
    with pytest.raises(
        lb.LeaderboardError, match=r"metrics do not match entry schema 1 \(unexpected budget_p10_precision, .*mdape"
    ):
        lb.validate(lb.Entry.model_validate(new))


# -------------------------------------------------------------------------------------- render
def _render_board(flops, board) -> list[lb.Entry]:
    entries = [
        lb.Entry.model_validate_json(flops.text),
        shifted(flops.text, 0.05, "better | piped"),
        shifted(flops.text, -0.3, XSS),
    ]
    for e in entries:
        lb.store_entry(e)
    res = CliRunner().invoke(app, ["leaderboard", "render"])
    assert res.exit_code == 0, res.output
    return entries


def test_charts_keep_two_entries_of_one_name_apart_and_mark_unverified(flops, board):
    """An entry may reuse a name (a built-in's, with its code_ref): the charts must not merge it into
    the other entry's line, nor pass it off as verified."""
    entries = [lb.Entry.model_validate_json(flops.text), shifted(flops.text, 0.03, "flops")]
    for e in entries:
        lb.store_entry(e)
    res = CliRunner().invoke(app, ["leaderboard", "render"])
    assert res.exit_code == 0, res.output
    for figure in ("spearman-vs-k-main.svg", "cd-main-k10.svg"):
        svg = (board / "site" / figure).read_text()
        for e in entries:
            assert f"flops (unverified) [{e.entry_id}]" in svg, figure


def result_of(entry: lb.Entry, **changes):
    """The EvalResult an entry was made from (what `submit` scored), with ``changes``."""
    from latbench.eval.results import EvalResult

    fields = {
        "latbench_version": entry.latbench_version,
        "dataset_version": entry.dataset_version,
        "dataset_hash": entry.dataset_hash,
        "protocol_version": "1",
        "method": entry.method.name,
        "method_params": {},
        "results": entry.results,
        "seconds": entry.seconds,
    }
    return EvalResult(**{**fields, **changes})


def test_entries_built_in_code_refuse_invisible_text_too(flops):
    """`submit --contact`, `sweep --store -p note=...` build an Entry from models, not from JSON."""
    e = lb.Entry.model_validate_json(flops.text)
    with pytest.raises(ValidationError, match=r"method\.params\.note: holds an invisible character"):
        lb.entry_from_result(result_of(e, method_params={"note": "\u202egnp.exe"}), suite="main", code_ref=e.method.code_ref)
    with pytest.raises(ValidationError, match=r"method\.contact: holds an invisible character"):
        lb.entry_from_result(result_of(e), suite="main", code_ref="x:Y", contact="me\u200b@x")


def test_render_readme_and_page(flops, board):
    entries = _render_board(flops, board)
    readme = (board / "README.md").read_text()
    for k in (5, 10, 20):
        section = readme.split(f"## main suite, k = {k}\n")[1].split("\n## ")[0]
        rows = [ln for ln in section.splitlines() if re.match(r"\| \d+ \|", ln)]
        assert len(rows) == 3
        assert rows[0].startswith("| 1 | better \\| piped |") and "| flops |" in rows[1]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rows[2] and XSS not in readme
    assert json.loads((board / "entry.schema.json").read_text())["title"] == "Entry"

    page = (board / "site" / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I), "external asset reference"
    assert not re.search(r"<link|@import|url\(", page, re.I)
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the no-script fallback, html.escape'd
    assert page.count("<script") == 2  # the data blob and the page's own script, nothing injected
    blob = re.search(r'<script type="application/json" id="board-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(blob)
    assert {e["method"] for e in data["entries"]} == {e.method.name for e in entries}
    assert [t["id"] for t in data["suites"]["main"]["tasks"]] == [t.id for t in lb.suite_tasks("main")]
    assert {t["group"] for t in data["suites"]["main"]["tasks"]} == {"easy", "medium", "hard"}
    assert set(data["suites"]["main"]["spaces"]) == {"nb201", "fbnet", "ofa"}
    assert not list((board / "site").glob(".*")), "temp file left next to index.html"
    assert data["generated"] == max(e.date for e in entries)  # no clock: the same entries, the same page
    assert CliRunner().invoke(app, ["leaderboard", "render"]).exit_code == 0
    assert (board / "site" / "index.html").read_text() == page
    ranked = data["ranked"]["main"]["10"]
    table = lb.ranking(entries, "main", 10)
    assert ranked["order"] == [r["entry"] for r in table.rows] and ranked["n_units"] == 90
    assert [ranked["rows"][r["entry"]]["rank"] for r in table.rows] == [1, 2, 3]
    assert ranked["cliques"] == [] and data["nemenyi_q"]["3"] == pytest.approx(2.343, abs=1e-3)

    # the paired test, its diagram and the NAS table in the README, for every k
    for k in (5, 10, 20):
        section = readme.split(f"## main suite, k = {k}\n")[1].split("\n## ")[0]
        assert f"](site/{lb.cd_figure('main', k)})" in section
        assert "Friedman test over 90 (task, trial) units" in section and "Nemenyi critical difference" in section
        nas = [ln for ln in section.splitlines() if ln.startswith("| flops |")]
        assert len(nas) == 1 and re.fullmatch(r"\| flops \|( \d\.\d\d / \d\.\d\d \|){3} \d\.\d\d \| -?\d\.\d{3} \|", nas[0])
    # the charts `render` draws: one CD diagram per k and the score-vs-k chart, reproducible byte for byte
    figures = {p.name: p.read_bytes() for p in (board / "site").glob("*.svg")}
    assert set(figures) == {lb.score_figure("main"), *(lb.cd_figure("main", k) for k in (5, 10, 20))}
    cd = figures[lb.cd_figure("main", 10)].decode()
    assert "CD = " in cd and "(1.00) better | piped (unverified)" in cd and XSS not in cd
    assert html.escape(XSS, quote=False) + " (unverified) (3.00)" in cd
    res = CliRunner().invoke(app, ["leaderboard", "render"])
    assert res.exit_code == 0, res.output
    assert {p.name: p.read_bytes() for p in (board / "site").glob("*.svg")} == figures


def test_every_method_gets_its_own_colour_and_marker():
    from latbench.leaderboard.site import MARKERS, MPL_MARKERS, PALETTE, method_styles

    names = [f"method {i:02d}" for i in range(14)]
    styles = method_styles(reversed(names))
    assert len({s["color"] for s in styles.values()}) == 14 and len({s["marker"] for s in styles.values()}) == 14
    assert styles["method 00"] == {"color": PALETTE[0], "marker": MARKERS[0]}  # by sorted name, whatever the order
    many = method_styles(f"m{i:03d}" for i in range(200))
    assert len({(s["color"], s["marker"]) for s in many.values()}) == 200
    assert set(MPL_MARKERS) == set(MARKERS) and len(set(MPL_MARKERS.values())) == len(MARKERS)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.environ.get("LATBENCH_INSTALL_CHROMIUM") == "1" and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "chromium"], env=env, capture_output=True, timeout=1200).returncode:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
            subprocess.run(["apt-get", "install", "-y", "chromium"], env=env, capture_output=True, timeout=1200)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium not installed: apt-get install chromium (or set LATBENCH_INSTALL_CHROMIUM=1 when root)")
    return found


def _headless(binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *args,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-2000:]
    return res


@pytest.mark.slow
def test_page_labels_two_entries_of_one_name_apart(flops, board, tmp_path):
    binary = _chromium()
    entries = [lb.Entry.model_validate_json(flops.text), shifted(flops.text, 0.03, "flops")]
    for e in entries:
        lb.store_entry(e)
    assert CliRunner().invoke(app, ["leaderboard", "render"]).exit_code == 0
    dom = _headless(binary, tmp_path, "--dump-dom", (board / "site" / "index.html").as_uri()).stdout
    plot = dom.split('<div id="plot">')[1].split("</div>")[0]
    cd = dom.split('<div id="cd">')[1].split("</div>")[0]
    for e in entries:
        assert f"flops (unverified) [{e.entry_id}]" in plot and f"flops (unverified) [{e.entry_id}]" in cd


@pytest.mark.slow
def test_page_in_headless_chromium(flops, board, tmp_path):
    binary = _chromium()
    entries = _render_board(flops, board)
    url = (board / "site" / "index.html").as_uri()
    expected = [r["entry"] for r in lb.rank(entries, "main", 10)]  # best first

    dom = _headless(binary, tmp_path, "--dump-dom", url).stdout
    tbody = dom.split('<table id="ranking">')[1].split("</tbody>")[0]
    rows = re.findall(r'<tr data-entry="([^"]+)"', tbody)
    assert rows == expected  # built by the script: rank order, one row per entry
    assert re.findall(r'<tr data-entry="([^"]+)"', dom.split('<table id="nas">')[1].split("</table>")[0]) == expected
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</td>" in tbody and XSS not in dom
    plot = dom.split('<div id="plot">')[1].split("</div>")[0]
    assert plot.count("<polyline") == 3  # one line per method in the score-vs-k plot
    assert plot.count("(unverified)") >= 3 and plot.count('stroke-dasharray="6 4"') == 6  # lines and legend: dashed
    styles = re.findall(r'data-style="([^"]+)"', plot)
    assert len(styles) == 3 and len({s.split()[0] for s in styles}) == 3 and len({s.split()[1] for s in styles}) == 3
    cd = dom.split('<div id="cd">')[1].split("</div>")[0]
    assert 'aria-label="critical-difference diagram"' in cd and cd.count("<g data-method=") == 3
    assert "Friedman test over 90 (task, trial) units" in dom
    heat = dom.split('<table id="heatmap">')[1].split("</table>")[0]
    assert heat.count("<tr>") == 4 and heat.count("background:") == 3 * 18

    dom = _headless(binary, tmp_path, "--dump-dom", url + "#selftest").stdout
    found = re.search(r'<pre id="selftest">(.*?)</pre>', dom, re.S)
    assert found, "the page's self-test did not run"
    order = json.loads(html.unescape(found.group(1)))
    assert order["first"] == expected  # first click on Spearman: best first
    assert order["second"] == expected[::-1]  # second click reverses
    # the space filter recomputes the columns client-side over the remaining tasks
    keep = {t.id for t in lb.suite_tasks("main") if t.space != "nb201"}
    assert order["filtered"]["tasks"] == f"{len(keep)} of 18 tasks"
    want = {r["entry"]: f"{r['spearman']:.3f} \u00b1 {r['std']:.3f}" for r in lb.rank(entries, "main", 10, tasks=keep)}
    assert dict(order["filtered"]["rows"]) == want
    # ... and the paired test: the page's own Friedman / Nemenyi code gives latbench's numbers
    got, table = order["filtered"]["paired"], lb.ranking(entries, "main", 10, tasks=keep)
    assert got["order"] == [r["entry"] for r in table.rows] and got["rank"] == [r["rank"] for r in table.rows]
    assert got["mean_rank"] == pytest.approx([r["mean_rank"] for r in table.rows])
    assert got["p_next"][:-1] == pytest.approx([r["p_next"] for r in table.rows][:-1], abs=1e-5) and got["p_next"][-1] is None
    assert got["n_units"] == table.n_units == 5 * len(keep)
    assert got["statistic"] == pytest.approx(table.statistic) and got["pvalue"] == pytest.approx(table.pvalue, rel=1e-6)
    assert got["cd"] == pytest.approx(table.cd) and [tuple(c) for c in got["cliques"]] == table.cliques
    assert got["drawn_cliques"] == len(table.cliques) and got["testline"] == lb.paired_test_line(table)

    shot = tmp_path / "board.png"
    _headless(binary, tmp_path, f"--screenshot={shot}", "--window-size=1280,900", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


HOSTILE_NAMES = ["__NOSCRIPT__\\", "![x](https://evil.example/p.png)", "</script><script>alert(2)</script>", "__DATA__"]


@pytest.mark.slow
def test_page_with_hostile_names_still_renders_in_headless_chromium(flops, board, tmp_path):
    """Names that once broke the page's embedded JSON or became markup: the script still builds the
    ranking (its self-test runs), and each name shows as literal text."""
    binary = _chromium()
    entries = [lb.Entry.model_validate_json(flops.text)]
    entries += [shifted(flops.text, 0.01 * (i + 1), name) for i, name in enumerate(HOSTILE_NAMES)]
    for e in entries:
        lb.store_entry(e)
    res = CliRunner().invoke(app, ["leaderboard", "render"])
    assert res.exit_code == 0, res.output
    url = (board / "site" / "index.html").as_uri()
    expected = [r["entry"] for r in lb.rank(entries, "main", 10)]
    dom = _headless(binary, tmp_path, "--dump-dom", url).stdout
    tbody = dom.split('<table id="ranking">')[1].split("</tbody>")[0]
    assert re.findall(r'<tr data-entry="([^"]+)"', tbody) == expected
    tested = _headless(binary, tmp_path, "--dump-dom", url + "#selftest").stdout
    found = re.search(r'<pre id="selftest">(.*?)</pre>', tested, re.S)
    assert found and json.loads(html.unescape(found.group(1)))["first"] == expected
    for name in HOSTILE_NAMES:
        assert html.escape(name, quote=False) in tbody, name
    assert "<script>alert(2)</script>" not in dom
    readme = (board / "README.md").read_text()
    assert "![x](" not in readme and "<script>" not in readme


# -------------------------------------------------------------------------------------- verify
def test_verify_upgrade_restates_an_old_schema_entry(flops, board, tmp_path, monkeypatch):
    import latbench.cli.leaderboard as cli

    full = lb.load_entry(flops.path)
    fresh = result_of(full, seconds=1.5)
    monkeypatch.setattr(cli, "rerun", lambda entry, spec, timeout, **kw: fresh)  # flops' re-run: what `submit` scored
    old_file = tmp_path / "old.json"
    d = legacy_schema(json.loads(flops.text))
    d["method"]["contact"] = "someone@example.org"
    old_file.write_text(json.dumps(d))
    old = lb.add(old_file)
    tampered = json.loads(json.dumps(d))
    b = block(tampered, "medium-5", 10)
    dev = next(iter(b["trials"][2]["devices"]))
    b["trials"][2]["devices"][dev]["spearman"] -= 0.002
    recompute(b, LEGACY_METRICS)
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    bad = lb.add(tmp_path / "tampered.json")
    before = snapshot(board)

    # an entry that does not reproduce is not upgraded: nothing changes
    res = CliRunner().invoke(app, ["leaderboard", "verify", bad.stem, "--upgrade"])
    assert res.exit_code == 1 and "does not reproduce" in res.output and snapshot(board) == before

    res = CliRunner().invoke(app, ["leaderboard", "verify", old.stem, "--upgrade"])
    assert res.exit_code == 0, res.output
    assert not old.exists() and not (board / "verified" / old.name).exists()
    (new,) = [e for e in lb.list_entries() if e.entry_id != bad.stem]
    assert f"stored as {new.entry_id} (entry schema 2), {old.stem} removed" in res.output
    assert new.status == "verified" and new.schema_version == "2" and new.method.contact == "someone@example.org"
    assert {k for r in new.results for k in r.aggregate} == set(METRICS)
    legacy = {(r.task, r.shots): r.aggregate for r in lb.load_entry(old_file).results}
    assert all(r.aggregate[m] == legacy[(r.task, r.shots)][m] for r in new.results for m in LEGACY_METRICS)

    # an entry of the current schema: --upgrade only verifies it
    res = CliRunner().invoke(app, ["leaderboard", "verify", new.entry_id, "--upgrade"])
    assert res.exit_code == 0 and "stored as" not in res.output
    assert (board / "entries" / f"{new.entry_id}.json").exists()


@pytest.mark.slow
def test_verify_marks_verified_and_catches_tampering(flops, scored, board, tmp_path, monkeypatch):
    import latbench.cli.leaderboard as cli

    stored = lb.add(flops.path)
    runs = []
    real_rerun = cli.rerun  # the re-run in a child process

    def recording(entry, spec, timeout, **kw):
        result = real_rerun(entry, spec, timeout, **kw)
        runs.append(((spec, entry.suite, entry.method.params), result))
        return result

    monkeypatch.setattr(cli, "rerun", recording)
    res = CliRunner().invoke(app, ["leaderboard", "verify", stored.stem])
    assert res.exit_code == 0, res.output
    assert "verified (all metrics reproduce)" in res.output
    assert [call for call, _ in runs] == [("flops", "main", {})]  # a registered method re-runs as registered
    assert lb.load_entry(stored).status == "verified"
    assert not [p for p in stored.parent.iterdir() if p.name.startswith(".")]

    # The re-run is deterministic (just shown): later verifies reuse it instead of re-running the suite.
    def cached(entry, spec, timeout, **kw):
        assert (spec, entry.suite, entry.method.params) == runs[0][0]
        return runs[0][1]

    monkeypatch.setattr(cli, "rerun", cached)
    d = json.loads(flops.text)
    b = block(d, "medium-5", 10)
    dev = next(dv for dv, m in b["trials"][2]["devices"].items() if m["spearman"] > -0.99)
    b["trials"][2]["devices"][dev]["spearman"] -= 0.002
    recompute(b)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(d))
    tampered_path = lb.add(tampered)  # consistent numbers: validation alone cannot tell
    res = CliRunner().invoke(app, ["leaderboard", "verify", tampered_path.stem])
    assert res.exit_code == 1
    assert f"does not reproduce: medium-5 k=10 trial 2 {dev}: spearman" in res.output
    assert lb.load_entry(tampered_path).status == "unverified"

    # the same run's predictions, scored, are that run's results under another protocol label: a duplicate
    with pytest.raises(lb.LeaderboardError, match=r"duplicate entry: the same code_ref and results"):
        lb.add(scored)
    # alone on the board, an entry scored from predictions is verified by re-running its code_ref the same way
    lb.remove_entry(stored)
    pred_path = lb.add(scored)
    res = CliRunner().invoke(app, ["leaderboard", "verify", pred_path.stem])
    assert res.exit_code == 0, res.output
    assert lb.load_entry(pred_path).status == "verified"

    res = CliRunner().invoke(app, ["leaderboard", "verify", "no-such-entry"])
    assert res.exit_code == 1 and "cannot read" in res.output


@pytest.mark.slow
def test_verify_with_a_time_budget_resumes_and_verifies_once_every_unit_reran(flops, board):
    """An entry too slow to re-run at once: each ``verify --time-budget`` run keeps the units it
    re-ran in the user's latbench home and the next continues; verified only when all have re-run."""
    import re

    import latbench.cli.leaderboard as cli
    from latbench import paths

    stored = lb.add(flops.path)
    units = cli.verify_units_dir(stored.stem, lb.load_entry(stored))
    assert units.parent == paths.home() / "verify"
    res = CliRunner().invoke(app, ["leaderboard", "verify", stored.stem, "--time-budget", "0.02"])  # 1.2 s
    assert res.exit_code == 1
    m = re.search(r"time budget of 0.02 min spent: (\d+) of 90 units finished", res.output)
    assert m and 0 < int(m.group(1)) < 90, res.output
    assert "nothing recorded yet" in res.output
    assert lb.load_entry(stored).status == "unverified" and not (board / "verified").exists()
    kept = sorted(p for p in units.rglob("*") if p.is_file())
    assert kept, "the re-run units are kept for the next run"
    earlier = units.parent / f"{stored.stem}-{'0' * 16}"  # kept for an earlier content of this entry
    other = units.parent / f"{stored.stem}-{'0' * 16}-{'1' * 16}"  # another entry's, whose id extends this one
    for folder in (earlier, other):
        (folder / "unit").mkdir(parents=True)
        (folder / "unit" / "u.json").write_text("{}")
    moved = kept[0].with_name("trial9-0000000000000000.json")  # a unit no run today would load (not at its key)
    moved.write_bytes(kept[0].read_bytes())

    res = CliRunner().invoke(app, ["leaderboard", "verify", stored.stem, "--time-budget", "60", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert f"removed {earlier}: units of an earlier version of {stored.stem}" in res.output.replace("\n", "")
    assert not earlier.exists() and (other / "unit" / "u.json").exists()
    assert "1 kept unit(s) were computed by other code" in res.output.replace("\n", "")
    assert f"{m.group(1)} of 90 units already re-run" in res.output
    assert "verified (all metrics reproduce)" in res.output
    assert lb.load_entry(stored).status == "verified"
    assert not units.exists()  # a finished verify starts afresh next time

    res = CliRunner().invoke(app, ["leaderboard", "verify", stored.stem, "--time-budget", "0"])
    assert res.exit_code == 1 and "--time-budget must be > 0 minutes" in res.output


# ------------------------------------------------------------------------------------- example
def test_example_predictor_follows_the_contract(data, monkeypatch):
    from latbench.eval.checks import check_method
    from latbench.methods.registry import resolve

    monkeypatch.syspath_prepend(str(REPO))  # examples/ lives in the checkout, not the installed package
    cls = resolve("examples.my_predictor:ParamsRegression")
    check_method(cls, task="hard-3", shots=5)
    assert "latbench submit --method examples.my_predictor:ParamsRegression" in (REPO / "examples" / "README.md").read_text()


def test_entry_hash_covers_exactly_the_suites_data(data, monkeypatch):
    """Adding a device the suite does not use (a new measurement) keeps entries valid; changing a
    latency the suite reads does not."""
    import copy

    from latbench.data import store

    tasks = lb.suite_tasks("main")
    before = store.data_hash(tasks)
    info = copy.deepcopy(store.info())
    info["device_hashes"]["nb201"]["my-new-phone-bs1-fp32"] = "0" * 64
    with monkeypatch.context() as mp:
        mp.setattr(store, "info", lambda: info)
        assert store.data_hash(tasks) == before
        used = tasks[0].source[0]
        info["device_hashes"][tasks[0].space][used] = "1" * 64
        assert store.data_hash(tasks) != before
        # the literature suite's validation and target devices count too (help-nb201 is their only nb201 task)
        literature = lb.suite_tasks("literature")
        help_nb201 = next(t for t in literature if t.id == "help-nb201")
        for dev in (help_nb201.valid[0], help_nb201.target[0]):
            lit_before = store.data_hash(literature)
            info["device_hashes"]["nb201"][dev] = "2" * 64
            assert store.data_hash(literature) != lit_before, dev
        del info["device_hashes"]
        with pytest.raises(DataError, match="predates per-device hashes"):
            store.data_hash(tasks)


@pytest.mark.real_data
def test_committed_board_is_valid_and_rendered(data):
    """The repository's own board: every entry passes ``add``'s validation against the data built from
    the mirror (hash, task versions, completeness, seeds, recomputed means), one entry per method, and
    leaderboard/README.md is what ``render`` makes of the entries, so a data or task change that
    leaves the committed board stale fails CI."""
    folder = REPO / "leaderboard" / "entries"
    paths = sorted(folder.glob("*.json"))
    assert len(paths) >= len(BUILTIN), "the committed board lost entries"
    entries = [lb.load_entry(p) for p in paths]
    for path, entry in zip(paths, entries):
        try:
            lb.validate(entry)
        except lb.LeaderboardError as exc:
            pytest.fail(f"{path.name}: {exc}")
    keys = [(e.method.name, e.suite) for e in entries]
    assert len(set(keys)) == len(keys), keys  # one entry per (method, suite)
    main = {name for name, suite in keys if suite == "main"}
    assert set(BUILTIN) <= main, f"built-in baselines missing from the main-suite board: {sorted(set(BUILTIN) - main)}"
    assert lb.render_markdown(lb.list_entries(folder)) == (REPO / "leaderboard" / "README.md").read_text(), (
        "leaderboard/README.md is out of date: run `latbench leaderboard render`"
    )


def test_committed_docs_tables_and_charts_are_current():
    """docs/results.md's generated blocks are what ``render`` makes of the committed entries, and the
    committed critical-difference diagrams show every method at its current mean rank."""
    entries = lb.list_entries(REPO / "leaderboard" / "entries")
    doc = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    assert generated.update_results_doc(doc, entries) == doc, (
        "docs/results.md's board tables are out of date: run `latbench leaderboard render`"
    )
    for k in lb.SUITE_SHOTS:
        table = lb.ranking(entries, "main", k)
        svg = (REPO / "leaderboard" / "site" / lb.cd_figure("main", k)).read_text(encoding="utf-8")
        half = (len(table.rows) + 1) // 2  # the better half is labelled on the left
        for i, r in enumerate(table.rows):
            label = f"({r['mean_rank']:.2f}) {r['method']}" if i < half else f"{r['method']} ({r['mean_rank']:.2f})"
            assert html.escape(label, quote=False) in svg, (
                f"{lb.cd_figure('main', k)} is out of date: run `latbench leaderboard render`"
            )
        assert f"CD = {table.cd:.2f}" in svg
    for name in generated.RESULTS_BLOCKS:
        begin, end = generated.block_markers(name)
        with pytest.raises(lb.LeaderboardError, match=f"docs/results.md needs one generated block '{name}'"):
            generated.update_results_doc(doc.replace(end, ""), entries)


def _committed(name: str, suite: str = "main") -> lb.Entry:
    """The committed entry of method ``name`` on ``suite``."""
    entries = (lb.load_entry(p) for p in sorted((REPO / "leaderboard" / "entries").glob(f"{name}-*.json")))
    return next(e for e in entries if e.method.name == name and e.suite == suite)


def _renamed(entry: lb.Entry, name: str, **fields) -> lb.Entry:
    d = entry.model_dump()
    d["method"].update(name=name, code_ref=f"synthetic:{name}")
    return lb.Entry.model_validate({**d, **fields})


def test_results_page_explains_the_dash_only_while_a_suite_holds_an_older_schema_entry():
    flops, lookup = _committed("flops"), _committed("lookup")
    legend = "— : not in the stored entry, which is of an older entry schema"
    current = generated.results_blocks([flops, lookup])["main suite tables"]
    assert legend not in current and "Robust error and NAS utility at k = 20:" in current
    old = lb.Entry.model_validate(legacy_schema(_renamed(lookup, "old lookup").model_dump()))
    mixed = generated.results_blocks([flops, old])["main suite tables"]
    row = next(ln for ln in mixed.splitlines() if ln.startswith("| old lookup | — | — | "))  # MdAPE, MAPE⌊10 %⌋: new metrics
    assert legend in mixed and row.endswith(" | — / — | — | — |")  # plain MAPE is an old metric: shown


def test_results_blocks_per_suite_versions_and_missing_methods():
    """Every suite with entries gets its ranking and per-task tables, a suite without says so, the
    methods missing from a suite are listed from the entries, the versions are the entries' own, and
    names from entries reach the markdown only made inert."""
    flops, lookup = _committed("flops"), _committed("lookup")
    # lookup's results on seven main tasks, relabelled as the literature tasks (ranking reads only ids and numbers)
    relabel = dict(zip([t.id for t in lb.suite_tasks("main")], [t.id for t in lb.suite_tasks("literature")]))
    results = [{**r.model_dump(), "task": relabel[r.task]} for r in lookup.results if r.task in relabel]
    hostile = _renamed(lookup, f"a|b {XSS}", suite="literature", dataset_version="9.9+feedfacecafe", results=results)
    main_only = [flops, lookup]
    blocks = generated.results_blocks(main_only)
    assert set(blocks) == set(generated.RESULTS_BLOCKS)
    assert "No literature-suite entries on the board yet." in blocks["literature suite tables"]
    assert "not yet on the literature-suite board (2): flops, lookup." in blocks["literature suite tables"]
    assert "With an entry" not in blocks["main suite tables"]
    if flops.dataset_version == lookup.dataset_version:
        assert f"dataset version {flops.dataset_version} (2 entries)" in blocks["board versions"]
    else:
        assert (
            f"dataset version {flops.dataset_version} (1 entry), {lookup.dataset_version} (1 entry)" in blocks["board versions"]
        )
    assert "- **literature suite**: no entries yet." in blocks["board versions"]

    both = generated.results_blocks([*main_only, hostile])
    lit = both["literature suite tables"]
    row = next(ln for ln in lit.splitlines() if ln.startswith("| a"))
    assert row.startswith("| a\\|b &lt;script&gt;alert(1)&lt;/script&gt; | ") and XSS not in "".join(both.values())
    spearman = lb.ranking([hostile], "literature", 5).rows[0]["spearman"]
    assert f" | {spearman:.3f} | " in row and "k = 20: 1 method(s)" in lit
    assert "(2): flops, lookup." in lit and "(1): a\\|b &lt;script&gt;" in both["main suite tables"]
    assert "9.9+feedfacecafe (1 entry)" in both["board versions"].split("**literature suite**")[1]

    per_task = both["per-task tables"]
    lit_part = per_task.split("### literature suite")[1]
    assert lit_part.count("| task | a\\|b &lt;script&gt;") == len(lb.SUITE_SHOTS)
    task = hostile.results[0]
    cell = f"| {task.task} | **{task.aggregate['spearman']['mean']:.3f}** |"
    assert any(ln == cell for ln in lit_part.splitlines()), cell
    main_part = per_task.split("### main suite")[1].split("### literature suite")[0]
    assert main_part.count("| task | lookup | flops |") == len(lb.SUITE_SHOTS)  # board order: lookup ranks first
    assert len([ln for ln in main_part.splitlines() if re.match(r"\| (easy|medium|hard)-\d \|", ln)]) == 18 * 3


def test_render_writes_the_checkouts_generated_blocks_and_nothing_else(tmp_path, monkeypatch):
    """``render`` of the checkout's own board rewrites README's and docs/results.md's generated blocks
    (text around them untouched); a marker missing from either file fails before anything is written;
    any other board never touches them."""
    from latbench import paths
    from latbench.leaderboard import site

    root = tmp_path / "checkout"
    (root / "docs").mkdir(parents=True)
    (root / "leaderboard").mkdir()
    doc = "# Results\n\nhand-written\n\n" + "\n\n".join("\n".join(generated.block_markers(n)) for n in generated.RESULTS_BLOCKS)
    readme = "# README\n\n" + "\n".join(generated.block_markers(generated.README_BLOCK)) + "\n\ntail\n"
    (root / "docs" / "results.md").write_text(doc + "\n")
    (root / "README.md").write_text(readme.replace(generated.block_markers(generated.README_BLOCK)[1], ""))
    monkeypatch.setenv("LATBENCH_TASKS", str(REPO / "tasks"))
    monkeypatch.setattr(paths, "checkout_root", lambda: root)
    entries = [_committed("flops"), _committed("lookup")]
    with pytest.raises(lb.LeaderboardError, match="README.md needs one generated block"):
        site.render(entries, root / "leaderboard")
    assert not list((root / "leaderboard").iterdir()) and (root / "docs" / "results.md").read_text() == doc + "\n"

    (root / "README.md").write_text(readme)
    written = site.render(entries, root / "leaderboard")
    assert {root / "README.md", root / "docs" / "results.md"} <= set(written)
    new_readme, new_doc = (root / "README.md").read_text(), (root / "docs" / "results.md").read_text()
    assert new_readme.startswith("# README\n\n") and new_readme.endswith("\n\ntail\n") and "| 1 | lookup |" in new_readme
    assert "hand-written" in new_doc and "| lookup | " in new_doc and "No literature-suite entries" in new_doc
    assert (
        generated.update_results_doc(new_doc, entries) == new_doc and generated.update_readme(new_readme, entries) == new_readme
    )

    other = tmp_path / "elsewhere"
    site.render(entries, other)
    assert (root / "README.md").read_text() == new_readme and (root / "docs" / "results.md").read_text() == new_doc
