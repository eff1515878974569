"""The leaderboard: submission entries, their validation, atomic storage, ranking and rendering.

An entry is one small JSON file under ``leaderboard/entries/`` (schema: :class:`Entry`, exported
to ``leaderboard/entry.schema.json``). ``add`` validates it against the current dataset and task
files (versions, hashes, completeness, recomputable aggregates) and stores it with an atomic
exclusive create, so concurrent adds never lose or overwrite each other. Rankings are per suite
and shot count and *paired*: every method is scored on the same (task, trial) units, so methods are
ranked within each unit by Spearman ρ and compared by their mean ranks with the Friedman and
Nemenyi tests (:mod:`latbench.leaderboard.ranking`); the mean Spearman with a bootstrap interval
over tasks stays beside it.

Entry schema 2 holds every metric of :data:`latbench.protocol.metrics.METRICS`; entries of schema 1
(stored before the robust and NAS metrics existed) hold :data:`~latbench.protocol.metrics.LEGACY_METRICS`
and stay valid unchanged (their files, content hashes and ledger records are untouched): the board
shows their missing metrics as "—" until the method is run again.

Predictions made elsewhere (``latbench submit --predictions DIR``) are scored by
:func:`score_predictions` from one CSV per task / shot count / trial / target device.

Trust model (what can be forged, and what stops it):

- **Verified means re-run, and is never read from an entry file.** The ``status`` field inside an
  entry is a convenience for human readers and is never trusted: :func:`list_entries` (what
  ``render``, the README and the page use) derives every status from the board's *verification
  ledger*, ``<board>/verified/<entry file stem>.json``. A ledger record holds the sha256 of the
  entry's content (:func:`content_sha256`: the canonical JSON of every field but ``status``); an
  entry is ``verified`` only when a record for its file exists and its hash matches the entry as
  stored now. Records are written by :func:`record_verification`, which only two commands call:
  ``leaderboard verify`` (after a re-run in a fresh process reproduced every metric) and
  ``leaderboard baselines`` (for a method only when every one of its units ran in that command, or
  in earlier ``--time-budget`` runs of it that kept them in the latbench home -- units loaded from
  ``--checkpoint`` files make an ``unverified`` entry, and it says so). So a file
  dropped into ``entries/`` by hand with ``"status": "verified"``, or a verified entry edited
  afterwards (one digit, or the notes), renders as unverified. The ledger is maintainer-owned: a
  submission touches ``entries/`` only, so a pull request that adds ledger records is not a
  submission (this is a review rule, not cryptography: whoever can write the ledger can vouch).
  Each record says who vouched (``by``) and, in ``note``, anything a reader should know: the records
  of entries committed before the ledger existed name the command and commit that stored them and
  say they were written from that commit's file without a new re-run (``verify`` replaces them).
- **Every path that stores an entry validates it the same way** (:func:`validate`: ``add``,
  ``baselines`` and ``sweep --store``), including the identity rule: a built-in's name
  (:func:`latbench.methods.registry.builtin_methods`, compared as a slug, so ``FLOPS`` counts) is
  reserved for entries whose ``code_ref`` is that built-in's registered class (or its module path
  before the package rename, ``baselines.<mod>:<Class>`` for ``latbench_baselines.<mod>:<Class>``).
- **Duplicates ignore run times.** :func:`results_fingerprint` hashes the protocol and the results
  without the per-trial ``seconds``; storing refuses an entry whose fingerprint equals a stored
  entry's, or whose per-device metrics all equal a stored entry's to verify's tolerance
  (:func:`same_results`): with the same ``code_ref`` and parameters it is a re-submission,
  otherwise someone else's results under another name (see :func:`store_entry`).
- **The code that verify runs is explicit** (:func:`verify_spec`): a ``code_ref`` that is a
  registered method (built-in or installed plug-in) runs as registered; anything else is imported
  only when the caller names its module (``--allow-import MODULE``). The re-run happens in a child
  process (``python -m latbench.cli``) whose working directory is an empty temporary folder, so
  nothing in the caller's working directory is importable by accident, under a time limit.
- **Hostile files give one-line errors**: entries, predictions and checkpoints are read only if they
  are regular files (a FIFO or a device is refused before it can block), size-limited, plain JSON
  or CSV nested at most :data:`MAX_JSON_DEPTH` levels, every number finite; an entry is parsed
  strictly (no repeated key, no type coercion, bounded text).
- **Names are data, never markup or disguise**: a method name is printable ASCII (no look-alike
  of a built-in's name), no text of an entry holds an invisible character, and everything an entry
  says reaches markdown through :func:`latbench.text.md_text` and the charts labelled per entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from latbench import __version__, io, paths
from latbench.data import store
from latbench.errors import LatbenchError, MethodError
from latbench.eval.checkpoints import json_depth, trial_problem
from latbench.eval.results import EvalResult, TaskResult, TrialResult, jsonable_params
from latbench.eval.sweep import file_name
from latbench.io import write_text
from latbench.leaderboard.ranking import ALPHA, friedman_nemenyi
from latbench.methods import registry as methods_mod
from latbench.methods.registry import code_ref as resolved_code_ref
from latbench.protocol.metrics import BUDGET_PERCENTILES, LEGACY_METRICS, METRICS, NAS_METRICS
from latbench.protocol.scoring import score
from latbench.protocol.trial import PROTOCOL_VERSION, SUITE_SHOTS, trial_seed
from latbench.tasks.spec import SUITES, list_tasks, load_task, select
from latbench.text import md_text, visible

ENTRY_SCHEMA_VERSION = "2"
#: The per-device metrics each entry schema holds (schema 1: before the robust and NAS metrics).
SCHEMA_METRICS = {"1": LEGACY_METRICS, "2": METRICS}
MAX_ENTRY_BYTES = 5_000_000
#: Deepest nesting of JSON containers an entry may have (a real one has 6; params may nest a little).
MAX_JSON_DEPTH = 32
#: The verification ledger: ``<board>/verified/<entry file stem>.json`` (see the module docstring).
LEDGER_DIR = "verified"
#: The commands that write it (a record's ``by``).
LEDGER_WRITERS = (
    "leaderboard verify",
    "leaderboard verify --upgrade",
    "leaderboard baselines",
    "leaderboard baselines --time-budget",
)
#: A stored entry's id as ``verify`` takes it: a file stem, never a path.
ENTRY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
#: Trials of every board entry (its shot counts: ``SUITE_SHOTS``, from the protocol).
SUITE_TRIALS = 5
#: Protocol labels the board accepts: a latbench run, or predictions scored by ``submit --predictions``.
OFFICIAL_PROTOCOL = f"official-v{PROTOCOL_VERSION}"
PREDICTIONS_PROTOCOL = f"official-v{PROTOCOL_VERSION}-predictions"
ACCEPTED_PROTOCOLS = (OFFICIAL_PROTOCOL, PREDICTIONS_PROTOCOL)
MAX_PREDICTION_BYTES = 1_000_000  # one file holds <= 2,000 rows of ~20 bytes
PREDICTION_HEADER = ("arch_id", "latency_ms")


class LeaderboardError(LatbenchError):
    """A submission was rejected; the board is unchanged."""


#: A method name: printable ASCII, no space at either end. Names are shown on the board and in charts,
#: so nothing invisible and no look-alike letters (``flоps`` with a Cyrillic о is not ``flops``).
METHOD_NAME_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
#: Versions and dates: what a version string is made of (``latbench 0.1.0``, ``1.0+f9433cd188aa``).
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+ -]*$"


class MethodInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=80)
    version: str = Field("unversioned", max_length=100, pattern=VERSION_PATTERN)
    code_ref: str = Field(min_length=1, max_length=300, description="module:Class, package==version or git URL@sha")
    params: dict = {}
    paper_url: str = Field("", max_length=300)
    code_url: str = Field("", max_length=300)
    contact: str = Field("", max_length=200)

    @field_validator("name")
    @classmethod
    def _printable_ascii(cls, name: str) -> str:
        if not re.fullmatch(METHOD_NAME_PATTERN, name):
            raise ValueError("a method name is printable ASCII (letters, digits, punctuation, inner spaces)")
        return name


class ExternalData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    used: bool = False
    description: str = Field("", max_length=2000)


class Entry(BaseModel):
    """One leaderboard submission: a method's official-protocol results on a whole suite."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal["1", "2"] = ENTRY_SCHEMA_VERSION
    method: MethodInfo
    suite: str = Field(max_length=40)
    latbench_version: str = Field(max_length=100, pattern=VERSION_PATTERN)
    dataset_version: str = Field(max_length=100, pattern=VERSION_PATTERN)
    dataset_hash: str = Field(
        description="sha256 of the data the suite's tasks read (latbench.data.store.data_hash): "
        "the arch strings and latencies of every source, validation and target device"
    )
    protocol: str
    task_versions: dict[str, int]
    shots: list[int]
    trials: int
    results: list[TaskResult]
    seconds: float = Field(le=1e9)  # >= 0 is checked by validate, with its own message
    hardware: str = Field("", max_length=300)
    external_data: ExternalData = ExternalData()
    date: str = Field(max_length=40, pattern=VERSION_PATTERN)
    status: Literal["verified", "unverified"] = "unverified"
    notes: str = Field("", max_length=2000)

    @model_validator(mode="before")
    @classmethod
    def _nothing_invisible(cls, data):
        """No control, format (zero-width, bidi) or surrogate character in any key or text of the entry."""
        where = _invisible_at(data)
        if where is not None:
            raise ValueError(f"{where or '(entry)'}: holds an invisible character (control, zero-width or bidi)")
        return data

    @property
    def entry_id(self) -> str:
        """Stable id: method slug + hash of the scored content (so a resubmission is a duplicate)."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.method.name.lower()).strip("-") or "method"
        body = json.dumps([r.model_dump() for r in self.results], sort_keys=True)
        return f"{slug}-{hashlib.sha256((self.method.code_ref + body).encode()).hexdigest()[:10]}"


def _invisible_at(value, path: str = "") -> str | None:
    """The dotted path of the first text in ``value`` (JSON-like, or models built by the code that makes
    entries) that :func:`visible` would change, else None."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, str):
        return path if visible(value) != value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return None
    for key, item in items:
        inner = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and visible(key) != key:
            return inner
        found = _invisible_at(item, inner)
        if found is not None:
            return found
    return None


