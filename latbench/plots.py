"""Figures: dataset overviews (`latbench data plot`), predicted-vs-measured scatters (`eval --plot`) and
the leaderboard's charts (`latbench leaderboard render`: critical-difference diagrams and mean
Spearman vs k, as SVG next to the board's page).

Figures are written atomically (:func:`latbench.io.atomic_path`) so a failure
never leaves a half-written file that looks like a result. The board's SVGs are byte-stable for a
given matplotlib (no date, fixed ids, text kept as text), so re-rendering an unchanged board
changes no file.
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
def _figure(plt, path: Path, tight: bool = True, fmt: str = "png", **kwargs):
    """Yield a new figure; save it atomically to ``path`` (PNG, or reproducible SVG) on success, always close it."""
    fig = plt.figure(**kwargs)
    try:
        yield fig
        try:
            with atomic_path(path) as tmp:
                if fmt == "svg":
                    with plt.rc_context({"svg.hashsalt": "latbench", "svg.fonttype": "none"}):
                        fig.savefig(tmp, format="svg", bbox_inches="tight" if tight else None, metadata={"Date": None})
                else:
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


# ---------------------------------------------------------------------------------- leaderboard
def _plain(text: str) -> str:
    """Text shown as is: a ``$`` in a method name would otherwise start matplotlib's math mode."""
    return text.replace("$", r"\$")


def _styles(names: list[str]) -> dict[str, tuple[str, str]]:
    """Per method name: (colour, matplotlib marker), the same as on the board's page (:func:`site.method_styles`)."""
    from latbench.leaderboard.site import MPL_MARKERS, method_styles

    return {n: (st["color"], MPL_MARKERS[st["marker"]]) for n, st in method_styles(names).items()}


def plot_board(entries: list, out: Path) -> list[Path]:
    """The leaderboard's charts in ``out`` (its ``site/``): per suite with entries, mean Spearman vs k
    (one colour and one marker per method) and a critical-difference diagram per shot count."""
    from latbench.leaderboard import board as lb

    plt = _pyplot()
    out = _outdir(out)
    written = []
    for suite in lb.SUITES:
        tables = {k: lb.ranking(entries, suite, k) for k in lb.SUITE_SHOTS}
        if not any(t.rows for t in tables.values()):
            continue
        names = sorted({r["method"] for t in tables.values() for r in t.rows})
        styles = _styles(names)
        written.append(_score_vs_k(plt, suite, tables, styles, out / lb.score_figure(suite)))
        for k, table in tables.items():
            if table.rows:
                written.append(_cd_diagram(plt, table, styles, out / lb.cd_figure(suite, k)))
    return written


def _entry_labels(tables: dict) -> dict[str, str]:
    """Entry id -> its label in the charts: the method name, "(unverified)" when it is, and the entry id
    when two entries share a name, so that an unverified entry never passes for a verified one."""
    from collections import Counter

    rows = {r["entry"]: r for table in tables.values() for r in table.rows}
    entries_of = Counter(r["method"] for r in rows.values())
    labels = {}
    for entry, r in rows.items():
        label = r["method"] + ("" if r["status"] == "verified" else " (unverified)")
        labels[entry] = label + (f" [{entry}]" if entries_of[r["method"]] > 1 else "")
    return labels


