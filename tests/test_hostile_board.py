"""Hostile input to the board (issue #18): it cannot be forged, and hostile files or arguments give a
one-line error (exit code != 0) with the board folder byte for byte as before.

- verified means re-run: a status written into an entry file (by hand, or left after an edit) is
  never believed; only the board's verification ledger, written by ``verify`` and ``baselines``, is;
- the code ``verify`` runs is explicit: registered methods as registered, anything else only with
  ``--allow-import MODULE``, never from the working directory, in a child process under a time limit;
  ``ENTRY_ID`` names a stored entry, never a path;
- duplicates ignore run times, a built-in's name is reserved for its own code, and the same results
  under another name are refused;
- deeply nested JSON, FIFOs, huge arch ids and wrong-typed hyperparameters are one-line errors.

One genuine ``flops`` entry of the main suite (~20 s) is shared by the module; every test has its own board.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli
from hostile import legacy_schema, snapshot

from latbench.leaderboard import board as lb
from latbench.protocol.metrics import HIGHER_IS_BETTER, METRICS

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ helpers
_cli = run_cli


def one_line_error(res, *needles: str, alone: bool = True) -> str:
    """The command failed with one ``error: ...`` line, the last one on stderr (``alone``: the only
    line there), holding every needle; no traceback."""
    assert res.exit_code not in (0, None), res.output
    lines = res.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    if alone:
        assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def genuine(built_home) -> str:
    """A genuine entry: `flops` run on the whole main suite under the official protocol (JSON text)."""
    from latbench.data import store
    from latbench.eval.runner import evaluate
    from latbench.methods.registry import code_ref, make_method

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATBENCH_HOME", str(built_home))
        store.clear_cache()
        result = evaluate(make_method("flops"), lb.suite_tasks("main"), shots=list(lb.SUITE_SHOTS), trials=lb.SUITE_TRIALS)
        text = lb.entry_from_result(result, suite="main", code_ref=code_ref("flops")).model_dump_json()
        store.clear_cache()
    return text


@pytest.fixture()
def board(data, tmp_path, monkeypatch) -> Path:
    """An empty board folder for this test (LATBENCH_LEADERBOARD)."""
    folder = tmp_path / "board"
    monkeypatch.setenv("LATBENCH_LEADERBOARD", str(folder))
    return folder


def entry(genuine: str, **method) -> lb.Entry:
    e = lb.Entry.model_validate_json(genuine)
    return e.model_copy(update={"method": e.method.model_copy(update=method)}) if method else e


def write(path: Path, e: lb.Entry | dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(e.model_dump_json() if isinstance(e, lb.Entry) else json.dumps(e))
    return path


def nudged(genuine: str, delta: float) -> dict:
    """The genuine entry with one device's Spearman moved by ``delta`` (consistent means): other results."""
    d = json.loads(genuine)
    b = next(r for r in d["results"] if r["task"] == "medium-5" and r["shots"] == 10)
    tr = b["trials"][2]
    dev = next(dv for dv, m in tr["devices"].items() if abs(m["spearman"]) < 0.9)
    tr["devices"][dev]["spearman"] += delta
    for m in METRICS:
        vals = [v[m] for v in tr["devices"].values()]
        tr["mean"][m] = float(np.mean(vals))
        tr["worst"][m] = float((min if HIGHER_IS_BETTER[m] else max)(vals))
    for m in METRICS:
        vals = np.array([t["mean"][m] for t in b["trials"]])
        b["aggregate"][m] = {"mean": float(vals.mean()), "std": float(vals.std())}
    return d


# ------------------------------------------------------------- verified means re-run (the ledger)
def test_hand_dropped_verified_entry_renders_unverified(genuine, board):
    e = entry(genuine).model_copy(update={"status": "verified"})
    path = write(board / "entries" / f"{e.entry_id}.json", e)
    assert lb.load_entry(path).status == "verified"  # what the file claims ...
    assert [x.status for x in lb.list_entries()] == ["unverified"]  # ... is not what the board believes
    res = _cli("leaderboard", "render")
    assert res.exit_code == 0, res.output + res.stderr
    readme = (board / "README.md").read_text()
    assert "| unverified |" in readme and "| verified |" not in readme
    page = (board / "site" / "index.html").read_text()
    assert '"status":"unverified"' in page and '"status":"verified"' not in page


