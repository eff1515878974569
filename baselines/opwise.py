"""Op-wise latency predictors of Li, Paolieri & Golubchik (ICPE 2023): Lasso, RF, GBDT and MLP.

"Predicting Inference Latency of Neural Architectures on Mobile Devices" (ICPE 2023; arXiv
2210.02620) predicts a network's latency as the sum of per-operation predictions plus a framework
overhead, one regressor per op type, trained on per-op profiled latencies. ``variant="faithful"``
does that on devices with kernel tables. ``variant="adapted"`` (default) trains on end-to-end
latencies only: one model per source device on per-kernel-type feature sums, then a sparse
non-negative mix of them plus an op-wise correction fitted on the k shots (latbench's extension).
See the documentation page baselines/opwise (``docs/baselines/opwise.md``).
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso

from latbench.errors import MethodError
from latbench.kernels import decomposition as kernels
from latbench.methods.base import Method
from latbench.methods.fitting import best_scale_source, loo_pick, positive_floor, relative_weights
from latbench_baselines.kernel_bank import MEASURED_RULES, KernelBank, check_variant, kernel_sum, measured_bank

DEFAULT_STATS = ("count", "flops", "params", "mem")
#: Features of one op in the faithful variants (per-op regressors on measured op latencies).
OP_FEATURES = ("flops", "params", "mem", "act", "hw", "cin", "cout", "ks", "stride")
#: L1 weight of the op-wise correction relative to the source columns, picked per target device by
#: leave-one-out on the shots (inf = no op-wise correction).
OP_PENALTIES = (3.0, 10.0, 30.0, float("inf"))


# ---- shared fitting helpers (also used by nn-meter / litepred) ---------------------------------
def relative_nnlasso(F: np.ndarray, y: np.ndarray, alpha: float, penalty=None, max_iter: int = 20000) -> np.ndarray:
    """theta >= 0 minimising  mean_i ((y_i - F_i . theta) / y_i)^2 / 2  +  alpha * sum_j penalty_j m_j theta_j.

    The squared *percentage* error of ``F @ theta`` against ``y`` (divisors floored, see
    :data:`WEIGHT_FLOOR`). Columns are first scaled by m_j = mean_i(F_ij / y_i), so a coefficient of
    1 on one column alone explains the latency on average and ``alpha`` is unit-free; ``penalty``
    (default 1) scales each column's L1 weight. Columns that are zero on every row get 0.
    """
    F = np.asarray(F, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    theta = np.zeros(F.shape[1])
    if len(y) == 0 or F.shape[1] == 0:
        return theta
    w = relative_weights(y)
    A = F / w[:, None]
    m = A.mean(axis=0)
    keep = m > 0
    if not keep.any():
        return theta
    pen = np.ones(F.shape[1]) if penalty is None else np.asarray(penalty, dtype=np.float64)
    scale = m[keep] * pen[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = Lasso(alpha=alpha, positive=True, fit_intercept=False, max_iter=max_iter, tol=1e-6, selection="cyclic")
        model.fit(A[:, keep] / scale, y / w)
    theta[keep] = model.coef_ / scale
    return theta


class _TargetStage:
    """y ~ P . w + X . beta + c on the shots (all >= 0), squared percentage error, one NN-Lasso.

    ``op_penalty`` is the L1 weight of the op-wise columns X relative to the source columns P; a
    tuple is a grid, chosen by leave-one-out squared percentage error on the shots (k >= 5).
    """

    def __init__(self, alpha: float, op_penalty):
        self.alpha, self.op_penalty = alpha, op_penalty

    def _solve(self, P, X, y, op_penalty) -> np.ndarray:
        k = len(y)
        use_x = X is not None and np.isfinite(op_penalty)
        F = np.column_stack([P] + ([X] if use_x else [np.zeros((k, X.shape[1] if X is not None else 0))]) + [np.ones(k)])
        pen = np.r_[np.ones(P.shape[1]), np.full(F.shape[1] - P.shape[1] - 1, op_penalty if use_x else 1.0), 1.0]
        theta = relative_nnlasso(F, y, self.alpha, pen)
        if not np.any(theta[:-1] > 0) and P.shape[1]:
            # everything shrunk away but the constant: the best single source, rescaled
            d, a = best_scale_source(P, y)
            theta = np.zeros(F.shape[1])
            theta[d] = a
        return theta

    def fit(self, P: np.ndarray, X: np.ndarray | None, y: np.ndarray) -> _TargetStage:
        k = len(y)
        self.n_x_ = 0 if X is None else X.shape[1]
        if k == 0:  # zero-shot: the plain mean of the source models (ms of an average source device)
            self.theta_ = np.r_[np.full(P.shape[1], 1.0 / P.shape[1]), np.zeros(self.n_x_), 0.0]
            return self

        def left_out(pen, keep, i):
            th = self._solve(P[keep], None if X is None else X[keep], y[keep], pen)
            return np.r_[P[i], X[i] if X is not None else np.zeros(0), 1.0] @ th

        self.op_penalty_ = loo_pick(self.op_penalty, y, left_out)
        self.theta_ = self._solve(P, X, y, self.op_penalty_)
        return self

    def predict(self, P: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        F = np.column_stack([P, X if X is not None else np.zeros((len(P), self.n_x_)), np.ones(len(P))])
        return F @ self.theta_


class _OpRegressor:
    """One op type's regressor in the faithful variants: the method's own model family
    (``_fit_source`` / ``_predict_source``) trained on that op type's measured latencies."""

    def __init__(self, method, seed: int):
        self.method, self.seed = method, seed

    #: An op type has only a few distinct configurations in a space (NB201: 1-11); rows are tiled to
    #: at least this many so the regressors' internal splits (GBDT subsamples, the MLP's early-stopping
    #: hold-out) never come out empty. Tiling does not move a least-squares or tree fit.
    MIN_ROWS = 20

    def fit(self, x, y, sample_weight=None) -> _OpRegressor:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        reps = -(-self.MIN_ROWS // len(y))
        self.model_ = self.method._fit_source(np.tile(x, (reps, 1)), np.tile(y, reps), self.seed)
        return self

    def predict(self, x) -> np.ndarray:
        return self.method._predict_source(self.model_, np.asarray(x, dtype=np.float64))


# ---- the methods -------------------------------------------------------------------------------
#: Whole-space per-type sums, built once per process, space, rule set, statistics and types.
_SPACE_SUMS: dict[tuple, np.ndarray] = {}


def space_type_sums(space, rules: str, stats, types) -> np.ndarray:
    """:func:`latbench.kernels.type_sums` of every arch of ``space`` (rows in id order), cached per
    process: a predictor then indexes rows instead of decomposing the asked archs in every call
    (the sums of an arch do not depend on which other archs are asked, so the rows are the same)."""
    key = (kernels.space_digest(space), rules, tuple(stats), tuple(types))
    if key not in _SPACE_SUMS:
        x, _ = kernels.type_sums(space, space.arch_ids(), rules, stats, types=types)
        x.flags.writeable = False  # shared by every method in the process
        _SPACE_SUMS[key] = x
    return _SPACE_SUMS[key]


class _OpwiseBase(Method):
    """Per-source regressors on op-wise features + the shared target stage (see baselines/opwise in the docs)."""

    # subclasses: _make(seed) -> regressor, or override _fit_source / _predict_source

    def _features(self, ids) -> np.ndarray:
        return space_type_sums(self.space_, self.rules, self.stats, self.types_)[self.space_._ids(ids)]

    def fit(self, source, space, seed):
        super().fit(source, space, seed)

        check_variant(self)
        self.targets_ = {}
        if self.variant == "faithful":  # per-op predictors of the target device itself: nothing from sources
            return self
        ids = np.asarray(source.arch_ids)
        _, cols = kernels.type_sums(space, ids, self.rules, self.stats)  # types seen in the source sample
        self.types_ = sorted({c.split(":")[0] for c in cols})
        x = self._features(ids)
        self.models_ = []
        for d in range(len(source.devices)):
            y = np.asarray(source.latency[d], dtype=np.float64)
            ok = np.isfinite(y) & (y > 0)
            self.models_.append(self._fit_source(x[ok], y[ok], seed + d))
            self.progress(d + 1, len(source.devices), "source device models")
        self.targets_ = {}
        return self

    def _source_matrix(self, x: np.ndarray) -> np.ndarray:
        # memo per feature matrix: predict() is called with the same eval ids for every target
        key = (x.shape, hash(x.tobytes()))
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            if len(memo) > 8:
                memo.clear()
            memo[key] = np.column_stack([self._predict_source(m, x) for m in self.models_])
        return memo[key]

    def _target_stage(self) -> _TargetStage:
        return _TargetStage(self.target_alpha, self.op_penalty)

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        if self.variant == "faithful":
            bank = measured_bank(
                self.space_,
                oracle,
                ids,
                lambda: KernelBank(MEASURED_RULES, self._op_regressor, 0, features=lambda f: OP_FEATURES),
            )
            overhead = max(0.0, float(np.mean(y - kernel_sum(self.space_, bank, ids))))
            self.targets_[device] = (bank, overhead)
            return self
        x = self._features(ids)
        P = self._source_matrix(x)
        self.targets_[device] = self._target_stage().fit(P, x, y)
        return self

    def _op_regressor(self, family: str, n_features: int) -> _OpRegressor:
        return _OpRegressor(self, self.seed_ + zlib.crc32(family.encode()) % 10_000)

    def predict(self, device, arch_ids):
        if self.variant == "faithful":
            bank, overhead = self.targets_[device]
            return positive_floor(kernel_sum(self.space_, bank, arch_ids) + overhead, self.shots_[device][1])
        x = self._features(arch_ids)
        pred = self.targets_[device].predict(self._source_matrix(x), x)
        return positive_floor(pred, self.shots_[device][1])


class OpwiseLasso(_OpwiseBase):
    """Op-wise Lasso: the op-wise linear cost model, fitted on end-to-end latencies per source device.

    The paper's hyperparameters were not available, so every default is latbench's.

    Parameters
    ----------
    variant : {"adapted", "faithful"}, default "adapted"
        "faithful": one regressor per op type fitted on the per-op latencies of the k measured archs
        plus an overhead constant, nothing from the sources (needs a task with kernel tables).
        "adapted": trained on end-to-end latencies only, with the two-stage few-shot transfer.
    rules : str, default "default"
        Fusion rule set that turns an arch into kernels (``latbench.kernels``; "default" is
        ``tflite-cpu``). Adapted variant only; the faithful one uses ``torch-eager``.
    stats : tuple of str, default ("count", "flops", "params", "mem")
        Statistics summed per kernel type as features (any of count, flops, params, act, mem).
        latbench's choice: the terms of the op-wise linear cost model.
    alpha : float, default 1e-4
        L1 strength of each source device's non-negative Lasso (squared percentage error, columns
        scaled to be unit-free).
    target_alpha : float, default 1e-3
        Adapted variant: L1 strength of the non-negative Lasso fitted on the k shots (the target
        stage).
    op_penalty : float or tuple of float, default (3, 10, 30, inf)
        Adapted variant: L1 weight of the op-wise correction relative to the source columns in the
        target stage; a tuple is a grid, picked per target device by leave-one-out on the shots (the
        first value when k < 5); inf: no correction.
    prior : {"sources", "none"}, default "sources"
        "none" ignores the source devices: the target model is a non-negative Lasso on the k shots
        alone (op-wise features plus total FLOPs, equal penalties), to show how under-determined a
        pure-target fit is. Needs "flops" among ``stats``.

    Attributes
    ----------
    types_ : list of str
        Kernel types seen in the source sample (the feature columns; adapted variant).
    models_ : list
        Adapted variant: one fitted model per source device.
    targets_ : dict of str to object
        Per target device: its fitted target stage (adapted), or ``(kernel bank, overhead)``
        (faithful).
    """

    name = "opwise-lasso"
    summary = "op-wise NN-Lasso (Li et al. ICPE'23) adapted: e2e fit per source, sparse source mix on the k shots"

    def __init__(
        self,
        variant: str = "adapted",
        rules: str = "default",
        stats=DEFAULT_STATS,
        alpha: float = 1e-4,
        target_alpha: float = 1e-3,
        op_penalty=OP_PENALTIES,
        prior: str = "sources",
    ):
        self.variant = variant
        self.rules = rules
        self.stats = stats
        self.alpha = alpha
        self.target_alpha = target_alpha
        self.op_penalty = op_penalty
        self.prior = prior

    def fit(self, source, space, seed):
        if self.prior not in ("sources", "none"):
            raise MethodError(f"opwise-lasso: prior must be 'sources' or 'none', got {self.prior!r}")
        return super().fit(source, space, seed)

    def _fit_source(self, x, y, seed):
        return relative_nnlasso(np.column_stack([x, np.ones(len(x))]), y, self.alpha)

    def _predict_source(self, theta, x):
        return np.column_stack([x, np.ones(len(x))]) @ theta

    def _source_matrix(self, x):
        if self.prior == "none":  # the only "source": total FLOPs, i.e. one shared cost per FLOP
            flops = [i for i, c in enumerate(self._columns()) if c.endswith(":flops")]
            return x[:, flops].sum(axis=1, keepdims=True)
        return super()._source_matrix(x)

    def _columns(self):
        return [f"{t}:{s}" for t in self.types_ for s in self.stats]

    def adapt(self, device, oracle):
        if self.prior == "none" and "flops" not in self.stats:
            raise MethodError("opwise-lasso: prior='none' needs 'flops' among the stats")
        return super().adapt(device, oracle)

    def _target_stage(self):
        penalty = 1.0 if self.prior == "none" else self.op_penalty
        return _TargetStage(self.target_alpha, penalty)


class _RegressorOpwise(_OpwiseBase):
    """Shared code of the RF / GBDT variants: sklearn regressors fitted with weights 1/y^2."""

    def _fit_source(self, x, y, seed):
        model = self._make(seed)
        model.fit(x, y, sample_weight=1.0 / relative_weights(y) ** 2)
        return model

    def _predict_source(self, model, x):
        return model.predict(x)


class OpwiseRF(_RegressorOpwise):
    """Op-wise features, one random forest per source device, sparse source mix on the shots.

    The paper's hyperparameters were not available, so every default is latbench's.

    Parameters
    ----------
    variant : {"adapted", "faithful"}, default "adapted"
        "faithful": one regressor per op type fitted on the per-op latencies of the k measured archs
        plus an overhead constant, nothing from the sources (needs a task with kernel tables).
        "adapted": trained on end-to-end latencies only, with the two-stage few-shot transfer.
    rules : str, default "default"
        Fusion rule set that turns an arch into kernels (``latbench.kernels``; "default" is
        ``tflite-cpu``). Adapted variant only; the faithful one uses ``torch-eager``.
    stats : tuple of str, default ("count", "flops", "params", "mem")
        Statistics summed per kernel type as features (any of count, flops, params, act, mem).
        latbench's choice: the terms of the op-wise linear cost model.
    n_estimators : int, default 200
        Trees per forest (scikit-learn ``RandomForestRegressor``).
    max_features : float, default 1/3
        Fraction of the features considered at each split.
    target_alpha : float, default 1e-3
        Adapted variant: L1 strength of the non-negative Lasso fitted on the k shots (the target
        stage).
    op_penalty : float or tuple of float, default (3, 10, 30, inf)
        Adapted variant: L1 weight of the op-wise correction relative to the source columns in the
        target stage; a tuple is a grid, picked per target device by leave-one-out on the shots (the
        first value when k < 5); inf: no correction.

    Attributes
    ----------
    types_ : list of str
        Kernel types seen in the source sample (the feature columns; adapted variant).
    models_ : list
        Adapted variant: one fitted model per source device.
    targets_ : dict of str to object
        Per target device: its fitted target stage (adapted), or ``(kernel bank, overhead)``
        (faithful).
    """

    name = "opwise-rf"
    summary = "op-wise features, RandomForest per source device (e2e-adapted ICPE'23), sparse source mix on the shots"

    def __init__(
        self,
        variant: str = "adapted",
        rules: str = "default",
        stats=DEFAULT_STATS,
        n_estimators: int = 200,
        max_features: float = 1 / 3,
        target_alpha: float = 1e-3,
        op_penalty=OP_PENALTIES,
    ):
        self.variant = variant
        self.rules = rules
        self.stats = stats
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.target_alpha = target_alpha
        self.op_penalty = op_penalty

    check_params = {"n_estimators": 10}

    def _make(self, seed):
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=self.n_estimators, max_features=self.max_features, random_state=seed)


