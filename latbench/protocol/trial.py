"""The few-shot protocol: what a method may see on source devices and how it measures targets.

A :class:`Trial` gives a method the source devices' latencies on the task's source sample, and for
each target device an :class:`Oracle` over the task's query pool with a budget of ``k`` distinct
archs. The evaluation set's latencies never leave the runner. All randomness (the default shot
choice, the method's seed) flows from ``(task.seed, trial index)``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from latbench.data import store
from latbench.errors import OracleError
from latbench.tasks.spec import TaskSpec

PROTOCOL_VERSION = "1"
DEFAULT_SHOTS = 10
DEFAULT_TRIALS = 5
SUITE_SHOTS = (5, 10, 20)


@dataclass(frozen=True, repr=False)
class SourceData:
    """Latencies a method may train on: ``latency[d, j]`` = ms of ``arch_ids[j]`` on ``devices[d]``.

    ``valid_*`` are validation devices (model selection only; empty for most tasks).
    ``reference_ids`` are the space's hardware-embedding reference archs and ``reference_latency``
    / ``valid_reference_latency`` the source / valid devices' latencies on them (HELP-style methods
    embed a device by these; on a target device they must be measured through the oracle).
    """

    space: str
    devices: tuple[str, ...]
    arch_ids: np.ndarray
    latency: np.ndarray
    valid_devices: tuple[str, ...] = ()
    valid_latency: np.ndarray | None = None
    reference_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reference_latency: np.ndarray | None = None
    valid_reference_latency: np.ndarray | None = None
    #: per source device that has a kernel table: its per-layer latencies on the source archs
    #: (DataFrame arch_id, layer, layer signature, latency_ms; kernel-level predictors train on these)
    kernels: dict = field(default_factory=dict)

    def device(self, name: str) -> np.ndarray:
        """The latencies (ms) of the source archs on source device ``name``."""
        if name not in self.devices:
            raise KeyError(f"{name!r} is not a source device of this trial; its source devices: {', '.join(self.devices)}")
        return self.latency[self.devices.index(name)]

    def __repr__(self) -> str:
        return (
            f"SourceData(space={self.space!r}, devices={len(self.devices)}, archs={len(self.arch_ids)}, "
            f"valid_devices={len(self.valid_devices)}, reference_archs={len(self.reference_ids)}, "
            f"kernel_tables={len(self.kernels)})"
        )

    def __deepcopy__(self, memo):
        """Shared, not copied: the source data is frozen and fitted methods that keep it are deep-copied per k."""
        return self


def _arch_ids(ids, device: str) -> np.ndarray:
    """``ids`` as a 1-d int64 array; OracleError for anything but integers (3.7 is not arch 3)."""
    arr = np.atleast_1d(np.asarray(ids))
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise OracleError(f"{device}: arch ids must be integers (a 1-d sequence of ints), got {arr.dtype} of shape {arr.shape}")
    return arr.astype(np.int64)


class Oracle:
    """Measures archs on one target device, only from the query pool and at most ``budget`` distinct.

    It holds the latencies of the pool's archs only (and their kernel rows): the evaluation set's
    latencies stay with the runner, so nothing a method is handed can reveal them. (A method could
    still read the dataset from disk; the leaderboard relies on ``verify`` and published code for
    that.) Re-measuring an arch is free. ``measured`` is a read-only view of what was revealed, in
    order, and ``budget`` is read-only: a method cannot reset its own count. ``rng`` is a generator
    fixed by (task seed, trial, device), for methods that choose their shots randomly.

    ``draw_rng`` is not that generator: it is the trial's, shared by its target devices in turn, and
    draws the protocol's default k shots when ``default`` is not given.
    """

    def __init__(
        self,
        device: str,
        pool: np.ndarray,
        pool_latency: np.ndarray,
        budget: int,
        draw_rng: np.random.Generator,
        default: np.ndarray | None = None,
        kernel_rows=None,
        seed: int = 0,
    ):
        if budget > len(pool):
            raise OracleError(f"{device}: budget k={budget} exceeds the query pool of {len(pool)} archs")
        self.device = device
        self.pool = np.asarray(pool, dtype=np.int64)
        if len(pool_latency) != len(self.pool):
            raise OracleError(f"{device}: {len(pool_latency)} pool latencies for a pool of {len(self.pool)} archs")
        self._budget = int(budget)
        self._pool_latency = dict(zip(self.pool.tolist(), np.asarray(pool_latency, dtype=np.float64).tolist()))
        if default is None:
            default = np.sort(draw_rng.choice(self.pool, self._budget, replace=False)) if budget else np.zeros(0, np.int64)
        self._default = np.asarray(default, dtype=np.int64)
        self._kernel_rows = (
            None if kernel_rows is None else kernel_rows[kernel_rows["arch_id"].isin(self.pool)].reset_index(drop=True)
        )
        self._seed = (int(seed), device)
        self._measured: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"Oracle({self.device!r}, pool={len(self.pool)}, budget={self._budget}, measured={len(self._measured)})"

    @property
    def budget(self) -> int:
        """k: how many distinct pool archs this oracle reveals at most."""
        return self._budget

    @property
    def measured(self) -> Mapping[int, float]:
        """arch id -> latency (ms) of every arch measured so far, in order (a read-only view)."""
        return MappingProxyType(self._measured)

    @property
    def rng(self) -> np.random.Generator:
        """A fresh generator fixed by (trial seed, device): the same draws in every run of this trial."""
        return np.random.default_rng([self._seed[0], zlib.crc32(self._seed[1].encode())])

    @property
    def has_kernels(self) -> bool:
        """Whether measuring an arch on this device also yields its per-layer kernel latencies."""
        return self._kernel_rows is not None

    @property
    def remaining(self) -> int:
        """How many more distinct archs may be measured."""
        return self._budget - len(self._measured)

    def default_choice(self) -> np.ndarray:
        """k random pool archs (fixed by the task seed and trial), for methods that don't choose."""
        return self._default.copy()

    def measure(self, ids) -> np.ndarray:
        """The latencies (ms) of pool archs ``ids`` (an int or a sequence of ints), in the order given.

        Each arch not measured before counts once against the budget; OracleError when ``ids``
        holds an arch outside the pool, a non-integer id, or more new archs than :attr:`remaining`.
        """
        ids = _arch_ids(ids, self.device)
        outside = [int(i) for i in ids if int(i) not in self._pool_latency]
        if outside:
            raise OracleError(f"{self.device}: arch {outside[0]} is not in the query pool; a method may only measure pool archs")
        new = [int(i) for i in dict.fromkeys(ids.tolist()) if int(i) not in self._measured]
        if len(self._measured) + len(new) > self._budget:
            raise OracleError(
                f"{self.device}: measuring {len(new)} more arch(s) would exceed the budget of k={self._budget} "
                f"({len(self._measured)} already measured)"
            )
        for i in new:
            self._measured[i] = self._pool_latency[i]
        return np.array([self._measured[int(i)] for i in ids], dtype=np.float64)

    def kernels(self, ids):
        """Per-layer kernel latencies (DataFrame arch_id, layer, the layer's signature op, h, cin, cout,
        kernel, stride, groups, and latency_ms) of already measured archs.

        A profiler run that times an arch also times its layers, so this costs no extra budget; it
        is only available on devices with a kernel table (:attr:`has_kernels`).
        """
        if self._kernel_rows is None:
            raise OracleError(
                f"{self.device}: no kernel-level measurements for this device (only end-to-end latency); "
                "kernel-level training needs a device measured by `latbench profile` with eager PyTorch"
            )
        ids = _arch_ids(ids, self.device)
        unmeasured = [int(i) for i in ids if int(i) not in self._measured]
        if unmeasured:
            raise OracleError(f"{self.device}: arch {unmeasured[0]} has not been measured; measure() it first")
        rows = self._kernel_rows
        return rows[rows["arch_id"].isin(ids)].reset_index(drop=True)


