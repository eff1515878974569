"""The leaderboard: submission entries, their validation, atomic storage, ranking and rendering.

An entry is one small JSON file under ``leaderboard/entries/`` (schema: :class:`Entry`, exported
to ``leaderboard/entry.schema.json``). ``add`` validates it against the current dataset and task
files (versions, hashes, completeness, recomputable aggregates) and stores it with an atomic
exclusive create, so concurrent adds never lose or overwrite each other. Rankings are per suite
and shot count: mean Spearman over tasks, with a bootstrap interval over tasks; methods whose
intervals overlap share a rank.

Predictions made elsewhere (``latbench submit --predictions DIR``) are scored by
:func:`score_predictions` from one CSV per task / shot count / trial / target device.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import time
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from latbench import __version__, paths
from latbench.data import store
from latbench.errors import LatbenchError, MethodError
from latbench.eval.results import EvalResult, TaskResult, TrialResult, jsonable_params
from latbench.eval.sweep import file_name
from latbench.io import write_text
from latbench.methods import registry as methods_mod
from latbench.methods.registry import code_ref as resolved_code_ref
from latbench.protocol.metrics import HIGHER_IS_BETTER, METRICS
from latbench.protocol.scoring import score
from latbench.protocol.trial import PROTOCOL_VERSION, trial_seed
from latbench.tasks.spec import get_task, list_tasks, select

ENTRY_SCHEMA_VERSION = "1"
MAX_ENTRY_BYTES = 5_000_000
SUITE_SHOTS = (5, 10, 20)
SUITE_TRIALS = 5
#: Protocol labels the board accepts: a latbench run, or predictions scored by ``submit --predictions``.
OFFICIAL_PROTOCOL = f"official-v{PROTOCOL_VERSION}"
PREDICTIONS_PROTOCOL = f"official-v{PROTOCOL_VERSION}-predictions"
ACCEPTED_PROTOCOLS = (OFFICIAL_PROTOCOL, PREDICTIONS_PROTOCOL)
MAX_PREDICTION_BYTES = 1_000_000  # one file holds <= 2,000 rows of ~20 bytes
PREDICTION_HEADER = ("arch_id", "latency_ms")
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
    dataset_hash: str = Field(description="sha256 of the data the suite's tasks read (latbench.data.store.data_hash): "
                                          "the arch strings and latencies of every source, validation and target device")
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
    notes: str = Field("", max_length=2000)

    @property
    def entry_id(self) -> str:
        """Stable id: method slug + hash of the scored content (so a resubmission is a duplicate)."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.method.name.lower()).strip("-") or "method"
        body = json.dumps([r.model_dump() for r in self.results], sort_keys=True)
        return f"{slug}-{hashlib.sha256((self.method.code_ref + body).encode()).hexdigest()[:10]}"


def entries_dir() -> Path:
    return paths.leaderboard_dir() / "entries"


def suite_tasks(suite: str):
    if suite not in SUITES:
        raise LeaderboardError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    return [t for t in list_tasks() if t.kind == SUITES[suite]]


def entry_from_result(result: EvalResult, *, suite: str, code_ref: str, hardware: str = "", **method_info) -> Entry:
    tasks = sorted({r.task for r in result.results})
    return Entry(
        method=MethodInfo(name=result.method, code_ref=code_ref, params=result.method_params, **method_info),
        suite=suite, latbench_version=result.latbench_version, dataset_version=result.dataset_version,
        dataset_hash=store.data_hash([get_task(t) for t in tasks]), protocol=result.results[0].protocol if result.results else "",
        task_versions={t: get_task(t).version for t in tasks}, shots=sorted({r.shots for r in result.results}),
        trials=max((len(r.trials) for r in result.results), default=0), results=result.results,
        seconds=result.seconds, hardware=hardware, date=time.strftime("%Y-%m-%d"),
    )


