"""Where latbench keeps things, overridable by environment variables.

- ``LATBENCH_HOME``: data and download cache (default: the platform's user cache dir).
- ``LATBENCH_MIRROR``: a local folder laid out like the upstream sources (``<source>/MANIFEST.json``
  plus the upstream paths); when set, files are taken from there instead of downloaded.
- ``LATBENCH_TASKS``: the task files (default: ``tasks/`` next to the package, i.e. the checkout).
- ``LATBENCH_LEADERBOARD``: the leaderboard folder (default: ``leaderboard/`` in the checkout).
"""

from __future__ import annotations

import os
from pathlib import Path


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


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def tasks_dir() -> Path:
    env = os.environ.get("LATBENCH_TASKS")
    return Path(env).expanduser().resolve() if env else repo_root() / "tasks"


def leaderboard_dir() -> Path:
    env = os.environ.get("LATBENCH_LEADERBOARD")
    return Path(env).expanduser().resolve() if env else repo_root() / "leaderboard"