def entries_dir() -> Path:
    return paths.leaderboard_dir() / "entries"


def suite_tasks(suite: str):
    if suite not in SUITES:
        raise LeaderboardError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    return [t for t in list_tasks() if t.kind == SUITES[suite]]


def entry_from_result(result: EvalResult, *, suite: str, code_ref: str, hardware: str = "", **method_info) -> Entry:
    """The entry of one suite's results; ``method.version`` defaults to the installed distribution's
    version of the code (:func:`latbench.methods.registry.code_version`)."""
    tasks = sorted({r.task for r in result.results})
    method_info.setdefault("version", methods_mod.code_version(code_ref))
    return Entry(
        schema_version=ENTRY_SCHEMA_VERSION,
        method=MethodInfo(name=result.method, code_ref=code_ref, params=result.method_params, **method_info),
        suite=suite,
        latbench_version=result.latbench_version,
        dataset_version=result.dataset_version,
        dataset_hash=store.data_hash([load_task(t) for t in tasks]),
        protocol=result.results[0].protocol if result.results else "",
        task_versions={t: load_task(t).version for t in tasks},
        shots=sorted({r.shots for r in result.results}),
        trials=max((len(r.trials) for r in result.results), default=0),
        results=result.results,
        seconds=result.seconds,
        hardware=hardware,
        date=time.strftime("%Y-%m-%d"),
    )


# ------------------------------------------------------------------------------------ validation
def read_regular(path: Path, limit: int, what: str) -> bytes:
    """At most ``limit + 1`` bytes of ``path``, which must be a regular file (LeaderboardError if not)."""
    path = Path(path)
    try:
        return io.read_regular(path, limit)
    except io.NotReadable as e:
        if e.kind == "error":
            raise LeaderboardError(f"{path}: cannot read ({e.detail})") from None
        kind = {"directory": "a directory", "fifo": "a FIFO"}.get(e.kind, "not a regular file")
        raise LeaderboardError(f"{path}: {kind}; {what} must be a regular file") from None


