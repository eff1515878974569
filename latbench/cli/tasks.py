"""``latbench tasks ...``: list, show, generate the benchmark tasks, and create your own."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from latbench.cli.common import console, ensure_data, err_console, friendly, print_error

tasks_app = typer.Typer(no_args_is_help=True, help="List, show and generate the benchmark tasks; create your own.")


def _runnable_cell(task, info: dict | None) -> str:
    """yes / no (what is missing) on the built dataset; "no data" when none is built."""
    from latbench.tasks.runnable import missing_devices

    if info is None:
        return "no data"
    missing = missing_devices(task, info)
    if not missing:
        return "yes"
    if any(s.get("name") == "help" for s in info.get("sources", [])) or task.kind in ("user",):
        return f"no: {missing[0]}" + (f" +{len(missing) - 1}" if len(missing) > 1 else "")
    return "no: needs HELP"


@tasks_app.command("list")
@friendly
def tasks_list():
    """id, kind, space, #source, #target, difficulty of every task, and whether the built data can run it."""
    from latbench.data import store
    from latbench.tasks.spec import list_tasks

    info = store.info() if store.is_built() else None
    t = Table("id", "kind", "space", "#source", "#target", "#valid", "difficulty", "runnable")
    for task in list_tasks():
        t.add_row(
            task.id,
            task.tier or task.kind if task.kind != "user" else "user",
            task.space,
            str(len(task.source)),
            str(len(task.target)),
            str(len(task.valid)),
            f"{task.difficulty:.3f}",
            _runnable_cell(task, info),
        )
    console.print(t)
    if info is None:
        console.print("no dataset built yet: `latbench data build` (the runnable column needs it)")


@tasks_app.command("show")
@friendly
def tasks_show(task_id: str):
    """Devices, difficulty, per-target best source correlation and pool sizes of one task."""
    from latbench.tasks.spec import load_task

    task = load_task(task_id)
    grade = task.tier or task.kind
    kind = f"{task.kind}, {grade}" if task.kind == "user" else grade
    console.print(f"{task.id} v{task.version}  {task.space}  {kind}  difficulty {task.difficulty:.3f}")
    if task.description:
        console.print(task.description)
    console.print(f"source ({len(task.source)}): {', '.join(task.source)}")
    if task.valid:
        console.print(f"valid  ({len(task.valid)}): {', '.join(task.valid)}")
    t = Table("target", "best source", "Spearman")
    for dev, row in task.correlation.items():
        best = max(row, key=row.get)
        t.add_row(dev, best, f"{row[best]:.3f}")
    console.print(t)
    p = task.arch_pools or task.pools
    console.print(
        f"pools: source sample {len(p.source_sample)}, query pool {len(p.query_pool)}, eval {len(p.eval)}; seed {task.seed}; generator {task.generator}"
    )


@tasks_app.command("generate")
@friendly
def tasks_generate(
    check: bool = typer.Option(False, "--check", help="Regenerate in memory and fail if tasks/ differs."),
    seed: int = typer.Option(0, help="Generator seed."),
):
    """Write the official tasks/*.yaml from the built dataset (automatic suite, literature splits, measured devices).

    Reads only the HELP devices and the measurements that ship with latbench: registered sources
    change no official task (make your own with `latbench tasks create`).
    """
    from latbench import paths
    from latbench.tasks.generation import write_or_check

    changed = write_or_check(paths.tasks_dir(), seed=seed, check=check)
    if check:
        if changed:
            print_error(f"tasks differ from a fresh generation: {', '.join(changed)}")
            raise typer.Exit(1)
        console.print("tasks/ matches a fresh generation")
    else:
        console.print(f"wrote {len(changed)} changed task file(s) to {paths.tasks_dir()}")


@tasks_app.command("create")
@friendly
def tasks_create(
    name: str = typer.Argument(..., help="Task name (= file name; not an official task's)."),
    space: str = typer.Option(..., help="Search space: nb201, fbnet or ofa."),
    target: list[str] = typer.Option(..., help="Target device; repeat for several."),
    source: list[str] = typer.Option(["help"], help="Source device, or `help` for every HELP device; repeat for several."),
    tasks_dir: Path | None = typer.Option(
        None, help="Folder to write to (default: $LATBENCH_USER_TASKS or $LATBENCH_HOME/tasks)."
    ),
    allow_noisy: bool = typer.Option(False, "--allow-noisy", help="Accept targets with test-retest Spearman < 0.9."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing user task of this name."),
):
    """Make a task over your own devices (e.g. from `latbench data import`), evaluable with every method."""
    from latbench.tasks.spec import user_tasks_dir
    from latbench.tasks.user import create_task

    ensure_data()
    task, path, notes = create_task(name, space, target, source, folder=tasks_dir, allow_noisy=allow_noisy, overwrite=overwrite)
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    p = task.arch_pools or task.pools
    console.print(
        f"wrote {path}: {task.id} v{task.version} ({task.space}, {len(task.source)} source -> {len(task.target)} target devices, "
        f"difficulty {task.difficulty:.3f}, pools {len(p.source_sample)}/{len(p.query_pool)}/{len(p.eval)})"
    )
    if path.parent != user_tasks_dir():
        console.print(f"set LATBENCH_USER_TASKS={path.parent} so that `latbench eval --task {task.id}` finds it")
    else:
        console.print(f"evaluate it: latbench eval --method flops --task {task.id}")
