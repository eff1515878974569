"""NASFLAT latency predictor: GNN with per-device hardware embeddings and pairwise ranking.

NASFLAT (Akhauri & Abdelfattah, MLSys 2024, "On Latency Predictors for Neural Architecture
Search"; code ``abdelfattah-lab/nasflat_latency``), written from the description of the original
code, not copied: one ensemble GNN pre-trained on (arch, source device) pairs; on a target, an
encoding-based sampler picks the k shots, the most correlated source's hardware embedding
initialises the target's, and the whole network is fine-tuned on the shots. Main deviations: 50
source epochs instead of 150 (costs FBNet ~0.03 Spearman) and no supplementary encodings (arch2vec,
CATE, zero-cost proxies). See the documentation page baselines/nasflat (``docs/baselines/nasflat.md``).
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from latbench.methods.base import Method
from latbench.methods.fitting import positive_floor, stable_seed, torch_device, torch_threads
from latbench_baselines.brp_nas import nb201_cell_surgery

#: Per-space fine-tuning defaults from NASFLAT's main joblist (OFA: FBNet's, documented).
TRANSFER_DEFAULTS = {"nb201": (3e-3, 40), "fbnet": (1e-3, 30), "ofa": (1e-3, 30)}
#: Embedding table sizes of the original (``nn.Embedding(128, .)``).
_TABLE_ROWS = 128

# ---- graph encodings ---------------------------------------------------------------------------
#: NASFLAT's NB201 op vocabulary (``Cell201.gcn_encoding``: [OUTPUT, INPUT, *OPS]).
NB201_VOCAB = ("output", "input", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3", "none", "skip_connect")
_OFA_INACTIVE = 9


def nb201_matrix(ops) -> np.ndarray:
    """BRP-NAS ``get_matrix_and_ops(prune=True, keep_dims=True)`` as NASFLAT uses it: the pruned 8x8
    ops-as-nodes matrix (``m[i, j] = 1`` for i -> j). The same surgery as the BRP-NAS baseline's."""
    return nb201_cell_surgery(ops)[0]


_ENCODED: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def encode_space(space) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NASFLAT inputs of every arch of ``space``: (op index [n, N] int64, adjacency [n, N, N] bool
    with ``adj[i, j]`` = arch edge i -> j, extra index [n] int64 (OFA: resolution; else 0)).
    Cached per (space name, size)."""
    key = (space.name, len(space))
    if key in _ENCODED:
        return _ENCODED[key]
    ids = space.arch_ids()
    n = len(ids)
    if space.name == "nb201":
        from latbench.spaces.nb201 import NB201Space

        ops = np.zeros((n, 8), dtype=np.int64)
        adj = np.zeros((n, 8, 8), dtype=bool)
        ops[:, 0], ops[:, 7] = NB201_VOCAB.index("input"), NB201_VOCAB.index("output")
        for i in ids:
            edge_ops = NB201Space.parse(space.arch_str(i))
            ops[i, 1:7] = [NB201_VOCAB.index(op) for op in edge_ops]
            adj[i] = nb201_matrix(edge_ops)
        extra = np.zeros(n, dtype=np.int64)
    elif space.name == "fbnet":
        from latbench.spaces.fbnet import NUM_LAYERS, OPS

        ops = space.onehot(ids).reshape(n, NUM_LAYERS, len(OPS)).argmax(-1).astype(np.int64)
        adj = np.broadcast_to(np.eye(NUM_LAYERS, dtype=bool), (n, NUM_LAYERS, NUM_LAYERS)).copy()
        extra = np.zeros(n, dtype=np.int64)
    elif space.name == "ofa":
        from latbench.spaces.ofa import EXPANDS, KERNELS, RESOLUTIONS

        a, feat = space.graph(ids)
        nk, ne = len(KERNELS), len(EXPANDS)
        active = feat[:, :, :nk].sum(-1) > 0
        ops = np.where(active, feat[:, :, :nk].argmax(-1) * ne + feat[:, :, nk : nk + ne].argmax(-1), _OFA_INACTIVE)
        ops[:, 0], ops[:, -1] = _OFA_INACTIVE + 1, _OFA_INACTIVE + 2
        adj = a > 0
        extra = space.onehot(ids)[:, -len(RESOLUTIONS) :].argmax(-1).astype(np.int64)
    else:
        raise ValueError(f"NASFLAT: no encoding for space {space.name!r}")
    _ENCODED[key] = (ops.astype(np.int64), adj, extra)
    return _ENCODED[key]


class GraphSet:
    """Encoded archs of one space, batched on demand as PyG disjoint unions."""

    def __init__(self, ops: np.ndarray, adj: np.ndarray, extra: np.ndarray):
        self.ops = torch.from_numpy(np.ascontiguousarray(ops))
        self.adj = torch.from_numpy(np.ascontiguousarray(adj))
        self.extra = torch.from_numpy(np.ascontiguousarray(extra))
        self.n_nodes = self.ops.shape[1]

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(op index [B, N], edge_index [2, E], extra [B]); arch edge j -> i of graph b becomes the
        PyG edge (b N + j) -> (b N + i), so node i aggregates its predecessors (NASFLAT's adj.T)."""
        n = self.n_nodes
        b, j, i = self.adj[rows].nonzero(as_tuple=True)
        return self.ops[rows], torch.stack([b * n + j, b * n + i]), self.extra[rows]


