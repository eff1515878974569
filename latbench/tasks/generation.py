"""Automatic device partitioning: the device-correlation graph -> a suite of graded tasks.

Why this search: NASFLAT builds hard splits by Kernighan-Lin bisection of the device graph with
Spearman-weighted edges (KL minimises the correlation that crosses the cut, so the two halves
rank architectures differently) and then prunes the halves to the wanted sizes. KL alone only
produces hard splits, so the candidate pool mixes three proposal rules, each seeded:

- ``kl-similar``: KL on weights rho (cut as little correlation as possible) -> hard candidates;
- ``kl-dissimilar``: KL on weights 1 - rho (cut the dissimilar pairs) -> easy candidates;
- ``random``: a uniform random split -> the middle of the range.

Each bisection is pruned to sizes like the literature (5-17 sources, 3-6 targets): the sources are
a random subset of one half and the targets the devices of the other half that are least (hard)
or most (easy) correlated with them. Difficulty is then *measured* on the result: the mean over
targets of the best Spearman with any source. Candidates are binned by the fixed thresholds of
:data:`latbench.tasks.TIER_THRESHOLDS`, and per tier the suite takes up to ``per_space`` tasks of
each space, choosing candidates whose target sets overlap least with those already chosen.
Everything flows from one seed, so ``tasks generate --check`` can regenerate byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
from scipy.stats import spearmanr

from latbench.data import store
from latbench.data.store import LatencyTable
from latbench.errors import TaskError
from latbench.io import write_text
from latbench.tasks import spec as task_registry
from latbench.tasks.spec import POOL_SIZES, TIERS, ArchPools, Pools, TaskSpec, task_seed, tier_of

GENERATOR_VERSION = 1
SOURCE_SIZES = (5, 17)
TARGET_SIZES = (3, 6)

#: Splits used in the literature, with exactly the papers' device lists.
_GPU15 = [f"{g}_{b}" for g in ("1080ti", "2080ti", "titan_rtx", "titanx", "titanxp") for b in (1, 32, 64)]
LITERATURE = {
    "help-nb201": dict(
        space="nb201",
        description="HELP (NeurIPS'21) NB201 meta-train/meta-test split (also NASFLAT N0)",
        source=[
            "1080ti_1",
            "1080ti_32",
            "1080ti_256",
            "silver_4114",
            "silver_4210r",
            "samsung_a50",
            "pixel3",
            "essential_ph_1",
            "samsung_s7",
        ],
        valid=["titanx_1", "titanx_32", "titanx_256", "gold_6240"],
        target=["titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss"],
    ),
    "help-fbnet": dict(
        space="fbnet",
        description="HELP (NeurIPS'21) FBNet split (also NASFLAT F0)",
        source=[
            "1080ti_1",
            "1080ti_32",
            "1080ti_64",
            "silver_4114",
            "silver_4210r",
            "samsung_a50",
            "pixel3",
            "essential_ph_1",
            "samsung_s7",
        ],
        valid=["titanx_1", "titanx_32", "titanx_64", "gold_6240"],
        target=["fpga", "raspi4", "eyeriss"],
    ),
    "nasflat-f1": dict(
        space="fbnet",
        description="NASFLAT (MLSys'24) FBNet task F1",
        source=["2080ti_1", "essential_ph_1", "silver_4114", "titan_rtx_1", "titan_rtx_32"],
        target=["eyeriss", "fpga", "raspi4", "samsung_a50", "samsung_s7"],
    ),
    "nasflat-f2": dict(
        space="fbnet",
        description="NASFLAT (MLSys'24) FBNet task F2",
        source=["essential_ph_1", "gold_6226", "gold_6240", "pixel3", "raspi4"],
        target=["1080ti_1", "1080ti_32", "2080ti_32", "titan_rtx_1", "titanxp_1"],
    ),
    "nasflat-f3": dict(
        space="fbnet",
        description="NASFLAT (MLSys'24) FBNet task F3",
        source=["essential_ph_1", "pixel2", "pixel3", "raspi4", "samsung_s7"],
        target=["1080ti_1", "1080ti_32", "2080ti_1", "titan_rtx_1", "titan_rtx_32"],
    ),
    "nasflat-f4": dict(
        space="fbnet",
        description="NASFLAT (MLSys'24) FBNet task F4",
        source=[
            "1080ti_64",
            "2080ti_1",
            "eyeriss",
            "gold_6226",
            "gold_6240",
            "raspi4",
            "samsung_s7",
            "silver_4210r",
            "titan_rtx_1",
            "titan_rtx_32",
        ],
        target=["1080ti_1", "pixel2", "essential_ph_1"],
    ),
    "nasflat-f5": dict(
        space="fbnet",
        description="NASFLAT (MLSys'24) FBNet task F5: all GPU configs -> CPU and phones",
        source=_GPU15,
        target=["gold_6226", "essential_ph_1", "samsung_s7", "pixel2"],
    ),
}


def correlation(values: np.ndarray) -> np.ndarray:
    """Device x device Spearman matrix over a common arch set (rows of ``values`` are devices)."""
    r = spearmanr(values, axis=1).statistic
    if np.ndim(r) == 0:  # two devices: scipy returns the one coefficient, not the 2 x 2 matrix
        return np.array([[1.0, float(r)], [float(r), 1.0]])
    return np.atleast_2d(r)


def difficulty(corr: np.ndarray, src: list[int], tgt: list[int]) -> float:
    return float(corr[np.ix_(tgt, src)].max(axis=1).mean())


def _prune(corr, half_a, half_b, rng, mode: str):
    """Random source subset of half_a; the targets in half_b least/most correlated with it."""
    n_src = int(rng.integers(SOURCE_SIZES[0], min(SOURCE_SIZES[1], len(half_a)) + 1)) if len(half_a) >= SOURCE_SIZES[0] else 0
    n_tgt = int(rng.integers(TARGET_SIZES[0], TARGET_SIZES[1] + 1))
    if n_src == 0 or len(half_b) < n_tgt:
        return None
    src = sorted(rng.choice(half_a, n_src, replace=False).tolist())
    best = corr[np.ix_(half_b, src)].max(axis=1)
    if mode == "hard":
        order = np.argsort(best, kind="stable")
    elif mode == "easy":
        order = np.argsort(-best, kind="stable")
    else:
        order = rng.permutation(len(half_b))
    tgt = sorted(np.asarray(half_b)[order[:n_tgt]].tolist())
    return src, tgt


def candidates(corr: np.ndarray, seed: int, rounds: int = 60):
    """(rule, round, source idx, target idx) proposals for one space, deterministic in ``seed``."""
    n = len(corr)
    rng = np.random.default_rng(seed)
    out = []
    for r in range(rounds):
        for rule in ("kl-similar", "kl-dissimilar", "random"):
            if rule == "random":
                perm = rng.permutation(n)
                halves = (sorted(perm[: n // 2].tolist()), sorted(perm[n // 2 :].tolist()))
                mode = "random"
            else:
                g = nx.Graph()
                g.add_nodes_from(range(n))
                w = corr if rule == "kl-similar" else 1.0 - corr
                g.add_weighted_edges_from((i, j, float(w[i, j])) for i in range(n) for j in range(i + 1, n))
                a, b = nx.algorithms.community.kernighan_lin_bisection(g, seed=int(rng.integers(2**31)), weight="weight")
                halves = (sorted(a), sorted(b))
                mode = "hard" if rule == "kl-similar" else "easy"
            for src_half, tgt_half in (halves, halves[::-1]):
                pruned = _prune(corr, src_half, tgt_half, rng, mode)
                if pruned:
                    out.append((rule, r, *pruned))
    return out


def select_suite(per_space_candidates: dict, per_space: int = 2) -> list[tuple[str, str, dict]]:
    """Per tier and space, up to ``per_space`` candidates with the least-overlapping target sets."""
    chosen = []
    for tier in TIERS:
        for space, cands in per_space_candidates.items():
            pool = [c for c in cands if c["tier"] == tier]
            picked: list[dict] = []
            seen = set()
            while pool and len(picked) < per_space:

                def overlap(c, picked=picked):
                    return max((len(set(c["target"]) & set(p["target"])) for p in picked), default=0)

                pool.sort(key=lambda c: (overlap(c), c["order"]))
                c = pool.pop(0)
                key = (tuple(c["source"]), tuple(c["target"]))
                if key not in seen:
                    seen.add(key)
                    picked.append(c)
            chosen += [(tier, space, c) for c in picked]
    return chosen


def make_pools(space: str, n_archs: int, seed: int, reserved=()) -> Pools:
    """Disjoint source sample / query pool / eval set; ``reserved`` archs always sit in the query pool.

    The reserved archs are the space's hardware-embedding reference archs (HELP's 10), so a method
    that needs them can measure them on a target device, and they count against its budget k.
    """
    n_src, n_pool, n_eval = POOL_SIZES[space]
    reserved = np.asarray(sorted(reserved), dtype=np.int64)
    rest = np.setdiff1d(np.arange(n_archs), reserved)
    perm = np.random.default_rng(seed).permutation(rest)
    ev = perm[:n_eval]
    pool = np.concatenate([reserved, perm[n_eval : n_eval + n_pool - len(reserved)]])
    src = perm[n_eval + n_pool - len(reserved) : n_eval + n_pool - len(reserved) + n_src]
    return Pools(
        source_sample=tuple(sorted(src.tolist())), query_pool=tuple(sorted(pool.tolist())), eval=tuple(sorted(ev.tolist()))
    )


def make_task(
    task_id: str,
    space: str,
    devices: list[str],
    corr: np.ndarray,
    n_archs: int,
    *,
    source,
    target,
    valid=(),
    kind: str,
    generator: dict,
    description: str = "",
    version: int = 1,
    reserved=(),
) -> TaskSpec:
    missing = [d for d in [*source, *valid, *target] if d not in devices]
    if missing:
        raise TaskError(f"task {task_id}: device(s) {', '.join(missing)} not in the {space} data")
    idx = {d: i for i, d in enumerate(devices)}
    s, t = [idx[d] for d in source], [idx[d] for d in target]
    block = {dt: {ds: round(float(corr[idx[dt], idx[ds]]), 4) for ds in source} for dt in target}
    best = {dt: max(row.values()) for dt, row in block.items()}
    diff = round(difficulty(corr, s, t), 4)
    seed = task_seed(task_id)
    return TaskSpec(
        id=task_id,
        version=version,
        space=space,
        kind=kind,
        tier=tier_of(diff) if kind == "generated" else None,
        description=description,
        source=tuple(source),
        target=tuple(target),
        valid=tuple(valid),
        difficulty=diff,
        best_source_correlation=best,
        correlation=block,
        generator=generator,
        seed=seed,
        pools=make_pools(space, n_archs, seed, reserved),
    )


def generate(tables: dict, seed: int = 0, per_space: int = 2, reserved: dict | None = None) -> list[TaskSpec]:
    """All tasks (generated suite + literature) from ``{space: LatencyTable}``.

    ``reserved``: per space, arch ids that must be in every query pool (the reference archs).
    """
    reserved = reserved or {}
    corrs = {s: correlation(t.values) for s, t in tables.items()}
    per_space_cands = {}
    for k, (space, table) in enumerate(sorted(tables.items())):
        rows = []
        for order, (rule, rnd, src, tgt) in enumerate(candidates(corrs[space], seed + k)):
            d = difficulty(corrs[space], src, tgt)
            rows.append(
                dict(
                    rule=rule,
                    round=rnd,
                    order=order,
                    tier=tier_of(d),
                    difficulty=d,
                    source=[table.devices[i] for i in src],
                    target=[table.devices[i] for i in tgt],
                )
            )
        per_space_cands[space] = rows
    tasks = []
    suite = select_suite(per_space_cands, per_space)
    by_tier: dict[str, list] = {t: [] for t in TIERS}
    for tier, space, c in suite:
        by_tier[tier].append((space, c))
    for tier in TIERS:
        ranked = sorted(by_tier[tier], key=lambda sc: -sc[1]["difficulty"])
        for i, (space, c) in enumerate(ranked, start=1):
            table = tables[space]
            gen = {
                "name": "latbench.partition",
                "version": GENERATOR_VERSION,
                "seed": seed,
                "rule": c["rule"],
                "round": c["round"],
            }
            tasks.append(
                make_task(
                    f"{tier}-{i}",
                    space,
                    list(table.devices),
                    corrs[space],
                    table.values.shape[1],
                    source=c["source"],
                    target=c["target"],
                    kind="generated",
                    generator=gen,
                    reserved=reserved.get(space, ()),
                )
            )
    for task_id, spec in LITERATURE.items():
        space = spec["space"]
        if space not in tables:
            continue
        table = tables[space]
        tasks.append(
            make_task(
                task_id,
                space,
                list(table.devices),
                corrs[space],
                table.values.shape[1],
                source=spec["source"],
                target=spec["target"],
                valid=spec.get("valid", ()),
                kind="literature",
                description=spec["description"],
                generator={"name": "literature", "version": GENERATOR_VERSION},
                reserved=reserved.get(space, ()),
            )
        )
    return tasks


#: Share of the archs measured on every device of a measured-device task: (source sample, query pool, eval).
MEASURED_POOL_SHARES = (0.25, 0.25, 0.5)
#: A measured device is a target of a generated task only if its test-retest Spearman (the same
#: archs timed again in a second session) is at least this: below it, the noise of the "truth"
#: itself reorders the archs, and a method's score says more about the timing noise than the method.
#: Noisier devices may still be sources. A device without a retest is never a generated target.
RETEST_MIN_SPEARMAN = 0.9
#: A measured-device task needs at least this many archs measured on every one of its devices.
MIN_COMMON_ARCHS = 40


@dataclass(frozen=True)
class MeasuredInfo:
    """What task generation needs to know of a profiler-measured device."""

    gpu: bool
    runtime: str
    kernels: bool  # has a per-layer kernel table
    retest_spearman: float | None

    @property
    def reliable(self) -> bool:
        return self.retest_spearman is not None and self.retest_spearman >= RETEST_MIN_SPEARMAN


def committed_devices() -> dict[str, dict[str, MeasuredInfo]]:
    """space -> device -> info of the measurements that ship with latbench (the official measured devices).

    Registered sources (``latbench data add-source`` / ``data import``) are never read here: adding
    a user's device changes no official task.
    """
    from latbench.data import measured

    out: dict[str, dict[str, MeasuredInfo]] = {}
    base = measured.package_dir()
    for d in measured.read_root(base) if base.is_dir() else []:
        out.setdefault(d.meta.space, {})[d.meta.device] = MeasuredInfo(
            gpu=d.meta.setting.device == "cuda",
            runtime=d.meta.setting.runtime,
            kernels=d.kernels is not None,
            retest_spearman=(d.retest or {}).get("spearman"),
        )
    return out


def correlation_block(table, space, source: list[str], target: list[str]) -> tuple[np.ndarray, dict, float]:
    """(arch ids measured on every device, target -> source -> Spearman over them, difficulty)."""
    ids = table.measured(source + target)
    corr = correlation(table.rows(source + target)[:, ids])
    s_idx, t_idx = list(range(len(source))), list(range(len(source), len(source) + len(target)))
    block = {dt: {ds: round(float(corr[j, i]), 4) for i, ds in enumerate(source)} for j, dt in zip(t_idx, target)}
    return ids, block, round(difficulty(corr, s_idx, t_idx), 4)


def arch_pools(space, ids: np.ndarray, seed: int, shares=MEASURED_POOL_SHARES) -> ArchPools:
    """Seeded, disjoint source sample / query pool / eval set over ``ids`` as arch strings; the
    space's reference archs that are among ``ids`` always sit in the query pool."""
    refs = np.intersect1d(space.reference_ids, ids)
    rest = np.random.default_rng(seed).permutation(np.setdiff1d(ids, refs))
    n_src, n_pool = int(len(ids) * shares[0]), max(int(len(ids) * shares[1]), len(refs))
    pool = np.concatenate([refs, rest[: n_pool - len(refs)]])
    src = rest[n_pool - len(refs) : n_pool - len(refs) + n_src]
    ev = rest[n_pool - len(refs) + n_src :]

    def names(a):
        return tuple(sorted(space.arch_str(int(i)) for i in a))

    return ArchPools(source_sample=names(src), query_pool=names(pool), eval=names(ev))


