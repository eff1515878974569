"""Shared fixtures: the real HELP mirror, and one dataset built from it per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def mirror_path() -> Path:
    env = os.environ.get("LATBENCH_MIRROR")
    return Path(env).resolve() if env else (REPO.parent / "shared" / "sources").resolve()


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = mirror_path()
    if not (path / "help" / "MANIFEST.json").is_file():
        pytest.skip(f"no source mirror at {path} (set LATBENCH_MIRROR)")
    return path


@pytest.fixture(scope="session")
def built_home(tmp_path_factory, mirror) -> Path:
    """LATBENCH_HOME with the dataset built once from the mirror (the session's shared data)."""
    from latbench.tasks.dataset import build_dataset as build

    home = tmp_path_factory.mktemp("latbench_home")
    os.environ["LATBENCH_HOME"] = str(home)
    build(home / "dataset", mirror=mirror)
    return home


@pytest.fixture()
def data(built_home, monkeypatch):
    """Point latbench at the session dataset (and reset its caches around the test)."""
    from latbench.data import store

    monkeypatch.setenv("LATBENCH_HOME", str(built_home))
    store.clear_cache()
    yield built_home
    store.clear_cache()
