"""Finished sweep units on disk, so a grid too big for one sitting accumulates across runs.

Why: the learned baselines cost minutes per (task, trial) on a laptop-class CPU, so their full
board (90 units each) takes hours; a sweep that dies, is stopped, or runs in slices on several
machines must not start again from nothing. With ``--checkpoint DIR`` every unit that finishes is
written at once (atomically) as one small JSON file; a later sweep with the same ``DIR`` loads
the finished units and runs only the rest. The final entries hold the same metrics as one
uninterrupted run (a unit's numbers depend only on its key and the data), and the units' own
measured seconds.

A unit's file is found by its key: sha256 over the method (spec, class, parameters, and a
fingerprint of the code that runs it -- see ``code_fingerprint`` -- docstrings and comments left
out, so editing a method's code or a helper it imports invalidates its checkpoints but editing
docs does not), the task
(id, version), trial, shot counts, protocol, source-arch mode and the latbench version. A file is
reused only if it also quotes the current hash of the task's data (``store.data_hash``); a stale
one (the data changed) is run again and overwritten. A file that is not a checkpoint of this
format is an error naming the file -- never silently replaced, never executed (plain JSON only).
Nor is a unit's content trusted: it is validated like a leaderboard entry's trials when it is loaded
(:func:`trial_problem`: every metric in its range, per-trial ``mean``/``worst`` recomputed from the
per-device metrics, devices = the task's targets, the protocol's seed, measured archs within k and
the query pool), so a hand-edited unit is refused by name; only regular files are read (a FIFO or a
folder at a unit's path is an error, not a hang or a traceback), nested at most ``MAX_DEPTH`` levels.
Results assembled from units loaded from a ``--checkpoint`` folder are not a re-run: ``leaderboard
baselines`` stores them unverified.
Units that no sweep would load again (their code or version changed) stay on disk until
``latbench checkpoints prune DIR`` (``prune`` here) removes them.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import math
import os
import re
import sys
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latbench import __version__, io
from latbench.data import store
from latbench.errors import LatbenchError
from latbench.eval.results import TrialResult, jsonable_params
from latbench.eval.units import Outcome
from latbench.io import write_text
from latbench.methods.registry import import_allowed
from latbench.protocol.metrics import HIGHER_IS_BETTER, LEGACY_METRICS, METRICS, range_problem
from latbench.protocol.trial import PROTOCOL_VERSION

FORMAT = "latbench-unit-checkpoint/1"
MAX_BYTES = 2_000_000  # one unit is a few KB; anything this large is not ours
MAX_DEPTH = 16  # a unit nests 5 levels (trials, devices, metrics; its key's params may nest a little)


class CheckpointError(LatbenchError):
    """A checkpoint file is unreadable or malformed (its path and the reason are in the message)."""


KEY_FIELDS = (
    "method",
    "class",
    "code",
    "params",
    "task",
    "task_version",
    "trial",
    "shots",
    "protocol",
    "protocol_version",
    "source_archs",
    "latbench_version",
)


def unit_key(unit) -> dict[str, Any]:
    """Everything a unit's numbers depend on (besides the data, checked separately by hash)."""
    m = unit.method
    return {
        "method": unit.label,
        "class": f"{type(m).__module__}:{type(m).__qualname__}",
        "code": code_fingerprint(type(m).__module__),
        "params": _plain(jsonable_params(m.get_params())),
        "task": unit.task.id,
        "task_version": unit.task.version,
        "trial": unit.trial,
        "shots": list(unit.shots),
        "protocol": unit.protocol,
        "protocol_version": PROTOCOL_VERSION,
        "source_archs": unit.source_archs,
        "latbench_version": __version__,
    }


