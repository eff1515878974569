"""HELP baseline: contract suite on all three spaces, the k = 10 reference-arch budget, the PyG GCN
against HELP's dense formulation, the encodings, and that meta-training learns (tiny runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latbench.eval.checks import check_method
from latbench_baselines.help import HELP, _Encoder, _Predictor, fbnet_encoding, ofa_encoding

pytestmark = pytest.mark.slow  # learned/kernel models: the whole module is outside the fast subset

TINY = {"num_episodes": 20, "mc_samples": 2}


@pytest.mark.parametrize("task", ["hard-3", "help-fbnet", "easy-2"])  # NB201, FBNet, OFA
@pytest.mark.slow
def test_contract_suite(data, task):
    check_method(HELP, task=task, shots=5, params=TINY)


def _trial(task: str, shots: int):
    from latbench.data import store
    from latbench.data.store import get_space
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task(task)
    space = get_space(spec.space)
    return make_trial(spec, 0, shots, store.load_latency(spec.space), reference_ids=space.reference_ids), space


def test_k10_measures_exactly_the_reference_archs(data):
    trial, space = _trial("help-nb201", 10)
    m = HELP(num_episodes=3, mc_samples=2).fit(trial.source, space, trial.seed)
    assert not m.used_reference_fallback_
    for dev, oracle in list(trial.oracles.items())[:2]:
        m.adapt(dev, oracle)
        assert sorted(oracle.measured) == sorted(space.reference_ids.tolist())
        pred = m.predict(dev, trial.eval_ids[dev])
        assert np.isfinite(pred).all() and (pred > 0).all()


def test_small_budget_measures_a_spread_subset_of_the_references(data):
    trial, space = _trial("hard-3", 4)
    m = HELP(num_episodes=2, mc_samples=2).fit(trial.source, space, trial.seed)
    dev, oracle = next(iter(trial.oracles.items()))
    m.adapt(dev, oracle)
    assert len(oracle.measured) == 4 and set(oracle.measured) <= set(space.reference_ids.tolist())
    # the fastest and the slowest reference (mean over source devices) are among them
    order = space.reference_ids[m.reference_order_]
    assert {int(order[0]), int(order[-1])} <= set(oracle.measured)
    emb = m.adapted_[dev][0].numpy()
    assert emb.shape == (10,) and emb.min() == pytest.approx(0) and emb.max() == pytest.approx(1)


def test_meta_training_learns(data):
    trial, space = _trial("easy-2", 10)  # OFA: the MLP branch is the cheapest to meta-train
    m = HELP(num_episodes=40, mc_samples=1).fit(trial.source, space, trial.seed)
    init, now = m.initial_state_, m.net_.state_dict()
    assert init.keys() == now.keys() and any(not torch.equal(init[k], now[k]) for k in init)
    assert len(m.meta_losses_) == len(m.meta_mse_) == 40
    assert np.mean(m.meta_mse_[-5:]) < np.mean(m.meta_mse_[:5])
    assert np.mean(m.meta_losses_[-5:]) < np.mean(m.meta_losses_[:5])
    # the Meta-SGD learning rates are meta-learned too
    assert any(not torch.allclose(v, torch.full_like(v, 1e-3)) for v in m.task_lr_.values())


def test_model_selection_on_valid_devices(data):
    trial, space = _trial("help-fbnet", 10)
    m = HELP(num_episodes=20, mc_samples=2, eval_every=10).fit(trial.source, space, trial.seed)
    assert [ep for ep, _ in m.valid_history_] == [9, 19]
    assert m.best_episode_ == max(m.valid_history_, key=lambda e: e[1])[0]


def test_pyg_gcn_matches_help_dense_formulation(data):
    """The batched GCNConv forward equals HELP net.py: relu(adj' (X W) + b) x4, adj' = transposed
    adjacency + self-loops + a global node aggregating all nodes, readout = the global node."""
    from torch.func import functional_call

    from latbench.data.store import get_space

    space = get_space("nb201")
    enc = _Encoder(space, torch.device("cpu"))
    assert enc.nfeat == 8 and enc.nodes == 9  # HELP's gc1 is 8 -> 100
    torch.manual_seed(0)
    net = _Predictor(True, enc.nfeat, 100, 10, enc.nodes)
    ids = np.array([[9, 55, 1462], [431, 6196, 11982]])
    hw = torch.rand(2, 10)
    params = {k: v.unsqueeze(0).expand(2, *v.shape) for k, v in net.named_parameters()}
    out = functional_call(net, params, (hw,), enc(ids))

    adj, feat = space.graph(ids.ravel())
    ref = []
    for a, f in zip(adj, feat):
        n = len(a)
        m = np.zeros((n + 1, n + 1), np.float32)
        m[:n, :n] = a
        m[:n, n] = 1
        np.fill_diagonal(m, 1)
        x = np.zeros((n + 1, f.shape[1] + 1), np.float32)
        x[:n, :-1] = f
        x[n, -1] = 1
        h = torch.tensor(x)
        for conv in net.gcs:
            h = torch.relu(torch.tensor(m.T) @ (h @ conv.lin.weight.T) + conv.bias)
        ref.append(h[-1])
    ref = torch.stack(ref).reshape(2, 3, -1)
    g = torch.relu(net.fc_hw2(torch.relu(net.fc_hw1(hw))))
    r = torch.cat([ref, g[:, None].expand(-1, 3, -1)], -1)
    r = net.fc5(torch.relu(net.fc4(torch.relu(net.fc3(r))))).squeeze(-1)
    assert torch.allclose(out, r, atol=1e-5)


def test_help_encodings(data):
    from latbench.data.store import get_space
    from latbench.spaces.ofa import parse as parse_ofa

    v = fbnet_encoding("-".join(["k3_e1", "k5_e1_g2", "k3_e6", "skip"] + ["k5_e3"] * 18))
    assert v.shape == (132,)
    assert v[:6].tolist() == [1, 0, 1, 0, 0, 0] and v[6:12].tolist() == [0, 1, 0, 1, 0, 0]
    assert v[12:18].tolist() == [1, 0, 0, 0, 0, 1] and not v[18:24].any()

    ofa = get_space("ofa")
    oh = ofa.onehot(np.arange(50))
    enc = ofa_encoding(oh)
    assert enc.shape == (50, 145)
    for row, i in zip(enc, range(50)):
        r, _, ks, e = parse_ofa(ofa.arch_str(i))
        for slot in range(20):
            want_k = np.zeros(3)
            want_e = np.zeros(3)
            if ks[slot]:
                want_k[(3, 5, 7).index(ks[slot])] = 1
                want_e[(3, 4, 6).index(e[slot])] = 1
            assert row[3 * slot : 3 * slot + 3].tolist() == want_k.tolist()
            assert row[60 + 3 * slot : 60 + 3 * slot + 3].tolist() == want_e.tolist()
        assert row[120 + (r - 128) // 4] == 1 and row[120:].sum() == 1


def test_reference_latency_fallback(data):
    """Without SourceData.reference_latency the source embeddings come from FLOPs-nearest archs."""
    import dataclasses

    trial, space = _trial("easy-2", 10)
    source = dataclasses.replace(trial.source, reference_latency=None, valid_reference_latency=None)
    m = HELP(num_episodes=2, mc_samples=2).fit(source, space, trial.seed)
    assert m.used_reference_fallback_ and m.hw_source_.shape == (len(source.devices), 10)
    dev, oracle = next(iter(trial.oracles.items()))
    assert (m.adapt(dev, oracle).predict(dev, trial.eval_ids[dev]) > 0).all()


def test_help_paper_protocol_measures_references_plus_k(data):
    from latbench.data import store
    from latbench.data.store import get_space
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task("help-fbnet")
    space = get_space(spec.space)
    trial = make_trial(spec, 0, 10, store.load_latency(spec.space), protocol="help-paper", reference_ids=space.reference_ids)
    m = HELP(num_episodes=2, mc_samples=2).fit(trial.source, space, trial.seed)
    dev, oracle = next(iter(trial.oracles.items()))
    m.adapt(dev, oracle)
    assert len(oracle.measured) == 20 and set(space.reference_ids.tolist()) <= set(oracle.measured)
    assert set(oracle.default_choice().tolist()) <= set(oracle.measured)
