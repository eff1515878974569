"""The few-shot protocol, tasks, evaluator and runner on the real data."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from latbench.errors import MethodError, OracleError, TaskError
from latbench.protocol import metrics
from latbench.protocol.trial import make_trial


@pytest.fixture()
def hard3(data):
    from latbench.data.store import load_latency
    from latbench.tasks.spec import load_task

    task = load_task("hard-3")
    return task, load_latency(task.space)


def test_oracle_refuses_the_k_plus_first_arch_and_out_of_pool_archs(hard3):
    task, table = hard3
    trial = make_trial(task, 0, 10, table)
    oracle = next(iter(trial.oracles.values()))
    pool = oracle.pool
    got = oracle.measure(pool[:10])
    assert np.array_equal(got, table.device(oracle.device)[pool[:10]])
    assert np.array_equal(oracle.measure(pool[:3]), got[:3])  # re-measuring is free
    assert oracle.remaining == 0
    with pytest.raises(OracleError, match="exceed the budget of k=10"):
        oracle.measure(pool[10:11])
    outside = np.setdiff1d(np.arange(table.values.shape[1]), pool)[0]
    fresh = make_trial(task, 0, 10, table).oracles[oracle.device]
    with pytest.raises(OracleError, match="not in the query pool"):
        fresh.measure([outside])
    assert fresh.measured == {}


def test_a_method_cannot_reset_the_oracles_count_or_raise_its_budget(hard3):
    """The review's cheat: clear `measured` between chunks to read the whole pool 10 archs at a time."""
    task, table = hard3
    oracle = next(iter(make_trial(task, 0, 10, table).oracles.values()))
    oracle.measure(oracle.pool[:10])
    with pytest.raises((TypeError, AttributeError)):
        oracle.measured.clear()
    with pytest.raises(TypeError):
        oracle.measured[int(oracle.pool[10])] = 1.0
    with pytest.raises(AttributeError):
        oracle.budget = 1000
    with pytest.raises(OracleError, match="exceed the budget of k=10"):
        oracle.measure(oracle.pool[10:20])
    assert list(oracle.measured) == oracle.pool[:10].tolist() and oracle.remaining == 0
    assert repr(oracle) == f"Oracle({oracle.device!r}, pool=1000, budget=10, measured=10)"


def test_an_arch_repeated_in_one_measure_call_is_charged_once(hard3):
    task, table = hard3
    oracle = next(iter(make_trial(task, 0, 1, table).oracles.values()))
    a, b = (int(i) for i in oracle.pool[:2])
    y_a = table.device(oracle.device)[a]
    assert oracle.measure([a, a]).tolist() == [y_a, y_a]
    assert oracle.remaining == 0 and list(oracle.measured) == [a]
    with pytest.raises(OracleError, match="exceed the budget of k=1"):
        oracle.measure([b])


@pytest.mark.parametrize("ids", [[3.7], ["3"], [[1, 2]], [True]])
def test_oracle_refuses_ids_that_are_not_integers(hard3, ids):
    task, table = hard3
    oracle = next(iter(make_trial(task, 0, 10, table).oracles.values()))
    with pytest.raises(OracleError, match="arch ids must be integers"):
        oracle.measure(ids)
    assert oracle.remaining == 10  # nothing was revealed
    assert len(oracle.measure([])) == 0 and len(oracle.measure(np.int64(oracle.pool[0]))) == 1


def test_eval_archs_are_never_in_the_pool_or_source_sample(hard3):
    task, table = hard3
    trial = make_trial(task, 1, 5, table)
    for dev, oracle in trial.oracles.items():
        ev = trial.eval_ids[dev]
        assert np.array_equal(ev, task.pools.eval)
        assert not set(ev.tolist()) & set(trial.source.arch_ids.tolist())
        assert not set(ev.tolist()) & set(oracle.pool.tolist())
        with pytest.raises(OracleError):
            oracle.measure(ev[:1])


