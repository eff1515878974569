"""The pull-request flow of the public board: ``leaderboard add --check``, the CI that runs it.

- ``latbench leaderboard add --check ENTRY...`` validates without storing, and fails with one line on
  the first bad entry (the committed entries pass it on the real data);
- ``.ci/run`` validates every committed entry; ``.github/workflows/leaderboard.yml`` runs on pull
  requests that touch ``leaderboard/entries/`` and checks the entries they add with that command and
  with ``add`` on the base branch's board; ``.github/workflows/ci.yml`` runs ``.ci/run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from clirun import run_cli

REPO = Path(__file__).resolve().parents[1]
ENTRIES = sorted((REPO / "leaderboard" / "entries").glob("*.json"))


_invoke = run_cli


@pytest.mark.real_data
def test_committed_entries_pass_add_check_and_nothing_is_stored(data, tmp_path):
    board = tmp_path / "board"
    (board / "entries").mkdir(parents=True)
    res = _invoke("leaderboard", "--board", str(board), "add", "--check", *map(str, ENTRIES))
    assert res.exit_code == 0, res.output
    assert res.stdout.count("valid ") == len(ENTRIES)
    assert list((board / "entries").iterdir()) == []


def test_add_check_fails_on_the_first_bad_entry_with_one_line(data, tmp_path):
    entry = json.loads(ENTRIES[0].read_text())
    entry["dataset_hash"] = "0" * 64  # stale data: what add --check must refuse
    bad = tmp_path / "stale.json"
    bad.write_text(json.dumps(entry))
    board = tmp_path / "board"
    (board / "entries").mkdir(parents=True)
    res = _invoke("leaderboard", "--board", str(board), "add", "--check", str(bad), str(ENTRIES[0]))
    assert res.exit_code == 1
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}: dataset hash 000000000000")
    assert "valid" not in res.stdout and list((board / "entries").iterdir()) == []


def test_board_option_applies_to_that_command_only(tmp_path, monkeypatch):
    """``--board`` points one in-process command at a folder and leaves the process as it was:
    no ``LATBENCH_LEADERBOARD`` left behind for the next command (or test) to pick up."""
    import os

    from latbench import paths

    monkeypatch.delenv("LATBENCH_LEADERBOARD", raising=False)
    before = paths.leaderboard_dir()
    board = tmp_path / "board"
    (board / "entries").mkdir(parents=True)
    res = _invoke("leaderboard", "--board", str(board), "render")
    assert res.exit_code == 0, res.output
    assert (board / "README.md").is_file()  # the command wrote where --board said
    assert "LATBENCH_LEADERBOARD" not in os.environ
    assert paths.leaderboard_dir() == before != board.resolve()


def test_ci_validates_every_committed_entry():
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    check = [line for line in lines if "leaderboard add --check leaderboard/entries/*.json" in line]
    assert len(check) == 1 and "latbench data build" in check[0] and not check[0].lstrip().startswith("#")


def test_github_workflows_run_ci_and_check_submitted_entries():
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    steps = ci["jobs"]["ci"]["steps"]
    assert any(s.get("run") == ".ci/run" for s in steps)
    board = yaml.safe_load((REPO / ".github" / "workflows" / "leaderboard.yml").read_text())
    trigger = board[True]["pull_request"]["paths"]  # YAML 1.1 reads the key `on` as True
    assert "leaderboard/entries/**" in trigger
    runs = "\n".join(s.get("run", "") for s in board["jobs"]["check-entries"]["steps"])
    assert 'git worktree add --detach "$RUNNER_TEMP/validator" "$BASE"' in runs  # the base branch judges
    assert '-e "$RUNNER_TEMP/validator" -c "$RUNNER_TEMP/validator/constraints.txt"' in runs and 'latbench" data build' in runs
    assert "pip install -q -e . " not in runs  # never the pull request's own latbench
    assert 'if [ "$FROM_FORK" = "true" ]' in runs  # a fork's change to the ledger fails
    assert 'python -m venv "$RUNNER_TEMP/venv"' in runs and ".venv/bin/" not in runs  # no venv inside the PR's tree
    assert "--no-renames --diff-filter=DTUXB" in runs and "! -type f" in runs  # no deletion, type change or link
    assert 'latbench" leaderboard add --check' in runs and 'latbench" leaderboard --board "$board" add' in runs
    assert (REPO / ".github" / "scripts" / "fetch-mirror").stat().st_mode & 0o111  # executable
