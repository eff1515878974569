"""``latbench tasks ...``: list, show and generate the benchmark tasks."""

from __future__ import annotations

import typer
from rich.table import Table

from latbench.cli.common import console, friendly, print_error

tasks_app = typer.Typer(no_args_is_help=True, help="List, show and generate the benchmark tasks.")


@tasks_app.command("list")
@friendly
def tasks_list():
    """id, space, #source, #target, difficulty of every task."""
    from latbench.tasks.spec import list_tasks

    t = Table("id", "kind", "space", "#source", "#target", "#valid", "difficulty")
    for task in list_tasks():
        t.add_row(
            task.id,
            task.tier or task.kind,
            task.space,
            str(len(task.source)),
            str(len(task.target)),
            str(len(task.valid)),
            f"{task.difficulty:.3f}",
        )
    console.print(t)


@tasks_app.command("show")
@friendly
def tasks_show(task_id: str):
    """Devices, difficulty, per-target best source correlation and pool sizes of one task."""
    from latbench.tasks.spec import get_task

    task = get_task(task_id)
    console.print(f"{task.id} v{task.version}  {task.space}  {task.tier or task.kind}  difficulty {task.difficulty:.3f}")
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
    """Write tasks/*.yaml from the built dataset (automatic suite + literature splits)."""
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
