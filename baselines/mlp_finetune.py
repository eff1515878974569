"""Syed & Srinivasan's latency MLP, fine-tuned on the target (``mlp-finetune``), and its
hardware-descriptor variant (``mlp-hwparams``).

Paper: M. Syed, A. A. Srinivasan, "Generalized Latency Performance Estimation for Once-For-All
Neural Architecture Search", arXiv 2101.00732 (2021); code ``OFANAS/OFANAS_PerformanceEstimation``.
A one-hot arch vector through a 3 x 400 ReLU MLP. Main deviation: a few-shot protocol instead of
hundreds of target archs, so the head is warm-started and rescaled rather than re-initialised, and
the source training uses Adam for 10 epochs. See the documentation page baselines/mlp
(``docs/baselines/mlp.md``).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from scipy.stats import spearmanr

from latbench.errors import MethodError
from latbench.methods.base import Method
from latbench.methods.fitting import torch_device, torch_threads
from latbench_baselines import hardware_descriptors as hwd

_EPS = 1e-6


@contextlib.contextmanager
def _warnings_off():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _init_layers(sizes: list[int], members: int, gen: torch.Generator, device=None) -> list[list[torch.Tensor]]:
    """``members`` independent MLPs as stacked weights ``[(W [E, in, out], b [E, 1, out]), ...]``,
    initialised like ``torch.nn.Linear`` (uniform in +-1/sqrt(fan_in)) on the CPU generator ``gen``
    (the same numbers whatever the device), then moved to ``device``."""
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = torch.empty(members, fan_in, fan_out).uniform_(-bound, bound, generator=gen)
        b = torch.empty(members, 1, fan_out).uniform_(-bound, bound, generator=gen)
        layers.append([w.to(device), b.to(device)])
    return layers


def _hidden(layers, x: torch.Tensor) -> torch.Tensor:
    """Activations after the last hidden ReLU: x [N, in] (shared) or [E, N, in] -> [E, N, H]."""
    h = x
    for w, b in layers[:-1]:
        h = torch.relu(torch.matmul(h, w) + b)
    return h


def _forward(layers, x: torch.Tensor) -> torch.Tensor:
    w, b = layers[-1]
    return (torch.matmul(_hidden(layers, x), w) + b).squeeze(-1)  # [E, N]


def _rmse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over ensemble members of each member's RMSE (members' gradients stay independent)."""
    return torch.sqrt(((pred - y) ** 2).mean(dim=-1) + _EPS).sum()


