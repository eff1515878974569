"""The few-shot protocol: what a method may see on source devices and how it measures targets.

A :class:`Trial` gives a method the source devices' latencies on the task's source sample, and for
each target device an :class:`Oracle` over the task's query pool with a budget of ``k`` distinct
archs. The evaluation set's latencies never leave the runner. All randomness (the default shot
choice, the method's seed) flows from ``(task.seed, trial index)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latbench.errors import OracleError
from latbench.tasks import TaskSpec

PROTOCOL_VERSION = "1"
DEFAULT_SHOTS = 10
DEFAULT_TRIALS = 5
SUITE_SHOTS = (5, 10, 20)


@dataclass(frozen=True)
class SourceData:
    """Latencies a method may train on: ``latency[d, j]`` = ms of ``arch_ids[j]`` on ``devices[d]``.

    ``valid_*`` are validation devices (model selection only; empty for most tasks).
    """

    space: str
    devices: tuple[str, ...]
    arch_ids: np.ndarray
    latency: np.ndarray
    valid_devices: tuple[str, ...] = ()
    valid_latency: np.ndarray | None = None

    def device(self, name: str) -> np.ndarray:
        return self.latency[self.devices.index(name)]


class Oracle:
    """Measures archs on one target device, only from the query pool and at most ``budget`` distinct.

    Re-measuring an arch is free. ``measured`` keeps what was revealed, in order.
    """

    def __init__(self, device: str, pool: np.ndarray, truth: np.ndarray, budget: int, rng: np.random.Generator):
        if budget > len(pool):
            raise OracleError(f"{device}: budget k={budget} exceeds the query pool of {len(pool)} archs")
        self.device = device
        self.pool = np.asarray(pool, dtype=np.int64)
        self.budget = int(budget)
        self._pool_set = set(self.pool.tolist())
        self._truth = truth
        self._default = np.sort(rng.choice(self.pool, self.budget, replace=False)) if budget else np.zeros(0, np.int64)
        self.measured: dict[int, float] = {}

    @property
    def remaining(self) -> int:
        return self.budget - len(self.measured)

    def default_choice(self) -> np.ndarray:
        """k random pool archs (fixed by the task seed and trial), for methods that don't choose."""
        return self._default.copy()

    def measure(self, ids) -> np.ndarray:
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        outside = [int(i) for i in ids if int(i) not in self._pool_set]
        if outside:
            raise OracleError(f"{self.device}: arch {outside[0]} is not in the query pool; a method may only measure pool archs")
        new = [int(i) for i in dict.fromkeys(ids.tolist()) if int(i) not in self.measured]
        if len(self.measured) + len(new) > self.budget:
            raise OracleError(
                f"{self.device}: measuring {len(new)} more arch(s) would exceed the budget of k={self.budget} "
                f"({len(self.measured)} already measured)"
            )
        for i in new:
            self.measured[i] = float(self._truth[i])
        return np.array([self.measured[int(i)] for i in ids])


@dataclass
class Trial:
    task: TaskSpec
    index: int
    shots: int
    seed: int
    source: SourceData
    oracles: dict[str, Oracle]
    eval_ids: np.ndarray


def trial_seed(task: TaskSpec, trial: int) -> int:
    return int(np.random.SeedSequence([task.seed, trial]).generate_state(1)[0] & 0x7FFFFFFF)


def make_trial(task: TaskSpec, trial: int, shots: int, table, *, source_archs: str = "sample") -> Trial:
    """Build trial ``trial`` of ``task`` from the space's :class:`LatencyTable` (truth stays there)."""
    task.check_devices(table.devices)
    task.check_archs(table.values.shape[1])
    if shots < 0:
        raise OracleError(f"shots must be >= 0, got {shots}")
    if shots > len(task.pools.query_pool):
        raise OracleError(f"task {task.id}: k={shots} is larger than the query pool ({len(task.pools.query_pool)} archs)")
    seed = trial_seed(task, trial)
    rng = np.random.default_rng(seed)
    if source_archs == "sample":
        src_ids = np.array(task.pools.source_sample, dtype=np.int64)
    elif source_archs == "all":
        src_ids = np.setdiff1d(np.arange(table.values.shape[1]), task.pools.eval)
    else:
        raise ValueError(f"source_archs must be 'sample' or 'all', got {source_archs!r}")
    source = SourceData(
        space=task.space, devices=task.source, arch_ids=src_ids, latency=table.rows(task.source)[:, src_ids],
        valid_devices=task.valid, valid_latency=table.rows(task.valid)[:, src_ids] if task.valid else None,
    )
    pool = np.array(task.pools.query_pool, dtype=np.int64)
    oracles = {d: Oracle(d, pool, table.device(d), shots, rng) for d in task.target}
    return Trial(task, trial, shots, seed, source, oracles, np.array(task.pools.eval, dtype=np.int64))
