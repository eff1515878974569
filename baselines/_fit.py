"""Small shared fitting helpers for the analytic baselines."""

from __future__ import annotations

import numpy as np


def positive_floor(pred: np.ndarray, shots: np.ndarray) -> np.ndarray:
    """Clip predictions to a small positive floor (a linear fit may go below 0 at the low end)."""
    floor = 1e-3 * (float(np.min(shots)) if len(shots) else 1.0)
    return np.maximum(pred, floor)


def scale_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y ~ a*x + b with a > 0 (least squares); falls back to y ~ a*x through the origin when the
    least-squares slope is not positive, so the prediction keeps the ranking of x."""
    if len(y) >= 2 and np.ptp(x) > 0:
        a, b = np.polyfit(x, y, 1)
        if a > 0:
            return float(a), float(b)
    if len(y) == 0:
        return 1.0, 0.0
    return float(np.mean(y) / max(np.mean(x), 1e-12)), 0.0
