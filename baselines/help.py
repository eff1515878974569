"""HELP: hardware-adaptive latency prediction by meta-learning (Lee et al., NeurIPS 2021).

Re-implemented from HELP's public code (``HayeonLee/HELP``): a Meta-SGD latency predictor
conditioned on a hardware embedding (a device's latencies on 10 reference archs) and modulated by
HELP's z-sampling inference network; the source devices are the meta-training tasks and a target
device is a new task. Main deviations: the reference archs count against the k shots (the support
set is every measured arch), and two bugs of the original are fixed (the KL term of the
meta-loss; Spearman from the last MC sample only). See the documentation page baselines/help
(``docs/baselines/help.md``).
"""

from __future__ import annotations

import copy
import warnings
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn
from torch.func import functional_call

from latbench.methods.base import Method
from latbench.methods.fitting import positive_floor, scale_fit, torch_device, torch_threads

_HEAD = ("fc3", "fc4", "fc5")


# ---- architecture encodings ----------------------------------------------------------------
def fbnet_encoding(arch: str) -> np.ndarray:
    """HELP's 132-d FBNet vector: per layer [k3, k5, e1, e1_g2, e3, e6]; ``skip`` -> zeros."""
    out = np.zeros((22, 6), np.float32)
    cols = {"e1": 2, "e1_g2": 3, "e3": 4, "e6": 5}
    ops = arch.split("-")
    assert len(ops) == 22, arch
    for i, op in enumerate(ops):
        if op == "skip":
            continue
        k, _, rest = op.partition("_")
        out[i, 0 if k == "k3" else 1] = 1.0
        out[i, cols[rest]] = 1.0
    return out.ravel()


def ofa_encoding(onehot: np.ndarray) -> np.ndarray:
    """HELP's 145-d OFA vector from ``space.onehot`` (per slot [ks x3, e x3] x 20, then r x25):
    all kernel-size one-hots first, then all expansion one-hots, then the resolution."""
    onehot = np.asarray(onehot, np.float32)
    slots = onehot[:, :120].reshape(len(onehot), 20, 6)
    return np.concatenate(
        [slots[:, :, :3].reshape(len(onehot), 60), slots[:, :, 3:].reshape(len(onehot), 60), onehot[:, 120:]], axis=1
    )