def test_edited_verified_entry_loses_its_status(genuine, board):
    """A record vouches for one content: an edit anywhere (notes, one metric with consistent means) voids it."""
    e = entry(genuine).model_copy(update={"status": "verified"})
    path = lb.store_entry(e)
    lb.record_verification(e, path.stem, by="leaderboard verify", folder=path.parent)
    assert [x.status for x in lb.list_entries()] == ["verified"]
    original = path.read_text()
    for edited in (
        e.model_copy(update={"notes": "re-run on a faster machine"}).model_dump_json(),
        json.dumps({**nudged(genuine, -0.003), "status": "verified"}),
    ):
        path.write_text(edited)
        assert [x.status for x in lb.list_entries()] == ["unverified"]
    path.write_text(original)
    assert [x.status for x in lb.list_entries()] == ["verified"]


def test_only_the_verifying_commands_write_ledger_records(genuine, board):
    e = entry(genuine)
    path = lb.store_entry(e)
    with pytest.raises(ValueError, match="not a command that writes the verification ledger: 'leaderboard add'"):
        lb.record_verification(e, path.stem, by="leaderboard add", folder=path.parent)
    assert not (board / "verified").exists() and [x.status for x in lb.list_entries()] == ["unverified"]


def test_a_record_copied_to_another_entry_does_not_vouch_for_it(genuine, board):
    e = entry(genuine)
    path = lb.store_entry(e)
    record = lb.record_verification(e, path.stem, by="leaderboard verify", folder=path.parent)
    other = lb.Entry.model_validate(nudged(genuine, 0.004))
    other_path = write(path.parent / f"{other.entry_id}.json", other.model_copy(update={"status": "verified"}))
    (record.parent / f"{other_path.stem}.json").write_bytes(record.read_bytes())  # the same record, renamed
    status = {x.entry_id: x.status for x in lb.list_entries()}
    assert status == {e.entry_id: "verified", other.entry_id: "unverified"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_hostile_ledger_records_are_ignored_not_fatal(genuine, board):
    """A ledger record that is a FIFO, a folder, or not JSON: the entry is unverified; render neither hangs nor fails."""
    paths = []
    for i, make in enumerate((os.mkfifo, os.mkdir, lambda p: Path(p).write_text("{not json"))):
        e = lb.Entry.model_validate(nudged(genuine, 0.001 * (i + 1)))
        paths.append(lb.store_entry(e))
        (board / lb.LEDGER_DIR).mkdir(exist_ok=True)
        make(str(board / lb.LEDGER_DIR / f"{paths[-1].stem}.json"))
    assert [x.status for x in lb.list_entries()] == ["unverified"] * 3
    res = _cli("leaderboard", "render")
    assert res.exit_code == 0, res.output + res.stderr


def test_baselines_validates_like_add(board, monkeypatch):
    """Every path that stores an entry runs `validate` (baselines used to skip it)."""
    from latbench.tasks.spec import select

    monkeypatch.setattr(lb, "suite_tasks", lambda suite: select("easy-1"))

    def refuse(e):
        raise lb.LeaderboardError(f"refused by validate: {e.method.name}")

    monkeypatch.setattr(lb, "validate", refuse)
    res = _cli("leaderboard", "baselines", "--method", "flops")
    one_line_error(res, "refused by validate: flops", alone=False)  # after the sweep's progress lines
    assert snapshot(board) == {}


# ------------------------------------------------------------------------- duplicates, identity
def test_resubmission_with_other_run_times_is_a_duplicate(genuine, board, tmp_path):
    lb.store_entry(entry(genuine))
    d = json.loads(genuine)
    d["seconds"] += 12.5
    for r in d["results"]:
        for t in r["trials"]:
            t["seconds"] = {k: v * 1.7 + 0.01 for k, v in t["seconds"].items()}
    again = write(tmp_path / "again.json", d)
    assert lb.load_entry(again).entry_id != entry(genuine).entry_id  # the old check hashed the times: it let this in
    before = snapshot(board)
    one_line_error(_cli("leaderboard", "add", again), "duplicate entry: the same code_ref and results are already on the board")
    assert snapshot(board) == before


@pytest.mark.parametrize(
    "name, code_ref",
    [
        ("my method", "mypkg.mine:Mine"),
        ("flops", "mypkg.mine:FLOPsRegression"),
        ("FLOPs v2", "latbench_baselines.flops:FLOPsRegression#v2"),
        ("fIops", "mypkg.mine:Mine"),
    ],
    ids=["other-name-and-code", "same-name-other-code", "other-name-similar-code", "look-alike-name"],
)
def test_someone_elses_results_under_another_name_are_refused(genuine, board, tmp_path, name, code_ref):
    lb.store_entry(entry(genuine))
    copy = write(tmp_path / "copy.json", entry(genuine, name=name, code_ref=code_ref))
    before = snapshot(board)
    res = _cli("leaderboard", "add", copy)
    if name in ("flops", "fIops"):
        one_line_error(res, f"method name {name!r} is reserved")  # identity is checked first
    else:
        one_line_error(res, "duplicate results:", "holds these results")
    assert snapshot(board) == before


def test_a_linked_entry_file_is_refused(genuine, board, tmp_path):
    outside = write(tmp_path / "elsewhere.json", entry(genuine))
    (board / "entries").mkdir(parents=True)
    (board / "entries" / f"{entry(genuine).entry_id}.json").symlink_to(outside)
    for args in (("render",), ("compare", "flops")):
        one_line_error(_cli("leaderboard", *args), "a link; a board's entries are plain files")


def test_render_refuses_a_folder_that_is_no_board(tmp_path):
    missing = tmp_path / "mistyped-board"
    one_line_error(_cli("leaderboard", "--board", missing, "render"), f"no board at {missing}: it has no entries/ folder")
    assert not missing.exists()


def test_adding_several_files_stores_all_or_none(genuine, board, tmp_path):
    assert not board.exists()  # made by the call that stores, removed by one that rolls back
    good = write(tmp_path / "good.json", entry(genuine))
    bad = write(tmp_path / "bad.json", {**json.loads(genuine), "trials": 4})
    twin = write(tmp_path / "twin.json", entry(genuine, name="twin", code_ref="twin.mod:Twin"))
    before = snapshot(board)
    one_line_error(_cli("leaderboard", "add", good, bad), f"{bad}: ")  # validated before anything is stored
    assert snapshot(board) == before
    one_line_error(_cli("leaderboard", "add", good, twin), f"{twin}: duplicate results", "the 1 stored before it were removed")
    assert snapshot(board) == before and not board.exists()
    res = _cli("leaderboard", "add", good)
    assert res.exit_code == 0 and len(list((board / "entries").glob("*.json"))) == 1


@pytest.mark.parametrize(
    "code_ref, message",
    [
        ("latbench_baselines.flops:FLOPsRegression", r"duplicate entry: the same code_ref and results are already"),
        ("mynet.model:MyNet", r"duplicate results: .* holds these results \(every per-device metric"),
    ],
    ids=["built-in-code-ref", "own-code-ref"],
)
def test_someone_elses_results_nudged_below_verifys_tolerance_are_refused(genuine, board, code_ref, message):
    """Moving every number by 1e-12 changes the fingerprint but not what verify would accept."""
    lb.store_entry(entry(genuine))
    d = json.loads(entry(genuine, name="MyNet 9000", code_ref=code_ref).model_dump_json())
    for r in d["results"]:
        for t in r["trials"]:
            for metrics in (*t["devices"].values(), t["mean"]):
                metrics["spearman"] = metrics["spearman"] - 1e-12
    relabelled = lb.Entry.model_validate(d)
    assert lb.results_fingerprint(relabelled) != lb.results_fingerprint(entry(genuine))
    before = snapshot(board)
    with pytest.raises(lb.LeaderboardError, match=message):
        lb.store_entry(relabelled)
    assert snapshot(board) == before
    assert not lb.same_results(lb.Entry.model_validate(nudged(genuine, 1e-3)), entry(genuine))  # a real difference is not


def _relabel_protocol(d):
    d["protocol"] = lb.PREDICTIONS_PROTOCOL
    for r in d["results"]:
        r["protocol"] = lb.PREDICTIONS_PROTOCOL


def _downgrade_schema(d):
    d.update(legacy_schema(d))


def _nudge_large_values(d):
    """Every value over 1000 (MAPE on near-zero latencies) moved by 1.5e-6 relative: more than verify's
    1e-6, but a re-run off by float noise can sit between the two, so both entries would verify."""
    for r in d["results"]:
        for t in r["trials"]:
            for metrics in (*t["devices"].values(), t["mean"]):
                for m, v in metrics.items():
                    if abs(v) > 1000:
                        metrics[m] = v * (1 + 1.5e-6)


@pytest.mark.parametrize("change", [_relabel_protocol, _downgrade_schema, _nudge_large_values])
def test_the_same_results_under_another_protocol_label_schema_or_within_tolerance_are_duplicates(genuine, change):
    d = json.loads(entry(genuine, name="copy", code_ref="copy.mod:Copy").model_dump_json())
    change(d)
    assert lb.same_results(lb.Entry.model_validate(d), entry(genuine))


@pytest.mark.parametrize(
    "name, code_ref",
    [
        ("flops", "mypkg.fabricated:FLOPsRegression"),
        ("FLOPS", "mypkg.fabricated:Anything"),
        ("Opwise Lasso", "mypkg.fabricated:OpwiseLasso"),
        ("opwise-lasso", "latbench_baselines.flops:FLOPsRegression"),
        ("flops", "baselines.opwise:OpwiseLasso"),
    ],
    ids=["flops-other-code", "case-variant", "slug-variant", "another-builtins-code", "old-path-of-another-builtin"],
)
def test_builtin_names_are_reserved_for_their_code(genuine, board, tmp_path, name, code_ref):
    """Fabricated results under a built-in's name: refused by `add` (and by every path through `validate`)."""
    fake = write(
        tmp_path / "fake.json",
        lb.Entry.model_validate(nudged(genuine, -0.002)).model_copy(
            update={"method": lb.MethodInfo(name=name, code_ref=code_ref)}
        ),
    )
    one_line_error(_cli("leaderboard", "add", fake), f"method name {name!r} is reserved for latbench's built-in")
    assert snapshot(board) == {}


def test_builtin_name_with_its_pre_rename_module_path_is_accepted(genuine, board):
    """The committed entries name their code `baselines.<mod>:<Class>` (the package before the rename)."""
    lb.validate(entry(genuine, code_ref="baselines.flops:FLOPsRegression"))
    assert lb.verify_spec(entry(genuine, code_ref="baselines.flops:FLOPsRegression")) == "flops"


# --------------------------------------------------------------------------------------- verify
@pytest.mark.parametrize(
    "entry_id", ["../../outside-entry", "../outside", "/tmp/outside-entry", "sub/dir", "..", "a..b", "x\\..\\y"]
)
def test_verify_takes_an_entry_id_never_a_path(genuine, board, tmp_path, entry_id):
    write(tmp_path / "outside-entry.json", entry(genuine))  # what ../../outside-entry would reach
    lb.store_entry(entry(genuine))
    before = snapshot(board)
    one_line_error(_cli("leaderboard", "verify", entry_id), "is not an entry id")
    assert snapshot(board) == before


def test_verify_refuses_a_symlink_in_entries(genuine, board, tmp_path):
    outside = write(tmp_path / "outside.json", entry(genuine))
    (board / "entries").mkdir(parents=True)
    (board / "entries" / "linked.json").symlink_to(outside)
    before = snapshot(board)
    one_line_error(_cli("leaderboard", "verify", "linked"), "not a regular file")
    assert snapshot(board) == before


def test_verify_refuses_a_builtin_name_on_other_code(genuine, board):
    """Stored behind add's back: verify used to run the registered `flops` (same class name) and mark it verified."""
    path = lb.store_entry(entry(genuine, code_ref="evil.payload:FLOPsRegression"))
    before = snapshot(board)
    one_line_error(_cli("leaderboard", "verify", path.stem), "method name 'flops' is reserved")
    assert snapshot(board) == before


EVIL = """import pathlib
pathlib.Path({marker!r}).write_text("imported")


class Evil:  # not a latbench Method: resolve() refuses it right after the import
    pass
"""


@pytest.fixture()
def evil(genuine, board, tmp_path, monkeypatch):
    """An entry whose code_ref is `evilmod:Evil`, a module in the working directory that leaves a marker when imported."""
    marker = tmp_path / "imported.txt"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "evilmod.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.chdir(cwd)
    path = lb.store_entry(entry(genuine, name="evil", code_ref="evilmod:Evil"))
    return path, marker, cwd


def test_verify_needs_allow_import_for_unregistered_code(evil, board):
    path, marker, _ = evil
    before = snapshot(board)
    one_line_error(_cli("leaderboard", "verify", path.stem), "is not a registered method", "--allow-import evilmod")
    assert not marker.exists() and snapshot(board) == before


def test_verify_never_imports_from_the_working_directory(evil, board):
    """Even allowed, `evilmod` in the working directory is not importable by verify's re-run."""
    path, marker, _ = evil
    before = snapshot(board)
    res = _cli("leaderboard", "verify", path.stem, "--allow-import", "evilmod")
    assert "warning:" in res.stderr and "evilmod:Evil is not a registered method" in " ".join(res.stderr.split())
    one_line_error(res, "the re-run of evilmod:Evil failed", "cannot load method", "nothing changed", alone=False)
    assert not marker.exists() and snapshot(board) == before


def test_verify_imports_allowed_code_only_from_where_the_user_put_it(evil, board, monkeypatch):
    """With --allow-import and the module on PYTHONPATH (the user's explicit choice) the module is imported;
    it is no Method, so the re-run fails with one line and nothing changes."""
    path, marker, cwd = evil
    monkeypatch.setenv("PYTHONPATH", str(cwd))
    before = snapshot(board)
    res = _cli("leaderboard", "verify", path.stem, "--allow-import", "evilmod")
    one_line_error(res, "is not a latbench.Method subclass", "nothing changed", alone=False)
    assert marker.exists() and snapshot(board) == before


PEEKER = """import numpy as np
from latbench import Method


class Peeker(Method):
    \"\"\"Measures k archs, then scales FLOPs to the whole pool's latencies read from the oracle's private state.\"\"\"

    def adapt(self, device, oracle):
        oracle.measure(oracle.default_choice())
        ids = np.array(sorted(oracle._pool_latency))
        y = np.array([oracle._pool_latency[i] for i in ids])
        self.scale_ = getattr(self, "scale_", {{}})
        self.scale_[device] = float(np.median(y / self.space_.flops(ids)))
        return self

    def predict(self, device, arch_ids):
        return self.scale_[device] * self.space_.flops(arch_ids)
"""


def test_verify_runs_the_contract_checks_and_refuses_a_method_that_peeks(genuine, board, tmp_path, monkeypatch):
    """Its trace shows k archs, so nothing in the entry can tell; the contract checks that verify runs
    first find that its predictions move with latencies it never measured."""
    (tmp_path / "peekmod.py").write_text(PEEKER.format())
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    path = lb.store_entry(entry(genuine, name="peek", code_ref="peekmod:Peeker"))
    before = snapshot(board)
    res = _cli("leaderboard", "verify", path.stem, "--allow-import", "peekmod")
    assert "contract checks of peekmod:Peeker on easy-1 at k = 5" in " ".join(res.stderr.split())
    one_line_error(res, "Peeker fails check_no_target_truth_access", "never measured change", "nothing changed", alone=False)
    assert snapshot(board) == before


def test_verify_times_out_with_one_line_and_changes_nothing(genuine, board):
    path = lb.store_entry(entry(genuine))
    before = snapshot(board)
    res = _cli("leaderboard", "verify", path.stem, "--timeout", "0.005")  # 0.3 s: the child cannot even load the data
    one_line_error(res, "did not finish within 0.005 min (--timeout); it was stopped and nothing changed", alone=False)
    assert snapshot(board) == before
    one_line_error(_cli("leaderboard", "verify", path.stem, "--timeout", "0"), "--timeout must be > 0 minutes")


# ----------------------------------------------------------------------- hostile files and values
def _nested_params(genuine, depth):
    d = json.loads(genuine)
    nested: object = 1
    for _ in range(depth):
        nested = {"a": nested}
    d["method"]["params"] = {"x": nested}
    return json.dumps(d).encode()


@pytest.mark.parametrize(
    "raw, message",
    [
        (lambda g: b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
        (lambda g: b'{"method": ' * 50_000 + b"1" + b"}" * 50_000, "JSON nested too deeply"),
        (lambda g: _nested_params(g, 60), "JSON nested deeper than 32 levels"),
    ],
    ids=["list-100000-deep", "object-50000-deep", "params-60-deep"],
)
def test_deeply_nested_entry(genuine, board, tmp_path, raw, message):
    path = tmp_path / "deep.json"
    path.write_bytes(raw(genuine))
    one_line_error(_cli("leaderboard", "add", path), str(path), message)
    assert snapshot(board) == {}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_add_refuses_a_fifo_without_blocking(data, board, tmp_path):
    """`leaderboard add` on a FIFO used to block forever in open(): a real process, so a hang fails by timeout."""
    fifo = tmp_path / "entry.json"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "latbench.cli", "leaderboard", "add", str(fifo)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {fifo}: a FIFO; an entry must be a regular file", proc.stderr
    assert snapshot(board) == {}


def test_add_refuses_a_directory(data, board, tmp_path):
    one_line_error(_cli("leaderboard", "add", tmp_path), "a directory; an entry must be a regular file")
    assert snapshot(board) == {}


@pytest.mark.parametrize(
    "arch_id, message",
    [
        ("99999999999999999999999", "is too large to be an arch id"),
        ("9" * 5000, "is too large to be an arch id"),  # int() of it would raise ValueError (digit limit)
        ("9223372036854775808", "is too large to be an arch id"),  # int64 max + 1
    ],
    ids=["23-digits", "5000-digits", "int64-overflow"],
)
def test_prediction_csv_with_a_huge_arch_id(data, tmp_path, arch_id, message):
    from latbench.tasks.spec import load_task

    ids = list(load_task("easy-1").pools.eval)
    path = tmp_path / "pred.csv"
    rows = [f"{i},1.5" for i in ids]
    rows[7] = f"{arch_id},1.5"
    path.write_text("arch_id,latency_ms\n" + "\n".join(rows) + "\n")
    with pytest.raises(lb.LeaderboardError, match=message) as e:
        lb.read_prediction_csv(path, ids)
    assert f"{path}:9:" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "opwise-lasso", "-p", "alpha=abc"], "opwise-lasso.fit() raised InvalidParameterError"),
        (["-m", "mlp-finetune", "-p", "hidden_units=abc"], "mlp-finetune.fit() raised ValueError"),
        (["-m", "opwise-rf", "-p", 'n_estimators={"a":1}'], "opwise-rf.fit() raised InvalidParameterError"),
        (["-m", "mlp-finetune", "-p", "epochs=-3"], "parameter epochs=-3 must be a finite number >= 0"),
        (["-m", "opwise-lasso", "-p", "alpha=-1e-4"], "parameter alpha=-0.0001 must be a finite number >= 0"),
        (["-m", "flops", "--source-archs", "bogus"], "--source-archs must be 'sample' or 'all', got 'bogus'"),
        (["-m", "flops", "--protocol", "bogus"], "--protocol must be one of official, help-paper, nasflat-paper, got 'bogus'"),
        (["-m", "flops", "-k", "-1"], "--shots must be distinct ints >= 0, got [-1, 5]"),
    ],
    ids=[
        "alpha-abc",
        "hidden-units-abc",
        "n-estimators-dict",
        "epochs-negative",
        "alpha-negative",
        "source-archs-bogus",
        "protocol-bogus",
        "shots-negative",
    ],
)
def test_eval_bad_values_are_one_line_errors(data, tmp_path, args, message):
    out = tmp_path / "res.json"
    res = _cli("eval", *args, "-t", "easy-1", "-k", "5", "--trials", "1", "--out", out)
    one_line_error(res, message)
    assert not out.exists()


