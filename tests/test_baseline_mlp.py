"""mlp-finetune / mlp-hwparams (Syed & Srinivasan): contract suite, frozen layers, zero-shot, descriptor table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latbench.errors import MethodError
from latbench.eval.checks import check_method
from latbench_baselines import hardware_descriptors as hwd
from latbench_baselines.mlp_finetune import MLPFinetune, MLPHardwareParams

pytestmark = pytest.mark.slow  # learned/kernel models: the whole module is outside the fast subset

#: small network and few epochs: the contract does not depend on the width
TINY = dict(hidden_units=48, epochs=1, finetune_epochs=5)


def _trial(task_id: str, shots: int):
    from latbench.data import store
    from latbench.data.store import get_space
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task(task_id)
    space = get_space(spec.space)
    trial = make_trial(spec, 0, shots, store.load_latency(spec.space), reference_ids=space.reference_ids)
    return spec, space, trial


def _eval_ids(trial, device):
    return trial.eval_ids[device] if isinstance(trial.eval_ids, dict) else trial.eval_ids


@pytest.mark.parametrize("cls", [MLPFinetune, MLPHardwareParams], ids=["mlp-finetune", "mlp-hwparams"])
@pytest.mark.parametrize("task", ["hard-3", "help-fbnet", "easy-2"])
def test_contract_suite(data, cls, task):
    check_method(cls, task=task, shots=5, params=TINY)


def test_finetune_freezes_hidden_layers_and_trains_the_last(data):
    spec, space, trial = _trial("easy-2", 10)
    m = MLPFinetune(hidden_units=48, epochs=1, finetune_epochs=30, rescale=False).fit(trial.source, space, trial.seed)
    before = [[t.clone() for t in layer] for layer in m.layers_]
    dev = spec.target[0]
    m.adapt(dev, trial.oracles[dev])
    best = m.choice_[dev]
    assert 0 <= best < len(trial.source.devices)
    for (w0, b0), (w1, b1) in zip(before[:-1], m.layers_[:-1]):  # every hidden layer, the first two included
        assert torch.equal(w0, w1) and torch.equal(b0, b1)
    assert torch.equal(before[-1][0], m.layers_[-1][0])  # the source heads themselves are untouched
    w, b = m.heads_[dev]
    w_src = before[-1][0][best]
    assert w.shape == w_src.shape and not torch.allclose(w, w_src)  # the target's output layer was trained
    # the adapted predictor is exactly "frozen hidden layers of the chosen source + new head"
    pred = m.predict(dev, _eval_ids(trial, dev)[:5])
    assert pred.shape == (5,) and np.isfinite(pred).all() and (pred > 0).all()


def test_hwparams_zero_shot_depends_on_the_descriptor(data):
    spec, space, trial = _trial("easy-2", 0)
    m = MLPHardwareParams(hidden_units=48, epochs=1).fit(trial.source, space, trial.seed)
    a, b = spec.target[0], spec.target[1]
    assert not np.allclose(hwd.raw_features(a), hwd.raw_features(b), equal_nan=True)
    ids = _eval_ids(trial, a)
    preds = {}
    for dev in (a, b):
        m.adapt(dev, trial.oracles[dev])
        assert len(trial.oracles[dev].measured) == 0  # zero-shot: nothing measured
        preds[dev] = m.predict(dev, ids)
        assert preds[dev].shape == (len(ids),) and np.isfinite(preds[dev]).all() and (preds[dev] > 0).all()
    assert not np.allclose(preds[a], preds[b])


def test_finetune_with_zero_shots_averages_the_sources(data):
    spec, space, trial = _trial("easy-2", 0)
    m = MLPFinetune(hidden_units=32, epochs=1).fit(trial.source, space, trial.seed)
    dev = spec.target[0]
    m.adapt(dev, trial.oracles[dev])
    pred = m.predict(dev, _eval_ids(trial, dev))
    assert np.isfinite(pred).all() and (pred > 0).all()


def test_descriptor_table_covers_every_device_in_the_dataset(data):
    from latbench.data.store import load_devices
    from latbench.errors import LatbenchError

    devices = [r for r in load_devices() if r["source"] == "help"]
    assert devices
    for row in load_devices():  # profiler-measured devices have no sourced descriptor row: a clear error
        if row["source"] != "help":
            with pytest.raises(LatbenchError, match="no hardware descriptor"):
                hwd.lookup(row["device"])
    for row in devices:
        desc = hwd.lookup(row["device"])
        assert desc["family"] == row["family"], row["device"]
        assert desc["source"]
        if row.get("batch_size"):
            assert desc["batch_size"] == row["batch_size"]
        feats = hwd.raw_features(row["device"])
        assert feats.shape == (len(hwd.FEATURE_NAMES),)
        assert np.isfinite(feats[: len(hwd.FAMILIES)]).all() and np.isfinite(feats[len(hwd.FAMILIES)])  # family, cores


def test_unknown_hardware_raises_a_method_error(data):
    with pytest.raises(MethodError, match="no hardware descriptor"):
        hwd.lookup("tpu_v9_8")
    spec, space, trial = _trial("easy-2", 0)
    m = MLPHardwareParams(hidden_units=16, epochs=1).fit(trial.source, space, trial.seed)
    with pytest.raises(MethodError, match="no hardware descriptor"):
        m.adapt("tpu_v9_8", None)