def load_entry(path: Path) -> Entry:
    """Parse an entry file: a regular file, plain JSON only, size-limited, nested at most
    ``MAX_JSON_DEPTH`` levels, every number finite, schema-checked."""
    path = Path(path)
    raw = read_regular(path, MAX_ENTRY_BYTES, "an entry")
    if len(raw) > MAX_ENTRY_BYTES:
        raise LeaderboardError(f"{path}: larger than the {MAX_ENTRY_BYTES:,}-byte limit for an entry")
    if raw[:1] == b"\x80":
        raise LeaderboardError(f"{path}: looks like a pickle; entries must be JSON (pickles are never loaded)")
    try:
        data = json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
        )
    except UnicodeDecodeError:
        raise LeaderboardError(f"{path}: not UTF-8 text; entries must be JSON") from None
    except json.JSONDecodeError as e:
        raise LeaderboardError(f"{path}: not valid JSON ({e})") from None
    except ValueError as e:
        raise LeaderboardError(f"{path}: {e}") from None
    except RecursionError:
        raise LeaderboardError(f"{path}: JSON nested too deeply (an entry nests at most {MAX_JSON_DEPTH} levels)") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise LeaderboardError(f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels; not an entry")
    if isinstance(data, dict) and "method_params" in data and "suite" not in data:
        raise LeaderboardError(
            f"{path}: a `latbench eval --out` results file, not a leaderboard entry; "
            "`latbench submit -m METHOD --suite main --out entry.json` runs the whole suite and writes one"
        )
    try:
        return Entry.model_validate(data, strict=True)  # "5" is not 5: no silent coercion
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(entry)"
        raise LeaderboardError(f"{path}: schema error at {loc}: {err['msg']}") from None


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name} in JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object as a dict, refusing a repeated key (json keeps the last one silently)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key[:40]!r} appears twice in one object")
        out[key] = value
    return out


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise ValueError(f"number {text} overflows to infinity")
    return value


def validate(entry: Entry) -> None:
    """Raise LeaderboardError at the first problem; the checks a board maintainer would make."""
    expected = suite_tasks(entry.suite)  # unknown suite first: nothing else makes sense without it
    check_identity(entry)
    info, current = store.info(), store.data_hash(expected)
    if entry.dataset_hash != current:
        raise LeaderboardError(
            f"dataset hash {entry.dataset_hash[:12]}... does not match the current dataset's data for suite "
            f"{entry.suite!r}, {current[:12]}... (rerun on dataset {info['dataset_version']})"
        )
    if entry.protocol not in ACCEPTED_PROTOCOLS:
        raise LeaderboardError(f"protocol {entry.protocol!r}: the board only accepts {' or '.join(ACCEPTED_PROTOCOLS)}")
    if not math.isfinite(entry.seconds) or entry.seconds < 0:
        raise LeaderboardError(f"seconds must be a finite number >= 0 (got {entry.seconds})")
    missing = [t.id for t in expected if t.id not in entry.task_versions]
    if missing:
        raise LeaderboardError(
            f"missing task(s) {', '.join(missing)}: suite {entry.suite!r} needs all of {', '.join(t.id for t in expected)}"
        )
    for t in expected:
        if entry.task_versions.get(t.id) != t.version:
            raise LeaderboardError(f"task {t.id}: version {entry.task_versions.get(t.id)} in the entry, current is {t.version}")
    extra = set(entry.task_versions) - {t.id for t in expected}
    if extra:
        raise LeaderboardError(f"tasks {sorted(extra)} are not part of suite {entry.suite!r}")
    if sorted(entry.shots) != list(SUITE_SHOTS) or entry.trials != SUITE_TRIALS:
        raise LeaderboardError(
            f"suite {entry.suite!r} needs shots {list(SUITE_SHOTS)} and {SUITE_TRIALS} trials "
            f"(entry has shots {entry.shots}, {entry.trials} trials)"
        )
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
            _check_block(r, load_task(t.id), SCHEMA_METRICS[entry.schema_version])
    stray = sorted(set(got) - wanted)
    if stray:
        raise LeaderboardError(f"result blocks outside suite {entry.suite!r} (task, k): {stray[:3]}")


def _schema_of(metrics: tuple[str, ...]) -> str:
    return next(v for v, names in SCHEMA_METRICS.items() if names == metrics)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _check_block(r: TaskResult, task, metrics: tuple[str, ...] = METRICS) -> None:
    where = f"{r.task} k={r.shots}"
    if r.task_version != task.version:
        raise LeaderboardError(f"{where}: task_version {r.task_version}, current is {task.version}")
    if r.space != task.space or not _close(r.difficulty, task.difficulty):
        raise LeaderboardError(
            f"{where}: space/difficulty ({r.space}, {r.difficulty}) differ from the task file ({task.space}, {task.difficulty})"
        )
    if sorted(t.trial for t in r.trials) != list(range(SUITE_TRIALS)):
        raise LeaderboardError(f"{where}: needs trials 0..{SUITE_TRIALS - 1}, has {sorted(t.trial for t in r.trials)}")
    for tr in r.trials:  # seed, devices, metric ranges, measured archs, seconds, recomputed mean/worst
        problem = trial_problem(tr, f"{where} trial {tr.trial}", task=task, shots=r.shots)
        if problem:
            raise LeaderboardError(problem)
    for tr in r.trials:
        for dev, m in tr.devices.items():
            if set(m) != set(metrics):
                missing, extra = sorted(set(metrics) - set(m)), sorted(set(m) - set(metrics))
                raise LeaderboardError(
                    f"{where} trial {tr.trial} {dev}: metrics do not match entry schema {_schema_of(metrics)} ("
                    + "; ".join(
                        f"{what} {', '.join(names)}" for what, names in (("missing", missing), ("unexpected", extra)) if names
                    )
                    + (": results of an older latbench, run the method again)" if missing and metrics == METRICS else ")")
                )
    if set(r.aggregate) != set(metrics):
        raise LeaderboardError(f"{where}: aggregate has metrics {sorted(r.aggregate)}, expected {sorted(metrics)}")
    for metric in metrics:
        vals = np.array([tr.mean[metric] for tr in r.trials])
        a = r.aggregate[metric]
        if set(a) != {"mean", "std"} or not (_close(a["mean"], vals.mean()) and _close(a["std"], vals.std())):
            raise LeaderboardError(
                f"{where}: aggregate {metric} {a} does not recompute from the trials (mean {vals.mean()}, std {vals.std()})"
            )