class _Encoder:
    """Turns arch ids into the predictor's input: batched PyG graphs (NB201) or vectors.

    Called with a 2-d array of ids ``[T, n]`` (T task/sample slots of n archs each), it returns the
    keyword arguments of :meth:`_Predictor.forward`.
    """

    def __init__(self, space, device):
        self.device = device
        self.graph = space.name == "nb201"
        if self.graph:
            adj, feat = space.graph(space.arch_ids())
            n, N, f = feat.shape
            # HELP add_global_node: one extra feature column, a global node with only that feature
            x = np.zeros((n, N + 1, f + 1), np.float32)
            x[:, :N, :f] = feat
            x[:, N, f] = 1.0
            # agg[i, j] = 1 when node i aggregates node j: HELP's transposed adjacency
            # (predecessors), self-loops, and the global node aggregating every node
            agg = np.zeros((n, N + 1, N + 1), bool)
            agg[:, :N, :N] = np.transpose(adj, (0, 2, 1)) > 0
            agg[:, N, :] = True
            agg[:, np.arange(N + 1), np.arange(N + 1)] = True
            self.x = torch.from_numpy(x)
            self.agg = torch.from_numpy(agg)
            self.nfeat = f + 1
            self.nodes = N + 1
        else:
            ids = space.arch_ids()
            if space.name == "fbnet":
                vec = np.stack([fbnet_encoding(space.arch_str(i)) for i in ids])
            elif space.name == "ofa":
                vec = ofa_encoding(space.onehot(ids))
            else:  # any other space: its fixed-length one-hot
                vec = space.onehot(ids)
            self.vec = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float32)).to(device)
            self.nfeat = vec.shape[1]

    def __call__(self, ids) -> dict:
        ids = torch.as_tensor(np.array(ids, dtype=np.int64))
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        T, n = ids.shape
        if not self.graph:
            return {"x": self.vec[ids.to(self.device)]}
        N = self.nodes
        flat = ids.reshape(-1)
        x = self.x[flat].reshape(T, n * N, -1)
        M = T * n * N
        # the disjoint union of all T * n graphs (as torch_geometric's Batch builds it), given to
        # PyG as a sparse adj_t (row = target, col = source: agg[i, j] means i aggregates j), on
        # which GCNConv's propagate runs its fused sparse aggregation; nonzero() is row-major, so
        # the entries already come in CSR order
        b, i, j = self.agg[flat].nonzero(as_tuple=True)
        crow = torch.zeros(M + 1, dtype=torch.int64)
        crow[1:] = torch.cumsum(torch.bincount(b * N + i, minlength=M), 0)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            adj_t = torch.sparse_csr_tensor(crow, b * N + j, torch.ones(len(b)), (M, M), check_invariants=False)
            # the global node's in-edges (every node of its graph), as a graph x node adjacency
            readout_t = torch.sparse_csr_tensor(
                torch.arange(0, M + 1, N), torch.arange(M), torch.ones(M), (M // N, M), check_invariants=False
            )
        return {"x": x.to(self.device), "adj_t": adj_t.to(self.device), "readout_t": readout_t.to(self.device)}


# ---- networks --------------------------------------------------------------------------------
def _linear(x, w, b):
    """Per-slot linear layer: x [T, n, in], w [T, out, in], b [T, out] -> [T, n, out]."""
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


class _Predictor(nn.Module):
    """HELP's MetaLearner: GCN (NB201) or MLP arch branch, HW-embedding branch, 3-layer head.

    Parameters are registered with their usual shapes; ``forward`` is always called through
    ``functional_call`` with every parameter stacked along a leading slot dimension T (the inner
    tasks of an episode, or the MC samples at adaptation), so T independent predictors run as
    one batched computation.
    """

    def __init__(self, graph: bool, nfeat: int, layer_size: int, hw_dim: int, nodes: int = 0):
        super().__init__()
        self.graph = graph
        self.nodes = nodes
        if graph:
            from torch_geometric.nn import GCNConv

            dims = [nfeat] + [layer_size] * 4
            self.gcs = nn.ModuleList(
                GCNConv(a, b, normalize=False, add_self_loops=False, bias=True) for a, b in zip(dims[:-1], dims[1:])
            )
            for conv in self.gcs:  # HELP GraphConvolution init
                nn.init.uniform_(conv.bias, -1 / layer_size**0.5, 1 / layer_size**0.5)
                nn.init.uniform_(conv.lin.weight, -0.05, 0.05)
        else:
            self.fc1 = nn.Linear(nfeat, layer_size)
            self.fc2 = nn.Linear(layer_size, layer_size)
        self.fc_hw1 = nn.Linear(hw_dim, layer_size)
        self.fc_hw2 = nn.Linear(layer_size, layer_size)
        self.fc3 = nn.Linear(2 * layer_size, 2 * layer_size)
        self.fc4 = nn.Linear(2 * layer_size, 2 * layer_size)
        self.fc5 = nn.Linear(2 * layer_size, 1)

    def forward(self, hw, x, adj_t=None, readout_t=None):
        """hw [T, hw_dim]; x [T, n * nodes, F] (graph) or [T, n, F]; returns [T, n]."""
        T = len(x)
        if self.graph:
            h = x
            for conv in self.gcs[:-1]:
                # GCNConv(normalize=False) = lin (no bias) -> sum aggregation -> + bias; the lin
                # is applied per slot (stacked weights), the message passing is PyG's propagate
                # over the disjoint union of all T * n graphs
                h = torch.bmm(h, conv.lin.weight.transpose(1, 2))
                h = conv.propagate(adj_t, x=h.reshape(-1, h.shape[-1]), edge_weight=None)
                h = F.relu(h.reshape(T, -1, h.shape[-1]) + conv.bias.unsqueeze(1))
            # last layer: only the global (last) node is read out, and A (H W) = (A H) W, so
            # aggregate its in-neighbours (all nodes of the graph) first, then transform
            conv, n_graphs = self.gcs[-1], h.shape[1] // self.nodes
            h = conv.propagate(readout_t, x=h.reshape(-1, h.shape[-1]), edge_weight=None)
            h = F.relu(_linear(h.reshape(T, n_graphs, -1), conv.lin.weight, conv.bias))
        else:
            h = F.relu(_linear(x, self.fc1.weight, self.fc1.bias))
            h = F.relu(_linear(h, self.fc2.weight, self.fc2.bias))
        g = F.relu(_linear(hw.unsqueeze(1), self.fc_hw1.weight, self.fc_hw1.bias))
        g = F.relu(_linear(g, self.fc_hw2.weight, self.fc_hw2.bias))
        h = torch.cat([h, g.expand(-1, h.shape[1], -1)], dim=-1)
        h = F.relu(_linear(h, self.fc3.weight, self.fc3.bias))
        h = F.relu(_linear(h, self.fc4.weight, self.fc4.bias))
        return _linear(h, self.fc5.weight, self.fc5.bias).squeeze(-1)


class _InferenceNetwork(nn.Module):
    """HELP's z-modulator: hardware embedding -> Gaussian over 3 x (2L + 1) head modulations."""

    def __init__(self, hw_dim: int, layer_size: int):
        super().__init__()
        self.nz = 3 * (2 * layer_size + 1)
        self.z_encoder = nn.Sequential(nn.Linear(hw_dim, 10), nn.ReLU(), nn.Linear(10, 2 * self.nz))

    def forward(self, hw, generator):
        """hw [T, hw_dim] -> z [T, nz] (reparameterised sample), KL(q || N(0, I)) [T]."""
        stats = self.z_encoder(hw)
        mu, sigma = stats[:, : self.nz], F.softplus(stats[:, self.nz :])
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        kl = (-torch.log(sigma) + 0.5 * (sigma**2 + mu**2) - 0.5).sum(-1)
        return mu + sigma * eps, kl


# ---- helpers -----------------------------------------------------------------------------------
def _trim(lat: np.ndarray) -> np.ndarray:
    """Positions of the 10th-90th percentile archs (HELP remove_outlier: argsort slice)."""
    n = len(lat)
    return np.argsort(lat, kind="stable")[int(n * 0.1) : int(n * 0.9)]


def _minmax(v: np.ndarray, lo: float = 0.0, hi: float = 1.0, ref: np.ndarray | None = None) -> np.ndarray:
    ref = v if ref is None else ref
    mn, mx = float(np.min(ref)), float(np.max(ref))
    return (v - mn) / max(mx - mn, 1e-12) * (hi - lo) + lo


def _fallback_reference_latency(space, arch_ids, latency, ref_ids) -> np.ndarray:
    """Stand-in when SourceData has no reference latencies: per reference arch, the latency of
    the source-sample arch closest to it in log-FLOPs (the reference itself if it was sampled)."""
    f_src = np.log(np.maximum(space.flops(arch_ids), 1e-9))
    f_ref = np.log(np.maximum(space.flops(ref_ids), 1e-9))
    pos = {int(a): j for j, a in enumerate(arch_ids)}
    cols = [pos.get(int(r), int(np.argmin(np.abs(f_src - fr)))) for r, fr in zip(ref_ids, f_ref)]
    return np.asarray(latency)[:, cols]


class HELP(Method):
    """HELP: Meta-SGD predictor with a 10-arch hardware embedding and HELP's z-modulator.

    Every default is HELP's value (paper and scripts) unless stated otherwise.

    Parameters
    ----------
    num_episodes : int or None, default None
        Meta-training episodes. None: HELP's scripts, 4000 on FBNet, else 2000.
    inner_steps : int, default 2
        Meta-SGD inner steps, in meta-training and at adaptation.
    mc_samples : int, default 10
        z samples averaged at adaptation and in the validation checks.
    meta_lr : float, default 1e-4
        Adam learning rate of the outer loop (predictor, inner learning rates, inference network).
    layer_size : int, default 100
        Width of the arch and hardware branches; the head is twice as wide.
    hw_embed_dim : int, default 10
        Length of the hardware embedding; must equal the number of reference archs (10 in every
        space).
    num_inner_tasks : int, default 8
        Source devices per episode, capped by the number of source devices.
    num_support : int, default 10
        Support archs per device and episode (and per validation device).
    num_query : int, default 200
        Query archs per device and episode.
    kl_scaling : float, default 0.1
        Weight of the z-modulator's KL divergence in the meta-loss.
    z_scaling : float, default 0.01
        Scale of the modulation: head weights times (1 + z_scaling * z), biases plus z_scaling * z.
    eval_every : int, default 50
        Episodes between model-selection checks on the task's validation devices.
    num_threads : int or None, default 1
        Torch CPU threads while fitting, adapting and predicting; None leaves torch's setting.
        latbench's choice: more threads were slower on a small shared CPU.
    device : str, default "cpu"
        Torch device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available). Results on a GPU
        agree with the CPU's to float tolerance, not bit for bit.

    Attributes
    ----------
    torch_device_ : torch.device
        The device the networks live on (``device`` resolved).
    net_ : torch.nn.Module
        The meta-trained predictor (HELP's ``MetaLearner``), at the best validation check.
    infnet_ : torch.nn.Module
        The z-modulator (HELP's ``InferenceNetwork``).
    task_lr_ : dict of str to torch.nn.Parameter
        Meta-SGD inner learning rate of every predictor parameter.
    meta_losses_ : list of float
        Meta-loss per episode.
    meta_mse_ : list of float
        Mean query MSE per episode.
    valid_history_ : list of tuple
        ``(episode, mean Spearman)`` of every validation check.
    best_episode_ : int
        Episode of the kept checkpoint (the last one without validation devices).
    adapted_ : dict of str to tuple
        Per target device, its hardware embedding, adapted parameters and ms scale.
    """

    name = "help"
    summary = "HELP (NeurIPS'21): Meta-SGD latency predictor with a 10-arch hardware embedding and z-modulator"
    check_params = {"num_episodes": 20, "mc_samples": 2}

    def __init__(
        self,
        num_episodes=None,
        inner_steps=2,
        mc_samples=10,
        meta_lr=1e-4,
        layer_size=100,
        hw_embed_dim=10,
        num_inner_tasks=8,
        num_support=10,
        num_query=200,
        kl_scaling=0.1,
        z_scaling=0.01,
        eval_every=50,
        num_threads=1,
        device="cpu",
    ):
        self.num_episodes = num_episodes
        self.inner_steps = inner_steps
        self.mc_samples = mc_samples
        self.meta_lr = meta_lr
        self.layer_size = layer_size
        self.hw_embed_dim = hw_embed_dim
        self.num_inner_tasks = num_inner_tasks
        self.num_support = num_support
        self.num_query = num_query
        self.kl_scaling = kl_scaling
        self.z_scaling = z_scaling
        self.eval_every = eval_every
        self.num_threads = num_threads
        self.device = device

    # ---- model pieces (every tensor carries a leading slot dimension T) -------------------------
    def _modulate(self, z: torch.Tensor) -> dict:
        """HELP get_params_z on T slots: fc3/fc4/fc5 weights * (1 + zs z_w) per input feature,
        biases + zs z_b; every other parameter shared (expanded) across the slots."""
        T, zs, w = len(z), self.z_scaling, 2 * self.layer_size
        out = {k: v.unsqueeze(0).expand(T, *v.shape) for k, v in self.net_.named_parameters()}
        for i, name in enumerate(_HEAD):
            out[f"{name}.weight"] = out[f"{name}.weight"] * (1 + zs * z[:, None, i * w : (i + 1) * w])
            out[f"{name}.bias"] = out[f"{name}.bias"] + zs * z[:, 3 * w + i : 3 * w + i + 1]
        return out

    def _forward(self, params, hw, inp):
        return functional_call(self.net_, params, (hw,), inp)

    def _inner(self, params, hw, inp, y, steps, create_graph):
        """Meta-SGD steps on the support sets of all slots at once (the summed per-slot MSE has
        per-slot gradients). Without create_graph the result is detached."""
        lrs = self.task_lr_
        if not create_graph:
            params = {k: v.detach().requires_grad_() for k, v in params.items()}
            lrs = {k: v.detach() for k, v in lrs.items()}
        for _ in range(steps):
            with torch.enable_grad():
                loss = ((self._forward(params, hw, inp) - y) ** 2).mean(1).sum()
                grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
            params = {k: v - lrs[k] * g for (k, v), g in zip(params.items(), grads)}
            if not create_graph:
                params = {k: v.detach().requires_grad_() for k, v in params.items()}
        return {k: v.detach() for k, v in params.items()} if not create_graph else params

    def _adapted_samples(self, hw, ids, y, steps, generator) -> dict:
        """Adapted parameters of ``mc_samples`` z-samples (stacked, detached) for one device."""
        S = max(1, self.mc_samples)
        hw = hw.unsqueeze(0).expand(S, -1)
        with torch.no_grad():
            z, _ = self.infnet_(hw, generator)
            params = self._modulate(z)
        if not steps:
            return params
        inp = self.encoder_(np.broadcast_to(ids, (S, len(ids))))
        return self._inner(params, hw, inp, y.unsqueeze(0).expand(S, -1), steps, create_graph=False)

    def _predict_norm(self, params: dict, hw, ids, chunk: int = 1024) -> np.ndarray:
        """MC-mean normalised prediction (latbench uses the mean, not HELP's last sample)."""
        S = len(hw := hw.unsqueeze(0).expand(len(params["fc5.bias"]), -1))
        preds = []
        with torch.no_grad():
            for start in range(0, len(ids), chunk):
                part = ids[start : start + chunk]
                preds.append(self._forward(params, hw, self.encoder_(np.broadcast_to(part, (S, len(part))))).mean(0))
        return torch.cat(preds).double().cpu().numpy() if preds else np.zeros(0)

    # ---- fit -----------------------------------------------------------------------------------
    def fit(self, source, space, seed):
        with torch_threads(self.num_threads):
            return self._fit(source, space, seed)

    def _fit(self, source, space, seed):
        super().fit(source, space, seed)
        dev = self.torch_device_ = torch_device(self.device)
        self.encoder_ = _Encoder(space, dev)
        episodes = self.num_episodes if self.num_episodes is not None else (4000 if space.name == "fbnet" else 2000)
        ref_ids = np.asarray(getattr(source, "reference_ids", ()), np.int64)
        if ref_ids.size == 0:
            ref_ids = np.asarray(space.reference_ids, np.int64)
        self.reference_ids_ = ref_ids
        src_ids = np.asarray(source.arch_ids, np.int64)
        lat = np.asarray(source.latency, np.float64)
        ref_lat = getattr(source, "reference_latency", None)
        self.used_reference_fallback_ = ref_lat is None or np.size(ref_lat) == 0
        if self.used_reference_fallback_:
            ref_lat = _fallback_reference_latency(space, src_ids, lat, ref_ids)
        self.source_reference_latency_ = np.asarray(ref_lat, np.float64)

        # per source device: trimmed pool, normalised targets, hardware embedding, pool scale
        self.pools_ = np.stack([_trim(row) for row in lat])
        norm = np.stack([_minmax(row, 0.05, 0.95, ref=row[p]) for row, p in zip(lat, self.pools_)])
        self.pool_range_ = np.array([[row[p].min(), row[p].max()] for row, p in zip(lat, self.pools_)])
        self.hw_source_ = np.stack([_minmax(r) for r in self.source_reference_latency_])
        # references ordered by mean normalised latency: the subset measured when k < 10
        self.reference_order_ = np.argsort(self.hw_source_.mean(0), kind="stable")

        gen = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.net_ = _Predictor(
                self.encoder_.graph, self.encoder_.nfeat, self.layer_size, self.hw_embed_dim, getattr(self.encoder_, "nodes", 0)
            ).to(dev)
            self.infnet_ = _InferenceNetwork(self.hw_embed_dim, self.layer_size).to(dev)
        self.task_lr_ = {k: nn.Parameter(1e-3 * torch.ones_like(v)) for k, v in self.net_.named_parameters()}
        self.initial_state_ = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
        opt = torch.optim.Adam([*self.net_.parameters(), *self.task_lr_.values(), *self.infnet_.parameters()], lr=self.meta_lr)

        y_src = torch.tensor(norm, dtype=torch.float32, device=dev)
        hw_src = torch.tensor(self.hw_source_, dtype=torch.float32, device=dev)
        pools_t = torch.from_numpy(self.pools_)
        valid = self._valid_tasks(source, space, src_ids, ref_ids, gen)
        n_dev = len(source.devices)
        n_tasks = min(self.num_inner_tasks, n_dev)
        ns, nq = self.num_support, self.num_query
        self.meta_losses_, self.meta_mse_, self.valid_history_ = [], [], []
        best, best_rho = None, -np.inf
        for ep in range(episodes):
            devs = torch.randperm(n_dev, generator=gen)[:n_tasks]
            # per device a shuffled pool: support = first ns, query = next nq (HELP generate_episode)
            perm = torch.stack([pools_t[d][torch.randperm(pools_t.shape[1], generator=gen)] for d in devs.tolist()])
            s_pos, q_pos = perm[:, :ns], perm[:, ns : ns + nq]
            hw = hw_src[devs]
            z, kl = self.infnet_(hw, gen)
            params = self._inner(
                self._modulate(z),
                hw,
                self.encoder_(src_ids[s_pos.numpy()]),
                torch.gather(y_src[devs], 1, s_pos.to(dev)),
                self.inner_steps,
                create_graph=True,
            )
            pred_q = self._forward(params, hw, self.encoder_(src_ids[q_pos.numpy()]))
            mse = ((pred_q - torch.gather(y_src[devs], 1, q_pos.to(dev))) ** 2).mean(1)
            # sum over tasks of (query MSE / #tasks + kl_scaling * that task's own KL)
            loss = (mse / n_tasks + self.kl_scaling * kl).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.meta_losses_.append(float(loss.detach()))
            self.meta_mse_.append(float(mse.detach().mean()))
            if valid and (ep + 1) % self.eval_every == 0:
                rho = self._valid_score(valid, gen)
                self.valid_history_.append((ep, rho))
                if rho > best_rho:
                    best_rho = rho
                    best = (
                        ep,
                        copy.deepcopy(self.net_.state_dict()),
                        copy.deepcopy(self.infnet_.state_dict()),
                        {k: v.detach().clone() for k, v in self.task_lr_.items()},
                    )
            self.progress(ep + 1, episodes, "meta-training episode")
        self.best_episode_ = episodes - 1
        if best is not None:
            self.best_episode_ = best[0]
            self.net_.load_state_dict(best[1])
            self.infnet_.load_state_dict(best[2])
            with torch.no_grad():
                for k, v in best[3].items():
                    self.task_lr_[k].copy_(v)
        self.adapted_ = {}
        return self

    def _valid_tasks(self, source, space, src_ids, ref_ids, gen) -> list:
        vlat = getattr(source, "valid_latency", None)
        if not source.valid_devices or vlat is None:
            return []
        vlat = np.asarray(vlat, np.float64)
        vref = getattr(source, "valid_reference_latency", None)
        if vref is None or np.size(vref) == 0:
            vref = _fallback_reference_latency(space, src_ids, vlat, ref_ids)
        dev = self.torch_device_
        tasks = []
        for row, r in zip(vlat, np.asarray(vref, np.float64)):
            pool = _trim(row)
            y = _minmax(row, 0.05, 0.95, ref=row[pool])
            perm = pool[torch.randperm(len(pool), generator=gen).numpy()]
            s, q = perm[: self.num_support], perm[self.num_support :]
            tasks.append(
                (
                    torch.tensor(_minmax(r), dtype=torch.float32, device=dev),
                    src_ids[s],
                    torch.tensor(y[s], dtype=torch.float32, device=dev),
                    src_ids[q],
                    row[q],
                )
            )
        return tasks

    def _valid_score(self, tasks, gen) -> float:
        rhos = []
        for hw, s_ids, y_s, q_ids, q_lat in tasks:
            params = self._adapted_samples(hw, s_ids, y_s, self.inner_steps, gen)
            pred = self._predict_norm(params, hw, q_ids)
            rho = spearmanr(pred, q_lat).statistic if np.ptp(pred) > 0 else 0.0
            rhos.append(rho if np.isfinite(rho) else 0.0)
        return float(np.mean(rhos))

    # ---- target device ---------------------------------------------------------------------------
    def _reference_subset(self, m: int) -> np.ndarray:
        """Positions (into the references) measured when only m fit in the budget: evenly spaced
        over the references sorted by mean normalised source latency (fastest and slowest first)."""
        order = self.reference_order_
        if m >= len(order):
            return np.arange(len(order))
        if m <= 0:
            return np.zeros(0, np.int64)
        picks = list(dict.fromkeys(np.round(np.linspace(0, len(order) - 1, m)).astype(int).tolist()))
        picks += [i for i in range(len(order)) if i not in picks][: m - len(picks)]
        return np.sort(order[picks])

    def _embedding(self, pos: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Target hardware embedding from the measured references ``pos`` (latencies ``lat``)."""
        n_ref = len(self.reference_ids_)
        if len(pos) == n_ref:
            full = np.empty(n_ref)
            full[pos] = lat
            return _minmax(full)
        if len(pos) < 2 or np.ptp(lat) <= 0:
            return self.hw_source_.mean(0)
        # kNN imputation: source embeddings rescaled by min/max over the measured references
        src_sub = np.stack([_minmax(r, ref=r[pos]) for r in self.source_reference_latency_])
        t = _minmax(lat)
        dist = np.linalg.norm(src_sub[:, pos] - t, axis=1)
        near = np.argsort(dist, kind="stable")[:3]
        w = 1.0 / (dist[near] + 1e-6)
        full = (w[:, None] * src_sub[near]).sum(0) / w.sum()
        full[pos] = t
        return _minmax(full)

    def _target_scale(self, pos: np.ndarray) -> tuple[float, float]:
        """Median over source devices of (a, b) in  pool-normalised = a * ref-minmax + b."""
        ab = []
        for r, (pmin, pmax) in zip(self.source_reference_latency_, self.pool_range_):
            rmin, rmax, span = r[pos].min(), r[pos].max(), max(pmax - pmin, 1e-12)
            ab.append((0.9 * (rmax - rmin) / span, 0.05 + 0.9 * (rmin - pmin) / span))
        a, b = np.median(np.array(ab), axis=0)
        return float(a), float(b)

    def adapt(self, device, oracle):
        with torch_threads(self.num_threads):
            return self._adapt(device, oracle)

    def _adapt(self, device, oracle):
        k = int(oracle.budget)
        pool = set(np.asarray(oracle.pool).tolist())
        ref_pos = np.array(
            [int(p) for p in self._reference_subset(min(k, len(self.reference_ids_))) if int(self.reference_ids_[p]) in pool],
            np.int64,
        )
        ref_lat = oracle.measure(self.reference_ids_[ref_pos]) if len(ref_pos) else np.zeros(0)
        seed = np.random.SeedSequence([int(self.seed_), zlib.crc32(device.encode())]).generate_state(2)
        extra = np.array([int(i) for i in oracle.default_choice() if int(i) not in oracle.measured], np.int64)
        extra = extra[np.random.default_rng(int(seed[0])).permutation(len(extra))][: max(0, k - len(oracle.measured))]
        if len(extra):
            oracle.measure(extra)
        ids = np.array(list(oracle.measured), np.int64)
        y_ms = np.array([oracle.measured[int(i)] for i in ids])
        self.remember_shots(device, ids, y_ms)

        dev = self.torch_device_
        hw = torch.tensor(self._embedding(ref_pos, ref_lat), dtype=torch.float32, device=dev)
        steps = self.inner_steps
        if len(ref_pos) >= 2 and np.ptp(ref_lat) > 0:
            a, b = self._target_scale(ref_pos)
            y_norm = a * (y_ms - ref_lat.min()) / np.ptp(ref_lat) + b
        else:  # no scale to put the shots on: zero-shot prediction
            y_norm, steps = np.zeros(len(ids)), 0
        gen = torch.Generator().manual_seed(int(seed[1]))
        params = self._adapted_samples(hw, ids, torch.tensor(y_norm, dtype=torch.float32, device=dev), steps, gen)
        if len(ids):
            coef = scale_fit(self._predict_norm(params, hw, ids), y_ms)
        else:  # k = 0: the median source device's pool scale
            pmin, pmax = np.median(self.pool_range_, axis=0)
            coef = ((pmax - pmin) / 0.9, pmin - 0.05 * (pmax - pmin) / 0.9)
        self.adapted_[device] = (hw, params, coef)
        return self

    def predict(self, device, arch_ids):
        hw, params, (a, b) = self.adapted_[device]
        with torch_threads(self.num_threads):
            pred = self._predict_norm(params, hw, np.asarray(arch_ids, np.int64))
        shots = self.shots_[device][1]
        return positive_floor(a * pred + b, shots if len(shots) else np.array([1.0]))
