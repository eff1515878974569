"""The rules for a run's arguments, kept in one place for every way of starting a run.

:func:`latbench.evaluate` words a broken rule in Python terms (``workers``, ``time_budget`` in
seconds; :class:`ParameterError`), the command line in its options' terms (``--workers``,
``--time-budget`` in minutes; :class:`SweepError`). Each check runs before any data is loaded or
any worker started.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

from latbench.errors import ParameterError, did_you_mean
from latbench.eval.units import SweepError
from latbench.protocol.trial import PROTOCOLS

#: ``source_archs`` modes a unit may use (see ``latbench.protocol.trial.make_trial``), and what each trains on.
SOURCE_ARCHS = {"sample": "the task's source sample", "all": "every measured arch outside the evaluation set"}


@dataclass(frozen=True)
class Terms:
    """How the caller names the arguments, and the error it raises."""

    error: type[Exception]
    shots: str
    trials: str
    workers: str
    time_budget: str
    budget_seconds: float  # seconds per unit of the caller's time budget
    budget_unit: str
    checkpoint: str
    protocol: str
    source_archs: str
    ray_address: str = "--ray-address"


PYTHON = Terms(
    ParameterError, "shots", "trials", "workers", "time_budget", 1, "seconds", "checkpoint", "protocol", "source_archs"
)
CLI = Terms(
    SweepError,
    "--shots",
    "--trials",
    "--workers",
    "--time-budget",
    60,
    "minutes",
    "--checkpoint DIR",
    "--protocol",
    "--source-archs",
)


def _whole(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_counts(shots, trials, terms: Terms = CLI) -> None:
    """One or more distinct shot counts, each a whole number >= 0; ``trials`` a whole number >= 1."""
    shots = list(shots)
    if not shots or not all(_whole(k) and k >= 0 for k in shots) or len(set(shots)) != len(shots):
        raise terms.error(f"{terms.shots} must be distinct ints >= 0, got {shots}")
    if not (_whole(trials) and trials >= 1):
        raise terms.error(f"{terms.trials} must be an int >= 1, got {trials!r}")


def check_executor(workers, ray_address: str | None = None, terms: Terms = CLI) -> None:
    """``workers`` a whole number >= 1; a Ray address, when given, not blank."""
    if not (_whole(workers) and workers >= 1):
        raise terms.error(f"{terms.workers} must be an int >= 1 (got {workers!r})")
    if ray_address is not None and not ray_address.strip():
        raise terms.error(f"{terms.ray_address} must be auto, local, or a Ray address such as ray://host:10001")


def check_budget(time_budget: float | None, checkpoint: Path | None, ray_address: str | None = None, terms: Terms = CLI) -> None:
    """A time budget (in seconds here) is > 0, keeps its finished units in a checkpoint, and runs on local workers."""
    if time_budget is None:
        return
    number = isinstance(time_budget, Real) and not isinstance(time_budget, bool)
    if not (number and time_budget > 0):
        given = f"{time_budget / terms.budget_seconds:g}" if number else repr(time_budget)
        raise terms.error(f"{terms.time_budget} must be > 0 {terms.budget_unit} (got {given})")
    if checkpoint is None:
        raise terms.error(f"{terms.time_budget} needs {terms.checkpoint}: without it the finished units would be lost")
    if ray_address:
        raise terms.error(f"{terms.time_budget} works with local workers only, not with {terms.ray_address}")


def check_modes(protocol: str, source_archs: str, terms: Terms = CLI) -> None:
    """A known protocol and source-arch mode."""
    if protocol not in PROTOCOLS:
        raise terms.error(
            f"{terms.protocol} must be one of {', '.join(PROTOCOLS)}, got {protocol!r}{did_you_mean(str(protocol), PROTOCOLS)}"
        )
    if source_archs not in SOURCE_ARCHS:
        modes = "; ".join(f"{k}: {v}" for k, v in SOURCE_ARCHS.items())
        raise terms.error(f"{terms.source_archs} must be {' or '.join(map(repr, SOURCE_ARCHS))}, got {source_archs!r} ({modes})")