def _optimizer(params, name: str, lr: float, momentum: float, weight_decay: float):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise MethodError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def _train(params, loss_fn, n: int, *, epochs: int, batch_size: int, opt, gen: torch.Generator, step=None) -> None:
    """Mini-batch training; ``loss_fn(idx)`` gives the loss of the rows ``idx`` (a CPU index tensor,
    drawn from the CPU generator ``gen``); ``step(done, total)``, if given, follows the batches."""
    for p in params:
        p.requires_grad_(True)
    bs = max(1, int(batch_size))
    per_epoch = -(-n // bs)
    for epoch in range(int(epochs)):
        perm = torch.randperm(n, generator=gen)
        for b, i in enumerate(range(0, n, bs)):
            opt.zero_grad()
            loss_fn(perm[i : i + bs]).backward()
            opt.step()
            if step is not None:
                step(epoch * per_epoch + b + 1, int(epochs) * per_epoch)
    for p in params:
        p.requires_grad_(False)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


class _LatencyMLP(Method):
    """Shared machinery: the MLP, its training, and the output-layer fine-tuning on the shots."""

    check_params = {"hidden_units": 48, "epochs": 1, "finetune_epochs": 5}

    def __init__(
        self,
        hidden_units=400,
        hidden_layers=3,
        epochs=10,
        batch_size=32,
        lr=1e-3,
        optimizer="adam",
        momentum=0.9,
        weight_decay=0.0,
        log_target=True,
        finetune_epochs=100,
        finetune_lr=0.1,
        finetune_momentum=0.9,
        finetune_weight_decay=1e-3,
        rescale=True,
        num_threads=1,
        device="cpu",
    ):
        self.hidden_units = hidden_units
        self.hidden_layers = hidden_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.log_target = log_target
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.finetune_momentum = finetune_momentum
        self.finetune_weight_decay = finetune_weight_decay
        self.rescale = rescale
        self.num_threads = num_threads
        self.device = device

    # ---- helpers ----------------------------------------------------------------------------
    def _sizes(self, n_in: int) -> list[int]:
        if int(self.hidden_layers) < 1 or int(self.hidden_units) < 1:
            raise MethodError(f"{type(self).__name__}: hidden_layers and hidden_units must be >= 1")
        return [n_in] + [int(self.hidden_units)] * int(self.hidden_layers) + [1]

    def _to_t(self, latency_ms: np.ndarray) -> np.ndarray:
        y = np.asarray(latency_ms, dtype=np.float64)
        return np.log(np.maximum(y, 1e-9)) if self.log_target else y

    def _to_ms(self, t: np.ndarray, floor: float) -> np.ndarray:
        y = np.exp(t) if self.log_target else t
        return np.maximum(y, floor)

    def _generator(self, seed: int, salt: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), salt]).generate_state(1)[0]))

    def _fit_head(self, feats: torch.Tensor, z: np.ndarray, w: torch.Tensor, b: torch.Tensor, gen) -> tuple:
        """Rescale then fine-tune the output layer on the shots, hidden layers frozen.

        feats [k, H] are the frozen hidden activations of the shots, z [k] their targets in the
        model's normalised space, (w [H, 1], b [1, 1]) the starting output layer."""
        w, b = w.clone(), b.clone()
        k = len(z)
        if k == 0:
            return w, b
        zt = torch.as_tensor(z, dtype=torch.float32, device=feats.device)
        if self.rescale:
            f = (feats @ w + b).squeeze(-1).double().cpu().numpy()
            a, c = 1.0, float(np.mean(z - f))
            if k >= 2 and np.ptp(f) > 0:
                slope, icpt = np.polyfit(f, z, 1)
                if slope > 0:
                    a, c = float(slope), float(icpt)
            w, b = w * a, b * a + c
        if self.finetune_epochs > 0:
            # step relative to the curvature of the head's least-squares problem (mean squared
            # norm of [features, 1]), so the same finetune_lr is stable whatever the feature scale
            curvature = float((feats.double() ** 2).sum(dim=1).mean()) + 1.0
            params = [w, b]
            opt = torch.optim.SGD(
                params, lr=self.finetune_lr / curvature, momentum=self.finetune_momentum, weight_decay=self.finetune_weight_decay
            )
            _train(
                params,
                lambda idx: (((feats[idx] @ w + b).squeeze(-1) - zt[idx]) ** 2).mean(),
                k,
                epochs=self.finetune_epochs,
                batch_size=self.batch_size,
                opt=opt,
                gen=gen,
            )
        return w.detach(), b.detach()


