"""``evaluate``: the only orchestrator. Task -> trials -> fit/adapt/predict -> scores -> EvalResult.

A trial's source data and seed do not depend on k, so for several shot counts the method is
fitted once per (task, trial) and a deep copy of the fitted state is adapted for each k: the same
numbers as separate runs, at a fraction of the cost for methods with expensive source training.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from sklearn.base import clone

from latbench import __version__
from latbench.data import store
from latbench.errors import MethodError
from latbench.evaluator import score
from latbench.method import Method
from latbench.protocol import DEFAULT_SHOTS, DEFAULT_TRIALS, PROTOCOL_VERSION, Trial, make_trial
from latbench.results import EvalResult, TaskResult, TrialResult, jsonable_params
from latbench.spaces import get_space
from latbench.tasks import TaskSpec


def evaluate(
    method: Method,
    tasks: list[TaskSpec],
    *,
    shots: int | Sequence[int] = DEFAULT_SHOTS,
    trials: int = DEFAULT_TRIALS,
    source_archs: str = "sample",
    protocol: str = "official",
    on_step: Callable[[str], None] = lambda msg: None,
    on_done: Callable[[], None] = lambda: None,
) -> EvalResult:
    """Run ``method`` on every task for ``trials`` trials at each shot count (k measurements per target)."""
    t0 = time.perf_counter()
    shot_list = [shots] if isinstance(shots, int) else list(shots)
    label = f"{protocol}-v{PROTOCOL_VERSION}" + ("" if source_archs == "sample" else f"-source-{source_archs}")
    out = []
    for task in tasks:
        table = store.load_latency(task.space)
        space = get_space(task.space)
        per_k: dict[int, list[TrialResult]] = {k: [] for k in shot_list}
        for t in range(trials):
            on_step(f"{task.id} trial {t + 1}/{trials}")
            fitted = None
            for k in shot_list:
                run = run_trial(method, task, t, k, table, space, source_archs, protocol, fitted=fitted)
                per_k[k].append(run.result)
                fitted = run.fitted
            on_done()
        out += [TaskResult.from_trials(task, k, label, per_k[k]) for k in shot_list]
    info = store.info()
    return EvalResult(
        latbench_version=__version__, dataset_version=info["dataset_version"], dataset_hash=info["content_hash"],
        protocol_version=PROTOCOL_VERSION, method=method.name or type(method).__name__,
        method_params=jsonable_params(method.get_params()), results=out, seconds=round(time.perf_counter() - t0, 3),
    )


@dataclass
class TrialRun:
    """Everything one trial produced; ``adapted`` is the method after adapting to every target."""

    result: TrialResult
    trial: Trial
    predictions: dict[str, np.ndarray]
    fitted: tuple[Method, float]  # (fitted method before any adaptation, fit seconds): reusable across k
    adapted: Method


def fit_trial(method: Method, trial: Trial, space) -> tuple[Method, float]:
    """A fresh clone of ``method`` fitted on the trial's source data, and the seconds it took."""
    m = clone(method)
    tic = time.perf_counter()
    if m.fit(trial.source, space, trial.seed) is not m:
        raise MethodError(f"{type(m).__name__}.fit must return self")
    return m, time.perf_counter() - tic


def run_trial(method: Method, task: TaskSpec, t: int, shots: int, table, space, source_archs: str = "sample",
              protocol: str = "official", fitted: tuple[Method, float] | None = None) -> TrialRun:
    """One trial: fit (or reuse ``fitted`` = (fitted method, fit seconds)), adapt per target, score.

    The fitted method itself is never adapted: each call adapts a deep copy.
    """
    trial = make_trial(task, t, shots, table, protocol=protocol, source_archs=source_archs, reference_ids=space.reference_ids,
                       kernels=store.load_kernels(task.space))
    if fitted is None:
        fitted = fit_trial(method, trial, space)
    m, t_fit = copy.deepcopy(fitted[0]), fitted[1]
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
    return TrialRun(result, trial, y_pred, fitted, m)
