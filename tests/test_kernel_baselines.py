"""Kernel-level baselines adapted to end-to-end data: op-wise (ICPE'23), nn-Meter, LitePred.

The contract suite on hard-3 runs for every registered method in test_methods.py; here the same
contract on an FBNet and an OFA task, plus the pieces each method is built from."""

from __future__ import annotations

import numpy as np
import pytest

from latbench.eval.checks import check_method
from latbench.kernels import decomposition as kernels
from latbench.methods.registry import resolve
from latbench_baselines import litepred, nn_meter, opwise

NAMES = ["opwise-lasso", "opwise-rf", "opwise-gbdt", "opwise-mlp", "nn-meter", "litepred"]


@pytest.fixture()
def dataset(data):
    """The session dataset built from the mirror (conftest)."""
    yield data


def _trial(task_id: str, shots: int):
    from latbench.data import store
    from latbench.data.store import get_space
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task(task_id)
    space = get_space(spec.space)
    return spec, space, make_trial(spec, 0, shots, store.load_latency(spec.space), reference_ids=space.reference_ids)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("task", ["help-fbnet", "medium-1"])  # FBNet, OFA (hard-3 = NB201: test_methods.py)
@pytest.mark.slow
def test_contract_suite(dataset, name, task):
    cls = resolve(name)
    check_method(cls, task=task, shots=5, params=cls.check_params)


def test_all_are_registered_and_say_they_are_adapted():
    for name in NAMES:
        cls = resolve(name)
        assert cls.name == name
        doc = (cls.__doc__ or "") + (__import__(cls.__module__, fromlist=["x"]).__doc__ or "")
        assert "adapted" in doc.lower() and "end-to-end" in doc


# ---- op-wise -------------------------------------------------------------------------------
def test_relative_nnlasso_recovers_a_nonnegative_model_in_percentage_error():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 5, (200, 4))
    theta = np.array([0.5, 0.0, 2.0, 0.3])
    y = x @ theta + 0.7  # 0.7 ms overhead
    est = opwise.relative_nnlasso(np.column_stack([x, np.ones(len(x))]), y, alpha=1e-8)
    np.testing.assert_allclose(est, np.r_[theta, 0.7], atol=1e-3)
    # percentage error: a huge latency does not dominate the fit of the small ones
    y2 = y.copy()
    y2[0] *= 50
    est2 = opwise.relative_nnlasso(np.column_stack([x, np.ones(len(x))]), y2, alpha=1e-8)
    small = np.column_stack([x, np.ones(len(x))])[1:] @ est2
    assert np.median(np.abs(small - y[1:]) / y[1:]) < 0.05
    assert np.all(opwise.relative_nnlasso(-np.abs(x), y, alpha=1e-3) >= 0)  # never negative


def test_opwise_lasso_target_model_is_an_opwise_linear_model(dataset):
    spec, space, trial = _trial("hard-3", 10)
    m = opwise.OpwiseLasso().fit(trial.source, space, trial.seed)
    assert all(np.all(th >= 0) for th in m.models_)  # per-source op costs and overhead >= 0
    dev = spec.target[0]
    m.adapt(dev, trial.oracles[dev])
    stage = m.targets_[dev]
    assert np.all(stage.theta_ >= 0)
    # sum_d w_d f_d(x) + x.beta + c with f_d linear  =>  one op-wise linear model with coefs >= 0
    n_src = len(m.models_)
    w, beta, c = stage.theta_[:n_src], stage.theta_[n_src:-1], stage.theta_[-1]
    coef = sum(wd * th[:-1] for wd, th in zip(w, m.models_)) + beta
    overhead = sum(wd * th[-1] for wd, th in zip(w, m.models_)) + c
    ids = trial.eval_ids[dev][:50]
    x = m._features(ids)
    np.testing.assert_allclose(np.maximum(x @ coef + overhead, 0), m.predict(dev, ids), rtol=1e-9)
    assert np.all(coef >= 0) and overhead >= 0


@pytest.mark.parametrize("space_name", ["nb201", "ofa"])
def test_whole_space_type_sums_equal_the_sums_of_the_asked_archs(dataset, space_name):
    from latbench.data.store import get_space

    space = get_space(space_name)
    ids = np.array([len(space) - 1, 0, 7, 7, 1234])
    _, cols = kernels.type_sums(space, np.arange(200), "default", opwise.DEFAULT_STATS)
    types = sorted({c.split(":")[0] for c in cols})
    whole = opwise.space_type_sums(space, "default", opwise.DEFAULT_STATS, types)
    asked, _ = kernels.type_sums(space, ids, "default", opwise.DEFAULT_STATS, types=types)
    assert whole.shape == (len(space), asked.shape[1])
    assert np.array_equal(whole[ids], asked)  # bit for bit: predictions do not move
    assert opwise.space_type_sums(space, "default", opwise.DEFAULT_STATS, types) is whole  # built once
    assert not whole.flags.writeable  # shared by every method in the process


def test_opwise_predict_refuses_an_arch_id_outside_the_space(dataset):
    from latbench.errors import UnknownArchError

    spec, space, trial = _trial("hard-3", 5)
    m = opwise.OpwiseLasso().fit(trial.source, space, trial.seed)
    dev = spec.target[0]
    m.adapt(dev, trial.oracles[dev])
    with pytest.raises(UnknownArchError, match=rf"nb201: arch id {len(space)} out of range"):
        m.predict(dev, np.array([0, len(space)]))
    with pytest.raises(UnknownArchError, match="arch id -1 out of range"):
        m.predict(dev, np.array([-1]))


