"""Tasks: versioned (space, source devices, target devices, arch pools) files in ``tasks/``.

A task file is YAML, validated into a frozen :class:`TaskSpec`. It fixes everything a trial needs
so results are comparable across methods and machines: the devices, the measured difficulty, the
source sample (archs whose latencies a method may use on every source device), and for the target
devices a disjoint query pool (archs a method may ask the oracle to measure) and evaluation set
(never revealed). ``latbench tasks generate`` writes the official files (see
:mod:`latbench.tasks.generation`); ``latbench tasks create`` writes user tasks
(:mod:`latbench.tasks.user`) into the user task folder (``LATBENCH_USER_TASKS``, default
``LATBENCH_HOME/tasks``), which every command reads next to the official ones. User tasks are
never part of a leaderboard suite, and never a config of the built dataset.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from latbench import paths
from latbench.data import store
from latbench.errors import TaskError, UnknownArchError, did_you_mean

TIERS = ("easy", "medium", "hard")
#: The leaderboard's suites and the kind of task each one runs.
SUITES = {
    "main": "generated",  # the easy/medium/hard suite
    "literature": "literature",  # HELP and NASFLAT splits
}
#: Difficulty = mean over targets of the best Spearman with any source device. Fixed thresholds.
TIER_THRESHOLDS = {"easy": 0.93, "medium": 0.80}  # >= 0.93 easy, [0.80, 0.93) medium, < 0.80 hard
#: Protocol sizes per space: (source sample, query pool, evaluation set).
POOL_SIZES = {"nb201": (900, 1000, 2000), "fbnet": (900, 1000, 1000), "ofa": (900, 1000, 1000)}


def tier_of(difficulty: float) -> str:
    if difficulty >= TIER_THRESHOLDS["easy"]:
        return "easy"
    return "medium" if difficulty >= TIER_THRESHOLDS["medium"] else "hard"


def task_seed(task_id: str) -> int:
    """A stable 31-bit seed from the task id (independent of Python's hash randomisation)."""
    return int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


class Pools(BaseModel):
    model_config = ConfigDict(frozen=True)
    source_sample: tuple[int, ...]
    query_pool: tuple[int, ...]
    eval: tuple[int, ...]


class ArchPools(BaseModel):
    """Pools as canonical arch strings: used by tasks over profiler-measured devices, which cover a
    sample of the space, so the task is the same whatever build (with or without HELP) numbers the archs."""

    model_config = ConfigDict(frozen=True)
    source_sample: tuple[str, ...]
    query_pool: tuple[str, ...]
    eval: tuple[str, ...]


class TaskSpec(BaseModel):
    """One task, as its versioned file states it: the source devices a method trains on, the
    target devices it is scored on, and the arch pools of the protocol (source sample, query pool,
    evaluation set). Validated on load: no device is both source and target, pools are disjoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __repr__(self) -> str:  # the pools hold thousands of ids: summarise them
        p = self.arch_pools or self.pools
        return (
            f"TaskSpec(id={self.id!r}, version={self.version}, space={self.space!r}, tier={self.tier!r}, "
            f"source={len(self.source)} devices, target={self.target!r}, pools={len(p.source_sample)}/"
            f"{len(p.query_pool)}/{len(p.eval)} source/query/eval archs)"
        )

    __str__ = __repr__  # print() too: pydantic's own str lists every field

    id: str
    version: int
    space: Literal["nb201", "fbnet", "ofa"]
    kind: Literal["generated", "literature", "measured", "user"]
    tier: Literal["easy", "medium", "hard"] | None = None
    description: str = ""
    source: tuple[str, ...]
    target: tuple[str, ...]
    valid: tuple[str, ...] = ()
    difficulty: float
    best_source_correlation: dict[str, float]
    correlation: dict[str, dict[str, float]]  # target -> source -> Spearman
    generator: dict
    seed: int
    pools: Pools
    arch_pools: ArchPools | None = None  # set instead of (non-empty) ``pools`` for measured-device tasks

    @model_validator(mode="after")
    def _consistent(self):
        groups = {"source": self.source, "target": self.target, "valid": self.valid}
        for name, devs in groups.items():
            if len(set(devs)) != len(devs):
                raise ValueError(f"duplicate device in {name}")
        overlap = (set(self.source) | set(self.valid)) & set(self.target)
        if overlap:
            raise ValueError(f"devices both source/valid and target: {sorted(overlap)}")
        if set(self.source) & set(self.valid):
            raise ValueError("a device is both source and valid")
        if not self.source or not self.target:
            raise ValueError("needs at least one source and one target device")
        p = self.arch_pools or self.pools
        if self.arch_pools and self.pools.eval:
            raise ValueError("give either pools (arch ids) or arch_pools (arch strings), not both")
        if set(p.eval) & (set(p.query_pool) | set(p.source_sample)) or set(p.query_pool) & set(p.source_sample):
            raise ValueError("pools must be disjoint (source_sample, query_pool, eval)")
        for name in ("source_sample", "query_pool", "eval"):
            ids = getattr(p, name)
            if len(set(ids)) != len(ids) or (ids and not self.arch_pools and min(ids) < 0):
                raise ValueError(f"pools.{name} has duplicate or negative arch ids")
        return self

    # ---- helpers used by the protocol and the dataset build ------------------------------
    def check_devices(self, available) -> None:
        """Fail loudly if the task names a device the data does not have (never drop it)."""
        missing = [d for d in self.source + self.valid + self.target if d not in available]
        if missing:
            hint = did_you_mean(missing[0], available) or _help_missing_hint()
            raise TaskError(f"task {self.id}: device(s) {', '.join(missing)} not in the {self.space} data{hint}")

    def check_archs(self, n_archs: int) -> None:
        if self.arch_pools:
            return  # checked when the strings are resolved (id_pools)
        top = max(max(self.pools.eval), max(self.pools.query_pool), max(self.pools.source_sample))
        if top >= n_archs:
            raise TaskError(f"task {self.id}: arch id {top} out of range for {self.space} ({n_archs} archs)")

    def id_pools(self, space=None) -> Pools:
        """The pools as arch ids of the built ``space`` (needed only for tasks with ``arch_pools``)."""
        if not self.arch_pools:
            return self.pools
        if space is None:
            space = store.load_space(self.space)
        return _resolve(self, space)

    def device_role(self, device: str) -> str:
        return "source" if device in self.source else "valid" if device in self.valid else "target"

    def arch_roles(self, n_archs: int, space=None) -> np.ndarray:
        pools = self.id_pools(space)
        role = np.full(n_archs, "unused", dtype=object)
        role[list(pools.source_sample)] = "source-sample"
        role[list(pools.query_pool)] = "query"
        role[list(pools.eval)] = "eval"
        return role

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json")
        if data["arch_pools"] is None:
            del data["arch_pools"]
        return dump_yaml(data)


def _help_missing_hint() -> str:
    """Why public devices can be missing: a build that could not download HELP (measured data only)."""
    try:
        if "help" not in {src["name"] for src in store.info()["sources"]}:
            return (
                " (this dataset was built without the HELP source, e.g. offline: rerun `latbench data build` "
                "with network or LATBENCH_MIRROR)"
            )
    except Exception:
        pass
    return ""


_RESOLVED: dict[tuple[str, int], tuple[object, Pools]] = {}  # (task, id(space)) -> (space kept alive, pools)


def _resolve(task: TaskSpec, space) -> Pools:
    key = (task.id, id(space))
    if key not in _RESOLVED:
        try:
            _RESOLVED[key] = (
                space,
                Pools(
                    **{
                        name: tuple(sorted(space.index(a) for a in getattr(task.arch_pools, name)))
                        for name in ("source_sample", "query_pool", "eval")
                    }
                ),
            )
        except UnknownArchError as e:
            raise TaskError(f"task {task.id}: an arch of its pools is not in this build's {task.space} data ({e})") from None
    return _RESOLVED[key][1]


def dump_yaml(data: dict) -> str:
    """Readable YAML: scalars block style, id lists and correlation rows on one line each."""

    class Dumper(yaml.SafeDumper):
        pass

    def represent_list(dumper, seq):
        flow = all(isinstance(x, (int, float, str)) for x in seq)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", seq, flow_style=flow)

    Dumper.add_representer(list, represent_list)
    Dumper.add_representer(tuple, represent_list)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100, allow_unicode=True)


def _loader():
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_task_file(path: Path) -> TaskSpec:
    try:
        data = yaml.load(path.read_text(), Loader=_loader())
    except OSError as e:
        raise TaskError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise TaskError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        task = TaskSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(file)"
        raise TaskError(f"{path}: invalid task: {loc}: {err['msg']}") from None
    if task.id != path.stem:
        raise TaskError(f"{path}: task id {task.id!r} does not match the file name")
    return task


def user_tasks_dir() -> Path:
    """Where ``latbench tasks create`` writes and every command reads user tasks:
    ``LATBENCH_USER_TASKS``, default ``LATBENCH_HOME/tasks``."""
    env = os.environ.get("LATBENCH_USER_TASKS")
    return Path(env).expanduser().resolve() if env else paths.home() / "tasks"


@functools.cache
def _all(tasks_dir: Path) -> dict[str, TaskSpec]:
    files = sorted(tasks_dir.glob("*.yaml")) if tasks_dir.is_dir() else []
    if not files:
        raise TaskError(
            f"no task files (*.yaml) in {tasks_dir}; set LATBENCH_TASKS to a folder of task files, "
            "or reinstall latbench (its wheel ships the official tasks)"
        )
    return {p.stem: load_task_file(p) for p in files}


@functools.cache
def _user(user_dir: Path, tasks_dir: Path) -> dict[str, TaskSpec]:
    """The user tasks (kind ``user`` only: a file there cannot pose as an official task)."""
    official = _all(tasks_dir)
    out = {}
    for p in sorted(user_dir.glob("*.yaml")) if user_dir.is_dir() else []:
        task = load_task_file(p)
        if task.kind != "user":
            raise TaskError(f"{p}: a user task file must have kind: user (found {task.kind!r})")
        if task.id in official:
            raise TaskError(f"{p}: user task {task.id!r} has the name of an official task; rename the file and its id")
        out[task.id] = task
    return out


def _registry() -> dict[str, TaskSpec]:
    return {**_all(paths.tasks_dir()), **_user(user_tasks_dir(), paths.tasks_dir())}


def official_tasks() -> list[TaskSpec]:
    """The shipped tasks (``LATBENCH_TASKS``), without the user's."""
    return sorted(_all(paths.tasks_dir()).values(), key=_order)


def list_tasks() -> list[TaskSpec]:
    """The official tasks, then the user's."""
    return sorted(_registry().values(), key=_order)


def _order(t: TaskSpec):
    if t.kind in ("literature", "measured", "user"):
        return (("literature", "measured", "user").index(t.kind) + 1, 0, t.id)
    name, _, num = t.id.rpartition("-")
    return (0, TIERS.index(t.tier), int(num) if num.isdigit() else 0)


def load_task(task_id: str) -> TaskSpec:
    """The task ``task_id`` (``hard-3``, ``help-nb201``, a task of yours): TaskError naming the
    nearest ids when there is none. A task file written since the last look (``latbench tasks
    create`` in another process) is found too."""
    tasks = _registry()
    if task_id not in tasks:
        _user.cache_clear()
        tasks = _registry()
    if task_id not in tasks:
        raise TaskError(f"unknown task {task_id!r}{did_you_mean(task_id, tasks)}; see `latbench tasks list`")
    return tasks[task_id]


def select(selector: str) -> list[TaskSpec]:
    """Tasks by id, tier name (``hard``), suite (``main``, ``literature``), ``generated``, ``measured``, ``user`` or
    ``all``; comma-separated.

    A tier name selects the generated tasks of that tier and the measured-device tasks graded so.
    """
    out: list[TaskSpec] = []
    for part in selector.split(","):
        part = part.strip()
        if part == "all":
            chosen = list_tasks()
        elif part in TIERS:
            chosen = [t for t in list_tasks() if t.tier == part and t.kind in ("generated", "measured")]
        elif part in SUITES:
            chosen = [t for t in list_tasks() if t.kind == SUITES[part]]
        elif part in ("generated", "measured", "user"):
            chosen = [t for t in list_tasks() if t.kind == part]
        else:
            chosen = [load_task(part)]
        out += [t for t in chosen if t not in out]
    return out


def clear_cache() -> None:
    _all.cache_clear()
    _user.cache_clear()
    _RESOLVED.clear()