# ------------------------------------------------------------------------------------- storage
def validate_file(path: Path, *, unverified: bool = False) -> Entry:
    """Load and validate an entry file; errors name the file. ``unverified``: as ``add`` takes it (only
    verify marks an entry verified); ``add --check`` checks neither that nor duplicates."""
    entry = load_entry(path)
    if unverified and entry.status != "unverified":
        raise LeaderboardError(f"{path}: status {entry.status!r}: only `latbench leaderboard verify` marks an entry verified")
    try:
        validate(entry)
    except LeaderboardError as e:
        raise LeaderboardError(f"{path}: {e}") from None
    return entry


def add(path: Path, *, folder: Path | None = None) -> Path:
    """Validate and store an entry file; a duplicate (or a concurrent twin) is refused."""
    return add_all([path], folder=folder)[0]


def add_all(files: Sequence[Path], *, folder: Path | None = None) -> list[Path]:
    """Store every entry file or none: all are validated first, and if storing one fails (a duplicate,
    also of another file of the same call) the ones this call stored are removed again."""
    entries = [(path, validate_file(path, unverified=True)) for path in files]
    board_entries = Path(folder or entries_dir())
    created = [f for f in (board_entries.parent, board_entries) if not f.exists()]
    stored: list[Path] = []
    try:
        for path, entry in entries:
            try:
                stored.append(store_entry(entry, folder=folder))
            except LeaderboardError as e:
                raise LeaderboardError(
                    f"{path}: {e}" + (f" (the {len(stored)} stored before it were removed)" if stored else "")
                ) from None
    except BaseException:
        for done in stored:
            remove_entry(done)
        for empty in reversed(created):  # the folders this call made, innermost first
            with contextlib.suppress(OSError):
                empty.rmdir()  # only if empty
        raise
    return stored


def store_entry(entry: Entry, *, folder: Path | None = None, replace: bool = False, supersedes: Sequence[Path] = ()) -> Path:
    """Write ``<entry_id>.json`` atomically; exclusive unless ``replace`` (os.link fails if it exists).

    The file is complete before it gets its name (written to a hidden temp file, fsynced, then
    hard-linked), so readers never see half an entry and of concurrent identical adds exactly one
    wins. An entry whose results (ignoring run times: :func:`results_fingerprint`) equal a stored
    entry's is refused too: a re-submission of the same code and parameters, or the same results
    under another name or code_ref (best effort: that check is not atomic, the same-name one is).
    ``supersedes``: stored entries this one replaces (``verify --upgrade``, ``baselines --replace``),
    not counted as duplicates.
    """
    folder = Path(folder or entries_dir())
    target = folder / f"{entry.entry_id}.json"
    if not replace:
        if os.path.lexists(target):
            raise LeaderboardError(f"duplicate entry: {target.name} is already on the board")
        _refuse_duplicates(entry, folder, supersedes)
    try:
        return write_text(target, entry.model_dump_json(), exclusive=not replace)
    except FileExistsError:
        raise LeaderboardError(f"duplicate entry: {target.name} is already on the board") from None


def results_fingerprint(entry: Entry) -> str:
    """sha256 of what an entry scored: its protocol and results, without the per-trial run times.

    Two entries with the same fingerprint hold the same numbers to the last bit (every per-device
    metric, mean, worst, aggregate, seed and measured arch), which a separate run of other code does not produce.
    """
    blocks = []
    for r in sorted(entry.results, key=lambda r: (r.task, r.shots)):
        block = r.model_dump(mode="json")
        block["trials"] = sorted(block["trials"], key=lambda t: t["trial"])
        for t in block["trials"]:
            t.pop("seconds", None)
        blocks.append(block)
    return hashlib.sha256(json.dumps([entry.protocol, blocks], sort_keys=True).encode()).hexdigest()


def _entry_files(folder: Path) -> list[Path]:
    """The stored entry files of ``folder`` (hidden names are in-flight temp files and skipped); a link
    is refused: a board's entries are its own plain files, not pointers to files elsewhere."""
    if not Path(folder).is_dir():
        return []
    files = sorted(p for p in Path(folder).glob("*.json") if not p.name.startswith("."))
    for path in files:
        if path.is_symlink():
            raise LeaderboardError(f"{path}: a link; a board's entries are plain files (replace it with the file)")
    return files


#: How closely a re-run must reproduce every per-device metric to verify an entry (relative; 1e-9 absolute).
VERIFY_RTOL = 1e-6


def _device_metrics(results: Sequence) -> dict[tuple, float]:
    """(task, shots, trial, device, metric) -> value of every per-device metric of an entry's results,
    and of each trial's mean over devices (device ``""``)."""
    return {
        (r.task, r.shots, t.trial, dev, metric): value
        for r in results
        for t in r.trials
        for dev, metrics in (*t.devices.items(), ("", t.mean))
        for metric, value in metrics.items()
    }


