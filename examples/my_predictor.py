"""A small custom latency predictor, written as a third-party package would write one.

"Params regression": on each target device, fit ``latency = a * params + b`` (a > 0) to the k
archs the protocol lets us measure, and predict every evaluation arch from its parameter count.
It ignores the source devices entirely, so it is a floor any transfer method should beat.
``feature="auto"`` instead picks, per device, whichever of params / FLOPs / activation memory
predicts the held-out shots best (leave-one-out, from k = 5 shots).

It uses only the public API: ``latbench.Method`` and the helpers every built-in uses
(``latbench.methods.fitting``), so it gets their conventions without re-implementing them.

Try it from the repository root (a ``module:Class`` path is imported from the current folder)::

    latbench eval --method examples.my_predictor:ParamsRegression --task hard-3 --shots 10
    latbench eval --method examples.my_predictor:ParamsRegression --task hard-3 --param feature=auto
    latbench submit --method examples.my_predictor:ParamsRegression --suite main --out my_entry.json

The contract (see ``latbench.Method``): ``__init__`` only stores hyperparameters,
``fit(source, space, seed)`` and ``adapt(device, oracle)`` return ``self``, learned state ends in
``_``, and ``predict(device, arch_ids)`` returns one positive latency (ms) per arch id.
``latbench.check_method(ParamsRegression)`` checks all of that on one trial (see examples/README.md).
"""

from __future__ import annotations

import numpy as np

from latbench import Method
from latbench.methods.fitting import loo_pick, positive_floor, scale_fit

#: Per-arch counts every search space provides (``space.params(ids)`` etc.).
FEATURES = ("params", "flops", "activations")


class ParamsRegression(Method):
    name = "params-regression"
    summary = "latency = a*params + b fitted on the k target shots (example predictor)"

    def __init__(self, feature: str = "params"):
        # Hyperparameters only, stored under their own names: clone()/get_params() rely on it.
        # Validation belongs in fit (scikit-learn's rule), not here.
        self.feature = feature

    def fit(self, source, space, seed):
        if self.feature not in (*FEATURES, "auto"):
            raise ValueError(f"feature must be one of {', '.join(FEATURES)} or 'auto', got {self.feature!r}")
        # Nothing to learn from the source devices; the base class keeps `space_` (and `source_`).
        super().fit(source, space, seed)
        self.coef_ = {}
        return self

    def _x(self, feature: str, ids) -> np.ndarray:
        return getattr(self.space_, feature)(ids)

    def adapt(self, device, oracle):
        # The default adapt measures the protocol's k random query-pool archs and stores them in
        # self.shots_[device] = (arch ids, measured ms). A method may instead choose its own archs
        # with oracle.measure(ids): at most k distinct, from oracle.pool (oracle.rng is a seeded
        # generator for random choices, the same in every run of the trial).
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        feature = self.feature
        if feature == "auto":

            def left_out(f, keep, i):  # fit on the shots `keep`, predict shot i
                a, b = scale_fit(self._x(f, ids[keep]), y[keep])
                return a * self._x(f, ids[i : i + 1])[0] + b

            feature = loo_pick(FEATURES, y, left_out)  # the first (params) when k < 5
        # scale_fit: least squares with a > 0, else a line through the origin (keeps the ranking)
        self.coef_[device] = (feature, *scale_fit(self._x(feature, ids), y))
        return self

    def predict(self, device, arch_ids):
        feature, a, b = self.coef_[device]
        # a + b*x can go below 0 at the low end; latencies must be positive
        return positive_floor(a * self._x(feature, arch_ids) + b, self.shots_[device][1])
