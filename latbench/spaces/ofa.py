"""The OFA MobileNetV3 space (width multiplier 1.2, ImageNet), as used by the HELP latency dataset.

A fixed stem (conv 3x3 s2 + first MBConv), 5 stages of up to 4 searchable MBConv slots (20 slots,
each a kernel size and an expansion ratio; a stage keeps only its first ``d`` slots), and a fixed
head, at an input resolution ``r`` that is part of the arch. The canonical string is
``r{r}-d{5 digits}-ks{20 digits}-e{20 digits}`` with the inactive slots written as 0: HELP fills
them with random values that do not change the network, so they must not make two archs differ.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping

import numpy as np

from latbench.errors import UnknownArchError
from latbench.spaces.base import NETWORK_INPUT, GraphBuilder, Layer, LayerGraph, SearchSpace


def make_divisible(v: float, divisor: int = 8) -> int:
    """The MobileNet/OFA channel rounding (nearest multiple, never below 90% of ``v``)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


WIDTH_MULT = 1.2
KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
DEPTHS = (2, 3, 4)
RESOLUTIONS = tuple(range(128, 225, 4))  # 25 values
NUM_STAGES, SLOTS_PER_STAGE = 5, 4
NUM_SLOTS = NUM_STAGES * SLOTS_PER_STAGE  # 20

STEM_CHANNELS = make_divisible(16 * WIDTH_MULT)  # 24: first conv and first (fixed) block
STAGE_CHANNELS = tuple(make_divisible(w * WIDTH_MULT) for w in (24, 40, 80, 112, 160))  # 32 48 96 136 192
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_ACTS = ("relu", "relu", "hswish", "hswish", "hswish")
STAGE_SE = (False, True, False, True, True)
FINAL_EXPAND = make_divisible(960 * WIDTH_MULT)  # 1152
FEATURE_MIX = make_divisible(1280 * WIDTH_MULT)  # 1536
SE_REDUCTION = 4

_GRAPH_NODES = NUM_SLOTS + 2  # input, 20 slots, output
_NODE_FEATURES = len(KERNELS) + len(EXPANDS) + NUM_STAGES + 2


def _bad(arch, problem: str) -> UnknownArchError:
    text = repr(arch)
    if len(text) > 160:
        text = text[:157] + "..."
    return UnknownArchError(f"ofa: bad architecture {text}: {problem}")


def _validate(arch, r: int, d, ks, e) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(r, d, ks, e) checked, with inactive slots zeroed (0 or a valid value is accepted there)."""
    for name, vals, n in (("d", d, NUM_STAGES), ("ks", ks, NUM_SLOTS), ("e", e, NUM_SLOTS)):
        if len(vals) != n:
            raise _bad(arch, f"{name} has {len(vals)} values, expected {n}")
    if r not in RESOLUTIONS:
        raise _bad(arch, f"resolution r={r} is not one of {RESOLUTIONS[0]}..{RESOLUTIONS[-1]} step 4")
    for s, v in enumerate(d):
        if v not in DEPTHS:
            raise _bad(arch, f"d[{s}]={v} is not one of {DEPTHS}")
    ks_out, e_out = [], []
    for i in range(NUM_SLOTS):
        active = i % SLOTS_PER_STAGE < d[i // SLOTS_PER_STAGE]
        for name, vals, choices, out in (("ks", ks, KERNELS, ks_out), ("e", e, EXPANDS, e_out)):
            v = vals[i]
            if v not in choices and (active or v != 0):
                where = "" if active else " (inactive slot: 0 or a valid value)"
                raise _bad(arch, f"{name}[{i}]={v} is not one of {choices}{where}")
            out.append(v if active else 0)
    return r, tuple(d), tuple(ks_out), tuple(e_out)


def _format(r: int, d, ks, e) -> str:
    return f"r{r}-d{''.join(map(str, d))}-ks{''.join(map(str, ks))}-e{''.join(map(str, e))}"


def parse(arch: str) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(r, d, ks, e) of an arch string, inactive slots zeroed; UnknownArchError if malformed."""
    if not isinstance(arch, str):
        raise UnknownArchError(
            f"ofa: architecture must be a string like 'r224-d44444-ks<20 digits>-e<20 digits>', got {type(arch).__name__}"
        )
    return _parse(arch)


@functools.lru_cache(maxsize=16384)  # every encoding and the layer list re-parse the string
def _parse(arch: str) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    parts = arch.strip().split("-")
    prefixes = ("r", "d", "ks", "e")
    if len(parts) != 4 or not all(p.startswith(x) for p, x in zip(parts, prefixes)):
        raise _bad(arch, "expected 'r<res>-d<5 digits>-ks<20 digits>-e<20 digits>'")
    bodies = [p[len(x) :] for p, x in zip(parts, prefixes)]
    for x, body in zip(prefixes, bodies):
        if not body.isascii() or not body.isdigit():
            raise _bad(arch, f"{x!r} must be followed by digits, got {body!r}")
    r = int(bodies[0])
    d, ks, e = ([int(c) for c in body] for body in bodies[1:])
    return _validate(arch, r, d, ks, e)