class OpwiseGBDT(_RegressorOpwise):
    """Op-wise features, gradient-boosted trees per source device, sparse source mix on the shots.

    The paper's hyperparameters were not available, so every default is latbench's.

    Parameters
    ----------
    variant : {"adapted", "faithful"}, default "adapted"
        "faithful": one regressor per op type fitted on the per-op latencies of the k measured archs
        plus an overhead constant, nothing from the sources (needs a task with kernel tables).
        "adapted": trained on end-to-end latencies only, with the two-stage few-shot transfer.
    rules : str, default "default"
        Fusion rule set that turns an arch into kernels (``latbench.kernels``; "default" is
        ``tflite-cpu``). Adapted variant only; the faithful one uses ``torch-eager``.
    stats : tuple of str, default ("count", "flops", "params", "mem")
        Statistics summed per kernel type as features (any of count, flops, params, act, mem).
        latbench's choice: the terms of the op-wise linear cost model.
    n_estimators : int, default 300
        Boosting stages (scikit-learn ``GradientBoostingRegressor``).
    max_depth : int, default 3
        Depth of each tree.
    learning_rate : float, default 0.05
        Shrinkage of each stage.
    subsample : float, default 0.8
        Fraction of the archs drawn for each stage.
    target_alpha : float, default 1e-3
        Adapted variant: L1 strength of the non-negative Lasso fitted on the k shots (the target
        stage).
    op_penalty : float or tuple of float, default (3, 10, 30, inf)
        Adapted variant: L1 weight of the op-wise correction relative to the source columns in the
        target stage; a tuple is a grid, picked per target device by leave-one-out on the shots (the
        first value when k < 5); inf: no correction.

    Attributes
    ----------
    types_ : list of str
        Kernel types seen in the source sample (the feature columns; adapted variant).
    models_ : list
        Adapted variant: one fitted model per source device.
    targets_ : dict of str to object
        Per target device: its fitted target stage (adapted), or ``(kernel bank, overhead)``
        (faithful).
    """

    name = "opwise-gbdt"
    summary = "op-wise features, gradient-boosted trees per source device (e2e-adapted ICPE'23), sparse source mix"

    def __init__(
        self,
        variant: str = "adapted",
        rules: str = "default",
        stats=DEFAULT_STATS,
        n_estimators: int = 300,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        target_alpha: float = 1e-3,
        op_penalty=OP_PENALTIES,
    ):
        self.variant = variant
        self.rules = rules
        self.stats = stats
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.target_alpha = target_alpha
        self.op_penalty = op_penalty

    check_params = {"n_estimators": 20}

    def _make(self, seed):
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            random_state=seed,
        )


