"""NAS-Bench-201 (CIFAR-10 macro skeleton, 32x32 input, C=16, 5 cells per stage).

A cell is a 4-node DAG with 6 edges (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), each one of five ops;
the string format is the official one, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, and arch ids are
the official NAS-Bench-201 indices (HELP's ``str_arch2idx.pt``). The macro skeleton follows the
NB201 ``TinyNetwork``: stem conv3x3+BN, 5 cells, residual reduction, 5 cells, reduction, 5 cells,
BN+ReLU, global pool, linear.

Inside a cell the layer graph follows the model's ``forward``: node by node, each incoming edge's
ops in string order, then the node's sum as left-to-right adds (``(a + b) + c``); a node whose
incoming edges are all ``none`` is ``x * 0`` of the cell input (a ``zero`` layer), as the model
computes it. A ``skip_connect`` edge is no op: its node reads the source node's tensor.
"""

from __future__ import annotations

import functools
import itertools
import re

import numpy as np

from latbench.errors import UnknownArchError
from latbench.spaces.base import NETWORK_INPUT, GraphBuilder, Layer, LayerGraph, SearchSpace, layer_counts

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (to_node, from_node) of the 6 edges, in string order.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
#: Ops-as-nodes DAG (BRP-NAS/NASFLAT style): node 0 = input, 1..6 = edges, 7 = output.
OPNODE_EDGES = ((0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 6), (3, 6), (4, 7), (5, 7), (6, 7))
NODE_VOCAB = ("input", "output") + OPS
STAGES = ((16, 32), (32, 16), (64, 8))  # (channels, spatial size)
CELLS_PER_STAGE = 5

_EDGE_RE = re.compile(r"^([a-z_0-9]+)~(\d)$")


class NB201Space(SearchSpace):
    name = "nb201"
    input_shape = (3, 32, 32)
    num_classes = 10

    @classmethod
    def canonical(cls, arch: str) -> str:
        return cls.format(cls.parse(arch))

    @classmethod
    def parse(cls, arch: str) -> tuple[str, ...]:
        """The six edge ops, in string order."""
        if not isinstance(arch, str):
            raise UnknownArchError(f"nb201: architecture must be a string, got {type(arch).__name__}")
        nodes = arch.strip().strip("|").split("|+|")
        if len(nodes) != 3:
            raise UnknownArchError(f"nb201: {arch!r} has {len(nodes)} nodes, expected 3 ('|op~0|+|op~0|op~1|+|...|')")
        ops = []
        for to, node in enumerate(nodes, start=1):
            edges = node.split("|")
            if len(edges) != to:
                raise UnknownArchError(f"nb201: {arch!r}: node {to} has {len(edges)} inputs, expected {to}")
            for frm, edge in enumerate(edges):
                m = _EDGE_RE.match(edge)
                if not m or m.group(1) not in OPS or int(m.group(2)) != frm:
                    raise UnknownArchError(
                        f"nb201: {arch!r}: bad edge {edge!r} (expected one of {'/'.join(OPS)} followed by ~{frm})"
                    )
                ops.append(m.group(1))
        return tuple(ops)

    @staticmethod
    def format(ops) -> str:
        e = [f"{op}~{frm}" for op, (_, frm) in zip(ops, EDGES)]
        return f"|{e[0]}|+|{e[1]}|{e[2]}|+|{e[3]}|{e[4]}|{e[5]}|"

    @classmethod
    def all_archs(cls) -> list[str]:
        """All 5^6 cells (in lexicographic op order, not the official index order)."""
        return [cls.format(ops) for ops in itertools.product(OPS, repeat=6)]

    def _onehot(self, arch: str) -> np.ndarray:
        out = np.zeros((6, len(OPS)), np.float32)
        for e, op in enumerate(self.parse(arch)):
            out[e, OPS.index(op)] = 1
        return out.ravel()

    def _graph(self, arch: str) -> tuple[np.ndarray, np.ndarray]:
        adj = np.zeros((8, 8), np.float32)
        for i, j in OPNODE_EDGES:
            adj[i, j] = 1
        feats = np.zeros((8, len(NODE_VOCAB)), np.float32)
        feats[0, 0] = feats[7, 1] = 1
        for e, op in enumerate(self.parse(arch), start=1):
            feats[e, NODE_VOCAB.index(op)] = 1
        return adj, feats

    def _layer_graph(self, arch: str) -> LayerGraph:
        ops = self.parse(arch)
        g = GraphBuilder()
        x = g.chain([Layer("conv", 32, 3, 16, kernel=3), Layer("bn", 32, 16, 16)], NETWORK_INPUT)
        for s, (c, h) in enumerate(STAGES):
            if s > 0:
                x = _resblock(g, x, STAGES[s - 1][0], c, STAGES[s - 1][1])
            for _ in range(CELLS_PER_STAGE):
                x = _cell(g, x, ops, c, h)
        c, h = STAGES[-1]
        head = [
            Layer("bn", h, c, c),
            Layer("relu", h, c, c),
            Layer("gap", h, c, c),
            Layer("linear", 1, c, self.num_classes, bias=True),
        ]
        g.chain(head, x)
        return g.graph()

    def counts(self, arch: str) -> tuple[float, float, float]:
        """The base class's layer-list sums, with each distinct cell summed once (15,625 archs)."""
        ops = self.parse(arch)
        total = self._fixed_counts() + sum(CELLS_PER_STAGE * _cell_counts(ops, c, h) for c, h in STAGES)
        return tuple(float(x) for x in total)

    @functools.cache  # noqa: B019  (one entry per space instance, which lives for the process)
    def _fixed_counts(self) -> np.ndarray:
        """Counts of everything outside the cells (the all-'none' arch minus its 15 cells)."""
        none = ("none",) * 6
        cells = sum(CELLS_PER_STAGE * _cell_counts(none, c, h) for c, h in STAGES)
        return np.array(layer_counts(self._layers(self.format(none)))) - cells

    def _build_torch(self, arch: str):
        return _torch_model(self.parse(arch), self.num_classes)