def _score_vs_k(plt, suite: str, tables: dict, styles: dict, path: Path) -> Path:
    series: dict[str, list[tuple[int, float]]] = {}
    for k, table in tables.items():
        for r in table.rows:
            series.setdefault(r["entry"], []).append((k, r["spearman"]))
    rows = {r["entry"]: r for table in tables.values() for r in table.rows}
    labels = _entry_labels(tables)
    last = {r["entry"]: i for i, r in enumerate(next(t for t in reversed(tables.values()) if t.rows).rows)}
    order = sorted(series, key=lambda e: (last.get(e, len(last)), e))  # legend in board order at the largest k
    with _figure(plt, path, fmt="svg", figsize=(7.5, 4.2)) as fig:
        ax = fig.add_subplot()
        for entry in order:
            color, marker = styles[rows[entry]["method"]]
            ks, ys = zip(*series[entry])
            label = labels[entry]
            ax.plot(
                ks,
                ys,
                color=color,
                marker=marker,
                markersize=7,
                markeredgecolor="#333333",
                markeredgewidth=0.6,
                lw=1.6,
                ls="-" if rows[entry]["status"] == "verified" else "--",
                label=_plain(label) if not label.startswith("_") else "\u200b" + _plain(label),  # "_x" would hide it
            )
        ax.set_xscale("log")
        ax.set_xticks(list(tables), [f"k={k}" for k in tables])
        ax.minorticks_off()
        ax.set_xlabel("shots per target device (log scale)")
        ax.set_ylabel("mean Spearman ρ over tasks")
        ax.grid(alpha=0.3)
        ax.set_title(f"{suite} suite: mean Spearman vs k")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return path


def _cd_diagram(plt, table, styles: dict, path: Path) -> Path:
    """Demšar's critical-difference diagram: mean ranks on an axis (1 = best, left), the best half of the
    methods labelled on the left and the rest on the right, bars joining methods not told apart."""
    rows = table.rows
    labels = _entry_labels({0: table})
    n = len(rows)
    k_axis = max(n, 2)
    half = (n + 1) // 2
    cliques = table.cliques
    height = 1.3 + 0.28 * max(half, n - half) + 0.12 * len(cliques)
    with _figure(plt, path, fmt="svg", figsize=(8.0, height)) as fig:
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_xlim(-0.9, k_axis + 1.9)
        top, step = 0.0, 0.28 / height * 3.5
        ax.set_ylim(-(0.6 + step * (max(half, n - half) + 1) + 0.05 * len(cliques)), 0.55)
        ax.axis("off")
        ax.plot([1, k_axis], [top, top], color="black", lw=1.0)
        for t in range(1, k_axis + 1):
            ax.plot([t, t], [top, top + 0.06], color="black", lw=0.8)
            ax.text(t, top + 0.1, str(t), ha="center", va="bottom", fontsize=8)
        if table.rejected:
            ax.plot([1, 1 + table.cd], [top + 0.38, top + 0.38], color="black", lw=1.4)
            for x in (1, 1 + table.cd):
                ax.plot([x, x], [top + 0.34, top + 0.42], color="black", lw=1.0)
            ax.text(1 + table.cd / 2, top + 0.44, f"CD = {table.cd:.2f}", ha="center", va="bottom", fontsize=8)
        bar_y = [top - 0.12 - 0.07 * i for i in range(len(cliques))]
        for (first, last), y in zip(cliques, bar_y):
            ax.plot(
                [rows[first]["mean_rank"] - 0.05, rows[last]["mean_rank"] + 0.05],
                [y, y],
                color="#444444",
                lw=3.2,
                solid_capstyle="round",
            )
        label_top = (bar_y[-1] if bar_y else top) - 0.18
        for i, r in enumerate(rows):
            left = i < half
            y = label_top - step * (i if left else n - 1 - i)
            x = r["mean_rank"]
            edge = 0.2 if left else k_axis + 0.8
            color, marker = styles[r["method"]]
            ax.plot([x, x, edge], [top, y, y], color="#666666", lw=0.8)
            ax.plot(
                [x], [top], marker=marker, color=color, markersize=7, markeredgecolor="#333333", markeredgewidth=0.6, zorder=3
            )
            ax.text(
                edge + (-0.1 if left else 0.1),
                y,
                _plain(
                    f"({r['mean_rank']:.2f}) {labels[r['entry']]}" if left else f"{labels[r['entry']]} ({r['mean_rank']:.2f})"
                ),
                ha="right" if left else "left",
                va="center",
                fontsize=8,
            )
        ax.text(
            (k_axis + 1) / 2,
            0.53,
            f"{table.suite} suite, k = {table.shots}: mean rank over {table.n_units} (task, trial) units",
            ha="center",
            va="top",
            fontsize=9,
        )
    return path