# ------------------------------------------------------------------------------------ validation
def load_entry(path: Path) -> Entry:
    """Parse an entry file: plain JSON only, size-limited, every number finite, schema-checked."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_ENTRY_BYTES + 1)
    except OSError as e:
        raise LeaderboardError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) > MAX_ENTRY_BYTES:
        raise LeaderboardError(f"{path}: larger than the {MAX_ENTRY_BYTES:,}-byte limit for an entry")
    if raw[:1] == b"\x80":
        raise LeaderboardError(f"{path}: looks like a pickle; entries must be JSON (pickles are never loaded)")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise LeaderboardError(f"{path}: not UTF-8 text; entries must be JSON") from None
    except json.JSONDecodeError as e:
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


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise ValueError(f"number {text} overflows to infinity")
    return value


def validate(entry: Entry) -> None:
    """Raise LeaderboardError at the first problem; the checks a board maintainer would make."""
    expected = suite_tasks(entry.suite)  # unknown suite first: nothing else makes sense without it
    info, current = store.info(), store.data_hash(expected)
    if entry.dataset_hash != current:
        raise LeaderboardError(f"dataset hash {entry.dataset_hash[:12]}... does not match the current dataset's data for suite "
                               f"{entry.suite!r}, {current[:12]}... (rerun on dataset {info['dataset_version']})")
    if entry.protocol not in ACCEPTED_PROTOCOLS:
        raise LeaderboardError(f"protocol {entry.protocol!r}: the board only accepts {' or '.join(ACCEPTED_PROTOCOLS)}")
    if not math.isfinite(entry.seconds) or entry.seconds < 0:
        raise LeaderboardError(f"seconds must be a finite number >= 0 (got {entry.seconds})")
    missing = [t.id for t in expected if t.id not in entry.task_versions]
    if missing:
        raise LeaderboardError(f"missing task(s) {', '.join(missing)}: suite {entry.suite!r} needs all of "
                               f"{', '.join(t.id for t in expected)}")
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
    wanted = {(t.id, k) for t in expected for k in SUITE_SHOTS}
    for t in expected:
        for k in SUITE_SHOTS:
            r = got.get((t.id, k))
            if r is None:
                raise LeaderboardError(f"missing results for task {t.id} at k={k}")
            if r.protocol != entry.protocol:
                raise LeaderboardError(f"{t.id} k={k}: protocol {r.protocol!r} differs from the entry's {entry.protocol!r}")
            _check_block(r, get_task(t.id))
    stray = sorted(set(got) - wanted)
    if stray:
        raise LeaderboardError(f"result blocks outside suite {entry.suite!r} (task, k): {stray[:3]}")


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _check_block(r: TaskResult, task) -> None:
    where = f"{r.task} k={r.shots}"
    if r.task_version != task.version:
        raise LeaderboardError(f"{where}: task_version {r.task_version}, current is {task.version}")
    if r.space != task.space or not _close(r.difficulty, task.difficulty):
        raise LeaderboardError(f"{where}: space/difficulty ({r.space}, {r.difficulty}) differ from the task file "
                               f"({task.space}, {task.difficulty})")
    if sorted(t.trial for t in r.trials) != list(range(SUITE_TRIALS)):
        raise LeaderboardError(f"{where}: needs trials 0..{SUITE_TRIALS - 1}, has {sorted(t.trial for t in r.trials)}")
    pool = set(task.id_pools().query_pool)
    for tr in r.trials:
        here = f"{where} trial {tr.trial}"
        if tr.seed != trial_seed(task, tr.trial):
            raise LeaderboardError(f"{here}: seed {tr.seed} is not the protocol's seed")
        if set(tr.devices) != set(task.target):
            raise LeaderboardError(f"{here}: devices {sorted(tr.devices)}, expected {sorted(task.target)}")
        for dev, m in tr.devices.items():
            _check_metrics(m, f"{here} {dev}")
            measured = set(tr.measured.get(dev, []))
            if len(measured) > r.shots or not measured <= pool:
                raise LeaderboardError(f"{here} {dev}: measured archs exceed k={r.shots} or leave the query pool")
        if set(tr.measured) - set(task.target):
            raise LeaderboardError(f"{here}: measurements on devices that are not targets: {sorted(set(tr.measured) - set(task.target))}")
        if any(not math.isfinite(v) or v < 0 for v in tr.seconds.values()):
            raise LeaderboardError(f"{here}: seconds must be finite and >= 0 ({tr.seconds})")
        for name, summary in (("mean", tr.mean), ("worst", tr.worst)):
            if set(summary) != set(METRICS):
                raise LeaderboardError(f"{here}: {name} has metrics {sorted(summary)}, expected {sorted(METRICS)}")
        for metric in METRICS:
            vals = [tr.devices[d][metric] for d in task.target]
            mean = float(np.mean(vals))
            if not _close(mean, tr.mean[metric]):
                raise LeaderboardError(f"{here}: mean {metric} {tr.mean[metric]} does not recompute ({mean})")
            worst = float((min if HIGHER_IS_BETTER[metric] else max)(vals))
            if not _close(worst, tr.worst[metric]):
                raise LeaderboardError(f"{here}: worst {metric} {tr.worst[metric]} does not recompute ({worst})")
    if set(r.aggregate) != set(METRICS):
        raise LeaderboardError(f"{where}: aggregate has metrics {sorted(r.aggregate)}, expected {sorted(METRICS)}")
    for metric in METRICS:
        vals = np.array([tr.mean[metric] for tr in r.trials])
        a = r.aggregate[metric]
        if set(a) != {"mean", "std"} or not (_close(a["mean"], vals.mean()) and _close(a["std"], vals.std())):
            raise LeaderboardError(f"{where}: aggregate {metric} {a} does not recompute from the trials "
                                   f"(mean {vals.mean()}, std {vals.std()})")


def _check_metrics(m: dict, where: str) -> None:
    if set(m) != set(METRICS):
        raise LeaderboardError(f"{where}: metrics {sorted(m)}, expected {sorted(METRICS)}")
    for k, v in m.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise LeaderboardError(f"{where}: {k} is not a finite number ({v!r})")
    if not (-1 <= m["spearman"] <= 1 and -1 <= m["kendall"] <= 1):
        raise LeaderboardError(f"{where}: rank correlations must lie in [-1, 1] "
                               f"(spearman {m['spearman']}, kendall {m['kendall']})")
    if m["mape"] < 0 or m["rmse"] < 0 or not (0 <= m["acc5"] <= 1 and 0 <= m["acc10"] <= 1):
        raise LeaderboardError(f"{where}: negative error or accuracy outside [0, 1] "
                               f"(mape {m['mape']}, rmse {m['rmse']}, acc5 {m['acc5']}, acc10 {m['acc10']})")


# ------------------------------------------------------------------------------------- storage
def add(path: Path, *, folder: Path | None = None) -> Path:
    """Validate and store an entry file; a duplicate (or a concurrent twin) is refused."""
    entry = load_entry(path)
    if entry.status != "unverified":
        raise LeaderboardError(f"{path}: status {entry.status!r}: only `latbench leaderboard verify` marks an entry verified")
    validate(entry)
    return store_entry(entry, folder=folder)


def store_entry(entry: Entry, *, folder: Path | None = None, replace: bool = False) -> Path:
    """Write ``<entry_id>.json`` atomically; exclusive unless ``replace`` (os.link fails if it exists).

    The file is complete before it gets its name (written to a hidden temp file, fsynced, then
    hard-linked), so readers never see half an entry and of concurrent identical adds exactly one
    wins. The same scored content under another method name is refused too (best effort: that
    check is not atomic, the same-name one is).
    """
    folder = Path(folder or entries_dir())
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{entry.entry_id}.json"
    if not replace:
        content = entry.entry_id.rsplit("-", 1)[1]
        twins = [p.name for p in folder.glob(f"*-{content}.json") if p.name != target.name]
        if twins:
            raise LeaderboardError(f"duplicate entry: the same code_ref and results are already on the board as {twins[0]}")
    try:
        return write_text(target, entry.model_dump_json(), exclusive=not replace)
    except FileExistsError:
        raise LeaderboardError(f"duplicate entry: {target.name} is already on the board") from None


def check_same(entry: Entry, fresh: EvalResult, rel: float = 1e-6) -> None:
    """Raise unless a re-run reproduces every per-device metric of the entry."""
    fresh_blocks = {(r.task, r.shots): r for r in fresh.results}
    for r in entry.results:
        f = fresh_blocks.get((r.task, r.shots))
        if f is None:
            raise LeaderboardError(f"re-run has no results for {r.task} k={r.shots}")
        fresh_trials = {t.trial: t for t in f.trials}
        for a in r.trials:
            b = fresh_trials.get(a.trial)
            if b is None:
                raise LeaderboardError(f"re-run has no trial {a.trial} for {r.task} k={r.shots}")
            for dev, m in a.devices.items():
                if dev not in b.devices:
                    raise LeaderboardError(f"re-run has no results on {dev} for {r.task} k={r.shots}")
                for metric, v in m.items():
                    if not math.isclose(v, b.devices[dev][metric], rel_tol=rel, abs_tol=1e-9):
                        raise LeaderboardError(f"does not reproduce: {r.task} k={r.shots} trial {a.trial} {dev}: "
                                               f"{metric} {v} in the entry, {b.devices[dev][metric]} in the re-run")


def verify_spec(entry: Entry) -> str:
    """What ``verify`` runs: the registered method of the entry's name when its class is the one the
    entry names (also under a module path the class had before a package rename), else ``code_ref``."""
    registered = methods_mod.available().get(entry.method.name)
    if registered is not None and registered.rpartition(":")[2] == entry.method.code_ref.rpartition(":")[2]:
        return entry.method.name
    return entry.method.code_ref


def verify_params(entry: Entry, spec: str) -> dict:
    """The entry's parameters as the method takes them: a stored value equal to the JSON form of the
    class default (e.g. a tuple stored as a list or as its repr) is given back as that default."""
    defaults = methods_mod.resolve(spec)().get_params()
    plain = jsonable_params(defaults)
    out = {}
    for key, value in entry.method.params.items():
        if key in defaults and (value == plain[key] or value == repr(defaults[key])
                                or (isinstance(defaults[key], tuple) and value == list(defaults[key]))):
            out[key] = defaults[key]
        else:
            out[key] = value
    return out


def mark_verified(path: Path, entry: Entry) -> None:
    entry = entry.model_copy(update={"status": "verified"})
    store_entry(entry, folder=Path(path).parent, replace=True)


def list_entries(folder: Path | None = None) -> list[Entry]:
    """Stored entries (hidden names are in-flight temp files and skipped)."""
    folder = Path(folder or entries_dir())
    if not folder.is_dir():
        return []
    return [load_entry(p) for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]


# --------------------------------------------------------------------------------- predictions
def prediction_path(root: Path, task_id: str, shots: int, trial: int, device: str) -> Path:
    """Where ``submit --predictions`` expects one file: ``<root>/<task>/k<k>/trial<t>/<device>.csv``."""
    return Path(root) / task_id / f"k{shots}" / f"trial{trial}" / f"{device}.csv"


def write_prediction_csv(path: Path, arch_ids, latency_ms) -> None:
    """Write one predictions file in the accepted format (header ``arch_id,latency_ms``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(PREDICTION_HEADER)] + [f"{int(i)},{float(v)!r}" for i, v in zip(arch_ids, latency_ms)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_prediction_csv(path: Path, eval_ids) -> np.ndarray:
    """Latencies of ``path`` in the order of ``eval_ids``; LeaderboardError on any malformed content.

    The file must be UTF-8 text: the header ``arch_id,latency_ms``, then exactly one
    ``<int>,<float>`` line per evaluation arch (any order, no quoting): no duplicate, missing or
    foreign ids, every latency finite and > 0. Blank lines are ignored.
    """
    path = Path(path)
    text = _prediction_text(path)
    eval_ids = np.asarray(eval_ids, dtype=np.int64)
    fast = _parse_well_formed(text, eval_ids)
    return fast if fast is not None else _parse_strict(path, text, eval_ids)


_ROW = re.compile(r"^[ \t]*([0-9]+)[ \t]*,[ \t]*([0-9.eE+\-]+)[ \t]*\r?$", re.M)


def _prediction_text(path: Path) -> str:
    with path.open("rb") as f:
        raw = f.read(MAX_PREDICTION_BYTES + 1)
    if len(raw) > MAX_PREDICTION_BYTES:
        raise LeaderboardError(f"{path}: larger than the {MAX_PREDICTION_BYTES:,}-byte limit for a predictions file")
    if raw[:1] == b"\x80":
        raise LeaderboardError(f"{path}: looks like a pickle; predictions must be CSV (pickles are never loaded)")
    if raw[:4] == b"PAR1" or b"\x00" in raw:
        raise LeaderboardError(f"{path}: binary content; predictions must be a CSV text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LeaderboardError(f"{path}: not a UTF-8 CSV file ({e})") from None


def _parse_well_formed(text: str, eval_ids: np.ndarray) -> np.ndarray | None:
    """Vectorised path for a valid file; None whenever anything is off (then the strict parser explains)."""
    header, _, body = text.partition("\n")
    if tuple(c.strip() for c in header.split(",")) != PREDICTION_HEADER:
        return None
    rows = _ROW.findall(body)
    if not rows or len(rows) != sum(1 for line in body.split("\n") if line.strip()) or len(rows) != len(eval_ids):
        return None
    ids_text, lat_text = zip(*rows)
    try:
        lat = np.array(list(map(float, lat_text)), dtype=np.float64)
    except ValueError:
        return None
    if not (np.isfinite(lat).all() and (lat > 0).all()):
        return None
    ids = np.array(list(map(int, ids_text)), dtype=np.int64)
    order, eval_order = np.argsort(ids, kind="stable"), np.argsort(eval_ids, kind="stable")
    if not np.array_equal(ids[order], eval_ids[eval_order]):  # eval ids are unique: same sorted ids = same set
        return None
    out = np.empty(len(eval_ids), dtype=np.float64)
    out[eval_order] = lat[order]
    return out


def _parse_strict(path: Path, text: str, eval_ids: np.ndarray) -> np.ndarray:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines or tuple(c.strip() for c in lines[0][1].split(",")) != PREDICTION_HEADER:
        got = lines[0][1][:60] if lines else "an empty file"
        raise LeaderboardError(f"{path}: the first line must be the header {','.join(PREDICTION_HEADER)} (got {got!r})")
    body = lines[1:]
    parts = [line.split(",") for _, line in body]
    for (n, _), row in zip(body, parts):
        if len(row) != 2:
            raise LeaderboardError(f"{path}:{n}: expected 2 columns (arch_id,latency_ms), got {len(row)}")
    id_text = [row[0].strip() for row in parts]
    for (n, _), a in zip(body, id_text):
        if not (a.isascii() and a.isdigit()):
            raise LeaderboardError(f"{path}:{n}: arch_id {a[:20]!r} is not a non-negative integer")
    lat_text = [row[1].strip() for row in parts]
    try:
        lat = np.array([float(v) for v in lat_text], dtype=np.float64)
    except ValueError:
        n, v = next((n, v) for (n, _), v in zip(body, lat_text) if not _is_float(v))
        raise LeaderboardError(f"{path}:{n}: latency_ms {v[:20]!r} is not a number") from None
    bad = np.flatnonzero(~np.isfinite(lat) | (lat <= 0))
    if len(bad):
        raise LeaderboardError(f"{path}:{body[bad[0]][0]}: latency_ms must be a finite number > 0, got {lat_text[bad[0]][:20]}")
    ids = [int(a) for a in id_text]
    seen: dict[int, int] = {}
    for (n, _), i in zip(body, ids):
        if i in seen:
            raise LeaderboardError(f"{path}:{n}: duplicate arch_id {i} (first on line {seen[i]})")
        seen[i] = n
    foreign = sorted(set(seen) - set(eval_ids.tolist()))
    if foreign:
        raise LeaderboardError(f"{path}: {len(foreign)} arch id(s) are not in the task's evaluation set "
                               f"(e.g. {foreign[0]}, line {seen[foreign[0]]}); predict exactly task.pools.eval")
    if len(ids) != len(eval_ids):
        missing = [int(i) for i in eval_ids if int(i) not in seen]
        raise LeaderboardError(f"{path}: {len(ids)} rows, expected {len(eval_ids)} (one per evaluation arch); "
                               f"missing e.g. arch {missing[0]}")
    by_id = dict(zip(ids, lat.tolist()))
    return np.array([by_id[i] for i in eval_ids.tolist()], dtype=np.float64)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def method_identity(spec: str) -> tuple[str, str]:
    """(display name, code_ref) for ``--method``: like a real run when it resolves, else the text itself."""
    try:
        cls = methods_mod.resolve(spec)
    except MethodError:
        return spec.rpartition(":")[2] or spec, spec
    return cls.name or cls.__name__, resolved_code_ref(spec)


def score_predictions(pred_dir: Path, *, suite: str, method: str, params: dict | None = None, hardware: str = "",
                      **method_info) -> Entry:
    """Score predictions made outside latbench into an entry (``latbench submit --predictions DIR``).

    Layout (fixed names, like WILDS' prediction folders), for every task of the suite, every shot
    count k in (5, 10, 20), trial t in 0..4 and target device::

        DIR/<task>/k<k>/trial<t>/<device>.csv      e.g. DIR/easy-1/k5/trial0/pixel3.csv

    each with the header ``arch_id,latency_ms`` and one row per arch of the task's evaluation set
    (``get_task(task).pools.eval``, any order). Predictions for trial t must come from adapting
    with the protocol of trial t (seed ``latbench.protocol.trial_seed(task, t)``, k measurements
    from ``task.pools.query_pool``). Anything else in DIR (other files, pickles, parquet) is refused.

    The entry's protocol is ``official-v1-predictions``: the measured archs and timings are unknown
    (empty lists, zero seconds), and ``notes`` says so. ``method`` names the method (a registered
    name or ``module:Class``); ``leaderboard verify`` can re-run it when that code is importable.
    """
    root = Path(pred_dir)
    if not root.is_dir():
        raise LeaderboardError(f"{root}: predictions folder not found")
    tasks = suite_tasks(suite)
    expected = {prediction_path(root, t.id, k, i, d) for t in tasks for k in SUITE_SHOTS
                for i in range(SUITE_TRIALS) for d in t.target}
    present = {p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}
    unexpected = sorted(present - expected)
    if unexpected:
        raise LeaderboardError(f"{unexpected[0]}: unexpected file in the predictions folder ({len(unexpected)} in all); "
                               f"only <task>/k<k>/trial<t>/<device>.csv for suite {suite!r} are accepted")
    missing = sorted(expected - present)
    if missing:
        raise LeaderboardError(f"missing {len(missing)} of {len(expected)} prediction files, e.g. {missing[0]}")
    tic = time.perf_counter()
    tables: dict[str, object] = {}
    results = []
    for task in tasks:
        if task.space not in tables:
            tables[task.space] = store.load_latency(task.space)
        table = tables[task.space]
        eval_ids = np.array(task.id_pools().eval, dtype=np.int64)
        y_true = {d: table.device(d)[eval_ids] for d in task.target}
        for k in SUITE_SHOTS:
            trials = []
            for i in range(SUITE_TRIALS):
                y_pred = {d: read_prediction_csv(prediction_path(root, task.id, k, i, d), eval_ids) for d in task.target}
                try:
                    s = score(y_true, y_pred)
                except MethodError as e:
                    raise LeaderboardError(f"{task.id} k={k} trial {i}: {e}") from None
                trials.append(TrialResult(trial=i, seed=trial_seed(task, i), devices=s["devices"], mean=s["mean"],
                                          worst=s["worst"], measured={d: [] for d in task.target},
                                          seconds={"fit": 0.0, "adapt": 0.0, "predict": 0.0}))
            results.append(TaskResult.from_trials(task, k, PREDICTIONS_PROTOCOL, trials))
    info = store.info()
    name, code_ref = method_identity(method)
    return Entry(
        method=MethodInfo(name=name, code_ref=code_ref, params=params or {}, **method_info), suite=suite,
        latbench_version=__version__, dataset_version=info["dataset_version"], dataset_hash=store.data_hash(tasks),
        protocol=PREDICTIONS_PROTOCOL, task_versions={t.id: t.version for t in tasks}, shots=list(SUITE_SHOTS),
        trials=SUITE_TRIALS, results=results, seconds=0.0, hardware=hardware, date=time.strftime("%Y-%m-%d"),
        notes=f"scored from predictions made outside latbench in {time.perf_counter() - tic:.1f} s: adaptation and "
              "prediction ran elsewhere, so the measured archs (recorded as empty lists) and timings are unknown",
    )


# ------------------------------------------------------------------------------------- ranking
def rank(entries: list[Entry], suite: str, shots: int, *, boot: int = 1000, seed: int = 0,
         tasks: set[str] | None = None) -> list[dict]:
    """Rows sorted by mean Spearman over tasks (optionally only ``tasks``), best first.

    ``std`` is the std over trials of the per-trial mean over tasks; ``ci`` a 95 % bootstrap
    interval over tasks. ``rank`` = 1 + the number of methods whose interval lies entirely above
    this one's, so methods with overlapping intervals share a rank (and a chain of overlaps does
    not drag a clearly worse method up to rank 1).
    """
    rows = []
    for e in entries:
        if e.suite != suite:
            continue
        blocks = [r for r in e.results if r.shots == shots and (tasks is None or r.task in tasks)]
        if not blocks:
            continue
        task_means = np.array([r.aggregate["spearman"]["mean"] for r in blocks])
        per_trial = np.array([[t.mean["spearman"] for t in sorted(r.trials, key=lambda t: t.trial)] for r in blocks]).mean(axis=0)
        rng = np.random.default_rng(seed)
        draws = task_means[rng.integers(0, len(task_means), (boot, len(task_means)))].mean(axis=1)
        lo, hi = np.percentile(draws, [2.5, 97.5])
        secondary = {m: float(np.mean([r.aggregate[m]["mean"] for r in blocks])) for m in ("kendall", "mape", "acc10")}
        rows.append({
            "entry": e.entry_id, "method": e.method.name, "status": e.status, "protocol": e.protocol,
            "spearman": float(task_means.mean()), "std": float(per_trial.std()), "ci": (float(lo), float(hi)), **secondary,
            "seconds": e.seconds, "tasks": {r.task: r.aggregate["spearman"]["mean"] for r in blocks},
        })
    rows.sort(key=lambda r: (-r["spearman"], r["method"], r["entry"]))
    for row in rows:
        row["rank"] = 1 + sum(p["ci"][0] > row["ci"][1] for p in rows if p is not row)
    return rows


#: what can open a markdown construct inside a table cell (links, images, emphasis, code, cell breaks);
#: < > & are HTML-escaped instead
_MD_SPECIAL = re.compile(r"([\\`*_\[\]!|~])")


def md_text(text: str) -> str:
    """An untrusted string made safe for a markdown table cell: one line, HTML escaped, and every
    character that can open a markdown construct backslash-escaped, so a name never becomes a link, an image or
    emphasis and never breaks the cell."""
    escaped = _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split())).replace("://", ":\\/\\/").replace("www.", "www\\.")
    return html.escape(escaped, quote=True)  # ("://" and "www." escaped: no bare-URL autolinks either)


