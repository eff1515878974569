"""Kernel decomposition: the fused units a runtime actually executes, for kernel-level predictors.

nn-Meter (MobiSys'21), LitePred (NSDI'24) and the op-wise predictors of Li et al. (ICPE'23) do not
predict an architecture's latency directly: they split the network into *kernels* (maximal groups
of operators the runtime fuses and runs as one unit, e.g. conv+bn+relu), predict each kernel, and
sum. This module derives those kernels from a space's primitive layer list
(:meth:`latbench.spaces.base.SearchSpace.layers`), so every kernel-level method shares one
decomposition.

**Fusion rules are data.** A rule set maps sequences of primitive op types to a fused kernel type
(:data:`RULE_SETS`); one generic matcher (:func:`match_chain`) applies any rule set, longest
pattern first, left to right. The tables:

- ``tflite-cpu`` (alias ``default``, ``mobile``): nn-Meter's rules for TFLite on a mobile CPU
  (``kerneldetection/rulelib/rules/rule_tflite_cpu.json``: conv/dwconv + bn + activation fuse,
  bn+relu, add+relu, fc+relu fuse; relu->conv, pool->x, conv->add do not), plus its fixed
  multi-op unit ``se`` (global pool, 1x1 conv, relu, 1x1 conv, hard-sigmoid, multiply). nn-Meter's
  rule file marks conv+hswish as fusible; we apply it to dwconv as well (inferred).
- ``tflite-gpu``: the CPU table plus conv(+bn)+add, as nn-Meter's ``rule_tflite_gpu.json`` marks
  conv->add (and pool->relu, pool->add) fusible.
- ``onnxruntime-cpu`` (inferred from ONNX Runtime's graph optimisations, not measured): BN folded
  into the preceding conv, conv + Relu/HardSigmoid fused (ConvActivationFusion), conv + residual
  add (+relu) fused (NCHWc Conv-Sum fusion); hard-swish, a standalone BN and the SE block's other
  ops stay separate.
- ``torch-eager`` (alias ``none``): no fusion, one kernel per primitive layer.

**Chains.** A pattern only matches inside a *chain*: a run of layers in which each layer consumes
its predecessor's output alone (a layer list flattens a DAG, so neighbours in the list are not
always producer and consumer). Chains break (1) where ``Layer.block`` changes, (2) after an
``add`` (in all three spaces an add's output feeds a residual branch or several consumers, which
nn-Meter's default MON=0 rule never fuses forward), and (3) at the space-specific branch starts of
:data:`CHAIN_STARTS` (NB201's cell edges are parallel branches: each edge's ``relu`` or
``avgpool`` starts a new chain). Known approximation: in the 24 NB201 archs whose cells emit no
layer at all (only skip/none edges), the stem's bn and the first reduction block's relu end up in
one chain and fuse, although that relu's input also feeds the shortcut.

**Kernel features** follow nn-Meter's (``predictor/prediction/extract_feature.py``): input H (=W),
Cin, Cout, kernel size, stride, groups, FLOPs and params; plus output H, the summed output
activations of the kernel's layers (``act``) and a memory-traffic proxy ``mem`` (input + output
activations + weights, in M elements; an add/mul reads two inputs). FLOPs are M multiply-accumulates
(the space's convention), params M, activations M elements, so the kernels of an arch sum exactly to
``space.flops``, ``space.params`` and ``space.activations``.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass

import numpy as np

from latbench.errors import LatbenchError, did_you_mean

# ---- fusion rule sets (data) ------------------------------------------------------------------
#: Patterns of primitive op types (see :func:`op_type`) -> fused kernel type. Any op not covered
#: by a pattern becomes a kernel on its own, named by :data:`SINGLE_KERNEL`.
_SE = ("gap", "conv", "relu", "conv", "hsigmoid", "mul")

_TFLITE_CPU: dict[tuple[str, ...], str] = {
    ("conv", "bn", "relu"): "conv-bn-relu",
    ("conv", "bn", "hswish"): "conv-bn-hswish",
    ("conv", "bn"): "conv-bn",
    ("conv", "relu"): "conv-relu",
    ("conv", "hswish"): "conv-hswish",
    ("dwconv", "bn", "relu"): "dwconv-bn-relu",
    ("dwconv", "bn", "hswish"): "dwconv-bn-hswish",
    ("dwconv", "bn"): "dwconv-bn",
    ("dwconv", "relu"): "dwconv-relu",
    ("bn", "relu"): "bn-relu",
    ("add", "relu"): "add-relu",
    ("fc", "relu"): "fc-relu",
    _SE: "se",
}

_TFLITE_GPU: dict[tuple[str, ...], str] = {
    **_TFLITE_CPU,
    ("conv", "bn", "add"): "conv-bn-add",
    ("conv", "add"): "conv-add",
    ("avgpool", "relu"): "avgpool-relu",
    ("avgpool", "add"): "avgpool-add",
}

_ORT_CPU: dict[tuple[str, ...], str] = {
    ("conv", "bn", "relu"): "conv-bn-relu",
    ("conv", "bn", "add", "relu"): "conv-bn-add-relu",
    ("conv", "bn", "add"): "conv-bn-add",
    ("conv", "bn"): "conv-bn",
    ("conv", "relu"): "conv-relu",
    ("conv", "hsigmoid"): "conv-hsigmoid",
    ("conv", "add"): "conv-add",
    ("dwconv", "bn", "relu"): "dwconv-bn-relu",
    ("dwconv", "bn"): "dwconv-bn",
    ("dwconv", "relu"): "dwconv-relu",
}

RULE_SETS: dict[str, dict[tuple[str, ...], str]] = {
    "tflite-cpu": _TFLITE_CPU,
    "tflite-gpu": _TFLITE_GPU,
    "onnxruntime-cpu": _ORT_CPU,
    "torch-eager": {},
}
ALIASES = {
    "default": "tflite-cpu",
    "mobile": "tflite-cpu",
    "mobile-gpu": "tflite-gpu",
    "ort": "onnxruntime-cpu",
    "none": "torch-eager",
}

#: Kernel type of an op that no pattern covers (nn-Meter's names).
SINGLE_KERNEL = {"gap": "global-avgpool", "shuffle": "channelshuffle"}

#: Space -> op types that start a new chain inside a searchable block (parallel branches).
CHAIN_STARTS: dict[str, tuple[str, ...]] = {"nb201": ("relu", "avgpool")}


#: Kernel types grouped by the nn-Meter predictor that serves them: nn-Meter predicts every
#: conv-like kernel with its conv-bn-relu model and every dwconv-like one with dwconv-bn-relu.
def predictor_family(kernel_type: str) -> str:
    head = kernel_type.split("-")[0]
    if head == "conv":
        return "conv-bn-relu"
    if head == "dwconv":
        return "dwconv-bn-relu"
    if head == "fc":
        return "fc"
    if kernel_type in ("add-relu",):
        return "addrelu"
    if kernel_type == "bn-relu":
        return "bnrelu"
    if head == "avgpool":
        return "avgpool"
    return kernel_type


def resolve_rules(rules: str) -> str:
    """Canonical rule-set name; LatbenchError naming the known sets for anything else."""
    if not isinstance(rules, str):
        raise LatbenchError(f"fusion rule set must be a name, got {type(rules).__name__}")
    name = ALIASES.get(rules, rules)
    if name not in RULE_SETS:
        known = sorted(RULE_SETS) + sorted(ALIASES)
        raise LatbenchError(f"unknown fusion rule set {rules!r}{did_you_mean(rules, known)}; known: {', '.join(known)}")
    return name


# ---- records ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Kernel:
    """One fused kernel: its type, which layers (indices into ``space.layers(i)``) it runs, features."""

    type: str
    layers: tuple[int, ...]
    hw: int  # input height == width
    cin: int
    cout: int
    ks: int  # kernel size of the main (conv/pool) op
    stride: int
    groups: int
    h_out: int
    flops: float  # M multiply-accumulates
    params: float  # M
    act: float  # M output activations of its layers (sums to space.activations)
    mem: float  # M elements moved: input(s) + output + weights

    @property
    def family(self) -> str:
        return predictor_family(self.type)


#: Feature columns of :func:`kernel_table` (after ``arch_id``, ``position``, ``type``, ``family``).
FEATURES = ("hw", "cin", "cout", "ks", "stride", "groups", "h_out", "flops", "params", "act", "mem")


def op_type(layer) -> str:
    """Primitive op type of a layer: conv split into conv / dwconv (groups == cin == cout > 1)."""
    if layer.type == "conv":
        return "dwconv" if layer.groups > 1 and layer.groups == layer.cin == layer.cout else "conv"
    if layer.type == "linear":
        return "fc"
    return layer.type


def chains(layers, space_name: str = "") -> list[tuple[int, int]]:
    """(start, stop) index ranges of the chains of a layer list (see the module docstring)."""
    starts = CHAIN_STARTS.get(space_name, ())
    out, begin = [], 0
    for i in range(1, len(layers)):
        prev, cur = layers[i - 1], layers[i]
        if cur.block != prev.block or prev.type == "add" or (cur.block >= 0 and cur.type in starts):
            out.append((begin, i))
            begin = i
    if layers:
        out.append((begin, len(layers)))
    return out


@functools.cache
def _patterns(rules: str) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """First op type -> [(pattern, kernel type)], longest first."""
    by_first: dict[str, list] = {}
    for pat, kind in RULE_SETS[rules].items():
        by_first.setdefault(pat[0], []).append((pat, kind))
    for v in by_first.values():
        v.sort(key=lambda pk: -len(pk[0]))
    return by_first


@functools.lru_cache(maxsize=200_000)
def match_chain(ops: tuple[str, ...], rules: str) -> tuple[tuple[int, int, str], ...]:
    """Greedy longest-first matching of one chain's op types: ((start, length, kernel type), ...)."""
    pats = _patterns(rules)
    out, i, n = [], 0, len(ops)
    while i < n:
        for pat, kind in pats.get(ops[i], ()):
            if ops[i : i + len(pat)] == pat:
                out.append((i, len(pat), kind))
                i += len(pat)
                break
        else:
            out.append((i, 1, SINGLE_KERNEL.get(ops[i], ops[i])))
            i += 1
    return tuple(out)


