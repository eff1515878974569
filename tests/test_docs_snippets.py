"""Every Python block of the docs runs as written (page by page, in order, in a fresh interpreter on
the built data), except the fragments listed here, which show a shape rather than a program."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: (page, first line of the block): why it does not run alone
FRAGMENTS = {
    ("protocol.md", "method.fit(source, space, seed)  # source devices' latencies on the source sample"): "the three calls",
    (
        "writing-a-method.md",
        "method.fit(source, space, seed)  # source devices' latencies on the source sample",
    ): "the three calls",
    ("writing-a-method.md", "def adapt(self, device, oracle):"): "a method body",
    ("writing-a-method.md", "for epoch in range(self.epochs):"): "a loop inside fit",
    ("writing-a-method.md", "from latbench import parametrize_with_checks"): "imports the reader's own package",
    ("index.md", "import datasets"): "README's quick start, run by test_readme",
    ("index.md", "from latbench import Method, evaluate, load_task"): "README's quick start, run by test_readme",
}


def _blocks(page: Path) -> list[str]:
    """The page's ```python blocks (dedented: some sit inside a list item)."""
    return [textwrap.dedent(b) for b in re.findall(r"^[ ]*```python\n(.*?)^[ ]*```", page.read_text(), flags=re.S | re.M)]


def _runnable(page: Path) -> list[str]:
    return [b for b in _blocks(page) if (page.name, b.splitlines()[0].strip()) not in FRAGMENTS]


def test_every_fragment_listed_is_still_in_the_docs():
    found = {(p.name, b.splitlines()[0].strip()) for p in DOCS.rglob("*.md") for b in _blocks(p)}
    assert set(FRAGMENTS) <= found, set(FRAGMENTS) - found


@pytest.mark.parametrize("page", sorted({p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if _runnable(p)}))
def test_python_blocks_run_as_written(data, tmp_path, page):
    script = "\n\n".join(_runnable(DOCS / page))
    env = {**os.environ, "LATBENCH_HOME": str(data)}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{page}:\n{out.stderr[-3000:]}"
