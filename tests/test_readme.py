"""README: short, its set-up commands are the ones CI runs, its Python quick start runs verbatim, and
its board excerpt and chart are the committed board's (``latbench leaderboard render`` writes both).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from latbench.leaderboard import board as lb
from latbench.leaderboard import generated

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
STALE = "README's board block is out of date: run `latbench leaderboard render`"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _committed_entries():
    return lb.list_entries(REPO / "leaderboard" / "entries")


def test_readme_is_short_and_opens_with_the_two_setup_commands():
    assert len(README.splitlines()) <= 150
    first, second = _blocks("bash")[:2]
    assert "latbench eval" in first and "-c constraints.txt" in first
    assert "pytest" in second and "-c constraints.txt" in second


def test_ci_runs_readmes_test_command_verbatim():
    command = _blocks("bash")[1].strip()
    assert command in (REPO / ".ci" / "run").read_text().splitlines()


def test_readme_board_block_is_the_committed_boards_top():
    entries = _committed_entries()
    assert generated.update_readme(README, entries) == README, STALE
    block = README.split(generated.block_markers(generated.README_BLOCK)[0])[1]
    rows = [ln for ln in block.splitlines() if re.match(r"\| \d+ \|", ln)]
    top = generated.rankings(entries)["main"][generated.README_SHOTS].rows
    assert len(rows) == min(generated.README_ROWS, len(top)) and f"| {top[0]['method']} |" in rows[0]


def test_a_stale_or_missing_board_block_is_caught():
    """What the currency test compares: a block edited by hand (or left behind by a board change) is
    rewritten, and a README without the block's markers is refused."""
    entries = _committed_entries()
    begin, end = generated.block_markers(generated.README_BLOCK)
    first = README.index(begin) + len(begin)
    stale = (
        README[:first] + "\n\n| 1 | flops | 1.00 | 0.999 ± 0.000 | [0.999, 0.999] | verified |\n\n" + README[README.index(end) :]
    )
    assert stale != README and generated.update_readme(stale, entries) == README
    with pytest.raises(lb.LeaderboardError, match="README.md needs one generated block 'board top'"):
        generated.update_readme(README.replace(end, ""), entries)
    with pytest.raises(lb.LeaderboardError, match="board top"):
        generated.update_readme(README + begin + "\n" + end + "\n", entries)


def test_readme_chart_is_the_one_leaderboard_render_draws():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images == [f"leaderboard/site/{lb.score_figure('main')}"]
    assert (REPO / images[0]).is_file() and (REPO / images[0]).stat().st_size > 1000


def test_python_quick_start_runs_verbatim(data, tmp_path):
    """Every ```python block of README, run in order in a fresh interpreter on the built data."""
    script = "\n\n".join(_blocks("python"))
    assert "evaluate(" in script and "load_dataset(" in script
    env = {**os.environ, "LATBENCH_HOME": str(data)}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'mean'" in out.stdout  # the aggregate Spearman printed by the last line
