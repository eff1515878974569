"""Which kernel configurations to measure on a new device: nn-Meter's adaptive sampler and LitePred's VAE sampler.

Kernel-level predictors train on *single-kernel* measurements. Which configurations (input size,
channels, kernel size, stride) to measure is the data-collection half of both papers:

- **nn-Meter** (MobiSys'21; ``nn_meter/builder/kernel_predictor_builder/data_sampler``): draw
  ``init`` configurations from a prior (each dimension independently from a 40-bin histogram of a
  model zoo's configurations, integer-cut, kernel size / stride / input size snapped to valid
  values), measure them, fit the kernel's random forest on 80 % (split ``random_state`` 10), and
  for every held-out configuration with relative error above ``error_threshold`` (0.1) measure
  ``finegrained`` new ones around it (input size, kernel size and stride kept; Cin and Cout drawn
  as distinct integers from ``[int(0.5 C), int(1.2 C))``, the code's range -- its docs say 0.4);
  ``iterations`` rounds in all (code defaults: 1,000 / 10 / 5; the shipped YAML uses 3,000-10,000
  / 20 / 3). :func:`adaptive_campaign`.
- **LitePred** (NSDI'24; ``LitePred/vae``): a VAE over (HW, Cin, Cout, kernel, stride), min-max
  scaled; encoder and decoder of 5 layers 256 wide, latent 128, sigmoid output; trained with Adam
  (lr 1e-3) on batches of 16 drawn with replacement in proportion to each configuration's
  frequency, 625 iterations per epoch, loss = summed squared reconstruction error + beta * KL, beta
  starting at 0.02 and rebalanced every 50 iterations so that reconstruction : beta*KL stays at
  ``loss_balance`` (10; our reading of its rescheduling), with LitePred's KL written as
  ``sum(sigma^2 + mu^2 - log sigma - 1/2)``; samples z ~ N(0, I) decoded, unscaled, rounded, kernel size snapped,
  Cin rounded up to a multiple of 8. Every sample is measured. :class:`ConfigVAE`.

**Model zoo (a stated gap).** Both papers learn their sampling distribution from a zoo of real
models (nn-Meter's 26k-model benchmark, LitePred's patch LUT). Those files are not available to us;
latbench's zoo is the kernel configurations of its own search spaces (:func:`zoo`: every eager-PyTorch
kernel of a seeded sample of archs of each built space, counted). Not reproduced either: nn-Meter's
mix of 70 % prior and 30 % fixed frequent values for convolutions.

A configuration is one eager-PyTorch kernel, a :class:`~latbench.spaces.base.Layer`; the profiler
measures it (:func:`latbench.profiler.time_layer`) and :mod:`latbench.kernels` gives its
nn-Meter features, so a campaign trains the same kernel predictors the faithful baselines use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from latbench.errors import LatbenchError
from latbench.io import write_parquet, write_text
from latbench.kernels import decomposition as kernels
from latbench.kernels.decomposition import op_type
from latbench.kernels.regressors import family_features, kernel_forest
from latbench.measure import profiler
from latbench.spaces.base import Layer

#: Kernel types a campaign can sample (eager PyTorch modules, one kernel each).
OPS = ("conv", "dwconv", "bn", "relu", "avgpool")
DIMS = ("hw", "cin", "cout", "ks", "stride")


def check_op(op: str) -> None:
    if op not in OPS:
        raise LatbenchError(f"unknown kernel type {op!r}; choose from {', '.join(OPS)}")


def zoo(spaces, op: str, n_archs: int = 500, seed: int = 0) -> pd.DataFrame:
    """Configurations of ``op`` in a seeded sample of each space's archs, with their frequency."""

    check_op(op)
    counts: dict[tuple, int] = {}
    for space in spaces:
        rng = np.random.default_rng(seed)
        ids = rng.choice(len(space), min(n_archs, len(space)), replace=False)
        for i in ids.tolist():
            for layer in space.layers(i):
                if op_type(layer) == op:
                    key = (layer.h, layer.cin, layer.cout, layer.kernel, layer.stride)
                    counts[key] = counts.get(key, 0) + 1
    if not counts:
        raise LatbenchError(f"no {op} kernels in the spaces {[s.name for s in spaces]}: nothing to learn a prior from")
    df = pd.DataFrame([(*k, v) for k, v in counts.items()], columns=DIMS + ("freq",))
    return df.sort_values(list(DIMS)).reset_index(drop=True)