@dataclass(repr=False)
class Trial:
    """One trial of a task at one k, as a method sees it: the source data to ``fit`` on and one
    :class:`Oracle` per target device to ``adapt`` with; ``eval_ids`` are the archs it is scored on."""

    task: TaskSpec
    index: int
    shots: int
    seed: int
    source: SourceData
    oracles: dict[str, Oracle]
    eval_ids: dict[str, np.ndarray]  # per target device (the official protocol uses one set for all)
    protocol: str = "official"

    def __repr__(self) -> str:
        return (
            f"Trial(task={self.task.id!r}, index={self.index}, shots={self.shots}, protocol={self.protocol!r}, "
            f"targets={list(self.oracles)})"
        )


def trial_seed(task: TaskSpec, trial: int) -> int:
    return int(np.random.SeedSequence([task.seed, trial]).generate_state(1)[0] & 0x7FFFFFFF)


PROTOCOLS = ("official", "help-paper", "nasflat-paper")
#: HELP's meta-train range per space: archs [0, n) are its training pool, [n, n + 1000) its query set.
HELP_TRAIN_RANGE = {"nb201": 900, "fbnet": 4000, "ofa": 4000}


def make_trial(
    task: TaskSpec,
    trial: int,
    shots: int,
    table=None,
    *,
    protocol: str = "official",
    source_archs: str = "sample",
    reference_ids=None,
    kernels: dict | None = None,
) -> Trial:
    """Build trial ``trial`` of ``task`` from the space's :class:`LatencyTable` (truth stays there).

    By default it is the trial :func:`latbench.evaluate` runs: the built dataset's latencies
    (``table``), the space's reference archs (``reference_ids``) and its kernel tables
    (``kernels``); pass ``reference_ids=()`` or ``kernels={}`` to leave them out.

    ``protocol``:

    - ``official`` (latbench v1): the task's pools; every target measurement counts against k.
    - ``help-paper`` (HELP's meta-test): source archs = HELP's training range
      ([0, 900) on NB201, [0, 4000) on FBNet/OFA); per target device the oracle pool is that range
      trimmed to the device's 10th-90th latency percentile plus the reference archs, the budget is
      k **plus** the reference archs (HELP measures them on top of its k support archs), the default
      choice is k random trimmed-pool archs, and the evaluation set is the next 1,000 archs trimmed
      the same way (800 per device). A k larger than the trimmed range (HELP Table 3's BRP-NAS row
      trains on all 900 NB201 training archs of the target) draws from the untrimmed range.
    - ``nasflat-paper`` (NASFLAT's ``main_trf.py``): the task's source sample; the
      oracle pool and the evaluation set are *all* archs of the space (the evaluation includes the
      source and transfer archs, as NASFLAT reports).

    ``kernels`` (device -> per-layer kernel latencies, :func:`latbench.data.store.load_kernels`):
    source devices' rows on the source archs go into :attr:`SourceData.kernels`; a target device's
    oracle reveals the rows of the archs it measured (:meth:`Oracle.kernels`).
    """
    if protocol not in PROTOCOLS:
        raise OracleError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if table is None:
        table = store.load_latency(task.space)
    if reference_ids is None:
        reference_ids = store.load_space(task.space).reference_ids
    if kernels is None:
        kernels = store.load_kernels(task.space)
    task.check_devices(table.devices)
    n_archs = table.values.shape[1]
    task.check_archs(n_archs)
    if shots < 0:
        raise OracleError(f"shots must be >= 0, got {shots}")
    if task.arch_pools and protocol != "official":
        raise OracleError(f"task {task.id}: the {protocol} reproduction mode needs a task over the HELP devices")
    seed = trial_seed(task, trial)
    pools = task.id_pools()
    rng = np.random.default_rng(seed)
    ref = np.asarray(reference_ids, dtype=np.int64)
    if protocol == "help-paper":
        n_train = HELP_TRAIN_RANGE[task.space]
        src_ids = np.arange(n_train)
    elif source_archs == "sample":
        src_ids = np.array(pools.source_sample, dtype=np.int64)
    elif source_archs == "all":
        src_ids = np.setdiff1d(table.measured(task.source + task.valid + task.target), pools.eval)
    else:
        raise ValueError(f"source_archs must be 'sample' or 'all', got {source_archs!r}")
    source = SourceData(
        space=task.space,
        devices=task.source,
        arch_ids=src_ids,
        latency=table.rows(task.source)[:, src_ids],
        valid_devices=task.valid,
        valid_latency=table.rows(task.valid)[:, src_ids] if task.valid else None,
        reference_ids=ref,
        reference_latency=table.rows(task.source)[:, ref],
        valid_reference_latency=table.rows(task.valid)[:, ref] if task.valid else None,
        kernels={
            d: rows[rows["arch_id"].isin(src_ids)].reset_index(drop=True)
            for d, rows in (kernels or {}).items()
            if d in task.source
        },
    )
    oracles, eval_ids = {}, {}
    for d in task.target:
        truth = table.device(d)
        if protocol == "official":
            pool, budget, default = np.array(pools.query_pool, dtype=np.int64), shots, None
            eval_ids[d] = np.array(pools.eval, dtype=np.int64)
        elif protocol == "help-paper":
            trimmed = _trim(np.arange(n_train), truth)
            if shots <= len(trimmed):  # HELP's support sampling: k archs of the trimmed range
                pool = np.union1d(trimmed, ref)
                default = np.sort(rng.choice(trimmed, shots, replace=False))
            else:  # the 900-sample BRP-NAS row: HELP trains it on the untrimmed range
                pool = np.union1d(np.arange(n_train), ref)
                default = np.sort(rng.choice(n_train, shots, replace=False)) if shots <= n_train else None
            budget = min(shots + len(ref), len(pool))
            eval_ids[d] = _trim(np.arange(n_train, min(n_train + 1000, n_archs)), truth)
        else:
            pool, budget, default = np.arange(n_archs), shots, None
            eval_ids[d] = np.arange(n_archs)
        if shots > len(pool):
            raise OracleError(f"task {task.id}: k={shots} is larger than the query pool ({len(pool)} archs)")
        pool = np.asarray(pool, dtype=np.int64)
        oracles[d] = Oracle(d, pool, truth[pool], budget, rng, default=default, kernel_rows=(kernels or {}).get(d), seed=seed)
    return Trial(task, trial, shots, seed, source, oracles, eval_ids, protocol)


def _trim(ids: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """HELP's outlier removal: sort by latency, keep ranks [10 %, 90 %) (exactly 800 of 1,000).

    Rank-based, not value-based: with tied latencies (integer-ms devices) a value cut keeps a
    different number of archs and does not reproduce HELP's published FLOPs row; this does.
    """
    order = np.argsort(latency[ids], kind="stable")
    n = len(ids)
    return np.sort(ids[order[int(n * 0.1) : int(n * 0.9)]])
