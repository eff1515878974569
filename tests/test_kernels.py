"""Kernel decomposition (latbench.kernels): layer graphs are what the torch models execute, sums
match them, every layer in one kernel, fusion on the graph (fan-out), rule tables as data, the
batched table and its speed. Agreement with nn-Meter's own detector: test_nnmeter_detector.py."""

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
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def _nb201_sample():
    rng = np.random.default_rng(0)
    every = NB201Space.all_archs()
    return [ALL_CONV3, ALL_SKIP, ALL_NONE, every[0]] + [every[i] for i in rng.choice(len(every), 4, replace=False)]


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


# aten op -> latbench layer type; views and allocations are not ops of the layer graph
_ATEN = {
    "convolution": "conv",
    "native_batch_norm": "bn",
    "_native_batch_norm_legit_no_training": "bn",
    "relu": "relu",
    "relu_": "relu",
    "hardswish": "hswish",
    "hardsigmoid": "hsigmoid",
    "avg_pool2d": "avgpool",
    "mean": "gap",
    "addmm": "linear",
    "add": "add",
    "mul": "mul",
    "clone": "shuffle",
}
_VIEWS = {"empty", "view", "t", "transpose", "_unsafe_view", "reshape"}


def _executed_graph(model, x):
    """(op types, what each op reads) of one forward pass, recorded at the aten level: the op
    reading a tensor is linked to the op that last wrote its storage."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    constants = {t.data_ptr() for t in (*model.parameters(), *model.buffers())}
    types, reads, writer = [], [], {x.data_ptr(): -1}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, _types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name in _VIEWS:
                return out
            assert name in _ATEN, f"op {name} is not in the layer vocabulary"
            ins = [a for a in args if isinstance(a, torch.Tensor) and a.dim() > 0 and a.data_ptr() not in constants]
            types.append(_ATEN[name])
            reads.append(tuple(writer[a.data_ptr()] for a in ins))
            first = out[0] if isinstance(out, tuple) else out
            writer[first.data_ptr()] = len(types) - 1
            return out

    with torch.no_grad(), Record():
        model(x)
    return types, tuple(reads)


@pytest.mark.parametrize("cls,arch", CASES, ids=IDS)
def test_layer_graph_is_what_the_torch_model_executes(cls, arch):
    """Every op the built model runs is a layer, in execution order, reading the same tensors
    (NB201's x * 0 for an all-'none' node included)."""
    import torch

    space = cls([arch])
    g = space.layer_graph(0)
    types, reads = _executed_graph(space.build_torch(0), torch.zeros(1, *_shape(space, arch)))
    assert types == ["mul" if l.type == "zero" else l.type for l in g.layers]
    assert reads == g.inputs
    assert g.layers == space.layers(0)


def test_nb201_zero_nodes_are_layers():
    nb = NB201Space([ALL_NONE, "|none~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_1x1~2|"])
    assert Counter(l.type for l in nb.layers(0))["zero"] == 3 * 15
    assert Counter(l.type for l in nb.layers(1))["zero"] == 15  # node 1 only: node 2 = node 0, node 3 = conv(node 2)
    flops, params, act = nb.counts(nb.arch_str(0))
    assert act == pytest.approx(sum(l.activations for l in nb.layers(0)) / 1e6, rel=1e-12)
    assert {k.type for k in kernels.decompose(nb, 0)} >= {"zero"}


@pytest.mark.parametrize("cls,arch", CASES, ids=IDS)
def test_every_layer_lands_in_exactly_one_kernel(cls, arch):
    """A kernel is a path of the layer graph along which every op but the last has one consumer,
    the next op; kernels come in the order of their first layer."""
    space = cls([arch])
    g = space.layer_graph(0)
    consumers = g.consumers()
    for rules in RULES:
        ks = kernels.decompose(space, 0, rules)
        assert sorted(i for k in ks for i in k.layers) == list(range(len(g.layers))), rules
        assert [k.layers[0] for k in ks] == sorted(k.layers[0] for k in ks)
        for k in ks:
            for a, b in zip(k.layers, k.layers[1:]):
                assert consumers[a] == (b,), (rules, k)
        if rules == "torch-eager":
            assert len(ks) == len(g.layers) and all(len(k.layers) == 1 for k in ks)


def test_fusion_tables_change_the_kernel_count_as_expected():
    # NB201, every edge nor_conv_3x3: 339 layers. tflite-cpu, per cell: node 1 (one conv edge) feeds
    # two edges, so its bn ends a kernel; node 2's sum feeds only edge 3<-2: add-relu; node 3's two
    # adds stay apart (add_add is a GPU rule): 6 conv-bn + 5 relu + add-relu + 2 add = 14 (x15);
    # reduction blocks relu, conv-bn-relu, conv-bn, avgpool, conv, add (x2); stem conv-bn; head add's
    # consumer bn starts bn-relu, global-avgpool, fc -> 1 + 210 + 12 + 3 = 226. tflite-gpu: the first
    # edge of node 2 takes its add and relu (conv-bn-add-relu), the first edge of node 3 both adds
    # (conv-bn-add-add) -> 11 per cell; the main path takes each reduction block's add; the last
    # cell's kernel then takes the head's bn and relu (a pair checks the kernel's first op, conv) ->
    # 1 + 165 + 10 + 2 = 178. onnxruntime-cpu (units, one add each): 11 per cell, 5 per block, head
    # 4 -> 180.
    nb = NB201Space([ALL_CONV3])
    counts = {r: len(kernels.decompose(nb, 0, r)) for r in RULES}
    assert counts == {"torch-eager": 339, "tflite-cpu": 226, "tflite-gpu": 178, "onnxruntime-cpu": 180}
    by = {r: Counter(k.type for k in kernels.decompose(nb, 0, r)) for r in RULES}
    assert by["tflite-cpu"]["add-relu"] == 15 and by["tflite-gpu"]["conv-bn-add-relu"] == 15
    assert by["tflite-gpu"]["conv-bn-add-add"] == 14 and by["tflite-gpu"]["conv-bn-add-add-bn-relu"] == 1
    # FBNet, every layer k3_e6: 200 layers; tflite-cpu stem 1 + 22 x (conv-bn-relu, dwconv-bn-relu,
    # conv-bn) + 16 residual adds + head 3 = 86; the GPU table fuses each add into its conv-bn (-16).
    fb = FBNetSpace(["-".join(["k3_e6"] * 22), "-".join(["k5_e1_g2"] * 22)])
    for i, expect in ((0, 86), (1, 108)):  # g2 adds a channel-shuffle kernel per block
        cpu, gpu = (kernels.decompose(fb, i, r) for r in ("tflite-cpu", "tflite-gpu"))
        n_add = sum(l.type == "add" for l in fb.layers(i))
        assert (len(cpu), len(gpu)) == (expect, expect - n_add) and n_add == 16
        assert Counter(k.type for k in gpu)["conv-bn-add"] == n_add
    assert Counter(k.type for k in kernels.decompose(fb, 1))["channelshuffle"] == 22
    # OFA: each squeeze-excite block (6 primitive layers) is one "se" kernel on tflite but not on
    # ORT; nn-Meter's rules fuse conv-bn-hswish (conv_hswish) but no dwconv with hswish
    of = OFASpace(_ofa_sample()[1:2])
    n_se = sum(l.type == "mul" for l in of.layers(0))
    by = {r: Counter(k.type for k in kernels.decompose(of, 0, r)) for r in RULES}
    assert by["tflite-cpu"]["se"] == by["tflite-gpu"]["se"] == n_se == 12
    assert by["onnxruntime-cpu"]["se"] == 0 and by["onnxruntime-cpu"]["conv-hsigmoid"] == n_se
    # stem, 12 expansion convs, head; the feature mix (no bn) is conv-hswish
    assert (by["tflite-cpu"]["conv-bn-hswish"], by["tflite-cpu"]["conv-hswish"]) == (14, 1)
    assert by["tflite-cpu"]["dwconv-bn"] == by["tflite-cpu"]["hswish"] > 0
    assert not any("dwconv-bn-hswish" in t for t in by["tflite-cpu"])
    assert "default" in kernels.ALIASES and kernels.decompose(of, 0, "default") == kernels.decompose(of, 0, "tflite-cpu")


def test_tflite_tables_are_nnmeters_rule_files():
    """Every obey-true BF rule of nn-Meter's files is in the table; dense/pooling rules never match
    an op (nn-Meter's detector calls those ops fc and avgpool); the GPU-only rules are there."""
    cpu, gpu = kernels.RULE_SETS["tflite-cpu"], kernels.RULE_SETS["tflite-gpu"]
    assert cpu.units[:2] == ((("conv", "bn", "relu"), "conv-bn-relu"), (("dwconv", "bn", "relu"), "dwconv-bn-relu"))
    assert cpu.units[2][1] == gpu.units[2][1] == "se"
    assert len(cpu.pairs) == len(kernels.NNMETER_TFLITE_CPU) - 2 and len(gpu.pairs) == len(kernels.NNMETER_TFLITE_GPU) - 2
    assert {("add", "add"), ("relu", "add"), ("dwconv", "add"), ("conv", "add")} <= gpu.pairs
    assert not {("add", "add"), ("relu", "add"), ("dwconv", "add"), ("conv", "add")} & cpu.pairs
    assert ("dense", "relu") in cpu.pairs and ("pooling", "add") in gpu.pairs  # inert, as in nn-Meter
    vocabulary = {kernels.op_type(l) for cls, arch in CASES for l in cls([arch]).layers(0)}
    assert not {"dense", "pooling"} & vocabulary
    assert "nn-Meter" in cpu.source and "4ca17507" in cpu.source


def test_a_new_rule_set_is_only_data(monkeypatch):
    """Adding a runtime family = adding a RuleSet; the fusion passes are generic."""
    nb = NB201Space([ALL_CONV3])
    units = kernels.RuleSet(units=((("relu", "conv", "bn"), "relu-conv-bn"), (("relu", "conv"), "relu-conv")))
    pairs = kernels.RuleSet(pairs=frozenset({("relu", "conv"), ("relu", "bn")}))  # checked against the first op
    monkeypatch.setitem(kernels.RULE_SETS, "test-units", units)
    monkeypatch.setitem(kernels.RULE_SETS, "test-pairs", pairs)
    kernels._fuse.cache_clear()
    kernels._follows.cache_clear()
    try:
        by_units = Counter(k.type for k in kernels.decompose(nb, 0, "test-units"))
        by_pairs = Counter(k.type for k in kernels.decompose(nb, 0, "test-pairs"))
    finally:
        kernels._fuse.cache_clear()
        kernels._follows.cache_clear()
    assert by_units["relu-conv-bn"] == 15 * 6 + 2 * 2  # every cell edge, both convs of both reduction blocks
    assert "relu-conv" not in by_units  # units in order: the longer one first
    assert by_pairs == by_units


def test_fusion_needs_a_single_consumer():
    """A producer read by several ops ends its kernel; an add with one consumer fuses forward."""
    nb = NB201Space(_nb201_sample())
    for i in range(len(nb)):
        g = nb.layer_graph(i)
        consumers = g.consumers()
        for rules in ("tflite-cpu", "tflite-gpu"):
            for k in kernels.decompose(nb, i, rules):
                if k.type == "add-relu":
                    assert len(consumers[k.layers[0]]) == 1
                for j in k.layers[:-1]:
                    assert len(consumers[j]) == 1
    # a node with a single consumer edge: its sum fuses into that edge's relu
    single = NB201Space(["|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|none~0|none~1|nor_conv_3x3~2|"])
    cpu = Counter(k.type for k in kernels.decompose(single, 0, "tflite-cpu"))
    assert cpu["add-relu"] == 15


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
    """All 15,625 NB201 archs from a cold cache; measured 8-30 s on the shared 2-core dev machine."""
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


def _relative_codes(space, ids, rules="default"):
    """Codes of ``ids`` relative to the space's block, and the block's catalogue rows."""
    block = kernels.space_codes(space, rules)
    cat = kernels.kernel_catalog(rules).iloc[block].reset_index(drop=True)
    return [c - block.start for c in kernels.kernel_codes(space, ids, rules)], cat


def test_kernel_codes_do_not_depend_on_what_the_process_decomposed_before(dataset):
    """A sweep worker or a verify run meets archs and spaces in another order than the run it repeats:
    the codes (and so every sum over them and the row order of every per-kernel fit) must not move."""
    from latbench.data.store import get_space

    nb201, ofa = get_space("nb201"), get_space("ofa")
    ids = np.arange(200, 240)
    kernels.clear_cache()
    first, cat_first = _relative_codes(nb201, ids)
    kernels.clear_cache()
    kernels.kernel_codes(ofa, np.arange(50))  # another space first: nb201's block starts elsewhere
    second, cat_second = _relative_codes(nb201, ids)
    assert kernels.space_codes(nb201).start > 0
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert cat_first.equals(cat_second)


def test_kernel_code_cache_on_disk_is_checked_and_rebuilt_when_unsound(dataset):
    from latbench.data.store import get_space

    space = get_space("fbnet")
    kernels.clear_cache()
    computed, cat = _relative_codes(space, np.arange(30))
    path = kernels._cache_file(space, "tflite-cpu")
    assert path.is_file()  # written by the pass above, or by an earlier one
    for bad in (b"not an npz", path.read_bytes()[:100]):
        path.write_bytes(bad)
        kernels.clear_cache()
        again, cat_again = _relative_codes(space, np.arange(30))  # refused, recomputed, rewritten
        assert all(np.array_equal(a, b) for a, b in zip(computed, again)) and cat.equals(cat_again)
        assert kernels._load(path, len(space)) is not None


def test_a_new_kernel_cache_file_keeps_only_the_most_recently_used_of_its_space_and_rules(dataset):
    import os

    from latbench.data.store import get_space

    space = get_space("fbnet")
    path = kernels._cache_file(space, "tflite-cpu")
    # the same space and rules under other code, last used 4, 3, 2 and 1 hours ago
    older = [path.with_name(f"fbnet-tflite-cpu-{str(i) * 24}.npz") for i in range(1, 5)]
    others = [path.with_name(n) for n in ("fbnet-tflite-cpu-x-" + "0" * 24 + ".npz", "nb201-tflite-cpu-" + "1" * 24 + ".npz")]
    for f in (*older, *others):
        f.write_bytes(b"stale")
    now = time.time()
    for hours, f in zip((4, 3, 2, 1), older):
        os.utime(f, (now - 3600 * hours, now - 3600 * hours))
    path.unlink(missing_ok=True)
    kernels.clear_cache()
    kernels.kernel_codes(space, np.arange(3))  # decomposes and saves
    kept = sorted(f.name for f in path.parent.glob("fbnet-tflite-cpu-*.npz") if f not in others)
    assert (
        kept
        == sorted([path.name, older[2].name, older[3].name])
        == sorted([path.name, *(f.name for f in older[-(kernels.CACHE_FILES_KEPT - 1) :])])
    )
    assert all(f.read_bytes() == b"stale" for f in others)  # another rule set's, another space's: kept
    # a hit marks the file as used: another checkout's save then keeps it over an older one
    os.utime(path, (now - 3600 * 5, now - 3600 * 5))
    kernels.clear_cache()
    kernels.kernel_codes(space, np.arange(3))  # loads
    assert path.stat().st_mtime > now - 60
    for f in (*older[2:], *others):
        f.unlink()


def test_kernel_cache_file_is_the_same_in_every_process(dataset):
    """The file's name must not follow the string-hash seed (a frozenset's repr does): else every
    process decomposes the space again and leaves one more file."""
    import os
    import subprocess
    import sys

    code = "from latbench.data.store import get_space; from latbench.kernels import decomposition as k; "
    code += "print(k._cache_file(get_space('fbnet'), 'tflite-cpu').name)"
    names = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(names) == 1 and names.pop().startswith("fbnet-tflite-cpu-")


def test_nn_meter_scores_do_not_depend_on_the_tasks_run_before(dataset):
    """nn-Meter's per-family scales used every family in the catalogue, other spaces' too."""
    from latbench.eval.runner import evaluate
    from latbench_baselines.nn_meter import NNMeter

    def hard3():
        r = evaluate(NNMeter(**NNMeter.check_params), "hard-3", shots=5, trials=1)
        return r.results[0].trials[0].devices

    kernels.clear_cache()
    alone = hard3()
    kernels.clear_cache()
    kernels.kernel_codes(__import__("latbench").load_space("ofa"), np.arange(100))  # OFA's families join the catalogue
    assert hard3() == alone