def test_k_larger_than_pool_is_refused(hard3):
    task, table = hard3
    with pytest.raises(OracleError, match="larger than the query pool"):
        make_trial(task, 0, len(task.pools.query_pool) + 1, table)


def test_default_choice_is_fixed_by_seed_and_differs_across_trials(hard3):
    task, table = hard3
    a = make_trial(task, 0, 10, table).oracles[task.target[0]].default_choice()
    b = make_trial(task, 0, 10, table).oracles[task.target[0]].default_choice()
    c = make_trial(task, 1, 10, table).oracles[task.target[0]].default_choice()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(set(a.tolist())) == 10


def test_source_data_is_the_source_sample_on_source_devices(hard3):
    task, table = hard3
    src = make_trial(task, 0, 10, table).source
    assert src.devices == task.source and len(src.arch_ids) == 900
    assert np.array_equal(src.device(task.source[0]), table.device(task.source[0])[list(task.pools.source_sample)])
    all_src = make_trial(task, 0, 10, table, source_archs="all").source
    assert len(all_src.arch_ids) == table.values.shape[1] - len(task.pools.eval)


def test_same_seed_gives_identical_metrics(data):
    from latbench.eval.runner import evaluate
    from latbench.methods.registry import make_method
    from latbench.tasks.spec import load_task

    tasks = [load_task("hard-3"), load_task("help-fbnet")]
    a = evaluate(make_method("lookup"), tasks, shots=10, trials=2)
    b = evaluate(make_method("lookup"), tasks, shots=10, trials=2)
    strip = lambda r: [[t.devices for t in tr.trials] for tr in r.results]  # noqa: E731
    assert strip(a) == strip(b)
    assert a.results[0].trials[0].measured != a.results[0].trials[1].measured


def test_metrics_ties_and_constant_predictions():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    m = metrics.compute(y, y * 1.04)
    assert m["spearman"] == pytest.approx(1.0) and m["acc5"] == 1.0 and m["acc10"] == 1.0
    assert m["mape"] == pytest.approx(4.0)
    with pytest.warns(metrics.ConstantPredictionWarning):
        c = metrics.compute(y, np.full(4, 2.5))
    assert c["spearman"] == 0.0 and c["kendall"] == 0.0
    tied = metrics.compute(y, np.array([1.0, 1.0, 2.0, 2.0]))
    assert 0.8 < tied["spearman"] < 1.0  # average ranks, not NaN


@pytest.mark.filterwarnings("ignore::latbench.protocol.metrics.ConstantPredictionWarning")  # kendall_fast of 1 arch
def test_metrics_by_hand():
    from scipy.stats import kendalltau

    y = np.array([10.0, 20.0, 40.0, 80.0])
    m = metrics.compute(y, np.array([11.0, 22.0, 44.0, 96.0]))  # errors 10 %, 10 %, 10 %, 20 %
    assert m["acc10"] == 0.75 and m["acc5"] == 0.0  # +-10 % is inclusive
    assert metrics.compute(y, y * 1.105)["acc10"] == 0.0  # 10.5 % is not within 10 %
    assert m["rmse"] == pytest.approx(np.sqrt(69.25))  # sqrt((1 + 4 + 16 + 256) / 4), not the MAE 5.75
    # Kendall tau-b (ties in the prediction count): 24 / sqrt(28 * 24) = 0.9258; tau-c would give 1.0
    y8, p8 = np.arange(1.0, 9.0), np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0])
    tau_b = kendalltau(y8, p8).statistic  # scipy's default variant
    assert tau_b == pytest.approx(0.9258, abs=1e-4) and metrics.compute(y8, p8)["kendall"] == pytest.approx(tau_b)
    # budgets are percentiles of the TRUE latencies: p50 of 1..5 is 3, truly within {1, 2, 3}, predicted
    # (2y <= 3) only the first: recall 1/3 (budgets from the prediction, p50 = 6, would give 3/5)
    y5 = np.arange(1.0, 6.0)
    b = metrics.compute(y5, 2 * y5)
    assert b["budget_p50_recall"] == pytest.approx(1 / 3) and b["budget_p50_precision"] == 1.0
    # 30 archs: the fastest 5 % are ceil(1.5) = 2 archs; swapping ranks 2 and 3 keeps one of them
    y30 = np.arange(1.0, 31.0)
    p30 = y30.copy()
    p30[[1, 2]] = p30[[2, 1]]
    assert metrics.top_recall(y30, p30) == 0.5 and metrics.compute(y30, p30)["top5_recall"] == 0.5
    assert metrics.kendall_fast(y5, y5) == 1.0


