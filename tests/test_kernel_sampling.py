"""Kernel-configuration samplers (nn-Meter adaptive, LitePred VAE) and kernel campaigns on disk."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from latbench.errors import LatbenchError
from latbench.measure import kernel_sampling as ks

pytestmark = pytest.mark.slow  # learned/kernel models: the whole module is outside the fast subset


def _fake_device(op, configs):
    """A made-up device: cost grows with the work, with a memory-bound floor."""
    c = np.asarray(configs, dtype=np.float64)
    hw, cin, cout, k, s = c.T
    work = (hw / s) ** 2 * cout * cin * k * k / (cin if op == "dwconv" else 1)
    return 0.003 + 2e-7 * work + 1e-6 * hw * hw * cin


@pytest.fixture()
def spaces(data):
    from latbench.data.store import get_space

    return [get_space("nb201"), get_space("fbnet")]


def test_zoo_and_prior_follow_the_spaces_configurations(spaces):
    zoo = ks.zoo(spaces, "dwconv", n_archs=100)
    assert set(zoo["ks"]) <= {3, 5} and (zoo["cin"] == zoo["cout"]).all() and zoo["freq"].min() >= 1
    rng = np.random.default_rng(0)
    cfg = ks.prior_sample(zoo, "dwconv", 300, rng)
    assert cfg.shape == (300, 5) and (cfg[:, 1] == cfg[:, 2]).all()
    for j, dim in enumerate(ks.DIMS):
        if dim in ("hw", "ks", "stride"):
            assert set(cfg[:, j].tolist()) <= set(zoo[dim].tolist())  # snapped to valid values
    assert np.array_equal(cfg, ks.prior_sample(zoo, "dwconv", 300, np.random.default_rng(0)))  # seeded
    with pytest.raises(LatbenchError, match="unknown kernel type 'gelu'"):
        ks.zoo(spaces, "gelu")


def test_finegrained_sampling_keeps_shape_and_draws_channels_near_the_bad_config():
    rng = np.random.default_rng(1)
    out = ks.finegrained_sample([28, 40, 100, 3, 2], "conv", 10, rng)
    assert len(out) == 10 and (out[:, [0, 3, 4]] == [28, 3, 2]).all()
    assert out[:, 1].min() >= 20 and out[:, 1].max() < 48 and len(set(out[:, 1].tolist())) == 10
    assert out[:, 2].min() >= 50 and out[:, 2].max() < 120


def test_adaptive_campaign_adds_finegrained_rounds_where_the_forest_is_wrong(spaces):
    from latbench_baselines.nn_meter import NNMeter

    zoo = ks.zoo(spaces, "conv", n_archs=100)
    calls = []

    def measure(configs):
        calls.append(len(configs))
        return _fake_device("conv", configs)

    camp = ks.adaptive_campaign("conv", zoo, measure, NNMeter(max_trees=20)._forest, init=60, finegrained=5, iterations=3, seed=0)
    h = camp.history
    assert calls[0] == 60 and len(h) >= 2 and h[0]["measured"] == 60
    assert h[1]["measured"] == 60 + calls[1] and calls[1] <= 5 * h[0]["above_threshold"]
    assert (camp.rows.groupby("round").size().to_numpy() == calls).all()
    assert np.allclose(camp.rows["latency_ms"], _fake_device("conv", camp.rows[list(ks.DIMS)].to_numpy()))


@pytest.mark.slow
def test_vae_learns_the_zoo_and_samples_valid_configurations(spaces):
    zoo = ks.zoo(spaces, "conv", n_archs=100)
    vae = ks.ConfigVAE(epochs=1, iters_per_epoch=200, hidden=32, latent=8, seed=0).fit(zoo)
    a, b = vae.sample("conv", 50, seed=3), vae.sample("conv", 50, seed=3)
    assert np.array_equal(a, b) and a.shape == (50, 5)
    assert (a[:, 1] % 8 == 0).all() and set(a[:, 3].tolist()) <= set(zoo["ks"].tolist())
    assert a[:, 1].max() <= 1.2 * zoo["cin"].max() + 8 and a[:, 0].min() >= zoo["hw"].min()
    assert len(vae.losses_) == 4 and vae.losses_[-1] < vae.losses_[0]


def test_run_campaign_writes_complete_files_and_fails_cleanly(spaces, tmp_path):
    r = ks.run_campaign(
        tmp_path,
        "conv",
        "adaptive",
        spaces,
        samples=30,
        iterations=2,
        finegrained=3,
        zoo_archs=50,
        name="fake",
        measure=_fake_device,
    )
    f = ks.campaign_file(tmp_path, r["device"], "conv")
    assert r["device"] == "fake-torch-t1-bs1-fp32" and f.is_file()
    meta = json.loads((f.parent / "campaign-conv.json").read_text())
    assert meta["measured"] == len(pd.read_parquet(f)) == r["history"][-1]["measured"] and meta["sampler"] == "adaptive"
    frame, lat = ks.load_campaign(tmp_path, r["device"])
    assert len(frame) == len(lat) and set(frame["family"]) == {"conv-bn-relu"}
    for bad, msg in [
        (dict(sampler="grid"), "unknown kernel sampler"),
        (dict(op="gelu"), "unknown kernel type"),
        (dict(samples=2), "at least 5"),
    ]:
        args = dict(op="conv", sampler="adaptive", samples=30) | bad
        with pytest.raises(LatbenchError, match=msg):
            ks.run_campaign(
                tmp_path / "bad", args["op"], args["sampler"], spaces, samples=args["samples"], name="x", measure=_fake_device
            )
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.drop(columns="latency_ms"), "missing column"),
        (lambda t: t.assign(latency_ms=-1.0), "finite and > 0"),
        (lambda t: t.assign(latency_ms=np.inf), "finite and > 0"),
        (lambda t: t.assign(op=["conv", "relu"] * (len(t) // 2) + ["conv"] * (len(t) % 2)), "one known kernel type"),
        (lambda t: t.assign(cin=t["cin"] * 0.5), "positive integers"),
    ],
)
def test_load_campaign_rejects_malformed_files(spaces, tmp_path, mutate, message):
    r = ks.run_campaign(
        tmp_path, "conv", "adaptive", spaces, samples=20, iterations=1, zoo_archs=30, name="fake", measure=_fake_device
    )
    f = ks.campaign_file(tmp_path, r["device"], "conv")
    mutate(pd.read_parquet(f)).to_parquet(f)
    with pytest.raises(LatbenchError, match=message):
        ks.load_campaign(tmp_path, r["device"])
    with pytest.raises(LatbenchError, match="no kernel campaign for device 'phone'"):
        ks.load_campaign(tmp_path, "phone")


def test_time_layer_measures_one_real_kernel():
    from latbench.measure import profiler

    r = profiler.time_layer(ks.to_layer("conv", 16, 8, 8, 3, 1), repeats=5, warmup=1, max_wait=0)
    assert r["latency_ms"] > 0 and r["n"] == 5


@pytest.mark.slow
def test_faithful_nn_meter_from_a_campaign_alone(data, tmp_path, kernel_tasks):
    """nn-Meter proper: no arch of the target measured (k = 0), kernel predictors from sampled kernels."""
    from latbench.data.store import get_space
    from latbench.eval.runner import evaluate
    from latbench.methods.registry import make_method
    from latbench.tasks.spec import load_task

    device = "epyc-2c-torch-t1-bs1-fp32"
    for op in ("conv", "dwconv", "bn", "relu"):
        ks.run_campaign(
            tmp_path,
            op,
            "adaptive",
            [get_space("fbnet")],
            samples=40,
            iterations=1,
            zoo_archs=100,
            name="epyc-2c",
            measure=_fake_device,
        )
    res = evaluate(
        make_method("nn-meter", variant="faithful", campaign=str(tmp_path)),
        [load_task("measured-fbnet-kernels")],
        shots=0,
        trials=1,
    )
    r = res.results[0].trials[0]
    assert r.measured[device] == [] and np.isfinite(r.mean["spearman"])
