"""Paired ranking of methods scored on the same units: Friedman test, Nemenyi post-hoc test, CD diagram.

Every method on a board suite is scored on the same (task, trial) units: the same tasks and, per
trial, the same seed and so the same measured archs. A paired procedure uses that: within each
unit the methods are ranked (1 = best, ties share the average rank), and a method's *mean rank*
over the units is its summary. Following Demšar (2006, "Statistical comparisons of classifiers
over multiple data sets", JMLR 7):

1. the **Friedman test** asks whether all methods are alike (χ² statistic with the tie correction,
   as ``scipy.stats.friedmanchisquare``);
2. if it rejects at ``alpha``, the **Nemenyi test** compares every pair: two methods differ when
   their mean ranks differ by more than the *critical difference*
   ``CD = q_alpha * sqrt(K (K + 1) / (6 N))`` (``q_alpha``: the studentized range quantile over
   ``sqrt(2)``, K methods, N units). Its p-value for a pair is the studentized range tail at
   ``|R_i - R_j| / sqrt(K (K + 1) / (6 N)) * sqrt(2)``.

A method's **rank** is 1 + the number of methods whose mean rank is lower than its own by more
than CD (all 1 when the Friedman test does not reject). Because Nemenyi decides on mean ranks only,
these ranks never decrease down the table sorted by mean rank, and the groups drawn in the
critical-difference diagram (:func:`cliques`) are exactly the runs of methods not told apart.

:func:`against_control` answers a narrower question with more power: is one method better than
each of the others (``latbench leaderboard compare``)?
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.05


@dataclass(frozen=True)
class PairedRanking:
    """The outcome of :func:`friedman_nemenyi` for K methods on N units (arrays in input order)."""

    mean_ranks: np.ndarray  #: per method, its mean rank over the units (1 = best)
    n_units: int
    statistic: float  #: Friedman χ² (tie-corrected); 0 when there is nothing to test
    pvalue: float  #: Friedman p-value; 1 when there is nothing to test
    cd: float  #: Nemenyi critical difference (inf when there is nothing to test)
    alpha: float
    pvalues: np.ndarray  #: K x K Nemenyi p-values (1 on the diagonal; meaningful only when :attr:`rejected`)
    rank: np.ndarray  #: per method: 1 + the number of methods significantly better (all 1 unless rejected)

    @property
    def rejected(self) -> bool:
        """Whether the Friedman test rejects "all methods alike" (only then does the post-hoc test apply)."""
        return self.pvalue < self.alpha

    def cliques(self) -> list[tuple[int, int]]:
        """:func:`cliques` of the methods sorted by mean rank (all one group unless :attr:`rejected`)."""
        return cliques(np.sort(self.mean_ranks), self.cd if self.rejected else float("inf"))


def unit_ranks(scores, higher_is_better: bool = True) -> np.ndarray:
    """Per unit (row), the rank of each method (column): 1 = best, ties share their average rank."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    return rankdata(-scores if higher_is_better else scores, axis=1)


def friedman(ranks) -> tuple[float, float]:
    """Friedman's χ² with the tie correction, and its p-value (K - 1 degrees of freedom), from a
    units x methods matrix of within-unit ranks (:func:`unit_ranks`); (0, 1) when every unit is one tie."""
    from scipy.stats import chi2, tiecorrect

    ranks = np.asarray(ranks, dtype=np.float64)
    n, k = ranks.shape
    if n < 1 or k < 2:
        return 0.0, 1.0
    sums = ranks.sum(axis=0)
    stat = 12.0 / (n * k * (k + 1)) * float(np.sum(sums**2)) - 3.0 * n * (k + 1)
    correction = float(np.mean([tiecorrect(row) for row in ranks]))  # 1 - sum(t^3 - t) / (n k (k^2 - 1))
    if correction <= 0:
        return 0.0, 1.0
    stat = max(stat / correction, 0.0)
    return float(stat), float(chi2.sf(stat, k - 1))


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """Demšar's ``q_alpha`` for K methods: the studentized range (K groups, infinite df) quantile / sqrt(2)."""
    from scipy.stats import studentized_range

    if k < 2:
        return float("inf")
    return float(studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """The Nemenyi critical difference of mean ranks for K methods on N units."""
    if k < 2 or n < 1:
        return float("inf")
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6.0 * n)))


def nemenyi_pvalues(mean_ranks, n: int) -> np.ndarray:
    """K x K Nemenyi p-values of the differences of mean ranks over N units."""
    from scipy.stats import studentized_range

    r = np.asarray(mean_ranks, dtype=np.float64)
    k = len(r)
    if k < 2 or n < 1:
        return np.ones((k, k))
    z = np.abs(r[:, None] - r[None, :]) / np.sqrt(k * (k + 1) / (6.0 * n))
    p = np.ones((k, k))
    upper = np.triu_indices(k, 1)
    p[upper] = np.clip(studentized_range.sf(z[upper] * np.sqrt(2), k, np.inf), 0.0, 1.0)
    return np.minimum(p, p.T)


