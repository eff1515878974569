"""LitePred: per-kernel MLP predictors, a pool of source devices, KL-similar source fine-tuned.

LitePred (Feng et al., NSDI 2024; code ``microsoft/Moonlit/LitePred``) is nn-Meter with MLP kernel
predictors and a transfer step: pick the pool device whose predictions are most similar (KL
divergence) to the target's measurements and fine-tune its kernel MLPs on the target.
``variant="faithful"`` trains on measured kernel latencies (devices profiled by latbench);
``variant="adapted"`` (default) backfits the kernel MLPs from end-to-end latencies for HELP's
devices. LitePred's KL pick of the *least* similar device (a descending sort) is fixed.
See the documentation page baselines/litepred (``docs/baselines/litepred.md``).
"""

from __future__ import annotations

import copy
import zlib

import numpy as np
from scipy.stats import entropy

from latbench.errors import MethodError
from latbench.kernels import decomposition as kernels
from latbench.kernels.regressors import family_features
from latbench.methods.base import Method
from latbench.methods.fitting import best_scale_source, positive_floor, torch_threads
from latbench_baselines.kernel_bank import (
    _BANKS,
    MEASURED_RULES,
    KernelBank,
    backfitted_banks,
    check_variant,
    kernel_sum,
    source_key,
)


