"""Score one trial of one task: per target device, the mean over devices, and the worst device.

Like OGB's Evaluator, it checks its inputs strictly (right ids, right length, finite positive
latencies) so a broken method is caught with a clear message instead of a silently odd score.
"""

from __future__ import annotations

import numpy as np

from latbench.errors import MethodError
from latbench.protocol.metrics import HIGHER_IS_BETTER, METRICS, compute


def check_predictions(pred, n: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(pred, dtype=np.float64)
    except (TypeError, ValueError):
        raise MethodError(f"{where}: predictions are not numbers") from None
    if arr.shape != (n,):
        raise MethodError(f"{where}: predict returned shape {arr.shape}, expected ({n},)")
    if not np.isfinite(arr).all():
        raise MethodError(f"{where}: predict returned {int((~np.isfinite(arr)).sum())} NaN/inf values")
    if (arr <= 0).any():
        raise MethodError(f"{where}: predict returned {int((arr <= 0).sum())} non-positive latencies (min {arr.min():.4g})")
    return arr


def score(y_true: dict[str, np.ndarray], y_pred: dict[str, np.ndarray]) -> dict:
    """{'devices': {dev: metrics}, 'mean': metrics, 'worst': metrics} (worst = per metric)."""
    if set(y_true) != set(y_pred):
        raise MethodError(f"predictions for devices {sorted(y_pred)}, expected {sorted(y_true)}")
    devices = {d: compute(y_true[d], check_predictions(y_pred[d], len(y_true[d]), d)) for d in y_true}
    mean = {m: float(np.mean([v[m] for v in devices.values()])) for m in METRICS}
    worst = {m: float((min if HIGHER_IS_BETTER[m] else max)(v[m] for v in devices.values())) for m in METRICS}
    return {"devices": devices, "mean": mean, "worst": worst}
