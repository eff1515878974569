"""Faithful kernel-level baselines: trained on the profiler's measured kernel latencies.

The committed measurements (latbench/data/measured/) include per-layer kernel tables for the eager
PyTorch devices; measured-<space>-kernels tasks put one such device on each side. The oracle
reveals a measured arch's kernel rows; methods with variant='faithful' train on them."""

from __future__ import annotations

import numpy as np
import pytest

from latbench.data.store import load_latency
from latbench.errors import MethodError, OracleError
from latbench.eval.checks import check_method
from latbench.kernels import decomposition as kernels
from latbench.methods.registry import make_method, resolve

pytestmark = pytest.mark.slow  # learned/kernel models: the whole module is outside the fast subset

FAITHFUL = ["nn-meter", "litepred", "opwise-lasso", "opwise-rf", "opwise-gbdt", "opwise-mlp"]
TARGET = "epyc-2c-torch-t1-bs1-fp32"


@pytest.fixture(autouse=True)
def _kernel_tasks(kernel_tasks):
    """Every test here reads the kernel tasks (user tasks, see conftest.kernel_tasks)."""


def _trial(task_id: str, shots: int):
    from latbench.data import store
    from latbench.data.store import get_space
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task(task_id)
    space = get_space(spec.space)
    trial = make_trial(
        spec, 0, shots, store.load_latency(spec.space), reference_ids=space.reference_ids, kernels=store.load_kernels(spec.space)
    )
    return spec, space, trial


def test_kernel_tasks_pair_devices_that_have_kernel_tables(data):
    from latbench.data import store
    from latbench.tasks.spec import load_task

    for space in ("nb201", "fbnet"):
        task = load_task(f"measured-{space}-kernels")
        with_tables = set(store.load_kernels(space))
        assert task.target == (TARGET,) and set(task.source) <= with_tables and task.source


def test_oracle_reveals_kernel_rows_only_of_measured_archs(data):
    spec, space, trial = _trial("measured-nb201-kernels", 5)
    oracle = trial.oracles[TARGET]
    assert oracle.has_kernels
    ids = oracle.default_choice()
    with pytest.raises(OracleError, match="has not been measured"):
        oracle.kernels(ids[:1])
    y = oracle.measure(ids)
    rows = oracle.kernels(ids)
    assert set(rows["arch_id"]) == set(ids.tolist())
    # eager PyTorch: every timed layer is a torch-eager kernel; their sum stays below end to end
    per_arch = rows.groupby("arch_id")["latency_ms"].sum().loc[ids].to_numpy()
    assert np.all(per_arch < y) and np.all(per_arch > 0.5 * y)
    # the source side carries the source devices' kernel rows on the source archs only
    src = trial.source.kernels[spec.source[0]]
    assert set(src["arch_id"]) <= set(trial.source.arch_ids.tolist()) and len(src) > 1000


def test_devices_without_kernel_tables_say_so(data):
    spec, space, trial = _trial("help-nb201", 5)
    dev = spec.target[0]
    oracle = trial.oracles[dev]
    assert not oracle.has_kernels and trial.source.kernels == {}
    oracle.measure(oracle.default_choice())
    with pytest.raises(OracleError, match="no kernel-level measurements for this device"):
        oracle.kernels(oracle.default_choice())
    m = make_method("nn-meter", variant="faithful").fit(trial.source, space, trial.seed)
    with pytest.raises(OracleError, match="no kernel-level measurements"):
        m.adapt(dev, trial.oracles[spec.target[1]])
    with pytest.raises(MethodError, match="no source device of this task has kernel-level measurements"):
        make_method("litepred", variant="faithful").fit(trial.source, space, trial.seed)
    with pytest.raises(MethodError, match="variant must be 'adapted'"):
        make_method("opwise-rf", variant="exact").fit(trial.source, space, trial.seed)


def test_measured_code_latency_averages_each_kernel_configuration(data):
    from latbench.data import store
    from latbench.data.store import get_space

    space = get_space("nb201")
    rows = store.load_kernels("nb201")[TARGET]
    few = rows[rows["arch_id"].isin(rows["arch_id"].unique()[:10])]
    codes, lat, n = kernels.measured_code_latency(space, few)
    assert n.sum() == len(few) and len(codes) == len(set(codes.tolist()))
    cat = kernels.kernel_catalog("torch-eager").loc[codes]
    conv3 = (cat["type"] == "conv") & (cat["ks"] == 3) & (cat["hw"] == 32) & (cat["cin"] == 16) & (cat["cout"] == 16)
    bn = (cat["type"] == "bn") & (cat["hw"] == 32)
    assert lat[conv3.to_numpy()][0] > 3 * lat[bn.to_numpy()][0]  # a 3x3 conv costs more than a batch norm
    bad = few[["arch_id", "layer", "latency_ms"]].assign(layer=few["layer"] + 1000)  # no signature: the index counts
    with pytest.raises(Exception, match="outside the arch's layer list"):
        kernels.measured_code_latency(space, bad)


