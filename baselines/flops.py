"""FLOPs regression: latency ~ a * FLOPs + b, fitted on the k target shots (a > 0).

The "FLOPS" proxy row of HELP's Table 3 (Lee et al., NeurIPS 2021): the ranking is exactly the
FLOPs ranking and the shots only set the scale. No source devices, no training.
See the documentation page baselines/flops (``docs/baselines/flops.md``).
"""

from __future__ import annotations

from latbench.methods.base import Method
from latbench.methods.fitting import positive_floor, scale_fit


class FLOPsRegression(Method):
    """Least-squares ``latency = a * FLOPs + b`` on the k target shots, with a > 0 enforced.

    It has no hyperparameters.

    Attributes
    ----------
    coef_ : dict of str to tuple of float
        Per target device, ``(a, b)`` fitted on its shots.
    """

    name = "flops"
    summary = "latency = a*FLOPs + b fitted on the k target shots (ranking = FLOPs ranking)"

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        if not hasattr(self, "coef_"):
            self.coef_ = {}
        self.coef_[device] = scale_fit(self.space_.flops(ids), y)
        return self

    def predict(self, device, arch_ids):
        a, b = self.coef_[device]
        return positive_floor(a * self.space_.flops(arch_ids) + b, self.shots_[device][1])
