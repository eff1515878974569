"""A trivial custom latency predictor, to show how a method reaches the leaderboard.

"Params regression": on each target device, fit ``latency = a * params + b`` (a > 0) to the k
archs the protocol lets us measure, and predict every evaluation arch from its parameter count.
It ignores the source devices entirely, so it is a floor any transfer method should beat.

Try it (from the repository root; see examples/README.md)::

    PYTHONPATH=. latbench eval --method examples.my_predictor:ParamsRegression --task easy-1 --shots 10
    PYTHONPATH=. latbench submit --method examples.my_predictor:ParamsRegression --suite main --out my_entry.json

The contract (see ``latbench.Method``): ``__init__`` only stores hyperparameters,
``fit(source, space, seed)`` and ``adapt(device, oracle)`` return ``self``, learned state ends in
``_``, and ``predict(device, arch_ids)`` returns one positive latency (ms) per arch id.
``latbench.testing.check_method(ParamsRegression)`` checks all of that on one trial.
"""

from __future__ import annotations

import numpy as np

from latbench.methods.base import Method


class ParamsRegression(Method):
    name = "params-regression"
    summary = "latency = a*params + b fitted on the k target shots (example predictor)"

    def __init__(self, min_slope: float = 1e-9):
        self.min_slope = min_slope  # hyperparameters only: sklearn-style clone()/get_params() rely on it

    def fit(self, source, space, seed):
        # Nothing to learn from the source devices; the base class keeps `space_` for predict.
        super().fit(source, space, seed)
        self.coef_ = {}
        return self

    def adapt(self, device, oracle):
        # The default adapt measures the protocol's k random query-pool archs and stores them in
        # self.shots_[device] = (arch ids, measured ms). A method may instead choose its own archs
        # with oracle.measure(ids) (at most k distinct, from oracle.pool).
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        x = self.space_.params(ids)
        a, b = 0.0, float(np.mean(y)) if len(y) else 1.0
        if len(y) >= 2 and np.ptp(x) > 0:
            a, b = np.polyfit(x, y, 1)
        if a <= self.min_slope:  # keep the params ranking: fall back to a line through the origin
            a, b = float(np.mean(y) / max(np.mean(x), 1e-12)) if len(y) else 1.0, 0.0
        self.coef_[device] = (float(a), float(b))
        return self

    def predict(self, device, arch_ids):
        a, b = self.coef_[device]
        pred = a * self.space_.params(arch_ids) + b
        floor = 1e-3 * float(np.min(self.shots_[device][1])) if len(self.shots_[device][1]) else 1e-3
        return np.maximum(pred, floor)  # latencies must be positive