@pytest.mark.parametrize("name", FAITHFUL)
def test_faithful_contract_suite(data, name):
    cls = resolve(name)
    check_method(cls, task="measured-fbnet-kernels", shots=5, params={**cls.check_params, "variant": "faithful"})


def test_faithful_nn_meter_sums_forests_fitted_on_the_target_kernels(data):
    spec, space, trial = _trial("measured-nb201-kernels", 10)
    m = make_method("nn-meter", variant="faithful").fit(trial.source, space, trial.seed)
    assert m.banks_ == []  # nn-Meter has no transfer: nothing learned from the sources
    oracle = trial.oracles[TARGET]
    m.adapt(TARGET, oracle)
    bank = m.targets_[TARGET]
    ids = np.array(sorted(oracle.measured))
    codes, lat, _ = kernels.measured_code_latency(space, oracle.kernels(ids))
    # deep unbootstrapped forests reproduce the measured configurations
    np.testing.assert_allclose(bank.predict_codes()[codes], lat, rtol=0.02)
    ev = trial.eval_ids[TARGET]
    pred = m.predict(TARGET, ev)
    truth = load_latency(spec.space).device(TARGET)[ev]  # the runner's truth, never the oracle's
    from scipy.stats import spearmanr

    assert spearmanr(pred, truth).statistic > 0.9  # NB201: a few archs reveal every kernel configuration
    assert np.median(pred / truth) < 1.0  # a pure kernel sum misses eager PyTorch's framework overhead


def test_faithful_opwise_adds_a_framework_overhead_and_litepred_picks_from_the_kernel_pool(data):
    spec, space, trial = _trial("measured-fbnet-kernels", 10)
    oracle = trial.oracles[TARGET]
    m = make_method("opwise-lasso", variant="faithful").fit(trial.source, space, trial.seed)
    m.adapt(TARGET, oracle)
    bank, overhead = m.targets_[TARGET]
    assert overhead > 0
    ev = trial.eval_ids[TARGET]
    truth = load_latency(spec.space).device(TARGET)[ev]
    assert 0.85 < np.median(m.predict(TARGET, ev) / truth) < 1.15
    lp = make_method("litepred", variant="faithful", epochs=30, finetune_epochs=10).fit(trial.source, space, trial.seed)
    assert len(lp.pool_) == len(spec.source) and lp.pool_devices_ == sorted(spec.source)
    lp.adapt(TARGET, oracle)
    assert lp.picked_[TARGET] in spec.source
    pred = lp.predict(TARGET, ev)
    assert np.isfinite(pred).all() and (pred > 0).all() and np.ptp(pred) > 0


def test_kernel_rows_find_their_layers_by_signature(data):
    """The dataset's kernel rows index the current layer list (data build rewrites ``layer``), and
    measured_code_latency matches rows by signature, so an index from an older layer list (NB201
    gained unprofiled ``zero`` layers) cannot mislabel a row; without signature columns it trusts
    the index."""
    from latbench.data import store
    from latbench.data.store import get_space

    space = get_space("nb201")
    rows = store.load_kernels("nb201")[TARGET]
    zero = [a for a in rows["arch_id"].unique()[:400] if any(l.type == "zero" for l in space.layers(a))][:5]
    few = rows[rows["arch_id"].isin(zero)].reset_index(drop=True)
    assert len(zero) == 5
    for r in few.itertuples():
        layer = space.layers(r.arch_id)[r.layer]
        assert kernels.layer_signature(layer) == (r.op, r.h, r.cin, r.cout, r.kernel, r.stride, r.groups)
    want = kernels.measured_code_latency(space, few)
    stale = few.assign(layer=few["layer"] + 1)  # as if measured before the zero layers existed
    for got in (kernels.measured_code_latency(space, stale), kernels.measured_code_latency(space, few[::-1])):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1])
    by_index = kernels.measured_code_latency(space, few[["arch_id", "layer", "latency_ms"]])
    np.testing.assert_array_equal(by_index[0], want[0])
    wrong = few.assign(cin=few["cin"] + 1)
    with pytest.raises(Exception, match="names a layer its layer list does not have"):
        kernels.measured_code_latency(space, wrong)


def test_unprofiled_kernels_are_predicted_as_zero(data):
    """add and zero kernels have no measured rows: a measured bank predicts them as 0 ms."""
    from latbench_baselines.kernel_bank import UNPROFILED

    spec, space, trial = _trial("measured-nb201-kernels", 10)
    m = make_method("nn-meter", variant="faithful", max_trees=8).fit(trial.source, space, trial.seed)
    oracle = trial.oracles[TARGET]
    m.adapt(TARGET, oracle)
    bank = m.targets_[TARGET]
    ids = trial.eval_ids[TARGET]
    kernels.count_matrix(space, ids, "torch-eager")
    cat = kernels.kernel_catalog("torch-eager")
    pred = bank.predict_codes()
    unprofiled = cat["type"].isin(UNPROFILED).to_numpy()
    assert {"add", "zero"} <= set(cat["type"][unprofiled]) and np.all(pred[unprofiled] == 0)
    assert np.all(pred[cat["type"].isin(["conv", "bn", "relu"]).to_numpy()] > 0)
