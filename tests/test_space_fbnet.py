"""FBNet space: encodings, arch-string validation, and analytic counts vs. the real torch model."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from latbench.errors import UnknownArchError
from latbench.spaces.fbnet import NUM_LAYERS, OPS, FBNetSpace


def _arch(ops) -> str:
    return "-".join(ops)


_rng = np.random.default_rng(20240601)
ARCHS = {
    "all_skip": _arch(["skip"] * NUM_LAYERS),
    "all_k3_e1": _arch(["k3_e1"] * NUM_LAYERS),
    "all_k5_e6": _arch(["k5_e6"] * NUM_LAYERS),
    "all_g2": _arch(["k3_e1_g2", "k5_e1_g2"] * (NUM_LAYERS // 2)),
    **{f"random{i}": FBNetSpace.from_raw(_rng.integers(0, len(OPS), NUM_LAYERS).tolist()) for i in range(5)},
}


@pytest.fixture(scope="module")
def space():
    return FBNetSpace(list(ARCHS.values()))


@pytest.mark.parametrize("name", list(ARCHS))
def test_counts_match_torch_model(space, name):
    from latbench.spaces.base import count_torch

    arch = ARCHS[name]
    flops, params, _ = space.counts(arch)
    t_flops, t_params = count_torch(space.build_torch(space.index(arch)), space.input_shape)
    assert flops == pytest.approx(t_flops, rel=1e-9)
    assert params == pytest.approx(t_params, rel=1e-9)
    # adds and shuffles count 0 FLOPs, so check the model has them exactly where the layer list does
    model = space.build_torch(space.index(arch))
    layers = space.layers(space.index(arch))
    assert sum(getattr(m, "residual", False) for m in model.modules()) == sum(l.type == "add" for l in layers)
    assert sum(type(m).__name__ == "ChannelShuffle" for m in model.modules()) == sum(l.type == "shuffle" for l in layers)


def test_known_counts():
    # Hand-computed anchor so a change shared by _layers and the builder still gets caught:
    # all-skip = stem + the 1x1 ConvNorm skips where the shape changes + header + classifier.
    sp = FBNetSpace([ARCHS["all_skip"]])
    stem = 3 * 9 * 16 * 32**2
    skips = 16 * 24 * 32**2 + 24 * 32 * 16**2 + 32 * 64 * 8**2 + 64 * 112 * 8**2 + 112 * 184 * 4**2 + 184 * 352 * 4**2
    header = 352 * 1504 * 4**2 + 1504 * 100 + 100
    assert sp.counts(ARCHS["all_skip"])[0] == pytest.approx((stem + skips + header) / 1e6, rel=1e-12)


def test_forward_shape(space):
    import torch

    model = space.build_torch(space.index(ARCHS["random0"]))
    with torch.no_grad():
        y = model(torch.zeros(2, 3, 32, 32))
    assert tuple(y.shape) == (2, 100)


def test_residual_blocks_add_their_input(space):
    # With the last BN of a block zeroed, the body outputs 0: a residual block must return its input.
    import torch
    from torch import nn

    model = space.build_torch(space.index(ARCHS["all_k5_e6"]))
    blocks = [m for m in model.modules() if getattr(m, "residual", False)]
    assert blocks
    x = torch.randn(1, 16, 32, 32)
    with torch.no_grad():
        for m in blocks[:1]:
            bn = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)][-1]
            bn.weight.zero_()
            bn.bias.zero_()
            torch.testing.assert_close(m(x), x)


def test_layer_records(space):
    layers = space.layers(space.index(ARCHS["all_k5_e6"]))
    assert {l.block for l in layers} == set(range(-1, NUM_LAYERS))
    assert all(l.expansion == 6.0 for l in layers if l.block >= 0)
    dw = [l for l in layers if l.type == "conv" and l.kernel == 5]
    assert len(dw) == NUM_LAYERS and all(l.groups == l.cin == l.cout for l in dw)
    assert [l.stride for l in dw if l.stride > 1] == [2, 2, 2]
    assert [l.h for l in layers if l.type == "gap"] == [4]
    assert sum(l.type == "add" for l in layers) == NUM_LAYERS - 6  # stages 2..7 open with a shape change
    g2 = space.layers(space.index(ARCHS["all_g2"]))
    assert sum(l.type == "shuffle" for l in g2) == NUM_LAYERS
    # identity skips emit nothing: only the 6 shape-changing skips have a conv
    skip = space.layers(space.index(ARCHS["all_skip"]))
    assert sum(l.block >= 0 and l.type == "conv" for l in skip) == 6


def test_encodings(space):
    ids = space.arch_ids()
    oh = space.onehot(ids)
    assert oh.shape == (len(ARCHS), NUM_LAYERS * len(OPS))
    assert (oh.sum(axis=1) == NUM_LAYERS).all()
    adj, x = space.graph(ids)
    assert adj.shape == (len(ARCHS), 24, 24) and x.shape == (len(ARCHS), 24, 11)
    assert (adj[:, np.arange(23), np.arange(1, 24)] == 1).all() and adj.sum() == 23 * len(ARCHS)
    assert (x.sum(axis=2) == 1).all()
    i = space.index(ARCHS["all_k5_e6"])
    assert (x[i, 1:23, OPS.index("k5_e6")] == 1).all() and x[i, 0, 9] == 1 and x[i, 23, 10] == 1


def test_from_raw_known_help_arch():
    # HELP metainfo.pt arch 0, copied here so the op order is pinned even without the mirror.
    raw = [7, 8, 1, 8, 4, 8, 8, 8, 7, 4, 1, 4, 7, 3, 2, 7, 3, 2, 4, 2, 4, 5]
    expected = (
        "k5_e6-skip-k3_e1_g2-skip-k5_e1-skip-skip-skip-k5_e6-k5_e1-k3_e1_g2-k5_e1-k5_e6-k3_e6-k3_e3"
        "-k5_e6-k3_e6-k3_e3-k5_e1-k3_e3-k5_e1-k5_e1_g2"
    )
    assert FBNetSpace.from_raw(raw) == expected


def test_canonical_and_from_raw_round_trip():
    raw = list(range(9)) * 2 + [8, 0, 3, 7]
    s = FBNetSpace.from_raw(raw)
    assert s.split("-")[:9] == list(OPS)
    assert FBNetSpace.canonical(s) == s
    assert FBNetSpace.canonical("  " + s.replace("-", " - ") + "\n") == s
    assert FBNetSpace.from_raw(np.array(raw)) == s
    assert [OPS.index(t) for t in s.split("-")] == raw


@pytest.mark.parametrize(
    "bad, needle",
    [
        (_arch(["k3_e1"] * 21), "21 ops"),
        (_arch(["k3_e1"] * 5 + ["k7_e6"] + ["k3_e1"] * 16), "'k7_e6' at position 5"),
        ("", "0 ops"),
    ],
)
def test_canonical_rejects(bad, needle):
    with pytest.raises(UnknownArchError, match=needle) as e:
        FBNetSpace.canonical(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "bad, needle",
    [
        ([0] * 21, "21 entries"),
        ([0] * 10 + [9] + [0] * 11, "index 9 at position 10"),
        ([0] * 21 + [-1], "-1 at position 21"),
        ([0.5] + [0] * 21, "0.5 at position 0"),
    ],
)
def test_from_raw_rejects(bad, needle):
    with pytest.raises(UnknownArchError, match=needle):
        FBNetSpace.from_raw(bad)


def test_import_does_not_load_torch():
    code = "import sys, latbench.spaces.fbnet; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_from_raw_matches_help_metainfo(mirror):
    meta = mirror / "help" / "data" / "fbnet" / "metainfo.pt"
    with zipfile.ZipFile(meta) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        info = pickle.loads(z.read(name))  # plain lists/dicts of ints and strings; no torch needed
    for entry in info["arch"][:3]:
        assert FBNetSpace.from_raw(entry["op_idx_list"]) == "-".join(entry["arch_str"])