def test_robust_errors_by_hand():
    y = np.array([1.0, 2.0, 4.0, 8.0, 0.01])  # one near-zero measurement, as NB201 on pixel3
    p = np.array([1.1, 1.8, 4.0, 10.0, 1.0])
    ape = np.abs(p - y) / y  # 0.1, 0.1, 0, 0.25, 99
    assert metrics.mdape(y, p) == pytest.approx(10.0)
    assert metrics.compute(y, p)["mape"] == pytest.approx(100 * ape.mean())  # 1989 %: the one arch dominates
    floor = 0.1 * np.median(y)  # 0.2: only the near-zero arch is floored
    want = 100 * np.mean(np.abs(p - y) / np.maximum(y, floor))
    assert metrics.mape_floor(y, p) == pytest.approx(want) and want < 120
    big = np.array([1.0, 2.0, 3.0])
    assert metrics.mape_floor(big, big * 1.2) == pytest.approx(metrics.compute(big, big * 1.2)["mape"])


def test_budget_precision_recall_and_its_empty_cases():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    p = np.array([1.0, 3.5, 2.5, 2.0, 9.0])  # within 3: truth {1,2,3}, prediction {1,3,4}
    assert metrics.budget_precision_recall(y, p, 3.0) == pytest.approx((2 / 3, 2 / 3))
    assert metrics.budget_precision_recall(y, p, 100.0) == (1.0, 1.0)
    # no arch truly meets the budget: nothing to miss (recall 1); proposing any is wrong (precision 0)
    assert metrics.budget_precision_recall(y, p, 0.5) == (1.0, 1.0)
    assert metrics.budget_precision_recall(y, np.full(5, 0.1), 0.5) == (0.0, 1.0)
    # no arch predicted within a budget some archs meet: precision and recall 0
    assert metrics.budget_precision_recall(y, np.full(5, 10.0), 3.0) == (0.0, 0.0)
    m = metrics.compute(y, y)
    assert all(m[k] == 1.0 for k in metrics.BUDGET_METRICS)


def test_top_recall_ties_and_chance_level():
    y = np.arange(1.0, 41.0)  # 40 archs: the fastest 5 % are 2 archs
    assert metrics.top_recall(y, y) == 1.0 and metrics.top_recall(y, y[::-1]) == 0.0
    assert metrics.top_recall(y, np.full(40, 3.0)) == pytest.approx(2 / 40)  # constant: chance level
    p = y.copy()
    p[:3] = 1.0  # three archs tied for fastest, two of them truly in the top 2: expected 2 * (2/3) / 2
    assert metrics.top_recall(y, p) == pytest.approx(2 / 3)
    assert metrics.top_recall(np.array([5.0]), np.array([1.0])) == 1.0  # at least one arch
    truth_tied = np.array([1.0, 1.0, 1.0, 2.0])
    assert metrics.top_recall(truth_tied, np.array([1.0, 2.0, 3.0, 4.0]), percent=50) == pytest.approx(2 / 3)