class OpwiseMLP(_OpwiseBase):
    """Op-wise features, an MLP on log-latency per source device, sparse source mix on the shots.

    The paper's hyperparameters were not available, so every default is latbench's.

    Parameters
    ----------
    variant : {"adapted", "faithful"}, default "adapted"
        "faithful": one regressor per op type fitted on the per-op latencies of the k measured archs
        plus an overhead constant, nothing from the sources (needs a task with kernel tables).
        "adapted": trained on end-to-end latencies only, with the two-stage few-shot transfer.
    rules : str, default "default"
        Fusion rule set that turns an arch into kernels (``latbench.kernels``; "default" is
        ``tflite-cpu``). Adapted variant only; the faithful one uses ``torch-eager``.
    stats : tuple of str, default ("count", "flops", "params", "mem")
        Statistics summed per kernel type as features (any of count, flops, params, act, mem).
        latbench's choice: the terms of the op-wise linear cost model.
    hidden : tuple of int, default (64, 64)
        Hidden layers of the scikit-learn ``MLPRegressor`` (ReLU, Adam at 1e-3, early stopping).
    max_iter : int, default 200
        Maximum training epochs.
    target_alpha : float, default 1e-3
        Adapted variant: L1 strength of the non-negative Lasso fitted on the k shots (the target
        stage).
    op_penalty : float or tuple of float, default (3, 10, 30, inf)
        Adapted variant: L1 weight of the op-wise correction relative to the source columns in the
        target stage; a tuple is a grid, picked per target device by leave-one-out on the shots (the
        first value when k < 5); inf: no correction.

    Attributes
    ----------
    types_ : list of str
        Kernel types seen in the source sample (the feature columns; adapted variant).
    models_ : list
        Adapted variant: one fitted model per source device.
    targets_ : dict of str to object
        Per target device: its fitted target stage (adapted), or ``(kernel bank, overhead)``
        (faithful).
    """

    name = "opwise-mlp"
    summary = "op-wise features, MLP per source device on log-latency (e2e-adapted ICPE'23), sparse source mix"

    def __init__(
        self,
        variant: str = "adapted",
        rules: str = "default",
        stats=DEFAULT_STATS,
        hidden: tuple = (64, 64),
        max_iter: int = 200,
        target_alpha: float = 1e-3,
        op_penalty=OP_PENALTIES,
    ):
        self.variant = variant
        self.rules = rules
        self.stats = stats
        self.hidden = hidden
        self.max_iter = max_iter
        self.target_alpha = target_alpha
        self.op_penalty = op_penalty

    check_params = {"hidden": (16,), "max_iter": 30}

    def _fit_source(self, x, y, seed):
        from sklearn.neural_network import MLPRegressor

        z = np.log1p(x)
        mu, sd = z.mean(0), z.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        model = MLPRegressor(
            hidden_layer_sizes=tuple(self.hidden),
            max_iter=self.max_iter,
            early_stopping=True,
            random_state=seed,
            learning_rate_init=1e-3,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit((z - mu) / sd, np.log(y))
        lo, hi = np.log(y.min()), np.log(y.max())
        return model, mu, sd, lo - 1.0, hi + 1.0  # no extrapolation beyond e x the source range

    def _predict_source(self, m, x):
        model, mu, sd, lo, hi = m
        return np.exp(np.clip(model.predict((np.log1p(x) - mu) / sd), lo, hi))
