"""Mean time per (task, trial) unit of stored board entries, per search space.

    python benchmarks/entry_unit_times.py leaderboard/entries/help-*.json

A unit fits once and adapts and predicts at every k; its time is the fit plus every k's adapt and
predict, as the entry records them. The entry's total ("time (s)" on the board) is their sum.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def unit_minutes(entry: dict) -> dict[str, float]:
    """Space -> mean minutes per unit."""
    units: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
    space_of = {}
    for result in entry["results"]:
        for trial in result["trials"]:
            key = (result["task"], trial["trial"])
            space_of[key] = result["space"]
            seconds = trial["seconds"]
            units[key][0] = max(units[key][0], seconds["fit"])  # one fit, shared by every k
            units[key][1] += seconds["adapt"] + seconds["predict"]
    per_space: dict[str, list[float]] = defaultdict(list)
    for key, (fit, rest) in units.items():
        per_space[space_of[key]].append(fit + rest)
    return {space: sum(times) / len(times) / 60 for space, times in sorted(per_space.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("entries", nargs="+", type=Path)
    args = parser.parse_args()
    print("| entry | suite | total (s) | minutes per unit |")
    print("|---|---|---|---|")
    for path in args.entries:
        entry = json.loads(path.read_text())
        minutes = ", ".join(f"{space} {m:.1f}" for space, m in unit_minutes(entry).items())
        print(f"| {path.stem} | {entry['suite']} | {entry['seconds']:.0f} | {minutes} |")


if __name__ == "__main__":
    main()
