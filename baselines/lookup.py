"""Layer-wise lookup predictor: an additive per-layer-type cost table, rescaled on the target.

The "layer-wise predictor" of the literature (HELP's Table 3): latency is a sum of per-layer
costs. latbench learns one cost table per source device from end-to-end latencies (non-negative
least squares on per-layer-type counts, FLOPs and activations), not from layer measurements; the
k shots pick the best-matching table and rescale it. See the documentation page baselines/lookup
(``docs/baselines/lookup.md``).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from scipy.stats import spearmanr

from latbench.methods.base import Method
from latbench.methods.fitting import positive_floor, scale_fit

_FEATURE_CACHE: dict[tuple[str, int], dict] = {}


def layer_features(space, arch_id: int) -> dict:
    key = (space.name, int(arch_id))
    if key not in _FEATURE_CACHE:
        feats: dict = {}
        for layer in space.layers(arch_id):
            t = layer.type + ("-dw" if layer.type == "conv" and layer.groups > 1 and layer.groups == layer.cin else "")
            feats[(t, "n")] = feats.get((t, "n"), 0) + 1
            feats[(t, "flops")] = feats.get((t, "flops"), 0) + layer.flops / 1e6
            feats[(t, "act")] = feats.get((t, "act"), 0) + layer.activations / 1e6
        _FEATURE_CACHE[key] = feats
    return _FEATURE_CACHE[key]


class LayerwiseLookup(Method):
    """Per-layer-type cost tables learned on the source devices; the shots pick and rescale one.

    It has no hyperparameters.

    Attributes
    ----------
    columns_ : list of tuple
        Feature columns: (layer type, "n" / "flops" / "act").
    scale_ : numpy.ndarray
        Per-column maximum over the source sample (features are divided by it).
    tables_ : numpy.ndarray
        [n_source, n_columns + 1] non-negative costs per source device (last: constant overhead).
    choice_ : dict of str to tuple
        Per target device, ``(source index, a, b)``: the table whose predictions correlate best
        (Spearman) with the shots, and ``ms = a * prediction + b`` fitted on them.
    """

    name = "lookup"
    summary = "per-layer-type additive cost table (NNLS on source devices), rescaled on the target shots"

    def _matrix(self, ids) -> np.ndarray:
        rows = [layer_features(self.space_, i) for i in np.asarray(ids)]
        return np.array([[r.get(k, 0.0) for k in self.columns_] for r in rows])

    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        rows = [layer_features(space, i) for i in source.arch_ids]
        self.columns_ = sorted({k for r in rows for k in r})
        x = self._matrix(source.arch_ids)
        self.scale_ = np.where(x.max(0) > 0, x.max(0), 1.0)
        xs = np.column_stack([x / self.scale_, np.ones(len(x))])  # last column: constant overhead
        self.tables_ = np.stack([nnls(xs, y, maxiter=50 * xs.shape[1])[0] for y in source.latency])
        self.choice_ = {}
        return self

    def _source_predictions(self, ids) -> np.ndarray:
        xs = np.column_stack([self._matrix(ids) / self.scale_, np.ones(len(ids))])
        return xs @ self.tables_.T  # [n, n_source]

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        preds = self._source_predictions(ids) if len(ids) else np.zeros((0, len(self.tables_)))
        if len(y) >= 2 and np.ptp(y) > 0:
            rho = [spearmanr(p, y).statistic if np.ptp(p) > 0 else -1 for p in preds.T]
            best = int(np.nanargmax(rho))
        else:
            best = 0
        self.choice_[device] = (best, *scale_fit(preds[:, best], y))
        return self

    def predict(self, device, arch_ids):
        best, a, b = self.choice_[device]
        return positive_floor(a * self._source_predictions(arch_ids)[:, best] + b, self.shots_[device][1])
