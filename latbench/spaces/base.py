"""The common interface of a search space, and the layer record every space emits.

A space knows its architectures by an integer id (the upstream order, e.g. the official
NAS-Bench-201 index) and by a canonical string. From the string alone it derives everything a
predictor may use: a fixed-length one-hot vector, a graph (adjacency + node features), the
primitive layers with shapes, and FLOPs/params/activation memory computed from them. The PyTorch
builder (``build_torch``) constructs the very same network so the counts can be checked against a
real model, and so the profiler can time it.

The layers form a :class:`LayerGraph`: every op the built model executes (including element-wise
adds and NB201's ``x * 0`` for a node whose inputs are all ``none``), in the model's execution
order, with the layers each one reads. Kernel fusion (:mod:`latbench.kernels`) works on that graph,
because whether a runtime can fuse a producer into its consumer depends on the producer's fan-out,
which a flat list cannot show.

FLOPs follow the NAS-Bench-201 counter (``xautodl/utils/flop_benchmark.py``): multiply-accumulates
of Conv2d and Linear layers (plus one add per output element when the layer has a bias); pooling,
BN, activations, skips and adds count 0. Reported in millions (MFLOPs). Params are every learnable
parameter (BN affine included), in millions, like ``sum(p.numel() for p in model.parameters())``.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from latbench.errors import UnknownArchError

#: Primitive layer types a space may emit. "conv" covers grouped and depthwise convolutions
#: (depthwise when groups == cin == cout > 1); kernel-level methods fuse these later.
LAYER_TYPES = (
    "conv",
    "bn",
    "relu",
    "hswish",
    "hsigmoid",
    "avgpool",
    "gap",
    "linear",
    "add",
    "mul",
    "shuffle",
    "zero",  # x * 0: NB201's value of a node whose incoming edges are all "none"
)


@dataclass(frozen=True, slots=True)
class Layer:
    """One primitive layer: what runs, on which input shape (square H x H, batch 1)."""

    type: str
    h: int  # input height == width
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    expansion: float = 1.0  # expansion ratio of the searchable block this layer belongs to
    bias: bool = False
    block: int = -1  # index of the searchable block/edge it comes from; -1 = fixed macro part

    @property
    def out_h(self) -> int:
        return -(-self.h // self.stride) if self.type not in ("gap", "linear") else 1

    @property
    def flops(self) -> int:
        """Multiply-accumulates per image (NB201 convention: conv and linear only)."""
        if self.type == "conv":
            macs = self.kernel * self.kernel * (self.cin // self.groups) * self.cout * self.out_h**2
            return macs + (self.cout * self.out_h**2 if self.bias else 0)
        if self.type == "linear":
            return self.cin * self.cout + (self.cout if self.bias else 0)
        return 0

    @property
    def params(self) -> int:
        if self.type == "conv":
            return self.kernel * self.kernel * (self.cin // self.groups) * self.cout + (self.cout if self.bias else 0)
        if self.type == "linear":
            return self.cin * self.cout + (self.cout if self.bias else 0)
        if self.type == "bn":
            return 2 * self.cout
        return 0

    @property
    def activations(self) -> int:
        """Output activation elements (a simple memory-traffic proxy)."""
        spatial = 1 if self.type in ("gap", "linear") else self.out_h**2
        return self.cout * spatial


#: Input index meaning "the network input" in :attr:`LayerGraph.inputs`.
NETWORK_INPUT = -1


class LayerGraph(NamedTuple):
    """An arch's primitive layers in execution order, and what each one reads.

    ``inputs[j]`` holds the indices of the layers whose outputs layer ``j`` reads, in operand order
    (:data:`NETWORK_INPUT` for the network input); always earlier indices, so the list order is a
    topological order of the graph. An add reads two tensors, possibly the same one twice.
    """

    layers: list[Layer]
    inputs: tuple[tuple[int, ...], ...]

    def consumers(self) -> list[tuple[int, ...]]:
        """Per layer, the distinct layers that read its output, in execution order."""
        out: list[set[int]] = [set() for _ in self.layers]
        for j, ins in enumerate(self.inputs):
            for i in ins:
                if i >= 0:
                    out[i].add(j)
        return [tuple(sorted(c)) for c in out]


class GraphBuilder:
    """Appends layers in execution order, recording what each one reads (spaces build with it)."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.inputs: list[tuple[int, ...]] = []

    def add(self, layer: Layer, *reads: int) -> int:
        """Append ``layer`` reading the outputs of ``reads``; returns its index."""
        if not reads or min(reads) < NETWORK_INPUT or max(reads) >= len(self.layers):
            raise ValueError(f"layer {len(self.layers)} ({layer.type}) must read earlier layers, got {reads}")
        self.layers.append(layer)
        self.inputs.append(tuple(reads))
        return len(self.layers) - 1

    def chain(self, layers: Sequence[Layer], read: int) -> int:
        """Append ``layers`` one after the other (each reads the previous, the first reads ``read``);
        returns the index of the last one (``read`` itself when ``layers`` is empty)."""
        for layer in layers:
            read = self.add(layer, read)
        return read

    def splice(self, layers: Sequence[Layer], inputs: Sequence[tuple[int, ...]], read: int) -> int:
        """Append a subgraph built on its own (indices local to it, :data:`NETWORK_INPUT` = its
        input), reading ``read``; returns the offset its local indices got."""
        base = len(self.layers)
        self.layers.extend(layers)
        self.inputs.extend(tuple(read if r == NETWORK_INPUT else base + r for r in reads) for reads in inputs)
        return base

    def graph(self) -> LayerGraph:
        return LayerGraph(self.layers, tuple(self.inputs))