def test_opwise_lasso_without_source_prior(dataset):
    spec, space, trial = _trial("hard-3", 10)
    m = opwise.OpwiseLasso(prior="none").fit(trial.source, space, trial.seed)
    dev = spec.target[0]
    m.adapt(dev, trial.oracles[dev])
    pred = m.predict(dev, trial.eval_ids[dev])
    assert np.isfinite(pred).all() and (pred > 0).all() and np.ptp(pred) > 0


# ---- nn-Meter ------------------------------------------------------------------------------
def test_nn_meter_forests_use_nn_meters_hyperparameters():
    from latbench.kernels import regressors

    m = nn_meter.NNMeter()
    rf = m._forest("conv-bn-relu", 7)
    assert (rf.max_depth, rf.n_estimators, rf.max_features, rf.random_state) == (70, 320, 6, 10)
    rf = m._forest("se", 2)
    assert (rf.max_depth, rf.n_estimators, rf.max_features) == (20, 290, 2)
    rf = m._forest("hsigmoid", 2)  # no nn-Meter entry: its fallback, "auto" -> 1.0
    assert (rf.max_depth, rf.n_estimators, rf.max_features) == (50, 370, 1.0)
    assert nn_meter.NNMeter(hardware="tflite_gpu")._forest("dwconv-bn-relu", 7).n_estimators == 240
    assert regressors.family_features("conv-bn-relu") == ("hw", "cin", "cout", "ks", "stride", "flops", "params")
    assert kernels.predictor_family("conv-bn-hswish") == "conv-bn-relu"  # nn-Meter: one conv predictor


def test_backfitting_recovers_additive_kernel_latencies(dataset):
    """With latencies that truly are sums of kernel latencies, the backfitted forests reproduce them."""
    from latbench.data.store import get_space

    space = get_space("fbnet")
    ids, held = np.arange(600), np.arange(600, 900)
    kernels.count_matrix(space, held, "tflite-cpu")  # every kernel of both sets is in the catalogue now
    counts = kernels.count_matrix(space, ids, "tflite-cpu")
    cat = kernels.kernel_catalog("tflite-cpu")
    dw = (cat["family"] == "dwconv-bn-relu").to_numpy()
    true = 0.02 + cat["flops"].to_numpy() * 0.01 + cat["mem"].to_numpy() * 0.3 * dw  # ms per kernel
    bank = nn_meter.KernelBank("tflite-cpu", nn_meter.NNMeter()._forest, rounds=2, inner=200).fit(counts, counts @ true)
    c2 = kernels.count_matrix(space, held, "tflite-cpu")
    pred, truth = c2 @ bank.predict_codes(), c2 @ true
    assert np.median(np.abs(pred - truth) / truth) < 0.03


def test_nn_meter_source_fit_is_shared_across_trials_and_rescales_per_kernel_family(dataset):
    spec, space, trial = _trial("hard-3", 10)
    params = dict(max_trees=8, rounds=1)
    a = nn_meter.NNMeter(**params).fit(trial.source, space, trial.seed)
    b = nn_meter.NNMeter(**params).fit(trial.source, space, trial.seed + 1)
    assert a.banks_ is b.banks_  # the seed does not enter the source fit (random_state 10)
    dev = spec.target[0]
    a.adapt(dev, trial.oracles[dev])
    d, scales = a.targets_[dev]
    assert 0 <= d < len(trial.source.devices) and all(s >= 0 for s in scales.values())
    assert len(set(np.round(list(scales.values()), 9))) > 1  # per-family scales, not one global factor


def test_family_scales_shrink_to_the_common_scale():
    rng = np.random.default_rng(0)
    Q = rng.uniform(0.1, 1, (6, 3))
    y = Q @ np.array([1.0, 3.0, 0.5])
    free = nn_meter.family_scales(Q, y, base=1.0, shrink=0.0)
    np.testing.assert_allclose(free, [1.0, 3.0, 0.5], rtol=1e-6)
    tied = nn_meter.family_scales(Q, y, base=1.5, shrink=1e6)
    np.testing.assert_allclose(tied, 1.5, rtol=1e-3)


# ---- LitePred ------------------------------------------------------------------------------
def test_litepred_similarity_picks_the_smallest_kl():
    y = np.array([1.0, 2.0, 4.0, 8.0])
    P = np.column_stack([y[::-1], 3 * y + 0.01, np.ones(4)])  # reversed, same shape, flat
    scores = litepred.kl_scores(P, y)
    assert int(np.argmin(scores)) == 1  # LitePred's detector sorts descending and would pick 0


def test_litepred_finetunes_a_copy_of_the_most_similar_pool_device(dataset):
    spec, space, trial = _trial("help-fbnet", 10)
    m = litepred.LitePred(hidden=(8,), epochs=20, rounds=1, finetune_epochs=20).fit(trial.source, space, trial.seed)
    dev = spec.target[0]
    m.adapt(dev, trial.oracles[dev])
    bank, scale, best = m.targets_[dev]
    src = m.pool_[best]
    assert bank is not src and scale > 0
    tuned = [f for f in bank.models_ if bank.models_[f] is not src.models_[f]]
    assert tuned and all(src.models_[f] is not None for f in tuned)
    ids = trial.eval_ids[dev][:20]
    counts = kernels.count_matrix(space, ids, "tflite-cpu")
    assert not np.allclose(counts @ bank.predict_codes(), counts @ src.predict_codes())
