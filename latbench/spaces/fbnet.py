"""The FBNet space of HW-NAS-Bench (CIFAR-100, 32x32), as used by the HELP latency dataset.

A chain of 22 searchable layers, each one of 9 candidate ops, between a fixed stem and header.
The canonical arch string is the 22 op names joined by "-" (HELP's ``arch_str`` list joined),
so it is readable and round-trips with HELP's ``op_idx_list`` through :meth:`FBNetSpace.from_raw`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

from latbench.errors import UnknownArchError, did_you_mean
from latbench.spaces.base import NETWORK_INPUT, GraphBuilder, Layer, LayerGraph, SearchSpace

#: Candidate ops in HELP / HW-NAS-Bench index order (op_idx_list values index this tuple).
OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
OP_INDEX = {op: i for i, op in enumerate(OPS)}

STEM_CHANNELS = 16
STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)
HEADER_CHANNELS = 1504
NUM_LAYERS = sum(STAGE_LAYERS)  # 22


def _layer_plan() -> list[tuple[int, int, int]]:
    """(cin, cout, stride) of each searchable layer; fixed by the macro skeleton, not the arch."""
    plan, cin = [], STEM_CHANNELS
    for n, cout, stride in zip(STAGE_LAYERS, STAGE_CHANNELS, STAGE_STRIDES):
        for j in range(n):
            plan.append((cin, cout, stride if j == 0 else 1))
            cin = cout
    return plan


LAYER_PLAN = tuple(_layer_plan())


def parse_op(op: str) -> tuple[int, int, int] | None:
    """(kernel, expansion, groups) of a conv-block op; None for ``skip``."""
    if op == "skip":
        return None
    m = re.fullmatch(r"k(\d+)_e(\d+)(?:_g(\d+))?", op)
    assert m, op
    return int(m[1]), int(m[2]), int(m[3] or 1)


class FBNetSpace(SearchSpace):
    name = "fbnet"
    input_shape = (3, 32, 32)
    num_classes = 100

    # ---- arch strings -------------------------------------------------------------------
    @classmethod
    def canonical(cls, arch: str) -> str:
        if not isinstance(arch, str):
            raise UnknownArchError(
                f"fbnet: architecture must be a string of {NUM_LAYERS} ops joined by '-', got {type(arch).__name__}"
            )
        tokens = [t for t in re.split(r"[\s-]+", arch.strip()) if t]
        if len(tokens) != NUM_LAYERS:
            raise UnknownArchError(f"fbnet: architecture {arch!r} has {len(tokens)} ops, expected {NUM_LAYERS} joined by '-'")
        for pos, tok in enumerate(tokens):
            if tok not in OP_INDEX:
                raise UnknownArchError(
                    f"fbnet: unknown op {tok!r} at position {pos} of {arch!r}{did_you_mean(tok, OPS)}; known: {', '.join(OPS)}"
                )
        return "-".join(tokens)

    @classmethod
    def from_raw(cls, op_idx_list: Sequence[int]) -> str:
        """Canonical string from HELP's ``op_idx_list`` (22 ints indexing :data:`OPS`)."""
        try:
            raw = list(op_idx_list)
        except TypeError:
            raise UnknownArchError(
                f"fbnet: op_idx_list must be a list of {NUM_LAYERS} ints, got {type(op_idx_list).__name__}"
            ) from None
        if len(raw) != NUM_LAYERS:
            raise UnknownArchError(f"fbnet: op_idx_list has {len(raw)} entries, expected {NUM_LAYERS}")
        ops = []
        for pos, v in enumerate(raw):
            # bools and floats like 1.5 are not op indices, even though int() would accept them
            ok = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v < len(OPS)
            if not ok:
                raise UnknownArchError(
                    f"fbnet: op index {v!r} at position {pos} of op_idx_list is not an int in 0..{len(OPS) - 1}"
                )
            ops.append(OPS[int(v)])
        return "-".join(ops)

    @staticmethod
    def op_indices(arch: str) -> list[int]:
        return [OP_INDEX[t] for t in arch.split("-")]

    # ---- encodings ----------------------------------------------------------------------
    def _onehot(self, arch: str) -> np.ndarray:
        x = np.zeros((NUM_LAYERS, len(OPS)), dtype=np.float32)
        x[np.arange(NUM_LAYERS), self.op_indices(arch)] = 1.0
        return x.reshape(-1)

    def _graph(self, arch: str) -> tuple[np.ndarray, np.ndarray]:
        n = NUM_LAYERS + 2  # input, 22 layers, output
        adj = np.zeros((n, n), dtype=np.float32)
        adj[np.arange(n - 1), np.arange(1, n)] = 1.0
        feat = np.zeros((n, len(OPS) + 2), dtype=np.float32)
        feat[np.arange(1, n - 1), self.op_indices(arch)] = 1.0
        feat[0, len(OPS)] = 1.0  # input marker
        feat[n - 1, len(OPS) + 1] = 1.0  # output marker
        return adj, feat

    # ---- layers -------------------------------------------------------------------------
    def _layer_graph(self, arch: str) -> LayerGraph:
        h = self.input_shape[1]
        g = GraphBuilder()
        stem = [
            Layer("conv", h, self.input_shape[0], STEM_CHANNELS, kernel=3),
            Layer("bn", h, STEM_CHANNELS, STEM_CHANNELS),
            Layer("relu", h, STEM_CHANNELS, STEM_CHANNELS),
        ]
        x = g.chain(stem, NETWORK_INPUT)
        for b, (op, (cin, cout, s)) in enumerate(zip(arch.split("-"), LAYER_PLAN)):
            spec = parse_op(op)
            h_out = -(-h // s)
            if spec is None:
                if s != 1 or cin != cout:
                    conv = [
                        Layer("conv", h, cin, cout, stride=s, block=b),
                        Layer("bn", h_out, cout, cout, block=b),
                        Layer("relu", h_out, cout, cout, block=b),
                    ]
                    x = g.chain(conv, x)
            else:
                k, e, gr = spec
                mid = cin * e
                kw = dict(block=b, expansion=float(e))
                body = [
                    Layer("conv", h, cin, mid, groups=gr, **kw),
                    Layer("bn", h, mid, mid, **kw),
                    Layer("relu", h, mid, mid, **kw),
                ]
                if gr > 1:
                    body.append(Layer("shuffle", h, mid, mid, groups=gr, **kw))
                body += [
                    Layer("conv", h, mid, mid, kernel=k, stride=s, groups=mid, **kw),
                    Layer("bn", h_out, mid, mid, **kw),
                    Layer("relu", h_out, mid, mid, **kw),
                    Layer("conv", h_out, mid, cout, groups=gr, **kw),
                    Layer("bn", h_out, cout, cout, **kw),
                ]
                y = g.chain(body, x)
                x = g.add(Layer("add", h_out, cout, cout, **kw), x, y) if s == 1 and cin == cout else y
            h = h_out
        c = STAGE_CHANNELS[-1]
        head = [
            Layer("conv", h, c, HEADER_CHANNELS),
            Layer("bn", h, HEADER_CHANNELS, HEADER_CHANNELS),
            Layer("relu", h, HEADER_CHANNELS, HEADER_CHANNELS),
            Layer("gap", h, HEADER_CHANNELS, HEADER_CHANNELS),
            Layer("linear", 1, HEADER_CHANNELS, self.num_classes, bias=True),
        ]
        g.chain(head, x)
        return g.graph()

    # ---- torch --------------------------------------------------------------------------
    def _build_torch(self, arch: str):
        return build_fbnet(arch, self.input_shape[0], self.num_classes)


@functools.cache
def _torch_modules():
    """Module classes, defined on first use so that importing this file does not import torch."""
    from torch import nn

    def conv_norm(cin, cout, k=1, s=1, groups=1, relu=True):
        mods = [nn.Conv2d(cin, cout, k, s, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*mods, nn.ReLU(inplace=True)) if relu else nn.Sequential(*mods)

    class ChannelShuffle(nn.Module):
        def __init__(self, groups: int):
            super().__init__()
            self.groups = groups

        def forward(self, x):
            n, c, h, w = x.shape
            return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)

    class ConvBlock(nn.Module):
        def __init__(self, cin, cout, k, e, s, g):
            super().__init__()
            mid = cin * e
            self.body = nn.Sequential(
                conv_norm(cin, mid, groups=g),
                ChannelShuffle(g) if g > 1 else nn.Identity(),
                conv_norm(mid, mid, k, s, groups=mid),
                conv_norm(mid, cout, groups=g, relu=False),
            )
            self.residual = s == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    return conv_norm, ConvBlock


def build_fbnet(arch: str, in_channels: int = 3, num_classes: int = 100):
    """The FBNet network of a canonical arch string, in eval mode."""
    from torch import nn

    conv_norm, ConvBlock = _torch_modules()
    mods = [conv_norm(in_channels, STEM_CHANNELS, 3)]
    for op, (cin, cout, s) in zip(arch.split("-"), LAYER_PLAN):
        spec = parse_op(op)
        if spec is None:
            mods.append(nn.Identity() if s == 1 and cin == cout else conv_norm(cin, cout, 1, s))
        else:
            k, e, g = spec
            mods.append(ConvBlock(cin, cout, k, e, s, g))
    mods += [
        conv_norm(STAGE_CHANNELS[-1], HEADER_CHANNELS),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(HEADER_CHANNELS, num_classes),
    ]
    return nn.Sequential(*mods).eval()