def render_markdown(entries: list[Entry]) -> str:
    lines = ["# latbench leaderboard", "",
             "Generated by `latbench leaderboard render` from `leaderboard/entries/*.json`; do not edit.",
             "Ranked by mean Spearman ρ over the suite's tasks (± std over trials; [95 % bootstrap interval over tasks]);",
             "a method's rank is 1 + the number of methods whose interval lies entirely above its own, so methods whose",
             "intervals overlap share a rank. The interactive page (filters by tier and space, plots) is `site/index.html`.", ""]
    for suite in SUITES:
        for k in SUITE_SHOTS:
            rows = rank(entries, suite, k)
            if not rows:
                continue
            lines += [f"## {suite} suite, k = {k}", "",
                      "| rank | method | Spearman | 95 % CI | Kendall | MAPE % | ±10 % | time (s) | status |",
                      "|---|---|---|---|---|---|---|---|---|"]
            lines += [f"| {r['rank']} | {md_text(r['method'])} | {r['spearman']:.3f} ± {r['std']:.3f} | [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | "
                      f"{r['kendall']:.3f} | {r['mape']:.1f} | {r['acc10']:.2f} | {_time_cell(r)} | {_status_cell(r)} |" for r in rows]
            lines.append("")
    if len(lines) == 7:
        lines += ["No entries yet: see `examples/README.md` to submit one.", ""]
    return "\n".join(lines) + "\n"


