"""OFA MobileNetV3 space: arch strings, encodings, and layer-list counts vs. the real torch model."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from latbench.errors import UnknownArchError
from latbench.spaces.ofa import (
    FEATURE_MIX,
    FINAL_EXPAND,
    NUM_SLOTS,
    RESOLUTIONS,
    STAGE_CHANNELS,
    STEM_CHANNELS,
    OFASpace,
    make_divisible,
)

SMALLEST = dict(ks=[3] * 20, e=[3] * 20, d=[2] * 5, r=128)
LARGEST = dict(ks=[7] * 20, e=[6] * 20, d=[4] * 5, r=224)


def _random_raw(n: int, seed: int = 0) -> list[dict]:
    """HELP-like dicts: inactive slots hold random valid values, as in HELP's file."""
    rng = np.random.default_rng(seed)
    return [
        dict(
            ks=rng.choice([3, 5, 7], 20).tolist(),
            e=rng.choice([3, 4, 6], 20).tolist(),
            d=rng.choice([2, 3, 4], 5).tolist(),
            r=np.int64(rng.choice(RESOLUTIONS)),
        )
        for _ in range(n)
    ]


ARCHS = [OFASpace.from_raw(a) for a in [SMALLEST, LARGEST, *_random_raw(4)]]


def _active(d) -> list[bool]:
    return [i % 4 < d[i // 4] for i in range(NUM_SLOTS)]


# ---- constants ------------------------------------------------------------------------------
def test_widths_follow_make_divisible():
    assert make_divisible(16 * 1.2) == 24  # 16 would be < 90% of 19.2
    assert (STEM_CHANNELS, STAGE_CHANNELS) == (24, (32, 48, 96, 136, 192))
    assert (FINAL_EXPAND, FEATURE_MIX) == (1152, 1536)
    assert len(RESOLUTIONS) == 25 and RESOLUTIONS[0] == 128 and RESOLUTIONS[-1] == 224


def test_import_does_not_import_torch():
    code = "import sys, latbench.spaces.ofa; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ---- counts vs. torch -----------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS, ids=[f"arch{i}" for i in range(len(ARCHS))])
def test_layer_counts_match_torch_model(arch):
    from latbench.spaces.base import count_torch

    space = OFASpace([arch])
    shape = space.input_shape_of(arch)
    model = space._build_torch(arch)
    flops, params = count_torch(model, shape)
    expect = space.counts(arch)
    assert flops == pytest.approx(expect[0], rel=1e-9)
    assert params == pytest.approx(expect[1], rel=1e-9)
    assert space.flops(0)[0] == pytest.approx(flops, rel=1e-9)


@pytest.mark.parametrize("arch", [ARCHS[0], ARCHS[2]], ids=["smallest", "random"])
def test_output_shape_at_own_resolution(arch):
    import torch

    space = OFASpace([])
    shape = space.input_shape_of(arch)
    assert shape[1] == shape[2] == int(arch.split("-")[0][1:]) != 224
    with torch.no_grad():
        assert space._build_torch(arch)(torch.randn(2, *shape)).shape == (2, 1000)


def test_smallest_and_largest_counts():
    # w1.0 gives 7.66M params for the largest subnet (OFA's published 7.7M); w1.2 scales it up
    small, large = OFASpace.counts(OFASpace([]), ARCHS[0]), OFASpace.counts(OFASpace([]), ARCHS[1])
    assert 300 < large[0] < 1000 and 8 < large[1] < 13
    assert large[0] == pytest.approx(843.112496) and large[1] == pytest.approx(10.701632)
    assert small[0] == pytest.approx(65.540304) and small[1] == pytest.approx(4.602456)


def test_resolution_is_per_arch():
    space = OFASpace([])
    assert space.input_shape == (3, 224, 224)
    assert space.input_shape_of(ARCHS[0]) == (3, 128, 128)
    small_r = ARCHS[1].replace("r224", "r128")
    assert space._layers(small_r)[0].h == 128 and space._layers(small_r)[-4].h == 4
    ratio = space.counts(small_r)[0] / space.counts(ARCHS[1])[0]
    assert 0.3 < ratio < 0.36  # ~ (128 / 224) ** 2, plus the resolution-free classifier


def test_layer_list_structure():
    arch = ARCHS[1]
    layers = OFASpace([])._layers(arch)
    assert {l.block for l in layers} == set(range(-1, NUM_SLOTS))
    assert all(l.expansion == 6.0 for l in layers if l.block >= 0)
    depthwise = [l for l in layers if l.type == "conv" and l.groups > 1]
    assert len(depthwise) == 21 and all(l.groups == l.cin == l.cout for l in depthwise)
    assert all(l.kernel == 7 for l in depthwise if l.block >= 0)
    se_convs = [l for l in layers if l.type == "conv" and l.bias]
    assert len(se_convs) == 2 * 12 and all(l.h == 1 for l in se_convs)  # 3 SE stages x 4 blocks
    assert layers[0].h == 224 and layers[-1].type == "linear" and layers[-2].h == 1
    assert [l.h for l in layers if l.type == "conv" and l.stride == 2] == [224, 112, 56, 28, 14]


# ---- arch strings ---------------------------------------------------------------------------
def test_inactive_slots_are_canonicalised_away():
    raw = dict(ks=[7, 5, 5, 5] * 5, e=[6, 4, 4, 6] * 5, d=[2, 2, 2, 2, 3], r=204)
    act = _active(raw["d"])
    other = dict(raw, ks=[k if a else 3 for k, a in zip(raw["ks"], act)], e=[x if a else 6 for x, a in zip(raw["e"], act)])
    a, b = OFASpace.from_raw(raw), OFASpace.from_raw(other)
    assert a == b == "r204-d22223-ks75007500750075007550-e64006400640064006440"
    spelled = "r204-d22223-ks75557555755575557555-e64466446644664466446"
    assert OFASpace.canonical(spelled) == a
    assert OFASpace.canonical(a) == a and OFASpace.canonical(f"  {a}\n") == a


def test_from_raw_round_trip():
    for raw in _random_raw(20, seed=1):
        s = OFASpace.from_raw(raw)
        assert OFASpace.canonical(s) == s
        act = _active(raw["d"])
        back = dict(
            ks=[int(c) for c in s.split("-ks")[1][:20]],
            e=[int(c) for c in s.split("-e")[1]],
            d=[int(c) for c in s.split("-d")[1][:5]],
            r=int(s[1:4]),
        )
        assert back["d"] == raw["d"] and back["r"] == raw["r"]
        assert back["ks"] == [k if a else 0 for k, a in zip(raw["ks"], act)]
        assert back["e"] == [e if a else 0 for e, a in zip(raw["e"], act)]
        assert OFASpace.from_raw(back) == s


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(ks=[3] * 19), "ks has 19 values, expected 20"),
        (dict(ks=[4] + [3] * 19), r"ks\[0\]=4 is not one of \(3, 5, 7\)"),
        (dict(e=[3] * 19 + [5]), r"e\[19\]=5 is not one of"),
        (dict(d=[2, 2, 5, 2, 2]), r"d\[2\]=5 is not one of \(2, 3, 4\)"),
        (dict(r=130), "resolution r=130"),
        (dict(r=3.5), "r must be an int"),
        (dict(ks="3" * 20), "ks must be a list of ints"),
        (dict(d=[2.0] * 5), r"d\[0\] must be an int, got 2.0"),
    ],
)
def test_from_raw_rejects(change, message):
    with pytest.raises(UnknownArchError, match=message) as info:
        OFASpace.from_raw({**SMALLEST, **change})
    assert "\n" not in str(info.value) and str(info.value).startswith("ofa: ")