@functools.cache
def _cell_counts(ops, c: int, h: int) -> np.ndarray:
    return np.array(layer_counts(_cell_template(ops, c, h)[0]))


def _cell(g: GraphBuilder, x: int, ops, c: int, h: int) -> int:
    """Append one cell reading ``x``; returns the index of its output (node 3)."""
    layers, inputs, out = _cell_template(ops, c, h)
    base = g.splice(layers, inputs, x)
    return x if out == NETWORK_INPUT else base + out


@functools.cache
def _cell_template(ops, c: int, h: int) -> tuple[tuple[Layer, ...], tuple[tuple[int, ...], ...], int]:
    """One cell, in the model's execution order, reading the cell input as NETWORK_INPUT:
    (layers, what each reads, index of node 3; NETWORK_INPUT when node 3 is the input itself)."""
    g = GraphBuilder()
    x = NETWORK_INPUT
    nodes = [x]
    for to in (1, 2, 3):
        terms = []
        for e, (op, (t, frm)) in enumerate(zip(ops, EDGES)):
            if t != to or op == "none":
                continue
            if op == "nor_conv_1x1" or op == "nor_conv_3x3":
                k = 1 if op == "nor_conv_1x1" else 3
                edge = [Layer("relu", h, c, c, block=e), Layer("conv", h, c, c, kernel=k, block=e), Layer("bn", h, c, c, block=e)]
                terms.append(g.chain(edge, nodes[frm]))
            elif op == "avg_pool_3x3":
                terms.append(g.add(Layer("avgpool", h, c, c, kernel=3, block=e), nodes[frm]))
            else:  # skip_connect: the source node's tensor itself
                terms.append(nodes[frm])
        if not terms:  # the model computes cell_input * 0
            nodes.append(g.add(Layer("zero", h, c, c), x))
            continue
        acc = terms[0]
        for term in terms[1:]:
            acc = g.add(Layer("add", h, c, c), acc, term)
        nodes.append(acc)
    return tuple(g.layers), tuple(g.inputs), nodes[3]


def _resblock(g: GraphBuilder, x: int, cin: int, cout: int, h: int) -> int:
    """Append the residual reduction block reading ``x``; returns its output (the add)."""
    main = [
        Layer("relu", h, cin, cin),
        Layer("conv", h, cin, cout, kernel=3, stride=2),
        Layer("bn", h // 2, cout, cout),
        Layer("relu", h // 2, cout, cout),
        Layer("conv", h // 2, cout, cout, kernel=3),
        Layer("bn", h // 2, cout, cout),
    ]
    shortcut = [Layer("avgpool", h, cin, cin, kernel=2, stride=2), Layer("conv", h // 2, cin, cout, kernel=1)]
    a = g.chain(main, x)
    b = g.chain(shortcut, x)
    return g.add(Layer("add", h // 2, cout, cout), a, b)


def _torch_model(ops, num_classes: int):
    """The NB201 TinyNetwork for one cell, built from torch.nn (imported here: torch is heavy)."""
    from torch import nn

    def relu_conv_bn(cin, cout, k, stride=1):
        return nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))

    def edge_op(op, c):
        if op == "nor_conv_1x1":
            return relu_conv_bn(c, c, 1)
        if op == "nor_conv_3x3":
            return relu_conv_bn(c, c, 3)
        if op == "avg_pool_3x3":
            return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        return nn.Identity()

    class Cell(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.ops = nn.ModuleList(edge_op(op, c) for op in ops)

        def forward(self, x):
            nodes = [x]
            for to in (1, 2, 3):
                terms = [self.ops[e](nodes[frm]) for e, (t, frm) in enumerate(EDGES) if t == to and ops[e] != "none"]
                nodes.append(sum(terms[1:], terms[0]) if terms else nodes[0] * 0)
            return nodes[3]

    class ResBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv_a = relu_conv_bn(cin, cout, 3, 2)
            self.conv_b = relu_conv_bn(cout, cout, 3)
            self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

        def forward(self, x):
            return self.conv_b(self.conv_a(x)) + self.downsample(x)

    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)]
    for s, (c, _) in enumerate(STAGES):
        if s > 0:
            layers.append(ResBlock(STAGES[s - 1][0], c))
        layers += [Cell(c) for _ in range(CELLS_PER_STAGE)]
    c = STAGES[-1][0]
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers).eval()
