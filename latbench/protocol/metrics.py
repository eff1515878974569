"""Metrics of a predicted latency vector against the measured one, with explicit edge-case rules.

Three families (``docs/metrics.md`` says what each means and why):

- **Ranking and error** (:data:`LEGACY_METRICS`, the metrics of entry schema 1): Spearman ρ,
  Kendall τ-b, MAPE, RMSE and the ±5 % / ±10 % accuracies.
- **Robust error**: the median absolute percentage error (``mdape``) and MAPE with a floor on the
  denominator (``mape_floor``: ``|pred - true| / max(true, 10 % of the median true latency)``), so a
  handful of near-zero measured latencies (NB201 on ``pixel3`` / ``raspi4``) cannot dominate it.
- **What NAS uses a predictor for**: budget feasibility (precision and recall of "predicted to meet
  the budget" at budgets at the 10th / 25th / 50th percentile of the true latencies), recall of the
  truly fastest 5 % among the predicted fastest 5 %, and Kendall τ within the truly fastest quartile.

Rank metrics use average ranks for ties (scipy), which matters on NB201 where FLOPs take only 28
values. A constant prediction carries no ranking: it scores rho = tau = 0 with a warning instead of
scipy's NaN, so an aggregate never silently turns into NaN. Every metric is a finite number for
finite input; non-finite input is refused (``ValueError``) rather than scored.
"""

from __future__ import annotations

import warnings

import numpy as np

#: The metrics of entry schema 1 (board entries stored before the robust and NAS metrics existed).
LEGACY_METRICS = ("spearman", "kendall", "mape", "rmse", "acc5", "acc10")
#: Budgets at these percentiles of a device's true latencies on the evaluation set.
BUDGET_PERCENTILES = (10, 25, 50)
#: ``top5_recall``: the fastest ``TOP_PERCENT`` % of the archs (at least one).
TOP_PERCENT = 5
#: ``kendall_fast``: Kendall τ among the truly fastest ``FAST_PERCENT`` % of the archs.
FAST_PERCENT = 25
#: ``mape_floor``: the denominator is at least this fraction of the median true latency.
MAPE_FLOOR = 0.1

ROBUST_METRICS = ("mdape", "mape_floor")
BUDGET_METRICS = tuple(f"budget_p{p}_{kind}" for p in BUDGET_PERCENTILES for kind in ("precision", "recall"))
NAS_METRICS = (*BUDGET_METRICS, "top5_recall", "kendall_fast")
METRICS = (*LEGACY_METRICS, *ROBUST_METRICS, *NAS_METRICS)
#: Whether larger is better, for ranking and "worst device" reporting.
HIGHER_IS_BETTER = {
    "spearman": True,
    "kendall": True,
    "mape": False,
    "rmse": False,
    "acc5": True,
    "acc10": True,
    "mdape": False,
    "mape_floor": False,
    **{m: True for m in NAS_METRICS},
}
#: The range each metric can take (for validating stored results).
RANGES = {
    "spearman": (-1.0, 1.0),
    "kendall": (-1.0, 1.0),
    "kendall_fast": (-1.0, 1.0),
    **{m: (0.0, float("inf")) for m in ("mape", "rmse", *ROBUST_METRICS)},
    **{m: (0.0, 1.0) for m in ("acc5", "acc10", *BUDGET_METRICS, "top5_recall")},
}


class ConstantPredictionWarning(UserWarning):
    pass


def _rank_corr(fn, y_true, y_pred) -> float:
    if len(y_true) < 2 or np.ptp(y_pred) == 0 or np.ptp(y_true) == 0:
        warnings.warn("constant prediction (or truth): rank correlation set to 0", ConstantPredictionWarning, stacklevel=3)
        return 0.0
    return float(fn(y_true, y_pred).statistic)


def within(y_true, y_pred, tol: float) -> float:
    """Fraction of predictions within +-tol relative error (nn-Meter/LitePred's accuracy)."""
    return float(np.mean(np.abs(y_pred - y_true) <= tol * y_true))


def mdape(y_true, y_pred) -> float:
    """Median absolute percentage error, in %: half the archs are predicted closer than this."""
    return float(100 * np.median(np.abs(y_pred - y_true) / y_true))


