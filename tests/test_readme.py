"""README: short, its set-up commands are the ones CI runs, its Python quick start runs verbatim, and
its board excerpt and chart are the committed board's.

``python tests/test_readme.py`` rewrites README's board block from ``leaderboard/entries/`` (after
``latbench leaderboard render``, which draws the chart README shows).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BOARD_BEGIN = "<!-- board top: generated from leaderboard/entries by `python tests/test_readme.py`; do not edit -->"
BOARD_END = "<!-- end of the board top -->"
BOARD_SHOTS, BOARD_ROWS = 10, 5
BOARD_COLUMNS = ("rank", "method", "mean rank", "Spearman", "95 % CI", "status")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def board_top(entries) -> str:
    """README's board block: the first rows of the main suite at k = BOARD_SHOTS, in the board's own cells."""
    from latbench.leaderboard import board as lb
    from latbench.text import md_text

    table = lb.ranking(entries, "main", BOARD_SHOTS)
    keep = [lb.RANK_COLUMNS.index(c) for c in BOARD_COLUMNS]
    lines = [BOARD_BEGIN, "", "| " + " | ".join(BOARD_COLUMNS) + " |", "|" + "---|" * len(BOARD_COLUMNS)]
    for r in table.rows[:BOARD_ROWS]:
        cells = lb.rank_cells(r)
        lines.append(
            "| " + " | ".join(md_text(cells[i]) if BOARD_COLUMNS[j] == "method" else cells[i] for j, i in enumerate(keep)) + " |"
        )
    more = len(table.rows) - BOARD_ROWS
    lines += ["", f"… and {more} more methods; {lb.paired_test_line(table)}" if more > 0 else lb.paired_test_line(table), ""]
    return "\n".join(lines + [BOARD_END])


def with_board_top(text: str, entries) -> str:
    begin, end = text.index(BOARD_BEGIN), text.index(BOARD_END)
    return text[:begin] + board_top(entries) + text[end + len(BOARD_END) :]


def _committed_entries():
    from latbench.leaderboard import board as lb

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
    assert README.count(BOARD_BEGIN) == README.count(BOARD_END) == 1
    assert with_board_top(README, _committed_entries()) == README, (
        "README's board block is out of date: run `python tests/test_readme.py`"
    )


def test_readme_chart_is_the_one_leaderboard_render_draws():
    from latbench.leaderboard import board as lb

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


if __name__ == "__main__":  # python tests/test_readme.py: refresh README's board block
    path = REPO / "README.md"
    path.write_text(with_board_top(path.read_text(), _committed_entries()))
    print(f"wrote the board block of {path}")