def correlation_fields(block: dict, diff: float) -> dict:
    """The TaskSpec fields that follow from a task's source x target correlation block."""
    return {
        "tier": tier_of(diff),
        "difficulty": diff,
        "best_source_correlation": {dt: max(row.values()) for dt, row in block.items()},
        "correlation": block,
    }


def measured_tasks(table, space, devices: dict[str, MeasuredInfo], public, version: int = 1) -> list[TaskSpec]:
    """Tasks whose targets are profiler-measured devices (devices covering a sample of the space).

    ``devices``: the official measured devices of the space (:func:`committed_devices`), ``public``:
    its HELP devices. Per space and hardware class (server CPUs; GPUs with the suffix ``-gpu``), up to three:

    - ``measured-<space>-public[-gpu]``: sources = every HELP device, targets = the measured devices
      (2019-2021 public hardware -> modern hardware);
    - ``measured-<space>-runtime[-gpu]``: sources = the measured eager-PyTorch devices, targets =
      the other runtimes/precisions (the same hardware under another runtime; needs no HELP data);
    - ``measured-<space>-kernels[-gpu]``: eager PyTorch devices with kernel tables only, the first
      reliable one by name as target (kernel-level predictors train on them as their papers do).

    Only devices with a test-retest Spearman >= :data:`RETEST_MIN_SPEARMAN` are targets (any may
    be a source); a task without such a target, or with fewer than :data:`MIN_COMMON_ARCHS` archs
    measured on all its devices, is not made. Pools are drawn from the archs measured on every
    device of the task and stored as arch strings (:class:`ArchPools`).
    """
    out = []
    for gpu, suffix, label in ((False, "", "server CPUs"), (True, "-gpu", "GPUs")):
        group = sorted(d for d, info in devices.items() if info.gpu == gpu and d in table.devices)
        reliable = [d for d in group if devices[d].reliable]
        eager = [d for d in group if devices[d].runtime == "torch"]
        with_kernels = [d for d in eager if devices[d].kernels]
        kernel_target = next((d for d in with_kernels if devices[d].reliable), None)
        specs = [
            ("public", list(public), reliable, f"public devices (HELP) -> modern {label} measured by latbench profile"),
            (
                "runtime",
                eager,
                [d for d in reliable if d not in eager],
                "eager PyTorch -> other runtimes/precisions on the same measured hardware",
            ),
            (
                "kernels",
                [d for d in with_kernels if d != kernel_target],
                [kernel_target] if kernel_target else [],
                "eager PyTorch -> eager PyTorch with other threads: every device has per-layer kernel latencies, "
                "so kernel-level predictors can train as their papers do (faithful variants)",
            ),
        ]
        for name, source, target, description in specs:
            if not source or not target:
                continue
            task_id = f"measured-{table.space}-{name}{suffix}"
            ids, block, diff = correlation_block(table, space, source, target)
            if len(ids) < MIN_COMMON_ARCHS:
                continue
            seed = task_seed(task_id)
            out.append(
                TaskSpec(
                    id=task_id,
                    version=version,
                    space=table.space,
                    kind="measured",
                    description=description,
                    source=tuple(source),
                    target=tuple(target),
                    **correlation_fields(block, diff),
                    generator={
                        "name": "latbench.partition.measured_tasks",
                        "version": GENERATOR_VERSION,
                        "archs_measured_on_all": int(len(ids)),
                        "shares": list(MEASURED_POOL_SHARES),
                        "retest_min_spearman": RETEST_MIN_SPEARMAN,
                    },
                    seed=seed,
                    pools=Pools(source_sample=(), query_pool=(), eval=()),
                    arch_pools=arch_pools(space, ids, seed),
                )
            )
    return out