def mape_floor(y_true, y_pred, floor: float = MAPE_FLOOR) -> float:
    """MAPE in %, each error relative to ``max(true, floor * median(true))``.

    Equal to MAPE wherever the true latency is at least ``floor`` times the median; an arch measured
    near zero (e.g. a cell the runtime folds away) counts as if it took ``floor`` times the median.
    """
    denom = np.maximum(y_true, floor * np.median(y_true))
    return float(100 * np.mean(np.abs(y_pred - y_true) / denom))


def budget_precision_recall(y_true, y_pred, budget: float) -> tuple[float, float]:
    """Precision and recall of "predicted to meet ``budget``" (latency <= budget) against the truth.

    Precision: of the archs predicted within budget, the fraction that truly are; recall: of the archs
    truly within budget, the fraction predicted so. Empty sets: with no arch predicted within budget
    precision is 1 when no arch truly is (nothing wrong was proposed) and 0 otherwise; with no arch
    truly within budget recall is 1 (nothing was missed).
    """
    truth, pred = y_true <= budget, y_pred <= budget
    hits = int(np.sum(truth & pred))
    precision = hits / int(pred.sum()) if pred.any() else float(not truth.any())
    recall = hits / int(truth.sum()) if truth.any() else 1.0
    return float(precision), float(recall)


def _fastest_membership(values, m: int) -> np.ndarray:
    """Per arch, the probability that it is among the ``m`` smallest ``values`` when ties are broken at
    random: 1 below the cut, 0 above, and (free places) / (group size) for a tied group across it."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    below = np.cumsum(counts) - counts
    return np.clip((m - below) / counts, 0.0, 1.0)[inverse]


def top_recall(y_true, y_pred, percent: float = TOP_PERCENT) -> float:
    """Of the truly fastest ``percent`` % archs (``ceil``, at least one), the fraction that the prediction
    puts among its fastest ``percent`` %; ties (in truth or prediction) are broken at random and the
    expected fraction is returned, so a constant prediction scores the chance level ``m / n``."""
    n = len(y_true)
    m = max(1, int(np.ceil(n * percent / 100 - 1e-9)))
    return float(np.sum(_fastest_membership(y_true, m) * _fastest_membership(y_pred, m)) / m)


def kendall_fast(y_true, y_pred, percent: float = FAST_PERCENT) -> float:
    """Kendall τ-b among the truly fastest ``percent`` % archs (true latency <= that percentile of the
    true latencies): how well the prediction orders the candidates a latency-constrained search keeps."""
    from scipy.stats import kendalltau

    keep = y_true <= np.percentile(y_true, percent)
    return _rank_corr(kendalltau, y_true[keep], y_pred[keep])


def compute(y_true, y_pred) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one device; ``ValueError`` for mismatched or non-finite input."""
    from scipy.stats import kendalltau, spearmanr  # imported here: keeps every CLI start fast
    from sklearn.metrics import mean_absolute_percentage_error, root_mean_squared_error

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or not len(y_true):
        raise ValueError(f"metrics need two equal-length, non-empty 1-D arrays (got shapes {y_true.shape}, {y_pred.shape})")
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("metrics need finite latencies (NaN or inf in the measured or predicted values)")
    if (y_true <= 0).any():
        raise ValueError("measured latencies must be > 0")
    out = {
        "spearman": _rank_corr(spearmanr, y_true, y_pred),
        "kendall": _rank_corr(kendalltau, y_true, y_pred),
        "mape": float(100 * mean_absolute_percentage_error(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "acc5": within(y_true, y_pred, 0.05),
        "acc10": within(y_true, y_pred, 0.10),
        "mdape": mdape(y_true, y_pred),
        "mape_floor": mape_floor(y_true, y_pred),
    }
    for p, budget in zip(BUDGET_PERCENTILES, np.percentile(y_true, BUDGET_PERCENTILES)):
        out[f"budget_p{p}_precision"], out[f"budget_p{p}_recall"] = budget_precision_recall(y_true, y_pred, budget)
    out["top5_recall"] = top_recall(y_true, y_pred)
    out["kendall_fast"] = kendall_fast(y_true, y_pred)
    return out


def range_problem(m: dict) -> str | None:
    """What is wrong with the values of one device's metrics (None if nothing): a known name whose
    value lies outside its range (:data:`RANGES`). Names and finiteness are the caller's to check."""
    for name, value in m.items():
        lo, hi = RANGES.get(name, (-float("inf"), float("inf")))
        if not lo <= value <= hi:
            return f"{name} {value} outside its range [{lo:g}, {hi:g}]"
    return None