def _plain(value):
    """JSON round-trip-safe: non-finite floats (not JSON) become their repr, tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


#: Top-level packages whose modules are followed through imports (besides the method's own package).
FOLLOWED = ("latbench", "latbench_baselines")
#: Modules that turn a method into a unit's numbers, fingerprinted with every method: the unit runner
#: (``latbench.eval.units``) and, through its imports, the trial loop (``latbench.eval.trials``), the
#: protocol (``latbench.protocol.*``: shot sampling, scoring), the task specs and the data store.
#: A change there changes the numbers as surely as a change in the method, so it re-runs the unit.
RUNNER_MODULES = ("latbench.eval.units", "latbench.eval.trials")


@functools.cache
def code_fingerprint(module: str) -> str:
    """Fingerprint of the code that computes a unit of a method defined in ``module``.

    It covers ``module`` itself, every module it imports, transitively (module-level and
    function-local imports, relative ones resolved), that belongs to latbench, to the built-in
    baselines (``latbench_baselines``) or to the method's own top-level package, the packages
    above those (their ``__init__`` runs too), and the same closure of ``RUNNER_MODULES`` (the
    evaluation code that produces the numbers). It is a sha256 over the sorted (module name,
    ``source_fingerprint``) pairs, so a docstring- or comment-only edit anywhere keeps it, and
    any code edit in any of them changes it (e.g. a new floor in ``latbench.methods.fitting``
    re-runs every unit of ``latbench_baselines.flops``). Modules are located with import specs and
    read as source, never executed. A module whose source cannot be read counts by name only.
    Computed once per process (``clear_code_cache`` forgets); "" if ``module`` itself has no
    readable source.
    """
    if _module_fingerprint(module) == "":
        return ""
    pairs = sorted((name, _module_fingerprint(name)) for name in code_modules(module))
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


def code_modules(module: str) -> list[str]:
    """The modules ``code_fingerprint(module)`` covers, sorted (see there)."""
    followed = set(FOLLOWED) | {module.partition(".")[0]}
    seen: set[str] = set()
    todo = [".".join(m.split(".")[:i]) for m in (module, *RUNNER_MODULES) for i in range(1, m.count(".") + 2)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(m for m in _imports(name) if m.partition(".")[0] in followed and m not in seen)
    return sorted(seen)


def clear_code_cache() -> None:
    """Forget every fingerprint this process computed (they are read from disk again on next use)."""
    for fn in (code_fingerprint, _module_fingerprint, _imports, _spec):
        fn.cache_clear()


@functools.cache
def _spec(name: str):
    """The import spec of module ``name``, found without importing it or its packages (None if none)."""
    mod = sys.modules.get(name)
    if mod is not None:
        return getattr(mod, "__spec__", None) or importlib.machinery.ModuleSpec(name, None, origin=getattr(mod, "__file__", None))
    parent, _, _ = name.rpartition(".")
    try:
        if not parent:
            return importlib.util.find_spec(name)  # a top-level name imports nothing
        pspec = _spec(parent)
        locations = getattr(pspec, "submodule_search_locations", None)
        return importlib.machinery.PathFinder.find_spec(name, list(locations)) if locations else None
    except (ImportError, ValueError):
        return None


def _source(name: str) -> str | None:
    """Module ``name``'s Python source as on disk now (None if it has none that can be read)."""
    spec = _spec(name)
    origin = getattr(spec, "origin", None)
    if not origin or not str(origin).endswith(".py"):
        return None
    try:
        with tokenize.open(origin) as f:
            return f.read()
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


@functools.cache
def _module_fingerprint(name: str) -> str:
    source = _source(name)
    if source is None:
        return ""
    try:
        return source_fingerprint(source)
    except (SyntaxError, ValueError):
        return "unparsable:" + hashlib.sha256(source.encode()).hexdigest()[:16]


