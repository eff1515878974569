"""Units of work: (method, task, trial) with its shot counts -- what ``evaluate`` and sweeps both run.

A unit is the smallest piece that keeps "fit once per (task, trial), adapt a deep copy per k". It
is picklable (the unfitted method, the task spec, the trial index), so executors can ship it to
worker processes or Ray; results are put back in the fixed (method, task, k, trial) order, so the
output does not depend on the executor, the worker count or the completion order.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Only the standard library and latbench.errors at import time: a spawned worker imports this
# module (for its initializer) before anything else, and must limit BLAS/OpenMP threads before
# numpy loads. The heavy imports happen inside run_unit and assemble (commented there).
from latbench.errors import LatbenchError

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class SweepError(LatbenchError):
    """A sweep could not run or a unit failed; no output was written. ``detail``: the worker's traceback."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class SweepStopped(SweepError):
    """The time budget was spent before every unit ran; the finished ones are in the checkpoint."""


@dataclass(frozen=True)
class Unit:
    """One piece of work, picklable: everything a worker needs and nothing tied to the driver process."""

    index: int  # position in the fixed order (method, task, trial)
    label: str  # the method as the user named it
    method: Any  # the unfitted Method (hyperparameters only; each unit fits its own clone)
    task: Any  # TaskSpec
    trial: int
    shots: tuple[int, ...]
    source_archs: str = "sample"
    protocol: str = "official"
    env: tuple[tuple[str, str], ...] = ()  # LATBENCH_* variables the worker must see

    def describe(self) -> str:
        return f"method {self.label!r} on task {self.task.id} trial {self.trial}"


@dataclass
class Outcome:
    """What a unit sends back: one TrialResult per k (in ``shots`` order), or the error as text."""

    index: int
    trials: list | None
    dataset_hash: str
    seconds: float
    host: str
    error: str = ""
    detail: str = ""
    #: the exception itself, in-process only (it is not sent between processes): chained to the
    #: error the caller sees, so a debugger reaches the method's own frame
    exception: BaseException | None = dataclasses.field(default=None, repr=False, compare=False)


_LIMITED = False


def limit_threads() -> None:
    """One BLAS/OpenMP/torch thread per worker: N workers on N cores must not fight over cores.

    Called as the process pool's initializer (before numpy loads, so the environment variables
    take effect) and again at the start of every worker-side unit (Ray workers have numpy loaded
    already; threadpoolctl limits what is loaded, torch is set directly).
    """
    global _LIMITED
    for var in THREAD_ENV:
        os.environ[var] = "1"
    if not _LIMITED and "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - a scikit-learn dependency
            pass
        else:
            threadpool_limits(1)
            _LIMITED = True
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _apply_env(env: tuple[tuple[str, str], ...]) -> None:
    """Point the worker at the driver's dataset (and forget cached data if it pointed elsewhere)."""
    changed = False
    for key, value in env:
        if os.environ.get(key) != value:
            os.environ[key] = value
            changed = True
    if changed:
        from latbench.data import store  # after the environment is set: see the note at the top
        from latbench.tasks.spec import clear_cache

        store.clear_cache()
        clear_cache()


def run_unit(unit: Unit, worker: bool = False) -> Outcome:
    """Fit once on the trial's source data, then adapt and score a deep copy per k.

    Every evaluation, serial or parallel, runs through here.
    Never raises for a method's error: the error comes back as text, because arbitrary exception
    objects do not always survive pickling between processes.
    """
    tic = time.perf_counter()
    host = socket.gethostname()
    try:
        if worker:
            limit_threads()
            _apply_env(unit.env)
        from latbench.data import store  # heavy imports after limit_threads: see the note at the top
        from latbench.eval.trials import run_trial

        table = store.load_latency(unit.task.space)
        space = store.get_space(unit.task.space)
        fitted, trials = None, []
        for k in unit.shots:
            run = run_trial(unit.method, unit.task, unit.trial, k, table, space, unit.source_archs, unit.protocol, fitted=fitted)
            trials.append(run.result)
            fitted = run.fitted
        return Outcome(unit.index, trials, store.info()["content_hash"], time.perf_counter() - tic, host)
    except Exception as e:
        return Outcome(
            unit.index,
            None,
            "",
            time.perf_counter() - tic,
            host,
            error=f"{type(e).__name__}: {e}",
            detail=traceback.format_exc(),
            exception=None if worker else e,
        )


def plan(
    methods: Sequence[tuple[str, Any]],
    tasks: list,
    *,
    shots: Sequence[int],
    trials: int,
    source_archs: str = "sample",
    protocol: str = "official",
    env: dict[str, str] | None = None,
) -> list[Unit]:
    """The units, in the fixed order method -> task -> trial."""
    pairs = tuple(sorted((env or {}).items()))
    units = []
    for label, method in methods:
        for task in tasks:
            for t in range(trials):
                units.append(Unit(len(units), label, method, task, t, tuple(shots), source_archs, protocol, pairs))
    return units


def assemble(
    method,
    tasks: list,
    shots: Sequence[int],
    trials: int,
    outcomes: dict[tuple[str, int], Outcome],
    *,
    source_archs: str = "sample",
    protocol: str = "official",
):
    """One method's EvalResult from its units' outcomes (task-major, then k, trials in order).

    ``seconds`` is the sum of the method's unit times: what a serial run costs, whatever the
    parallelism (the sweep's wall time is reported separately).
    """
    from latbench import __version__  # heavy imports here: see the note at the top
    from latbench.data import store
    from latbench.eval.results import EvalResult, TaskResult, jsonable_params
    from latbench.protocol.trial import PROTOCOL_VERSION

    label = protocol_label(protocol, source_archs)
    results = []
    for task in tasks:
        for i, k in enumerate(shots):
            results.append(TaskResult.from_trials(task, k, label, [outcomes[task.id, t].trials[i] for t in range(trials)]))
    info = store.info()
    return EvalResult(
        latbench_version=__version__,
        dataset_version=info["dataset_version"],
        dataset_hash=info["content_hash"],
        protocol_version=PROTOCOL_VERSION,
        method=method.name or type(method).__name__,
        method_params=jsonable_params(method.get_params()),
        results=results,
        seconds=round(sum(o.seconds for o in outcomes.values()), 3),
    )


def protocol_label(protocol: str, source_archs: str = "sample") -> str:
    """The label results carry, e.g. ``official-v1`` or ``official-v1-source-all``."""
    from latbench.protocol.trial import PROTOCOL_VERSION

    return f"{protocol}-v{PROTOCOL_VERSION}" + ("" if source_archs == "sample" else f"-source-{source_archs}")
