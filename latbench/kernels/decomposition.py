"""Kernel decomposition: the fused units a runtime actually executes, for kernel-level predictors.

nn-Meter (MobiSys'21), LitePred (NSDI'24) and the op-wise predictors of Li et al. (ICPE'23) do not
predict an architecture's latency directly: they split the network into *kernels* (groups of
operators the runtime fuses and runs as one unit, e.g. conv+bn+relu), predict each kernel, and
sum. This module derives those kernels from a space's layer graph
(:meth:`latbench.spaces.base.SearchSpace.layer_graph`: every op the built model executes, in
execution order, with what each op reads), so every kernel-level method shares one decomposition.

**Fusion works on the graph.** A producer can only be fused into a consumer when that consumer is
the only one reading its output (otherwise the intermediate tensor must still be written for the
others). :func:`fuse` applies a :class:`RuleSet` in two passes, as nn-Meter's kernel detector does
(``nn_meter/kernel_detector/rule_splitter.py``):

1. *units*: fixed multi-op patterns (nn-Meter's ``conv-bn-relu``, ``dwconv-bn-relu`` and
   squeeze-excite ``se``), matched along single-consumer paths, in the rule set's order;
2. *pairs*: in execution order, each op not yet in a kernel starts one and absorbs its sole
   consumer while (the kernel's first op type, the consumer's op type) is a fusible pair, e.g.
   ``conv`` absorbs ``bn`` and then ``relu`` or ``add``. An op read by several consumers ends its
   kernel (nn-Meter's default ``MON = 0``).

A kernel's type is its op types joined by "-" in execution order (a unit contributes its name);
a single ``gap`` / ``shuffle`` is named ``global-avgpool`` / ``channelshuffle`` (nn-Meter's
predictor names).

**Rule sets are data** (:data:`RULE_SETS`); the documentation page "Kernel fusion rules" lists every
rule with its source and latbench's deviations:

- ``tflite-cpu`` (alias ``default``, ``mobile``) and ``tflite-gpu`` (alias ``mobile-gpu``): the
  ``BF_*`` rules marked ``obey: true`` in nn-Meter's ``rule_tflite_cpu.json`` / ``rule_tflite_gpu.json``
  (:data:`NNMETER_SOURCE`), verbatim, plus nn-Meter's fixed ``se`` unit. Rules naming ``dense`` or
  ``pooling`` never fire, in nn-Meter as here: its detector calls those ops ``fc`` and ``avgpool``.
  One deviation: nn-Meter's unit matcher ignores fan-out (it fuses conv-bn-relu even when the bn's
  output also feeds other ops); latbench's units, like its pairs, need single consumers.
- ``onnxruntime-cpu`` (inferred from ONNX Runtime's graph optimisations, not measured): BN folded
  into the preceding conv, conv + Relu/HardSigmoid fused (ConvActivationFusion), conv + residual
  add (+relu) fused (NCHWc Conv-Sum fusion), as units; hard-swish, a standalone BN and the SE
  block's other ops stay separate.
- ``torch-eager`` (alias ``none``): no fusion, one kernel per layer (what the profiler times).

**Kernel features** follow nn-Meter's (``predictor/prediction/extract_feature.py``): input H (=W),
Cin, Cout, kernel size, stride, groups, FLOPs and params; plus output H, the summed output
activations of the kernel's layers (``act``) and a memory-traffic proxy ``mem`` (every tensor the
kernel reads from outside itself, its output and its weights, in M elements). FLOPs are M
multiply-accumulates (the space's convention), params M, activations M elements, so the kernels of
an arch sum exactly to ``space.flops``, ``space.params`` and ``space.activations``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from latbench.errors import LatbenchError, did_you_mean
from latbench.spaces.base import NETWORK_INPUT


# ---- fusion rule sets (data) ------------------------------------------------------------------
@dataclass(frozen=True)
class RuleSet:
    """How one runtime family fuses ops into kernels; applied by :func:`fuse`.

    Parameters
    ----------
    units : tuple of (tuple of str, str)
        Fixed multi-op units, ``(op types along a single-consumer path, kernel type)``, matched
        first and in this order.
    pairs : frozenset of (str, str)
        ``(first op type of a kernel, op type of its sole consumer)`` pairs the runtime fuses. The
        first op type of a unit is the unit's name.
    source : str
        Where the rules come from.
    """

    units: tuple[tuple[tuple[str, ...], str], ...] = ()
    pairs: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    source: str = ""


#: Where the TFLite rule sets come from (MIT licence).
NNMETER_SOURCE = (
    "microsoft/nn-Meter, commit 4ca17507a12e6ebb27925425a3deccc42d2cbed2, "
    "kerneldetection/rulelib/rules/rule_tflite_{cpu,gpu}.json"
)

#: The ``BF_<op>_<op>[_<op>]`` entries of nn-Meter's rule files with ``"obey": true``, in file order,
#: op names as written there (nn-Meter's tester measured each pair alone and in sequence and calls
#: it fusible when the pair runs faster than the two ops by half the cheaper op's time).
NNMETER_TFLITE_CPU = (
    "bn_relu", "conv_bn", "dwconv_bn", "se_relu", "conv_hswish", "conv_bn_relu", "dwconv_bn_relu",
    "pooling_reshape", "dense_concat", "dense_add", "dense_relu", "concat_dense", "conv_pooling",
    "conv_relu", "add_relu", "relu_dense", "relu_relu", "dwconv_relu", "reshape_convtrans",
    "reshape_conv", "reshape_relu", "reshape_reshape",
)  # fmt: skip
NNMETER_TFLITE_GPU = (
    "bn_relu", "conv_bn", "dwconv_bn", "se_relu", "conv_hswish", "conv_bn_relu", "dwconv_bn_relu",
    "pooling_add", "pooling_relu", "dense_add", "dense_relu", "convtrans_add", "convtrans_relu",
    "concat_add", "concat_relu", "conv_add", "conv_relu", "add_add", "add_relu", "relu_add",
    "relu_relu", "dwconv_add", "dwconv_relu", "reshape_add", "reshape_reshape",
)  # fmt: skip

#: nn-Meter's fixed multi-op unit (``kernel_detector/fusion_lib/se_fusionunit.json``, its ONNX
#: form) in latbench's op names. Its other fixed units (hswish, channelshuffle, gap) are
#: decompositions of ops that latbench's layer graphs hold as one op already.
NNMETER_UNITS = ((("gap", "conv", "relu", "conv", "hsigmoid", "mul"), "se"),)


def nnmeter_rules(fusible) -> RuleSet:
    """A :class:`RuleSet` from nn-Meter ``BF_*`` rule names, as its ``RuleReader`` reads them: two
    ops are a fusible pair, three or more a unit (matched before the fixed :data:`NNMETER_UNITS`)."""
    ops = [name.split("_") for name in fusible]
    units = tuple((tuple(o), "-".join(o)) for o in ops if len(o) > 2) + NNMETER_UNITS
    return RuleSet(units=units, pairs=frozenset(tuple(o) for o in ops if len(o) == 2), source=NNMETER_SOURCE)


_ORT_CPU = RuleSet(
    units=tuple(
        (tuple(kind.split("-")), kind)
        for kind in (
            "conv-bn-add-relu",
            "conv-bn-relu",
            "conv-bn-add",
            "conv-bn",
            "conv-relu",
            "conv-hsigmoid",
            "conv-add",
            "dwconv-bn-relu",
            "dwconv-bn",
            "dwconv-relu",
        )
    ),
    source="inferred from ONNX Runtime's graph optimisations (not measured)",
)

RULE_SETS: dict[str, RuleSet] = {
    "tflite-cpu": nnmeter_rules(NNMETER_TFLITE_CPU),
    "tflite-gpu": nnmeter_rules(NNMETER_TFLITE_GPU),
    "onnxruntime-cpu": _ORT_CPU,
    "torch-eager": RuleSet(source="eager PyTorch: every module is its own kernel"),
}
ALIASES = {
    "default": "tflite-cpu",
    "mobile": "tflite-cpu",
    "mobile-gpu": "tflite-gpu",
    "ort": "onnxruntime-cpu",
    "none": "torch-eager",
}

#: Kernel type of an op that runs alone (nn-Meter's predictor names).
SINGLE_KERNEL = {"gap": "global-avgpool", "shuffle": "channelshuffle"}


def predictor_family(kernel_type: str) -> str:
    """The nn-Meter predictor that serves a kernel type (``predictor/prediction/utils.py``):
    every conv-like kernel uses its conv-bn-relu model and every dwconv-like one dwconv-bn-relu."""
    head = kernel_type.split("-")[0]
    if head == "conv":
        return "conv-bn-relu"
    if head == "dwconv":
        return "dwconv-bn-relu"
    if head == "fc":
        return "fc"
    if kernel_type == "add-relu":
        return "addrelu"
    if kernel_type == "bn-relu":
        return "bnrelu"
    if kernel_type == "se-relu":
        return "se"
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
    layers: tuple[int, ...]  # in execution order; the first is the kernel's root
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
    mem: float  # M elements moved: inputs read from outside the kernel + output + weights

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


# ---- fusion on the layer graph --------------------------------------------------------------------
def _consumers(inputs) -> list[list[int]]:
    """Per layer, the distinct layers reading it, in execution order (``inputs`` is topological)."""
    out: list[list[int]] = [[] for _ in inputs]
    for j, ins in enumerate(inputs):
        for i in ins:
            if i >= 0 and (not out[i] or out[i][-1] != j):
                out[i].append(j)
    return out


def fuse(ops, inputs, rules: str = "default") -> list[tuple[tuple[int, ...], str]]:
    """Kernels of a layer graph: ``[(layer indices, kernel type)]`` ordered by their first layer.

    ``ops`` are the layers' op types (:func:`op_type`), ``inputs`` what each layer reads
    (:attr:`latbench.spaces.base.LayerGraph.inputs`; the order of ``ops`` is the execution
    order). See the module docstring for the two passes.
    """
    return list(_fuse(tuple(ops), tuple(map(tuple, inputs)), resolve_rules(rules)))


@functools.cache
def _follows(rules: str) -> dict[str, frozenset[str]]:
    """First op type of a kernel -> the consumer op types it absorbs (the rule set's pairs)."""
    out: dict[str, set[str]] = {}
    for a, b in RULE_SETS[rules].pairs:
        out.setdefault(a, set()).add(b)
    return {a: frozenset(b) for a, b in out.items()}


@functools.lru_cache(maxsize=4096)
def _fuse(ops: tuple[str, ...], inputs: tuple, rules: str) -> tuple[tuple[tuple[int, ...], str], ...]:
    rs = RULE_SETS[rules]
    n = len(ops)
    consumers = _consumers(inputs)
    owner = [-1] * n  # kernel id of each layer
    members: list[list[int]] = []
    tokens: list[list[str]] = []  # per kernel: op types / unit names, in execution order
    for pattern, name in rs.units:  # pass 1: units along single-consumer paths
        head = pattern[0]
        for s in [i for i, o in enumerate(ops) if o == head]:
            if owner[s] >= 0:
                continue
            path = [s]
            for want in pattern[1:]:
                nxt = consumers[path[-1]]
                if len(nxt) != 1 or ops[nxt[0]] != want or owner[nxt[0]] >= 0:
                    break
                path.append(nxt[0])
            if len(path) == len(pattern):
                for m in path:
                    owner[m] = len(members)
                members.append(path)
                tokens.append([name])
    is_unit_root = [owner[i] >= 0 and members[owner[i]][0] == i for i in range(n)]
    follows = _follows(rules)
    if follows:  # pass 2: greedy pairs in execution order
        for i in range(n):
            if owner[i] >= 0 and not is_unit_root[i]:
                continue  # already inside a kernel
            first = tokens[owner[i]][0] if owner[i] >= 0 else ops[i]
            absorbs = follows.get(first)
            if absorbs is None:
                continue  # runs alone (or is a unit that absorbs nothing)
            if owner[i] < 0:
                owner[i] = len(members)
                members.append([i])
                tokens.append([ops[i]])
            k = owner[i]
            while True:
                nxt = consumers[members[k][-1]]
                if len(nxt) != 1:
                    break
                j = nxt[0]
                if owner[j] >= 0 and not is_unit_root[j]:
                    break  # already inside another kernel
                kind = tokens[owner[j]][0] if owner[j] >= 0 else ops[j]
                if kind not in absorbs:
                    break
                new = members[owner[j]] if owner[j] >= 0 else [j]
                if owner[j] >= 0:
                    members[owner[j]], tokens[owner[j]] = [], []
                    is_unit_root[j] = False
                for m in new:
                    owner[m] = k
                members[k] += new
                tokens[k].append(kind)
    for i in range(n):  # ops no rule touched run alone
        if owner[i] < 0:
            owner[i] = len(members)
            members.append([i])
            tokens.append([ops[i]])
    out = []
    for m, t in zip(members, tokens):
        if m:
            out.append((tuple(m), SINGLE_KERNEL.get(t[0], t[0]) if len(t) == 1 else "-".join(t)))
    out.sort(key=lambda kt: kt[0][0])
    return tuple(out)


def _reads(layers, inputs, idx: tuple[int, ...], out_size) -> tuple[int, ...]:
    """Sizes (elements) of the tensors a kernel's layers read from outside the kernel;
    ``out_size[p]`` is layer ``p``'s output size."""
    if len(idx) == 1:
        (i,) = idx
        return tuple(out_size[p] if p >= 0 else _input_size(layers[i]) for p in inputs[i])
    out = []
    for i in idx:
        for p in inputs[i]:
            if p not in idx:
                out.append(out_size[p] if p >= 0 else _input_size(layers[i]))
    return tuple(out)


def _input_size(layer) -> int:
    return layer.h * layer.h * layer.cin


@functools.lru_cache(maxsize=500_000)
def _kernel(layers: tuple, kind: str, reads: tuple[int, ...]) -> tuple:
    """Features of one fused kernel from its layers (cached: kernels repeat across archs)."""
    first, last = layers[0], layers[-1]
    main = next((l for l in layers if l.type in ("conv", "linear", "avgpool")), first)
    params = sum(l.params for l in layers)
    act = sum(l.activations for l in layers)
    mem = sum(reads) + last.activations + params
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


def _chain_inputs(layers) -> tuple[tuple[int, ...], ...]:
    """What a plain list's layers read: each its predecessor (the first the network input); an
    add or mul reads that tensor twice."""
    out = []
    for i, l in enumerate(layers):
        src = i - 1 if i else NETWORK_INPUT
        out.append((src, src) if l.type in ("add", "mul") else (src,))
    return tuple(out)


def decompose_layers(layers, rules: str = "default", inputs=None) -> list[Kernel]:
    """Kernels of a list of layers under a fusion rule set. ``inputs`` (per layer, what it reads;
    see :class:`latbench.spaces.base.LayerGraph`) defaults to a plain chain."""
    rules = resolve_rules(rules)
    inputs = _chain_inputs(layers) if inputs is None else tuple(map(tuple, inputs))
    if len(inputs) != len(layers):
        raise LatbenchError(f"{len(layers)} layers but {len(inputs)} input lists")
    out = []
    size = [l.activations for l in layers]
    for idx, kind in _fuse(tuple(op_type(l) for l in layers), inputs, rules):
        f = _kernel(tuple(layers[i] for i in idx), kind, _reads(layers, inputs, idx, size))
        out.append(Kernel(f[0], idx, *f[1:]))
    return out


def decompose(space, arch_id: int, rules: str = "default") -> list[Kernel]:
    """The kernels a runtime family executes for arch ``arch_id`` of ``space``, ordered by their
    first layer. Every layer of ``space.layers(arch_id)`` lands in exactly one kernel."""
    g = space.layer_graph(arch_id)
    return decompose_layers(g.layers, rules, g.inputs)


# ---- batched table ------------------------------------------------------------------------------
# Distinct kernels are few (~40 on NB201, ~200 on FBNet, ~2,000 on OFA under tflite-cpu), so an arch
# is stored as an int array of codes into a catalogue of distinct kernels, per rule set.
#
# Codes are canonical: a space's kernels get theirs from one pass over *all* its archs in id order,
# as one contiguous block of the catalogue. So whatever a process decomposed before (other archs,
# other tasks, other spaces), the codes of a space keep the same relative order, every sum over
# codes runs in the same order and the per-kernel fits see their rows in the same order: a result
# does not depend on what else the process ran (the sweep executors and `verify` rely on that).
# The pass takes seconds per space and rule set (NB201 about 10 s on 2 cores), so its result is kept on disk
# (LATBENCH_HOME/cache/kernels/), keyed by the space's arch list, the rule set and this code.
_CATALOG: dict[str, dict[tuple, int]] = {}  # rules -> {(space key, feature row): code}


class _SpaceTable(NamedTuple):
    offsets: np.ndarray  # arch i's kernels are codes[offsets[i]:offsets[i + 1]]
    codes: np.ndarray  # global codes into the catalogue
    block: slice  # the space's block of the catalogue


_TABLES: dict[tuple[str, str, str], _SpaceTable] = {}  # (space, arch digest, rules) -> its table
_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def space_digest(space) -> str:
    """sha256 of a space's arch list, once per space object: equal spaces (reloaded from the dataset)
    share codes, the disk cache file and the baselines' whole-space caches."""
    d = _DIGESTS.get(space)
    if d is None:
        h = hashlib.sha256(space.name.encode())
        for i in range(len(space)):
            h.update(b"\n" + space.arch_str(i).encode())
        d = _DIGESTS[space] = h.hexdigest()
    return d


@functools.cache
def _code_digest() -> str:
    """sha256 of the code that decomposes archs (this module and the search spaces' layer lists)."""
    from latbench import spaces

    h = hashlib.sha256()
    for path in [Path(__file__), *sorted(Path(spaces.__file__).parent.glob("*.py"))]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _cache_file(space, rules: str) -> Path:
    from latbench import paths

    # the rule set's content too: a rule set added or edited at run time (RULE_SETS is data) gets its own
    # file. Its pairs are sorted: a frozenset's repr follows the process's string-hash seed, so an
    # unsorted one names a new file in every process and the cache never hits.
    rs = RULE_SETS[rules]
    content = repr((rs.units, sorted(rs.pairs), rs.source))
    key = hashlib.sha256(f"{space_digest(space)} {rules} {content} {_code_digest()}".encode()).hexdigest()[:24]
    return paths.home() / "cache" / "kernels" / f"{space.name}-{re.sub(r'[^A-Za-z0-9_.-]', '_', rules)}-{key}.npz"


def _decompose_space(space, rules: str) -> dict[str, np.ndarray]:
    """Every arch of ``space`` in id order as arrays: ``offsets`` [n + 1] into ``codes``, numbered
    0.. in the order the kernels first occur, and the kernels' ``type`` and :data:`FEATURES`."""
    local: dict[tuple, int] = {}
    codes: list[int] = []
    offsets = [0]
    for i in range(len(space)):
        g = space._layer_graph(space.arch_str(i))  # not space.layer_graph: its LRU is small
        layers, inputs = g.layers, g.inputs
        size = [l.activations for l in layers]
        for idx, kind in _fuse(tuple(op_type(l) for l in layers), inputs, rules):
            row = _kernel(tuple(layers[j] for j in idx), kind, _reads(layers, inputs, idx, size))
            codes.append(local.setdefault(row, len(local)))
        offsets.append(len(codes))
    rows = list(local)
    columns = {"offsets": np.asarray(offsets, dtype=np.int64), "codes": np.asarray(codes, dtype=np.int32)}
    columns["type"] = np.array([r[0] for r in rows], dtype=np.str_)
    for j, name in enumerate(FEATURES, start=1):
        values = [r[j] for r in rows]
        columns[name] = np.array(values, dtype=np.int64 if all(isinstance(v, int) for v in values) else np.float64)
    return columns


#: Files kept per space and rule set (each NB201 file is about 8.5 MB): the newest one and the ones
#: last used by other code versions, so two checkouts that share a LATBENCH_HOME do not delete each
#: other's file and decompose again at every switch.
CACHE_FILES_KEPT = 3


def _save(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Write the pass's arrays, then remove the files of the same space and rule set (older code or
    rule contents) beyond the :data:`CACHE_FILES_KEPT` most recently used."""
    from latbench.io import atomic_path

    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **columns)
    except OSError:
        return  # a read-only home: the next process decomposes again
    space_and_rules = path.name.rsplit("-", 1)[0]  # the name is <space>-<rules>-<key>.npz
    same = re.compile(re.escape(space_and_rules) + r"-[0-9a-f]{24}\.npz")
    older = []
    for f in path.parent.iterdir():
        if f != path and same.fullmatch(f.name):
            with contextlib.suppress(OSError):
                older.append((f.stat().st_mtime_ns, f.name, f))
    for _, _, old in sorted(older, reverse=True)[CACHE_FILES_KEPT - 1 :]:  # newest first; ``path`` is one of the kept
        old.unlink(missing_ok=True)


def _load(path: Path, n_archs: int) -> dict[str, np.ndarray] | None:
    """What :func:`_save` wrote, checked (plain arrays only, no pickles); None if missing or not sound."""
    try:
        with np.load(path, allow_pickle=False) as z:
            columns = {name: z[name] for name in ("offsets", "codes", "type", *FEATURES)}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    offsets, codes, types = columns["offsets"], columns["codes"], columns["type"]
    cols = [columns[name] for name in FEATURES]
    n_rows = len(types)
    sound = (
        offsets.dtype == np.int64
        and codes.dtype == np.int32
        and types.dtype.kind == "U"
        and offsets.shape == (n_archs + 1,)
        and offsets[0] == 0
        and offsets[-1] == len(codes)
        and bool(np.all(np.diff(offsets) >= 0))
        and all(c.shape == (n_rows,) and c.dtype in (np.int64, np.float64) for c in cols)
        and (len(codes) == 0 or (codes.min() >= 0 and codes.max() < n_rows))
    )
    return columns if sound else None


def _space_table(space, rules: str) -> _SpaceTable:
    """Offsets, global codes and catalogue block of every arch of ``space`` under ``rules``: from memory, the disk
    cache, or one pass over the space; its kernels join the catalogue as one contiguous block."""
    key = (space.name, space_digest(space), rules)
    table = _TABLES.get(key)
    if table is None:
        path = _cache_file(space, rules)
        columns = _load(path, len(space))
        if columns is None:
            columns = _decompose_space(space, rules)
            _save(path, columns)
        else:
            with contextlib.suppress(OSError):
                os.utime(path)  # last used now: what _save keeps
        # the rows are rebuilt from the arrays either way, so a loaded catalogue equals a computed one
        rows = list(zip(columns["type"].tolist(), *(columns[name].tolist() for name in FEATURES)))
        offsets, local = columns["offsets"], columns["codes"]
        catalog = _CATALOG.setdefault(rules, {})
        start = len(catalog)
        for j, row in enumerate(rows):
            catalog[(key, row)] = start + j
        codes = (local.astype(np.int64) + start).astype(np.int32)
        table = _TABLES[key] = _SpaceTable(offsets, codes, slice(start, start + len(rows)))
    return table


def space_codes(space, rules: str = "default") -> slice:
    """The codes of ``space``'s kernels under ``rules``: one block of :func:`kernel_catalog`."""
    rules = resolve_rules(rules)
    return _space_table(space, rules).block


def kernel_codes(space, ids, rules: str = "default") -> list[np.ndarray]:
    """Per arch of ``ids``, its kernels as codes into :func:`kernel_catalog` (canonical, see above)."""
    rules = resolve_rules(rules)
    offsets, codes, _ = _space_table(space, rules)
    return [codes[offsets[i] : offsets[i + 1]] for i in space._ids(ids).tolist()]


#: Columns of a profiler kernel row that name the layer it timed (``latbench.measure.profiler``).
SIGNATURE = ("op", "h", "cin", "cout", "kernel", "stride", "groups")


def layer_signature(layer) -> tuple:
    """A layer as the profiler names a timed module (its ``map_to_layers`` key, :data:`SIGNATURE`)."""
    gap = layer.type == "gap"
    h = 1 if layer.type == "linear" else layer.h
    return (layer.type, h, layer.cin, layer.cout, 1 if gap else layer.kernel, 1 if gap else layer.stride, layer.groups)


def match_layers(space, rows) -> np.ndarray:
    """Index into the current layer list of each profiler kernel row, from its :data:`SIGNATURE`.

    ``rows``: a DataFrame (or mapping of arrays) with ``arch_id`` and the :data:`SIGNATURE` columns,
    each arch's rows in the order the profiler timed them.

    Per arch, the n-th row with a given signature is the n-th layer with that signature (the
    profiler's own ``map_to_layers`` rule), so rows measured before a layer list gained ops that the
    profiler does not time (e.g. NB201's ``zero``) still find their layer. LatbenchError for a row
    whose arch has no such layer left.
    """
    import pandas as pd

    arch = np.asarray(rows["arch_id"], dtype=np.int64)
    keys = ["arch_id", *SIGNATURE]
    recs = [(a, *layer_signature(l), j) for a in np.unique(arch).tolist() for j, l in enumerate(space.layers(a))]
    table = pd.DataFrame(recs, columns=(*keys, "index"))
    table["rank"] = table.groupby(keys, sort=False).cumcount()
    left = pd.DataFrame({"arch_id": arch, "op": np.asarray(rows["op"]).astype(str)})
    for c in SIGNATURE[1:]:
        left[c] = np.asarray(rows[c], dtype=np.int64)
    left["rank"] = left.groupby(keys, sort=False).cumcount()
    index = left.merge(table, on=[*keys, "rank"], how="left")["index"].to_numpy()
    if np.isnan(index).any():
        bad = left[np.isnan(index)].iloc[0]
        raise LatbenchError(
            f"kernel row of arch {int(bad['arch_id'])} names a layer its layer list does not have (left): "
            f"{tuple(bad[c] for c in SIGNATURE)}"
        )
    return index.astype(np.int64)


def measured_code_latency(space, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer kernel measurements (profiler rows: arch_id, layer, latency_ms, and the layer's
    :data:`SIGNATURE` columns when available) as kernel-level data.

    The profiler's kernel tables come from eager PyTorch, which runs every module as its own
    kernel, so each row is one ``torch-eager`` kernel; a row is matched to its layer by signature
    (:func:`match_layers`: layer lists may have gained unprofiled ops since it was measured), or by
    its ``layer`` index into the current layer list when the rows carry no signature. Ops that
    eager PyTorch runs outside any module (``add``, ``mul``, ``zero``) have no rows. Returns (codes,
    mean ms, number of measurements) per distinct kernel configuration, codes into
    ``kernel_catalog("torch-eager")``.
    """
    arch = rows["arch_id"].to_numpy(dtype=np.int64)
    lat = rows["latency_ms"].to_numpy(dtype=np.float64)
    if len(arch) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    uniq, inv = np.unique(arch, return_inverse=True)
    per_arch = kernel_codes(space, uniq, "torch-eager")
    has_signature = all(c in rows.columns for c in SIGNATURE)
    layer = match_layers(space, rows) if has_signature else rows["layer"].to_numpy(dtype=np.int64)
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
    """DataFrame of the kernels under ``rules`` of every space decomposed so far: index = code; type,
    family, features. Each space's kernels form one block (a kernel found in two spaces has two codes)."""
    import pandas as pd

    rows = [row for _, row in _CATALOG.get(resolve_rules(rules), {})]
    df = pd.DataFrame(rows, columns=("type",) + FEATURES)
    df.insert(1, "family", df["type"].map(predictor_family))
    return df


def kernel_table(space, ids=None, rules: str = "default"):
    """A pandas DataFrame with one row per kernel: arch_id, position (index in the arch), type,
    family (the nn-Meter predictor that serves it) and :data:`FEATURES`. ``ids=None``: all archs.

    Cached per (space, rule set, arch). Measured on the shared 2-core dev machine: all 15,625 NB201
    archs ~12 s cold (1.5x the flat-list matcher this replaced; up to ~30 s while other jobs share
    the cores) and ~1 s warm.
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
    """Forget every kernel table and catalogue (and the fusion memo, e.g. after editing RULE_SETS)."""
    _TABLES.clear()
    _CATALOG.clear()
    _fuse.cache_clear()
    _follows.cache_clear()