def test_kendall_within_the_fastest_quartile():
    from scipy.stats import kendalltau

    y = np.arange(1.0, 21.0)
    p = np.r_[[2.0, 1.0, 3.0, 4.0, 6.0], 100 - y[5:]]  # right order in the fastest quartile, reversed after it
    assert metrics.kendall_fast(y, p) == pytest.approx(kendalltau(y[:5], p[:5]).statistic)
    assert metrics.compute(y, p)["kendall"] < 0 < metrics.kendall_fast(y, p)
    with pytest.warns(metrics.ConstantPredictionWarning):
        assert metrics.kendall_fast(y, np.r_[np.ones(5), y[5:]]) == 0.0
    with pytest.warns(metrics.ConstantPredictionWarning):
        assert metrics.kendall_fast(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == 0.0  # one arch: no pair


def test_every_metric_is_finite_and_in_range_on_edge_cases():
    cases = [
        (np.array([2.0]), np.array([1.0])),  # one arch
        (np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])),  # constant truth
        (np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 2.5)),  # constant prediction
        (np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0, 5.0])),  # ties in both
        (np.array([1e-6, 1.0, 2.0]), np.array([5.0, 1.0, 2.0])),  # a near-zero target
    ]
    for y, p in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.ConstantPredictionWarning)
            m = metrics.compute(y, p)
        assert list(m) == list(metrics.METRICS)
        assert all(np.isfinite(v) for v in m.values()), (y, p, m)
        assert metrics.range_problem(m) is None
    for bad in ([1.0, np.nan, 2.0], [1.0, np.inf, 2.0]):
        with pytest.raises(ValueError, match="finite"):
            metrics.compute(np.array([1.0, 2.0, 3.0]), np.array(bad))
        with pytest.raises(ValueError, match="finite"):
            metrics.compute(np.array(bad), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="equal-length"):
        metrics.compute(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="> 0"):
        metrics.compute(np.array([0.0, 1.0]), np.ones(2))
    assert metrics.range_problem({"top5_recall": 1.5}) == "top5_recall 1.5 outside its range [0, 1]"
    assert metrics.range_problem({"mdape": -1.0}).startswith("mdape -1.0 outside")


def test_stored_metric_sets_of_both_schemas_are_accepted_and_checked():
    from latbench.eval.checkpoints import metrics_problem

    y = np.array([1.0, 2.0, 3.0, 4.0])
    full = metrics.compute(y, y * 1.1)
    legacy = {k: full[k] for k in metrics.LEGACY_METRICS}
    assert metrics_problem(full, "x") is None and metrics_problem(legacy, "x") is None
    assert "expected" in metrics_problem({**legacy, "mdape": 1.0}, "x")
    assert metrics_problem({**full, "budget_p10_recall": 2.0}, "x") == "x: budget_p10_recall 2.0 outside its range [0, 1]"


def test_evaluator_rejects_bad_predictions():
    from latbench.protocol.scoring import score

    y = {"dev": np.array([1.0, 2.0, 3.0])}
    for bad, msg in [([1.0, 2.0], "shape"), ([1.0, np.nan, 2.0], "NaN"), ([1.0, -2.0, 3.0], "non-positive")]:
        with pytest.raises(MethodError, match=msg):
            score(y, {"dev": np.array(bad)})
    with pytest.raises(MethodError, match="devices"):
        score(y, {"other": np.array([1.0, 2.0, 3.0])})


def test_a_zero_prediction_is_refused():
    from latbench.protocol.scoring import score

    with pytest.raises(MethodError, match="non-positive"):
        score({"d": np.array([1.0, 2.0, 3.0])}, {"d": np.array([0.0, 1.0, 2.0])})


