"""BRP-NAS GCN latency predictor (Dudziak et al., NeurIPS 2020; code: SamsungLabs/eagle).

A re-implementation of Eagle's latency GCN with PyTorch Geometric layers, plus the few-shot
wrapper latbench's protocol needs. Design notes: ``shared/design/BASELINES.md`` sections 5, 9.3, 11.7.

Graph encoding
--------------
* **NB201 (BRP-NAS's own encoding).** The 8-node ops-as-nodes DAG (0 = input, 1..6 = the six
  edges in string order, 7 = output), then Eagle's surgery, in edge order: a ``none`` node loses
  all its edges; a ``skip_connect`` node is bypassed (every predecessor is wired to every
  successor) and disconnected; nodes not reachable from the input or not reaching the output are
  zeroed (the 8x8 shape is kept). A global node is put at index 0 with edges to all 8 nodes, and
  every one of the 9 nodes gets a self-loop (pruned nodes included, as in Eagle). Features are
  Eagle's 6-column one-hot (conv1x1, conv3x3, avgpool, input, output, global); none / skip /
  pruned nodes are all-zero; the input and output flags are always set (also when an all-``none``
  cell prunes them away). The adjacency is used **untransposed**: node ``i`` aggregates ``A[i, j]
  x_j`` over its successors ``j`` and itself, and the global node aggregates every node.
* **FBNet / OFA (latbench's extension).** BRP-NAS has no encoding for these spaces. We take the
  space's own chain graph (``space.graph``: input -> layers -> output, per-layer one-hot
  features), add the global node at index 0 with edges to all nodes, add self-loops and one
  extra feature column flagging the global node. Same direction convention as NB201.
  **OFA also gets the input resolution** (25 one-hot columns, last) on the input node and on
  every active layer node: the chain graph has no resolution, which sets every layer's
  feature-map size and so most of the FLOPs (r = 128..224, a 3x range of r^2). Without it the GCN
  could not even fit its own pre-training targets (easy-2, trial 0: Spearman 0.44 between the
  pre-trained model and the pooled targets on the source archs; fine-tuned 0.19-0.27 on the
  targets, k = 10, trials 0-2), and from scratch on 900 target shots it reached only 0.32. With
  it: pre-training fit 0.995, fine-tuned 0.979-0.981 (trials 0-1); from scratch on 900 shots
  0.985. The one-hot on the global node instead does not help (0.19 / 0.24, trials 0-1); on the
  input node alone it does (0.975). Per-node placement was kept because it makes each node's
  features determine its layer's cost, as BRP-NAS's NB201 op nodes do. Measured with
  ``benchmarks/brp_nas_ofa.py`` (results and commands: ``benchmarks/results/brp-nas-ofa.md``).

Model (Eagle ``predictors/gcn/gcn.py``, latency config)
-------------------------------------------------------
4 graph convolutions ``A X W + b`` (no adjacency normalisation) of width 600, each followed by
LayerNorm, ReLU and Dropout(0.002); readout = the global node; Linear(600 -> 1). The message
passing is ``torch_geometric.nn.GCNConv(normalize=False, add_self_loops=False)`` over the explicit
edges (self-loops included), with edge_index = (j, i) for every ``A[i, j] = 1`` so that GCNConv's
source-to-target flow computes ``sum_j A[i, j] x_j W``. Graphs are batched as PyG disjoint unions
(the same ``x`` / ``edge_index`` that ``torch_geometric.data.Batch.from_data_list`` builds; the
test suite checks this), but built with one vectorised gather per mini-batch rather than Python
objects. Init "thomas": U(+-1/sqrt(600)) for conv weights and biases (Eagle's
``tensor.size(-1)`` of a (in, out) weight is the output width); the final Linear keeps PyTorch's
default init, as in Eagle. **float32** instead of Eagle's float64: targets are median-normalised
to O(1) (below), where float32 has ample precision for an L1 regression; we did not measure a
float64 run.

Training (Eagle ``predictors/__main__.py::train``)
--------------------------------------------------
``L1Loss(reduction='sum')``, AdamW(lr 4e-4, weight decay 5e-4), ``epochs`` = 250,
ReduceLROnPlateau(min, factor 0.5, patience 10, threshold 0.01) stepped on the validation loss
only after epoch 20, early stopping with patience 35 (also only after epoch 20), validation = 10 %
of the training archs. Differences, all deliberate:

* **Units.** Eagle regresses raw seconds. We regress latency divided by the median latency of the
  device's training archs, so the loss is O(1) per point whatever the device (a 1 ms and a 300 ms
  device train alike); predictions are mapped back to ms by a positive-slope fit on the target
  shots (``baselines._fit.scale_fit``). Ranking does not depend on this scale.
* **Best weights.** We keep the weights of the lowest validation loss (a deep copy). Eagle means
  to, but stores ``state_dict()`` by reference, so it actually returns the last epoch's weights.
* **Batch size.** Eagle trains with batch size 1 (810 optimiser steps per epoch). On this CPU
  that is ~9x slower per epoch than ``batch_size=16`` (the default here; 6.1 s vs 0.69 s per 256
  graphs, 1 thread). Checked on help-nb201 trial 0, k=900, ``pretrain=False`` (bs 1 capped at 60
  epochs; 9-12 min per device): pixel2 rho 0.770 (bs 1) vs 0.765 (bs 16); eyeriss
  0.868 (bs 1, still improving at the cap) vs 0.872 (bs 16): differences of +-0.006.
* **Epochs.** Not reduced: the paper's 250 with early stopping (63 to 110+ epochs ran in our
  runs). Cutting to 30 epochs would bring k=900 from scratch near the 10-minute budget, but it
  costs up to 0.017 rho (help-nb201 trial 0, k=900 from scratch, best-validation weights:
  eyeriss 0.855 at epoch 30 vs 0.872 after early stopping at 110+ epochs; pixel2 is already
  flat by epoch 30 at 0.765). So the cut is left to the user (``--param epochs=30``).
* **Threads.** Training runs with ``num_threads=1`` torch thread by default: on the shared 2-core
  box, 2 OpenMP threads were 8-10x *slower* (they spin against the other workers' processes).

Few-shot protocol (latbench's extension; BRP-NAS has no cross-device mechanism)
--------------------------------------------------------------------------------
* ``pretrain=True`` (default): ``fit`` trains one GCN on all source devices pooled: every
  (arch, source device) pair is a training point with the device-median-normalised latency as
  target. The model has no device input, so the points of one arch share one forward pass and
  the loss is ``sum_d |f(arch) - y_d|`` -- exactly the pooled-dataset L1 loss, 9x cheaper. The
  10 % validation split is by arch (no arch is in both). ``adapt`` fine-tunes a copy of all the
  weights on the k target shots (median-normalised, ``finetune_epochs`` full passes in batches of
  ``batch_size``, AdamW at ``finetune_lr``, no validation or early stopping: k is tiny), then fits
  ``ms = a * prediction + b`` (a > 0) on the shots.
* ``pretrain=False``: the literature's platform-specific setting (HELP Table 3 trains BRP-NAS on
  900 target samples): ``fit`` ignores the source devices, ``adapt`` trains a fresh GCN from
  scratch on the k target shots with Eagle's full recipe (``epochs``, 10 % of the shots held out
  for validation / LR schedule / early stopping when k >= 20, otherwise all k train and the last
  weights are kept). ``latbench eval --method brp-nas --task help-nb201 --shots 900 --param
  pretrain=false``.

Everything is deterministic from the seed given to ``fit``: model init and dropout draw from a
forked torch RNG seeded from (seed, phase, device name), shuffling from a seeded torch.Generator.

Measured runtimes and scores: see :class:`BRPNAS`.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from latbench.methods.fitting import positive_floor, scale_fit, stable_seed, torch_threads
from latbench.methods.base import Method

# Eagle's fixed schedule constants (predictors/__main__.py, latency yaml)
_VAL_FRACTION = 0.1
_LR_PATIENCE = 10
_LR_FACTOR = 0.5
_LR_THRESHOLD = 0.01
_ES_PATIENCE = 35
_WARMUP_EPOCHS = 20  # scheduler / early stopping only step after this epoch
_MIN_VAL_SHOTS = 20  # pretrain=False: hold out 10 % for validation only from this many shots on

# ---- NB201 graph encoding (BRP-NAS / Eagle) ----------------------------------------------------
#: Eagle's ops-as-nodes DAG: node 0 = input, 1..6 = the six cell edges in string order, 7 = output.
_NB201_DAG = ((0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 6), (3, 6), (4, 7), (5, 7), (6, 7))
#: Feature columns: conv1x1, conv3x3, avgpool, input, output, global.
_NB201_OP_COLUMN = {"nor_conv_1x1": 0, "nor_conv_3x3": 1, "avg_pool_3x3": 2}
_COL_INPUT, _COL_OUTPUT, _COL_GLOBAL = 3, 4, 5


def nb201_cell_surgery(ops) -> tuple[np.ndarray, list]:
    """Eagle's pruned 8x8 cell DAG (``m[i, j] = 1`` for i -> j) and node labels (None = removed).

    ``ops``: the six edge ops in NB201 string order.
    """
    m = np.zeros((8, 8), dtype=bool)
    for i, j in _NB201_DAG:
        m[i, j] = True
    labels: list = ["input"] + [None] * 6 + ["output"]
    for e, op in enumerate(ops):
        v = e + 1
        if op == "none":
            m[v, :] = False
            m[:, v] = False
        elif op == "skip_connect":
            preds, succs = np.flatnonzero(m[:, v]), np.flatnonzero(m[v, :])
            # Eagle rewires (and only then disconnects) when the node has both sides; with one side
            # missing the node is dangling and the pruning below removes it anyway.
            if len(preds) and len(succs):
                for p in preds:
                    m[p, succs] = True
                    m[p, v] = False
                m[v, succs] = False
        else:
            labels[v] = op
    fw = _reach(m, 0)
    bw = _reach(m.T, 7)
    for v in range(8):
        if not (fw[v] and bw[v]):
            labels[v] = None
            m[v, :] = False
            m[:, v] = False
    return m, labels


def _reach(m: np.ndarray, start: int) -> np.ndarray:
    seen = np.zeros(len(m), dtype=bool)
    seen[start] = True
    stack = [start]
    while stack:
        v = stack.pop()
        for w in np.flatnonzero(m[v] & ~seen):
            seen[w] = True
            stack.append(w)
    return seen


def nb201_brp_graph(ops) -> tuple[np.ndarray, np.ndarray]:
    """BRP-NAS's 9-node graph of an NB201 cell: (adjacency [9, 9] with self-loops and the global
    node at index 0, features [9, 6]); ``adj[i, j] = 1`` means node i aggregates node j."""
    m, labels = nb201_cell_surgery(ops)
    adj = np.zeros((9, 9), dtype=np.float32)
    adj[1:, 1:] = m
    adj[0, 1:] = 1.0
    np.fill_diagonal(adj, 1.0)
    feat = np.zeros((9, 6), dtype=np.float32)
    feat[0, _COL_GLOBAL] = 1.0
    feat[1, _COL_INPUT] = 1.0  # set unconditionally, as in Eagle
    feat[8, _COL_OUTPUT] = 1.0
    for v, lab in enumerate(labels):
        if lab in _NB201_OP_COLUMN:
            feat[v + 1, _NB201_OP_COLUMN[lab]] = 1.0
    return adj, feat


def chain_brp_graph(adj: np.ndarray, feat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """latbench's extension for spaces without a BRP-NAS encoding: the space's graph plus a global
    node at index 0 (edges to all nodes, its own feature column, last) and self-loops."""
    n, f = feat.shape
    a = np.zeros((n + 1, n + 1), dtype=np.float32)
    a[1:, 1:] = adj
    a[0, 1:] = 1.0
    np.fill_diagonal(a, 1.0)
    x = np.zeros((n + 1, f + 1), dtype=np.float32)
    x[1:, :f] = feat
    x[0, f] = 1.0
    return a, x


_ENCODED: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}


def encode_space(space) -> tuple[np.ndarray, np.ndarray]:
    """``encode`` of every arch of the space, cached per (space name, size)."""
    key = (space.name, len(space))
    if key not in _ENCODED:
        _ENCODED[key] = encode(space, space.arch_ids())
    return _ENCODED[key]


def encode(space, ids) -> tuple[np.ndarray, np.ndarray]:
    """(adjacency [n, N, N], features [n, N, F]) of BRP-NAS graphs for arch ids of ``space``."""
    ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
    if space.name == "nb201":
        from latbench.spaces.nb201 import NB201Space

        graphs = [nb201_brp_graph(NB201Space.parse(space.arch_str(i))) for i in ids]
        return np.stack([g[0] for g in graphs]), np.stack([g[1] for g in graphs])
    adj, feat = space.graph(ids)
    graphs = [chain_brp_graph(a, x) for a, x in zip(adj, feat)]
    adj, feat = np.stack([g[0] for g in graphs]), np.stack([g[1] for g in graphs])
    if space.name == "ofa":
        feat = np.concatenate([feat, ofa_resolution_columns(space, ids, feat.shape[1])], axis=2)
    return adj, feat


def ofa_resolution_columns(space, ids, n_nodes: int) -> np.ndarray:
    """[n, n_nodes, 25]: the one-hot of the input resolution r on the input node and on every
    active layer node of the OFA chain graph with the global node at index 0 (input = node 1,
    slot s = node s + 2); zeros elsewhere. Why: a layer's cost scales with its feature-map size,
    set by r; with r on the layer's own node, each node's features determine its cost."""
    from latbench.spaces.ofa import RESOLUTIONS, parse

    out = np.zeros((len(ids), n_nodes, len(RESOLUTIONS)), dtype=np.float32)
    for row, i in enumerate(ids):
        r, _, ks, _ = parse(space.arch_str(int(i)))
        nodes = [1] + [slot + 2 for slot, k in enumerate(ks) if k]
        out[row, nodes, RESOLUTIONS.index(r)] = 1.0
    return out


class GraphSet:
    """Encoded graphs of one space, batched on demand into PyG disjoint unions."""

    def __init__(self, adj: np.ndarray, feat: np.ndarray):
        self.adj = torch.from_numpy(np.ascontiguousarray(adj)) > 0  # [n, N, N]
        self.x = torch.from_numpy(np.ascontiguousarray(feat)).float()  # [n, N, F]
        self.n_nodes = self.adj.shape[1]

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x [B*N, F], edge_index [2, E], readout index [B]) for graphs ``rows``.

        Graph b's node i becomes node b*N + i (PyG's Batch layout); an entry ``adj[i, j]`` becomes
        the PyG edge j -> i, so GCNConv's aggregation at i sums its BRP-NAS neighbours j.
        """
        n = self.n_nodes
        b, i, j = self.adj[rows].nonzero(as_tuple=True)
        edge_index = torch.stack([b * n + j, b * n + i])
        x = self.x[rows].reshape(-1, self.x.shape[2])
        return x, edge_index, torch.arange(len(rows)) * n  # global node = node 0 of each graph