# ---- model ---------------------------------------------------------------------------------------
class DGFConv(MessagePassing):
    """NASFLAT's DenseGraphFlow: ``sigmoid(Linear(cond)) * sum_{j -> i} (x_j W) + x_i W + b``."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int):
        super().__init__(aggr="add")
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(out_dim))
        self.op_attention = nn.Linear(cond_dim, out_dim)
        bound = 1.0 / math.sqrt(out_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x, edge_index, cond, reps: int = 1):
        s = x @ self.weight
        if reps > 1:  # x was one graph's node states, identical for every graph of the batch
            s = s.repeat(reps, 1)
        return torch.sigmoid(self.op_attention(cond)) * self.propagate(edge_index, x=s) + s + self.bias


class MaskedGATConv(MessagePassing):
    """NASFLAT's GraphAttentionLayer with its multiplicative masking, exactly (see baselines/nasflat in the docs):
    softmax over *all* N nodes of the graph of ``l_ij * A_ij``, computed from the edges plus a
    per-graph sum (all graphs of a batch have ``n_nodes`` nodes)."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int):
        super().__init__(aggr="add")
        self.out_dim = out_dim
        self.op_attention = nn.Linear(cond_dim, out_dim)
        self.Wk = nn.Linear(in_dim, out_dim, bias=False)
        self.a = nn.Linear(out_dim, 1, bias=False)
        self.layernorm = nn.LayerNorm(out_dim)

    def forward(self, x, edge_index, cond, n_nodes: int, reps: int = 1):
        k = self.Wk(x)
        if reps > 1:
            k = k.repeat(reps, 1)
        src, dst = edge_index
        logit = F.leaky_relu(self.a(k[dst] * k[src]).squeeze(-1) / math.sqrt(self.out_dim), 0.01)
        c = scatter(logit.detach(), dst, dim=0, dim_size=k.shape[0], reduce="max").clamp_min(0.0)
        base = torch.exp(-c)  # weight of a logit-0 (masked) entry, shifted by c_i
        w = torch.exp(logit - c[dst]) - base[dst]  # an edge's weight in excess of a masked entry
        total = k.view(-1, n_nodes, k.shape[1]).sum(1).repeat_interleave(n_nodes, 0)
        num = self.propagate(edge_index, x=k, w=w) + base[:, None] * total
        den = scatter(w, dst, dim=0, dim_size=k.shape[0], reduce="sum") + n_nodes * base
        return self.layernorm(torch.sigmoid(self.op_attention(cond)) * (num / den[:, None]))

    def message(self, x_j, w):
        return w[:, None] * x_j