def test_difficulty_orders_the_tiers(data):
    from latbench.tasks.spec import TIER_THRESHOLDS, list_tasks

    gen = [t for t in list_tasks() if t.kind == "generated"]
    by = {tier: [t.difficulty for t in gen if t.tier == tier] for tier in ("easy", "medium", "hard")}
    assert all(len(v) >= 4 for v in by.values()) and len(gen) >= 12
    assert min(by["easy"]) > max(by["medium"]) and min(by["medium"]) > max(by["hard"])
    assert min(by["easy"]) >= TIER_THRESHOLDS["easy"] > max(by["medium"])
    spaces_per_tier = {tier: {t.space for t in gen if t.tier == tier} for tier in by}
    for space in ("nb201", "fbnet", "ofa"):
        assert sum(space in s for s in spaces_per_tier.values()) >= 2
    for t in gen:
        assert 5 <= len(t.source) <= 17 and 3 <= len(t.target) <= 6


def test_tier_thresholds_are_inclusive_lower_bounds():
    """docs/tasks.md: easy >= 0.93, medium [0.80, 0.93), hard < 0.80."""
    from latbench.tasks.spec import tier_of

    assert [tier_of(d) for d in (1.0, 0.93, 0.9299)] == ["easy", "easy", "medium"]
    assert [tier_of(d) for d in (0.80, 0.7999, -1.0)] == ["medium", "hard", "hard"]


def test_suite_names_select_the_board_suites_tasks(data):
    from latbench.leaderboard.board import suite_tasks
    from latbench.tasks.spec import select

    assert select("main") == suite_tasks("main") == select("generated") and len(select("main")) == 18
    assert select("literature") == suite_tasks("literature") and len(select("literature")) == 7
    assert [t.id for t in select("hard-3,main")][:2] == ["hard-3", select("main")[0].id]


@pytest.mark.real_data
def test_committed_tasks_match_a_fresh_generation(data):
    from latbench import paths
    from latbench.tasks.generation import write_or_check

    assert write_or_check(paths.tasks_dir(), check=True) == []


@pytest.mark.real_data
def test_difficulty_is_recomputed_from_the_data(data):
    from latbench.data.store import load_latency
    from latbench.tasks.generation import correlation
    from latbench.tasks.spec import load_task

    task = load_task("help-nb201")
    table = load_latency("nb201")
    corr = correlation(table.values)
    idx = {d: i for i, d in enumerate(table.devices)}
    best = [max(corr[idx[t], idx[s]] for s in task.source) for t in task.target]
    assert task.difficulty == pytest.approx(np.mean(best), abs=1e-3)


def test_literature_tasks_have_the_papers_device_lists(data):
    from latbench.tasks.spec import load_task

    t = load_task("help-nb201")
    assert t.target == ("titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss")
    assert t.valid == ("titanx_1", "titanx_32", "titanx_256", "gold_6240")
    f5 = load_task("nasflat-f5")
    assert len(f5.source) == 15 and f5.target == ("gold_6226", "essential_ph_1", "samsung_s7", "pixel2")


def test_a_task_naming_a_missing_device_fails_loudly(data, tmp_path, monkeypatch):
    from latbench import paths, tasks
    from latbench.data.store import load_latency

    text = (paths.tasks_dir() / "hard-3.yaml").read_text().replace("pixel3", "pixel9")
    (tmp_path / "hard-3.yaml").write_text(text)
    monkeypatch.setenv("LATBENCH_TASKS", str(tmp_path))
    tasks.clear_cache()
    try:
        task = tasks.load_task("hard-3")
        with pytest.raises(TaskError, match="pixel9"):
            make_trial(task, 0, 10, load_latency("nb201"))
    finally:
        tasks.clear_cache()


def test_task_files_are_validated(tmp_path, monkeypatch):
    from latbench import tasks

    monkeypatch.setenv("LATBENCH_TASKS", str(tmp_path))
    tasks.clear_cache()
    try:
        (tmp_path / "bad.yaml").write_text("id: bad\nversion: 1\nspace: nb999\n")
        with pytest.raises(TaskError, match="bad.yaml: invalid task"):
            tasks.load_task("bad")
        (tmp_path / "bad.yaml").write_text("id: [unclosed\n")
        tasks.clear_cache()
        with pytest.raises(TaskError, match="not valid YAML"):
            tasks.load_task("bad")
    finally:
        tasks.clear_cache()


