"""Where latbench keeps things, overridable by environment variables.

- ``LATBENCH_HOME``: data and download cache (default: the platform's user cache dir).
- ``LATBENCH_MIRROR``: a local folder laid out like the upstream sources (``<source>/MANIFEST.json``
  plus the upstream paths); when set, files are taken from there instead of downloaded.
- ``LATBENCH_TASKS``: the task files (default: the checkout's ``tasks/``, or the copy inside an
  installed wheel).
- ``LATBENCH_LEADERBOARD``: the leaderboard folder, also given by the leaderboard commands'
  ``--board`` option (default: the checkout's ``leaderboard/``; installed from a wheel, the
  platform's user data dir, e.g. ``~/.local/share/latbench/leaderboard``; never site-packages).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path

#: The board folder chosen by a leaderboard command's ``--board`` for the duration of that command
#: (set by :func:`board_folder`; a scoped value, so nothing leaks into the process environment).
_BOARD: contextvars.ContextVar[Path | None] = contextvars.ContextVar("latbench_board", default=None)


def home() -> Path:
    env = os.environ.get("LATBENCH_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("latbench"))


def data_dir() -> Path:
    """The built Hugging Face dataset repository: ``datasets.load_dataset(str(data_dir()), "nb201")``."""
    return home() / "dataset"


def download_dir() -> Path:
    return home() / "downloads"


def mirror() -> Path | None:
    env = os.environ.get("LATBENCH_MIRROR")
    return Path(env).expanduser().resolve() if env else None


def checkout_root() -> Path | None:
    """The source checkout this package runs from (an editable install), or None for a wheel."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "tasks").is_dir() and (root / "leaderboard").is_dir():
        return root
    return None


def tasks_dir() -> Path:
    env = os.environ.get("LATBENCH_TASKS")
    if env:
        return Path(env).expanduser().resolve()
    root = checkout_root()
    return root / "tasks" if root else Path(__file__).resolve().parent / "_tasks"


@contextlib.contextmanager
def board_folder(folder: Path) -> Iterator[Path]:
    """Within the ``with`` block, :func:`leaderboard_dir` is ``folder`` (the ``--board`` option)."""
    token = _BOARD.set(Path(folder).expanduser().resolve())
    try:
        yield _BOARD.get()
    finally:
        _BOARD.reset(token)


def leaderboard_dir() -> Path:
    chosen = _BOARD.get()
    if chosen is not None:
        return chosen
    env = os.environ.get("LATBENCH_LEADERBOARD")
    if env:
        return Path(env).expanduser().resolve()
    root = checkout_root()
    if root:
        return root / "leaderboard"
    import platformdirs

    return Path(platformdirs.user_data_dir("latbench")) / "leaderboard"
