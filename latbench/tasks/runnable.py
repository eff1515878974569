"""Which tasks the built dataset can run: every device a task names must be in its space's data.

A dataset built offline (the measured devices only) lacks the HELP devices, so most tasks cannot
run on it; ``latbench data info`` and ``latbench tasks list`` show which can.
"""

from __future__ import annotations

from latbench.data import store
from latbench.tasks.spec import TaskSpec


def missing_devices(task: TaskSpec, info: dict | None = None) -> list[str]:
    """The task's devices (source, validation, target) that the built dataset (``info``: its
    ``latbench.json``, default the built one) does not have."""
    info = store.info() if info is None else info
    have = set((info.get("spaces") or {}).get(task.space, {}).get("devices", []))
    return [d for d in (*task.source, *task.valid, *task.target) if d not in have]


def runnable(task: TaskSpec, info: dict | None = None) -> bool:
    """Whether every device of ``task`` is in the built dataset."""
    return not missing_devices(task, info)