@functools.cache
def _imports(name: str) -> tuple[str, ...]:
    """Every module ``name``'s source imports anywhere (with the packages above each), resolved."""
    source = _source(name)
    if source is None:
        return ()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ()
    spec = _spec(name)
    package = name if getattr(spec, "submodule_search_locations", None) is not None else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            except (ImportError, ValueError):
                continue
            if not base:
                continue
            found.add(base)
            for alias in node.names:  # ``from pkg import mod`` imports pkg.mod when it is a module
                if alias.name != "*" and _spec(f"{base}.{alias.name}") is not None:
                    found.add(f"{base}.{alias.name}")
    with_parents = set()
    for m in found:
        parts = m.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    with_parents.discard(name)
    return tuple(sorted(with_parents))


def source_fingerprint(source: str) -> str:
    """sha256 of Python source's syntax tree without its docstrings (comments never reach it).

    A docstring is removed, not replaced, so adding, editing or deleting one never changes the hash.
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            del body[0]
            if not body:
                body.append(ast.Pass())  # a body that was only a docstring: same tree as `pass`
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def path_for(root: Path, unit) -> Path:
    """``ROOT/<method>/<task>/trial<t>-<key digest>.json``: readable, and unique per key."""
    return _key_path(root, unit_key(unit))


def _key_path(root: Path, key: dict) -> Path:
    stem = re.sub(r"[^a-z0-9]+", "-", str(key["method"]).lower()).strip("-") or "method"
    return Path(root) / stem / str(key["task"]) / f"trial{key['trial']}-{_digest(key)[:16]}.json"


def save(root: Path, unit, outcome) -> Path:
    """Write one finished unit (atomically: a crash never leaves a partial file that looks finished)."""
    doc = {
        "format": FORMAT,
        "key": unit_key(unit),
        "data_hash": store.data_hash([unit.task]),
        "seconds": outcome.seconds,
        "host": outcome.host,
        "trials": [t.model_dump() for t in outcome.trials],
    }
    path = path_for(root, unit)
    try:
        return write_text(path, json.dumps(doc, indent=1, allow_nan=False))
    except OSError as e:  # e.g. a folder (or a file where a folder belongs) in the way
        raise CheckpointError(f"cannot save checkpoint {path}: {e.strerror or e}") from None


@dataclass
class Record:
    """One checkpoint file, validated: the unit's key, the data hash it ran on, its results."""

    path: Path
    key: dict
    data_hash: str
    seconds: float
    host: str
    trials: list  # TrialResult, one per key["shots"]


def read(path: Path, bad=None) -> Record:
    """Parse and validate one checkpoint file (plain JSON only); CheckpointError naming it if bad.

    ``bad(path, why)``, if given, makes the error instead (its wording for another context).
    """
    path = Path(path)
    make = bad or (lambda p, why: CheckpointError(f"checkpoint {p} is not usable: {why}; delete it to run that unit again"))

    def bad(why: str) -> CheckpointError:
        return make(path, why)

    raw = _read_regular(path, bad)
    if len(raw) > MAX_BYTES:
        raise bad(f"more than {MAX_BYTES} bytes (a unit's checkpoint is a few KB)")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"not valid JSON ({e})") from None
    except RecursionError:
        raise bad(f"JSON nested too deeply (a checkpoint nests at most {MAX_DEPTH} levels)") from None
    if json_depth(doc) > MAX_DEPTH:
        raise bad(f"JSON nested deeper than {MAX_DEPTH} levels")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} file")
    key = doc.get("key")
    if (
        not isinstance(key, dict)
        or not isinstance(key.get("shots"), list)
        or not isinstance(key.get("trial"), int)
        or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in key["shots"])
    ):
        raise bad("missing or malformed 'key'")
    trials = doc.get("trials")
    if not isinstance(trials, list) or len(trials) != len(key["shots"]):
        raise bad(f"expected one trial result per shot count {key['shots']}")
    try:
        parsed = [TrialResult.model_validate(t) for t in trials]
    except ValueError as e:
        raise bad(f"malformed trial result ({str(e).splitlines()[0]})") from None
    for t, k in zip(parsed, key["shots"]):
        if t.trial != key["trial"]:
            raise bad(f"holds trial {t.trial}, its key says {key['trial']}")
        values = [v for d in t.devices.values() for v in d.values()] + list(t.mean.values()) + list(t.worst.values())
        if not all(math.isfinite(v) for v in values):
            raise bad("non-finite metric")
        problem = trial_problem(t, f"k={k}")  # ranges and recomputed mean/worst; load() checks against the task
        if problem:
            raise bad(problem)
    seconds = doc.get("seconds")
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise bad("missing or invalid 'seconds'")
    return Record(path, key, str(doc.get("data_hash", "")), float(seconds), str(doc.get("host", "")), parsed)


