"""The leaderboard: submission entries, their validation, atomic storage, ranking and rendering.

An entry is one small JSON file under ``leaderboard/entries/`` (schema: :class:`Entry`, exported
to ``leaderboard/entry.schema.json``). ``add`` validates it against the current dataset and task
files (versions, hashes, completeness, recomputable aggregates) and stores it with an atomic
exclusive create, so concurrent adds never lose or overwrite each other. Rankings are per suite
and shot count: mean Spearman over tasks, with a bootstrap interval over tasks; methods whose
intervals overlap share a rank.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from latbench import paths
from latbench.errors import LatbenchError
from latbench.metrics import METRICS
from latbench.results import EvalResult, TaskResult

ENTRY_SCHEMA_VERSION = "1"
MAX_ENTRY_BYTES = 5_000_000
SUITE_SHOTS = (5, 10, 20)
SUITE_TRIALS = 5
SUITES = {
    "main": "generated",  # the easy/medium/hard suite
    "literature": "literature",  # HELP and NASFLAT splits
}


class LeaderboardError(LatbenchError):
    """A submission was rejected; the board is unchanged."""


class MethodInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=80)
    version: str = "unversioned"
    code_ref: str = Field(min_length=1, description="module:Class, package==version or git URL@sha")
    params: dict = {}
    paper_url: str = ""
    code_url: str = ""
    contact: str = ""


class ExternalData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    used: bool = False
    description: str = ""


class Entry(BaseModel):
    """One leaderboard submission: a method's official-protocol results on a whole suite."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal["1"] = ENTRY_SCHEMA_VERSION
    method: MethodInfo
    suite: str
    latbench_version: str
    dataset_version: str
    dataset_hash: str
    protocol: str
    task_versions: dict[str, int]
    shots: list[int]
    trials: int
    results: list[TaskResult]
    seconds: float
    hardware: str = ""
    external_data: ExternalData = ExternalData()
    date: str
    status: Literal["verified", "unverified"] = "unverified"

    @property
    def entry_id(self) -> str:
        """Stable id: method slug + hash of the scored content (so a resubmission is a duplicate)."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.method.name.lower()).strip("-") or "method"
        body = json.dumps([r.model_dump() for r in self.results], sort_keys=True)
        return f"{slug}-{hashlib.sha256((self.method.code_ref + body).encode()).hexdigest()[:10]}"


def entries_dir() -> Path:
    return paths.leaderboard_dir() / "entries"


def suite_tasks(suite: str):
    from latbench.tasks import list_tasks

    if suite not in SUITES:
        raise LeaderboardError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    return [t for t in list_tasks() if t.kind == SUITES[suite]]


def entry_from_result(result: EvalResult, *, suite: str, code_ref: str, hardware: str = "", **method_info) -> Entry:
    from latbench.tasks import get_task

    tasks = sorted({r.task for r in result.results})
    return Entry(
        method=MethodInfo(name=result.method, code_ref=code_ref, params=result.method_params, **method_info),
        suite=suite, latbench_version=result.latbench_version, dataset_version=result.dataset_version,
        dataset_hash=result.dataset_hash, protocol=result.results[0].protocol if result.results else "",
        task_versions={t: get_task(t).version for t in tasks}, shots=sorted({r.shots for r in result.results}),
        trials=max((len(r.trials) for r in result.results), default=0), results=result.results,
        seconds=result.seconds, hardware=hardware, date=time.strftime("%Y-%m-%d"),
    )


# ------------------------------------------------------------------------------------ validation
def load_entry(path: Path) -> Entry:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise LeaderboardError(f"{path}: cannot read ({e.strerror})") from None
    if size > MAX_ENTRY_BYTES:
        raise LeaderboardError(f"{path}: {size:,} bytes is larger than the {MAX_ENTRY_BYTES:,}-byte limit")
    raw = path.read_bytes()
    if raw[:2] == b"\x80\x04" or raw[:1] == b"\x80":
        raise LeaderboardError(f"{path}: looks like a pickle; entries must be JSON")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LeaderboardError(f"{path}: not valid JSON ({e})") from None
    except ValueError as e:
        raise LeaderboardError(f"{path}: {e}") from None
    try:
        return Entry.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(entry)"
        raise LeaderboardError(f"{path}: schema error at {loc}: {err['msg']}") from None


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name} in JSON")


def validate(entry: Entry) -> None:
    """Raise LeaderboardError at the first problem; the checks a board maintainer would make."""
    from latbench.data import store
    from latbench.tasks import get_task

    info = store.info()
    if entry.dataset_hash != info["content_hash"]:
        raise LeaderboardError(f"dataset hash {entry.dataset_hash[:12]}... does not match the current dataset "
                               f"{info['content_hash'][:12]}... (rerun on dataset {info['dataset_version']})")
    if not entry.protocol.startswith("official-"):
        raise LeaderboardError(f"protocol {entry.protocol!r}: the board only accepts the official protocol")
    expected = suite_tasks(entry.suite)
    for t in expected:
        if entry.task_versions.get(t.id) != t.version:
            raise LeaderboardError(f"task {t.id}: version {entry.task_versions.get(t.id)} in the entry, current is {t.version}")
    extra = set(entry.task_versions) - {t.id for t in expected}
    if extra:
        raise LeaderboardError(f"tasks {sorted(extra)} are not part of suite {entry.suite!r}")
    if sorted(entry.shots) != list(SUITE_SHOTS) or entry.trials != SUITE_TRIALS:
        raise LeaderboardError(f"suite {entry.suite!r} needs shots {list(SUITE_SHOTS)} and {SUITE_TRIALS} trials "
                               f"(entry has shots {entry.shots}, {entry.trials} trials)")
    got = {(r.task, r.shots): r for r in entry.results}
    if len(got) != len(entry.results):
        raise LeaderboardError("duplicate (task, shots) result blocks")
    for t in expected:
        for k in SUITE_SHOTS:
            r = got.get((t.id, k))
            if r is None:
                raise LeaderboardError(f"missing results for task {t.id} at k={k}")
            _check_block(r, get_task(t.id))


def _check_block(r: TaskResult, task) -> None:
    where = f"{r.task} k={r.shots}"
    if r.task_version != task.version:
        raise LeaderboardError(f"{where}: task_version {r.task_version}, current is {task.version}")
    if sorted(t.trial for t in r.trials) != list(range(SUITE_TRIALS)):
        raise LeaderboardError(f"{where}: needs trials 0..{SUITE_TRIALS - 1}, has {sorted(t.trial for t in r.trials)}")
    from latbench.protocol import trial_seed

    for tr in r.trials:
        if tr.seed != trial_seed(task, tr.trial):
            raise LeaderboardError(f"{where} trial {tr.trial}: seed {tr.seed} is not the protocol's seed")
        if set(tr.devices) != set(task.target):
            raise LeaderboardError(f"{where} trial {tr.trial}: devices {sorted(tr.devices)}, expected {sorted(task.target)}")
        for dev, m in tr.devices.items():
            _check_metrics(m, f"{where} trial {tr.trial} {dev}")
            if len(set(tr.measured.get(dev, []))) > r.shots or not set(tr.measured.get(dev, [])) <= set(task.pools.query_pool):
                raise LeaderboardError(f"{where} trial {tr.trial} {dev}: measured archs exceed k or leave the query pool")
        for metric in METRICS:
            mean = float(np.mean([tr.devices[d][metric] for d in task.target]))
            if not math.isclose(mean, tr.mean[metric], rel_tol=1e-9, abs_tol=1e-12):
                raise LeaderboardError(f"{where} trial {tr.trial}: mean {metric} {tr.mean[metric]} does not recompute ({mean})")
    for metric in METRICS:
        vals = np.array([tr.mean[metric] for tr in r.trials])
        a = r.aggregate.get(metric, {})
        if not (math.isclose(a.get("mean", math.nan), vals.mean(), rel_tol=1e-9, abs_tol=1e-12)
                and math.isclose(a.get("std", math.nan), vals.std(), rel_tol=1e-9, abs_tol=1e-12)):
            raise LeaderboardError(f"{where}: aggregate {metric} does not recompute from the trials")


def _check_metrics(m: dict, where: str) -> None:
    if set(m) != set(METRICS):
        raise LeaderboardError(f"{where}: metrics {sorted(m)}, expected {sorted(METRICS)}")
    for k, v in m.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise LeaderboardError(f"{where}: {k} is not a finite number ({v!r})")
    if not (-1 <= m["spearman"] <= 1 and -1 <= m["kendall"] <= 1):
        raise LeaderboardError(f"{where}: rank correlations must lie in [-1, 1]")
    if m["mape"] < 0 or m["rmse"] < 0 or not (0 <= m["acc5"] <= 1 and 0 <= m["acc10"] <= 1):
        raise LeaderboardError(f"{where}: negative error or accuracy outside [0, 1]")


# ------------------------------------------------------------------------------------- storage
def add(path: Path, *, folder: Path | None = None) -> Path:
    """Validate and store an entry file; a duplicate (or a concurrent twin) is refused."""
    entry = load_entry(path)
    validate(entry)
    return store_entry(entry, folder=folder)


def store_entry(entry: Entry, *, folder: Path | None = None, replace: bool = False) -> Path:
    """Write ``<entry_id>.json`` atomically; exclusive unless ``replace`` (os.link fails if it exists)."""
    folder = Path(folder or entries_dir())
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{entry.entry_id}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(entry.model_dump_json())
        os.chmod(tmp, 0o644)
        if replace:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise LeaderboardError(f"duplicate entry: {target.name} is already on the board") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def check_same(entry: Entry, fresh: EvalResult, rel: float = 1e-6) -> None:
    """Raise unless a re-run reproduces every per-device metric of the entry."""
    fresh_blocks = {(r.task, r.shots): r for r in fresh.results}
    for r in entry.results:
        f = fresh_blocks.get((r.task, r.shots))
        if f is None:
            raise LeaderboardError(f"re-run has no results for {r.task} k={r.shots}")
        for a, b in zip(r.trials, f.trials):
            for dev, m in a.devices.items():
                for metric, v in m.items():
                    if not math.isclose(v, b.devices[dev][metric], rel_tol=rel, abs_tol=1e-9):
                        raise LeaderboardError(f"{r.task} k={r.shots} trial {a.trial} {dev}: {metric} {v} != re-run {b.devices[dev][metric]}")


def mark_verified(path: Path, entry: Entry) -> None:
    entry = entry.model_copy(update={"status": "verified"})
    store_entry(entry, folder=Path(path).parent, replace=True)


def list_entries(folder: Path | None = None) -> list[Entry]:
    folder = Path(folder or entries_dir())
    return [load_entry(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


# ------------------------------------------------------------------------------------- ranking
def rank(entries: list[Entry], suite: str, shots: int, *, boot: int = 1000, seed: int = 0) -> list[dict]:
    """Rows sorted by mean Spearman over tasks; ``rank`` is shared when bootstrap intervals overlap."""
    rows = []
    for e in entries:
        if e.suite != suite:
            continue
        blocks = [r for r in e.results if r.shots == shots]
        if not blocks:
            continue
        task_means = np.array([r.aggregate["spearman"]["mean"] for r in blocks])
        per_trial = np.array([[t.mean["spearman"] for t in r.trials] for r in blocks]).mean(axis=0)
        rng = np.random.default_rng(seed)
        draws = task_means[rng.integers(0, len(task_means), (boot, len(task_means)))].mean(axis=1)
        lo, hi = np.percentile(draws, [2.5, 97.5])
        secondary = {m: float(np.mean([r.aggregate[m]["mean"] for r in blocks])) for m in ("kendall", "mape", "acc10")}
        rows.append({
            "entry": e.entry_id, "method": e.method.name, "status": e.status, "spearman": float(task_means.mean()),
            "std": float(per_trial.std()), "ci": (float(lo), float(hi)), **secondary,
            "seconds": e.seconds, "tasks": {r.task: r.aggregate["spearman"]["mean"] for r in blocks},
        })
    rows.sort(key=lambda r: -r["spearman"])
    for i, row in enumerate(rows):
        tied_with = [p for p in rows[:i] if p["ci"][0] <= row["ci"][1] and row["ci"][0] <= p["ci"][1]]
        row["rank"] = min((p["rank"] for p in tied_with), default=i + 1)
    return rows


def render_markdown(entries: list[Entry]) -> str:
    lines = ["# latbench leaderboard", "",
             "Generated by `latbench leaderboard render` from `leaderboard/entries/*.json`; do not edit.",
             "Ranked by mean Spearman ρ over the suite's tasks (± std over trials; [95 % bootstrap interval over tasks]);",
             "methods whose intervals overlap share a rank.", ""]
    for suite in SUITES:
        for k in SUITE_SHOTS:
            rows = rank(entries, suite, k)
            if not rows:
                continue
            lines += [f"## {suite} suite, k = {k}", "",
                      "| rank | method | Spearman | 95 % CI | Kendall | MAPE % | ±10 % | time (s) | status |",
                      "|---|---|---|---|---|---|---|---|---|"]
            lines += [f"| {r['rank']} | {r['method']} | {r['spearman']:.3f} ± {r['std']:.3f} | [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | "
                      f"{r['kendall']:.3f} | {r['mape']:.1f} | {r['acc10']:.2f} | {r['seconds']:.0f} | {r['status']} |" for r in rows]
            lines.append("")
    return "\n".join(lines) + "\n"


def export_schema(path: Path) -> None:
    path.write_text(json.dumps(Entry.model_json_schema(), indent=1) + "\n")
