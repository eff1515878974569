"""PNG figures: dataset overviews (`latbench data plot`) and predicted-vs-measured scatters (`eval --plot`).

Figures are written atomically (:func:`latbench.io.atomic_path`) so a failure
never leaves a half-written PNG that looks like a result.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from latbench.data import store
from latbench.errors import LatbenchError
from latbench.eval.trials import run_trial
from latbench.io import atomic_path
from latbench.protocol.scoring import check_predictions
from latbench.tasks.generation import correlation


def _pyplot():
    # Agg: figures must render on headless machines (CI, clusters) with no display.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _outdir(out: Path) -> Path:
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LatbenchError(f"{out}: cannot create the plot folder ({e.strerror or e})") from None
    return out


@contextmanager
def _figure(plt, path: Path, tight: bool = True, **kwargs):
    """Yield a new figure; save it atomically to ``path`` on success, always close it."""
    fig = plt.figure(**kwargs)
    try:
        yield fig
        try:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight" if tight else None)
        except OSError as e:
            raise LatbenchError(f"{path}: cannot write the plot ({e.strerror or e})") from None
    finally:
        plt.close(fig)


def _plain_log_ticks(axis, lo: float, hi: float) -> None:
    """Latencies often span less than a decade: label 1-2-5 steps as plain numbers, not 10^k."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if hi < 30 * lo else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