def load(root: Path, unit):
    """The unit's stored Outcome, or None when there is none or it is stale (data changed).

    Raises CheckpointError for a file at the unit's path that is not a valid checkpoint of it: not
    a regular file, malformed, another unit's, or results the unit cannot have produced (validated
    like a leaderboard entry's trials: ``trial_problem`` against the task, so a hand-edited unit --
    a Spearman of 5.0, a mean that does not recompute, a device that is not a target, more
    measurements than k -- is refused by name, never assembled into results).
    """
    path = path_for(root, unit)
    if not os.path.lexists(path):
        return None
    rec = read(path)
    if rec.key != unit_key(unit):
        raise CheckpointError(
            f"checkpoint {path} is not usable: it belongs to another unit (its key does not match "
            "this method/task/trial/shots); delete it to run that unit again"
        )
    if rec.data_hash != store.data_hash([unit.task]):
        return None  # stale: the task's data changed since; run again
    extra = len(store.get_space(unit.task.space).reference_ids) if unit.protocol == "help-paper" else 0
    for t, k in zip(rec.trials, unit.shots):
        problem = trial_problem(t, f"k={k}", task=unit.task, shots=k, protocol=unit.protocol, extra_budget=extra)
        if problem:
            raise CheckpointError(f"checkpoint {path} is not usable: {problem}; delete it to run that unit again")
    return Outcome(unit.index, rec.trials, store.info()["content_hash"], rec.seconds, rec.host)


def _read_regular(path: Path, bad) -> bytes:
    """At most ``MAX_BYTES + 1`` bytes of a regular file; ``bad(why)`` for anything else (a directory,
    a FIFO -- refused without blocking -- or an unreadable file)."""
    try:
        return io.read_regular(path, MAX_BYTES)
    except io.NotReadable as e:
        if e.kind == "error":
            raise bad(f"cannot read it ({e.detail})") from None
        raise bad("a directory, not a checkpoint file" if e.kind == "directory" else "not a regular file") from None


def scan(root: Path, bad=None) -> list[Record]:
    """Every checkpoint under ``root`` (validated), e.g. to tabulate a sweep that is not finished."""
    return [read(p, bad) for p in sorted(Path(root).rglob("*.json"))]


def _module_file_exists(module: str) -> bool:
    """Whether ``module`` can be found, without running any of its packages' code: each prefix is
    looked up through every finder on ``sys.meta_path`` (editable installs register one) with its
    parent's search locations, as an import would, but nothing is executed."""
    parts = module.split(".")
    locations = None
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        spec = next(
            (found for finder in sys.meta_path if (found := _find(finder, name, locations)) is not None),
            None,
        )
        if spec is None:
            return False
        locations = spec.submodule_search_locations
        if locations is None and i < len(parts) - 1:
            return False  # a plain module cannot hold submodules
    return True


def _find(finder, name: str, locations):
    find_spec = getattr(finder, "find_spec", None)
    try:
        return find_spec(name, locations) if find_spec is not None else None
    except (ImportError, ValueError):
        return None