def official_tables() -> dict[str, LatencyTable]:
    """Per space, the built dataset restricted to the pinned upstream (HELP) devices: what the
    generated suite and the literature splits are made from, whatever else the build holds."""
    from latbench.data.measured import pinned_device_names

    pinned = pinned_device_names()
    out = {}
    for s in store.info()["spaces"]:
        table = store.load_latency(s)
        keep = [d for d in table.complete_devices() if d in pinned]
        out[s] = LatencyTable(table.space, tuple(keep), table.rows(keep))
    return out


def versioned(task: TaskSpec, existing: Path | None) -> TaskSpec:
    """``task`` with the version of its file when nothing else differs, else that version + 1."""
    if existing is None:
        return task
    try:
        old = task_registry.load_task_file(existing)
    except TaskError:
        return task
    if old.model_copy(update={"version": task.version}).to_yaml() == task.to_yaml():
        return task.model_copy(update={"version": old.version})
    return task.model_copy(update={"version": old.version + 1})


def write_or_check(folder, *, seed: int = 0, check: bool = False) -> list[str]:
    """Regenerate every official task from the built dataset; write changed files, or (check) list them.

    Only the pinned upstream (HELP) devices and the measurements that ship with latbench are read,
    so registered user devices never change an official task. A task whose content changed gets
    the version of its file + 1. Files in ``folder`` that the generator no longer produces count
    as changed (and are removed when writing), so the folder always equals one generation.
    """
    folder = Path(folder)
    info = store.info()
    if not any(src.get("name") == "help" for src in info.get("sources", [])):
        raise TaskError(
            "the official tasks are generated from a dataset with the HELP source; this one was built without it "
            "(offline?): rerun `latbench data build` with network or LATBENCH_MIRROR"
        )
    tables = official_tables()
    reserved = {s: store.load_space(s).reference_ids.tolist() for s in tables}
    tasks = generate(tables, seed=seed, reserved=reserved)
    committed = committed_devices()
    for s in tables:
        tasks += measured_tasks(store.load_latency(s), store.load_space(s), committed.get(s, {}), tables[s].devices)
    existing = {p.stem: p for p in folder.glob("*.yaml")} if folder.is_dir() else {}
    fresh = {t.id: versioned(t, existing.get(t.id)).to_yaml() for t in tasks}
    changed = sorted(i for i, text in fresh.items() if i not in existing or existing[i].read_text() != text)
    stale = sorted(set(existing) - set(fresh))
    if not check:
        folder.mkdir(parents=True, exist_ok=True)
        for i in changed:
            write_text(folder / f"{i}.yaml", fresh[i])
        for i in stale:
            existing[i].unlink()
        task_registry.clear_cache()
    return changed + stale
