"""Linear regression on FLOPs, params and activation memory, fitted on the k target shots.

Not a published method: a latbench reference point. Non-negative coefficients on standardised
features, because an unconstrained 3-feature fit on 5-20 shots swings to negative weights and
inverts the ranking. See the documentation page baselines/flops (``docs/baselines/flops.md``).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LinearRegression

from latbench.methods.base import Method
from latbench.methods.fitting import positive_floor, scale_fit


class FLOPsParamsRegression(Method):
    """Non-negative linear model on FLOPs, params and activations, fitted on the k target shots.

    It has no hyperparameters. With fewer than 2 shots, or when every coefficient comes out zero, it
    falls back to ``a * FLOPs + b`` as ``flops`` does.

    Attributes
    ----------
    mu_ : numpy.ndarray
        Mean of the three features over the source sample.
    sd_ : numpy.ndarray
        Their standard deviation (1 where it is 0).
    models_ : dict of str to object
        Per target device, its ``LinearRegression(positive=True)``, or the ``(a, b)`` of the FLOPs
        fallback.
    """

    name = "flops-params"
    summary = "non-negative linear model on FLOPs, params and activations, fitted on the k target shots"

    def _features(self, ids) -> np.ndarray:
        s = self.space_
        return np.column_stack([s.flops(ids), s.params(ids), s.activations(ids)])

    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        x = self._features(source.arch_ids)
        self.mu_, self.sd_ = x.mean(0), np.where(x.std(0) > 0, x.std(0), 1.0)
        self.models_ = {}
        return self

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        x = (self._features(ids) - self.mu_) / self.sd_
        if len(y) >= 2:
            model = LinearRegression(positive=True).fit(x, y)
            if np.any(model.coef_ > 0):
                self.models_[device] = model
                return self
        self.models_[device] = scale_fit(self.space_.flops(ids), y)  # degenerate: FLOPs scaling
        return self

    def predict(self, device, arch_ids):
        model = self.models_[device]
        if isinstance(model, tuple):
            pred = model[0] * self.space_.flops(arch_ids) + model[1]
        else:
            pred = model.predict((self._features(arch_ids) - self.mu_) / self.sd_)
        return positive_floor(pred, self.shots_[device][1])