def friedman_nemenyi(scores, *, higher_is_better: bool = True, alpha: float = ALPHA) -> PairedRanking:
    """Rank the columns (methods) of a units x methods score matrix (see the module docstring).

    Needs no NaN: the caller keeps only units every method was scored on. With one method, or fewer
    than two units, there is nothing to test: every rank is 1.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a units x methods matrix (got shape {scores.shape})")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite: keep only the units every method was scored on")
    n, k = scores.shape
    if n == 0:
        return PairedRanking(np.ones(k), 0, 0.0, 1.0, float("inf"), alpha, np.ones((k, k)), np.ones(k, dtype=int))
    ranks = unit_ranks(scores, higher_is_better)
    mean_ranks = ranks.mean(axis=0)
    stat, p = friedman(ranks) if n >= 2 else (0.0, 1.0)
    cd = critical_difference(k, n, alpha)
    rank = np.ones(k, dtype=int)
    if p < alpha:
        rank = 1 + np.sum(mean_ranks[None, :] < mean_ranks[:, None] - cd, axis=1)
    return PairedRanking(mean_ranks, n, stat, p, cd, alpha, nemenyi_pvalues(mean_ranks, n), rank.astype(int))


def cliques(sorted_mean_ranks, cd: float) -> list[tuple[int, int]]:
    """The groups a critical-difference diagram joins with a bar: maximal runs ``(first, last)`` (indices
    into the ascending ``sorted_mean_ranks``, ``last > first``) whose mean ranks span at most ``cd``."""
    r = np.asarray(sorted_mean_ranks, dtype=np.float64)
    out: list[tuple[int, int]] = []
    for i in range(len(r)):
        j = int(np.searchsorted(r, r[i] + cd, side="right")) - 1
        if j > i and not (out and out[-1][1] >= j):
            out.append((i, j))
    return out


# ------------------------------------------------------------------------ one method against the rest
@dataclass(frozen=True)
class ControlComparison:
    """The outcome of :func:`against_control` for one control method and M others (arrays in input order)."""

    mean_diff: np.ndarray  #: per other method: mean over tasks of (control - other)
    ci: np.ndarray  #: M x 2: 95 % paired bootstrap interval of ``mean_diff`` (tasks resampled)
    pvalues: np.ndarray  #: Wilcoxon signed-rank p-value (two-sided) of the per-task differences
    adjusted: np.ndarray  #: ``pvalues`` after Holm's step-down adjustment over the M comparisons
    alpha: float

    def verdict(self, i: int) -> str:
        """ "better" / "worse" (control vs other ``i``) when its Holm-adjusted p is below alpha, else "not told apart"."""
        if self.adjusted[i] >= self.alpha:
            return "not told apart"
        return "better" if self.mean_diff[i] > 0 else "worse"


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest of M p-values times (M - i + 1), kept monotone, capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    scaled = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = scaled
    return out


def against_control(control, others, *, alpha: float = ALPHA, boot: int = 10000, seed: int = 0) -> ControlComparison:
    """Compare one method (the control) with each of M others on the same N tasks.

    ``control``: N per-task scores (higher is better; the mean over trials of each task); ``others``:
    N x M. A comparison with a control, with Holm's step-down procedure over the M tests (as Demšar
    2006 recommends for it); each test is a Wilcoxon signed-rank test on the N paired differences
    rather than a mean-rank test, whose outcome for a pair would depend on which other methods are on
    the board (Benavoli, Corani and Mangili 2016, "Should we really use post-hoc tests based on
    mean-ranks?", JMLR 17). Tasks, not (task, trial) units, are the paired observations, because
    trials of one task share its devices and pools. Beside it, a 95 % bootstrap interval of the mean
    difference (tasks resampled with replacement, ``boot`` times).
    """
    from scipy.stats import wilcoxon

    control = np.asarray(control, dtype=np.float64)
    others = np.asarray(others, dtype=np.float64).reshape(len(control), -1)
    if not (np.isfinite(control).all() and np.isfinite(others).all()):
        raise ValueError("scores must be finite: keep only the tasks every method was scored on")
    diff = control[:, None] - others
    n, m = diff.shape
    rng = np.random.default_rng(seed)
    draws = diff[rng.integers(0, n, (boot, n))].mean(axis=1) if n else np.zeros((boot, m))
    ci = np.percentile(draws, [2.5, 97.5], axis=0).T if n else np.zeros((m, 2))
    pvalues = np.ones(m)
    for j in range(m):
        if n and np.any(diff[:, j] != 0):
            pvalues[j] = float(wilcoxon(diff[:, j]).pvalue)
    return ControlComparison(diff.mean(axis=0) if n else np.zeros(m), ci, pvalues, holm(pvalues), alpha)