def test_unknown_task_suggests_close_names(data):
    from latbench.tasks.spec import load_task

    with pytest.raises(TaskError, match="did you mean hard-3"):
        load_task("hard3")


def test_results_json_has_versions_and_per_trial_metrics(data, tmp_path):
    from typer.testing import CliRunner

    from latbench.cli import app

    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", "--method", "flops", "--task", "hard-3", "--trials", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["method"] == "flops" and r["dataset_hash"] and r["latbench_version"]
    task = r["results"][0]
    assert task["task"] == "hard-3" and task["task_version"] == 1 and len(task["trials"]) == 2
    assert set(task["trials"][0]["devices"]) == {"eyeriss", "pixel3", "titanx_256"}
    assert all(len(v) == 10 for v in task["trials"][0]["measured"].values())
    assert set(task["aggregate"]) == set(metrics.METRICS)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "flops", "--task", "hard-33"], "unknown task"),
        (["--method", "flop", "--task", "hard-3"], "did you mean flops"),
        (["--method", "flops", "--task", "hard-3", "--shots", "5000"], "larger than the query pool"),
        (["--method", "tests.test_protocol:NaNMethod", "--task", "hard-3"], "NaN"),
        (["--method", "tests.test_protocol:ShortMethod", "--task", "hard-3"], "shape"),
        (["--method", "tests.test_protocol:GreedyMethod", "--task", "hard-3"], "exceed the budget"),
    ],
)
def test_cli_bad_input_exits_nonzero_without_results_file(data, tmp_path, args, message):
    from typer.testing import CliRunner

    from latbench.cli import app

    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", *args, "--trials", "1", "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


from latbench.methods.base import Method  # noqa: E402  (test methods for the failure paths above)


class NaNMethod(Method):
    def predict(self, device, arch_ids):
        return np.full(len(arch_ids), np.nan)


class ShortMethod(Method):
    def predict(self, device, arch_ids):
        return np.ones(len(arch_ids) - 1)


class GreedyMethod(Method):
    def adapt(self, device, oracle):
        oracle.measure(oracle.pool[: oracle.budget + 1])
        return self

    def predict(self, device, arch_ids):
        return np.ones(len(arch_ids))


@pytest.mark.real_data
def test_help_paper_mode_reproduces_helps_flops_row(data):
    """HELP Table 3 "FLOPS" row on its meta-test query set (BASELINES.md section 2).

    Published: titan_rtx_256 0.950, gold_6226 0.826, pixel2 0.765, raspi4 0.846, eyeriss 0.437,
    fpga 0.900 (mean 0.787). Recomputed from HELP's own files on the 800-arch trimmed query set:
    0.951, 0.830, 0.766, 0.871, 0.385, 0.895 (mean 0.783) -- which this mode must give exactly.
    """
    from latbench.eval.runner import evaluate
    from latbench.methods.registry import make_method
    from latbench.tasks.spec import load_task

    res = evaluate(make_method("flops"), [load_task("help-nb201")], shots=10, trials=1, protocol="help-paper")
    trial = res.results[0].trials[0]
    expected = {"titan_rtx_256": 0.951, "gold_6226": 0.830, "pixel2": 0.766, "raspi4": 0.871, "eyeriss": 0.385, "fpga": 0.895}
    assert {d: round(m["spearman"], 3) for d, m in trial.devices.items()} == expected
    assert round(trial.mean["spearman"], 3) == 0.783
    assert res.results[0].protocol.startswith("help-paper")


