"""One method against every other on a board suite: ``latbench leaderboard compare``.

The board's ranks come from an all-pairs test (Nemenyi), which must guard against every one of the
K (K - 1) / 2 pairs and so needs large gaps between mean ranks. A submitter's question is narrower
-- is *my* method better than each baseline? -- and a comparison with a control answers it with
more power: K - 1 paired tests, Holm-adjusted (:func:`latbench.leaderboard.ranking.against_control`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latbench.leaderboard.board import Entry, LeaderboardError
from latbench.leaderboard.ranking import ALPHA, against_control


@dataclass
class Comparison:
    """``control`` against every other entry of ``suite`` at ``shots``: one row per other entry."""

    control: str  #: the control's method name
    suite: str
    shots: int
    n_tasks: int  #: tasks every compared entry was scored on
    n_units: int  #: (task, trial) units every compared entry was scored on
    control_spearman: float  #: the control's mean Spearman over those tasks
    alpha: float
    rows: list[dict]  #: sorted by mean difference: method, entry, spearman, diff, ci, wins, p, p_holm, verdict


def pick_control(entries: list[Entry], name: str, suite: str) -> Entry:
    """The suite's entry named ``name`` (a method name or an entry id); LeaderboardError when there
    is none, or several entries of that method (then an entry id must say which)."""
    on_suite = [e for e in entries if e.suite == suite]
    by_id = [e for e in on_suite if e.entry_id == name]
    if by_id:
        return by_id[0]
    found = [e for e in on_suite if e.method.name == name]
    if not found:
        names = sorted({e.method.name for e in on_suite})
        raise LeaderboardError(f"no {suite}-suite entry of method {name!r} on the board (there: {', '.join(names) or 'none'})")
    if len(found) > 1:
        ids = ", ".join(sorted(e.entry_id for e in found))
        raise LeaderboardError(f"{len(found)} {suite}-suite entries of method {name!r} ({ids}): give the entry id")
    return found[0]


def compare(entries: list[Entry], control: Entry, shots: int, *, alpha: float = ALPHA, seed: int = 0) -> Comparison:
    """``control`` against every other entry on its suite at ``shots``, paired on their common tasks.

    Per task the score is the mean over the common trials of each trial's mean Spearman over target
    devices; ``wins`` is the share of common (task, trial) units where the control scores higher.
    """
    pool = [e for e in entries if e.suite == control.suite and e is not control]
    if not pool:
        raise LeaderboardError(f"nothing to compare with: {control.entry_id} is the only {control.suite}-suite entry")
    units = [_units(e, shots) for e in [control, *pool]]
    common = sorted(set.intersection(*map(set, units)))
    if not common:
        raise LeaderboardError(f"no (task, trial) unit at k = {shots} that every {control.suite}-suite entry was scored on")
    tasks = sorted({task for task, _ in common})
    per_task = np.array([[np.mean([u[key] for key in common if key[0] == task]) for u in units] for task in tasks])
    result = against_control(per_task[:, 0], per_task[:, 1:], alpha=alpha, seed=seed)
    unit_scores = np.array([[u[key] for u in units] for key in common])
    rows = [
        {
            "method": e.method.name,
            "entry": e.entry_id,
            "status": e.status,
            "spearman": float(per_task[:, j + 1].mean()),
            "diff": float(result.mean_diff[j]),
            "ci": (float(result.ci[j, 0]), float(result.ci[j, 1])),
            "wins": float(np.mean(unit_scores[:, 0] > unit_scores[:, j + 1])),
            "p": float(result.pvalues[j]),
            "p_holm": float(result.adjusted[j]),
            "verdict": result.verdict(j),
        }
        for j, e in enumerate(pool)
    ]
    rows.sort(key=lambda r: (r["diff"], r["method"], r["entry"]))
    return Comparison(
        control.method.name,
        control.suite,
        shots,
        len(tasks),
        len(common),
        float(per_task[:, 0].mean()),
        alpha,
        rows,
    )


def _units(entry: Entry, shots: int) -> dict:
    """{(task, trial): mean Spearman over target devices} of ``entry`` at ``shots``."""
    return {(r.task, t.trial): t.mean["spearman"] for r in entry.results if r.shots == shots for t in r.trials}