def to_layer(op: str, hw: int, cin: int, cout: int, ks: int, stride: int) -> Layer:
    """The eager-PyTorch layer of one configuration (channel-preserving ops get cout = cin)."""
    if op == "conv":
        return Layer("conv", int(hw), int(cin), int(cout), kernel=int(ks), stride=int(stride))
    if op == "dwconv":
        return Layer("conv", int(hw), int(cin), int(cin), kernel=int(ks), stride=int(stride), groups=int(cin))
    if op == "avgpool":
        return Layer("avgpool", int(hw), int(cin), int(cin), kernel=int(ks), stride=int(stride))
    return Layer(op, int(hw), int(cin), int(cin))


def _normalise(op: str, cfg: np.ndarray, valid: dict) -> np.ndarray:
    """Snap kernel size / stride / input size to values the zoo has; channels >= 1; op constraints."""
    out = cfg.astype(np.int64)
    for j, dim in enumerate(DIMS):
        if dim in ("hw", "ks", "stride"):
            vals = np.asarray(valid[dim])
            out[:, j] = vals[np.abs(out[:, j][:, None] - vals[None, :]).argmin(axis=1)]
    out[:, 1:3] = np.maximum(out[:, 1:3], 1)
    if op != "conv":
        out[:, 2] = out[:, 1]
    if op in ("bn", "relu"):
        out[:, 3:5] = 1
    return out


def prior_sample(zoo_df: pd.DataFrame, op: str, n: int, rng: np.random.Generator, bins: int = 40) -> np.ndarray:
    """nn-Meter's prior: each dimension independently from a frequency-weighted 40-bin histogram."""
    cols = []
    for dim in DIMS:
        v = zoo_df[dim].to_numpy(dtype=np.float64)
        if v.min() == v.max():
            cols.append(np.full(n, v[0]))
            continue
        hist, edges = np.histogram(v, bins=bins, weights=zoo_df["freq"].to_numpy(dtype=np.float64))
        b = rng.choice(len(hist), n, p=hist / hist.sum())
        cols.append(np.floor(rng.uniform(edges[b], edges[b + 1])))
    valid = {d: sorted(set(zoo_df[d].tolist())) for d in ("hw", "ks", "stride")}
    return _normalise(op, np.column_stack(cols), valid)