class MLPFinetune(_LatencyMLP):
    """One latency MLP per source device; the shots pick the best one and fine-tune its output layer.

    Parameters
    ----------
    hidden_units : int, default 400
        Units per hidden layer. The authors' code.
    hidden_layers : int, default 3
        Number of hidden ReLU layers. The authors' code.
    epochs : int, default 10
        Epochs of the source training. latbench's choice (the paper: SGD for 50-100 epochs); on
        easy-2, mean Spearman 0.975 after 10 epochs, 0.981 after 40.
    batch_size : int, default 32
        Batch size of the source training and of the fine-tuning. The authors' code.
    lr : float, default 1e-3
        Learning rate of the source training.
    optimizer : {"adam", "sgd"}, default "adam"
        Optimiser of the source training. latbench's choice: Adam gets close within a few epochs;
        ``optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4, epochs=100`` is the paper's
        schedule.
    momentum : float, default 0.9
        Momentum of the source training (SGD only).
    weight_decay : float, default 0.0
        Weight decay of the source training.
    log_target : bool, default True
        Train on log-ms (standardised) instead of ms: latbench pools devices whose latencies differ by
        100x. False is the closest to the paper (standardised ms).
    finetune_epochs : int, default 100
        Epochs of the output-layer fine-tuning on the shots; 0 keeps only the rescaling. The authors'
        code.
    finetune_lr : float, default 0.1
        Fine-tuning learning rate (the authors' number), taken relative to the curvature of the
        head's least-squares problem: the step is ``finetune_lr / mean ||[h, 1]||^2``.
    finetune_momentum : float, default 0.9
        SGD momentum of the fine-tuning. The authors' code.
    finetune_weight_decay : float, default 1e-3
        SGD weight decay of the fine-tuning. The authors' code.
    rescale : bool, default True
        Before fine-tuning, fold a least-squares ``a * f + b`` (a > 0) on the shots into the output
        layer. latbench's choice.
    num_threads : int or None, default 1
        Torch CPU threads (the previous setting is restored afterwards); None leaves torch's setting.
        latbench's choice: 2 threads were 7x slower on a shared 2-core CPU.
    device : str, default "cpu"
        Torch device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available). Results on a GPU
        agree with the CPU's to float tolerance, not bit for bit.

    Attributes
    ----------
    torch_device_ : torch.device
        The device the weights live on (``device`` resolved).
    layers_ : list
        The source MLPs as stacked weights ``[(W [E, in, out], b [E, 1, out]), ...]``, one member
        per source device.
    mu_ : numpy.ndarray
        Per source device, the mean of its training targets.
    sd_ : numpy.ndarray
        Per source device, the standard deviation of its training targets.
    choice_ : dict of str to int
        Per target device, the chosen source device (-1 at k = 0: the mean of all source MLPs).
    heads_ : dict of str to tuple
        Per target device, its fine-tuned output layer ``(w, b)``.
    """

    name = "mlp-finetune"
    summary = "Syed & Srinivasan's one-hot MLP (3x400): one per source device, best by shot Spearman, output layer fine-tuned"

    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        dev = self.torch_device_ = torch_device(self.device)
        with torch_threads(self.num_threads):
            torch.manual_seed(int(seed) & 0x7FFFFFFF)
            gen = self._generator(seed)
            x = torch.as_tensor(space.onehot(source.arch_ids), dtype=torch.float32, device=dev)
            t = self._to_t(source.latency)  # [E, N]
            self.mu_ = t.mean(axis=1)
            self.sd_ = np.maximum(t.std(axis=1), 1e-6)
            z = torch.as_tensor((t - self.mu_[:, None]) / self.sd_[:, None], dtype=torch.float32, device=dev)
            self.layers_ = _init_layers(self._sizes(x.shape[1]), len(source.devices), gen, dev)
            params = [p for layer in self.layers_ for p in layer]
            opt = _optimizer(params, self.optimizer, self.lr, self.momentum, self.weight_decay)
            _train(
                params,
                lambda idx: _rmse(_forward(self.layers_, x[idx]), z[:, idx]),
                x.shape[0],
                epochs=self.epochs,
                batch_size=self.batch_size,
                opt=opt,
                gen=gen,
                step=lambda done, total: self.progress(done, total, "source training: batch"),
            )
        self.heads_, self.choice_ = {}, {}
        return self

    def _member(self, e: int) -> list:
        return [[w[e : e + 1], b[e : e + 1]] for w, b in self.layers_]

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        if len(ids) == 0:
            self.choice_[device] = -1
            self.heads_[device] = None
            return self
        with torch_threads(self.num_threads):
            x = torch.as_tensor(self.space_.onehot(ids), dtype=torch.float32, device=self.torch_device_)
            t = self._to_t(y)
            pred_t = _forward(self.layers_, x).double().cpu().numpy() * self.sd_[:, None] + self.mu_[:, None]  # [E, k]
            rho = np.array([_spearman(p, t) for p in pred_t])
            if np.isfinite(rho).any():
                best = int(np.nanargmax(rho))
            else:  # too few / constant shots: the source whose level is closest
                best = int(np.argmin(np.abs(pred_t.mean(axis=1) - t.mean())))
            member = self._member(best)
            feats = _hidden(member, x)[0]
            z = (t - self.mu_[best]) / self.sd_[best]
            w, b = member[-1][0][0], member[-1][1][0]
            self.choice_[device] = best
            self.heads_[device] = self._fit_head(feats, z, w, b, self._generator(self.seed_, 1 + len(self.heads_)))
        return self

    def predict(self, device, arch_ids):
        head = self.heads_[device]
        best = self.choice_[device]
        shots = self.shots_[device][1]
        if len(shots):
            floor = 1e-3 * float(np.min(shots))
        else:
            floor = 1e-3 * float(np.exp(self.mu_.min())) if self.log_target else 1e-6
        with torch_threads(self.num_threads):
            x = torch.as_tensor(self.space_.onehot(arch_ids), dtype=torch.float32, device=self.torch_device_)
            if best < 0:  # k = 0: average the source models (in log space when log_target)
                t = (_forward(self.layers_, x).double().cpu().numpy() * self.sd_[:, None] + self.mu_[:, None]).mean(axis=0)
            else:
                w, b = head
                z = (_hidden(self._member(best), x)[0] @ w + b).squeeze(-1).double().cpu().numpy()
                t = z * self.sd_[best] + self.mu_[best]
        return self._to_ms(t, floor)


