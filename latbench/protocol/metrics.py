"""Metrics of a predicted latency vector against the measured one, with explicit edge-case rules.

Rank metrics use average ranks for ties (scipy), which matters on NB201 where FLOPs take only 28
values. A constant prediction carries no ranking: it scores rho = tau = 0 with a warning instead of
scipy's NaN, so an aggregate never silently turns into NaN.
"""

from __future__ import annotations

import warnings

import numpy as np

METRICS = ("spearman", "kendall", "mape", "rmse", "acc5", "acc10")
#: Whether larger is better, for ranking and "worst device" reporting.
HIGHER_IS_BETTER = {"spearman": True, "kendall": True, "mape": False, "rmse": False, "acc5": True, "acc10": True}


class ConstantPredictionWarning(UserWarning):
    pass


def _rank_corr(fn, y_true, y_pred) -> float:
    if np.ptp(y_pred) == 0 or np.ptp(y_true) == 0:
        warnings.warn("constant prediction (or truth): rank correlation set to 0", ConstantPredictionWarning, stacklevel=3)
        return 0.0
    return float(fn(y_true, y_pred).statistic)


def within(y_true, y_pred, tol: float) -> float:
    """Fraction of predictions within +-tol relative error (nn-Meter/LitePred's accuracy)."""
    return float(np.mean(np.abs(y_pred - y_true) <= tol * y_true))


def compute(y_true, y_pred) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr  # imported here: keeps every CLI start fast
    from sklearn.metrics import mean_absolute_percentage_error, root_mean_squared_error

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return {
        "spearman": _rank_corr(spearmanr, y_true, y_pred),
        "kendall": _rank_corr(kendalltau, y_true, y_pred),
        "mape": float(100 * mean_absolute_percentage_error(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "acc5": within(y_true, y_pred, 0.05),
        "acc10": within(y_true, y_pred, 0.10),
    }