# ------------------------------------------------------------------------------------ dataset
def cluster_order(corr: np.ndarray) -> np.ndarray:
    """Device order that puts mutually correlated devices next to each other (visible blocks)."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    n = corr.shape[0]
    if n < 3:
        return np.arange(n)
    dist = 1.0 - np.nan_to_num(corr, nan=0.0)
    dist = np.clip((dist + dist.T) / 2, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    return leaves_list(linkage(squareform(dist, checks=False), method="average", optimal_ordering=True))


def plot_dataset(out: Path) -> list[Path]:
    """Per space: a clustered device x device Spearman heatmap and per-device latency histograms."""
    plt = _pyplot()
    out = _outdir(out)
    written = []
    for space in store.info()["spaces"]:
        table = store.load_latency(space)
        common = table.measured(table.devices)  # measured devices cover a sample: rank on the shared archs
        written.append(_heatmap(plt, table, correlation(table.values[:, common]), out / f"{space}-correlation.png", len(common)))
        written.append(_histograms(plt, table, out / f"{space}-latency-hist.png"))
    return written


def _heatmap(plt, table, corr: np.ndarray, path: Path, n_archs: int) -> Path:
    order = cluster_order(corr)
    names = [table.devices[i] for i in order]
    c = corr[np.ix_(order, order)]
    n = len(names)
    lo = float(np.nanmin(c)) if n else 0.0
    vmin = max(-1.0, math.floor(min(lo, 0.9) * 10) / 10)
    size = max(5.0, 0.32 * n + 2.5)
    with _figure(plt, path, figsize=(size + 1.2, size)) as fig:
        ax = fig.add_subplot()
        im = ax.imshow(c, cmap="viridis", vmin=vmin, vmax=1.0, interpolation="nearest")
        ax.set_xticks(range(n), names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        if n <= 16:  # cell labels stay legible only for small device sets
            for i in range(n):
                for j in range(n):
                    dark = c[i, j] < vmin + 0.6 * (1.0 - vmin)
                    ax.text(j, i, f"{c[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label("Spearman ρ (latency ranking agreement)")
        ax.set_title(
            f"{table.space}: device x device Spearman ρ over {n_archs:,} archs measured on every device\n"
            "(devices ordered by hierarchical clustering)"
        )
    return path


def _histograms(plt, table, path: Path) -> Path:
    n = len(table.devices)
    ncols = min(6, max(1, n))
    nrows = max(1, math.ceil(n / ncols))
    # fixed margins instead of tight_layout/bbox "tight": those measure every log tick label (seconds)
    with _figure(plt, path, tight=False, figsize=(2.6 * ncols, 2.0 * nrows + 0.9)) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False)
        fig.subplots_adjust(
            left=0.04, right=0.98, bottom=0.6 / (2.0 * nrows + 0.9), top=1 - 0.75 / (2.0 * nrows + 0.9), wspace=0.25, hspace=0.55
        )
        for k, ax in enumerate(axes.flat):
            if k >= n:
                ax.set_visible(False)
                continue
            y = table.values[k]
            y = y[np.isfinite(y) & (y > 0)]
            ax.set_title(table.devices[k], fontsize=9)
            ax.set_xscale("log")
            ax.tick_params(labelsize=7)
            ax.tick_params(axis="y", labelleft=False, left=False)  # counts add clutter, not information
            if not len(y):
                continue
            lo, hi = float(y.min()), float(y.max())
            _plain_log_ticks(ax.xaxis, lo, hi)
            bins = np.geomspace(lo, hi if hi > lo else lo * 1.01, 40)
            ax.hist(y, bins=bins, histtype="stepfilled", color="tab:blue", alpha=0.8)
            med = float(np.median(y))
            ax.axvline(med, color="tab:red", lw=1.2)
            right = np.log(med / lo) < 0.5 * np.log(hi / lo) if hi > lo else True
            ax.text(
                0.97 if right else 0.03,
                0.95,
                f"median\n{med:.3g} ms",
                transform=ax.transAxes,
                ha="right" if right else "left",
                va="top",
                fontsize=7,
                color="tab:red",
            )
        fig.suptitle(f"{table.space}: latency per device (ms, log scale; {table.values.shape[1]:,} archs; red = median)")
        fig.supxlabel("latency (ms)", fontsize=9)
    return path


# -------------------------------------------------------------------------------- predictions
def plot_predictions(method, tasks, shots: int, out: Path) -> list[Path]:
    """Scatter predicted vs measured latency for trial 0 of each task, one panel per target."""
    plt = _pyplot()
    out = _outdir(out)
    written = []
    for task in tasks:
        table = store.load_latency(task.space)
        run = run_trial(method, task, 0, shots, table, store.get_space(task.space))  # the trial `eval` scores first
        trial, preds, fitted = run.trial, run.predictions, run.adapted
        panels = []
        for dev, oracle in trial.oracles.items():
            shot_ids = np.array(list(oracle.measured), dtype=np.int64)
            shot_pred = (
                check_predictions(fitted.predict(dev, shot_ids.copy()), len(shot_ids), f"{task.id}/{dev} shots")
                if len(shot_ids)
                else np.zeros(0)
            )
            shot_true = np.array(list(oracle.measured.values()), dtype=np.float64)  # what the method saw
            panels.append((dev, table.device(dev)[trial.eval_ids[dev]], preds[dev], shot_true, shot_pred))
        name = getattr(method, "name", "") or type(method).__name__
        written.append(_scatter(plt, task, shots, name, panels, out / f"{task.id}-k{shots}.png"))
    return written


def _scatter(plt, task, shots: int, method_name: str, panels, path: Path) -> Path:
    from scipy.stats import spearmanr

    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    with _figure(plt, path, figsize=(4.2 * ncols, 4.0 * nrows + 0.5)) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax in axes.flat[n:]:
            ax.set_visible(False)
        for ax, (dev, y, p, ys, ps) in zip(axes.flat, panels):
            rho = spearmanr(y, p).statistic if np.ptp(p) > 0 and np.ptp(y) > 0 else float("nan")
            both = np.concatenate([y, p, ys, ps])
            lo, hi = float(both.min()) / 1.15, float(both.max()) * 1.15
            line = np.geomspace(lo, hi, 50)
            ax.fill_between(line, line * 0.9, line * 1.1, color="tab:green", alpha=0.15, lw=0, label="±10%")
            ax.plot(line, line, color="black", lw=0.8, label="y = x")
            ax.scatter(y, p, s=6, alpha=0.4, color="tab:blue", lw=0, label=f"eval ({len(y)})")
            if len(ys):
                ax.scatter(
                    ys,
                    ps,
                    s=40,
                    marker="*",
                    color="tab:red",
                    edgecolor="black",
                    lw=0.4,
                    label=f"measured shots ({len(ys)})",
                    zorder=3,
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            _plain_log_ticks(ax.xaxis, lo, hi)
            _plain_log_ticks(ax.yaxis, lo, hi)
            ax.set_aspect("equal")
            ax.set_title(f"{dev}  (Spearman ρ = {rho:.3f})", fontsize=10)
            ax.set_xlabel("measured latency (ms)", fontsize=8)
            ax.set_ylabel("predicted latency (ms)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7, loc="upper left")
        fig.suptitle(f"{method_name} on {task.id} ({task.space}), k={shots}, trial 0")
        fig.tight_layout()
    return path