def test_from_raw_rejects_wrong_keys():
    with pytest.raises(UnknownArchError, match="keys"):
        OFASpace.from_raw({k: v for k, v in SMALLEST.items() if k != "r"})
    with pytest.raises(UnknownArchError, match="dict"):
        OFASpace.from_raw([1, 2, 3])


@pytest.mark.parametrize(
    "arch, message",
    [
        ("r128-d22222-ks" + "3" * 19 + "-e" + "3" * 20, "ks has 19 values, expected 20"),
        ("r128-d22222-ks4" + "3" * 19 + "-e" + "3" * 20, r"ks\[0\]=4"),
        ("r128-d22522-ks" + "3" * 20 + "-e" + "3" * 20, r"d\[2\]=5"),
        ("r130-d22222-ks" + "3" * 20 + "-e" + "3" * 20, "resolution r=130"),
        ("r128-d22222-ks" + "3" * 20 + "-e" + "3" * 18 + "90", r"e\[18\]=9 .*inactive"),  # slot 18 inactive, not 0/valid
        ("r128-d22222-ks" + "3" * 20 + "-e" + "3" * 20 + "-x", "expected 'r<res>"),
        ("d22222-r128-ks" + "3" * 20 + "-e" + "3" * 20, "expected 'r<res>"),
        ("rX-d22222-ks" + "3" * 20 + "-e" + "3" * 20, "'r' must be followed by digits"),
        ("", "expected 'r<res>"),
    ],
)
def test_canonical_rejects(arch, message):
    with pytest.raises(UnknownArchError, match=message) as info:
        OFASpace.canonical(arch)
    assert "\n" not in str(info.value)


