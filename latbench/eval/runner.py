"""``evaluate`` and ``run``: plan units, run them (in-process, in a pool or on Ray), assemble results.

The only orchestrator: ``latbench eval``, sweeps and the leaderboard commands all come through here,
so every number is produced by the same code path (:func:`latbench.eval.units.run_unit`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from latbench import paths
from latbench.errors import ParameterError
from latbench.eval.arguments import PYTHON, check_budget, check_counts, check_executor, check_modes
from latbench.eval.executors import Step, execute
from latbench.eval.results import EvalResult
from latbench.eval.units import SweepError, Unit, assemble, plan
from latbench.methods.base import Method
from latbench.protocol.trial import DEFAULT_SHOTS, DEFAULT_TRIALS
from latbench.tasks.spec import TaskSpec, select


def evaluate(
    method: Method,
    tasks: TaskSpec | str | Sequence[TaskSpec | str],
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

    ``method`` is a :class:`Method` instance; ``tasks`` a :class:`TaskSpec`, a selector string
    (``"hard-3"``, ``"hard"``, ``"main"``) or a list of them; ``shots`` one k or several.
    ``time_budget`` is in seconds. Bad arguments raise :class:`latbench.errors.ParameterError` (a
    ``ValueError``) before anything runs; a method that fails raises ``MethodFailed`` chained to
    the method's own exception.

    ``on_progress(done, total, elapsed, unit)`` follows each finished (task, trial) unit;
    ``on_step(done, total, desc, unit)`` the steps the method reports inside the running unit
    (``Method.progress``; with ``workers=1`` only, and ``(0, 0, "", unit)`` when a unit starts).
    ``checkpoint``, ``time_budget`` and ``on_resume`` as for :func:`run`.
    """
    tasks, shot_list = _checked_arguments(method, tasks, shots, trials, workers, source_archs, protocol, checkpoint, time_budget)
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


def _checked_arguments(method, tasks, shots, trials, workers, source_archs, protocol, checkpoint, time_budget):
    """(tasks as a list of TaskSpec, shots as a list of ints), or ParameterError in the caller's terms."""
    if isinstance(method, type):
        raise ParameterError(f"method must be an instance, not the class: evaluate({method.__name__}(), ...)")
    if not isinstance(method, Method):
        raise ParameterError(f"method must be a latbench.Method instance, got {type(method).__name__}")
    items = [tasks] if isinstance(tasks, (str, TaskSpec)) else list(tasks)
    chosen: list[TaskSpec] = []
    for item in items:
        if isinstance(item, str):
            chosen.extend(select(item))
        elif isinstance(item, TaskSpec):
            try:  # a model_copy(update=...) skips validation: a target may have become a source too
                chosen.append(TaskSpec.model_validate(item.model_dump()))
            except ValidationError as e:
                raise ParameterError(f"task {item.id}: {e.errors()[0]['msg']}") from None
        else:
            raise ParameterError(f"tasks must be TaskSpecs or task selectors (str), got {type(item).__name__}")
    if not chosen:
        raise ParameterError("tasks is empty")
    repeated = [t for t, n in Counter(t.id for t in chosen).items() if n > 1]
    if repeated:
        raise ParameterError(f"task {repeated[0]} is given more than once")
    shot_list = [shots] if isinstance(shots, Integral) else list(shots) if isinstance(shots, Iterable) else [shots]
    if not shot_list or not all(isinstance(k, Integral) and not isinstance(k, bool) for k in shot_list):
        raise ParameterError(f"shots must be an int or a sequence of ints, got {shots!r}")
    shot_list = [int(k) for k in shot_list]
    check_counts(shot_list, trials, PYTHON)
    check_executor(workers, None, PYTHON)
    check_modes(protocol, source_archs, PYTHON)
    check_budget(time_budget, checkpoint, None, PYTHON)
    if protocol == "official":
        for t in chosen:
            pool = len((t.arch_pools or t.pools).query_pool)
            if max(shot_list) > pool:
                raise ParameterError(f"k={max(shot_list)} is larger than the query pool of task {t.id} ({pool} archs)")
    return chosen, shot_list


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
    check_counts(shots, trials, PYTHON)
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