@functools.lru_cache(maxsize=500_000)
def _kernel(layers: tuple, kind: str) -> tuple:
    """Features of one fused kernel from its layers (cached: kernels repeat across archs)."""
    first, last = layers[0], layers[-1]
    main = next((l for l in layers if l.type in ("conv", "linear", "avgpool")), first)
    n_in = 2 if first.type in ("add", "mul") else 1
    params = sum(l.params for l in layers)
    act = sum(l.activations for l in layers)
    mem = n_in * first.h * first.h * first.cin + last.activations + params
    return (
        kind,
        first.h,
        first.cin,
        last.cout,
        main.kernel,
        main.stride,
        main.groups,
        last.out_h,
        sum(l.flops for l in layers) / 1e6,
        params / 1e6,
        act / 1e6,
        mem / 1e6,
    )


def decompose_layers(layers, rules: str = "default", space_name: str = "") -> list[Kernel]:
    """Kernels of a primitive layer list under a fusion rule set."""
    rules = resolve_rules(rules)
    ops = [op_type(l) for l in layers]
    out = []
    for a, b in chains(layers, space_name):
        for start, length, kind in match_chain(tuple(ops[a:b]), rules):
            idx = tuple(range(a + start, a + start + length))
            f = _kernel(tuple(layers[i] for i in idx), kind)
            out.append(Kernel(f[0], idx, *f[1:]))
    return out