class EnsembleLayer(nn.Module):
    """``ensemble_fuse_method='add'``: the mean of DGF and GAT."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int):
        super().__init__()
        self.dgf = DGFConv(in_dim, out_dim, cond_dim)
        self.gat = MaskedGATConv(in_dim, out_dim, cond_dim)

    def forward(self, x, edge_index, cond, n_nodes: int, reps: int = 1):
        return (self.dgf(x, edge_index, cond, reps) + self.gat(x, edge_index, cond, n_nodes, reps)) / 2


def _mlp(dims, final_act: bool = False) -> nn.Sequential:
    layers = []
    for k in range(len(dims) - 1):
        layers.append(nn.Linear(dims[k], dims[k + 1]))
        if k < len(dims) - 2 or final_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class NASFLATNet(nn.Module):
    """``GIN_Model`` (adj_gin, ensemble / add, hw embedding per node); scores for (arch, device)."""

    def __init__(
        self,
        n_nodes: int,
        n_extra: int = 0,
        op_dim: int = 40,
        hw_dim: int = 8,
        node_dim: int = 48,
        hid_dim: int = 96,
        op_fp_dims=(128, 128),
        forward_dims=(128, 128, 128),
        op_update_mlp_dims=(128, 128, 128),
        updateop_dims=(128,),
        mlp_dims=(200, 200, 200),
        mlp_dropout: float = 0.1,
    ):
        super().__init__()
        self.n_nodes = n_nodes
        cond = op_dim + hw_dim
        self.op_emb = nn.Embedding(_TABLE_ROWS, op_dim)
        self.hw_emb = nn.Embedding(_TABLE_ROWS, hw_dim)
        self.register_buffer("input_op_emb", torch.zeros(op_dim))
        self.register_buffer("input_hw_emb", torch.zeros(hw_dim))
        self.output_op_emb = nn.Embedding(1, op_dim)
        self.output_hw_emb = nn.Embedding(1, hw_dim)
        self.res_emb = nn.Embedding(n_extra, op_dim) if n_extra else None  # OFA extension
        self.input_node_emb = nn.Embedding(1, node_dim)
        self.other_node_emb = nn.Parameter(torch.zeros(1, node_dim))
        self.x_hidden = nn.Linear(node_dim, hid_dim)
        self.op_f_gcns = nn.ModuleList(EnsembleLayer(i, o, cond) for i, o in zip((hid_dim, *op_fp_dims[:-1]), op_fp_dims))
        self.replace_bgcn_mlp = _mlp((op_fp_dims[-1], *op_update_mlp_dims))
        self.updateop_embedder = _mlp((cond + op_update_mlp_dims[-1], *updateop_dims, cond))
        self.gcns = nn.ModuleList(EnsembleLayer(i, o, cond) for i, o in zip((hid_dim, *forward_dims[:-1]), forward_dims))
        head = []
        dim = forward_dims[-1]
        for h in mlp_dims:
            head += [nn.Linear(dim, h), nn.ReLU(), nn.Dropout(mlp_dropout)]
            dim = h
        self.mlp = nn.Sequential(*head, nn.Linear(dim, 1))

    def conditioning(self, ops, hw, extra) -> torch.Tensor:
        """[B, N, op_dim + hw_dim]: (op || hw) embeddings, input node zeros (OFA: resolution),
        output node the learned output embeddings."""
        b, n = ops.shape
        op = self.op_emb(ops)
        hwv = self.hw_emb(hw)[:, None, :].expand(b, n, -1)
        first_op = self.res_emb(extra) if self.res_emb is not None else self.input_op_emb.expand(b, -1)
        op = torch.cat([first_op[:, None], op[:, 1:-1], self.output_op_emb.weight.expand(b, 1, -1)], 1)
        hwv = torch.cat([self.input_hw_emb.expand(b, 1, -1), hwv[:, 1:-1], self.output_hw_emb.weight.expand(b, 1, -1)], 1)
        return torch.cat([op, hwv], -1)

    def _pass(self, layers, x, edge_index, cond, reps: int):
        for k, layer in enumerate(layers):
            # the initial node states do not depend on the arch: the first layer's linear maps run
            # on one graph's N rows and are repeated (the same numbers, B times fewer multiplies)
            x = layer(x, edge_index, cond, self.n_nodes, reps if k == 0 else 1)
            if k < len(layers) - 1:
                x = F.relu(x)
        return x

    def forward(self, ops, edge_index, hw, extra) -> torch.Tensor:
        b, n = ops.shape
        cond = self.conditioning(ops, hw, extra).reshape(b * n, -1)
        nodes = torch.cat([self.input_node_emb.weight, self.other_node_emb.expand(n - 1, -1)], 0)
        x = self.x_hidden(nodes)  # [N, hid], the same for every graph
        y = self._pass(self.op_f_gcns, x, edge_index, cond, b).view(b, n, -1)
        jlz = self.replace_bgcn_mlp(y[:, -1])  # the output node's state
        cond = self.updateop_embedder(torch.cat([cond.view(b, n, -1), jlz[:, None].expand(b, n, -1)], -1))
        y = self._pass(self.gcns, x, edge_index, cond.reshape(b * n, -1), b).view(b, n, -1)
        return self.mlp(y[:, 1:].mean(1)).squeeze(-1)


# ---- loss and samplers -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def pairwise_hinge_loss(
    scores: torch.Tensor, y, margin: float = 0.1, max_compare_ratio: float = 4, rng: np.random.Generator | None = None
) -> torch.Tensor:
    """NASFLAT's ``pwl_train`` loss on one batch: pairs i < j with ``y_i != y_j``, at most
    ``max_compare_ratio * n`` of them (random subset), mean ``max(0, margin - sign(y_i - y_j)(s_i - s_j))``.
    A higher score means a higher latency."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    i, j = _pairs(n)
    diff = y[i] - y[j]
    keep = np.flatnonzero(np.abs(diff) > 0)
    n_max = int(max_compare_ratio * n)
    if len(keep) > n_max:
        keep = (rng or np.random.default_rng(0)).choice(keep, n_max, replace=False)
    if len(keep) == 0:
        return scores.sum() * 0.0
    i, j = torch.from_numpy(i[keep]).to(scores.device), torch.from_numpy(j[keep]).to(scores.device)
    sign = torch.from_numpy(np.where(diff[keep] > 0, 1.0, -1.0)).to(scores)
    return torch.clamp(margin - sign * (scores[i] - scores[j]), min=0.0).mean()