def test_help_paper_mode_pools(data):
    from latbench.data.store import get_space, load_latency
    from latbench.tasks.spec import load_task

    task = load_task("help-nb201")
    table = load_latency("nb201")
    refs = get_space("nb201").reference_ids
    trial = make_trial(task, 0, 10, table, protocol="help-paper", reference_ids=refs)
    assert np.array_equal(trial.source.arch_ids, np.arange(900))
    for dev, oracle in trial.oracles.items():
        assert len(trial.eval_ids[dev]) == 800 and trial.eval_ids[dev].min() >= 900
        assert oracle.budget == 20 and set(refs.tolist()) <= set(oracle.pool.tolist())
        assert len(oracle.default_choice()) == 10 and oracle.default_choice().max() < 900
    # HELP Table 3's BRP-NAS row: 900 target samples, more than the 720-arch trimmed range
    big = make_trial(task, 0, 900, table, protocol="help-paper", reference_ids=refs)
    for dev, oracle in big.oracles.items():
        assert np.array_equal(oracle.default_choice(), np.arange(900))
        assert len(oracle.measure(oracle.default_choice())) == 900
        assert len(big.eval_ids[dev]) == 800
    with pytest.raises(OracleError, match="larger than the query pool"):
        make_trial(task, 0, 1000, table, protocol="help-paper", reference_ids=refs)


def test_nasflat_paper_mode_evaluates_on_all_archs(data):
    from latbench.data.store import load_latency
    from latbench.tasks.spec import load_task

    task = load_task("nasflat-f1")
    trial = make_trial(task, 0, 20, load_latency("fbnet"), protocol="nasflat-paper")
    assert all(len(v) == 5000 for v in trial.eval_ids.values())
    assert all(len(o.pool) == 5000 and o.budget == 20 for o in trial.oracles.values())
    with pytest.raises(OracleError, match="unknown protocol"):
        make_trial(task, 0, 20, load_latency("fbnet"), protocol="helpish")


def test_task_configs_load_as_hf_datasets_with_train_and_test(data):
    import datasets

    from latbench.tasks.spec import load_task

    task = load_task("hard-3")
    ds = datasets.load_dataset(str(data / "dataset"), "hard-3")
    assert set(ds) == {"train", "test"}
    assert set(ds["train"].unique("device")) == set(task.source)
    assert set(ds["test"].unique("device")) == set(task.target)
    assert ds["test"].num_rows == 15625 * len(task.target)
    roles = ds["test"].filter(lambda r: r["device"] == task.target[0])["arch_role"]
    assert roles.count("eval") == 2000 and roles.count("query") == 1000


def test_several_shot_counts_reuse_the_fit_and_match_separate_runs(data):
    from latbench.eval.runner import evaluate
    from latbench.methods.registry import make_method
    from latbench.tasks.spec import load_task

    task = load_task("hard-3")
    both = evaluate(make_method("lookup"), [task], shots=[5, 10], trials=2)
    alone = evaluate(make_method("lookup"), [task], shots=10, trials=2)
    assert [r.shots for r in both.results] == [5, 10]
    assert [t.devices for t in both.results[1].trials] == [t.devices for t in alone.results[0].trials]


class CountingMethod(Method):
    """Stateful on purpose: every adapt call raises the scale of all later predictions."""

    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        self.n_ = 0
        return self

    def adapt(self, device, oracle):
        self.n_ += 1
        return self

    def predict(self, device, arch_ids):
        return (self.space_.flops(arch_ids) + 1.0) * (1 + self.n_)  # the scale moves MAPE and RMSE


def test_a_stateful_method_is_adapted_from_a_fresh_copy_of_the_fit_at_each_k(data):
    """What one k's adapt changes must not leak into the next k's (the fitted method is deep-copied per k)."""
    from latbench.eval.runner import evaluate
    from latbench.tasks.spec import load_task

    task = load_task("hard-3")
    both = evaluate(CountingMethod(), [task], shots=[5, 10], trials=1)
    alone = evaluate(CountingMethod(), [task], shots=10, trials=1)
    assert [r.shots for r in both.results] == [5, 10]
    assert both.results[1].trials[0].devices == alone.results[0].trials[0].devices
    assert both.results[0].trials[0].devices == alone.results[0].trials[0].devices  # the shots are never read