def decompose(space, arch_id: int, rules: str = "default") -> list[Kernel]:
    """The kernels a runtime family executes for arch ``arch_id`` of ``space``, in layer order.

    Every layer of ``space.layers(arch_id)`` lands in exactly one kernel (``Kernel.layers``).
    """
    return decompose_layers(space.layers(arch_id), rules, space.name)


# ---- batched table ------------------------------------------------------------------------------
# Distinct kernels are few (26 on NB201, ~150 on FBNet, ~2,000 on OFA under tflite-cpu), so an arch
# is stored as an int array of codes into a catalogue of distinct kernels, per rule set.
_CATALOG: dict[str, dict[tuple, int]] = {}  # rules -> {feature row: code}
# (space name, fingerprint of its arch list, rules) -> {arch_id: codes}
_CODES: dict[tuple[str, int, str], dict[int, np.ndarray]] = {}
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(space) -> int:
    """Identifies a space's arch list, so equal spaces (reloaded from the dataset) share a cache."""
    fp = _FINGERPRINTS.get(space)
    if fp is None:
        fp = hash((space.name, tuple(space.arch_str(i) for i in range(len(space)))))
        _FINGERPRINTS[space] = fp
    return fp


def _arch_codes(space, arch_id: int, rules: str) -> np.ndarray:
    layers = space._layers(space.arch_str(arch_id))  # not space.layers: its LRU is small, we cache codes
    ops = [op_type(l) for l in layers]
    catalog = _CATALOG.setdefault(rules, {})
    codes = []
    for a, b in chains(layers, space.name):
        for start, length, kind in match_chain(tuple(ops[a:b]), rules):
            row = _kernel(tuple(layers[a + start : a + start + length]), kind)
            codes.append(catalog.setdefault(row, len(catalog)))
    return np.asarray(codes, dtype=np.int32)