def sampler_encoding(space, ids) -> np.ndarray:
    """The clustering encoding for the samplers (gap: NASFLAT uses arch2vec / CATE / ZCP): the
    space's one-hot vector plus log FLOPs and log params, min-max scaled over ``ids``."""
    ids = np.asarray(ids, dtype=np.int64)
    cont = np.log(np.column_stack([space.flops(ids), space.params(ids)]).astype(np.float64) + 1e-9)
    span = np.ptp(cont, axis=0)
    cont = (cont - cont.min(0)) / np.where(span > 0, span, 1.0)
    return np.column_stack([space.onehot(ids).astype(np.float64), cont])


def kmeancosine_choice(enc: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """NASFLAT's ``kmeancosine`` over ``pool`` (rows of ``enc``): floor(k/2) archs by KMeans (one
    random member per cluster) + ceil(k/2) by cosine buckets (pool sorted by mean cosine similarity
    to the other archs, ``array_split`` into buckets, one random arch per bucket); duplicates
    removed and filled with random pool archs to exactly ``min(k, len(pool))`` distinct archs."""
    from sklearn.cluster import KMeans

    pool = np.asarray(pool, dtype=np.int64)
    k = min(int(k), len(pool))
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    n_km, n_cos = k // 2, k - k // 2
    if n_km:
        labels = KMeans(n_clusters=n_km, n_init="auto", random_state=seed % (2**31)).fit(enc).labels_
        for c in range(n_km):
            members = np.flatnonzero(labels == c)
            if len(members):
                chosen.append(int(pool[rng.choice(members)]))
    if n_cos:
        unit = enc / np.maximum(np.linalg.norm(enc, axis=1, keepdims=True), 1e-12)
        # mean cosine similarity to all other archs, O(n d): (u_i . sum_j u_j - u_i . u_i) / (n - 1)
        sim = (unit @ unit.sum(0) - (unit * unit).sum(1)) / max(len(pool) - 1, 1)
        order = np.argsort(sim, kind="stable")
        for bucket in np.array_split(order, n_cos):
            if len(bucket):
                chosen.append(int(pool[rng.choice(bucket)]))
    out = list(dict.fromkeys(chosen))[:k]
    if len(out) < k:
        rest = np.setdiff1d(pool, out)
        out += [int(i) for i in rng.choice(rest, k - len(out), replace=False)]
    return np.array(out, dtype=np.int64)


def best_source(reference: np.ndarray, y: np.ndarray) -> tuple[int, float]:
    """(index of the row of ``reference [n_source, k]`` with the highest Spearman correlation with
    ``y [k]``, that correlation); undefined correlations count as -inf, ties go to the first."""
    rhos = []
    for r in np.asarray(reference, dtype=np.float64):
        rho = spearmanr(r, y).statistic if len(y) >= 2 and np.ptp(r) > 0 and np.ptp(y) > 0 else np.nan
        rhos.append(-np.inf if not np.isfinite(rho) else float(rho))
    best = int(np.argmax(rhos)) if rhos else 0
    return best, rhos[best] if rhos else float("nan")


def _minmax(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    span = np.ptp(y) if len(y) else 0.0
    return (y - y.min()) / span if span > 0 else np.zeros_like(y)


def score_to_ms(s_shots: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``ms = a * score + b`` on the shots with a > 0; otherwise scores standardised onto the shots'
    mean and spread (a = std(y) / std(s)), or the shots' mean when the scores do not vary."""
    s_shots, y = np.asarray(s_shots, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(y) == 0:
        return 1.0, 0.0
    if len(y) >= 2 and np.ptp(s_shots) > 0:
        a, b = np.polyfit(s_shots, y, 1)
        if a > 0 and np.isfinite(a) and np.isfinite(b):
            return float(a), float(b)
        a = float(np.std(y) / np.std(s_shots))
        return a, float(np.mean(y) - a * np.mean(s_shots))
    return 0.0, float(np.mean(y))


# ---- the method ------------------------------------------------------------------------------------
class NASFLAT(Method):
    """NASFLAT: ensemble GNN with hardware embeddings, pairwise ranking loss and hw-embedding transfer.

    Defaults are those of NASFLAT's main CLI and joblist unless stated otherwise.

    Parameters
    ----------
    epochs : int, default 50
        Epochs of the source training. The paper uses 150; 50 is latbench's choice to keep a trial
        of the 15-source FBNet task within minutes on a CPU, at a measured cost of ~0.03 Spearman on
        FBNet (none on NB201). ``epochs=150`` restores the paper's schedule.
    batch_size : int, default 128
        Examples ((arch, source device) pairs) per batch of the source training.
    lr : float, default 1e-3
        AdamW learning rate of the source training.
    weight_decay : float, default 1e-5
        AdamW weight decay, in the source training and the fine-tuning.
    eta_min : float, default 1e-6
        Final learning rate of the cosine schedules.
    margin : float, default 0.1
        Margin of the pairwise hinge loss.
    max_compare_ratio : float, default 4.0
        At most ``max_compare_ratio * n`` pairs per batch of n examples (random subset).
    transfer_lr : float or None, default None
        Fine-tuning learning rate. None: the joblist's per-space value (NB201 3e-3, FBNet 1e-3; OFA,
        which NASFLAT lacks, uses FBNet's).
    transfer_epochs : int or None, default None
        Fine-tuning epochs on the k shots. None: per space, NB201 40, FBNet 30, OFA as FBNet.
    transfer_batch_size : int, default 16
        Shots per batch of the fine-tuning.
    sampler : {"kmeancosine", "random"}, default "kmeancosine"
        How the k shots are chosen from the oracle's pool: NASFLAT's default KMeans + cosine-bucket
        sampler (over latbench's one-hot + FLOPs / params encoding), or the oracle's default choice.
    transfer_hwemb : bool or str, default True
        Initialise the target's hardware embedding from the source device that ranks the shots most
        like the target (as in the paper's runs); otherwise it keeps the embedding table's untrained
        row. The strings "false", "0", "no" and "off" count as False.
    snapshot_average : int, default 0
        N > 0: predict with the mean score of the models after each of the last N fine-tuning
        epochs (latbench's predictor-level analogue of NASFLAT reporting the mean Spearman of its
        last 4 transfer epochs); 0: the last epoch's model.
    op_dim : int, default 40
        Width of the op embedding.
    hw_dim : int, default 8
        Width of the hardware embedding.
    hid_dim : int, default 96
        Width of the initial node states.
    op_fp_dims : tuple of int, default (128, 128)
        Widths of the op-update pass's ensemble layers.
    forward_dims : tuple of int, default (128, 128, 128)
        Widths of the main pass's ensemble layers.
    mlp_dims : tuple of int, default (200, 200, 200)
        Hidden widths of the regression MLP.
    mlp_dropout : float, default 0.1
        Dropout in the regression MLP.
    num_threads : int or None, default 1
        Torch CPU threads while fitting, adapting and predicting (restored afterwards); None leaves
        torch's setting. latbench's choice: a second thread made this model's small matmuls several
        times slower on a shared 2-core CPU.
    device : str, default "cpu"
        Torch device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available). Results on a GPU
        agree with the CPU's to float tolerance, not bit for bit.

    Attributes
    ----------
    torch_device_ : torch.device
        The device the networks live on (``device`` resolved).
    base_state_ : dict
        State dict of the source-trained network (reloaded for every target).
    n_source_ : int
        Number of source devices (rows 0 .. n_source_ - 1 of the hardware-embedding table).
    targets_ : dict of str to dict
        Per target device: its embedding-table ``slot``, the fine-tuned ``models``, the ms ``scale``
        ``(a, b)`` and, with ``transfer_hwemb``, the chosen ``source``, its Spearman ``rho`` and how
        it was computed (``by``).
    """

    name = "nasflat"
    summary = "NASFLAT (MLSys'24): GNN with hw embeddings, pairwise ranking, sampler + hw-emb transfer, fine-tuning"
    check_params = {
        "epochs": 1,
        "batch_size": 1024,
        "transfer_epochs": 2,
        "hid_dim": 16,
        "op_fp_dims": (16, 16),
        "forward_dims": (16, 16, 16),
        "mlp_dims": (16, 16, 16),
    }

    def __init__(
        self,
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        eta_min: float = 1e-6,
        margin: float = 0.1,
        max_compare_ratio: float = 4.0,
        transfer_lr: float | None = None,
        transfer_epochs: int | None = None,
        transfer_batch_size: int = 16,
        sampler: str = "kmeancosine",
        transfer_hwemb: bool = True,
        snapshot_average: int = 0,
        op_dim: int = 40,
        hw_dim: int = 8,
        hid_dim: int = 96,
        op_fp_dims: tuple = (128, 128),
        forward_dims: tuple = (128, 128, 128),
        mlp_dims: tuple = (200, 200, 200),
        mlp_dropout: float = 0.1,
        num_threads: int | None = 1,
        device: str = "cpu",
    ):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.eta_min = eta_min
        self.margin = margin
        self.max_compare_ratio = max_compare_ratio
        self.transfer_lr = transfer_lr
        self.transfer_epochs = transfer_epochs
        self.transfer_batch_size = transfer_batch_size
        self.sampler = sampler
        self.transfer_hwemb = transfer_hwemb
        self.snapshot_average = snapshot_average
        self.op_dim = op_dim
        self.hw_dim = hw_dim
        self.hid_dim = hid_dim
        self.op_fp_dims = op_fp_dims
        self.forward_dims = forward_dims
        self.mlp_dims = mlp_dims
        self.mlp_dropout = mlp_dropout
        self.num_threads = num_threads
        self.device = device

    # ---- helpers ------------------------------------------------------------------------
    def _graphs(self) -> GraphSet:
        if getattr(self, "graphs_", None) is None:
            self.graphs_ = GraphSet(*encode_space(self.space_))
        return self.graphs_

    def _new_model(self) -> NASFLATNet:
        g = self._graphs()
        n_extra = int(g.extra.max()) + 1 if self.space_.name == "ofa" else 0
        return NASFLATNet(
            g.n_nodes,
            n_extra,
            op_dim=self.op_dim,
            hw_dim=self.hw_dim,
            hid_dim=self.hid_dim,
            op_fp_dims=tuple(self.op_fp_dims),
            forward_dims=tuple(self.forward_dims),
            op_update_mlp_dims=(self.op_fp_dims[-1],) * 3,
            mlp_dims=tuple(self.mlp_dims),
            mlp_dropout=self.mlp_dropout,
        ).to(self.torch_device_)

    def _transfer_settings(self) -> tuple[float, int]:
        lr, ep = TRANSFER_DEFAULTS.get(self.space_.name, TRANSFER_DEFAULTS["fbnet"])
        return (
            lr if self.transfer_lr is None else float(self.transfer_lr),
            ep if self.transfer_epochs is None else int(self.transfer_epochs),
        )

    def _min_batch(self) -> int:
        # the original skips batches of 1 on NB-spaces and of <= 2 on the others
        return 2 if self.space_.name == "nb201" else 3

    @torch.no_grad()
    def _scores(self, model: NASFLATNet, ids, hw: int, chunk: int = 1024) -> np.ndarray:
        model.eval()
        g = self._graphs()
        rows = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        out = []
        for r in rows.split(chunk):
            ops, ei, extra = g.batch(r)
            hw_t = torch.full((len(r),), hw, dtype=torch.long)
            out.append(model(*(t.to(self.torch_device_) for t in (ops, ei, hw_t, extra))))
        return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)

    def _train(
        self,
        model,
        rows: np.ndarray,
        hw: np.ndarray,
        y: np.ndarray,
        epochs: int,
        lr: float,
        batch_size: int,
        gen: torch.Generator,
        rng: np.random.Generator,
        keep_last: int = 0,
        desc: str = "batch",
    ) -> list:
        """NASFLAT's training loop on examples (arch row, hw index, scaled latency); returns the
        state dicts after each of the last ``keep_last`` epochs. Reports each batch as progress ``desc``."""
        g = self._graphs()
        dev = self.torch_device_
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        hw_t = torch.as_tensor(hw, dtype=torch.long)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=self.weight_decay, foreach=True)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(epochs), 1), eta_min=self.eta_min)
        snaps = []
        per_epoch = -(-len(rows_t) // max(1, int(batch_size)))
        for epoch in range(int(epochs)):
            model.train()
            for b, chunk in enumerate(torch.randperm(len(rows_t), generator=gen).split(max(1, int(batch_size)))):
                self.progress(epoch * per_epoch + b, int(epochs) * per_epoch, desc)  # batches finished before this one
                if len(chunk) < self._min_batch():
                    continue
                ops, ei, extra = g.batch(rows_t[chunk])
                s = model(*(t.to(dev) for t in (ops, ei, hw_t[chunk], extra)))
                loss = pairwise_hinge_loss(s, y[chunk.numpy()], self.margin, self.max_compare_ratio, rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.progress((epoch + 1) * per_epoch, int(epochs) * per_epoch, desc)
            sched.step()
            if keep_last and epoch >= epochs - keep_last:
                snaps.append(copy.deepcopy(model.state_dict()))
        model.eval()
        return snaps

    # ---- protocol -----------------------------------------------------------------------
    def fit(self, source, space, seed):
        with torch_threads(self.num_threads):
            return self._fit(source, space, seed)

    def adapt(self, device, oracle):
        with torch_threads(self.num_threads):
            return self._adapt(device, oracle)

    def predict(self, device, arch_ids):
        with torch_threads(self.num_threads):
            return self._predict(device, arch_ids)

    def _fit(self, source, space, seed):
        Method.fit(self, source, space, seed)
        self.torch_device_ = torch_device(self.device)
        if self.sampler not in ("kmeancosine", "random"):
            raise ValueError(f"NASFLAT: sampler must be 'kmeancosine' or 'random', got {self.sampler!r}")
        self.graphs_ = None
        self.n_source_ = len(source.devices)
        if self.n_source_ >= _TABLE_ROWS:
            raise ValueError(f"NASFLAT: at most {_TABLE_ROWS - 1} source devices")
        self.targets_: dict[str, dict] = {}
        ids = np.asarray(source.arch_ids, dtype=np.int64)
        lat = np.asarray(source.latency, dtype=np.float64)
        ok = np.isfinite(lat).all(0)
        ids, lat = ids[ok], lat[:, ok]
        y = np.concatenate([_minmax(row) for row in lat])  # per device, device-major
        rows = np.tile(ids, len(lat))
        hw = np.repeat(np.arange(len(lat)), len(ids))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stable_seed(seed, "fit"))
            model = self._new_model()
            gen = torch.Generator().manual_seed(stable_seed(seed, "fit-shuffle"))
            rng = np.random.default_rng(stable_seed(seed, "fit-pairs"))
            if len(rows) and self.epochs:
                self._train(model, rows, hw, y, self.epochs, self.lr, self.batch_size, gen, rng, desc="source training: batch")
        model.eval()
        self.base_state_ = copy.deepcopy(model.state_dict())
        # source latencies known without a model: source sample and the hw-embedding reference archs
        self.known_ = {int(i): lat[:, c] for c, i in enumerate(ids)}
        if source.reference_latency is not None and len(source.reference_ids):
            for c, i in enumerate(np.asarray(source.reference_ids)):
                self.known_.setdefault(int(i), np.asarray(source.reference_latency, dtype=np.float64)[:, c])
        return self

    def choose(self, oracle, seed: int) -> np.ndarray:
        """The archs to measure: ``sampler`` over ``oracle.pool`` (exactly k distinct, k = the
        number of archs of the oracle's default choice, capped by its remaining budget)."""
        k = min(len(oracle.default_choice()), oracle.remaining)
        if self.sampler == "random":
            return oracle.default_choice()[:k]
        pool = np.asarray(oracle.pool, dtype=np.int64)
        return kmeancosine_choice(sampler_encoding(self.space_, pool), pool, k, seed)

    def _adapt(self, device, oracle):
        dseed = stable_seed(self.seed_, "adapt", device)
        ids = self.choose(oracle, dseed)
        self.remember_shots(device, ids, oracle.measure(ids) if len(ids) else np.zeros(0))
        ids, y = self.shots_[device]
        ok = np.isfinite(y)
        ids, y = ids[ok], y[ok]
        slot = min(self.n_source_ + len(self.targets_), _TABLE_ROWS - 1)
        lr, epochs = self._transfer_settings()
        info: dict = {"slot": slot}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(dseed)
            model = self._new_model()
            model.load_state_dict(self.base_state_)
            with torch.no_grad():
                if len(y) == 0:
                    model.hw_emb.weight[slot] = model.hw_emb.weight[: self.n_source_].mean(0)
                elif self._flag(self.transfer_hwemb):
                    if all(int(i) in self.known_ for i in ids):
                        ref, how = np.stack([self.known_[int(i)] for i in ids], 1), "true source latency"
                    else:
                        ref = np.stack([self._scores(model, ids, d) for d in range(self.n_source_)])
                        how = "model scores"
                    best, rho = best_source(ref, y)
                    model.hw_emb.weight[slot] = model.hw_emb.weight[best]
                    info.update(source=self.source_.devices[best], source_index=best, rho=rho, by=how)
            info["init_row"] = model.hw_emb.weight[slot].detach().clone()
            snaps = []
            if len(y) >= 2 and epochs > 0:
                gen = torch.Generator().manual_seed(stable_seed(dseed, "shuffle"))
                rng = np.random.default_rng(stable_seed(dseed, "pairs"))
                snaps = self._train(
                    model,
                    ids,
                    np.full(len(ids), slot),
                    _minmax(y),
                    epochs,
                    lr,
                    self.transfer_batch_size,
                    gen,
                    rng,
                    keep_last=max(0, int(self.snapshot_average)),
                    desc=f"fine-tuning on {device}: batch",
                )
            models = [model.eval()]
            if snaps:
                models = []
                for st in snaps:
                    m = self._new_model()
                    m.load_state_dict(st)
                    models.append(m.eval())
        info["models"] = models
        if len(y):
            info["scale"] = score_to_ms(self._target_scores(models, slot, ids), y)
        else:  # k = 0: map onto the mean source latency over the source sample
            src = np.asarray(self.source_.arch_ids)
            info["scale"] = score_to_ms(self._target_scores(models, slot, src), np.mean(self.source_.latency, 0))
        self.targets_[device] = info
        return self

    @staticmethod
    def _flag(v) -> bool:
        return v.strip().lower() not in ("false", "0", "no", "off") if isinstance(v, str) else bool(v)

    def _target_scores(self, models, slot: int, ids) -> np.ndarray:
        return np.mean([self._scores(m, ids, slot) for m in models], axis=0)

    def _predict(self, device, arch_ids):
        info = self.targets_[device]
        a, b = info["scale"]
        pred = a * self._target_scores(info["models"], info["slot"], arch_ids) + b
        shots = self.shots_[device][1]
        pred = np.nan_to_num(pred, nan=float(np.mean(shots)) if len(shots) else 1.0)
        return positive_floor(pred, shots if len(shots) else np.mean(self.source_.latency, 0))