def _verify_close(a, b, rel: float) -> np.ndarray:
    """``math.isclose`` elementwise (relative to the larger magnitude, 1e-9 absolute): verify's test."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.abs(a - b) <= np.maximum(rel * np.maximum(np.abs(a), np.abs(b)), 1e-9)


def same_results(a: Entry, b: Entry, rel: float = 2 * VERIFY_RTOL) -> bool:
    """Whether two entries hold the same results as far as ``verify`` can tell: the same (task, k,
    trial, device) units and every metric both hold within twice verify's tolerance (a re-run is
    itself within float noise of the entry it re-runs). One run's results under two names, protocol
    labels or entry schemas would pass ``verify`` under each, so the board takes only the first."""
    ma, mb = _device_metrics(a.results), _device_metrics(b.results)
    if {k[:4] for k in ma} != {k[:4] for k in mb}:
        return False
    shared = [k for k in ma if k in mb]  # an older entry schema holds fewer metrics
    return bool(shared) and bool(_verify_close([ma[k] for k in shared], [mb[k] for k in shared], rel).all())


def _refuse_duplicates(entry: Entry, folder: Path, supersedes: Sequence[Path] = ()) -> None:
    mine = results_fingerprint(entry)
    skip = {Path(p).resolve() for p in supersedes}
    for path in _entry_files(folder):
        if path.resolve() in skip:
            continue
        other = load_entry(path)
        if results_fingerprint(other) != mine and not same_results(entry, other):
            continue
        if (other.method.code_ref, other.method.params) == (entry.method.code_ref, entry.method.params):
            raise LeaderboardError(
                f"duplicate entry: the same code_ref and results are already on the board as {path.name} "
                "(same parameters; run times are not compared)"
            )
        raise LeaderboardError(
            f"duplicate results: {path.name} on the board (method {other.method.name!r}, code_ref "
            f"{other.method.code_ref!r}) holds these results (every per-device metric equal to within "
            f"{2 * VERIFY_RTOL:g}, twice the tolerance of verify); an entry's results must come from its own run"
        )


# ------------------------------------------------------------------------------ identity, ledger
def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "method"


def registered_target(code_ref: str) -> str:
    """``code_ref`` as today's registered ``module:Class``: the pre-rename path of a built-in
    (``baselines.<mod>:<Class>``) becomes ``latbench_baselines.<mod>:<Class>`` when that is registered."""
    if code_ref.startswith("baselines."):
        modern = "latbench_" + code_ref
        if modern in set(methods_mod.available().values()):
            return modern
    return code_ref


_LOOK_ALIKE = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "!": "l", "5": "s", "$": "s"})


def _skeleton(name: str) -> str:
    """What a name looks like, case and punctuation aside: ``fIops``, ``FL0PS`` and ``nn-rneter``
    have the skeletons of ``flops`` and ``nn-meter``."""
    text = name.lower().translate(_LOOK_ALIKE).replace("rn", "m").replace("vv", "w").replace("cl", "d")
    return re.sub(r"[^a-z0-9]+", "", text)


def check_identity(entry: Entry) -> None:
    """A built-in's name is reserved for entries whose code_ref is that built-in's registered class,
    and so is anything that looks like it (compared by :func:`_skeleton`: ``FLOPS``, ``fIops``)."""
    skeleton = _skeleton(entry.method.name)
    for name, target in methods_mod.builtin_methods().items():
        if _skeleton(name) == skeleton and registered_target(entry.method.code_ref) != target:
            raise LeaderboardError(
                f"method name {entry.method.name!r} is reserved for latbench's built-in {name!r} ({target}); "
                f"this entry's code_ref is {entry.method.code_ref!r}: submit it under a name of its own"
            )


def content_sha256(entry: Entry) -> str:
    """sha256 of an entry's content as the ledger records it: canonical JSON of every field but ``status``."""
    body = entry.model_dump(mode="json", exclude={"status"})
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()).hexdigest()


def ledger_dir(folder: Path | None = None) -> Path:
    """The verification ledger beside the entries folder ``folder``: ``<board>/verified/``."""
    return Path(folder or entries_dir()).parent / LEDGER_DIR


def record_verification(entry: Entry, stem: str, *, by: str, folder: Path | None = None, note: str = "") -> Path:
    """Vouch for the entry stored as ``<folder>/<stem>.json``: only ``leaderboard verify`` (after a re-run
    reproduced it) and ``leaderboard baselines`` (for entries all of whose units it ran) call this."""
    if by not in LEDGER_WRITERS:
        raise ValueError(f"not a command that writes the verification ledger: {by!r}")
    record = {
        "entry": stem,
        "sha256": content_sha256(entry),
        "by": by,
        "date": time.strftime("%Y-%m-%d"),
        "latbench_version": __version__,
        "code_ref": entry.method.code_ref,
        "note": note,
    }
    return write_text(ledger_dir(folder) / f"{stem}.json", json.dumps(record, indent=1) + "\n")