def _block_plan(d) -> list[tuple[int, int, int, int, str, bool]]:
    """(slot, cin, cout, stride, act, se) of the active slots; the macro skeleton, not ks/e."""
    plan, cin = [], STEM_CHANNELS
    for s in range(NUM_STAGES):
        for j in range(d[s]):
            plan.append(
                (s * SLOTS_PER_STAGE + j, cin, STAGE_CHANNELS[s], STAGE_STRIDES[s] if j == 0 else 1, STAGE_ACTS[s], STAGE_SE[s])
            )
            cin = STAGE_CHANNELS[s]
    return plan


def mid_channels(cin: int, e: int) -> int:
    return make_divisible(round(cin * e))


def se_channels(mid: int) -> int:
    return make_divisible(mid // SE_REDUCTION)


class OFASpace(SearchSpace):
    name = "ofa"
    input_shape = (3, 224, 224)  # the largest; each arch runs at its own r (input_shape_of)
    num_classes = 1000

    # ---- arch strings -------------------------------------------------------------------
    @classmethod
    def canonical(cls, arch: str) -> str:
        return _format(*parse(arch))

    @classmethod
    def from_raw(cls, arch: Mapping) -> str:
        """Canonical string from HELP's dict ``{'ks': [20], 'e': [20], 'd': [5], 'r': int}``."""
        if not isinstance(arch, Mapping):
            raise _bad(arch, f"expected a dict with keys d, e, ks, r, got {type(arch).__name__}")
        if set(arch) != {"ks", "e", "d", "r"}:
            raise _bad(arch, f"expected exactly the keys d, e, ks, r, got {sorted(map(str, arch))}")

        def ints(key, value, seq: bool):
            # operator.index takes numpy/python ints but rejects floats and strings
            try:
                if not seq:
                    if isinstance(value, (bool, np.bool_)):
                        raise TypeError
                    return operator.index(value)
                if isinstance(value, (str, bytes)) or np.ndim(value) != 1:
                    raise TypeError
                return [ints(f"{key}[{i}]", v, False) for i, v in enumerate(value)]
            except TypeError:
                what = "a list of ints" if seq else "an int"
                raise _bad(arch, f"{key} must be {what}, got {value!r}") from None

        r = ints("r", arch["r"], False)
        d, ks, e = (ints(k, arch[k], True) for k in ("d", "ks", "e"))
        return _format(*_validate(arch, r, d, ks, e))

    @classmethod
    def input_shape_of(cls, arch: str) -> tuple[int, int, int]:
        r = parse(arch)[0]
        return (3, r, r)

    # ---- encodings ----------------------------------------------------------------------
    def _onehot(self, arch: str) -> np.ndarray:
        r, _, ks, e = parse(arch)
        slots = np.zeros((NUM_SLOTS, len(KERNELS) + len(EXPANDS)), dtype=np.float32)
        for i, (k, x) in enumerate(zip(ks, e)):
            if k:
                slots[i, KERNELS.index(k)] = 1.0
                slots[i, len(KERNELS) + EXPANDS.index(x)] = 1.0
        res = np.zeros(len(RESOLUTIONS), dtype=np.float32)
        res[RESOLUTIONS.index(r)] = 1.0
        return np.concatenate([slots.reshape(-1), res])

    def _graph(self, arch: str) -> tuple[np.ndarray, np.ndarray]:
        _, _, ks, e = parse(arch)
        n = _GRAPH_NODES
        feat = np.zeros((n, _NODE_FEATURES), dtype=np.float32)
        feat[0, -2] = 1.0  # input marker
        feat[n - 1, -1] = 1.0  # output marker
        chain = [0]
        for i, (k, x) in enumerate(zip(ks, e)):
            if k:
                node = i + 1
                feat[node, KERNELS.index(k)] = 1.0
                feat[node, len(KERNELS) + EXPANDS.index(x)] = 1.0
                feat[node, len(KERNELS) + len(EXPANDS) + i // SLOTS_PER_STAGE] = 1.0
                chain.append(node)
        chain.append(n - 1)
        adj = np.zeros((n, n), dtype=np.float32)
        adj[chain[:-1], chain[1:]] = 1.0
        return adj, feat

    # ---- layers -------------------------------------------------------------------------
    def _layer_graph(self, arch: str) -> LayerGraph:
        r, d, ks, e = parse(arch)
        c, h = STEM_CHANNELS, -(-r // 2)
        g = GraphBuilder()
        x = g.chain([Layer("conv", r, 3, c, kernel=3, stride=2), Layer("bn", h, c, c), Layer("hswish", h, c, c)], NETWORK_INPUT)
        # first block: MBConv k3 expand 1 (no expansion conv), residual
        first = [
            Layer("conv", h, c, c, kernel=3, groups=c),
            Layer("bn", h, c, c),
            Layer("relu", h, c, c),
            Layer("conv", h, c, c),
            Layer("bn", h, c, c),
        ]
        x = g.add(Layer("add", h, c, c), x, g.chain(first, x))
        for slot, cin, cout, stride, act, se in _block_plan(d):
            k, ex = ks[slot], e[slot]
            mid, h_out = mid_channels(cin, ex), -(-h // stride)
            kw = dict(block=slot, expansion=float(ex))
            body = [
                Layer("conv", h, cin, mid, **kw),
                Layer("bn", h, mid, mid, **kw),
                Layer(act, h, mid, mid, **kw),
                Layer("conv", h, mid, mid, kernel=k, stride=stride, groups=mid, **kw),
                Layer("bn", h_out, mid, mid, **kw),
                Layer(act, h_out, mid, mid, **kw),
            ]
            y = g.chain(body, x)
            if se:
                sq = se_channels(mid)
                excite = [
                    Layer("gap", h_out, mid, mid, **kw),
                    Layer("conv", 1, mid, sq, bias=True, **kw),
                    Layer("relu", 1, sq, sq, **kw),
                    Layer("conv", 1, sq, mid, bias=True, **kw),
                    Layer("hsigmoid", 1, mid, mid, **kw),
                ]
                y = g.add(Layer("mul", h_out, mid, mid, **kw), y, g.chain(excite, y))
            y = g.chain([Layer("conv", h_out, mid, cout, **kw), Layer("bn", h_out, cout, cout, **kw)], y)
            x = g.add(Layer("add", h_out, cout, cout, **kw), x, y) if stride == 1 and cin == cout else y
            h = h_out
        c = STAGE_CHANNELS[-1]
        head = [
            Layer("conv", h, c, FINAL_EXPAND),
            Layer("bn", h, FINAL_EXPAND, FINAL_EXPAND),
            Layer("hswish", h, FINAL_EXPAND, FINAL_EXPAND),
            Layer("gap", h, FINAL_EXPAND, FINAL_EXPAND),
            Layer("conv", 1, FINAL_EXPAND, FEATURE_MIX),
            Layer("hswish", 1, FEATURE_MIX, FEATURE_MIX),
            Layer("linear", 1, FEATURE_MIX, self.num_classes, bias=True),
        ]
        g.chain(head, x)
        return g.graph()

    # ---- torch --------------------------------------------------------------------------
    def _build_torch(self, arch: str):
        return build_ofa(arch, self.num_classes)


@functools.cache
def _torch_modules():
    """Module classes, defined on first use so that importing this file does not import torch."""
    from torch import nn

    acts = {"relu": nn.ReLU, "hswish": nn.Hardswish}

    def conv_bn(cin, cout, k=1, s=1, groups=1, act=None):
        mods = [nn.Conv2d(cin, cout, k, s, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*mods, acts[act]()) if act else nn.Sequential(*mods)

    class SqueezeExcite(nn.Module):
        """OFA's SEModule: its 1x1 convs have a bias, unlike every other conv in the net."""

        def __init__(self, c):
            super().__init__()
            sq = se_channels(c)
            self.fc = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, sq, 1), nn.ReLU(), nn.Conv2d(sq, c, 1), nn.Hardsigmoid()
            )

        def forward(self, x):
            return x * self.fc(x)

    class MBConv(nn.Module):
        def __init__(self, cin, cout, k, e, s, act, se):
            super().__init__()
            mid = mid_channels(cin, e) if e != 1 else cin
            self.body = nn.Sequential(
                conv_bn(cin, mid, act=act) if e != 1 else nn.Identity(),
                conv_bn(mid, mid, k, s, groups=mid, act=act),
                SqueezeExcite(mid) if se else nn.Identity(),
                conv_bn(mid, cout),
            )
            self.residual = s == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    class Head(nn.Module):
        def __init__(self, cin, num_classes):
            super().__init__()
            self.final_expand = conv_bn(cin, FINAL_EXPAND, act="hswish")
            self.feature_mix = nn.Sequential(nn.Conv2d(FINAL_EXPAND, FEATURE_MIX, 1, bias=False), nn.Hardswish())
            self.classifier = nn.Linear(FEATURE_MIX, num_classes)

        def forward(self, x):
            x = self.final_expand(x).mean((2, 3), keepdim=True)
            return self.classifier(self.feature_mix(x).flatten(1))

    return conv_bn, MBConv, Head


def build_ofa(arch: str, num_classes: int = 1000):
    """The OFA MobileNetV3 subnet of an arch string, in eval mode (input 3 x r x r)."""
    from torch import nn

    conv_bn, MBConv, Head = _torch_modules()
    _, d, ks, e = parse(arch)
    mods = [
        conv_bn(3, STEM_CHANNELS, 3, 2, act="hswish"),
        MBConv(STEM_CHANNELS, STEM_CHANNELS, 3, 1, 1, "relu", False),
    ]
    for slot, cin, cout, stride, act, se in _block_plan(d):
        mods.append(MBConv(cin, cout, ks[slot], e[slot], stride, act, se))
    mods.append(Head(STAGE_CHANNELS[-1], num_classes))
    return nn.Sequential(*mods).eval()