class MLPHardwareParams(_LatencyMLP):
    """Syed & Srinivasan's MLP with the device's hardware descriptor appended, trained on all sources.

    Predicts zero-shot from the descriptor at k = 0; with shots, rescales and fine-tunes the output
    layer as ``mlp-finetune`` does. Descriptor table: ``latbench_baselines.hardware_descriptors``.

    Parameters
    ----------
    hidden_units : int, default 400
        Units per hidden layer. The authors' code.
    hidden_layers : int, default 3
        Number of hidden ReLU layers. The authors' code.
    epochs : int, default 6
        Passes over the pooled rows of all source devices. latbench's choice.
    batch_size : int, default 32
        Batch size of the source training and of the fine-tuning. The authors' code.
    lr : float, default 1e-3
        Learning rate of the source training.
    optimizer : {"adam", "sgd"}, default "adam"
        Optimiser of the source training. latbench's choice: Adam gets close within a few epochs;
        ``optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4, epochs=100`` is the paper's
        schedule.
    momentum : float, default 0.9
        Momentum of the source training (SGD only).
    weight_decay : float, default 0.0
        Weight decay of the source training.
    log_target : bool, default True
        Train on log-ms (standardised) instead of ms: latbench pools devices whose latencies differ by
        100x. False is the closest to the paper (standardised ms).
    finetune_epochs : int, default 100
        Epochs of the output-layer fine-tuning on the shots; 0 keeps only the rescaling. The authors'
        code.
    finetune_lr : float, default 0.1
        Fine-tuning learning rate (the authors' number), taken relative to the curvature of the
        head's least-squares problem: the step is ``finetune_lr / mean ||[h, 1]||^2``.
    finetune_momentum : float, default 0.9
        SGD momentum of the fine-tuning. The authors' code.
    finetune_weight_decay : float, default 1e-3
        SGD weight decay of the fine-tuning. The authors' code.
    rescale : bool, default True
        Before fine-tuning, fold a least-squares ``a * f + b`` (a > 0) on the shots into the output
        layer. latbench's choice.
    num_threads : int or None, default 1
        Torch CPU threads (the previous setting is restored afterwards); None leaves torch's setting.
        latbench's choice: 2 threads were 7x slower on a shared 2-core CPU.
    device : str, default "cpu"
        Torch device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available). Results on a GPU
        agree with the CPU's to float tolerance, not bit for bit.

    Attributes
    ----------
    torch_device_ : torch.device
        The device the weights live on (``device`` resolved).
    layers_ : list
        The MLP's weights ``[(W [1, in, out], b [1, 1, out]), ...]``.
    mu_ : float
        Mean of the pooled training targets.
    sd_ : float
        Standard deviation of the pooled training targets.
    desc_mean_ : numpy.ndarray
        Mean of each descriptor feature over the source devices.
    desc_scale_ : numpy.ndarray
        Standard deviation of each descriptor feature over the source devices (inf for a feature
        that is unknown or constant over the sources, which then contributes 0).
    heads_ : dict of str to tuple
        Per target device, its output layer ``(w, b)``.
    """

    name = "mlp-hwparams"
    summary = "Syed & Srinivasan's MLP with hardware descriptors appended, trained on all sources; zero-/few-shot"

    def __init__(
        self,
        hidden_units=400,
        hidden_layers=3,
        epochs=6,
        batch_size=32,
        lr=1e-3,
        optimizer="adam",
        momentum=0.9,
        weight_decay=0.0,
        log_target=True,
        finetune_epochs=100,
        finetune_lr=0.1,
        finetune_momentum=0.9,
        finetune_weight_decay=1e-3,
        rescale=True,
        num_threads=1,
        device="cpu",
    ):
        super().__init__(
            hidden_units=hidden_units,
            hidden_layers=hidden_layers,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            momentum=momentum,
            weight_decay=weight_decay,
            log_target=log_target,
            finetune_epochs=finetune_epochs,
            finetune_lr=finetune_lr,
            finetune_momentum=finetune_momentum,
            finetune_weight_decay=finetune_weight_decay,
            rescale=rescale,
            num_threads=num_threads,
            device=device,
        )

    def _descriptor(self, device: str) -> np.ndarray:
        raw = hwd.raw_features(device)  # MethodError for a device without a row
        z = (raw - self.desc_mean_) / self.desc_scale_
        return np.where(np.isfinite(z), z, 0.0)

    def _inputs(self, device: str, ids) -> torch.Tensor:
        oh = self.space_.onehot(ids)
        d = np.broadcast_to(self._descriptor(device), (len(oh), len(self.desc_mean_)))
        return torch.as_tensor(np.hstack([oh, d]), dtype=torch.float32, device=self.torch_device_)

    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        raw = hwd.feature_matrix(source.devices)  # [E, F], NaN = unknown
        with np.errstate(invalid="ignore"), _warnings_off():
            mean = np.nanmean(raw, axis=0)
            std = np.nanstd(raw, axis=0)
        self.desc_mean_ = np.where(np.isfinite(mean), mean, 0.0)
        # a feature constant (or unknown) over the sources cannot be learned: scale it to ~0 change
        self.desc_scale_ = np.where(np.isfinite(std) & (std > 1e-3), std, np.inf)
        self.desc_scale_ = np.where(np.isfinite(mean), self.desc_scale_, np.inf)
        dev = self.torch_device_ = torch_device(self.device)
        with torch_threads(self.num_threads):
            torch.manual_seed(int(seed) & 0x7FFFFFFF)
            gen = self._generator(seed)
            x = torch.cat([self._inputs(d, source.arch_ids) for d in source.devices])
            t = self._to_t(source.latency).reshape(-1)
            self.mu_, self.sd_ = float(t.mean()), float(max(t.std(), 1e-6))
            z = torch.as_tensor((t - self.mu_) / self.sd_, dtype=torch.float32, device=dev)[None, :]
            self.layers_ = _init_layers(self._sizes(x.shape[1]), 1, gen, dev)
            params = [p for layer in self.layers_ for p in layer]
            opt = _optimizer(params, self.optimizer, self.lr, self.momentum, self.weight_decay)
            _train(
                params,
                lambda idx: _rmse(_forward(self.layers_, x[idx]), z[:, idx]),
                x.shape[0],
                epochs=self.epochs,
                batch_size=self.batch_size,
                opt=opt,
                gen=gen,
                step=lambda done, total: self.progress(done, total, "source training: batch"),
            )
        self.heads_ = {}
        return self

    def adapt(self, device, oracle):
        self._descriptor(device)  # fail early for hardware without a descriptor row
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        w, b = self.layers_[-1][0][0], self.layers_[-1][1][0]
        if len(ids) == 0:  # zero-shot: the trained network, fed the target's descriptor
            self.heads_[device] = (w.clone(), b.clone())
            return self
        with torch_threads(self.num_threads):
            feats = _hidden(self.layers_, self._inputs(device, ids))[0]
            z = (self._to_t(y) - self.mu_) / self.sd_
            self.heads_[device] = self._fit_head(feats, z, w, b, self._generator(self.seed_, 1 + len(self.heads_)))
        return self

    def predict(self, device, arch_ids):
        w, b = self.heads_[device]
        shots = self.shots_[device][1]
        if len(shots):
            floor = 1e-3 * float(np.min(shots))
        else:
            floor = 1e-3 * math.exp(self.mu_ - 5 * self.sd_) if self.log_target else 1e-6
        with torch_threads(self.num_threads):
            z = (_hidden(self.layers_, self._inputs(device, arch_ids))[0] @ w + b).squeeze(-1).double().cpu().numpy()
        return self._to_ms(z * self.sd_ + self.mu_, floor)
