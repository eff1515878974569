"""FLOPs regression: latency ~ a * FLOPs + b, fitted on the k target shots.

The ranking is exactly the FLOPs ranking (a > 0 is enforced), which is what HELP's "FLOPS" row
reports: any monotone fit of latency on FLOPs alone gives the same Spearman/Kendall, so the k
shots only set the scale (MAPE, RMSE, +-10%). NB201 FLOPs take 28 distinct values, so ties are
massive; rank metrics use average ranks. Cost: negligible (no training, no GPU).
"""

from __future__ import annotations


from latbench.methods.fitting import positive_floor, scale_fit
from latbench.methods.base import Method


class FLOPsRegression(Method):
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
