"""Kernel banks: per-kernel-type regressors of one device, backfitted or trained on measured kernels.

Shared by nn-Meter (random forests), LitePred (MLPs) and the op-wise predictors' kernel features.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from latbench.errors import MethodError
from latbench.kernels import decomposition as kernels
from latbench.kernels.regressors import family_features
from latbench.methods.fitting import loo_pick, relative_weights


def kernel_costs(cat, used: np.ndarray, occurrences: np.ndarray) -> np.ndarray:
    """Initial latency share of each catalogue kernel: FLOPs / mean + memory traffic / mean."""
    fl = cat["flops"].to_numpy(dtype=np.float64)
    mem = cat["mem"].to_numpy(dtype=np.float64)
    w = occurrences[used]
    mf = np.average(fl[used], weights=w) if fl[used].any() else 1.0
    mm = np.average(mem[used], weights=w) if mem[used].any() else 1.0
    return fl / (mf or 1.0) + mem / (mm or 1.0) + 1e-6


class KernelBank:
    """Backfitted per-family regressors of one device; ``predict_codes`` gives per-kernel ms.

    ``make(family, n_features) -> regressor`` builds a fresh regressor; ``fit(x, y, w)`` and
    ``predict(x)`` are the sklearn calls (LitePred's MLPs use the same protocol).
    """

    def __init__(self, rules: str, make, rounds: int, inner: int = 1, features=None):
        self.rules, self.make, self.rounds, self.inner = rules, make, rounds, inner
        self.features = features or family_features  # family -> feature columns

    def __deepcopy__(self, memo):
        return self  # immutable once fitted: trials and k share it (the runner deep-copies methods)

    def fit(self, counts, y: np.ndarray) -> KernelBank:
        """``counts``: sparse [n_archs, n_codes] kernel counts of the archs; ``y``: their ms."""
        cat = kernels.kernel_catalog(self.rules)
        n_codes = counts.shape[1]
        cat = cat.iloc[:n_codes]
        occ = np.asarray(counts.sum(axis=0)).ravel()
        used = occ > 0
        self.families_ = cat["family"].to_numpy()
        p = kernel_costs(cat, used, occ)
        p[~used] = 0.0
        self.models_ = {}
        # one round = rescale to the measured latencies, then fit the forests to the pseudo latencies
        denom = np.where(used, occ, 1.0)
        for _ in range(max(self.rounds, 1)):
            pseudo = p
            for _ in range(max(self.inner, 1)):  # rescale to the measured latencies, average per config
                s = counts @ pseudo
                ratio = np.where(s > 0, y / np.where(s > 0, s, 1.0), 0.0)
                pseudo = pseudo * (counts.T @ ratio) / denom
            codes = np.flatnonzero(used)
            self.models_ = self._fit_models(cat.loc[codes], pseudo[codes], occ[codes])
            p = self.predict_codes(n_codes)
            p[~used] = 0.0
        # unit cost of kernel types this device never ran (fallback: cost-proportional)
        self.unit_ = float(np.sum(p[used] * occ[used]) / np.sum(kernel_costs(cat, used, occ)[used] * occ[used]))
        self.used_ = used
        self._memo = None
        return self

    def fit_measured(self, codes: np.ndarray, latency: np.ndarray, weight: np.ndarray) -> KernelBank:
        """Fit the per-family regressors on *measured* kernel latencies (the faithful setting).

        ``codes``/``latency``/``weight``: :func:`latbench.kernels.measured_code_latency`. Kernel
        families without a measured row predict 0 ms (:data:`UNPROFILED`, and any family the
        measured archs lack), as nn-Meter sums only the kernels it has a predictor for.
        """
        return self.fit_rows(kernels.kernel_catalog(self.rules).loc[np.asarray(codes)], latency, weight)

    def fit_rows(self, frame, latency: np.ndarray, weight: np.ndarray) -> KernelBank:
        """:meth:`fit_measured` on kernel rows given by their features (``family`` + feature columns),
        e.g. configurations of a kernel-sampling campaign together with the catalogue's."""
        self.families_ = kernels.kernel_catalog(self.rules)["family"].to_numpy()
        self.models_ = self._fit_models(frame, np.asarray(latency, dtype=np.float64), np.asarray(weight, dtype=np.float64))
        self.unit_, self._memo = 0.0, None  # families without a model: 0 ms (see fit_measured)
        return self

    def _fit_models(self, frame, target: np.ndarray, weight: np.ndarray) -> dict:
        """One regressor per kernel family on the rows' features -> ``target``."""
        fam_of = frame["family"].to_numpy()
        models = {}
        for fam in sorted(set(fam_of.tolist())):
            sel = fam_of == fam
            x = frame.loc[sel, list(self.features(fam))].to_numpy(dtype=np.float64)
            model = self.make(fam, x.shape[1])
            model.fit(x, target[sel], sample_weight=weight[sel])
            models[fam] = model
        return models

    def predict_codes(self, n_codes: int | None = None) -> np.ndarray:
        """Predicted ms of every catalogue kernel (codes 0..n_codes-1)."""
        cat = kernels.kernel_catalog(self.rules)
        if n_codes is not None:
            cat = cat.iloc[:n_codes]
        memo = getattr(self, "_memo", None)
        if memo is not None and len(memo) == len(cat):
            return memo.copy()
        fam = cat["family"].to_numpy()
        out = np.zeros(len(cat))
        for f in set(fam.tolist()):
            sel = fam == f
            if f in self.models_:
                x = cat.loc[sel, list(self.features(f))].to_numpy(dtype=np.float64)
                out[sel] = self.models_[f].predict(x)
            else:
                out[sel] = np.nan  # filled below by the cost fallback
        if np.isnan(out).any():
            costs = cat["flops"].to_numpy() + cat["mem"].to_numpy()
            out = np.where(np.isnan(out), costs * getattr(self, "unit_", 1.0), out)
        out = np.maximum(out, 0.0)
        if n_codes is None and hasattr(self, "unit_"):
            self._memo = out.copy()
        return out

    def family_sums(self, space, counts) -> tuple[np.ndarray, list[str]]:
        """[n_archs, n_families] predicted ms per kernel family of ``space``, and the family names
        (the space's own, so the columns do not depend on which other spaces the process has seen)."""
        p = self.predict_codes()
        cat = kernels.kernel_catalog(self.rules)
        fams = sorted(set(cat["family"].iloc[kernels.space_codes(space, self.rules)].tolist()))
        fam = cat["family"].to_numpy()
        cols = []
        for f in fams:
            cols.append(counts @ np.where(fam == f, p, 0.0))
        return np.column_stack(cols), fams


def family_scales(Q: np.ndarray, y: np.ndarray, base: float, shrink: float) -> np.ndarray:
    """s >= 0 minimising mean_a (1 - Q[a] . s / y_a)^2 + shrink * sum_f (s_f / base - 1)^2."""
    k, m = Q.shape
    w = relative_weights(y)
    rows = [Q / w[:, None] / np.sqrt(k), np.sqrt(shrink) * np.eye(m) / base]
    rhs = [y / w / np.sqrt(k), np.sqrt(shrink) * np.ones(m)]
    s, _ = nnls(np.vstack(rows), np.concatenate(rhs), maxiter=50 * m)
    return s


def select_shrink(Q: np.ndarray, y: np.ndarray, base: float, grid) -> float:
    """The ridge strength of :func:`family_scales` with the smallest leave-one-out squared
    percentage error on the shots (the first grid value when k < 5)."""
    return loo_pick(grid, y, lambda lam, keep, i: Q[i] @ family_scales(Q[keep], y[keep], base, lam))


def source_key(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else repr(p).encode())
    return h.hexdigest()


#: Layer types eager PyTorch runs as tensor operators outside any module (residual adds, OFA's SE
#: multiply, NB201's x * 0): the profiler's per-layer breakdown has no row for them, so banks fitted
#: on measured kernels predict them as 0 ms (their cost lands in the framework overhead).
UNPROFILED = ("add", "mul", "zero")

#: Backfitted source banks, reused across trials (the source fit does not depend on the seed).
_BANKS: dict[str, list] = {}

VARIANTS = ("adapted", "faithful")
#: The profiler's kernel tables time eager PyTorch, where every layer is its own kernel.
MEASURED_RULES = "torch-eager"


def check_variant(method) -> None:
    if method.variant not in VARIANTS:
        raise MethodError(
            f"{method.name}: variant must be 'adapted' (trained on end-to-end latency) or 'faithful' "
            f"(trained on measured kernel latencies), got {method.variant!r}"
        )


def backfitted_banks(method, source, space, new_bank, *key_parts) -> list:
    """One :class:`KernelBank` per source device backfitted from end-to-end latency (adapted
    variants), cached per process: the fit depends on the source data and hyperparameters only."""
    ids = np.asarray(source.arch_ids)
    lat = np.asarray(source.latency, dtype=np.float64)
    key = source_key(
        type(method).__name__, space.name, method.rules_, method.rounds, method.inner, method.random_state, *key_parts, ids, lat
    )
    if key not in _BANKS:
        counts = kernels.count_matrix(space, ids, method.rules_)
        ok = np.isfinite(lat) & (lat > 0)
        _BANKS[key] = [new_bank().fit(counts[ok[d]], lat[d][ok[d]]) for d in range(len(source.devices))]
    return _BANKS[key]


def measured_bank(space, oracle, ids, new_bank, campaign: str | None = None) -> KernelBank:
    """Kernel predictors of a target device fitted on the kernel latencies of its measured archs,
    plus, with ``campaign`` (a ``latbench profile-kernels`` folder), that device's sampled kernels."""
    codes, lat, n = kernels.measured_code_latency(space, oracle.kernels(ids))
    if len(codes) == 0 and campaign is None:
        raise MethodError(f"{oracle.device}: no kernel measurements among the {len(ids)} measured archs (k = 0?)")
    frame = kernels.kernel_catalog(MEASURED_RULES).loc[codes]
    if campaign is not None:
        from latbench.measure.kernel_sampling import load_campaign

        extra, extra_lat = load_campaign(campaign, oracle.device)
        frame = pd.concat([frame, extra[frame.columns]], ignore_index=True)
        lat, n = np.r_[lat, extra_lat], np.r_[n, np.ones(len(extra_lat))]
    return new_bank().fit_rows(frame, lat, n)


def kernel_sum(space, bank: KernelBank, ids) -> np.ndarray:
    """End-to-end prediction of a kernel-level predictor: the sum of its kernels' predictions."""
    return kernels.count_matrix(space, ids, bank.rules) @ bank.predict_codes()
