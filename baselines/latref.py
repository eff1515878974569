"""latref: latbench's reference latency predictor, designed from what the board shows.

Three parts (see the documentation page baselines/latref, ``docs/baselines/latref.md``):

1. a bank of source-device predictors, two per source device: the op-wise non-negative Lasso of
   ``opwise-lasso`` (per-kernel-type sums of count / FLOPs / params / memory traffic, linear) and a
   ridge regression of log latency on the space's one-hot encoding plus the log of those sums
   (position-aware and multiplicative), both predicting every arch of the space once;
2. active shots: the k archs to measure are chosen by farthest-point sampling over the query pool,
   in the space of the bank's log predictions and the log op-wise features, so the shots cover the
   directions in which the target may differ from the sources (on NB201 from k = 20 on; below, the
   protocol's random shots);
3. the op-wise predictors' target stage on the shots: a sparse non-negative mix of the bank and of
   four whole-arch proxies (FLOPs, params, activations, number of kernels) plus a penalised op-wise
   correction, squared percentage error, the penalty chosen by leave-one-out and the L1 strength
   falling with the number of shots.

Every design choice was made on held-out *source* devices (``benchmarks/latref_selection.py``),
never on a task's target devices.
"""

from __future__ import annotations

import hashlib

import numpy as np

from latbench.errors import MethodError
from latbench.kernels import decomposition as kernels
from latbench.methods.base import Method
from latbench.methods.fitting import positive_floor, stable_seed
from latbench_baselines.opwise import DEFAULT_STATS, OP_PENALTIES, _TargetStage, relative_nnlasso, space_type_sums

SOURCE_MODELS = ("lasso", "ridge")
SELECTORS = ("fps", "kmeans", "random")
#: Whole-arch statistics the target stage may use as columns next to the bank (see ``proxies``).
PROXIES = ("flops", "params", "activations", "kernels")
#: Ridge strengths of the one-hot source model, picked per source device by generalised cross-validation.
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0)
#: The target stage's L1 strength is ``target_alpha`` up to this many shots and falls beyond it.
ALPHA_SHOTS = 5
#: (space, k): in that space, up to k shots are the protocol's random ones rather than farthest-point.
#: NB201's selection space has long tails (cells that compute nothing, all-convolution cells) on
#: which farthest-point sampling spends its few shots, while its source bank already ranks the bulk well.
RANDOM_SHOTS = (("nb201", 10),)

#: Whole-space one-hot encodings, built once per process and space.
_ONEHOT: dict[str, np.ndarray] = {}
#: Whole-space proxy columns, built once per process, space, rule set and proxy.
_PROXIES: dict[tuple[str, str, str], np.ndarray] = {}
#: One source predictor's predictions for every arch of the space, keyed by its training data and
#: settings: the source fit does not depend on the trial seed, so trials (and k) share it.
_BANK: dict[str, np.ndarray] = {}


def _key(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else repr(p).encode())
    return h.hexdigest()


def space_features(space, rules: str, stats, types) -> tuple[np.ndarray, np.ndarray]:
    """(op-wise type sums, one-hot encoding) of every arch of ``space``, cached per process."""
    key = kernels.space_digest(space)
    if key not in _ONEHOT:
        _ONEHOT[key] = np.asarray(space.onehot(space.arch_ids()), dtype=np.float64)
    return space_type_sums(space, rules, stats, types), _ONEHOT[key]


def proxy_column(space, name: str, rules: str) -> np.ndarray:
    """One whole-arch statistic of every arch of ``space`` (``kernels``: how many kernels the arch
    runs under ``rules``), cached per process."""
    key = (kernels.space_digest(space), rules, name)
    if key not in _PROXIES:
        ids = space.arch_ids()
        if name == "kernels":
            col = [len(c) for c in kernels.kernel_codes(space, ids, rules)]
        else:
            col = getattr(space, name)(ids)
        _PROXIES[key] = np.asarray(col, dtype=np.float64)
    return _PROXIES[key]