def current_path(root: Path, key: dict, allow_import: Sequence[str] = ()) -> Path | None:
    """Where a sweep run today would look for the unit of ``key`` (None: its method is gone).

    The stored key with today's code fingerprint of its method's class, latbench version and
    protocol version; a file anywhere else is never loaded again. Parameters are taken as stored
    (they are not re-derived from the class: that would mean rebuilding the method from their
    JSON form, which is lossy). Raises CheckpointError if the method's module exists but cannot be
    imported here (a missing dependency, a broken edit): that says nothing about the unit. A module
    that is neither a registered method's nor already imported nor under ``allow_import`` is not
    imported (a checkpoint file must not choose what code runs): CheckpointError.
    """
    if set(key) != set(KEY_FIELDS):
        return None  # written by a version whose key had other fields
    module, _, qualname = str(key["class"]).partition(":")
    if not module or not qualname:
        return None
    if not import_allowed(module, allow_import):
        if not _module_file_exists(module):
            return None  # the module (or its package) no longer exists
        raise CheckpointError(
            f"units of {str(key['class'])[:100]!r} name module {module[:100]!r}, which is not a registered method: telling "
            f"whether they are current imports it; pass --allow-import {module[:100]} if you trust that code "
            "(nothing was pruned)"
        )
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            return None  # the module (or its package) no longer exists
        raise CheckpointError(
            f"cannot tell whether the units of {key['class']} are current: importing {module} failed ({e}); nothing was pruned"
        ) from None
    except Exception as e:  # noqa: BLE001 -- any failure of someone's module import
        raise CheckpointError(
            f"cannot tell whether the units of {key['class']} are current: importing {module} "
            f"failed ({type(e).__name__}: {e}); nothing was pruned"
        ) from None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None  # the class was renamed or removed
    if not isinstance(obj, type) or obj.__module__ != module:
        return None  # not the class the unit ran any more (e.g. now re-exported from elsewhere)
    today = {**key, "code": code_fingerprint(module), "latbench_version": __version__, "protocol_version": PROTOCOL_VERSION}
    return _key_path(root, today)


def prune(root: Path, dry_run: bool = False, allow_import: Sequence[str] = ()) -> tuple[list[Path], list[Path]]:
    """Remove the units under ``root`` that no sweep would load again; ``(kept, removed)`` paths.

    A unit is stale when its file is not where ``current_path`` puts its key: the code of its
    method (or of anything it imports, or of the evaluation code) changed, the latbench or protocol
    version changed, or its method's class cannot be found any more. Units whose data hash is stale
    are kept (a sweep re-runs and overwrites them in place). Every JSON file under ``root`` is read
    and every key resolved before anything is removed: a folder that does not exist, or holds a
    JSON file that is not a unit checkpoint, is refused as a whole, as is a unit of a method whose
    module may not be imported (see :func:`current_path`). ``dry_run``: remove nothing,
    return what would be removed. Folders left empty are removed too. Other files are left alone.
    """
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint folder {root} does not exist" + (" (it is a file)" if root.exists() else ""))

    def refuse(path: Path, why: str) -> CheckpointError:
        return CheckpointError(f"not pruning {root} (nothing removed): {path} is not a unit checkpoint ({why})")

    kept, stale = [], []
    for rec in scan(root, refuse):
        (kept if current_path(root, rec.key, allow_import) == rec.path else stale).append(rec.path)
    if not dry_run:
        for path in stale:
            path.unlink()
            for folder in (path.parent, path.parent.parent):
                if folder != root and root in folder.parents:
                    try:
                        folder.rmdir()  # only if empty
                    except OSError:
                        break
    return kept, stale


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


