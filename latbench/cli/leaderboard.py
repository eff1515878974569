"""``latbench leaderboard ...``: validate, store, verify and render entries; run the built-ins onto the board."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latbench.cli.common import console, friendly
from latbench.cli.evaluate import run_suite
from latbench.cli.sweep import BUDGET_HELP, CHECKPOINT_HELP, run_sweep

board_app = typer.Typer(no_args_is_help=True, help="Validate, store, verify and render leaderboard entries.")


@board_app.callback()
def board_options(
    board: Optional[Path] = typer.Option(
        None, "--board", envvar="LATBENCH_LEADERBOARD",
        help="The board folder (entries/, README.md, site/). Default: the checkout's leaderboard/, or, installed "
             "from a wheel, the user data dir (e.g. ~/.local/share/latbench/leaderboard).")
):
    """Validate, store, verify and render leaderboard entries."""
    import os

    if board is not None:
        os.environ["LATBENCH_LEADERBOARD"] = str(board.expanduser().resolve())


@board_app.command("add")
@friendly
def board_add(entry: Path):
    """Validate an entry and store it under leaderboard/entries/ (the board is unchanged on error)."""
    from latbench.leaderboard import board as lb

    console.print(f"added {lb.add(entry)}")


@board_app.command("render")
@friendly
def board_render():
    """Write leaderboard/README.md and leaderboard/site/index.html from the stored entries."""
    from latbench import paths
    from latbench.leaderboard import board as lb
    from latbench.leaderboard import site

    for p in site.render(lb.list_entries(), paths.leaderboard_dir()):
        console.print(str(p))


@board_app.command("verify")
@friendly
def board_verify(entry_id: str):
    """Re-run an entry's method and check that every metric matches; marks it verified."""
    from latbench.leaderboard import board as lb

    path = lb.entries_dir() / f"{entry_id}.json"
    entry = lb.load_entry(path)
    spec = lb.verify_spec(entry)
    fresh = run_suite(spec, entry.suite, lb.verify_params(entry, spec))
    lb.check_same(entry, fresh)
    lb.mark_verified(path, entry)
    console.print(f"{entry_id}: verified (all metrics reproduce)")


@board_app.command("baselines")
@friendly
def board_baselines(
    methods: list[str] = typer.Option([], "--method", "-m", help="Only these methods (default: all built-ins)."),
    suite: str = typer.Option("main"),
    workers: int = typer.Option(1, help="Processes running (method, task, trial) units in parallel (1: in this process)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help=BUDGET_HELP),
):
    """Run built-in baselines on a suite and store them as verified entries."""
    from latbench.leaderboard import board as lb
    from latbench.methods import registry as methods_mod
    from latbench.eval import sweep

    names = methods or sorted(methods_mod.builtin_methods())
    sweep.check_executor(workers, None)
    budget = None if time_budget is None else time_budget * 60
    sweep.check_budget(budget, checkpoint, None)
    chosen = sweep.make_methods(names, {})
    tasks = lb.suite_tasks(suite)
    results = run_sweep(chosen, tasks, list(lb.SUITE_SHOTS), lb.SUITE_TRIALS, workers, None, checkpoint, budget)
    for name, entry in zip(names, lb.entries_from_results(names, results, suite=suite, hardware="latbench CI-class machine (2 CPU cores)")):
        entry.status = "verified"
        lb.store_entry(entry)
        console.print(f"{name}: {entry.entry_id}")


