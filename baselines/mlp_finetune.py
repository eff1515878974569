"""OFA latency MLP of Syed & Srinivasan, fine-tuned on the target (``mlp-finetune``), and its
hardware-descriptor variant (``mlp-hwparams``).

Paper: M. Syed, A. A. Srinivasan, "Generalized Latency Performance Estimation for Once-For-All
Neural Architecture Search", arXiv 2101.00732 (2021). Facts below were read from the authors'
code, GitHub ``OFANAS/OFANAS_PerformanceEstimation`` (commit 3a5087a), files
``tutorial/latency_predictor/{latency_encoding,latency_predictor,latency_finetune,
latency_predictor_generalized,generalized_dataset_combine}.py``; the paper text itself could only be
read as far as its abstract (it names the two strategies: fine-tuning a base model trained on one
device, and "GPU generalization" with Number of Cores, RAM Size and Memory Bandwidth as inputs).

What the original code does (verified):

* Input: 128-d one-hot of an OFA MobileNetV3 subnet: kernel size (3 values) and expand ratio
  (3 values) for each of the 20 block slots, zeroed for slots beyond the stage depth, plus an
  8-bucket resolution one-hot ``(r - 112) // 16``. latbench uses ``space.onehot`` instead (OFA:
  the same ks/e one-hots per slot plus a 25-value resolution one-hot, 145-d; NB201 30-d; FBNet 198-d),
  so the method runs on all three spaces.
* Network: ``Linear(in, 400) - ReLU - Linear(400, 400) - ReLU - Linear(400, 400) - ReLU -
  Linear(400, 1)``, i.e. three hidden layers of 400 units (the issue's "3-layer FFN with 400 hidden
  units"); defaults ``hidden_layers=3, hidden_units=400``.
* Loss: RMSE, ``sqrt(MSE + 1e-6)``, on the raw latency in ms, single device.
* Optimiser: SGD with momentum, batch 32, chosen by a Ray Tune grid (lr {1e-4, 1e-3, 1e-2}, weight
  decay {1e-4, 1e-3, 1e-2}, momentum {0.4, 0.6, 0.8, 0.9}); the logged best for the RTX 2080 Ti was
  lr 0.01, weight decay 1e-4, momentum 0.9, 100 epochs; ``latency_predictor.py`` hard-codes
  lr 1e-3 / wd 1e-3 / momentum 0.9 / 50 epochs. Data: 10,000 archs per device, 70/15/15 split.
* Fine-tuning (``latency_finetune.py``): load the source model, set ``requires_grad = False`` on all
  parameters, drop the last two modules (the last ReLU and the output Linear) and append a *new*,
  randomly initialised ``Linear(400, 1)``; train it with SGD lr 0.1, weight decay 1e-3, momentum
  0.9, 100 epochs, batch 32, on 100-1,500 target archs (700 in the final script). So every hidden
  layer is frozen and only the output layer learns. Dropping the last ReLU is a bug (the new head
  reads the pre-activation of the third hidden layer); latbench does **not** reproduce it.
* Hardware variant (``latency_predictor_generalized.py``): the same network with 131 inputs, i.e. the
  128-d one-hot plus the raw (unnormalised) numbers cores, RAM GB and bandwidth GB/s; trained on the
  rows of two GPUs (RTX 2080 Ti, Tesla P40) pooled and shuffled, SGD lr 1e-4, wd 1e-4, momentum 0.8,
  100 epochs. The code shows no fine-tuning of this variant; how the paper evaluates it on an unseen
  GPU could not be read **(unverified)**.

How latbench adapts it to the few-shot protocol (our choices):

* ``mlp-finetune`` trains one MLP per source device on the task's source sample (all source MLPs
  at once as a batched ensemble with independent weights: the same maths as separate training with
  one shared shuffle order). On a target device the k shots pick the source MLP whose predictions on
  the shots have the highest Spearman rank correlation with the measured shots (ties: the first; with
  fewer than 3 usable shots, the source whose mean latency is closest). Its output layer is then
  rescaled to the target (least-squares ``a * f + b`` with a > 0, folded into the output layer: the
  per-device scale estimated from the shots) and fine-tuned on the shots with every hidden layer
  frozen, so the first two layers (and the third) keep their source weights. We warm-start the head
  instead of the original's fresh one because k is 5-20 here, not 700. With k = 0 it averages the
  source MLPs (in log space).
* Targets: ``log_target=True`` (default) trains on log-ms standardised per source device; RMSE is
  taken in that space. Log is needed because latbench pools devices whose latencies differ by
  100x; ``log_target=False`` trains on per-device standardised ms, the closest to the paper.
* Source training: Adam lr 1e-3, batch 32, 10 epochs by default rather than the paper's SGD for
  50-100 epochs: on a shared 2-core CPU the paper's schedule on up to 12 source devices would take
  minutes per trial, and Adam gets close within the budget (easy-2, one trial: mean Spearman 0.975
  after 10 epochs, 0.980 after 20, 0.981 after 40). ``optimizer="sgd", lr=0.01, momentum=0.9,
  weight_decay=1e-4, epochs=100`` reproduces the paper's schedule.
* Fine-tuning: the paper's SGD momentum 0.9, weight decay 1e-3, 100 epochs, batch 32 (so one full
  batch per epoch when k <= 32). Two changes, both needed for stability with 5-20 shots: the loss is
  the MSE (same minimiser as RMSE; RMSE's gradient grows as the residual shrinks and made SGD
  oscillate), and ``finetune_lr`` (default 0.1, the paper's number) is relative to the curvature of
  the head's least-squares problem, i.e. the step is ``finetune_lr / mean ||[h, 1]||^2``. With the
  paper's absolute lr 0.1 the head oscillated and rankings flipped sign. ``finetune_epochs=0`` keeps
  only the rescaling. Fine-tuning on so few shots helps little: help-nb201 ~+0.01 Spearman, easy-2
  +-0, and it hurts hard-6 (batch-1 targets from batch-32/64 sources), see the report numbers.
* ``mlp-hwparams`` appends the device's hardware descriptor (``baselines/hardware_descriptors.py``:
  family one-hot, log2 cores, clock, log2 memory, log2 bandwidth, log2 batch size; standardised over
  the source devices, unknown values and features constant over the sources set to 0) and trains
  one MLP on all source devices pooled (``epochs`` = passes over the pooled rows, default 6), with
  targets in log-ms standardised globally so that the absolute level is learned from the
  descriptor. At the target it predicts zero-shot from the descriptor when k = 0; with k > 0 it
  rescales and fine-tunes the output layer on the shots as above.

Determinism: weights and shuffles come from a ``torch.Generator`` seeded from the ``seed`` passed to
``fit`` (plus ``torch.manual_seed``); training runs on CPU in ``num_threads`` threads (default 1, the
previous setting is restored; on a shared 2-core box 2 threads were 7x slower).

Cost (measured with ``latbench eval --trials 2`` on a shared 2-core CPU, load average 5-12, default
parameters, k = 10; wall time per task x trial, fit + adapt + predict): ``mlp-finetune`` 21 s on
easy-2 (6 source devices) and hard-6 (5), 27 s on help-nb201 (9); ``mlp-hwparams`` 12 s on easy-2
and hard-6, 16 s on help-nb201, 11-13 s zero-shot. No GPU needed.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from scipy.stats import spearmanr

from latbench_baselines import hardware_descriptors as hwd
from latbench.errors import MethodError
from latbench.methods.fitting import torch_threads
from latbench.methods.base import Method

_EPS = 1e-6


@contextlib.contextmanager
def _warnings_off():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _init_layers(sizes: list[int], members: int, gen: torch.Generator) -> list[list[torch.Tensor]]:
    """``members`` independent MLPs as stacked weights ``[(W [E, in, out], b [E, 1, out]), ...]``,
    initialised like ``torch.nn.Linear`` (uniform in +-1/sqrt(fan_in))."""
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = torch.empty(members, fan_in, fan_out).uniform_(-bound, bound, generator=gen)
        b = torch.empty(members, 1, fan_out).uniform_(-bound, bound, generator=gen)
        layers.append([w, b])
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


def _train(params, loss_fn, n: int, *, epochs: int, batch_size: int, opt, gen: torch.Generator) -> None:
    """Mini-batch training; ``loss_fn(idx)`` gives the loss of the rows ``idx``."""
    for p in params:
        p.requires_grad_(True)
    bs = max(1, int(batch_size))
    for _ in range(int(epochs)):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            opt.zero_grad()
            loss_fn(perm[i:i + bs]).backward()
            opt.step()
    for p in params:
        p.requires_grad_(False)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


class _LatencyMLP(Method):
    """Shared machinery: the MLP, its training, and the output-layer fine-tuning on the shots."""

    check_params = {"hidden_units": 48, "epochs": 1, "finetune_epochs": 5}

    def __init__(self, hidden_units=400, hidden_layers=3, epochs=10, batch_size=32, lr=1e-3, optimizer="adam",
                 momentum=0.9, weight_decay=0.0, log_target=True, finetune_epochs=100, finetune_lr=0.1,
                 finetune_momentum=0.9, finetune_weight_decay=1e-3, rescale=True, num_threads=1):
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
        zt = torch.as_tensor(z, dtype=torch.float32)
        if self.rescale:
            f = (feats @ w + b).squeeze(-1).double().numpy()
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
            opt = torch.optim.SGD(params, lr=self.finetune_lr / curvature, momentum=self.finetune_momentum,
                                  weight_decay=self.finetune_weight_decay)
            _train(params, lambda idx: (((feats[idx] @ w + b).squeeze(-1) - zt[idx]) ** 2).mean(), k,
                   epochs=self.finetune_epochs, batch_size=self.batch_size, opt=opt, gen=gen)
        return w.detach(), b.detach()

    def _adapted(self, device: str):
        if not hasattr(self, "heads_") or device not in self.heads_:
            raise MethodError(f"{type(self).__name__}: predict({device!r}) before adapt({device!r})")
        return self.heads_[device]


class MLPFinetune(_LatencyMLP):
    name = "mlp-finetune"
    summary = ("Syed & Srinivasan's one-hot MLP (3x400): one per source device, best by shot Spearman, "
               "output layer fine-tuned")

    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        with torch_threads(self.num_threads):
            torch.manual_seed(int(seed) & 0x7FFFFFFF)
            gen = self._generator(seed)
            x = torch.as_tensor(space.onehot(source.arch_ids), dtype=torch.float32)
            t = self._to_t(source.latency)  # [E, N]
            self.mu_ = t.mean(axis=1)
            self.sd_ = np.maximum(t.std(axis=1), 1e-6)
            z = torch.as_tensor((t - self.mu_[:, None]) / self.sd_[:, None], dtype=torch.float32)
            self.layers_ = _init_layers(self._sizes(x.shape[1]), len(source.devices), gen)
            params = [p for layer in self.layers_ for p in layer]
            opt = _optimizer(params, self.optimizer, self.lr, self.momentum, self.weight_decay)
            _train(params, lambda idx: _rmse(_forward(self.layers_, x[idx]), z[:, idx]), x.shape[0],
                   epochs=self.epochs, batch_size=self.batch_size, opt=opt, gen=gen)
        self.heads_, self.choice_ = {}, {}
        return self

    def _member(self, e: int) -> list:
        return [[w[e:e + 1], b[e:e + 1]] for w, b in self.layers_]

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        if len(ids) == 0:
            self.choice_[device] = -1
            self.heads_[device] = None
            return self
        with torch_threads(self.num_threads):
            x = torch.as_tensor(self.space_.onehot(ids), dtype=torch.float32)
            t = self._to_t(y)
            pred_t = _forward(self.layers_, x).double().numpy() * self.sd_[:, None] + self.mu_[:, None]  # [E, k]
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
        head = self._adapted(device)
        best = self.choice_[device]
        shots = self.shots_[device][1]
        if len(shots):
            floor = 1e-3 * float(np.min(shots))
        else:
            floor = 1e-3 * float(np.exp(self.mu_.min())) if self.log_target else 1e-6
        with torch_threads(self.num_threads):
            x = torch.as_tensor(self.space_.onehot(arch_ids), dtype=torch.float32)
            if best < 0:  # k = 0: average the source models (in log space when log_target)
                t = (_forward(self.layers_, x).double().numpy() * self.sd_[:, None] + self.mu_[:, None]).mean(axis=0)
            else:
                w, b = head
                z = (_hidden(self._member(best), x)[0] @ w + b).squeeze(-1).double().numpy()
                t = z * self.sd_[best] + self.mu_[best]
        return self._to_ms(t, floor)


class MLPHardwareParams(_LatencyMLP):
    name = "mlp-hwparams"
    summary = "Syed & Srinivasan's MLP with hardware descriptors appended, trained on all sources; zero-/few-shot"

    def __init__(self, hidden_units=400, hidden_layers=3, epochs=6, batch_size=32, lr=1e-3, optimizer="adam",
                 momentum=0.9, weight_decay=0.0, log_target=True, finetune_epochs=100, finetune_lr=0.1,
                 finetune_momentum=0.9, finetune_weight_decay=1e-3, rescale=True, num_threads=1):
        super().__init__(hidden_units=hidden_units, hidden_layers=hidden_layers, epochs=epochs, batch_size=batch_size,
                         lr=lr, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                         log_target=log_target, finetune_epochs=finetune_epochs, finetune_lr=finetune_lr,
                         finetune_momentum=finetune_momentum, finetune_weight_decay=finetune_weight_decay,
                         rescale=rescale, num_threads=num_threads)

    def _descriptor(self, device: str) -> np.ndarray:
        raw = hwd.raw_features(device)  # MethodError for a device without a row
        z = (raw - self.desc_mean_) / self.desc_scale_
        return np.where(np.isfinite(z), z, 0.0)

    def _inputs(self, device: str, ids) -> torch.Tensor:
        oh = self.space_.onehot(ids)
        d = np.broadcast_to(self._descriptor(device), (len(oh), len(self.desc_mean_)))
        return torch.as_tensor(np.hstack([oh, d]), dtype=torch.float32)

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
        with torch_threads(self.num_threads):
            torch.manual_seed(int(seed) & 0x7FFFFFFF)
            gen = self._generator(seed)
            x = torch.cat([self._inputs(d, source.arch_ids) for d in source.devices])
            t = self._to_t(source.latency).reshape(-1)
            self.mu_, self.sd_ = float(t.mean()), float(max(t.std(), 1e-6))
            z = torch.as_tensor((t - self.mu_) / self.sd_, dtype=torch.float32)[None, :]
            self.layers_ = _init_layers(self._sizes(x.shape[1]), 1, gen)
            params = [p for layer in self.layers_ for p in layer]
            opt = _optimizer(params, self.optimizer, self.lr, self.momentum, self.weight_decay)
            _train(params, lambda idx: _rmse(_forward(self.layers_, x[idx]), z[:, idx]), x.shape[0],
                   epochs=self.epochs, batch_size=self.batch_size, opt=opt, gen=gen)
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
        w, b = self._adapted(device)
        shots = self.shots_[device][1]
        if len(shots):
            floor = 1e-3 * float(np.min(shots))
        else:
            floor = 1e-3 * math.exp(self.mu_ - 5 * self.sd_) if self.log_target else 1e-6
        with torch_threads(self.num_threads):
            z = (_hidden(self.layers_, self._inputs(device, arch_ids))[0] @ w + b).squeeze(-1).double().numpy()
        return self._to_ms(z * self.sd_ + self.mu_, floor)
