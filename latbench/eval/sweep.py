"""Sweep helpers: parse the command line's lists, make every method up front, name output files.

The work itself runs through :func:`latbench.eval.runner.run`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from latbench.eval.arguments import check_budget, check_counts, check_executor, check_modes  # noqa: F401  (checked before any work)
from latbench.eval.units import SweepError
from latbench.methods.registry import make_method


def parse_list(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise SweepError(f"{what}: expected a comma-separated list, got {text!r}")
    if len(set(items)) != len(items):
        raise SweepError(f"{what}: {sorted({x for x in items if items.count(x) > 1})[0]!r} is listed twice")
    return items


def parse_shots(text: str) -> list[int]:
    try:
        return [int(x) for x in parse_list(text, "--shots")]
    except ValueError:
        raise SweepError(f"--shots expects comma-separated integers such as 5,10,20, got {text!r}") from None


def file_name(spec: str) -> str:
    """Entry file name for a method spec: ``flops`` -> flops.json, ``pkg.mod:Cls`` -> pkg-mod-cls.json."""
    return (re.sub(r"[^a-z0-9]+", "-", spec.lower()).strip("-") or "method") + ".json"


def make_methods(specs: Sequence[str], params: dict) -> list[tuple[str, Any]]:
    """Resolve and instantiate every method up front, so a typo fails before any work starts."""
    names = [file_name(s) for s in specs]
    for n in names:
        if names.count(n) > 1:
            raise SweepError(f"methods {[x for x, m in zip(specs, names) if m == n]} would share the output file {n}")
    return [(s, make_method(s, **params)) for s in specs]


def describe_executor(workers: int, ray_address: str | None) -> str:
    if ray_address == "local":
        return f"local Ray, {workers} CPUs"
    if ray_address:
        return f"Ray cluster at {ray_address}"
    return "in-process" if workers == 1 else f"{workers} worker processes"
