"""``latbench sweep`` and ``latbench checkpoints``: many methods x tasks x trials, in parallel and resumable."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from latbench.cli.common import (
    DEVICE_HELP,
    RunProgress,
    console,
    device_hardware,
    ensure_data,
    err_console,
    friendly,
    parse_params,
    set_device,
)
from latbench.errors import LatbenchError

CHECKPOINT_HELP = (
    "Folder that keeps every finished (method, task, trial) unit; a rerun with the same folder "
    "loads those and runs only the rest (resume a stopped sweep, or run it in slices)."
)
BUDGET_HELP = (
    "Minutes after which no new unit starts (needs --checkpoint; local workers only): the running units "
    "finish and are kept, and the command exits with an error saying how many remain."
)


def run_sweep(chosen, tasks, shots, trials, workers, ray_address, checkpoint=None, time_budget=None, ran: Counter | None = None):
    """Run a sweep with one progress line per finished unit and the total wall time (on stderr); on a
    terminal also bars for the units and, in-process (``workers=1``), for the running unit's steps.

    ``ran``, if given, counts per method label the units that ran in this command (units loaded
    from ``checkpoint`` files are not counted): what ``leaderboard baselines`` needs to tell a
    re-run from results assembled from disk.
    """
    from latbench.eval import runner, sweep

    ensure_data()
    t0 = time.perf_counter()
    err_console.print(
        f"sweep: {len(chosen)} method(s) x {len(tasks)} task(s) x {trials} trial(s) = "
        f"{len(chosen) * len(tasks) * trials} units, shots {shots}, "
        f"{sweep.describe_executor(workers, ray_address)}",
        highlight=False,
    )

    def resumed(loaded, total):
        if checkpoint is not None:
            err_console.print(f"checkpoint {checkpoint}: {loaded} of {total} units already finished", highlight=False)

    with RunProgress(len(chosen) * len(tasks) * trials, lambda u: f"{u.label} {u.task.id} trial {u.trial}") as bars:

        def progress(done, total, elapsed, u):
            if ran is not None:
                ran[u.label] += 1
            err_console.print(f"[{done}/{total}] {elapsed:7.1f} s  {u.label} {u.task.id} trial {u.trial}", highlight=False)
            bars.unit_done(done, total, elapsed, u)

        results = runner.run(
            chosen,
            tasks,
            shots=shots,
            trials=trials,
            workers=workers,
            ray_address=ray_address,
            checkpoint=checkpoint,
            time_budget=time_budget,
            on_resume=resumed,
            on_progress=progress,
            on_step=bars.step,
        )
    err_console.print(f"sweep wall time {time.perf_counter() - t0:.1f} s", highlight=False)
    return results


@friendly
def sweep_cmd(
    methods: str = typer.Option(..., "--methods", help="Comma-separated method names or module:Class paths."),
    tasks: str = typer.Option("main", "--tasks", help="A suite (main, literature) or a task selector as for `eval --task`."),
    shots: str = typer.Option("5,10,20", "--shots", help="Comma-separated shot counts; all share one fit per (task, trial)."),
    trials: int = typer.Option(5, help="Trials (seeds) per task."),
    workers: int = typer.Option(
        1, help="Parallel units: processes on this machine (1: in this process), or the CPUs of --ray-address local."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Run units as Ray tasks: local (a private Ray instance), auto, or ray://host:port."
    ),
    out: Path = typer.Option(..., help="Folder for one entry JSON per method (written only if every unit succeeds)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Hyperparameter key=value (JSON values), given to every method."),
    store_entries: bool = typer.Option(
        False,
        "--store",
        help="Also validate the entries and add them to the board (as unverified: `leaderboard verify` re-runs them).",
    ),
    hardware: str = typer.Option("", help="Hardware the run used (default: this machine's CPU count and the executor)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    time_budget: float | None = typer.Option(None, "--time-budget", help=BUDGET_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
):
    """Run several methods on many tasks in parallel; write one leaderboard entry per method."""
    import os

    from latbench.eval import sweep
    from latbench.leaderboard import board as lb

    specs = sweep.parse_list(methods, "--methods")
    shot_list = sweep.parse_shots(shots)
    sweep.check_executor(workers, ray_address)
    budget = None if time_budget is None else time_budget * 60
    sweep.check_budget(budget, checkpoint, ray_address)
    sweep.check_counts(shot_list, trials)
    suite, chosen_tasks = lb.select_tasks(tasks)
    if store_entries and (suite not in lb.SUITES or sorted(shot_list) != list(lb.SUITE_SHOTS) or trials != lb.SUITE_TRIALS):
        raise LatbenchError(
            f"--store needs a whole suite ({', '.join(lb.SUITES)}) with --shots "
            f"{','.join(map(str, lb.SUITE_SHOTS))} and --trials {lb.SUITE_TRIALS}"
        )
    params = parse_params(param)
    chosen = sweep.make_methods(specs, params)
    device = set_device(chosen, device, params)
    results = run_sweep(chosen, chosen_tasks, shot_list, trials, workers, ray_address, checkpoint, budget)
    hardware = (
        hardware or f"{os.cpu_count()} CPU cores{device_hardware(device)} ({sweep.describe_executor(workers, ray_address)})"
    )
    entries = lb.entries_from_results(specs, results, suite=suite, hardware=hardware)
    if store_entries:
        for e in entries:
            lb.validate(e)
    t = Table("method", *(f"Spearman k={k}" for k in shot_list), "file", title=f"mean over {len(chosen_tasks)} task(s)")
    for spec, e, path in zip(specs, entries, lb.write_entries(specs, entries, out)):
        means = [sum(r.aggregate["spearman"]["mean"] for r in e.results if r.shots == k) / len(chosen_tasks) for k in shot_list]
        t.add_row(spec, *(f"{m:.3f}" for m in means), str(path))
    console.print(t)
    if store_entries:
        for spec, e in zip(specs, entries):
            console.print(f"{spec}: stored {lb.store_entry(e).name}")


checkpoints_app = typer.Typer(no_args_is_help=True, help="Maintain the unit folders of `sweep --checkpoint`.")


@checkpoints_app.command("prune")
@friendly
def checkpoints_prune(
    folder: Path = typer.Argument(..., metavar="DIR", help="A folder given to --checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
    allow_import: list[str] = typer.Option(
        [],
        "--allow-import",
        metavar="MODULE",
        help="Allow importing MODULE (and modules inside it) to fingerprint units of a method that is not "
        "registered. Registered methods (built-ins, installed plug-ins) never need this.",
    ),
):
    """Remove the units no sweep would load again.

    Stale: the code of the unit's method, of a module it imports or of the evaluation changed, the
    latbench or protocol version changed, or the method is gone. A folder holding a JSON file that
    is not a unit checkpoint is refused: nothing is removed.
    """
    from latbench.eval import checkpoints

    kept, removed = checkpoints.prune(folder, dry_run=dry_run, allow_import=allow_import)
    for path in removed:
        console.print(f"{'would remove' if dry_run else 'removed'} {path}", highlight=False, soft_wrap=True)
    console.print(
        f"{folder}: kept {len(kept)} unit(s), {'would remove' if dry_run else 'removed'} {len(removed)} stale",
        highlight=False,
        soft_wrap=True,
    )
