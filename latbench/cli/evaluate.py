"""``latbench methods``, ``eval`` and ``submit``: score methods under the official protocol."""

from __future__ import annotations

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
from latbench.errors import MethodError


@friendly
def methods():
    """Registered methods (built-in and plug-ins)."""
    from latbench.methods.registry import available, resolve, shadowed

    t = Table("name", "class", "summary")
    broken = []
    for name, target in sorted(available().items()):
        try:
            t.add_row(name, target, resolve(name).summary)
        except MethodError as e:  # one broken plug-in must not hide the others
            broken.append(str(e))
    console.print(t)
    for message in broken:
        err_console.print(f"warning: not listed: {message}", highlight=False, soft_wrap=True)
    for name, target, dist in shadowed():
        err_console.print(
            f"warning: not listed: {dist or 'a package'} registers {name!r} = {target!r}, but that name is taken; rename it",
            highlight=False,
            soft_wrap=True,
        )


@friendly
def eval_cmd(
    method: str = typer.Option(..., "--method", "-m", help="Method name (see `latbench methods`) or module:Class."),
    task: str = typer.Option(
        ...,
        "--task",
        "-t",
        help="Task id, tier (easy/medium/hard), suite (main, literature), measured, user, all; comma-separated.",
    ),
    shots: list[int] = typer.Option([10], "--shots", "-k", help="Measurements allowed per target device (repeat for several)."),
    trials: int = typer.Option(5, help="Trials (seeds) per task."),
    out: Path | None = typer.Option(None, help="Write the JSON results here."),
    plot: Path | None = typer.Option(None, help="Folder for predicted-vs-measured scatter plots (PNG)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Method hyperparameter key=value (JSON values)."),
    source_archs: str = typer.Option("sample", help="'sample' (the task's source sample) or 'all'."),
    protocol: str = typer.Option("official", help="official, or a paper's reproduction mode: help-paper, nasflat-paper."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
):
    """Score a method on tasks under the official few-shot protocol."""
    from latbench.eval.arguments import check_counts, check_modes
    from latbench.eval.runner import evaluate
    from latbench.methods import registry as methods_mod
    from latbench.tasks.spec import select

    check_modes(protocol, source_archs)
    check_counts(shots, trials)
    params = parse_params(param)
    m = methods_mod.make_method(method, **params)
    set_device([(method, m)], device, params)
    chosen = select(task)
    ensure_data()
    with RunProgress(len(chosen) * trials, lambda u: f"{u.task.id} trial {u.trial}") as progress:
        result = evaluate(
            m,
            chosen,
            shots=shots,
            trials=trials,
            source_archs=source_archs,
            protocol=protocol,
            on_progress=progress.unit_done,
            on_step=progress.step,
        )
    _print_summary(result)
    if out:
        result.write(out)
        console.print(f"results written to {out}")
    if plot:
        from latbench.plots import plot_predictions

        for p in plot_predictions(m, chosen, shots=shots[0], out=plot):
            console.print(str(p))


def _print_summary(result) -> None:
    """One row per (task, k): mean ± std over the trials, or the one trial's value alone."""
    n_trials = max((len(r.trials) for r in result.results), default=0)
    over = "1 trial" if n_trials == 1 else "mean ± std over trials"
    t = Table(
        "task",
        "space",
        "k",
        "Spearman",
        "Kendall",
        "MdAPE %",
        "MAPE⌊10 %⌋ %",
        "RMSE ms",
        "±5%",
        "±10%",
        "worst ρ",
        title=f"{result.method}  ({over}; dataset {result.dataset_version})",
    )
    for r in result.results:
        a = r.aggregate
        worst = sum(tr.worst["spearman"] for tr in r.trials) / len(r.trials)

        def f(m, d=3, a=a, single=len(r.trials) == 1):
            if m not in a:  # a result from before the metric existed
                return "\u2014"
            return f"{a[m]['mean']:.{d}f}" if single else f"{a[m]['mean']:.{d}f} ± {a[m]['std']:.{d}f}"

        t.add_row(
            r.task,
            r.space,
            str(r.shots),
            f("spearman"),
            f("kendall"),
            f("mdape", 1),
            f("mape_floor", 1),
            f("rmse", 2),
            f("acc5", 2),
            f("acc10", 2),
            f"{worst:.3f}",
        )
    console.print(t)
    console.print(
        "MdAPE: median absolute percentage error; MAPE⌊10 %⌋: mean, with each denominator at least 10 % of the "
        "median true latency (plain MAPE, which near-zero latencies blow up, is in --out's JSON)",
        style="dim",
    )
    console.print(f"wall time {result.seconds:.2f} s")


def run_suite(
    method: str,
    suite: str,
    params: dict,
    device: str | None = None,
    *,
    workers: int = 1,
    checkpoint: Path | None = None,
    time_budget: float | None = None,
):
    """The suite's units, one line per finished unit and bars on a terminal; ``workers``,
    ``checkpoint`` and ``time_budget`` (seconds) as for ``latbench.eval.runner.evaluate``."""
    from latbench.eval import runner
    from latbench.leaderboard import board as lb
    from latbench.methods import registry as methods_mod

    m = methods_mod.make_method(method, **params)
    set_device([(method, m)], device, params)
    ensure_data()
    tasks = lb.suite_tasks(suite)
    with RunProgress(len(tasks) * lb.SUITE_TRIALS, lambda u: f"{u.task.id} trial {u.trial}") as progress:

        def unit_done(done, total, elapsed, u):
            err_console.print(f"[{done}/{total}] {u.task.id} trial {u.trial}", highlight=False)
            progress.unit_done(done, total, elapsed, u)

        def resumed(loaded, total):
            if checkpoint is not None:
                err_console.print(f"{checkpoint}: {loaded} of {total} units already re-run", highlight=False)

        return runner.evaluate(
            m,
            tasks,
            shots=lb.SUITE_SHOTS,
            trials=lb.SUITE_TRIALS,
            workers=workers,
            checkpoint=checkpoint,
            time_budget=time_budget,
            on_progress=unit_done,
            on_resume=resumed,
            on_step=progress.step,
        )


@friendly
def submit(
    method: str = typer.Option(..., "--method", "-m", help="Method name or module:Class."),
    suite: str = typer.Option("main", help="main (easy/medium/hard tasks) or literature."),
    out: Path = typer.Option(..., help="Entry JSON to write."),
    param: list[str] = typer.Option([], "--param", "-p", help="Method hyperparameter key=value."),
    paper_url: str = typer.Option("", help="Paper link."),
    code_url: str = typer.Option("", help="Code link."),
    contact: str = typer.Option("", help="Contact e-mail or handle."),
    hardware: str = typer.Option("", help="Hardware the run used (default: this machine's CPU count)."),
    predictions: Path | None = typer.Option(
        None,
        "--predictions",
        help="Score predictions made elsewhere instead of running: "
        "DIR/<task>/k<k>/trial<t>/<device>.csv (docs: Leaderboard, scoring predictions made elsewhere); "
        "--method names the method.",
    ),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
):
    """Run the official protocol on a whole suite (shots 5/10/20, 5 trials) and write an entry."""
    import os

    from latbench.leaderboard import board as lb
    from latbench.methods import registry as methods_mod

    params = parse_params(param)
    if predictions is not None:
        entry = lb.score_predictions(
            predictions,
            suite=suite,
            method=method,
            params=params,
            hardware=hardware,
            paper_url=paper_url,
            code_url=code_url,
            contact=contact,
        )
    else:
        result = run_suite(method, suite, params, device)
        entry = lb.entry_from_result(
            result,
            suite=suite,
            code_ref=methods_mod.code_ref(method),
            hardware=hardware or f"{os.cpu_count()} CPU cores{device_hardware(result.method_params.get('device'))}",
            paper_url=paper_url,
            code_url=code_url,
            contact=contact,
        )
    lb.validate(entry)
    out.write_text(entry.model_dump_json(indent=1))
    console.print(f"entry {entry.entry_id} written to {out}")
