"""BRP-NAS GCN baseline: contract suite on all three spaces, hand-checked NB201 graph surgery,
the PyG batching / aggregation direction, and the from-scratch (pretrain=False) setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latbench.eval.checks import check_method
from latbench.spaces.nb201 import NB201Space
from latbench_baselines.brp_nas import BRPGCN, BRPNAS, GraphSet, chain_brp_graph, nb201_brp_graph

pytestmark = pytest.mark.slow  # learned/kernel models: the whole module is outside the fast subset

TINY = {"epochs": 1, "finetune_epochs": 1, "hidden": 32}


# ---- contract suite ---------------------------------------------------------------------------
@pytest.mark.slow
def test_contract_suite_nb201(data):
    check_method(BRPNAS, task="hard-3", shots=5, params={"epochs": 3, "finetune_epochs": 3})


@pytest.mark.parametrize("task", ["help-fbnet", "easy-2"])  # FBNet, OFA
def test_contract_suite_chain_spaces(data, task):
    check_method(BRPNAS, task=task, shots=5, params=TINY)


def test_contract_suite_from_scratch(data):
    check_method(BRPNAS, task="hard-3", shots=5, params={**TINY, "pretrain": False})


# ---- NB201 graph surgery (Eagle get_matrix_and_ops + get_adjacency_and_features) ---------------
def _edges(adj):
    """Non-loop edges among the 8 cell nodes, in the 9-node numbering (global = 0, input = 1)."""
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(adj)) if i != j and i != 0}


def _check_frame(adj, feat):
    assert adj.shape == (9, 9) and feat.shape == (9, 6)
    assert (adj[0, 1:] == 1).all() and (adj[1:, 0] == 0).all()  # global -> all, no edges into global
    assert (np.diag(adj) == 1).all()  # self-loops everywhere, pruned nodes included
    assert feat[0].tolist() == [0, 0, 0, 0, 0, 1]  # global
    assert feat[1].tolist() == [0, 0, 0, 1, 0, 0]  # input
    assert feat[8].tolist() == [0, 0, 0, 0, 1, 0]  # output


def _graph(arch):
    return nb201_brp_graph(NB201Space.parse(arch))


def test_single_conv_path():
    # only edge 0->3 (op-node 4) is a conv: input -> conv3x3 -> output
    adj, feat = _graph("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    _check_frame(adj, feat)
    assert _edges(adj) == {(1, 5), (5, 8)}
    assert feat[5].tolist() == [0, 1, 0, 0, 0, 0]
    assert feat[[2, 3, 4, 6, 7]].sum() == 0


def test_skip_is_bypassed():
    # conv1x1 on 0->1, skip on 1->2, conv3x3 on 2->3, rest none:
    # op-node 1 -> (skip 3) -> 6 becomes 1 -> 6; the skip node is disconnected and all-zero
    adj, feat = _graph("|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|nor_conv_3x3~2|")
    _check_frame(adj, feat)
    assert _edges(adj) == {(1, 2), (2, 7), (7, 8)}
    assert feat[2].tolist() == [1, 0, 0, 0, 0, 0]
    assert feat[7].tolist() == [0, 1, 0, 0, 0, 0]
    assert feat[4].sum() == 0 and adj[4].sum() == 1 and adj[:, 4].sum() == 2  # self-loop + global only


def test_all_skip_cell_is_input_to_output():
    adj, feat = _graph("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|")
    _check_frame(adj, feat)
    assert _edges(adj) == {(1, 8)}
    assert feat[2:8].sum() == 0


def test_all_none_and_dangling_conv_keep_only_global_input_output():
    none = _graph("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    # a conv on 0->1 whose outputs all go through 'none' edges never reaches the output: pruned,
    # and input/output are pruned too (no path), exactly as for the all-none cell
    dangling = _graph("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    for adj, feat in (none, dangling):
        _check_frame(adj, feat)
        assert _edges(adj) == set()
        assert adj.sum() == 8 + 9  # global row + diagonal
        assert feat[2:8].sum() == 0
    np.testing.assert_array_equal(none[0], dangling[0])
    np.testing.assert_array_equal(none[1], dangling[1])


def test_chain_extension_adds_global_node():
    adj = np.zeros((3, 3), np.float32)
    adj[0, 1] = adj[1, 2] = 1
    feat = np.eye(3, dtype=np.float32)
    a, x = chain_brp_graph(adj, feat)
    assert a.shape == (4, 4) and x.shape == (4, 4)
    assert (a[0, 1:] == 1).all() and (np.diag(a) == 1).all() and a[1, 2] == a[2, 3] == 1 and a[2, 1] == 0
    assert x[0].tolist() == [0, 0, 0, 1] and (x[1:, :3] == feat).all()


def test_ofa_graph_carries_the_input_resolution(data):
    """OFA's chain graph has no resolution; brp-nas puts r's one-hot on the input node and on the
    active layer nodes (without it the GCN ranks OFA archs at ~0.2 Spearman)."""
    from latbench.data.store import get_space
    from latbench.spaces.ofa import RESOLUTIONS, parse
    from latbench_baselines.brp_nas import encode

    space = get_space("ofa")
    ids = np.arange(50)
    adj, feat = encode(space, ids)
    chain = chain_brp_graph(*(g[0] for g in space.graph(ids[:1])))[1]
    assert feat.shape == (50, 23, chain.shape[1] + len(RESOLUTIONS))
    np.testing.assert_array_equal(feat[0, :, : chain.shape[1]], chain)  # the chain features are unchanged
    seen = set()
    for row, i in enumerate(ids):
        r, _, ks, _ = parse(space.arch_str(int(i)))
        res = feat[row, :, -len(RESOLUTIONS) :]
        carriers = {1} | {slot + 2 for slot, k in enumerate(ks) if k}
        assert set(np.flatnonzero(res.any(1)).tolist()) == carriers  # not the global, output or skipped slots
        assert (res[sorted(carriers)].argmax(1) == RESOLUTIONS.index(r)).all() and res.sum() == len(carriers)
        seen.add(r)
    assert len(seen) > 5  # the sample spans many resolutions


# ---- PyG batching and aggregation direction -----------------------------------------------------
def test_batch_matches_pyg_and_aggregates_successors():
    from torch_geometric.data import Batch, Data

    archs = [
        "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|nor_conv_3x3~2|",
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    ]
    graphs = [_graph(a) for a in archs]
    adj, feat = np.stack([g[0] for g in graphs]), np.stack([g[1] for g in graphs])
    gs = GraphSet(adj, feat)
    x, edge_index, readout = gs.batch(torch.tensor([1, 0]))
    ref = Batch.from_data_list(
        [
            Data(x=torch.from_numpy(feat[k]), edge_index=torch.from_numpy(np.stack(np.nonzero(adj[k])[::-1]).astype(np.int64)))
            for k in (1, 0)
        ]
    )
    assert torch.equal(x, ref.x)
    assert {tuple(e) for e in edge_index.T.tolist()} == {tuple(e) for e in ref.edge_index.T.tolist()}
    assert readout.tolist() == ref.ptr[:-1].tolist()
    # one GCNConv layer == Eagle's A @ (X W) + b with A untransposed
    torch.manual_seed(0)
    model = BRPGCN(6, hidden=8, layers=1)
    conv = model.convs[0]
    with torch.no_grad():
        out = conv(x, edge_index).reshape(2, 9, 8)
        dense = torch.from_numpy(adj[[1, 0]]) @ (torch.from_numpy(feat[[1, 0]]) @ conv.lin.weight.T) + conv.bias
    torch.testing.assert_close(out, dense)


# ---- pretrain=False: trains on the target shots only --------------------------------------------
def test_from_scratch_never_uses_source(data):
    from dataclasses import replace

    from latbench.data import store
    from latbench.data.store import get_space
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task("help-nb201")
    table, space = store.load_latency("nb201"), get_space("nb201")
    dev = spec.target[0]
    params = {"epochs": 3, "hidden": 32, "batch_size": 16}

    def run(source, pretrain):
        trial = make_trial(spec, 0, 50, table)
        m = BRPNAS(pretrain=pretrain, **params).fit(source or trial.source, space, trial.seed)
        m.adapt(dev, trial.oracles[dev])
        assert len(trial.oracles[dev].measured) == 50
        ids = trial.eval_ids[dev] if isinstance(trial.eval_ids, dict) else trial.eval_ids
        return m.predict(dev, ids)

    real = make_trial(spec, 0, 50, table).source
    rng = np.random.default_rng(1)
    garbage = replace(real, devices=("nowhere",), arch_ids=np.array([3, 1, 4]), latency=rng.uniform(1, 9, (1, 3)))
    a, b = run(real, False), run(garbage, False)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, run(real, True))  # with pre-training the source does matter
