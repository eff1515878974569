"""``latbench tasks create``: a task over the user's own devices, in the user task folder.

The official tasks are fixed by their device lists (``latbench tasks generate`` reads only the
HELP devices and the measurements that ship with latbench), so a device a user registers with
``latbench data add-source`` / ``data import`` enters a benchmark task only through a task the
user makes: same file format, kind ``user``, pools drawn like the measured-device tasks' (seeded by
the task name, from the archs measured on every device of the task, the reference archs in the
query pool). It is evaluated like any task (``latbench eval --task NAME``) and never enters a
leaderboard suite or the dataset's configs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latbench.data import store
from latbench.errors import TaskError, did_you_mean
from latbench.io import write_text
from latbench.tasks import generation
from latbench.tasks import spec as registry
from latbench.tasks.spec import POOL_SIZES, Pools, TaskSpec, task_seed
from latbench.text import name_problem

#: ``--source help``: every HELP device of the space.
HELP_SOURCES = "help"


def help_devices(table) -> list[str]:
    """The space's HELP devices in the built dataset (none in a build without the HELP source)."""
    from latbench.data.measured import pinned_device_names

    pinned = pinned_device_names()
    return [d for d in table.complete_devices() if d in pinned]


def _expand_sources(source, table, target) -> list[str]:
    """``source`` with ``help`` expanded to every HELP device of the space that is not a target."""
    out: list[str] = []
    for d in source:
        if d == HELP_SOURCES:
            found = [x for x in help_devices(table) if x not in target]
            if not found:
                raise TaskError(
                    f"--source help: the {table.space} data has no HELP devices (a build without the HELP source, "
                    "e.g. offline): rerun `latbench data build` with network or LATBENCH_MIRROR, or name source devices"
                )
            out += [x for x in found if x not in out]
        elif d not in out:
            out.append(d)
    return out


def _retest(space: str, devices: list[str]) -> dict[str, float | None]:
    """device -> test-retest Spearman in ``space`` (None: not known): the measured source's entry of
    ``latbench.json`` (per space), else the ``devices`` config (one value per device name)."""
    per_space = {}
    for src in store.info().get("sources", []):
        for f in src.get("files", []):
            if isinstance(f, dict) and isinstance(f.get("retest"), dict) and isinstance(f.get("path"), str):
                per_space[f["path"]] = f["retest"].get("spearman")
    rows = {r["device"]: r for r in store.load_devices()}
    return {d: per_space.get(f"{space}/{d}", rows.get(d, {}).get("retest_spearman")) for d in devices}


def create_task(
    name: str,
    space: str,
    target,
    source=(HELP_SOURCES,),
    *,
    folder: Path | None = None,
    allow_noisy: bool = False,
    overwrite: bool = False,
) -> tuple[TaskSpec, Path, list[str]]:
    """Make and write a user task; returns (task, file written, notes for the user).

    Parameters
    ----------
    target, source
        A device name or a list of them (of the built dataset); ``source`` may include ``"help"``:
        every HELP device of the space but the targets.
    folder
        Where to write ``<name>.yaml`` (default: :func:`latbench.tasks.spec.user_tasks_dir`).
    allow_noisy
        Accept targets whose test-retest Spearman is below
        :data:`latbench.tasks.generation.RETEST_MIN_SPEARMAN` (refused by default).
    overwrite
        Replace an existing user task of that name (its version goes up when its content changes).
    """
    if name_problem(name):
        raise TaskError(f"task name {name_problem(name)}")
    registry.clear_cache()
    official = {t.id for t in registry.official_tasks()}
    if name in official:
        raise TaskError(f"{name!r} is an official task; choose another name")
    spaces = store.info()["spaces"]
    if space not in spaces:
        raise TaskError(f"space {space!r} is not in the built dataset (spaces: {', '.join(spaces)})")
    table = store.load_latency(space)
    target = list(dict.fromkeys([target] if isinstance(target, str) else target))
    source = _expand_sources([source] if isinstance(source, str) else source, table, target)
    if not target or not source:
        raise TaskError("a task needs at least one --target and one --source device")
    for d in [*source, *target]:
        if d not in table.devices:
            raise TaskError(f"device {d!r} is not in the {space} data{did_you_mean(d, table.devices)}; see `latbench data info`")
    both = [d for d in target if d in source]
    if both:
        raise TaskError(f"device(s) {', '.join(both)} are both source and target")
    notes = []
    rho = _retest(space, target)
    noisy = [f"{d} ({r:.2f})" for d, r in rho.items() if r is not None and r < generation.RETEST_MIN_SPEARMAN]
    if noisy and not allow_noisy:
        raise TaskError(
            f"target(s) {', '.join(noisy)} have a test-retest Spearman below {generation.RETEST_MIN_SPEARMAN}: their own "
            "timing noise reorders the archs, so scores would measure the noise; remeasure them, or pass --allow-noisy"
        )
    if noisy:
        notes.append(f"noisy target(s) kept (--allow-noisy): {', '.join(noisy)}")
    unknown = [d for d, r in rho.items() if r is None]
    if unknown:
        notes.append(f"no test-retest noise known for target(s) {', '.join(unknown)}")
    space_obj = store.load_space(space)
    seed = task_seed(name)
    ids, block, diff = generation.correlation_block(table, space_obj, source, target)
    complete = set(table.complete_devices())
    pools, arch_pools = Pools(source_sample=(), query_pool=(), eval=()), None
    if all(d in complete for d in [*source, *target]) and len(ids) >= sum(POOL_SIZES[space]):
        pools = generation.make_pools(space, len(ids), seed, space_obj.reference_ids.tolist())
    elif len(ids) >= generation.MIN_COMMON_ARCHS:
        arch_pools = generation.arch_pools(space_obj, ids, seed)
    else:
        raise TaskError(
            f"only {len(ids)} archs are measured on every device of the task; a task needs at least "
            f"{generation.MIN_COMMON_ARCHS} (measure more archs, or choose devices measured on the same archs)"
        )
    missing_refs = np.setdiff1d(space_obj.reference_ids, ids)
    if len(missing_refs):
        notes.append(
            f"{len(missing_refs)} of the {len(space_obj.reference_ids)} reference archs are not measured on every device: "
            "methods that need them (HELP) cannot use those"
        )
    task = TaskSpec(
        id=name,
        version=1,
        space=space,
        kind="user",
        description=f"user task: {', '.join(source) if len(source) <= 3 else f'{len(source)} devices'} -> {', '.join(target)}",
        source=tuple(source),
        target=tuple(target),
        **generation.correlation_fields(block, diff),
        generator={
            "name": "latbench tasks create",
            "version": generation.GENERATOR_VERSION,
            "archs_measured_on_all": int(len(ids)),
            "shares": list(generation.MEASURED_POOL_SHARES) if arch_pools else None,
        },
        seed=seed,
        pools=pools,
        arch_pools=arch_pools,
    )
    folder = Path(folder).expanduser().resolve() if folder is not None else registry.user_tasks_dir()
    path = folder / f"{name}.yaml"
    if path.exists() and not overwrite:
        raise TaskError(f"{path}: a user task of this name exists; pass --overwrite to replace it")
    task = generation.versioned(task, path if path.exists() else None)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(path, task.to_yaml())
    registry.clear_cache()
    return task, path, notes
