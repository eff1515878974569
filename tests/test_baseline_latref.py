"""latref (latbench's reference predictor): contract suite, the shot budget, determinism, the
active shot choice, its pieces, bad parameters, and that it beats FLOPs on a real hard task."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.stats import spearmanr

from latbench.errors import MethodError
from latbench.eval.checks import check_method
from latbench_baselines import latref
from latbench_baselines.latref import LatRef


def _trial(task_id: str, shots: int, protocol: str = "official", trial: int = 0):
    from latbench.data import store
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task(task_id)
    space = store.get_space(spec.space)
    return (
        spec,
        space,
        make_trial(spec, trial, shots, store.load_latency(spec.space), protocol=protocol, reference_ids=space.reference_ids),
    )


def _adapted(task_id: str, shots: int, protocol: str = "official", **params):
    spec, space, trial = _trial(task_id, shots, protocol)
    m = LatRef(**params).fit(trial.source, space, trial.seed)
    for dev, oracle in trial.oracles.items():
        m.adapt(dev, oracle)
    return spec, trial, m


@pytest.mark.slow
@pytest.mark.parametrize("task", ["help-fbnet", "medium-1"])  # FBNet, OFA (hard-3 = NB201: test_methods.py)
def test_contract_suite(data, task):
    check_method(LatRef, task=task, shots=5)


@pytest.mark.slow
@pytest.mark.parametrize("select", ["fps", "kmeans", "random"])
def test_measures_exactly_k_pool_archs(data, select):
    spec, trial, m = _adapted("medium-1", 10, select=select)
    for dev, oracle in trial.oracles.items():
        ids, y = m.shots_[dev]
        assert len(oracle.measured) == 10 == len(set(ids.tolist()))
        assert set(ids.tolist()) <= set(oracle.pool.tolist())
        assert np.array_equal(y, oracle.measure(ids))  # re-measuring is free: the shots are the measured latencies
    if select == "random":  # the protocol's default choice, untouched
        assert all(np.array_equal(np.sort(m.shots_[d][0]), trial.oracles[d].default_choice()) for d in spec.target)


@pytest.mark.slow
def test_help_paper_measures_the_reference_archs_on_top_of_k(data):
    spec, trial, m = _adapted("help-fbnet", 10, protocol="help-paper")
    refs = set(trial.source.reference_ids.tolist())
    for oracle in trial.oracles.values():
        assert len(oracle.measured) == oracle.budget == 10 + len(refs)
        assert refs <= set(oracle.measured)


@pytest.mark.slow
def test_same_seed_same_predictions_and_shots(data):
    spec, trial, a = _adapted("medium-1", 5)
    _, _, b = _adapted("medium-1", 5)
    ids = trial.eval_ids[spec.target[0]]
    for dev in spec.target:
        assert np.array_equal(a.shots_[dev][0], b.shots_[dev][0])
        assert np.array_equal(a.predict(dev, ids), b.predict(dev, ids))
    c = copy.deepcopy(a)  # the runner deep-copies a fitted method per k: the copy predicts the same
    assert np.array_equal(c.predict(spec.target[0], ids), a.predict(spec.target[0], ids))


def test_fps_starts_central_and_spreads_out():
    Z = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [-5.0, 0.1], [0.0, 5.0], [0.2, 0.1]])
    pool = np.arange(100, 106)
    chosen = latref.fps_choice(Z, pool, 3)
    assert chosen[0] in (100, 101, 105) and len(set(chosen.tolist())) == 3
    assert set(chosen[1:].tolist()) <= {102, 103, 104}  # then the far archs, not the near-duplicates
    assert np.array_equal(latref.fps_choice(Z, pool, 10), pool)  # k >= pool: the whole pool


def test_kmeans_choice_is_distinct_and_deterministic():
    Z = np.random.default_rng(0).normal(size=(200, 3))
    pool = np.arange(200) + 1000
    a, b = latref.kmeans_choice(Z, pool, 12, 7), latref.kmeans_choice(Z, pool, 12, 7)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 12 and set(a.tolist()) <= set(pool.tolist())


def test_pca_scores_keep_the_asked_variance():
    rng = np.random.default_rng(0)
    A = np.column_stack([rng.normal(size=300) * 10, rng.normal(size=300), rng.normal(size=300) * 0.01])
    A = np.column_stack([A, A[:, 0] * 2 + 1])  # a duplicate direction adds no component
    assert latref.pca_scores(A, 0.5).shape == (300, 1)
    assert latref.pca_scores(A, 0.999).shape[1] == 3
    assert latref.pca_scores(A, 1.0).shape[1] <= 4


@pytest.mark.slow
def test_nb201_takes_the_protocols_random_shots_up_to_k_10_and_farthest_point_beyond(data):
    """On NB201 (hard-3) the shots are the protocol's default choice at k = 5 unless random_shots
    says otherwise; at k = 20 they are farthest-point (not the default choice) either way."""
    for k, random in ((5, True), (20, False)):
        spec, trial, m = _adapted("hard-3", k)
        _, _, fps = _adapted("hard-3", k, random_shots=())
        for dev in spec.target:
            default = np.sort(trial.oracles[dev].default_choice())
            assert np.array_equal(np.sort(m.shots_[dev][0]), default) == random, (k, dev)
            assert not np.array_equal(np.sort(fps.shots_[dev][0]), default), (k, dev)
            assert np.array_equal(m.shots_[dev][0], fps.shots_[dev][0]) != random, (k, dev)


def test_target_alpha_is_constant_up_to_five_shots_then_falls():
    m = LatRef(target_alpha=1e-3, alpha_decay=2.0)
    assert m.target_alpha_at(1) == m.target_alpha_at(5) == 1e-3
    assert m.target_alpha_at(10) == pytest.approx(2.5e-4) and m.target_alpha_at(20) == pytest.approx(6.25e-5)
    assert LatRef(alpha_decay=0.0).target_alpha_at(20) == 1e-3


@pytest.mark.slow
def test_alpha_decay_changes_only_the_fits_beyond_five_shots(data):
    """k = 5: the same target stage whatever alpha_decay; k = 20: a weaker L1 moves the fit."""
    for k, same in ((5, True), (20, False)):
        _, trial, a = _adapted("medium-1", k)
        _, _, b = _adapted("medium-1", k, alpha_decay=0.0)
        dev = next(iter(trial.oracles))
        assert np.array_equal(a.shots_[dev][0], b.shots_[dev][0])  # the shot choice does not depend on it
        assert np.array_equal(a.stages_[dev].theta_, b.stages_[dev].theta_) == same, k


@pytest.mark.parametrize(
    "params, match",
    [
        ({"models": ("lasso", "gbdt")}, "models must be"),
        ({"models": ()}, "models must be"),
        ({"select": "greedy"}, "select must be"),
        ({"select_trim": 1.0}, "select_trim must be"),
        ({"alpha_decay": -1.0}, "alpha_decay must be"),
        ({"random_shots": (("nb201",),)}, "random_shots must be"),
        ({"random_shots": (("nb201", "ten"),)}, "random_shots must be"),
        ({"alpha_decay": float("nan")}, "alpha_decay must be"),
        ({"proxies": ("flops", "macs")}, "proxies must be distinct names"),
        ({"proxies": ("flops", "flops")}, "proxies must be distinct names"),
    ],
)
def test_bad_parameters_fail_in_fit_with_a_clear_message(data, params, match):
    _, space, trial = _trial("medium-1", 5)
    with pytest.raises(MethodError, match=match):
        LatRef(**params).fit(trial.source, space, trial.seed)


def _proxy_device_trial(task_id: str, shots: int, proxy):
    """A trial of ``task_id`` whose first target device's latency is a made-up function of one proxy
    column (a device that ranks archs like no source device does)."""
    import dataclasses

    from latbench.data import store
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task(task_id)
    space = store.get_space(spec.space)
    table = store.load_latency(spec.space)
    values = table.values.copy()
    values[table.devices.index(spec.target[0])] = proxy(space)
    table = dataclasses.replace(table, values=values)
    return spec, space, make_trial(spec, 0, shots, table, reference_ids=space.reference_ids)


@pytest.mark.slow
def test_a_target_that_ranks_like_its_kernel_count_is_fitted_by_that_proxy_column(data):
    def kernel_count(space):
        return 0.5 + 0.01 * latref.proxy_column(space, "kernels", "default")

    spec, space, trial = _proxy_device_trial("hard-5", 5, kernel_count)
    dev = spec.target[0]
    m = LatRef().fit(trial.source, space, trial.seed).adapt(dev, copy.deepcopy(trial.oracles[dev]))
    assert m.Q_.shape == (len(space), len(latref.PROXIES))
    theta, n_bank = m.stages_[dev].theta_, m.P_.shape[1]
    # one column of weight ~0.01 on the kernel count, none of the op-wise correction
    assert theta[n_bank + latref.PROXIES.index("kernels")] == pytest.approx(0.01, rel=0.2)
    assert not np.any(theta[n_bank + len(latref.PROXIES) : -1])
    ids = trial.eval_ids[dev]
    assert spearmanr(kernel_count(space)[ids], m.predict(dev, ids)).statistic > 0.99


def test_proxy_columns_are_the_spaces_statistics(data):
    from latbench.data import store
    from latbench.kernels import decomposition

    space = store.get_space("fbnet")
    ids = np.array([0, 17, 4999])
    assert np.array_equal(latref.proxy_column(space, "flops", "default")[ids], space.flops(ids))
    assert np.array_equal(latref.proxy_column(space, "params", "default")[ids], space.params(ids))
    counts = decomposition.count_matrix(space, ids, "default").sum(axis=1).A.ravel()
    assert np.array_equal(latref.proxy_column(space, "kernels", "default")[ids], counts)
    assert counts.min() > 10


@pytest.mark.slow
def test_zero_shots_average_the_bank_not_the_proxies(data):
    spec, space, trial = _trial("hard-5", 0)
    dev = spec.target[0]
    ids = trial.eval_ids[dev]
    preds = [
        LatRef(proxies=p).fit(trial.source, space, trial.seed).adapt(dev, copy.deepcopy(trial.oracles[dev])).predict(dev, ids)
        for p in (latref.PROXIES, ())
    ]
    assert np.array_equal(preds[0], preds[1])


@pytest.mark.real_data
@pytest.mark.slow
def test_beats_flops_on_a_hard_real_task(data):
    """hard-4 (FBNet, GPU targets at batch 1, mobile/CPU sources): FLOPs ranks them at 0.22."""
    from latbench.eval.runner import evaluate
    from latbench.methods.registry import make_method
    from latbench.tasks.spec import load_task

    task = [load_task("hard-4")]
    ours = evaluate(make_method("latref"), task, shots=10, trials=1)
    flops = evaluate(make_method("flops"), task, shots=10, trials=1)
    rho = {name: r.results[0].aggregate["spearman"]["mean"] for name, r in (("latref", ours), ("flops", flops))}
    assert rho["latref"] > rho["flops"] + 0.3, rho