def finegrained_sample(cfg, op: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """nn-Meter's fine-grained sampling around one configuration: HW, kernel, stride kept; Cin and
    Cout distinct integers from [int(0.5 C), int(1.2 C))."""
    hw, cin, cout, ks, stride = (int(x) for x in cfg)

    def around(c: int) -> np.ndarray:
        lo, hi = max(int(0.5 * c), 1), max(int(1.2 * c), int(0.5 * c) + 1, 2)
        vals = np.arange(lo, hi)
        return rng.choice(vals, min(n, len(vals)), replace=False)

    cins, couts = around(cin), around(cout)
    m = min(len(cins), len(couts))
    out = np.column_stack([np.full(m, hw), cins[:m], couts[:m], np.full(m, ks), np.full(m, stride)])
    return _normalise(op, out, {"hw": [hw], "ks": [ks], "stride": [stride]})


def features(op: str, configs: np.ndarray) -> pd.DataFrame:
    """:mod:`latbench.kernels` features (nn-Meter's) of configurations, as a kernel-catalogue frame."""

    rows = []
    for cfg in configs:
        (k,) = kernels.decompose_layers([to_layer(op, *cfg)], "torch-eager")
        rows.append({"type": k.type, "family": k.family, **{f: getattr(k, f) for f in kernels.FEATURES}})
    return pd.DataFrame(rows)


@dataclass
class Campaign:
    """Measured configurations (one row each) and, per round, the held-out accuracy of the model."""

    op: str
    rows: pd.DataFrame
    history: list[dict] = field(default_factory=list)


def _evaluate(model, x: np.ndarray, y: np.ndarray) -> dict:
    pred = model.predict(x)
    rel = np.abs(pred - y) / y
    return {
        "rmse_ms": float(np.sqrt(np.mean((pred - y) ** 2))),
        "acc10": float(np.mean(rel <= 0.1)),
        "acc5": float(np.mean(rel <= 0.05)),
        "rel_error": rel,
    }


def adaptive_campaign(
    op: str,
    zoo_df: pd.DataFrame,
    measure: Callable[[np.ndarray], np.ndarray],
    make_model: Callable[[str, int], object],
    *,
    init: int = 1000,
    finegrained: int = 10,
    iterations: int = 5,
    error_threshold: float = 0.1,
    seed: int = 0,
    on_round: Callable[[dict], None] = lambda r: None,
) -> Campaign:
    """nn-Meter's adaptive data sampling for one kernel type (see the module docstring).

    ``measure(configs) -> ms`` times configurations on the device; ``make_model(family, n_features)``
    builds the kernel's regressor (nn-Meter's random forest). Round 0 measures ``init`` prior
    samples; each later round measures ``finegrained`` samples around every badly predicted
    held-out configuration of the previous round.
    """
    from sklearn.model_selection import train_test_split

    check_op(op)
    rng = np.random.default_rng(seed)
    configs = prior_sample(zoo_df, op, init, rng)
    lat = measure(configs)
    rounds = np.zeros(len(configs), np.int64)
    history = []
    for it in range(iterations):
        feats = features(op, configs)
        fam = feats["family"].iloc[0]
        x = feats[list(family_features(fam))].to_numpy(dtype=np.float64)
        tr, te = train_test_split(np.arange(len(lat)), test_size=0.2, random_state=10)
        model = make_model(fam, x.shape[1])
        model.fit(x[tr], lat[tr])
        ev = _evaluate(model, x[te], lat[te])
        bad = te[ev.pop("rel_error") > error_threshold]
        record = {"round": it, "measured": int(len(lat)), "held_out": int(len(te)), "above_threshold": int(len(bad)), **ev}
        history.append(record)
        on_round(record)
        if it == iterations - 1 or len(bad) == 0:
            break
        new = np.concatenate([finegrained_sample(configs[i], op, finegrained, rng) for i in bad])
        configs = np.concatenate([configs, new])
        lat = np.concatenate([lat, measure(new)])
        rounds = np.concatenate([rounds, np.full(len(new), it + 1)])
    rows = pd.DataFrame(configs, columns=list(DIMS)).assign(op=op, latency_ms=lat, round=rounds)
    return Campaign(op, rows[["op", *DIMS, "latency_ms", "round"]], history)


# ---- LitePred's VAE sampler ----------------------------------------------------------------------
class ConfigVAE:
    """LitePred's configuration VAE (see the module docstring); ``fit`` on a zoo, ``sample`` configs."""

    def __init__(
        self,
        latent: int = 128,
        hidden: int = 256,
        layers: int = 5,
        epochs: int = 20,
        iters_per_epoch: int = 625,
        batch_size: int = 16,
        lr: float = 1e-3,
        beta: float = 0.02,
        loss_balance: float = 10.0,
        seed: int = 0,
    ):
        self.latent, self.hidden, self.layers = latent, hidden, layers
        self.epochs, self.iters_per_epoch, self.batch_size, self.lr = epochs, iters_per_epoch, batch_size, lr
        self.beta, self.loss_balance, self.seed = beta, loss_balance, seed

    def _mlp(self, n_in: int, n_out: int, sigmoid: bool):
        from torch import nn

        mods, w = [], n_in
        for _ in range(self.layers - 1):
            mods += [nn.Linear(w, self.hidden), nn.ReLU()]
            w = self.hidden
        mods.append(nn.Linear(w, n_out))
        if sigmoid:
            mods.append(nn.Sigmoid())
        return nn.Sequential(*mods)

    def fit(self, zoo_df: pd.DataFrame) -> ConfigVAE:
        import torch

        x = zoo_df[list(DIMS)].to_numpy(dtype=np.float64)
        self.lo_, self.hi_ = x.min(axis=0), x.max(axis=0)
        self.valid_ = {d: sorted(set(zoo_df[d].tolist())) for d in ("hw", "ks", "stride")}
        xt = torch.as_tensor((x - self.lo_) / np.where(self.hi_ > self.lo_, self.hi_ - self.lo_, 1.0), dtype=torch.float32)
        p = torch.as_tensor(zoo_df["freq"].to_numpy(dtype=np.float64) / zoo_df["freq"].sum())
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.encoder_ = self._mlp(len(DIMS), 2 * self.latent, sigmoid=False)
        self.decoder_ = self._mlp(self.latent, len(DIMS), sigmoid=True)
        opt = torch.optim.Adam([*self.encoder_.parameters(), *self.decoder_.parameters()], lr=self.lr)
        beta, rec_sum, kl_sum = self.beta, 0.0, 0.0
        self.losses_ = []
        for it in range(self.epochs * self.iters_per_epoch):
            xb = xt[torch.multinomial(p, self.batch_size, replacement=True, generator=g)]
            mu, logvar = self.encoder_(xb).chunk(2, dim=1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
            rec = ((self.decoder_(z) - xb) ** 2).sum()
            kl = (logvar.exp() + mu**2 - 0.5 * logvar - 0.5).sum()  # LitePred's form: sigma^2 + mu^2 - log sigma - 1/2
            loss = rec + beta * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec_sum, kl_sum = rec_sum + rec.item(), kl_sum + kl.item()
            if (it + 1) % 50 == 0:  # keep reconstruction : beta * KL at loss_balance
                beta = rec_sum / (self.loss_balance * max(kl_sum, 1e-12))
                self.losses_.append(loss.item())
                rec_sum = kl_sum = 0.0
        self.beta_ = beta
        return self

    def sample(self, op: str, n: int, seed: int = 0) -> np.ndarray:
        import torch

        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            u = self.decoder_(torch.randn(n, self.latent, generator=g)).double().numpy()
        x = np.rint(self.lo_ + u * (self.hi_ - self.lo_))
        x[:, 1] = np.ceil(np.maximum(x[:, 1], 1) / 8) * 8  # LitePred: Cin up to a multiple of 8
        return _normalise(op, x, self.valid_)


# ---- campaigns on disk -----------------------------------------------------------------------------
def campaign_file(folder, device: str, op: str):
    from pathlib import Path

    return Path(folder) / device / f"kernels-{op}.parquet"


def load_campaign(folder, device: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Every measured configuration of ``device`` in a ``latbench profile-kernels`` folder, as kernel
    feature rows (:func:`features`) and their latencies; validated (plain parquet, known ops,
    positive finite latencies, integer configurations). Cached per file state: methods call this
    once per target device, trial and k."""
    from pathlib import Path

    root = Path(folder) / device
    files = sorted(root.glob("kernels-*.parquet"))
    if not files:
        known = sorted(p.name for p in Path(folder).iterdir() if p.is_dir()) if Path(folder).is_dir() else []
        raise LatbenchError(f"{folder}: no kernel campaign for device {device!r} (devices there: {', '.join(known) or 'none'})")
    frame, lat = _read_campaign(tuple((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files))
    return frame.copy(), lat.copy()


@functools.lru_cache(maxsize=16)
def _read_campaign(files: tuple) -> tuple[pd.DataFrame, np.ndarray]:
    import pyarrow.parquet as pq

    frames, lats = [], []
    for f, _, _ in files:
        try:
            t = pq.read_table(f).to_pandas()
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise LatbenchError(f"{f}: not a readable parquet file ({e})") from None
        missing = {"op", *DIMS, "latency_ms"} - set(t.columns)
        if missing:
            raise LatbenchError(f"{f}: missing column(s) {', '.join(sorted(missing))}")
        ops = set(t["op"].tolist())
        if len(ops) != 1 or not ops <= set(OPS):
            raise LatbenchError(f"{f}: one known kernel type per file expected, found {sorted(ops)}")
        lat = t["latency_ms"].to_numpy(dtype=np.float64)
        cfg = t[list(DIMS)].to_numpy()
        if not (np.isfinite(lat).all() and (lat > 0).all()):
            raise LatbenchError(f"{f}: latencies must be finite and > 0")
        if not (np.issubdtype(cfg.dtype, np.integer) and (cfg > 0).all()):
            raise LatbenchError(f"{f}: configurations must be positive integers")
        frames.append(features(ops.pop(), cfg))
        lats.append(lat)
    return pd.concat(frames, ignore_index=True), np.concatenate(lats)


def run_campaign(
    out,
    op: str,
    sampler: str,
    spaces,
    *,
    samples: int,
    finegrained: int = 10,
    iterations: int = 5,
    error_threshold: float = 0.1,
    threads: int = 1,
    warmup: int = 5,
    repeats: int = 20,
    max_wait: float = 60.0,
    zoo_archs: int = 500,
    seed: int = 0,
    name: str | None = None,
    measure=None,
    log=lambda msg: None,
) -> dict:
    """Sample ``op`` configurations (``adaptive`` = nn-Meter, ``vae`` = LitePred), time them with
    eager PyTorch on this CPU, write ``<out>/<device>/kernels-<op>.parquet`` and ``campaign-<op>.json``
    (atomically, only when the campaign finished). ``measure`` replaces the profiler (tests)."""
    import json
    import time

    import pyarrow as pa

    check_op(op)
    if sampler not in ("adaptive", "vae"):
        raise LatbenchError(f"unknown kernel sampler {sampler!r}; choose adaptive (nn-Meter) or vae (LitePred)")
    if samples < 5:
        raise LatbenchError(f"--samples must be at least 5 (an 80/20 split needs a held-out part), got {samples}")
    setting = profiler.Setting("kernel", "torch", "cpu", threads, 1, "fp32", warmup, repeats)
    hw = profiler.hardware("cpu")
    device = profiler.device_name(setting, name or profiler.hardware_slug(hw, "cpu"))
    contended = []

    def timed(configs: np.ndarray) -> np.ndarray:
        if measure is not None:
            return np.asarray(measure(op, configs), dtype=np.float64)
        out_ms = []
        for j, cfg in enumerate(configs):
            r = profiler.time_layer(to_layer(op, *cfg), threads, warmup, repeats, max_wait, seed=seed + j)
            contended.append(r["contended"])
            out_ms.append(r["latency_ms"])
        return np.array(out_ms)

    tic = time.perf_counter()
    zoo_df = zoo(spaces, op, zoo_archs, seed)
    forest = kernel_forest
    if sampler == "adaptive":
        camp = adaptive_campaign(
            op,
            zoo_df,
            timed,
            forest,
            init=samples,
            finegrained=finegrained,
            iterations=iterations,
            error_threshold=error_threshold,
            seed=seed,
            on_round=lambda r: log(
                f"{op} round {r['round']}: {r['measured']} measured, held-out "
                f"±10% accuracy {r['acc10']:.3f}, {r['above_threshold']} above threshold"
            ),
        )
        history = camp.history
        rows = camp.rows
    else:
        vae = ConfigVAE(seed=seed).fit(zoo_df)
        configs = vae.sample(op, samples, seed=seed)
        lat = timed(configs)
        rows = pd.DataFrame(configs, columns=list(DIMS)).assign(op=op, latency_ms=lat, round=0)[
            ["op", *DIMS, "latency_ms", "round"]
        ]
        feats = features(op, configs)
        fam = feats["family"].iloc[0]
        x = feats[list(family_features(fam))].to_numpy(dtype=np.float64)
        from sklearn.model_selection import train_test_split

        tr, te = train_test_split(np.arange(len(lat)), test_size=0.2, random_state=10)
        model = forest(fam, x.shape[1]).fit(x[tr], lat[tr])
        ev = _evaluate(model, x[te], lat[te])
        ev.pop("rel_error")
        history = [{"round": 0, "measured": int(len(lat)), "held_out": int(len(te)), **ev}]
        log(f"{op} vae: {len(lat)} measured, held-out ±10% accuracy {ev['acc10']:.3f}")
    seconds = round(time.perf_counter() - tic, 1)
    path = campaign_file(out, device, op)
    write_parquet(path, pa.Table.from_pandas(rows, preserve_index=False))
    report = {
        "device": device,
        "op": op,
        "sampler": sampler,
        "zoo": [s.name for s in spaces],
        "zoo_archs": zoo_archs,
        "samples": samples,
        "finegrained": finegrained,
        "iterations": iterations,
        "error_threshold": error_threshold,
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "seed": seed,
        "measured": int(len(rows)),
        "contended": int(sum(contended)),
        "seconds": seconds,
        "hardware": hw,
        "history": history,
    }
    write_text(path.parent / f"campaign-{op}.json", json.dumps(report, indent=1) + "\n")
    return report
