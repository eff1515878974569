"""README: short, its set-up commands are the ones CI runs, and its Python quick start runs verbatim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_is_short_and_opens_with_the_two_setup_commands():
    assert len(README.splitlines()) <= 150
    first, second = _blocks("bash")[:2]
    assert "latbench eval" in first and "-c constraints.txt" in first
    assert "pytest" in second and "-c constraints.txt" in second


def test_ci_runs_readmes_test_command_verbatim():
    command = _blocks("bash")[1].strip()
    assert command in (REPO / ".ci" / "run").read_text().splitlines()


def test_python_quick_start_runs_verbatim(data, tmp_path):
    """Every ```python block of README, run in order in a fresh interpreter on the built data."""
    script = "\n\n".join(_blocks("python"))
    assert "evaluate(" in script and "load_dataset(" in script
    env = {**os.environ, "LATBENCH_HOME": str(data)}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'mean'" in out.stdout  # the aggregate Spearman printed by the last line
