"""Shared fixtures: the HELP source mirror, and one dataset per test session.

The tests find the source mirror only through ``LATBENCH_MIRROR``. Without it the session dataset
is a synthetic one (``tests/synthetic.py``: HELP's layout, spaces, arch counts, reference ids and
device names, with made-up latencies), so the protocol, task, method, leaderboard and sweep tests
still run; tests that need the source files themselves (the ``mirror`` fixture) or assert numbers
only true of the real data (marked ``real_data``) are skipped, each with its reason.

    .venv/bin/python -m pytest -q                                        # no mirror: synthetic data
    .venv/bin/python -m pytest -q -m "not slow"                          # the fast subset
    LATBENCH_MIRROR=../shared/sources .venv/bin/python -m pytest -q      # everything (CI)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NO_MIRROR = "set LATBENCH_MIRROR to a source mirror (e.g. ../shared/sources)"


def mirror_path() -> Path | None:
    """The source mirror named by ``LATBENCH_MIRROR``, or None when it is unset."""
    env = os.environ.get("LATBENCH_MIRROR")
    return Path(env).expanduser().resolve() if env else None


def _checked_mirror() -> Path | None:
    path = mirror_path()
    if path is not None and not (path / "help" / "MANIFEST.json").is_file():
        # set but wrong: an error, not a skip, so a misconfigured CI does not pass by skipping
        raise pytest.UsageError(f"LATBENCH_MIRROR={os.environ['LATBENCH_MIRROR']}: no help/MANIFEST.json under {path}")
    return path


def pytest_configure(config):
    _checked_mirror()


def pytest_collection_modifyitems(config, items):
    """Without a mirror, tests marked ``real_data`` are skipped (before any fixture is built)."""
    if mirror_path() is not None:
        return
    reason = f"real_data: asserts numbers only true of the real HELP data (this run uses the synthetic dataset); {NO_MIRROR}"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("real_data"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The HELP source mirror (the files themselves); skips the test without ``LATBENCH_MIRROR``."""
    path = _checked_mirror()
    if path is None:
        pytest.skip(f"needs the HELP source files: {NO_MIRROR}")
    return path


@pytest.fixture(scope="session")
def synthetic_data() -> bool:
    """True when the session dataset is the synthetic one (no ``LATBENCH_MIRROR``)."""
    return mirror_path() is None


@pytest.fixture(scope="session")
def built_home(tmp_path_factory) -> Path:
    """LATBENCH_HOME with the session's dataset, built once: from the mirror when LATBENCH_MIRROR
    is set, else the synthetic dataset of ``tests/synthetic.py``."""
    home = tmp_path_factory.mktemp("latbench_home")
    os.environ["LATBENCH_HOME"] = str(home)
    path = _checked_mirror()
    if path is not None:
        from latbench.tasks.dataset import build_dataset

        build_dataset(home / "dataset", mirror=path)
    else:
        from synthetic import build_synthetic

        build_synthetic(home / "dataset")
    return home


@pytest.fixture()
def data(built_home, monkeypatch):
    """Point latbench at the session dataset (and reset its caches around the test)."""
    from latbench.data import store

    monkeypatch.setenv("LATBENCH_HOME", str(built_home))
    store.clear_cache()
    yield built_home
    store.clear_cache()


KERNEL_TASK_TARGET = "epyc-2c-torch-t1-bs1-fp32"
KERNEL_TASK_SOURCE = "epyc-2c-torch-t2-bs1-fp32"


@pytest.fixture()
def kernel_tasks(data, tmp_path, monkeypatch):
    """``measured-{nb201,fbnet}-kernels``: one eager-PyTorch device with kernel tables on each side.
    Their target's test-retest Spearman is below the official threshold, so they are user tasks,
    made as the docs make them (``latbench tasks create ... --allow-noisy``)."""
    from latbench.tasks import spec, user

    monkeypatch.setenv("LATBENCH_USER_TASKS", str(tmp_path / "user-tasks"))
    spec.clear_cache()
    for space in ("nb201", "fbnet"):
        user.create_task(f"measured-{space}-kernels", space, [KERNEL_TASK_TARGET], [KERNEL_TASK_SOURCE], allow_noisy=True)
    yield
    spec.clear_cache()