def test_method_errors_keep_their_traceback_for_debugging(data, monkeypatch):
    monkeypatch.setenv("LATBENCH_DEBUG", "1")
    res = _cli("eval", "-m", "opwise-lasso", "-p", "alpha=abc", "-t", "easy-1", "-k", "5", "--trials", "1")
    assert res.exit_code == 1
    assert "Traceback" in res.stderr and "InvalidParameterError" in res.stderr and "in _call" in res.stderr
    assert (
        res.stderr.strip()
        .splitlines()[-1]
        .startswith("error: method 'opwise-lasso' on task easy-1 trial 0 failed: opwise-lasso.fit() raised InvalidParameterError")
    )


# -------------------------------------------------------------------------- the committed board
def test_committed_board_status_is_what_the_ledger_says():
    """An entry of the repository's board is verified exactly when the ledger holds a record of a
    fresh re-run with its content; the cheap built-ins have one (re-run by `leaderboard verify`)."""
    folder = REPO / "leaderboard" / "entries"
    entries = lb.list_entries(folder)
    assert len(entries) >= 14
    for e in entries:
        record = lb.verification(e.entry_id, folder)
        assert e.status == ("verified" if record else "unverified"), e.entry_id
        if record:
            assert record["by"] in lb.LEDGER_WRITERS
            assert record["entry"] == e.entry_id
    verified = {e.method.name for e in entries if e.status == "verified"}
    assert {"flops", "flops-params", "lookup", "opwise-lasso"} <= verified
    assert lb.render_markdown(entries) == (REPO / "leaderboard" / "README.md").read_text()