class BRPGCN(nn.Module):
    """Eagle's GCN: [GCNConv -> LayerNorm -> ReLU -> Dropout] x layers, global-node readout, Linear."""

    def __init__(self, n_features: int, hidden: int = 600, layers: int = 4, dropout: float = 0.002):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.convs = nn.ModuleList(
            GCNConv(n_features if k == 0 else hidden, hidden, normalize=False, add_self_loops=False, bias=True)
            for k in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, 1)
        bound = 1.0 / math.sqrt(hidden)  # "thomas": U(+-1/sqrt(size(-1))) of Eagle's (in, out) weight
        for conv in self.convs:
            nn.init.uniform_(conv.lin.weight, -bound, bound)
            nn.init.uniform_(conv.bias, -bound, bound)

    def forward(self, x, edge_index, readout):
        for conv, norm in zip(self.convs, self.norms):
            x = self.dropout(torch.relu(norm(conv(x, edge_index))))
        return self.fc(x[readout]).squeeze(-1)



class BRPNAS(Method):
    """BRP-NAS GCN (Eagle latency config) with source pre-training and few-shot fine-tuning.

    Parameters are Eagle's defaults except ``batch_size`` (Eagle: 1) and the latbench-only
    ``finetune_epochs`` / ``finetune_lr`` / ``pretrain`` / ``num_threads``.

    ``finetune_epochs=50``, ``finetune_lr=1e-4`` were picked on help-nb201 k=10 (trials 0 and 1,
    one pre-trained model per trial, mean rho over the 6 targets): no fine-tuning 0.788 / 0.788;
    20 epochs @ 1e-4 0.809 / 0.818; 50 @ 1e-4 0.800 / 0.824; 100 @ 1e-4 0.795 / 0.817;
    50 @ 4e-4 0.804 / 0.809. Fine-tuning mostly rescues eyeriss (0.54-0.55 zero-shot -> ~0.8),
    and costs a little on pixel2 and titan_rtx_256.

    Measured on the shared 2-core CPU (1 torch thread; 4-8 other processes were running, so this
    process got ~50 % of a core: wall time ~2x the CPU time):

    * help-nb201, k=10, 1 trial (defaults): 5.3 min wall (fit 278 s = pre-training stopped early
      at epoch 107 of 250, best at 72; adapt 16 s for 6 devices; predict 11 s); 148 s user CPU.
      Spearman 0.800 (titan_rtx_256 0.736, gold_6226 0.817, fpga 0.856, pixel2 0.703,
      raspi4 0.879, eyeriss 0.811); trial 1 gives 0.824.
    * help-nb201, k=900, ``pretrain=False``, 1 trial: **29 min wall, 16 min CPU** -- over the
      10-minute budget, because it trains 6 full GCNs from scratch (one per target device,
      63-110+ epochs each of 810 graphs, ~3 s per epoch). Spearman 0.857 (titan_rtx_256 0.868,
      gold_6226 0.860, fpga 0.873, pixel2 0.765, raspi4 0.906, eyeriss 0.872); HELP reports
      0.8-0.9 per device for BRP-NAS on 900 target samples (on its own 800-arch query set).
    * Main suite, one unit = task x trial with k = 5/10/20 sharing one fit (resumable sweep, two
      units at a time on the 2 cores, after the OFA resolution fix): NB201 2.3 min, FBNet 4.3 min,
      OFA 4.1 min wall on average over the 90 units (``benchmarks/results/learned-main.md``).
    * Memory ~1 GB RSS. MAPE is dominated by a few near-zero raspi4 measurements (0.01 ms).
    """

    name = "brp-nas"
    summary = "BRP-NAS GCN (Eagle): pre-trained on source devices, fine-tuned on the k target shots"
    check_params = {"epochs": 1, "finetune_epochs": 1, "hidden": 32}

    def __init__(
        self,
        epochs: int = 250,
        hidden: int = 600,
        layers: int = 4,
        dropout: float = 0.002,
        lr: float = 4e-4,
        weight_decay: float = 5e-4,
        batch_size: int = 16,
        finetune_epochs: int = 50,
        finetune_lr: float = 1e-4,
        pretrain: bool = True,
        device: str = "cpu",
        num_threads: int | None = 1,
    ):
        self.epochs = epochs
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.pretrain = pretrain
        self.device = device
        self.num_threads = num_threads

    # ---- data ---------------------------------------------------------------------------
    def _graphs(self) -> GraphSet:
        if getattr(self, "graphs_", None) is None:
            self.graphs_ = GraphSet(*encode_space(self.space_))
        return self.graphs_

    def _new_model(self) -> BRPGCN:
        return BRPGCN(self._graphs().x.shape[2], self.hidden, self.layers, self.dropout).to(self.device)

    def _pretrain_flag(self) -> bool:
        p = self.pretrain
        return p.strip().lower() not in ("false", "0", "no", "off") if isinstance(p, str) else bool(p)

    # ---- protocol -----------------------------------------------------------------------
    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        self.graphs_ = None
        self.models_ = {}
        self.scales_ = {}
        self.base_state_ = None
        if not self._pretrain_flag():
            self.source_ = None  # platform-specific setting: the source devices are never used
            return self
        ids = np.asarray(source.arch_ids, dtype=np.int64)
        lat = np.asarray(source.latency, dtype=np.float64)  # [n_dev, n_arch]
        ok = np.isfinite(lat).all(0) & (lat > 0).all(0)
        ids, lat = ids[ok], lat[:, ok]
        y = (lat / np.median(lat, axis=1, keepdims=True)).T  # [n_arch, n_dev], pooled targets
        with torch.random.fork_rng(devices=[]), torch_threads(self.num_threads):
            torch.manual_seed(stable_seed(seed, "pretrain"))
            model = self._new_model()
            gen = torch.Generator().manual_seed(stable_seed(seed, "pretrain-split"))
            self._train(model, ids, y, self.epochs, self.lr, gen, validate=len(ids) >= _MIN_VAL_SHOTS)
        self.base_state_ = copy.deepcopy(model.state_dict())
        return self

    def adapt(self, device, oracle):
        super().adapt(device, oracle)  # measures oracle.default_choice()
        ids, y = self.shots_[device]
        ok = np.isfinite(y) & (y > 0)
        ids_t, y_t = ids[ok], y[ok]
        med = float(np.median(y_t)) if len(y_t) else 1.0
        target = (y_t / med)[:, None]
        with torch.random.fork_rng(devices=[]), torch_threads(self.num_threads):
            torch.manual_seed(stable_seed(self.seed_, "adapt", device))
            gen = torch.Generator().manual_seed(stable_seed(self.seed_, "adapt-split", device))
            model = self._new_model()
            if self.base_state_ is not None:
                model.load_state_dict(self.base_state_)
                if len(ids_t):
                    self._train(model, ids_t, target, self.finetune_epochs, self.finetune_lr, gen, validate=False)
            elif len(ids_t):
                self._train(model, ids_t, target, self.epochs, self.lr, gen, validate=len(ids_t) >= _MIN_VAL_SHOTS)
        model.eval()
        self.models_[device] = model
        self.scales_[device] = scale_fit(self._forward(model, ids_t), y_t) if len(y_t) else (1.0, 0.0)
        return self

    def predict(self, device, arch_ids):
        a, b = self.scales_[device]
        with torch_threads(self.num_threads):
            pred = a * self._forward(self.models_[device], arch_ids) + b
        return positive_floor(np.nan_to_num(pred, nan=0.0), self.shots_[device][1])

    # ---- training -----------------------------------------------------------------------
    @torch.no_grad()
    def _forward(self, model: BRPGCN, ids, chunk: int = 1024) -> np.ndarray:
        model.eval()
        graphs = self._graphs()
        rows = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        out = [model(*(t.to(self.device) for t in graphs.batch(r))) for r in rows.split(chunk)]
        return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)

    def _train(self, model: BRPGCN, ids, y: np.ndarray, epochs: int, lr: float, gen: torch.Generator, validate: bool):
        """Eagle's loop: sum-L1 on the (normalised) targets ``y [n, m]`` (m targets per arch, each a
        pooled training point); optional 10 % validation with LR plateau, early stopping and
        best-weight restore."""
        graphs = self._graphs()
        rows = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        y = torch.as_tensor(np.asarray(y), dtype=torch.float32).to(self.device)
        n = len(rows)
        perm = torch.randperm(n, generator=gen)
        n_val = int(round(_VAL_FRACTION * n)) if validate else 0
        val, train = perm[:n_val], perm[n_val:]
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=_LR_FACTOR, patience=_LR_PATIENCE, threshold=_LR_THRESHOLD
        )
        if n_val:
            vx, ve, vr = (t.to(self.device) for t in graphs.batch(rows[val]))
        best, best_state, es_best, bad = math.inf, None, None, 0
        self.history_ = []  # mean validation L1 per epoch (diagnostics)
        for epoch in range(epochs):
            model.train()
            order = train[torch.randperm(len(train), generator=gen)]
            for chunk in order.split(max(1, int(self.batch_size))):
                x, e, r = (t.to(self.device) for t in graphs.batch(rows[chunk]))
                loss = (model(x, e, r)[:, None] - y[chunk]).abs().sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if not n_val:
                continue
            model.eval()
            with torch.no_grad():
                val_loss = float((model(vx, ve, vr)[:, None] - y[val]).abs().sum())
            self.history_.append(val_loss / n_val)
            if not math.isfinite(val_loss):
                break
            if val_loss < best:
                best, best_state = val_loss, copy.deepcopy(model.state_dict())
            if getattr(self, "on_epoch_", None) is not None:  # diagnostics hook (experiments only)
                self.on_epoch_(epoch, model, best_state)
            if epoch > _WARMUP_EPOCHS:
                sched.step(val_loss)
                # Eagle's EarlyStopping: first call sets the reference; stop after 35 non-improving epochs
                if es_best is None or val_loss < es_best:
                    es_best, bad = val_loss, 0
                else:
                    bad += 1
                    if bad >= _ES_PATIENCE:
                        break
        if best_state is not None:
            model.load_state_dict(best_state)
        self.last_epochs_ = epoch + 1 if epochs else 0
        return model