class KernelMLP:
    """A small MLP regressor of one kernel family, trained with (weighted) MAPE; sklearn-like."""

    def __init__(self, hidden, epochs: int, lr: float, seed: int):
        self.hidden, self.epochs, self.lr, self.seed = tuple(hidden), epochs, lr, seed

    def _net(self, n_in: int):
        from torch import nn

        layers, w = [], n_in
        for h in self.hidden:
            layers += [nn.Linear(w, h), nn.ReLU()]
            w = h
        layers.append(nn.Linear(w, 1))
        return nn.Sequential(*layers)

    def _x(self, x):
        import torch

        return torch.as_tensor((np.log1p(np.asarray(x, dtype=np.float64)) - self.mu_) / self.sd_, dtype=torch.float32)

    def _train(self, x, y, w, epochs: int, lr: float) -> None:
        import torch

        xt = self._x(x)
        yt = torch.as_tensor(np.maximum(y, 1e-9) / self.scale_, dtype=torch.float32)
        wt = torch.as_tensor(w / w.sum(), dtype=torch.float32)
        opt = torch.optim.Adam(self.net_.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
        for _ in range(epochs):
            opt.zero_grad()
            pred = torch.exp(self.net_(xt).squeeze(1).clamp(-20, 20))
            loss = (wt * (pred - yt).abs() / yt).sum()  # weighted MAPE
            loss.backward()
            opt.step()
            sched.step()

    def fit(self, x, y, sample_weight=None) -> KernelMLP:
        import torch

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        z = np.log1p(x)
        self.mu_ = np.average(z, axis=0, weights=w)
        sd = np.sqrt(np.average((z - self.mu_) ** 2, axis=0, weights=w))
        self.sd_ = np.where(sd > 0, sd, 1.0)
        pos = y[y > 0]
        self.scale_ = float(np.median(pos)) if len(pos) else 1.0
        with torch_threads(1):
            torch.manual_seed(self.seed)
            self.net_ = self._net(x.shape[1])
            self._train(x, y, w, self.epochs, self.lr)
        return self

    def finetuned(self, x, y, sample_weight, epochs: int, lr: float) -> KernelMLP:
        """A copy fine-tuned (all layers) on new data; normalisation and output scale kept."""
        import torch

        new = copy.deepcopy(self)
        with torch_threads(1):
            torch.manual_seed(self.seed + 1)
            new._train(
                np.asarray(x, dtype=np.float64),
                np.asarray(y, dtype=np.float64),
                np.asarray(sample_weight, dtype=np.float64),
                epochs,
                lr,
            )
        return new

    def predict(self, x) -> np.ndarray:
        import torch

        with torch_threads(1), torch.no_grad():
            return torch.exp(self.net_(self._x(x)).squeeze(1).clamp(-20, 20)).double().numpy() * self.scale_


def kl_scores(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LitePred's similarity: entropy(pred, true) = KL(pred || true) of the normalised lists, per column."""
    return np.array([entropy(np.maximum(P[:, d], 1e-12), np.maximum(y, 1e-12)) for d in range(P.shape[1])])


class LitePred(Method):
    """LitePred: a pool of per-kernel MLPs per source device; the KL-closest one, fine-tuned on the shots.

    Parameters
    ----------
    variant : {"adapted", "faithful"}, default "adapted"
        "faithful": LitePred's recipe on measured kernel latencies (the sources' and the target's
        kernel tables, eager-PyTorch kernels; a task with kernel tables is required). "adapted":
        kernel MLPs backfitted from end-to-end latencies, for devices without kernel tables.
    rules : str, default "default"
        Fusion rule set of the adapted variant (``latbench.kernels``; "default" is ``tflite-cpu``,
        nn-Meter's TFLite CPU rules). The faithful variant always uses ``torch-eager``.
    hidden : tuple of int, default (64, 64, 64)
        Hidden layers of each kernel MLP. latbench's choice; the paper's 16-layer network is
        ``(16, 32, 64, 128, 128, 256, 256, 256, 256, 256, 256, 256, 128, 64, 16)``.
    epochs : int, default 350
        Training epochs of the pool's MLPs (full batch, MAPE loss, Adam, cosine). LitePred's value.
    lr : float, default 1e-3
        Adam learning rate of the pool's MLPs. LitePred's value.
    rounds : int, default 2
        Backfitting rounds of the adapted pool (rescale to the end-to-end latencies, refit the MLPs),
        as latbench's nn-Meter; latbench's choice.
    inner : int, default 100
        Rescaling steps per backfitting round; latbench's choice, as for nn-Meter.
    finetune_epochs : int, default 350
        Fine-tuning epochs of the chosen device's MLPs on the target; 0 skips fine-tuning.
        LitePred's value.
    finetune_lr : float, default 1e-3
        Adam learning rate of the fine-tuning. LitePred's value.
    rescale : bool, default True
        Adapted variant: after fine-tuning, fit one least-squares scale in percentage error on the
        shots. latbench's choice.
    random_state : int, default 0
        Seed of the MLPs (the pool does not depend on the trial seed, so it is built once per
        process and source sample and shared by every trial).

    Attributes
    ----------
    pool_ : list of KernelBank
        One bank of kernel MLPs per pool device (per source device with a kernel table in the
        faithful variant).
    pool_devices_ : list of str
        Faithful variant: the source devices of ``pool_``.
    targets_ : dict of str to tuple
        Per target device: its fine-tuned bank, the final scale and the index of the chosen pool
        device (-1 when none was chosen).
    picked_ : dict of str to str
        Faithful variant: the pool device chosen for each target.
    """

    name = "litepred"
    summary = "LitePred adapted: pool of per-kernel MLPs backfitted per source, KL-similar source fine-tuned on the shots"

    def __init__(
        self,
        variant: str = "adapted",
        rules: str = "default",
        hidden: tuple = (64, 64, 64),
        epochs: int = 350,
        lr: float = 1e-3,
        rounds: int = 2,
        inner: int = 100,
        finetune_epochs: int = 350,
        finetune_lr: float = 1e-3,
        rescale: bool = True,
        random_state: int = 0,
    ):
        self.variant = variant
        self.rules = rules
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.rounds = rounds
        self.inner = inner
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.rescale = rescale
        self.random_state = random_state

    check_params = {"hidden": (8,), "epochs": 5, "rounds": 1, "finetune_epochs": 3}

    def _mlp(self, family: str, n_features: int) -> KernelMLP:
        return KernelMLP(self.hidden, self.epochs, self.lr, self.random_state + zlib.crc32(family.encode()) % 10_000)

    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        check_variant(self)
        self.targets_ = {}
        if self.variant == "faithful":
            self.rules_ = MEASURED_RULES
            self.pool_devices_ = sorted(source.kernels)
            if not self.pool_devices_:
                raise MethodError(
                    "litepred (faithful): no source device of this task has kernel-level measurements to "
                    "pre-build the predictor pool from; use a task whose sources were measured by "
                    "`latbench profile` (e.g. the measured-nb201-kernels user task of the nn-Meter docs page) or variant='adapted'"
                )
            self.pool_ = [self._measured_pool_bank(space, source.kernels[d]) for d in self.pool_devices_]
            return self
        self.rules_ = kernels.resolve_rules(self.rules)
        self.pool_ = backfitted_banks(
            self,
            source,
            space,
            lambda: KernelBank(self.rules_, self._mlp, self.rounds, self.inner),
            tuple(self.hidden),
            self.epochs,
            self.lr,
        )
        return self

    def _measured_pool_bank(self, space, rows) -> KernelBank:
        key = source_key(
            type(self).__name__,
            "measured",
            space.name,
            tuple(self.hidden),
            self.epochs,
            self.lr,
            self.random_state,
            rows["arch_id"].to_numpy(),
            rows["latency_ms"].to_numpy(),
        )
        if key not in _BANKS:
            codes, lat, n = kernels.measured_code_latency(space, rows)
            _BANKS[key] = KernelBank(MEASURED_RULES, self._mlp, 0).fit_measured(codes, lat, n)
        return _BANKS[key]

    def _counts(self, ids):
        return kernels.count_matrix(self.space_, ids, self.rules_)

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        if self.variant == "faithful":
            self.targets_[device] = (self._adapt_measured(oracle, ids), 1.0, -1)
            return self
        if len(ids) < 2:
            self.targets_[device] = (self.pool_[0], 1.0, -1)  # nothing to compare distributions on
            return self
        C = self._counts(ids)
        P = np.column_stack([C @ b.predict_codes() for b in self.pool_])
        best = int(np.argmin(kl_scores(P, y)))  # most similar (LitePred sorts descending: fixed)
        bank = self._finetune(self.pool_[best], C, y)
        scale = 1.0
        if self.rescale:
            _, scale = best_scale_source((C @ bank.predict_codes())[:, None], y)
        self.targets_[device] = (bank, scale, best)
        return self

    def _adapt_measured(self, oracle, ids) -> KernelBank:
        """Faithful LitePred on a target with kernel measurements: the pool device whose conv-bn-relu
        predictions on the target's measured conv configs are most similar (smallest KL) to the
        measurements (LitePred's ``detector.py`` scores conv-bn-relu only), its kernel predictors
        fine-tuned on the target's kernel data; a family it lacks gets a new MLP, a family the target's
        measured archs lack keeps the pool device's predictor."""
        codes, lat, n = kernels.measured_code_latency(self.space_, oracle.kernels(ids))
        if len(codes) == 0:
            raise MethodError(f"{oracle.device}: no kernel measurements among the {len(ids)} measured archs (k = 0?)")
        cat = kernels.kernel_catalog(MEASURED_RULES)
        fam = cat["family"].to_numpy()[codes]
        x_of = {f: cat.loc[codes[fam == f], list(family_features(f))].to_numpy(dtype=np.float64) for f in set(fam.tolist())}
        probe = "conv-bn-relu" if "conv-bn-relu" in x_of else sorted(x_of)[0]
        have = [i for i, b in enumerate(self.pool_) if probe in b.models_]
        best = have[0] if have else 0
        if len(have) > 1 and (fam == probe).sum() > 1:
            P = np.column_stack([self.pool_[i].models_[probe].predict(x_of[probe]) for i in have])
            best = have[int(np.argmin(kl_scores(P, lat[fam == probe])))]
        chosen = self.pool_[best]
        new = KernelBank(MEASURED_RULES, self._mlp, 0)
        new.families_, new.unit_, new._memo = cat["family"].to_numpy(), 0.0, None
        new.models_ = dict(chosen.models_)  # families the target's archs lack keep the pool predictor
        for f, x in sorted(x_of.items()):
            sel = fam == f
            if f in chosen.models_:
                new.models_[f] = chosen.models_[f].finetuned(x, lat[sel], n[sel], self.finetune_epochs, self.finetune_lr)
            else:
                new.models_[f] = self._mlp(f, x.shape[1]).fit(x, lat[sel], sample_weight=n[sel])
        self.picked_ = {**getattr(self, "picked_", {}), oracle.device: self.pool_devices_[best]}
        return new

    def _finetune(self, bank: KernelBank, C, y) -> KernelBank:
        if self.finetune_epochs <= 0:
            return bank
        p = bank.predict_codes()
        occ = np.asarray(C.sum(axis=0)).ravel()
        s = C @ p
        pseudo = p * (C.T @ (y / np.where(s > 0, s, 1.0))) / np.where(occ > 0, occ, 1.0)  # rescale to the shots
        cat = kernels.kernel_catalog(self.rules_).iloc[: len(p)]
        fam = cat["family"].to_numpy()
        new = copy.copy(bank)
        new.models_ = dict(bank.models_)
        new._memo = None
        for f in sorted(set(fam[occ > 0].tolist())):
            if f not in bank.models_:
                continue
            sel = (occ > 0) & (fam == f)
            x = cat.loc[sel, list(family_features(f))].to_numpy(dtype=np.float64)
            new.models_[f] = bank.models_[f].finetuned(x, pseudo[sel], occ[sel], self.finetune_epochs, self.finetune_lr)
        return new

    def predict(self, device, arch_ids):
        bank, scale, _ = self.targets_[device]
        if self.variant == "faithful":
            return positive_floor(kernel_sum(self.space_, bank, arch_ids), self.shots_[device][1])
        pred = scale * (self._counts(arch_ids) @ bank.predict_codes())
        return positive_floor(pred, self.shots_[device][1])