def test_canonical_rejects_non_string():
    with pytest.raises(UnknownArchError, match="must be a string"):
        OFASpace.canonical(["r128"])


def test_active_slot_cannot_be_zero():
    with pytest.raises(UnknownArchError, match=r"ks\[1\]=0"):
        OFASpace.canonical("r128-d22222-ks" + "30" + "3" * 18 + "-e" + "3" * 20)


# ---- encodings ------------------------------------------------------------------------------
def test_onehot():
    space = OFASpace(ARCHS)
    x = space.onehot(space.arch_ids())
    assert x.shape == (len(ARCHS), 145) and x.dtype == np.float32
    for i, arch in enumerate(ARCHS):
        d = [int(c) for c in arch.split("-d")[1][:5]]
        slots = x[i, :120].reshape(20, 6)
        assert slots.sum() == 2 * sum(d)
        assert np.all(slots[~np.array(_active(d))] == 0)
        r = int(arch.split("-")[0][1:])
        assert x[i, 120:].sum() == 1 and x[i, 120 + RESOLUTIONS.index(r)] == 1
    assert x[0, :6].tolist() == [1, 0, 0, 1, 0, 0] and x[1, :6].tolist() == [0, 0, 1, 0, 0, 1]


def test_graph():
    space = OFASpace(ARCHS)
    adj, feat = space.graph(space.arch_ids())
    assert adj.shape == (len(ARCHS), 22, 22) and feat.shape == (len(ARCHS), 22, 13)
    for i, arch in enumerate(ARCHS):
        d = [int(c) for c in arch.split("-d")[1][:5]]
        active = np.array([True, *_active(d), True])
        assert adj[i].sum() == sum(d) + 1
        assert np.all(np.triu(adj[i], 1) == adj[i])  # forward chain only
        assert np.all(adj[i][~active] == 0) and np.all(adj[i][:, ~active] == 0) and np.all(feat[i][~active] == 0)
        assert np.all(adj[i][active].sum(1)[:-1] == 1)  # each active node feeds exactly one next
        assert feat[i, 0, 11] == 1 and feat[i, 21, 12] == 1 and feat[i].sum() == 3 * sum(d) + 2
    # slot 8 (stage 2, first block) of the largest arch: k7, e6, stage one-hot at index 6 + 2
    assert feat[1, 9].tolist() == [0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]


# ---- HELP's 5,000 archs ---------------------------------------------------------------------
class _NumpyScalarUnpickler(pickle.Unpickler):
    """Just what HELP's ofa_archs.pt needs for its numpy.int64 'r' values, nothing else."""

    def find_class(self, module, name):
        if (module, name) == ("numpy.core.multiarray", "scalar"):
            for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return importlib.import_module(mod).scalar
                except ImportError:
                    continue
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            import _codecs

            return _codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"refusing persistent id {pid!r}")


def test_help_archs(mirror):
    with zipfile.ZipFile(mirror / "help" / "data" / "ofa" / "ofa_archs.pt") as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        with z.open(name) as f:
            data = _NumpyScalarUnpickler(f).load()
    archs = data["arch"]
    assert len(archs) == 5000 and data["num_classes"] == 1000
    for raw in archs[:50]:
        s = OFASpace.from_raw(raw)
        assert OFASpace.canonical(s) == s
    strings = [OFASpace.from_raw(raw) for raw in archs]
    duplicates = len(strings) - len(set(strings))
    print(f"HELP ofa archs: {duplicates} duplicate canonical strings of {len(strings)}")
    assert duplicates == 0  # HELP's 5,000 archs stay distinct once inactive slots are zeroed
    space = OFASpace(strings)
    assert len(space) == 5000 and space.onehot(np.arange(10)).shape == (10, 145)
