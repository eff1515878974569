"""The board's committed numbers, recomputed: every other metric test compares latbench with itself,
this one pins what was published. `flops` is deterministic and takes seconds for a whole suite, so a
change to a metric, the shot sampling or the pools that moves a published number fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from latbench.eval.runner import evaluate
from latbench.leaderboard import board as lb
from latbench.methods.registry import make_method

ENTRIES = Path(__file__).resolve().parents[1] / "leaderboard" / "entries"


@pytest.mark.real_data
@pytest.mark.parametrize("suite", ["main", "literature"])
def test_the_committed_flops_entry_reproduces_metric_for_metric(data, suite):
    (entry,) = [e for e in lb.list_entries(ENTRIES) if e.method.name == "flops" and e.suite == suite]
    fresh = evaluate(make_method("flops"), lb.suite_tasks(suite), shots=list(lb.SUITE_SHOTS), trials=lb.SUITE_TRIALS)
    lb.check_same(entry, fresh)  # every metric of every device, trial, task and k, within verify's tolerance
    measured = {(r.task, r.shots): [t.measured for t in r.trials] for r in fresh.results}
    assert measured == {(r.task, r.shots): [t.measured for t in r.trials] for r in entry.results}  # the same shots

    # every metric counts, not only Spearman: one device's MAPE nudged beyond the tolerance is caught
    block = entry.results[-1].model_copy(deep=True)
    device, metrics = next(iter(block.trials[0].devices.items()))
    metrics["mape"] *= 1.001
    nudged = entry.model_copy(update={"results": [*entry.results[:-1], block]})
    with pytest.raises(lb.LeaderboardError, match=f"trial 0 {device}: mape"):
        lb.check_same(nudged, fresh)
    # a result block given twice would count twice in the ranking
    doubled = entry.model_copy(update={"results": [*entry.results, entry.results[0]]})
    with pytest.raises(lb.LeaderboardError, match="duplicate \\(task, shots\\) result blocks"):
        lb.validate(doubled)
