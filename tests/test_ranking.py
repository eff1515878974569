"""The board's paired ranking: Friedman and Nemenyi against hand-computed cases, Demšar (2006) and
scipy; the critical-difference groups; and ``board.ranking`` on small synthetic entries (no dataset)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from latbench.eval.results import TaskResult, TrialResult
from latbench.leaderboard import board as lb
from latbench.leaderboard import ranking as rk
from latbench.protocol.metrics import LEGACY_METRICS, METRICS

# ------------------------------------------------------------------------------ the statistics
# units x methods (A, B, C), higher is better; the last unit ties B and C
SMALL = np.array([[0.9, 0.8, 0.7], [0.9, 0.7, 0.8], [0.8, 0.9, 0.7], [0.9, 0.8, 0.8]])


def test_unit_ranks_and_friedman_by_hand():
    ranks = rk.unit_ranks(SMALL)
    assert ranks.tolist() == [[1, 2, 3], [1, 3, 2], [2, 1, 3], [1, 2.5, 2.5]]
    assert ranks.mean(axis=0).tolist() == [1.25, 2.125, 2.625]
    # chi2 = 12 N / (k (k+1)) * (sum R^2 - k (k+1)^2 / 4) = 4 * (12.96875 - 12) = 3.875; ties: 1 - 6 / (4 * 3 * 8)
    stat, p = rk.friedman(ranks)
    assert stat == pytest.approx(3.875 / 0.9375)
    assert p == pytest.approx(math.exp(-stat / 2))  # chi2 with 2 degrees of freedom
    lower = rk.unit_ranks(-SMALL, higher_is_better=False)
    assert np.array_equal(lower, ranks)


@pytest.mark.parametrize("seed", range(5))
def test_friedman_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=(30, 6)) + np.arange(6) * 0.2, 1)  # rounding makes ties
    stat, p = rk.friedman(rk.unit_ranks(scores))
    ref = stats.friedmanchisquare(*scores.T)
    assert stat == pytest.approx(ref.statistic, rel=1e-12) and p == pytest.approx(ref.pvalue, rel=1e-9)


def test_friedman_of_all_ties_is_no_evidence():
    assert rk.friedman(rk.unit_ranks(np.ones((5, 3)))) == (0.0, 1.0)


def test_nemenyi_critical_values_are_demsars():
    # Demšar (2006), Table 5(a): q_0.05 for k = 2..10 classifiers
    table = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    assert [rk.nemenyi_q(k) for k in range(2, 11)] == pytest.approx(table, abs=2e-3)
    # his worked example: k = 4 classifiers on N = 14 data sets give CD = 1.25
    assert rk.critical_difference(4, 14) == pytest.approx(1.25, abs=5e-3)
    assert rk.nemenyi_q(1) == math.inf and rk.critical_difference(3, 0) == math.inf


def test_nemenyi_pvalues_by_hand_and_against_scipy():
    # k = 2: the range of two standard normals is |Z1 - Z2| ~ sqrt(2) |N(0, 1)|, so p = 2 (1 - Phi(z))
    n, r = 25, np.array([1.3, 1.7])
    z = 0.4 / math.sqrt(2 * 3 / (6 * n))
    assert rk.nemenyi_pvalues(r, n)[0, 1] == pytest.approx(2 * stats.norm.sf(z), rel=1e-6)
    r = np.array([2.1, 2.5, 3.9, 1.5])
    p = rk.nemenyi_pvalues(r, 40)
    scale = math.sqrt(4 * 5 / (6 * 40))
    for i in range(4):
        assert p[i, i] == 1
        for j in range(4):
            if i != j:
                want = stats.studentized_range.sf(abs(r[i] - r[j]) / scale * math.sqrt(2), 4, np.inf)
                assert p[i, j] == pytest.approx(want, rel=1e-9) and p[i, j] == p[j, i]
    # at the critical difference the p-value is alpha
    cd = rk.critical_difference(4, 40)
    assert rk.nemenyi_pvalues([1.0, 1.0 + cd, 3.0, 3.0], 40)[0, 1] == pytest.approx(0.05, rel=1e-6)


def test_clear_winner_ranks_first_and_alike_methods_share_rank_one():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 1))  # unit difficulty, shared by every method (the pairing)
    scores = base + np.array([0.3, 0.0, 0.0, -0.3]) + rng.normal(scale=0.05, size=(60, 4))
    res = rk.friedman_nemenyi(scores)
    assert res.rejected and res.rank.tolist() == [1, 2, 2, 4]
    assert res.cliques() == [(1, 2)]
    alike = rk.friedman_nemenyi(base + rng.normal(scale=0.05, size=(60, 4)))
    assert not alike.rejected and alike.rank.tolist() == [1, 1, 1, 1] and alike.cliques() == [(0, 3)]


def test_paired_test_separates_what_overlapping_intervals_cannot():
    """A method 0.01 better on every unit of widely varying difficulty: the intervals over units overlap,
    the paired test tells the two apart."""
    rng = np.random.default_rng(1)
    b = rng.uniform(0.2, 0.95, size=40)
    res = rk.friedman_nemenyi(np.c_[b + 0.01, b])
    assert res.rank.tolist() == [1, 2] and res.pvalues[0, 1] < 1e-6
    assert b.mean() + 0.01 - 1.96 * b.std() / math.sqrt(40) < b.mean()  # the unpaired intervals overlap


@pytest.mark.parametrize("seed", range(10))
def test_ranks_never_decrease_down_the_mean_rank_order(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 15))
    scores = rng.normal(size=(int(rng.integers(5, 120)), k)) + rng.normal(scale=0.5, size=k)
    res = rk.friedman_nemenyi(scores)
    order = np.argsort(res.mean_ranks, kind="stable")
    assert np.all(np.diff(res.rank[order]) >= 0)
    assert res.rank[order[0]] == 1
    # rank = 1 + the number of methods significantly better (Nemenyi p < alpha) when the test rejects
    if res.rejected:
        better = [(res.mean_ranks < res.mean_ranks[i]) & (res.pvalues[i] < res.alpha) for i in range(k)]
        assert res.rank.tolist() == [1 + int(b.sum()) for b in better]


def test_cliques_by_hand():
    assert rk.cliques([1.0, 1.5, 2.0, 4.0, 4.2, 6.0], cd=1.0) == [(0, 2), (3, 4)]
    assert rk.cliques([1.0, 1.8, 2.6, 3.4], cd=1.0) == [(0, 1), (1, 2), (2, 3)]
    assert rk.cliques([1.0, 3.0], cd=1.0) == []
    assert rk.cliques([1.0, 9.0, 9.0], cd=math.inf) == [(0, 2)]


def test_degenerate_inputs():
    one = rk.friedman_nemenyi(np.array([[0.5], [0.7]]))
    assert one.rank.tolist() == [1] and not one.rejected
    single_unit = rk.friedman_nemenyi(np.array([[0.9, 0.1, 0.5]]))
    assert single_unit.rank.tolist() == [1, 1, 1] and single_unit.mean_ranks.tolist() == [1, 3, 2]
    empty = rk.friedman_nemenyi(np.zeros((0, 3)))
    assert empty.n_units == 0 and empty.rank.tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="finite"):
        rk.friedman_nemenyi(np.array([[0.5, np.nan], [0.4, 0.3]]))
    with pytest.raises(ValueError, match="units x methods"):
        rk.friedman_nemenyi(np.ones(3))


# ------------------------------------------------------------------------- the board's ranking
def _entry(name: str, spearman, metrics=METRICS, tasks=("easy-1", "easy-2", "hard-1"), shots=10) -> lb.Entry:
    """A synthetic entry whose trial t of task i scores ``spearman[i][t]`` on one device (ranking only)."""
    results = []
    for task, row in zip(tasks, np.asarray(spearman, dtype=float)):
        trials = []
        for t, rho in enumerate(row):
            m = {k: 0.5 for k in metrics} | {"spearman": float(rho)}
            trials.append(TrialResult(trial=t, seed=t, devices={"d": m}, mean=m, worst=m, measured={"d": []}, seconds={}))
        agg = {k: {"mean": float(np.mean([tr.mean[k] for tr in trials])), "std": 0.0} for k in metrics}
        results.append(
            TaskResult(
                task=task, task_version=1, space="nb201", difficulty=0.5, shots=shots, protocol="x", trials=trials, aggregate=agg
            )
        )
    return lb.Entry(
        schema_version="2" if metrics == METRICS else "1",
        method=lb.MethodInfo(name=name, code_ref=f"synthetic:{name}"),
        suite="main",
        latbench_version="0",
        dataset_version="0",
        dataset_hash="0",
        protocol="x",
        task_versions={t: 1 for t in tasks},
        shots=[shots],
        trials=len(results[0].trials),
        results=results,
        seconds=1.0,
        date="2026-01-01",
    )


def test_board_ranking_is_paired_and_ordered_by_mean_rank():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.9, size=(3, 5))  # tasks x trials
    entries = [
        _entry("worse", base - 0.05),
        _entry("best", base + 0.05),
        _entry("middle", base, metrics=LEGACY_METRICS),
        _entry("middle twin", base + 1e-4),
    ]
    table = lb.ranking(entries, "main", 10)
    assert [r["method"] for r in table.rows] == ["best", "middle twin", "middle", "worse"]
    assert [r["mean_rank"] for r in table.rows] == [1.0, 2.0, 3.0, 4.0]
    assert table.n_units == 15 and table.rejected
    ref = stats.friedmanchisquare(*(np.c_[base.ravel() + 0.05, base.ravel() + 1e-4, base.ravel(), base.ravel() - 0.05].T))
    assert table.statistic == pytest.approx(ref.statistic) and table.pvalue == pytest.approx(ref.pvalue)
    p = rk.nemenyi_pvalues([1.0, 2.0, 3.0, 4.0], 15)
    assert [r["p_next"] for r in table.rows[:3]] == pytest.approx([p[0, 1], p[1, 2], p[2, 3]])
    assert table.rows[3]["p_next"] is None
    assert table.cd == pytest.approx(rk.critical_difference(4, 15))
    assert [r["rank"] for r in table.rows] == [1, 1, 2, 3]  # CD = 1.21: 1 vs 2 ties, 1 vs 3 does not
    assert table.cliques == [(0, 1), (1, 2), (2, 3)]
    middle = table.rows[2]
    assert middle["mdape"] is None and middle["top5_recall"] is None and middle["kendall"] == 0.5  # schema 1: missing
    assert table.rows[0]["top5_recall"] == 0.5
    # only the units every entry has are paired; each entry's own mean Spearman still uses all its tasks
    short = _entry("two tasks", base[:2] + 0.2, tasks=("easy-1", "easy-2"))
    table = lb.ranking([*entries, short], "main", 10)
    assert table.n_units == 10 and table.rows[0]["method"] == "two tasks"
    assert lb.ranking(entries, "main", 5).rows == [] and lb.ranking(entries, "literature", 10).rows == []


def test_markdown_shows_missing_metrics_as_a_dash_and_links_the_figures():
    base = np.random.default_rng(4).uniform(0.3, 0.9, size=(3, 5))
    text = lb.render_markdown([_entry("new", base + 0.1), _entry("old", base, metrics=LEGACY_METRICS)])
    assert "![critical-difference diagram, main suite, k = 10](site/cd-main-k10.svg)" in text
    assert "](site/spearman-vs-k-main.svg)" in text and "## main suite, k = 5" not in text
    rows = [line for line in text.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert rows[0].startswith("| 1 | new | 1.00 |") and rows[1].startswith("| 2 | old | 2.00 | — |")
    assert "| old | — / — | — / — | — / — | — | — |" in text
    assert "| new | 0.50 / 0.50 | 0.50 / 0.50 | 0.50 / 0.50 | 0.50 | 0.500 |" in text
    legend = "— marks a metric an entry was stored without (entry schema 1)"
    assert legend in text  # said only while a board holds such an entry
    assert legend not in lb.render_markdown([_entry("new", base + 0.1), _entry("newer", base + 0.2)])


# --------------------------------------------------------------------- one method against the rest
def test_holm_by_hand():
    # sorted: .005 x 4 = .02, .01 x 3 = .03, .03 x 2 = .06, .04 x 1 = .04 -> kept monotone: .06
    assert rk.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rk.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # .5 x 2 = 1; .9 x 1 kept monotone at 1
    assert rk.holm([]).shape == (0,)


def test_against_control_is_wilcoxon_then_holm():
    rng = np.random.default_rng(5)
    control = rng.uniform(0.5, 0.9, 12)
    others = np.c_[control - rng.uniform(0.01, 0.05, 12), control + rng.normal(0, 0.02, 12), control]
    res = rk.against_control(control, others, boot=2000)
    ref = [stats.wilcoxon(control - others[:, j]).pvalue for j in range(2)]
    assert res.pvalues[:2] == pytest.approx(ref) and res.pvalues[2] == 1.0  # identical scores: no evidence
    assert res.adjusted == pytest.approx(rk.holm(res.pvalues))
    assert res.mean_diff == pytest.approx((control[:, None] - others).mean(axis=0))
    assert res.verdict(0) == "better" and res.verdict(2) == "not told apart"
    assert res.ci[0, 0] > 0 and res.ci[2].tolist() == [0.0, 0.0]
    flipped = rk.against_control(others[:, 0], control[:, None])
    assert flipped.verdict(0) == "worse"
    with pytest.raises(ValueError, match="finite"):
        rk.against_control([0.5, np.nan], [[0.4], [0.3]])


def test_compare_pairs_on_common_tasks():
    from latbench.leaderboard import comparison

    rng = np.random.default_rng(6)
    tasks = tuple(f"t{i}" for i in range(12))
    base = rng.uniform(0.4, 0.8, size=(12, 5))
    entries = [_entry("mine", base + 0.02, tasks=tasks)]
    entries += [_entry(f"baseline-{j}", base + rng.normal(0, 0.004, base.shape), tasks=tasks) for j in range(8)]
    control = comparison.pick_control(entries, "mine", "main")
    c = comparison.compare(entries, control, 10)
    assert (c.n_tasks, c.n_units, len(c.rows)) == (12, 60, 8)
    assert all(r["verdict"] == "better" and r["wins"] == 1.0 for r in c.rows)
    assert all(r["p"] == pytest.approx(2 / 2**12) and r["p_holm"] == pytest.approx(8 * 2 / 2**12) for r in c.rows)
    assert [r["diff"] for r in c.rows] == sorted(r["diff"] for r in c.rows)
    assert all(r["diff"] == pytest.approx(c.control_spearman - r["spearman"]) for r in c.rows)
    # paired on the tasks every entry has: with 6, the smallest two-sided Wilcoxon p is 2 / 2^6, which
    # Holm over 9 comparisons can never bring below 0.05 -- few tasks cannot tell methods apart
    short = _entry("fewer tasks", base[:6] - 0.1, tasks=tasks[:6])
    c = comparison.compare([*entries, short], control, 10)
    assert (c.n_tasks, c.n_units) == (6, 30) and c.rows[-1]["diff"] == pytest.approx(0.12)
    assert all(r["p"] == pytest.approx(2 / 2**6) and r["verdict"] == "not told apart" for r in c.rows)
    with pytest.raises(lb.LeaderboardError, match="no main-suite entry of method 'nobody'"):
        comparison.pick_control(entries, "nobody", "main")
    with pytest.raises(lb.LeaderboardError, match="2 main-suite entries of method 'mine'"):
        comparison.pick_control([*entries, _entry("mine", base, tasks=tasks)], "mine", "main")
    assert comparison.pick_control([*entries, _entry("mine", base, tasks=tasks)], control.entry_id, "main") is control
    with pytest.raises(lb.LeaderboardError, match="nothing to compare with"):
        comparison.compare(entries[:1], control, 10)
    with pytest.raises(lb.LeaderboardError, match="no \\(task, trial\\) unit at k = 5"):
        comparison.compare(entries, control, 5)


def _cli(*args):
    from clirun import run_cli

    return run_cli(*args, env={"COLUMNS": "200"})


def test_compare_command_on_the_committed_board():
    names = {e.method.name for e in lb.list_entries() if e.suite == "main"}
    res = _cli("leaderboard", "compare", "latref", "-k", "10")
    assert res.exit_code == 0, res.stderr
    assert "latref (" in res.stdout and "vs the main suite, k = 10: 18 tasks, 90 (task, trial) units" in res.stdout
    rows = [line.split("│")[1].strip() for line in res.stdout.splitlines() if line.startswith("│")]
    assert sorted(rows) == sorted(names - {"latref"})
    res = _cli("leaderboard", "compare", "nobody")
    assert res.exit_code == 1 and res.stderr.startswith("error: no main-suite entry of method 'nobody'")


def test_compare_prints_names_as_text_not_markup(monkeypatch):
    base = np.random.default_rng(7).uniform(0.4, 0.8, size=(3, 5))
    hostile = "[bold red]x[/] [link=https://evil.example]y[/link]"
    monkeypatch.setattr(lb, "list_entries", lambda: [_entry("mine", base + 0.01), _entry(hostile, base)])
    res = _cli("leaderboard", "compare", "mine", "-k", "10")
    assert res.exit_code == 0, res.stderr
    assert hostile in res.stdout
