"""Finished sweep units on disk, so a grid too big for one sitting accumulates across runs.

Why: the learned baselines cost minutes per (task, trial) on a laptop-class CPU, so their full
board (90 units each) takes hours; a sweep that dies, is stopped, or runs in slices on several
machines must not start again from nothing. With ``--checkpoint DIR`` every unit that finishes is
written at once (atomically) as one small JSON file; a later sweep with the same ``DIR`` loads
the finished units and runs only the rest. The final entries hold the same metrics as one
uninterrupted run (a unit's numbers depend only on its key and the data), and the units' own
measured seconds.

A unit's file is found by its key: sha256 over the method (spec, class, parameters, and a
fingerprint of the code of the module that defines it, docstrings and comments left out, so
editing a method's code invalidates its checkpoints but editing its docs does not), the task
(id, version), trial, shot counts, protocol, source-arch mode and the latbench version. A file is
reused only if it also quotes the current hash of the task's data (``store.data_hash``); a stale
one (the data changed) is run again and overwritten. A file that is not a checkpoint of this
format is an error naming the file -- never silently replaced, never executed (plain JSON only).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latbench import __version__
from latbench.data import store
from latbench.errors import LatbenchError
from latbench.eval.results import TrialResult, jsonable_params
from latbench.eval.units import Outcome
from latbench.io import write_text
from latbench.protocol.trial import PROTOCOL_VERSION

FORMAT = "latbench-unit-checkpoint/1"
MAX_BYTES = 2_000_000  # one unit is a few KB; anything this large is not ours


class CheckpointError(LatbenchError):
    """A checkpoint file is unreadable or malformed (its path and the reason are in the message)."""


def unit_key(unit) -> dict[str, Any]:
    """Everything a unit's numbers depend on (besides the data, checked separately by hash)."""
    m = unit.method
    return {
        "method": unit.label, "class": f"{type(m).__module__}:{type(m).__qualname__}", "code": code_fingerprint(type(m).__module__),
        "params": _plain(jsonable_params(m.get_params())), "task": unit.task.id, "task_version": unit.task.version,
        "trial": unit.trial, "shots": list(unit.shots), "protocol": unit.protocol, "protocol_version": PROTOCOL_VERSION,
        "source_archs": unit.source_archs, "latbench_version": __version__,
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


@functools.lru_cache(maxsize=None)
def code_fingerprint(module: str) -> str:
    """sha256 of the module's syntax tree without docstrings ("" if its source cannot be read)."""
    try:
        return source_fingerprint(inspect.getsource(sys.modules[module]))
    except (KeyError, OSError, TypeError, SyntaxError):
        return ""


def source_fingerprint(source: str) -> str:
    """sha256 of Python source's syntax tree with every docstring blanked (comments never reach it)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            body[0] = ast.Pass()
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def path_for(root: Path, unit) -> Path:
    """``ROOT/<method>/<task>/trial<t>-<key digest>.json``: readable, and unique per key."""
    stem = re.sub(r"[^a-z0-9]+", "-", unit.label.lower()).strip("-") or "method"
    return Path(root) / stem / unit.task.id / f"trial{unit.trial}-{_digest(unit_key(unit))[:16]}.json"


def save(root: Path, unit, outcome) -> Path:
    """Write one finished unit (atomically: a crash never leaves a partial file that looks finished)."""
    doc = {
        "format": FORMAT, "key": unit_key(unit), "data_hash": store.data_hash([unit.task]),
        "seconds": outcome.seconds, "host": outcome.host,
        "trials": [t.model_dump() for t in outcome.trials],
    }
    return write_text(path_for(root, unit), json.dumps(doc, indent=1, allow_nan=False))


@dataclass
class Record:
    """One checkpoint file, validated: the unit's key, the data hash it ran on, its results."""

    path: Path
    key: dict
    data_hash: str
    seconds: float
    host: str
    trials: list  # TrialResult, one per key["shots"]


def read(path: Path) -> Record:
    """Parse and validate one checkpoint file (plain JSON only); CheckpointError naming it if bad."""
    path = Path(path)

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} is not usable: {why}; delete it to run that unit again")

    if path.stat().st_size > MAX_BYTES:
        raise bad(f"{path.stat().st_size} bytes (a unit's checkpoint is a few KB)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} file")
    key = doc.get("key")
    if not isinstance(key, dict) or not isinstance(key.get("shots"), list) or not isinstance(key.get("trial"), int):
        raise bad("missing or malformed 'key'")
    trials = doc.get("trials")
    if not isinstance(trials, list) or len(trials) != len(key["shots"]):
        raise bad(f"expected one trial result per shot count {key['shots']}")
    try:
        parsed = [TrialResult.model_validate(t) for t in trials]
    except ValueError as e:
        raise bad(f"malformed trial result ({str(e).splitlines()[0]})") from None
    for t in parsed:
        if t.trial != key["trial"]:
            raise bad(f"holds trial {t.trial}, its key says {key['trial']}")
        values = [v for d in t.devices.values() for v in d.values()] + list(t.mean.values()) + list(t.worst.values())
        if not all(math.isfinite(v) for v in values):
            raise bad("non-finite metric")
    seconds = doc.get("seconds")
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise bad("missing or invalid 'seconds'")
    return Record(path, key, str(doc.get("data_hash", "")), float(seconds), str(doc.get("host", "")), parsed)


def load(root: Path, unit):
    """The unit's stored Outcome, or None when there is none or it is stale (data changed).

    Raises CheckpointError for a file at the unit's path that is not a valid checkpoint of it.
    """
    path = path_for(root, unit)
    if not path.is_file():
        return None
    rec = read(path)
    if rec.key != unit_key(unit):
        raise CheckpointError(f"checkpoint {path} is not usable: it belongs to another unit (its key does not match "
                              "this method/task/trial/shots); delete it to run that unit again")
    if rec.data_hash != store.data_hash([unit.task]):
        return None  # stale: the task's data changed since; run again
    return Outcome(unit.index, rec.trials, store.info()["content_hash"], rec.seconds, rec.host)


def scan(root: Path) -> list[Record]:
    """Every checkpoint under ``root`` (validated), e.g. to tabulate a sweep that is not finished."""
    return [read(p) for p in sorted(Path(root).rglob("*.json"))]


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")
