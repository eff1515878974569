"""Kernel decomposition (latbench.kernels): sums match the real torch models, every layer in one
kernel, fusion tables as data, chain boundaries, the batched table and its speed."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from latbench.errors import LatbenchError
from latbench.kernels import decomposition as kernels
from latbench.spaces.base import count_torch
from latbench.spaces.fbnet import OPS as FBNET_OPS
from latbench.spaces.fbnet import FBNetSpace
from latbench.spaces.nb201 import NB201Space
from latbench.spaces.ofa import RESOLUTIONS, OFASpace

RULES = sorted(kernels.RULE_SETS)


@pytest.fixture()
def dataset(data):
    """The session dataset built from the mirror (conftest)."""
    yield data


ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def _nb201_sample():
    rng = np.random.default_rng(0)
    every = NB201Space.all_archs()
    return [ALL_CONV3, ALL_SKIP, every[0]] + [every[i] for i in rng.choice(len(every), 4, replace=False)]


def _fbnet_sample():
    rng = np.random.default_rng(1)
    fixed = ["-".join([op] * 22) for op in ("k3_e6", "k5_e1_g2", "skip")]
    return fixed + ["-".join(rng.choice(FBNET_OPS, 22)) for _ in range(3)]


def _ofa_sample():
    rng = np.random.default_rng(2)
    raw = [dict(ks=[3] * 20, e=[3] * 20, d=[2] * 5, r=128), dict(ks=[7] * 20, e=[6] * 20, d=[4] * 5, r=224)]
    raw += [
        dict(
            ks=rng.choice([3, 5, 7], 20).tolist(),
            e=rng.choice([3, 4, 6], 20).tolist(),
            d=rng.choice([2, 3, 4], 5).tolist(),
            r=int(rng.choice(RESOLUTIONS)),
        )
        for _ in range(2)
    ]
    return [OFASpace.from_raw(a) for a in raw]


CASES = (
    [(NB201Space, a) for a in _nb201_sample()]
    + [(FBNetSpace, a) for a in _fbnet_sample()]
    + [(OFASpace, a) for a in _ofa_sample()]
)
IDS = [f"{cls.name}-{i}" for i, (cls, _) in enumerate(CASES)]


def _shape(space, arch):
    return space.input_shape_of(arch) if hasattr(space, "input_shape_of") else space.input_shape


@pytest.mark.parametrize("cls,arch", CASES, ids=IDS)
def test_kernel_sums_match_torch_model_and_space(cls, arch):
    space = cls([arch])
    torch_flops, torch_params = count_torch(space.build_torch(0), _shape(space, arch))
    for rules in RULES:
        ks = kernels.decompose(space, 0, rules)
        flops, params = sum(k.flops for k in ks), sum(k.params for k in ks)
        assert flops == pytest.approx(torch_flops, rel=1e-9), rules
        assert flops == pytest.approx(space.flops(0)[0], rel=1e-9), rules
        assert params == pytest.approx(torch_params, rel=1e-9), rules
        assert params == pytest.approx(space.params(0)[0], rel=1e-9), rules
        assert sum(k.act for k in ks) == pytest.approx(space.activations(0)[0], rel=1e-9), rules


@pytest.mark.parametrize("cls,arch", CASES, ids=IDS)
def test_every_layer_lands_in_exactly_one_kernel(cls, arch):
    space = cls([arch])
    layers = space.layers(0)
    for rules in RULES:
        ks = kernels.decompose(space, 0, rules)
        flat = [i for k in ks for i in k.layers]
        assert flat == list(range(len(layers))), rules  # each once, in order
        for k in ks:
            assert list(k.layers) == list(range(k.layers[0], k.layers[-1] + 1))  # contiguous
            assert len({layers[i].block for i in k.layers}) == 1  # never across a block boundary
            for j in k.layers[:-1]:  # an add's output only fuses into a relu (add-relu)
                assert layers[j].type != "add" or layers[j + 1].type == "relu"
        if rules == "torch-eager":
            assert len(ks) == len(layers) and all(len(k.layers) == 1 for k in ks)


def test_fusion_tables_change_the_kernel_count_as_expected():
    # NB201, every edge nor_conv_3x3: 339 layers. tflite-cpu: stem conv-bn (1); per cell 6 x
    # (relu, conv-bn) + 3 adds (15, x15 = 225); per reduction block relu, conv-bn-relu, conv-bn,
    # avgpool, conv, add (6, x2); head bn-relu, global-avgpool, fc (3) -> 241. tflite-gpu fuses the
    # shortcut conv with its add (-2); onnxruntime-cpu does too but keeps the head's bn and relu (+1).
    nb = NB201Space([ALL_CONV3])
    counts = {r: len(kernels.decompose(nb, 0, r)) for r in RULES}
    assert counts == {"torch-eager": 339, "tflite-cpu": 241, "tflite-gpu": 239, "onnxruntime-cpu": 240}
    # FBNet, every layer k3_e6: 200 layers; tflite-cpu stem 1 + 22 x (conv-bn-relu, dwconv-bn-relu,
    # conv-bn) + 16 residual adds + head 3 = 86; the GPU table fuses each add into its conv-bn (-16).
    fb = FBNetSpace(["-".join(["k3_e6"] * 22), "-".join(["k5_e1_g2"] * 22)])
    for i, expect in ((0, 86), (1, 108)):  # g2 adds a channel-shuffle kernel per block
        cpu, gpu = (kernels.decompose(fb, i, r) for r in ("tflite-cpu", "tflite-gpu"))
        n_add = sum(l.type == "add" for l in fb.layers(i))
        assert (len(cpu), len(gpu)) == (expect, expect - n_add) and n_add == 16
        assert Counter(k.type for k in gpu)["conv-bn-add"] == n_add
    assert Counter(k.type for k in kernels.decompose(fb, 1))["channelshuffle"] == 22
    # OFA: each squeeze-excite block (6 primitive layers) is one "se" kernel on tflite but not on ORT
    of = OFASpace(_ofa_sample()[1:2])
    n_se = sum(l.type == "mul" for l in of.layers(0))
    by = {r: Counter(k.type for k in kernels.decompose(of, 0, r)) for r in RULES}
    assert by["tflite-cpu"]["se"] == by["tflite-gpu"]["se"] == n_se == 12
    assert by["onnxruntime-cpu"]["se"] == 0 and by["onnxruntime-cpu"]["conv-hsigmoid"] == n_se
    assert "default" in kernels.ALIASES and kernels.decompose(of, 0, "default") == kernels.decompose(of, 0, "tflite-cpu")


def test_a_new_rule_set_is_only_data(monkeypatch):
    """Adding a runtime family = adding a table; the matcher is generic (longest pattern first)."""
    nb = NB201Space([ALL_CONV3])
    table = {("relu", "conv", "bn"): "relu-conv-bn", ("relu", "conv"): "relu-conv"}
    monkeypatch.setitem(kernels.RULE_SETS, "test-prefused", table)
    kernels._patterns.cache_clear()
    try:
        types = Counter(k.type for k in kernels.decompose(nb, 0, "test-prefused"))
    finally:
        kernels._patterns.cache_clear()
    assert types["relu-conv-bn"] == 15 * 6 + 2 * 2  # every cell edge, both convs of both reduction blocks
    assert "relu-conv" not in types  # longest pattern first


def test_nb201_cell_edges_are_separate_chains():
    """Parallel edges never fuse with each other, and an add never fuses forward."""
    nb = NB201Space(_nb201_sample())
    for i in range(len(nb)):
        layers = nb.layers(i)
        for k in kernels.decompose(nb, i, "tflite-gpu"):
            if layers[k.layers[0]].block >= 0:  # inside a cell: relu | conv-bn | avgpool
                assert k.type in ("relu", "conv-bn", "avgpool"), k.type
            assert all(layers[j].type != "add" for j in k.layers[:-1])


def test_unknown_rule_set_is_a_clear_error():
    nb = NB201Space([ALL_SKIP])
    with pytest.raises(LatbenchError, match=r"unknown fusion rule set 'tflite-cpux' \(did you mean tflite-cpu"):
        kernels.decompose(nb, 0, "tflite-cpux")
    with pytest.raises(LatbenchError, match="known: onnxruntime-cpu, tflite-cpu, tflite-gpu, torch-eager"):
        kernels.kernel_table(nb, [0], "tensorrt")
    with pytest.raises(LatbenchError, match="unknown kernel statistic"):
        kernels.type_sums(nb, [0], stats=("latency",))


def test_kernel_table_matches_decompose_and_space_tables(dataset):
    from latbench.data.store import get_space

    for name in ("nb201", "fbnet", "ofa"):
        space = get_space(name)
        ids = np.random.default_rng(3).choice(len(space), 40, replace=False)
        df = kernels.kernel_table(space, ids)
        assert list(df.columns[:4]) == ["arch_id", "position", "type", "family"]
        assert list(df.columns[4:]) == list(kernels.FEATURES)
        per_arch = df.groupby("arch_id")[["flops", "params", "act"]].sum().loc[ids]
        np.testing.assert_allclose(per_arch["flops"], space.flops(ids), rtol=1e-9)  # the dataset's stored tables
        np.testing.assert_allclose(per_arch["params"], space.params(ids), rtol=1e-9)
        np.testing.assert_allclose(per_arch["act"], space.activations(ids), rtol=1e-9)
        one = df[df.arch_id == ids[0]]
        ks = kernels.decompose(space, ids[0])
        assert one["position"].tolist() == list(range(len(ks)))
        assert one["type"].tolist() == [k.type for k in ks]
        assert one["ks"].tolist() == [k.ks for k in ks]
        x, cols = kernels.type_sums(space, ids)
        np.testing.assert_allclose(x[:, [c.endswith(":flops") for c in cols]].sum(1), space.flops(ids), rtol=1e-9)
        assert np.all(x[:, [c.endswith(":count") for c in cols]].sum(1) == df.groupby("arch_id").size().loc[ids])


@pytest.mark.slow
def test_kernel_table_timing(dataset):
    """All 15,625 NB201 archs from a cold cache; measured ~10-12 s on the 2-core dev machine."""
    from latbench.data.store import get_space

    space = get_space("nb201")
    kernels.clear_cache()
    tic = time.perf_counter()
    df = kernels.kernel_table(space)
    cold = time.perf_counter() - tic
    tic = time.perf_counter()
    kernels.kernel_table(space)
    warm = time.perf_counter() - tic
    print(f"nb201 kernel table: {len(df)} kernels, cold {cold:.1f} s, warm {warm:.2f} s")
    assert df["arch_id"].nunique() == 15_625
    assert cold < 120 and warm < 10
