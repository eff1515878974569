"""BRP-NAS latency predictor: Eagle's GCN, pre-trained on the source devices, fine-tuned on the shots.

BRP-NAS (Dudziak et al., NeurIPS 2020; code ``SamsungLabs/eagle``), re-implemented with PyTorch
Geometric layers: Eagle's 4 x 600 GCN over BRP-NAS's NB201 graph with a global node, trained with
Eagle's latency recipe. Main deviation: BRP-NAS has no cross-device mechanism, so latbench
pre-trains one GCN on the pooled source devices and fine-tunes it on the k target shots
(``pretrain=False`` trains from scratch on the target instead); FBNet and OFA get a chain-graph
encoding. See the documentation page baselines/brp-nas (``docs/baselines/brp-nas.md``).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from latbench.methods.base import Method
from latbench.methods.fitting import positive_floor, scale_fit, stable_seed, torch_device, torch_threads

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
    """BRP-NAS GCN (Eagle's latency config), pre-trained on the sources and fine-tuned on the shots.

    Parameters
    ----------
    epochs : int, default 250
        Maximum epochs of the pre-training on the source devices, or, with ``pretrain=False``, of
        each target's training from scratch; with a validation split (at least 20 archs), early
        stopping (patience 35) after epoch 20. Eagle's value.
    hidden : int, default 600
        Width of each graph convolution. Eagle's value.
    layers : int, default 4
        Number of graph convolutions. Eagle's value.
    dropout : float, default 0.002
        Dropout after each graph convolution. Eagle's value.
    lr : float, default 4e-4
        AdamW learning rate of the pre-training and of training from scratch. Eagle's value.
    weight_decay : float, default 5e-4
        AdamW weight decay, in every training including fine-tuning. Eagle's value.
    batch_size : int, default 16
        Graphs per optimiser step. Eagle uses 1; 16 is ~9x faster per epoch on a CPU and moved
        Spearman by at most 0.006 (help-nb201, k = 900 from scratch).
    finetune_epochs : int, default 50
        Full passes over the k shots when fine-tuning the pre-trained GCN; 0 keeps the pre-trained
        weights. latbench's choice (BRP-NAS does not fine-tune), picked on help-nb201 at k = 10.
    finetune_lr : float, default 1e-4
        AdamW learning rate of the fine-tuning. latbench's choice, picked with ``finetune_epochs``.
    pretrain : bool or str, default True
        True: pre-train one GCN on all source devices pooled and fine-tune a copy per target
        (latbench's few-shot extension). False: ignore the sources and train a fresh GCN on each
        target's shots, the platform-specific setting of the literature (HELP's Table 3 trains
        BRP-NAS on 900 target samples). The strings "false", "0", "no" and "off" count as False.
    device : str, default "cpu"
        Torch device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available). Results on a GPU
        agree with the CPU's to float tolerance, not bit for bit.
    num_threads : int or None, default 1
        Torch CPU threads while fitting, adapting and predicting; None leaves torch's setting.
        latbench's choice: more threads were several times slower on a small shared CPU.

    Attributes
    ----------
    torch_device_ : torch.device
        The device the GCNs live on (``device`` resolved).
    base_state_ : dict or None
        State dict of the GCN pre-trained on the source devices (None with ``pretrain=False``).
    models_ : dict of str to BRPGCN
        Per target device, its fine-tuned (or trained from scratch) GCN.
    scales_ : dict of str to tuple of float
        Per target device, ``(a, b)`` of ``ms = a * output + b``, fitted on its shots.
    history_ : list of float
        Mean validation L1 per epoch of the last training (empty when it had no validation split).
    last_epochs_ : int
        Number of epochs the last training ran.
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
        return BRPGCN(self._graphs().x.shape[2], self.hidden, self.layers, self.dropout).to(self.torch_device_)

    def _pretrain_flag(self) -> bool:
        p = self.pretrain
        return p.strip().lower() not in ("false", "0", "no", "off") if isinstance(p, str) else bool(p)

    # ---- protocol -----------------------------------------------------------------------
    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        self.torch_device_ = torch_device(self.device)
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
            self._train(model, ids, y, self.epochs, self.lr, gen, validate=len(ids) >= _MIN_VAL_SHOTS, desc="pre-training epoch")
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
                    self._train(
                        model,
                        ids_t,
                        target,
                        self.finetune_epochs,
                        self.finetune_lr,
                        gen,
                        validate=False,
                        desc=f"fine-tuning on {device}",
                    )
            elif len(ids_t):
                self._train(
                    model,
                    ids_t,
                    target,
                    self.epochs,
                    self.lr,
                    gen,
                    validate=len(ids_t) >= _MIN_VAL_SHOTS,
                    desc=f"training on {device}",
                )
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
        out = [model(*(t.to(self.torch_device_) for t in graphs.batch(r))) for r in rows.split(chunk)]
        return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)

    def _train(
        self, model: BRPGCN, ids, y: np.ndarray, epochs: int, lr: float, gen: torch.Generator, validate: bool, desc: str = "epoch"
    ):
        """Eagle's loop: sum-L1 on the (normalised) targets ``y [n, m]`` (m targets per arch, each a
        pooled training point); optional 10 % validation with LR plateau, early stopping and
        best-weight restore. Reports each epoch as progress ``desc``."""
        graphs = self._graphs()
        dev = self.torch_device_
        rows = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        y = torch.as_tensor(np.asarray(y), dtype=torch.float32).to(dev)
        n = len(rows)
        perm = torch.randperm(n, generator=gen)
        n_val = int(round(_VAL_FRACTION * n)) if validate else 0
        val, train = perm[:n_val], perm[n_val:]
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=_LR_FACTOR, patience=_LR_PATIENCE, threshold=_LR_THRESHOLD
        )
        if n_val:
            vx, ve, vr = (t.to(dev) for t in graphs.batch(rows[val]))
        best, best_state, es_best, bad = math.inf, None, None, 0
        self.history_ = []  # mean validation L1 per epoch (diagnostics)
        for epoch in range(epochs):
            model.train()
            order = train[torch.randperm(len(train), generator=gen)]
            for chunk in order.split(max(1, int(self.batch_size))):
                x, e, r = (t.to(dev) for t in graphs.batch(rows[chunk]))
                loss = (model(x, e, r)[:, None] - y[chunk]).abs().sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.progress(epoch + 1, epochs, desc)
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
