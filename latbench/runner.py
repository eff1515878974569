"""``evaluate``: the only orchestrator. Task -> trials -> fit/adapt/predict -> scores -> EvalResult."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
from sklearn.base import clone

from latbench import __version__
from latbench.data import store
from latbench.evaluator import score
from latbench.method import Method
from latbench.protocol import DEFAULT_SHOTS, DEFAULT_TRIALS, PROTOCOL_VERSION, make_trial
from latbench.results import EvalResult, TaskResult, TrialResult, jsonable_params
from latbench.spaces import get_space
from latbench.tasks import TaskSpec


def evaluate(
    method: Method,
    tasks: list[TaskSpec],
    *,
    shots: int = DEFAULT_SHOTS,
    trials: int = DEFAULT_TRIALS,
    source_archs: str = "sample",
    protocol: str = "official",
    on_step: Callable[[str], None] = lambda msg: None,
    on_done: Callable[[], None] = lambda: None,
) -> EvalResult:
    """Run ``method`` on every task for ``trials`` trials at ``shots`` measurements per target."""
    t0 = time.perf_counter()
    label = f"{protocol}-v{PROTOCOL_VERSION}" + ("" if source_archs == "sample" else f"-source-{source_archs}")
    out = []
    for task in tasks:
        table = store.load_latency(task.space)
        space = get_space(task.space)
        trial_results = []
        for t in range(trials):
            on_step(f"{task.id} trial {t + 1}/{trials}")
            trial_results.append(run_trial(method, task, t, shots, table, space, source_archs, protocol)[0])
            on_done()
        out.append(TaskResult.from_trials(task, shots, label, trial_results))
    info = store.info()
    return EvalResult(
        latbench_version=__version__, dataset_version=info["dataset_version"], dataset_hash=info["content_hash"],
        protocol_version=PROTOCOL_VERSION, method=method.name or type(method).__name__,
        method_params=jsonable_params(method.get_params()), results=out, seconds=round(time.perf_counter() - t0, 3),
    )


def run_trial(method: Method, task: TaskSpec, t: int, shots: int, table, space, source_archs: str = "sample",
              protocol: str = "official"):
    """One trial: a fresh clone of ``method`` fitted, adapted and scored.

    Returns (TrialResult, the Trial, predictions per target device, the fitted clone).
    """
    from latbench.errors import MethodError

    trial = make_trial(task, t, shots, table, protocol=protocol, source_archs=source_archs, reference_ids=space.reference_ids)
    m = clone(method)
    tic = time.perf_counter()
    if m.fit(trial.source, space, trial.seed) is not m:
        raise MethodError(f"{type(m).__name__}.fit must return self")
    t_fit = time.perf_counter() - tic
    t_adapt = t_pred = 0.0
    y_true, y_pred = {}, {}
    for dev, oracle in trial.oracles.items():
        tic = time.perf_counter()
        if m.adapt(dev, oracle) is not m:
            raise MethodError(f"{type(m).__name__}.adapt must return self")
        t_adapt += time.perf_counter() - tic
        ids = trial.eval_ids[dev]
        tic = time.perf_counter()
        y_pred[dev] = m.predict(dev, ids.copy())
        t_pred += time.perf_counter() - tic
        y_true[dev] = table.device(dev)[ids]
    s = score(y_true, y_pred)
    result = TrialResult(
        trial=t, seed=trial.seed, devices=s["devices"], mean=s["mean"], worst=s["worst"],
        measured={d: sorted(o.measured) for d, o in trial.oracles.items()},
        seconds={"fit": round(t_fit, 4), "adapt": round(t_adapt, 4), "predict": round(t_pred, 4)},
    )
    return result, trial, y_pred, m
