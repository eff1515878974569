"""NASFLAT baseline: the contract suite, the GNN layers against the original's dense formulas,
the NB201 graph surgery, the pairwise loss, the kmeancosine sampler and the hw-embedding init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latbench.eval.checks import check_method
from latbench_baselines.nasflat import (
    NASFLAT,
    DGFConv,
    MaskedGATConv,
    kmeancosine_choice,
    nb201_matrix,
    pairwise_hinge_loss,
)

pytestmark = pytest.mark.slow  # learned/kernel models: the whole module is outside the fast subset
#: small widths so the FBNet / OFA contract runs stay within a few seconds (the contract suite's settings)
TINY = NASFLAT.check_params


@pytest.mark.slow
def test_contract_suite_nb201(data):
    check_method(NASFLAT, task="hard-3", shots=5, params={"epochs": 2, "transfer_epochs": 2})


@pytest.mark.parametrize("task", ["help-fbnet", "easy-2"])  # FBNet, OFA (latbench's extension)
def test_contract_suite_fbnet_and_ofa(data, task):
    check_method(NASFLAT, task=task, shots=5, params=TINY)


def test_random_sampler_and_snapshot_average(data):
    from latbench.data import store
    from latbench.data.store import get_space
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task("hard-3")
    space = get_space(spec.space)
    table = store.load_latency(spec.space)
    params = {**TINY, "epochs": 0, "sampler": "random", "snapshot_average": 2, "transfer_epochs": 3}
    preds = []
    for _ in range(2):
        trial = make_trial(spec, 0, 6, table, reference_ids=space.reference_ids)
        dev, oracle = next(iter(trial.oracles.items()))
        m = NASFLAT(**params).fit(trial.source, space, trial.seed).adapt(dev, oracle)
        assert sorted(oracle.measured) == sorted(oracle.default_choice().tolist())
        assert len(m.targets_[dev]["models"]) == 2  # the last two fine-tuning epochs
        preds.append(m.predict(dev, trial.eval_ids[dev]))
        assert np.all(np.isfinite(preds[-1])) and np.all(preds[-1] > 0)
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-6)


# ---- layers vs the original's dense formulas -------------------------------------------------------
def _batch(adj: torch.Tensor):
    """PyG edges (b N + j) -> (b N + i) for every arch edge j -> i (``adj[b, j, i] = 1``)."""
    n = adj.shape[1]
    b, j, i = adj.nonzero(as_tuple=True)
    return torch.stack([b * n + j, b * n + i])


@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_layers_match_the_dense_original(density):
    torch.manual_seed(0)
    b, n, d_in, d_out, d_c = 4, 7, 5, 6, 3
    adj = torch.rand(b, n, n) < density  # arch edges j -> i at adj[b, j, i]; self-loops allowed
    x, cond = torch.randn(b, n, d_in), torch.randn(b, n, d_c)
    a_t = adj.float().transpose(1, 2)  # NASFLAT's adj.T: row i aggregates its predecessors
    ei = _batch(adj)

    dgf = DGFConv(d_in, d_out, d_c)
    s = x @ dgf.weight
    want = torch.sigmoid(dgf.op_attention(cond)) * (a_t @ s) + s + dgf.bias
    got = dgf(x.reshape(b * n, -1), ei, cond.reshape(b * n, -1)).view(b, n, -1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    gat = MaskedGATConv(d_in, d_out, d_c)
    with torch.no_grad():
        gat.a.weight.mul_(20)  # large logits: checks the max-shift as well
    k = gat.Wk(x)
    logits = F.leaky_relu(gat.a(k[:, :, None, :] * k[:, None, :, :] / math.sqrt(d_out)).squeeze(-1), 0.01)
    att = torch.softmax(logits * a_t, dim=-1)  # multiplicative mask, softmax over all nodes
    want = gat.layernorm(torch.sigmoid(gat.op_attention(cond)) * (att @ k))
    got = gat(x.reshape(b * n, -1), ei, cond.reshape(b * n, -1), n).view(b, n, -1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    # the shared-input path (first layer: one graph's rows, repeated) gives the same numbers
    x1 = x[:1].expand(b, n, d_in)
    full = gat(x1.reshape(b * n, -1), ei, cond.reshape(b * n, -1), n)
    torch.testing.assert_close(gat(x[0], ei, cond.reshape(b * n, -1), n, reps=b), full)
    torch.testing.assert_close(
        dgf(x[0], ei, cond.reshape(b * n, -1), reps=b), dgf(x1.reshape(b * n, -1), ei, cond.reshape(b * n, -1))
    )


def test_nb201_surgery():
    conv = "nor_conv_3x3"
    full = nb201_matrix([conv] * 6)
    assert full.sum() == 10 and full[0, 1] and full[6, 7]
    assert not nb201_matrix(["none"] * 6).any()
    # only edge 0->3 (op node 4) is a conv, the rest none: input -> 4 -> output
    m = nb201_matrix(["none", "none", "none", conv, "none", "none"])
    assert set(zip(*np.nonzero(m))) == {(0, 4), (4, 7)}
    # a skip on edge 0->3 is bypassed: input wired straight to output
    m = nb201_matrix(["none", "none", "none", "skip_connect", "none", "none"])
    assert set(zip(*np.nonzero(m))) == {(0, 7)}
    # skip on edge 0->1 (node 1) feeding the convs of 1->2 (node 3) and 1->3 (node 5)
    m = nb201_matrix(["skip_connect", "none", conv, "none", conv, conv])
    assert set(zip(*np.nonzero(m))) == {(0, 3), (0, 5), (3, 6), (5, 7), (6, 7)}


# ---- loss --------------------------------------------------------------------------------------------
def test_pairwise_loss_hand_computed():
    y = [1.0, 2.0, 3.0]
    ordered = pairwise_hinge_loss(torch.tensor([0.0, 0.2, 0.5]), y)
    assert ordered.item() == 0.0  # right order, every gap >= margin 0.1
    # pairs (0,1): 0.1 - 0.05 = 0.05; (0,2), (1,2): margin met -> 0; mean over 3 pairs
    assert pairwise_hinge_loss(torch.tensor([0.0, 0.05, 0.5]), y).item() == pytest.approx(0.05 / 3)
    # reversed: 0.1 + 0.3, 0.1 + 0.5, 0.1 + 0.2
    assert pairwise_hinge_loss(torch.tensor([0.5, 0.2, 0.0]), y).item() == pytest.approx(1.3 / 3)
    # tied targets are not compared: only (0,2), (1,2) with gap 0.05 -> 0.05 each
    assert pairwise_hinge_loss(torch.tensor([0.0, 0.0, 0.05]), [1.0, 1.0, 2.0]).item() == pytest.approx(0.05)
    # at most 4n pairs are kept
    s = torch.randn(40, requires_grad=True)
    loss = pairwise_hinge_loss(s, np.arange(40.0), rng=np.random.default_rng(0))
    loss.backward()
    assert loss.item() > 0 and s.grad.abs().sum() > 0


# ---- sampler -----------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the all-identical pool
def test_kmeancosine_exact_k_distinct_in_pool_and_deterministic(data):
    from latbench.data import store
    from latbench.data.store import get_space
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task
    from latbench_baselines.nasflat import sampler_encoding

    spec = load_task("hard-3")
    space = get_space(spec.space)
    trial = make_trial(spec, 0, 10, store.load_latency(spec.space), reference_ids=space.reference_ids)
    pool = next(iter(trial.oracles.values())).pool
    enc = sampler_encoding(space, pool)
    for k in (1, 5, 10, 20):
        ids = kmeancosine_choice(enc, pool, k, seed=7)
        assert len(ids) == k == len(set(ids.tolist())) and set(ids.tolist()) <= set(pool.tolist())
        assert np.array_equal(ids, kmeancosine_choice(enc, pool, k, seed=7))
    # a pool of identical encodings forces duplicates: still exactly k distinct pool archs
    small = pool[:12]
    ids = kmeancosine_choice(np.ones((12, 3)), small, 12, seed=1)
    assert sorted(ids.tolist()) == sorted(small.tolist())
    assert not np.array_equal(kmeancosine_choice(enc, pool, 10, seed=7), kmeancosine_choice(enc, pool, 10, seed=8))
    # through the method: the oracle sees exactly k distinct pool archs
    m = NASFLAT(**{**TINY, "epochs": 0, "transfer_epochs": 0}).fit(trial.source, space, trial.seed)
    for dev, oracle in trial.oracles.items():
        m.adapt(dev, oracle)
        assert len(oracle.measured) == 10 and set(oracle.measured) <= set(pool.tolist())


# ---- hardware-embedding init -------------------------------------------------------------------------
def test_hw_embedding_init_copies_the_most_correlated_source(data):
    from latbench.data import store
    from latbench.data.store import get_space
    from latbench.protocol.trial import Oracle, make_trial
    from latbench.tasks.spec import load_task

    spec = load_task("hard-3")
    space = get_space(spec.space)
    trial = make_trial(spec, 0, 20, store.load_latency(spec.space), reference_ids=space.reference_ids)
    src = trial.source
    m = NASFLAT(**{**TINY, "epochs": 0, "transfer_epochs": 0, "sampler": "random"}).fit(src, space, trial.seed)
    base_rows = m.base_state_["hw_emb.weight"]
    for j in (1, len(src.devices) - 1):
        truth = np.full(len(space), np.nan)
        truth[src.arch_ids] = 3.0 * src.latency[j] + 1.0  # the target is source device j, rescaled
        oracle = Oracle(f"copy-of-{j}", src.arch_ids[:300], truth[src.arch_ids[:300]], 20, np.random.default_rng(j))
        m.adapt(oracle.device, oracle)
        info = m.targets_[oracle.device]
        assert info["by"] == "true source latency" and info["source_index"] == j
        assert info["rho"] == pytest.approx(1.0)
        torch.testing.assert_close(info["init_row"], base_rows[j])
        assert not torch.equal(base_rows[info["slot"]], base_rows[j])  # the slot really was overwritten
        pred = m.predict(oracle.device, src.arch_ids[300:400])
        assert np.all(np.isfinite(pred)) and np.all(pred > 0)