# ------------------------------------------------------------- what a trial's result may hold
def json_depth(value) -> int:
    """How deeply JSON containers nest in ``value`` (0 for a scalar), without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        todo.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def metrics_problem(m: dict, where: str) -> str | None:
    """What is wrong with one device's metrics (None if nothing): the set of metrics, finite, in range."""
    if set(m) not in (set(METRICS), set(LEGACY_METRICS)):  # LEGACY_METRICS: board entries of schema 1
        return f"{where}: metrics {sorted(m)}, expected {sorted(METRICS)}"
    for k, v in m.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{where}: {k} is not a finite number ({v!r})"
    if not (-1 <= m["spearman"] <= 1 and -1 <= m["kendall"] <= 1):
        return f"{where}: rank correlations must lie in [-1, 1] (spearman {m['spearman']}, kendall {m['kendall']})"
    if m["mape"] < 0 or m["rmse"] < 0 or not (0 <= m["acc5"] <= 1 and 0 <= m["acc10"] <= 1):
        return (
            f"{where}: negative error or accuracy outside [0, 1] "
            f"(mape {m['mape']}, rmse {m['rmse']}, acc5 {m['acc5']}, acc10 {m['acc10']})"
        )
    problem = range_problem(m)
    return f"{where}: {problem}" if problem else None


def trial_problem(
    tr: TrialResult, where: str, *, task=None, shots: int | None = None, protocol: str = "official", extra_budget: int = 0
) -> str | None:
    """The first thing wrong with one trial's result (None if nothing), as a one-line message
    starting with ``where``. The same checks for a leaderboard entry's trials and a sweep unit's.

    Always: every metric finite and in its range (Spearman and Kendall in [-1, 1], MAPE and RMSE
    >= 0, the accuracies in [0, 1]); seconds finite and >= 0; ``mean`` and ``worst`` recomputed from
    the per-device metrics. With ``task`` (a TaskSpec) and ``shots``: the protocol's seed, the
    devices are exactly the task's targets, measurements only on targets, at most ``shots`` (plus
    ``extra_budget``: HELP's reference archs under ``help-paper``) per device, and under the
    official protocol only archs of the task's query pool.
    """
    if task is not None:
        from latbench.protocol.trial import trial_seed

        if tr.seed != trial_seed(task, tr.trial):
            return f"{where}: seed {tr.seed} is not the protocol's seed"
        if set(tr.devices) != set(task.target):
            return f"{where}: devices {sorted(tr.devices)}, expected {sorted(task.target)}"
    if not tr.devices:
        return f"{where}: no devices"
    for dev, m in tr.devices.items():
        problem = metrics_problem(m, f"{where} {dev}")
        if problem:
            return problem
    if task is not None and shots is not None:
        pool = set(task.id_pools().query_pool) if protocol == "official" else None
        for dev in task.target:
            measured = set(tr.measured.get(dev, []))
            if len(measured) > shots + extra_budget or (pool is not None and not measured <= pool):
                return f"{where} {dev}: measured archs exceed k={shots} or leave the query pool"
        stray = sorted(set(tr.measured) - set(task.target))
        if stray:
            return f"{where}: measurements on devices that are not targets: {stray}"
    if any(not math.isfinite(v) or v < 0 for v in tr.seconds.values()):
        return f"{where}: seconds must be finite and >= 0 ({tr.seconds})"
    names = [m for m in METRICS if m in next(iter(tr.devices.values()))]
    if any(set(m) != set(names) for m in tr.devices.values()):
        return f"{where}: the devices have different sets of metrics"
    for name, summary in (("mean", tr.mean), ("worst", tr.worst)):
        if set(summary) != set(names):
            return f"{where}: {name} has metrics {sorted(summary)}, expected {sorted(names)}"
    for metric in names:
        vals = [m[metric] for m in tr.devices.values()]
        mean = float(np.mean(vals))
        if not _close(mean, tr.mean[metric]):
            return f"{where}: mean {metric} {tr.mean[metric]} does not recompute ({mean})"
        worst = float((min if HIGHER_IS_BETTER[metric] else max)(vals))
        if not _close(worst, tr.worst[metric]):
            return f"{where}: worst {metric} {tr.worst[metric]} does not recompute ({worst})"
    return None