class SearchSpace(ABC):
    """A fixed, indexed set of architectures and everything derivable from them.

    Subclasses set ``name``, ``input_shape`` and implement the ``_``-prefixed per-arch hooks; this
    base class adds id validation, batching over ids and caching.
    """

    def __deepcopy__(self, memo):
        """Shared, not copied: a space is read-only once loaded, and copying it per k cost ~40 % of a
        cheap method's evaluation time (methods keep ``space_``, and fitted methods are deep-copied)."""
        return self

    name: str = ""
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10

    def __init__(self, arch_strings: Sequence[str]):
        self._strings = [self.canonical(s) for s in arch_strings]
        self._index = {s: i for i, s in enumerate(self._strings)}
        self._features: dict[str, np.ndarray] = {}
        #: Hardware-embedding reference archs (HELP's 10); set from the dataset. Every task's query
        #: pool contains them, so methods can measure them on a target (counted against k).
        self.reference_ids = np.zeros(0, dtype=np.int64)

    # ---- per-arch hooks each space implements -------------------------------------------
    @classmethod
    @abstractmethod
    def canonical(cls, arch: str) -> str:
        """Validate an arch string and return its canonical form (raise UnknownArchError)."""

    @abstractmethod
    def _onehot(self, arch: str) -> np.ndarray:
        """Fixed-length float32 one-hot vector."""

    @abstractmethod
    def _graph(self, arch: str) -> tuple[np.ndarray, np.ndarray]:
        """(adjacency [N, N] with adj[i, j] = 1 for an edge i -> j, node features [N, F])."""

    @abstractmethod
    def _layer_graph(self, arch: str) -> LayerGraph:
        """Every op the built model executes, in execution order, with what each one reads."""

    def _layers(self, arch: str) -> list[Layer]:
        """Primitive layers in execution order (the nodes of :meth:`_layer_graph`)."""
        return self._layer_graph(arch).layers

    @abstractmethod
    def _build_torch(self, arch: str):
        """A torch.nn.Module computing exactly the network of ``_layers`` (eval mode)."""

    # ---- public API ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._strings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} archs)"

    def arch_ids(self) -> np.ndarray:
        return np.arange(len(self._strings))

    def arch_str(self, i: int) -> str:
        return self._strings[self._check_id(i)]

    def index(self, arch: str) -> int:
        """Id of an arch string (any accepted spelling); UnknownArchError if not in this space."""
        s = self.canonical(arch)
        try:
            return self._index[s]
        except KeyError:
            raise UnknownArchError(
                f"{self.name}: architecture {arch!r} is valid but not among the {len(self)} archs of this space"
            ) from None

    def _check_id(self, i) -> int:
        i = int(i)
        if not 0 <= i < len(self._strings):
            raise UnknownArchError(f"{self.name}: arch id {i} out of range [0, {len(self._strings)})")
        return i

    def _ids(self, ids) -> np.ndarray:
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        if ids.size and (ids.min() < 0 or ids.max() >= len(self._strings)):
            bad = ids[(ids < 0) | (ids >= len(self._strings))][0]
            raise UnknownArchError(f"{self.name}: arch id {bad} out of range [0, {len(self._strings)})")
        return ids

    def layers(self, i: int) -> list[Layer]:
        """Every op arch ``i``'s built model executes, in execution order."""
        return self._graph_cached(self.arch_str(i)).layers

    def layer_graph(self, i: int) -> LayerGraph:
        """:meth:`layers` of arch ``i`` together with what each layer reads (a DAG with fan-out)."""
        return self._graph_cached(self.arch_str(i))

    @functools.lru_cache(maxsize=4096)  # noqa: B019  (spaces live for the process; the cache is the point)
    def _graph_cached(self, arch: str) -> LayerGraph:
        return self._layer_graph(arch)

    def build_torch(self, i: int):
        return self._build_torch(self.arch_str(i))

    def onehot(self, ids) -> np.ndarray:
        return self._table("onehot")[self._ids(ids)]

    def graph(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Batched (adjacency [n, N, N], node features [n, N, F]) as float32."""
        ids = self._ids(ids)
        return self._table("adjacency")[ids], self._table("node_features")[ids]

    def flops(self, ids) -> np.ndarray:
        """MFLOPs (M multiply-accumulates) per image."""
        return self._table("flops")[self._ids(ids)]

    def params(self, ids) -> np.ndarray:
        """Learnable parameters, in millions."""
        return self._table("params")[self._ids(ids)]

    def activations(self, ids) -> np.ndarray:
        """Sum of layer output activations, in millions of elements (memory-traffic proxy)."""
        return self._table("activations")[self._ids(ids)]

    def counts(self, arch: str) -> tuple[float, float, float]:
        """(MFLOPs, M params, M activations) of one arch string, from its layer list."""
        return layer_counts(self._graph_cached(self.canonical(arch)).layers)

    def set_features(self, **tables: np.ndarray) -> None:
        """Install precomputed per-arch tables (the dataset build stores them; loading is fast)."""
        for k, v in tables.items():
            if len(v) != len(self):
                raise ValueError(f"{self.name}: feature table {k!r} has {len(v)} rows, expected {len(self)}")
            self._features[k] = np.asarray(v)

    def _table(self, key: str) -> np.ndarray:
        if key not in self._features:
            self._compute_features(key)
        return self._features[key]

    def _compute_features(self, key: str) -> None:
        if key == "onehot":
            self._features[key] = np.stack([self._onehot(s) for s in self._strings]).astype(np.float32)
        elif key in ("adjacency", "node_features"):
            graphs = [self._graph(s) for s in self._strings]
            self._features["adjacency"] = np.stack([g[0] for g in graphs]).astype(np.float32)
            self._features["node_features"] = np.stack([g[1] for g in graphs]).astype(np.float32)
        elif key in ("flops", "params", "activations"):
            c = np.array([self.counts(s) for s in self._strings], dtype=np.float64).reshape(-1, 3)
            self._features.update(flops=c[:, 0], params=c[:, 1], activations=c[:, 2])
        else:
            raise KeyError(key)

    def to_pyg(self, ids, y=None):
        """A list of ``torch_geometric.data.Data`` graphs (edge_index from the adjacency)."""
        import torch
        from torch_geometric.data import Data

        adj, x = self.graph(ids)
        out = []
        for k in range(len(adj)):
            src, dst = np.nonzero(adj[k])
            d = Data(x=torch.from_numpy(x[k]), edge_index=torch.from_numpy(np.stack([src, dst]).astype(np.int64)))
            if y is not None:
                d.y = torch.tensor([float(y[k])])
            out.append(d)
        return out


def layer_counts(layers) -> tuple[float, float, float]:
    """(MFLOPs, M params, M activations) summed over a layer list."""
    return (
        sum(l.flops for l in layers) / 1e6,
        sum(l.params for l in layers) / 1e6,
        sum(l.activations for l in layers) / 1e6,
    )


def count_torch(model, input_shape: tuple[int, int, int]) -> tuple[float, float]:
    """(MFLOPs, M params) of a torch model by forward hooks, same convention as ``Layer``.

    Used by tests to cross-check the analytic counts from the layer list against the real model.
    """
    import torch
    from torch import nn

    flops = 0

    def hook(mod, inp, out):
        nonlocal flops
        if isinstance(mod, nn.Conv2d):
            per_out = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            flops += out.numel() * per_out + (out.numel() if mod.bias is not None else 0)
        elif isinstance(mod, nn.Linear):
            flops += mod.in_features * mod.out_features + (mod.out_features if mod.bias is not None else 0)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return flops / 1e6, sum(p.numel() for p in model.parameters()) / 1e6
