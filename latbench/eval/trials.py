"""One trial: fit a method on the source devices, adapt it to each target through its oracle, score it.

A trial's source data and seed do not depend on k, so for several shot counts the method is fitted
once and a deep copy of the fitted state is adapted per k: the same numbers as separate runs, at a
fraction of the cost for methods with expensive source training.

Anything a method raises in ``fit``, ``adapt`` or ``predict`` (a bad hyperparameter, a bug) becomes
a one-line :class:`MethodError` naming the method, the phase and the exception, chained to the
original (its traceback); latbench's own errors (e.g. an :class:`OracleError` for a method over
its budget) pass through unchanged.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from latbench.data import store
from latbench.errors import LatbenchError, MethodError
from latbench.eval.results import TrialResult
from latbench.methods.base import Method
from latbench.protocol.scoring import score
from latbench.protocol.trial import Trial, make_trial
from latbench.tasks.spec import TaskSpec


@dataclass
class TrialRun:
    """Everything one trial produced; ``adapted`` is the method after adapting to every target."""

    result: TrialResult
    trial: Trial
    predictions: dict[str, np.ndarray]
    fitted: tuple[Method, float]  # (fitted method before any adaptation, fit seconds): reusable across k
    adapted: Method


def _call(m: Method, phase: str, fn, *args):
    """``fn(*args)``, a method's ``phase``; what it raises becomes a one-line MethodError (LatbenchErrors pass)."""
    try:
        return fn(*args)
    except LatbenchError:
        raise
    except Exception as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        text = (lines[0][:300] + (" ..." if len(lines) > 1 or len(lines[0]) > 300 else "")) if lines else "(no message)"
        name = getattr(m, "name", "") or type(m).__name__
        raise MethodError(f"{name}.{phase}() raised {type(e).__name__}: {text}") from e


def fit_trial(method: Method, trial: Trial, space) -> tuple[Method, float]:
    """A fresh clone of ``method`` fitted on the trial's source data, and the seconds it took."""
    m = _call(method, "clone", clone, method)
    tic = time.perf_counter()
    if _call(m, "fit", m.fit, trial.source, space, trial.seed) is not m:
        raise MethodError(f"{type(m).__name__}.fit must return self")
    return m, time.perf_counter() - tic


def run_trial(
    method: Method,
    task: TaskSpec,
    t: int,
    shots: int,
    table,
    space,
    source_archs: str = "sample",
    protocol: str = "official",
    fitted: tuple[Method, float] | None = None,
) -> TrialRun:
    """One trial: fit (or reuse ``fitted`` = (fitted method, fit seconds)), adapt per target, score.

    The fitted method itself is never adapted: each call adapts a deep copy.
    """
    trial = make_trial(
        task,
        t,
        shots,
        table,
        protocol=protocol,
        source_archs=source_archs,
        reference_ids=space.reference_ids,
        kernels=store.load_kernels(task.space),
    )
    if fitted is None:
        fitted = fit_trial(method, trial, space)
    m, t_fit = copy.deepcopy(fitted[0]), fitted[1]
    t_adapt = t_pred = 0.0
    y_true, y_pred = {}, {}
    for dev, oracle in trial.oracles.items():
        tic = time.perf_counter()
        if _call(m, "adapt", m.adapt, dev, oracle) is not m:
            raise MethodError(f"{type(m).__name__}.adapt must return self")
        t_adapt += time.perf_counter() - tic
        ids = trial.eval_ids[dev]
        tic = time.perf_counter()
        y_pred[dev] = _call(m, "predict", m.predict, dev, ids.copy())
        t_pred += time.perf_counter() - tic
        y_true[dev] = table.device(dev)[ids]
    s = score(y_true, y_pred)
    result = TrialResult(
        trial=t,
        seed=trial.seed,
        devices=s["devices"],
        mean=s["mean"],
        worst=s["worst"],
        measured={d: sorted(o.measured) for d, o in trial.oracles.items()},
        seconds={"fit": round(t_fit, 4), "adapt": round(t_adapt, 4), "predict": round(t_pred, 4)},
    )
    return TrialRun(result, trial, y_pred, fitted, m)
