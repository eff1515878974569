"""Linear regression on FLOPs, params and activation memory, fitted on the k target shots.

Non-negative coefficients (sklearn ``LinearRegression(positive=True)``) on standardised features:
with k = 5..20 shots an unconstrained 3-feature fit swings to negative weights and inverts the
ranking. On NB201 FLOPs and params are both functions of the conv counts (n1, n3) only, so the
activation term is what can add information (pooling, skips). Cost: negligible.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LinearRegression

from latbench.methods.fitting import positive_floor, scale_fit
from latbench.methods.base import Method


class FLOPsParamsRegression(Method):
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