def fit_ridge_log(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients (last: intercept) of log y ~ F, ridge strength by generalised cross-validation."""
    from sklearn.linear_model import RidgeCV

    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(F, np.log(y))
    return np.r_[model.coef_, model.intercept_]


def pca_scores(A: np.ndarray, var: float) -> np.ndarray:
    """Scores of A's standardised columns on the principal components explaining ``var`` of the variance."""
    if A.shape[1] == 0:
        return A
    sd = A.std(0)
    A = (A - A.mean(0)) / np.where(sd > 0, sd, 1.0)
    u, s, _ = np.linalg.svd(A, full_matrices=False)
    frac = np.cumsum(s**2) / max(float(np.sum(s**2)), 1e-12)
    r = min(int(np.searchsorted(frac, var)) + 1, len(s))
    return u[:, :r] * s[:r]


def fps_choice(Z: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """Farthest-point sampling over the rows of ``Z``: the row nearest the mean, then each time the
    row farthest from all chosen so far. Returns ``k`` distinct archs of ``pool`` (all if k >= pool)."""
    if k >= len(pool):
        return pool.copy()
    chosen = [int(np.argmin(((Z - Z.mean(0)) ** 2).sum(1)))]
    d = ((Z - Z[chosen[0]]) ** 2).sum(1)
    for _ in range(k - 1):
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, ((Z - Z[i]) ** 2).sum(1))
    return pool[np.array(chosen)]


def kmeans_choice(Z: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The pool arch nearest each centre of a k-means clustering of the rows of ``Z`` (distinct)."""
    from sklearn.cluster import KMeans

    if k >= len(pool):
        return pool.copy()
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(Z)
    d2 = ((Z[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
    chosen: list[int] = []
    for c in np.argsort(np.bincount(km.labels_, minlength=k), kind="stable")[::-1]:  # big clusters first
        chosen.append(next(int(i) for i in np.argsort(d2[:, c], kind="stable") if int(i) not in chosen))
    return pool[np.array(chosen)]


class LatRef(Method):
    """latbench's reference predictor: a two-model source bank, active shots, the op-wise target stage.

    Parameters
    ----------
    models : tuple of str, default ("lasso", "ridge")
        Source predictors fitted per source device: "lasso" = the op-wise non-negative Lasso of
        ``opwise-lasso`` (percentage error); "ridge" = ridge regression of log latency on the
        one-hot encoding plus the standardised log op-wise sums (strength by generalised
        cross-validation).
    select : {"fps", "kmeans", "random"}, default "fps"
        How the k shots are chosen from the oracle's pool, in the selection space (below):
        farthest-point sampling from the most central arch, the archs nearest the centres of a
        k-means clustering, or the protocol's random default choice.
    select_var : float, default 0.95
        The selection space: the principal-component scores of the bank's standardised log
        predictions and, next to them, of the standardised log op-wise sums, each PCA keeping
        ``select_var`` of its variance.
    random_shots : tuple of (str, int), default (("nb201", 10),)
        Per search space, the largest k at which the shots are the protocol's random ones instead
        of ``select``'s (NB201 up to 10: there random shots beat farthest-point ones on held-out
        source devices); ``()``: ``select`` everywhere.
    select_trim : float, default 0.05
        Fraction of the pool farthest from the pool's median in the selection space that is never
        chosen (outliers, such as NB201 cells that compute nothing).
    op_penalty : tuple of float, default (3, 10, 30, inf)
        Target stage: L1 weight of the op-wise correction relative to the bank's columns, picked
        per target device by leave-one-out on the shots (the first value when k < 5); inf: none.
    target_alpha : float, default 1e-3
        Target stage: L1 strength of the non-negative Lasso on the shots, at k <= 5 shots.
    alpha_decay : float, default 2
        Beyond 5 shots the strength is ``target_alpha * (5 / k) ** alpha_decay``: more shots carry
        more evidence, so the op-wise correction needs less shrinking (0: the same at every k).
    rules : str, default "default"
        Fusion rule set of the op-wise features (``latbench.kernels``; "default" is ``tflite-cpu``).
    stats : tuple of str, default ("count", "flops", "params", "mem")
        Statistics summed per kernel type as the op-wise features.
    alpha : float, default 1e-4
        L1 strength of each source device's op-wise Lasso.
    proxies : tuple of str, default ("flops", "params", "activations", "kernels")
        Whole-arch statistics that join the bank's columns in the target stage, under the same L1
        weight: a target that ranks archs unlike every source device can still be fitted by a few
        columns (on such targets the FLOPs regressions beat the source-based methods). "kernels" is
        the number of kernels an arch runs under ``rules``. ``()``: the bank alone.

    Attributes
    ----------
    types_ : list of str
        Kernel types seen in the source sample (the op-wise feature columns).
    P_ : numpy.ndarray
        [archs of the space, models x source devices]: the bank's predictions (ms).
    Q_ : numpy.ndarray
        [archs of the space, proxies]: the proxy columns of the target stage.
    stages_ : dict of str to object
        Per target device: its fitted target stage (``op_penalty_``: the penalty chosen).
    targets_ : dict of str to numpy.ndarray
        Per target device: the predicted latency of every arch of the space (predict looks it up).
    """

    name = "latref"
    summary = "latbench reference: op-wise + one-hot source bank, farthest-point active shots, sparse mix of bank and proxies + op-wise correction"

    def __init__(
        self,
        models=SOURCE_MODELS,
        select: str = "fps",
        select_var: float = 0.95,
        random_shots=RANDOM_SHOTS,
        select_trim: float = 0.05,
        op_penalty=OP_PENALTIES,
        target_alpha: float = 1e-3,
        alpha_decay: float = 2.0,
        rules: str = "default",
        stats=DEFAULT_STATS,
        alpha: float = 1e-4,
        proxies=PROXIES,
    ):
        self.models = models
        self.select = select
        self.select_var = select_var
        self.random_shots = random_shots
        self.select_trim = select_trim
        self.op_penalty = op_penalty
        self.target_alpha = target_alpha
        self.alpha_decay = alpha_decay
        self.rules = rules
        self.stats = stats
        self.alpha = alpha
        self.proxies = proxies

    # ---- source bank --------------------------------------------------------------------------
    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        if not self.models or any(m not in SOURCE_MODELS for m in self.models):
            raise MethodError(f"latref: models must be a non-empty subset of {SOURCE_MODELS}, got {self.models!r}")
        if self.select not in SELECTORS:
            raise MethodError(f"latref: select must be one of {SELECTORS}, got {self.select!r}")
        if not 0 <= self.select_trim < 1:
            raise MethodError(f"latref: select_trim must be in [0, 1), got {self.select_trim!r}")
        try:
            self.random_up_to_ = {str(name): int(k) for name, k in self.random_shots}
        except (TypeError, ValueError):
            raise MethodError(f"latref: random_shots must be (space, k) pairs, got {self.random_shots!r}") from None
        unknown = [p for p in self.proxies if p not in PROXIES]
        if unknown or len(set(self.proxies)) != len(self.proxies):
            raise MethodError(f"latref: proxies must be distinct names from {PROXIES}, got {self.proxies!r}")
        if not self.alpha_decay >= 0:
            raise MethodError(f"latref: alpha_decay must be >= 0, got {self.alpha_decay!r}")
        ids = np.asarray(source.arch_ids, dtype=np.int64)
        _, cols = kernels.type_sums(space, ids, self.rules, self.stats)
        self.types_ = sorted({c.split(":")[0] for c in cols})
        X, O = space_features(space, self.rules, self.stats, self.types_)
        columns = []
        for d in range(len(source.devices)):
            y = np.asarray(source.latency[d], dtype=np.float64)
            ok = np.isfinite(y) & (y > 0)
            for m in self.models:
                key = _key(m, kernels.space_digest(space), self.rules, tuple(self.stats), tuple(self.types_), self.alpha, ids, y)
                if key not in _BANK:
                    _BANK[key] = self._fit_predict(m, X, O, ids, ok, y)
                columns.append(_BANK[key])
            self.progress(d + 1, len(source.devices), "source device models")
        self.P_ = np.column_stack(columns)
        self.Q_ = np.column_stack([proxy_column(space, p, self.rules) for p in self.proxies] or [np.zeros((len(X), 0))])
        self.targets_, self.stages_ = {}, {}
        return self

    def _fit_predict(self, model: str, X, O, ids, ok, y) -> np.ndarray:
        """One source predictor, fitted on the source archs ``ids[ok]``, predicting every arch of the space."""
        if model == "lasso":
            theta = relative_nnlasso(np.column_stack([X[ids[ok]], np.ones(int(ok.sum()))]), y[ok], self.alpha)
            return np.column_stack([X, np.ones(len(X))]) @ theta
        lx = np.log1p(X)
        mu, sd = lx[ids].mean(0), lx[ids].std(0)
        F = np.column_stack([O, (lx - mu) / np.where(sd > 0, sd, 1.0), np.ones(len(X))])
        beta = fit_ridge_log(F[ids[ok], :-1], y[ok])
        lo, hi = np.log(y[ok].min()) - 1.0, np.log(y[ok].max()) + 1.0  # no extrapolation beyond e x the range
        return np.exp(np.clip(F @ beta, lo, hi))

    # ---- shots --------------------------------------------------------------------------------
    def _choose(self, device, oracle, k: int, exclude=()) -> np.ndarray:
        """The k pool archs to measure, none of ``exclude`` (archs measured anyway)."""
        if self.select == "random" or k <= self.random_up_to_.get(self.space_.name, 0):
            choice = oracle.default_choice()
            return choice[~np.isin(choice, exclude)][:k]  # archs measured anyway are not drawn twice
        pool = np.asarray(oracle.pool, dtype=np.int64)
        pool = pool[~np.isin(pool, exclude)]
        X, _ = space_features(self.space_, self.rules, self.stats, self.types_)
        Z = np.column_stack(
            [
                pca_scores(np.log(np.maximum(self.P_[pool], 1e-9)), self.select_var),
                pca_scores(np.log1p(X[pool]), self.select_var),
            ]
        )
        if self.select_trim > 0 and len(pool) - k > 1:
            dist = ((Z - np.median(Z, axis=0)) ** 2).sum(1)
            inside = np.argsort(dist, kind="stable")[: max(k, int(np.ceil(len(pool) * (1.0 - self.select_trim))))]
            inside = np.sort(inside)
            Z, pool = Z[inside], pool[inside]
        if self.select == "fps":
            return fps_choice(Z, pool, k)
        return kmeans_choice(Z, pool, k, stable_seed(self.seed_, "latref-select", device))

    # ---- target -------------------------------------------------------------------------------
    def adapt(self, device, oracle):
        k = min(len(oracle.default_choice()), oracle.remaining)  # k = the size of the protocol's default choice
        refs = np.intersect1d(self.source_.reference_ids, oracle.pool)
        on_top = len(refs) > 0 and oracle.remaining >= k + len(refs)  # help-paper: HELP's reference archs on top of k
        ids = self._choose(device, oracle, k, exclude=refs if on_top else ())
        if on_top:
            ids = np.r_[ids, refs]
        self.remember_shots(device, ids, oracle.measure(ids))
        ids, y = self.shots_[device]
        X, _ = space_features(self.space_, self.rules, self.stats, self.types_)
        # with no shot the stage averages its columns: the bank's (ms), never the proxies (FLOPs, ...)
        P = np.column_stack([self.P_, self.Q_]) if len(y) else self.P_
        stage = _TargetStage(self.target_alpha_at(len(y)), self.op_penalty).fit(P[ids], X[ids], y)
        self.stages_[device] = stage
        # the whole space at once: predict is a lookup (millions of archs per second)
        self.targets_[device] = positive_floor(stage.predict(P, X), y)
        return self

    def target_alpha_at(self, k: int) -> float:
        """The target stage's L1 strength for ``k`` shots (see ``alpha_decay``)."""
        return self.target_alpha * (ALPHA_SHOTS / max(k, ALPHA_SHOTS)) ** self.alpha_decay

    def predict(self, device, arch_ids):
        return self.targets_[device][np.atleast_1d(np.asarray(arch_ids, dtype=np.int64))]