def kernel_codes(space, ids, rules: str = "default") -> list[np.ndarray]:
    """Per arch of ``ids``, its kernels as codes into :func:`kernel_catalog` (cached per space)."""
    rules = resolve_rules(rules)
    cache = _CODES.setdefault((space.name, _fingerprint(space), rules), {})
    out = []
    for i in space._ids(ids).tolist():
        if i not in cache:
            cache[i] = _arch_codes(space, i, rules)
        out.append(cache[i])
    return out


def measured_code_latency(space, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer kernel measurements (profiler rows: arch_id, layer, latency_ms) as kernel-level data.

    The profiler's kernel tables come from eager PyTorch, which runs every layer as its own kernel,
    so each row is one ``torch-eager`` kernel. Returns (codes, mean ms, number of measurements) per
    distinct kernel configuration, codes into ``kernel_catalog("torch-eager")``.
    """
    arch = rows["arch_id"].to_numpy(dtype=np.int64)
    layer = rows["layer"].to_numpy(dtype=np.int64)
    lat = rows["latency_ms"].to_numpy(dtype=np.float64)
    if len(arch) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    uniq, inv = np.unique(arch, return_inverse=True)
    per_arch = kernel_codes(space, uniq, "torch-eager")
    sizes = np.array([len(c) for c in per_arch])
    if np.any(layer >= sizes[inv]) or np.any(layer < 0):
        raise LatbenchError("kernel rows name a layer index outside the arch's layer list")
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    codes = np.concatenate(per_arch)[offsets[inv] + layer]
    ok = np.isfinite(lat) & (lat > 0)
    u, where = np.unique(codes[ok], return_inverse=True)
    n = np.bincount(where).astype(np.float64)
    return u.astype(np.int64), np.bincount(where, weights=lat[ok]) / n, n


def kernel_catalog(rules: str = "default"):
    """DataFrame of every distinct kernel seen so far under ``rules``: index = code; type, family, features."""
    import pandas as pd

    rows = list(_CATALOG.get(resolve_rules(rules), {}))
    df = pd.DataFrame(rows, columns=("type",) + FEATURES)
    df.insert(1, "family", df["type"].map(predictor_family))
    return df


def kernel_table(space, ids=None, rules: str = "default"):
    """A pandas DataFrame with one row per kernel: arch_id, position (index in the arch), type,
    family (the nn-Meter predictor that serves it) and :data:`FEATURES`. ``ids=None``: all archs.

    Cached per (space, rule set, arch). Measured on one core of the dev machine: all 15,625 NB201
    archs ~10 s cold (6 s of it building the layer lists) and <1 s warm; FBNet/OFA (5,000) ~3 s cold.
    """
    ids = space.arch_ids() if ids is None else space._ids(ids)
    codes = kernel_codes(space, ids, rules)
    counts = np.array([len(c) for c in codes], dtype=np.int64)
    flat = np.concatenate(codes) if codes else np.zeros(0, np.int32)
    df = kernel_catalog(rules).iloc[flat].reset_index(drop=True)
    df.insert(0, "position", np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64))
    df.insert(0, "arch_id", np.repeat(ids, counts))
    return df


def count_matrix(space, ids, rules: str = "default"):
    """scipy.sparse CSR [len(ids), catalogue size]: how often each distinct kernel occurs per arch."""
    from scipy import sparse

    codes = kernel_codes(space, ids, rules)
    n_codes = len(_CATALOG.get(resolve_rules(rules), {}))
    indptr = np.concatenate([[0], np.cumsum([len(c) for c in codes])])
    data = np.ones(int(indptr[-1]), dtype=np.float64)
    flat = np.concatenate(codes) if codes else np.zeros(0, np.int32)
    m = sparse.csr_matrix((data, flat, indptr), shape=(len(codes), n_codes))
    m.sum_duplicates()
    return m


#: Per-type statistics :func:`type_sums` can sum ("count" = number of kernels of the type).
TYPE_STATS = ("count", "flops", "params", "act", "mem")


def type_sums(
    space, ids, rules: str = "default", stats=("count", "flops", "params", "mem"), types=None, by: str = "type"
) -> tuple[np.ndarray, list[str]]:
    """Per arch, each kernel type's summed statistics: (matrix [len(ids), len(types) * len(stats)],
    column names ``"<type>:<stat>"``). ``by="family"`` groups by nn-Meter predictor family instead.
    ``types`` fixes the columns (types outside it are dropped); default: the types present in ``ids``.
    """
    for st in stats:
        if st not in TYPE_STATS:
            raise LatbenchError(f"unknown kernel statistic {st!r}; known: {', '.join(TYPE_STATS)}")
    counts = count_matrix(space, ids, rules)
    cat = kernel_catalog(rules)
    keys = cat[by].to_numpy()
    if types is None:
        present = np.flatnonzero(np.asarray(counts.sum(axis=0)).ravel() > 0)
        types = sorted(set(keys[present].tolist()))
    cols, blocks = [], []
    per_code = np.column_stack([np.ones(len(cat))] + [cat[st].to_numpy(dtype=np.float64) for st in stats if st != "count"])
    stat_col = {st: (0 if st == "count" else 1 + [x for x in stats if x != "count"].index(st)) for st in stats}
    for t in types:
        sel = (keys == t).astype(np.float64)
        block = counts @ (per_code * sel[:, None])  # [n, 1 + n_stats]
        for st in stats:
            blocks.append(block[:, stat_col[st]])
            cols.append(f"{t}:{st}")
    x = np.column_stack(blocks) if blocks else np.zeros((counts.shape[0], 0))
    return np.asarray(x, dtype=np.float64), cols


def clear_cache() -> None:
    _CODES.clear()
    _CATALOG.clear()
