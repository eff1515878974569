"""The result record of ``latbench eval``: everything needed to trust and compare a number.

One JSON file per run, validated by pydantic: package and dataset versions, the task version,
the method and its parameters, per-trial per-device metrics, aggregates (mean +- std over
trials of the per-trial mean over target devices) and wall times.

Schema 2 holds every metric of :data:`latbench.protocol.metrics.METRICS` (the robust errors and the
NAS metrics were added); schema 1 files hold only ``LEGACY_METRICS`` and still load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from latbench.io import write_text
from latbench.protocol.metrics import METRICS

SCHEMA_VERSION = "2"


class TrialResult(BaseModel):
    """One trial of one task at one k: per-device metrics, their mean and worst, what was measured."""

    model_config = ConfigDict(extra="forbid")
    trial: int
    seed: int
    devices: dict[str, dict[str, float]]
    mean: dict[str, float]
    worst: dict[str, float]
    measured: dict[str, list[int]]  # archs the method measured per target device
    seconds: dict[str, float]  # fit / adapt / predict


class TaskResult(BaseModel):
    """Every trial of one task at one k, and each metric's mean and std over the trials."""

    model_config = ConfigDict(extra="forbid")
    task: str
    task_version: int
    space: str
    difficulty: float
    shots: int
    protocol: str
    trials: list[TrialResult]
    aggregate: dict[str, dict[str, float]]  # metric -> {mean, std}

    @classmethod
    def from_trials(cls, task, shots: int, protocol: str, trials: list[TrialResult]) -> TaskResult:
        agg = {}
        for m in [m for m in METRICS if all(m in t.mean for t in trials)]:  # a schema-1 run has fewer
            vals = np.array([t.mean[m] for t in trials])
            agg[m] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=0))}
        return cls(
            task=task.id,
            task_version=task.version,
            space=task.space,
            difficulty=task.difficulty,
            shots=shots,
            protocol=protocol,
            trials=trials,
            aggregate=agg,
        )


class EvalResult(BaseModel):
    """What :func:`latbench.evaluate` returns: one :class:`TaskResult` per (task, k) in ``results``,
    with the versions of latbench, the data and the protocol it ran on. ``write``/``read`` keep it as
    JSON; ``latbench submit`` turns a suite's result into a leaderboard entry."""

    model_config = ConfigDict(extra="forbid")

    def __repr__(self) -> str:
        tasks = list(dict.fromkeys(r.task for r in self.results))
        shots = sorted({r.shots for r in self.results})
        trials = max((len(r.trials) for r in self.results), default=0)
        return f"EvalResult(method={self.method!r}, tasks={len(tasks)}, shots={shots}, trials={trials})"

    __str__ = __repr__  # print() too: pydantic's own str lists every field

    schema_version: str = SCHEMA_VERSION
    latbench_version: str
    dataset_version: str
    dataset_hash: str
    protocol_version: str
    method: str
    method_params: dict
    results: list[TaskResult]
    seconds: float

    def write(self, path: Path) -> None:
        """Atomic write: a crash never leaves a half-written results file."""
        write_text(path, self.model_dump_json(indent=1))

    @classmethod
    def read(cls, path: Path) -> EvalResult:
        return cls.model_validate(json.loads(Path(path).read_text()))


def jsonable_params(params: dict) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else repr(v)) for k, v in params.items()}
