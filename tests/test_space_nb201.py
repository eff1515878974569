"""NAS-Bench-201: parsing, encodings, and FLOPs/params from the layer list vs the built PyTorch model."""

from __future__ import annotations

import numpy as np
import pytest

from latbench.errors import UnknownArchError
from latbench.spaces.base import count_torch, layer_counts
from latbench.spaces.nb201 import OPS, NB201Space

SPACE = NB201Space(NB201Space.all_archs())
ARCH0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


@pytest.mark.parametrize(
    "arch",
    [
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        ARCH0,
        *[NB201Space.all_archs()[i] for i in np.random.default_rng(0).choice(15625, 5, replace=False)],
    ],
)
def test_flops_and_params_match_the_torch_model(arch):
    model = SPACE.build_torch(SPACE.index(arch))
    flops, params = count_torch(model, (3, 32, 32))
    assert SPACE.counts(arch)[:2] == pytest.approx((flops, params), rel=1e-9)
    assert layer_counts(SPACE.layers(SPACE.index(arch)))[:2] == pytest.approx((flops, params), rel=1e-9)


def test_flops_closed_form_range_and_28_values():
    """FLOPs = 7.783 M + 3.932 M * (n1 + 9 n3) (AutoDL counter; BASELINES.md section 2)."""
    f = SPACE.flops(SPACE.arch_ids())
    assert f.min() == pytest.approx(7.78305) and f.max() == pytest.approx(220.11969)
    assert len(np.unique(f.round(6))) == 28
    ops = [NB201Space.parse(a) for a in NB201Space.all_archs()[:200]]
    n1 = np.array([o.count("nor_conv_1x1") for o in ops])
    n3 = np.array([o.count("nor_conv_3x3") for o in ops])
    assert np.allclose(f[:200], 7.78305 + 3.932160 * (n1 + 9 * n3))


def test_forward_shape():
    import torch

    out = SPACE.build_torch(SPACE.index(ARCH0))(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)


@pytest.mark.parametrize(
    "bad, msg",
    [
        ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|", "2 nodes"),
        ("|conv_7x7~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", "conv_7x7"),
        ("|avg_pool_3x3~1|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", "~0"),
        ("|avg_pool_3x3~0|+|nor_conv_1x1~0|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", "node 2 has 1 inputs"),
    ],
)
def test_bad_arch_strings_are_rejected(bad, msg):
    with pytest.raises(UnknownArchError, match=msg):
        SPACE.index(bad)


def test_ids_out_of_range_are_rejected():
    with pytest.raises(UnknownArchError, match="out of range"):
        SPACE.flops([15625])


def test_encodings():
    i = SPACE.index(ARCH0)
    onehot = SPACE.onehot([i])[0]
    assert onehot.shape == (30,) and onehot.sum() == 6
    assert onehot.reshape(6, 5)[0, OPS.index("avg_pool_3x3")] == 1
    adj, x = SPACE.graph([i])
    assert adj.shape == (1, 8, 8) and x.shape == (1, 8, 7)
    assert adj[0].sum() == 10 and np.all(x[0].sum(1) == 1)
    data = SPACE.to_pyg([i], y=[1.5])[0]
    assert data.edge_index.shape == (2, 10) and data.x.shape == (8, 7) and float(data.y) == 1.5


@pytest.mark.real_data
def test_dataset_space_is_in_official_index_order(data):
    from latbench.data.store import get_space

    space = get_space("nb201")
    assert space.arch_str(0) == ARCH0 and len(space) == 15625
    assert np.allclose(space.flops([0, 1]), [SPACE.counts(space.arch_str(0))[0], SPACE.counts(space.arch_str(1))[0]])
    assert len(space.reference_ids) == 10 and 1462 in space.reference_ids