def verification(stem: str, folder: Path | None = None) -> dict | None:
    """The ledger's record for the entry file ``<stem>.json`` (None if there is none, or it is unreadable)."""
    path = ledger_dir(folder) / f"{stem}.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(read_regular(path, 100_000, "a verification record").decode("utf-8"))
    except (LeaderboardError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def board_status(entry: Entry, stem: str, folder: Path | None = None) -> str:
    """``verified`` iff the ledger vouches for exactly this content stored as ``<stem>.json``; the
    entry's own ``status`` field is never consulted."""
    record = verification(stem, folder)
    ok = record is not None and record.get("entry") == stem and record.get("sha256") == content_sha256(entry)
    return "verified" if ok else "unverified"


def check_same(entry: Entry, fresh: EvalResult, rel: float = VERIFY_RTOL) -> None:
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
                    if not _verify_close(v, b.devices[dev][metric], rel):
                        raise LeaderboardError(
                            f"does not reproduce: {r.task} k={r.shots} trial {a.trial} {dev}: "
                            f"{metric} {v} in the entry, {b.devices[dev][metric]} in the re-run"
                        )


def registered_spec(entry: Entry) -> str | None:
    """The registered method (built-in or installed plug-in) whose class is the entry's code_ref
    (today's path or a built-in's pre-rename one): its own name when that matches, else the first
    name registered for that class; None when the code_ref is not a registered class."""
    known = methods_mod.available()
    target = registered_target(entry.method.code_ref)
    if known.get(entry.method.name) == target:
        return entry.method.name
    names = sorted(n for n, t in known.items() if t == target)
    return names[0] if names else None


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def verify_spec(entry: Entry, allow_import: Sequence[str] = ()) -> str:
    """What ``verify`` runs: the registered method of the entry's code_ref (see :func:`registered_spec`),
    else the code_ref itself, but only when its module is one of ``allow_import`` (or inside one of
    those packages): importing a module runs its code, so that takes an explicit ``--allow-import``."""
    spec = registered_spec(entry)
    if spec is not None:
        return spec
    code_ref = entry.method.code_ref
    module, sep, attr = code_ref.partition(":")
    if not (sep and _DOTTED.fullmatch(module) and _DOTTED.fullmatch(attr)):
        raise LeaderboardError(
            f"cannot verify: code_ref {code_ref[:100]!r} is neither a registered method nor a module:Class path"
        )
    if not methods_mod.in_packages(module, allow_import):
        raise LeaderboardError(
            f"code_ref {code_ref!r} is not a registered method: verifying it imports and runs module "
            f"{module!r}; pass --allow-import {module} if you trust that code"
        )
    return code_ref


def verify_params(entry: Entry | dict, spec: str) -> dict:
    """The entry's parameters (an Entry, or its ``method.params``) as the method takes them: a stored
    value equal to the JSON form of the class default (e.g. a tuple stored as a list or as its repr)
    is given back as that default."""
    params = entry.method.params if isinstance(entry, Entry) else dict(entry)
    defaults = methods_mod.resolve(spec)().get_params()
    plain = jsonable_params(defaults)
    out = {}
    for key, value in params.items():
        if key in defaults and (
            value == plain[key]
            or value == repr(defaults[key])
            or (isinstance(defaults[key], tuple) and value == list(defaults[key]))
        ):
            out[key] = defaults[key]
        else:
            out[key] = value
    return out


def stored_entry_path(entry_id: str, folder: Path | None = None) -> Path:
    """The file of the stored entry ``entry_id`` (a file stem of the entries folder, never a path)."""
    entry_id = entry_id.removesuffix(".json")
    if not ENTRY_ID.fullmatch(entry_id) or ".." in entry_id:
        raise LeaderboardError(
            f"{entry_id[:80]!r} is not an entry id: the name of a file in the board's entries/ without "
            ".json (letters, digits, '-', '_', '.'), never a path"
        )
    folder = Path(folder or entries_dir())
    path = folder / f"{entry_id}.json"
    if not os.path.lexists(path):
        raise LeaderboardError(f"no stored entry {entry_id!r}: cannot read {path}")
    if path.is_symlink() or not path.is_file():
        raise LeaderboardError(f"{path}: not a regular file; a stored entry is one")
    return path


def mark_verified(path: Path, entry: Entry, *, by: str = "leaderboard verify", note: str = "") -> None:
    """Record in the ledger that the entry stored at ``path`` was reproduced, and say so in its file."""
    path = Path(path)
    entry = entry.model_copy(update={"status": "verified"})
    write_text(path, entry.model_dump_json())
    record_verification(entry, path.stem, by=by, folder=path.parent, note=note)


def upgraded_entry(entry: Entry, fresh: EvalResult) -> Entry:
    """``entry`` re-stated from ``fresh``, a re-run that reproduced it (:func:`check_same`): the
    current entry schema, so with every metric added since; the method's description, hardware,
    external data and notes stay the entry's, results, timings and versions are the re-run's."""
    new = entry_from_result(fresh, suite=entry.suite, code_ref=entry.method.code_ref, hardware=entry.hardware)
    update = {"method": entry.method, "external_data": entry.external_data, "notes": entry.notes, "status": "verified"}
    return new.model_copy(update=update)


def remove_entry(path: Path) -> None:
    """Delete a stored entry file and its ledger record (a record alone would vouch for nothing)."""
    path = Path(path)
    (ledger_dir(path.parent) / f"{path.stem}.json").unlink(missing_ok=True)
    path.unlink()


def superseded_paths(entry: Entry, folder: Path | None = None) -> list[Path]:
    """The stored entries of ``entry``'s method (same name and code_ref) on its suite: what
    ``leaderboard baselines --replace`` removes (with their ledger records, :func:`remove_entry`)
    once the re-run is stored, so the board holds one entry per (method, suite)."""
    me = (entry.method.name, registered_target(entry.method.code_ref), entry.suite)
    out = []
    for path in _entry_files(Path(folder or entries_dir())):
        other = load_entry(path)
        if (other.method.name, registered_target(other.method.code_ref), other.suite) == me:
            out.append(path)
    return out


def list_entries(folder: Path | None = None) -> list[Entry]:
    """Stored entries, each with its status as the ledger has it (:func:`board_status`), never as its file says."""
    folder = Path(folder or entries_dir())
    out = []
    for path in _entry_files(folder):
        entry = load_entry(path)
        out.append(entry.model_copy(update={"status": board_status(entry, path.stem, folder)}))
    return out


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
    raw = read_regular(path, MAX_PREDICTION_BYTES, "a predictions file")
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
    if max(map(len, ids_text)) > 18:  # beyond int64 (OverflowError): the strict parser names the id
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
        if len(a.lstrip("0")) > 18:  # no space has 10**18 archs; int64 (and int()'s digit limit) end near there
            raise LeaderboardError(f"{path}:{n}: arch_id {a[:20]}{'...' if len(a) > 20 else ''} is too large to be an arch id")
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
        raise LeaderboardError(
            f"{path}: {len(foreign)} arch id(s) are not in the task's evaluation set "
            f"(e.g. {foreign[0]}, line {seen[foreign[0]]}); predict exactly task.pools.eval"
        )
    if len(ids) != len(eval_ids):
        missing = [int(i) for i in eval_ids if int(i) not in seen]
        raise LeaderboardError(
            f"{path}: {len(ids)} rows, expected {len(eval_ids)} (one per evaluation arch); missing e.g. arch {missing[0]}"
        )
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


def score_predictions(
    pred_dir: Path, *, suite: str, method: str, params: dict | None = None, hardware: str = "", **method_info
) -> Entry:
    """Score predictions made outside latbench into an entry (``latbench submit --predictions DIR``).

    Layout (fixed names, like WILDS' prediction folders), for every task of the suite, every shot
    count k in (5, 10, 20), trial t in 0..4 and target device::

        DIR/<task>/k<k>/trial<t>/<device>.csv      e.g. DIR/easy-1/k5/trial0/pixel3.csv

    each with the header ``arch_id,latency_ms`` and one row per arch of the task's evaluation set
    (``load_task(task).pools.eval``, any order). Predictions for trial t must come from adapting
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
    expected = {
        prediction_path(root, t.id, k, i, d) for t in tasks for k in SUITE_SHOTS for i in range(SUITE_TRIALS) for d in t.target
    }
    present = {p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}
    unexpected = sorted(present - expected)
    if unexpected:
        raise LeaderboardError(
            f"{unexpected[0]}: unexpected file in the predictions folder ({len(unexpected)} in all); "
            f"only <task>/k<k>/trial<t>/<device>.csv for suite {suite!r} are accepted"
        )
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
                trials.append(
                    TrialResult(
                        trial=i,
                        seed=trial_seed(task, i),
                        devices=s["devices"],
                        mean=s["mean"],
                        worst=s["worst"],
                        measured={d: [] for d in task.target},
                        seconds={"fit": 0.0, "adapt": 0.0, "predict": 0.0},
                    )
                )
            results.append(TaskResult.from_trials(task, k, PREDICTIONS_PROTOCOL, trials))
    info = store.info()
    name, code_ref = method_identity(method)
    return Entry(
        method=MethodInfo(name=name, code_ref=code_ref, params=params or {}, **method_info),
        suite=suite,
        latbench_version=__version__,
        dataset_version=info["dataset_version"],
        dataset_hash=store.data_hash(tasks),
        protocol=PREDICTIONS_PROTOCOL,
        task_versions={t.id: t.version for t in tasks},
        shots=list(SUITE_SHOTS),
        trials=SUITE_TRIALS,
        results=results,
        seconds=0.0,
        hardware=hardware,
        date=time.strftime("%Y-%m-%d"),
        notes=f"scored from predictions made outside latbench in {time.perf_counter() - tic:.1f} s: adaptation and "
        "prediction ran elsewhere, so the measured archs (recorded as empty lists) and timings are unknown",
    )


# ------------------------------------------------------------------------------------- ranking
#: The board's columns beside the ranking: per entry, the mean over tasks of each task's mean over
#: trials. An entry of schema 1 lacks the robust and NAS metrics: None there, shown as "—".
BOARD_METRICS = ("kendall", "mape", "mdape", "mape_floor", "acc10", *NAS_METRICS)
#: How a missing value shows in the tables.
MISSING = "\u2014"


@dataclass
class Ranking:
    """One suite and shot count of the board: rows in board order, and the paired test behind their ranks."""

    suite: str
    shots: int
    rows: list[dict]
    n_units: int  #: (task, trial) units every ranked method was scored on
    statistic: float  #: Friedman χ² (tie-corrected)
    pvalue: float  #: Friedman p-value
    cd: float  #: Nemenyi critical difference of mean ranks
    alpha: float
    cliques: list[tuple[int, int]]  #: (first, last) row indices the CD diagram joins: not told apart

    @property
    def rejected(self) -> bool:
        return self.pvalue < self.alpha


def ranking(
    entries: list[Entry],
    suite: str,
    shots: int,
    *,
    boot: int = 1000,
    seed: int = 0,
    tasks: set[str] | None = None,
    alpha: float = ALPHA,
) -> Ranking:
    """The paired ranking of the suite's entries at ``shots`` over its tasks (optionally only ``tasks``).

    Units are the (task, trial) pairs every entry was scored on; within each, entries are ranked by
    their trial's mean Spearman over target devices (:func:`latbench.leaderboard.ranking.friedman_nemenyi`).
    Rows are sorted by mean rank (then mean Spearman, name); ``rank`` = 1 + the number of entries whose
    mean rank is lower by more than the Nemenyi critical difference (all 1 unless the Friedman test
    rejects at ``alpha``), so it never decreases down the rows; ``p_next`` is the Nemenyi p-value
    against the next row (None for the last row, and for all rows unless the Friedman test rejects).
    Beside it: ``spearman`` (mean over tasks), ``std`` (std over trials of the per-trial mean over
    tasks), ``ci`` (95 % bootstrap interval of the mean over tasks) and :data:`BOARD_METRICS`.
    """
    pool = []
    for e in entries:
        if e.suite != suite:
            continue
        blocks = [r for r in e.results if r.shots == shots and (tasks is None or r.task in tasks)]
        if blocks:
            pool.append((e, blocks))
    units = [{(r.task, t.trial): t.mean["spearman"] for r in blocks for t in r.trials} for _, blocks in pool]
    common = sorted(set.intersection(*map(set, units))) if units else []
    paired = friedman_nemenyi(np.array([[u[key] for u in units] for key in common]).reshape(len(common), len(pool)), alpha=alpha)
    rows = []
    for i, (e, blocks) in enumerate(pool):
        task_means = np.array([r.aggregate["spearman"]["mean"] for r in blocks])
        per_trial = np.array([[t.mean["spearman"] for t in sorted(r.trials, key=lambda t: t.trial)] for r in blocks]).mean(axis=0)
        rng = np.random.default_rng(seed)
        draws = task_means[rng.integers(0, len(task_means), (boot, len(task_means)))].mean(axis=1)
        lo, hi = np.percentile(draws, [2.5, 97.5])
        rows.append(
            {
                "entry": e.entry_id,
                "method": e.method.name,
                "status": e.status,
                "protocol": e.protocol,
                "schema": e.schema_version,
                "index": i,
                "mean_rank": float(paired.mean_ranks[i]),
                "rank": int(paired.rank[i]),
                "spearman": float(task_means.mean()),
                "std": float(per_trial.std()),
                "ci": (float(lo), float(hi)),
                **{m: _mean_over_blocks(blocks, m) for m in BOARD_METRICS},
                "seconds": e.seconds,
                "tasks": {r.task: r.aggregate["spearman"]["mean"] for r in blocks},
            }
        )
    rows.sort(key=lambda r: (r["mean_rank"], -r["spearman"], r["method"], r["entry"]))
    for row, after in zip(rows, rows[1:] + [None]):
        row["p_next"] = float(paired.pvalues[row["index"], after["index"]]) if after and paired.rejected else None
    for row in rows:
        del row["index"]
    return Ranking(suite, shots, rows, paired.n_units, paired.statistic, paired.pvalue, paired.cd, alpha, paired.cliques())


def _mean_over_blocks(blocks: list[TaskResult], metric: str) -> float | None:
    """Mean over tasks of the per-task mean; None when a block lacks the metric (an entry of schema 1)."""
    if not all(metric in r.aggregate for r in blocks):
        return None
    return float(np.mean([r.aggregate[metric]["mean"] for r in blocks]))


def rank(
    entries: list[Entry], suite: str, shots: int, *, boot: int = 1000, seed: int = 0, tasks: set[str] | None = None
) -> list[dict]:
    """The rows of :func:`ranking`, best first."""
    return ranking(entries, suite, shots, boot=boot, seed=seed, tasks=tasks).rows


def cd_figure(suite: str, shots: int) -> str:
    """File name (in the board's ``site/``) of the critical-difference diagram of a suite and shot count."""
    return f"cd-{suite}-k{shots}.svg"


def score_figure(suite: str) -> str:
    """File name (in the board's ``site/``) of the mean-Spearman-vs-k chart of a suite."""
    return f"spearman-vs-k-{suite}.svg"


def fmt(value: float | None, digits: int) -> str:
    """A table cell: the number with ``digits`` decimals, or "—" when it is missing."""
    return MISSING if value is None else f"{value:.{digits}f}"


def fmt_p(p: float | None) -> str:
    """A p-value cell: "< 0.001", three decimals, or "—" when there is none."""
    return MISSING if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def paired_test_line(table: Ranking) -> str:
    """One sentence on the paired test behind a ranking."""
    if len(table.rows) < 2 or table.n_units < 2:
        return f"{len(table.rows)} method(s) on {table.n_units} common (task, trial) unit(s): nothing to compare."
    p = f"{table.pvalue:.1e}" if table.pvalue < 0.001 else f"{table.pvalue:.3f}"
    verdict = (
        f"Nemenyi critical difference {table.cd:.2f} mean ranks (α = {table.alpha:g})"
        if table.rejected
        else f"not below α = {table.alpha:g}, so every method shares rank 1"
    )
    return f"Friedman test over {table.n_units} (task, trial) units: χ² = {table.statistic:.1f}, p = {p}; {verdict}."


RANK_COLUMNS = (
    "rank", "method", "mean rank", "p (next)", "Spearman", "95 % CI", "Kendall", "MdAPE %", "MAPE⌊10 %⌋ %", "±10 %",
    "time (s)", "status",
)  # fmt: skip
NAS_COLUMNS = (
    "method", "budget p10: precision / recall", "budget p25", "budget p50", "top-5 % recall", "τ fastest 25 %",
)  # fmt: skip


def rank_cells(r: dict) -> list[str]:
    """A row of the ranking table as plain text cells (the method name as given: escape it for the output)."""
    return [
        str(r["rank"]),
        r["method"],
        f"{r['mean_rank']:.2f}",
        fmt_p(r["p_next"]),
        f"{r['spearman']:.3f} ± {r['std']:.3f}",
        f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]",
        fmt(r["kendall"], 3),
        fmt(r["mdape"], 1),
        fmt(r["mape_floor"], 1),
        fmt(r["acc10"], 2),
        time_cell(r),
        _status_cell(r),
    ]


def nas_cells(r: dict) -> list[str]:
    """A row of the NAS-utility table as plain text cells (see :func:`rank_cells`)."""
    budgets = [f"{fmt(r[f'budget_p{p}_precision'], 2)} / {fmt(r[f'budget_p{p}_recall'], 2)}" for p in BUDGET_PERCENTILES]
    return [r["method"], *budgets, fmt(r["top5_recall"], 2), fmt(r["kendall_fast"], 3)]


def _md_table(columns: Sequence[str], rows: list[list[str]]) -> list[str]:
    """Markdown table lines; the method name (second cell of a ranking row, first of a NAS row) made inert."""
    name = columns.index("method")
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return out + ["| " + " | ".join(md_text(c) if i == name else c for i, c in enumerate(row)) + " |" for row in rows]


def holds_older_schema(entries) -> bool:
    """Whether any of ``entries`` is of an older entry schema (so lacks some metrics, shown as —)."""
    return any(e.schema_version != ENTRY_SCHEMA_VERSION for e in entries)


def render_markdown(entries: list[Entry]) -> str:
    lines = [
        "# latbench leaderboard",
        "",
        "Generated by `latbench leaderboard render` from this board's `entries/*.json`; do not edit.",
        "Every method is scored on the same (task, trial) units (same tasks, seeds and measured archs), so methods are",
        "compared *paired*: within each unit they are ranked by Spearman ρ (1 = best) and **mean rank** is the mean over",
        "the units. When the Friedman test finds a difference (α = 0.05), the Nemenyi test tells two methods apart if",
        "their mean ranks differ by more than the critical difference (CD); **rank** = 1 + the number of methods",
        "significantly better, rows are sorted by mean rank, **p (next)** is the Nemenyi p-value against the next row,",
        "and the critical-difference diagram joins the methods it cannot tell apart. Beside it: mean Spearman over tasks",
        "± std over trials with its 95 % bootstrap interval over tasks; MdAPE (median absolute percentage error) and",
        "MAPE⌊10 %⌋ (denominator at least 10 % of the median latency) instead of raw MAPE (kept in the entries); and what",
        "NAS uses a predictor for."
        + (
            " — marks a metric an entry was stored without (entry schema 1): it appears when the method is run again."
            if holds_older_schema(entries)
            else ""
        ),
        "Definitions: the Metrics page of latbench's documentation. The interactive page (filters by tier and space,",
        "plots) is `site/index.html`.",
        "",
    ]
    empty = True
    for suite in SUITES:
        tables = [ranking(entries, suite, k) for k in SUITE_SHOTS]
        if not any(t.rows for t in tables):
            continue
        empty = False
        lines += [f"![mean Spearman vs k, {suite} suite](site/{score_figure(suite)})", ""]
        for k, table in zip(SUITE_SHOTS, tables):
            if not table.rows:
                continue
            lines += [
                f"## {suite} suite, k = {k}",
                "",
                f"![critical-difference diagram, {suite} suite, k = {k}](site/{cd_figure(suite, k)})",
                "",
                paired_test_line(table),
                "",
                *_md_table(RANK_COLUMNS, [rank_cells(r) for r in table.rows]),
                "",
                f'NAS utility at k = {k}, per target device then averaged: precision and recall of "predicted within the '
                'budget" at budgets at the 10th, 25th and 50th percentile of the true latencies; of the truly fastest 5 %, '
                "the fraction predicted among the fastest 5 %; Kendall τ within the truly fastest quartile.",
                "",
                *_md_table(NAS_COLUMNS, [nas_cells(r) for r in table.rows]),
                "",
            ]
    if empty:
        lines += ["No entries yet: see `examples/README.md` to submit one.", ""]
    return "\n".join(lines) + "\n"


def time_cell(row: dict) -> str:
    """A ranking row's run-time cell: the entry's seconds, or n/a for scored predictions."""
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