def _time_cell(row: dict) -> str:
    return "n/a" if row["protocol"] == PREDICTIONS_PROTOCOL else f"{row['seconds']:.0f}"


def _status_cell(row: dict) -> str:
    return row["status"] + (" (predictions)" if row["protocol"] == PREDICTIONS_PROTOCOL else "")


def export_schema(path: Path) -> None:
    write_text(path, json.dumps(Entry.model_json_schema(), indent=1) + "\n")


# ------------------------------------------------------------------------------------- from runs
def select_tasks(selector: str) -> tuple[str, list]:
    """(suite name for the entries, tasks): a suite name (main, literature) or an ``eval --task`` selector."""
    if selector in SUITES:
        return selector, suite_tasks(selector)
    return selector, select(selector)


def entries_from_results(specs: Sequence[str], results: list, *, suite: str, hardware: str) -> list[Entry]:
    """One Entry per method, in the format ``latbench submit`` writes."""
    return [entry_from_result(r, suite=suite, code_ref=resolved_code_ref(s), hardware=hardware) for s, r in zip(specs, results)]


def write_entries(specs: Sequence[str], items: list[Entry], out: Path) -> list[Path]:
    """Write every entry atomically (complete files only, after all units succeeded)."""
    return [write_text(Path(out) / file_name(s), e.model_dump_json(indent=1)) for s, e in zip(specs, items)]
