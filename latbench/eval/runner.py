"""``evaluate`` and ``run``: plan units, run them (in-process, in a pool or on Ray), assemble results.

The only orchestrator: ``latbench eval``, sweeps and the leaderboard commands all come through here,
so every number is produced by the same code path (:func:`latbench.eval.units.run_unit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from latbench import paths
from latbench.eval.executors import Step, execute
from latbench.eval.results import EvalResult
from latbench.eval.units import SweepError, Unit, assemble, plan
from latbench.methods.base import Method
from latbench.protocol.trial import DEFAULT_SHOTS, DEFAULT_TRIALS
from latbench.tasks.spec import TaskSpec


def evaluate(
    method: Method,
    tasks: list[TaskSpec],
    *,
    shots: int | Sequence[int] = DEFAULT_SHOTS,
    trials: int = DEFAULT_TRIALS,
    source_archs: str = "sample",
    protocol: str = "official",
    workers: int = 1,
    checkpoint: Path | None = None,
    time_budget: float | None = None,
    on_progress: Callable[[int, int, float, Unit], None] = lambda done, total, elapsed, unit: None,
    on_resume: Callable[[int, int], None] = lambda loaded, total: None,
    on_step: Step | None = None,
) -> EvalResult:
    """Run ``method`` on every task for ``trials`` trials at each shot count (k measurements per target).

    ``on_progress(done, total, elapsed, unit)`` follows each finished (task, trial) unit;
    ``on_step(unit, desc, done, total)`` the steps the method reports inside the running unit
    (``Method.progress``; with ``workers=1`` only, and ``("", 0, 0)`` when a unit starts).
    ``checkpoint``, ``time_budget`` and ``on_resume`` as for :func:`run`.
    """
    shot_list = [shots] if isinstance(shots, int) else list(shots)
    label = method.name or type(method).__name__
    return run(
        [(label, method)],
        tasks,
        shots=shot_list,
        trials=trials,
        workers=workers,
        source_archs=source_archs,
        protocol=protocol,
        checkpoint=checkpoint,
        time_budget=time_budget,
        on_progress=on_progress,
        on_resume=on_resume,
        on_step=on_step,
    )[0]


def run(
    methods: Sequence[tuple[str, Any]],
    tasks: list,
    *,
    shots: Sequence[int],
    trials: int,
    workers: int = 1,
    ray_address: str | None = None,
    source_archs: str = "sample",
    protocol: str = "official",
    checkpoint: Path | None = None,
    time_budget: float | None = None,
    on_progress: Callable[[int, int, float, Unit], None] = lambda done, total, elapsed, unit: None,
    on_resume: Callable[[int, int], None] = lambda loaded, total: None,
    on_step: Step | None = None,
) -> list[EvalResult]:
    """EvalResult per (label, Method) in ``methods``, identical whatever ``workers``/``ray_address``/``checkpoint``.

    ``on_step``: progress inside the running unit, as for :func:`evaluate` (in-process only).
    """
    shots = list(shots)
    if not methods:
        raise SweepError("no methods to run")
    if len({label for label, _ in methods}) != len(methods):
        raise SweepError("each method may appear only once in a sweep")
    if not tasks:
        raise SweepError("the task selection is empty")
    if trials < 1 or not shots or min(shots) < 0 or len(set(shots)) != len(shots):
        raise SweepError(f"need distinct shot counts >= 0 and trials >= 1 (got shots {shots}, {trials} trials)")
    remote = ray_address not in (None, "local")
    env = {} if remote else {"LATBENCH_HOME": str(paths.home())}  # a cluster's nodes keep their own home
    units = plan(methods, tasks, shots=shots, trials=trials, source_archs=source_archs, protocol=protocol, env=env)
    outcomes = execute(
        units,
        workers=workers,
        ray_address=ray_address,
        checkpoint=checkpoint,
        time_budget=time_budget,
        on_progress=on_progress,
        on_resume=on_resume,
        on_step=on_step,
    )
    results = []
    for label, method in methods:
        mine = {(u.task.id, u.trial): o for u, o in zip(units, outcomes) if u.label == label}
        results.append(assemble(method, tasks, shots, trials, mine, source_archs=source_archs, protocol=protocol))
    return results
