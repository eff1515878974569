"""The ``latbench`` command line: parse, call the Python API, print. No logic of its own.

Every ``LatbenchError`` becomes ``error: <one line>`` on stderr and exit code 1 (no traceback).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from latbench.errors import LatbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="latbench: few-shot latency prediction on unseen hardware.")
data_app = typer.Typer(no_args_is_help=True, help="Build, inspect, plot and publish the latency datasets.")
tasks_app = typer.Typer(no_args_is_help=True, help="List, show and generate the benchmark tasks.")
app.add_typer(data_app, name="data")
app.add_typer(tasks_app, name="tasks")
board_app = typer.Typer(no_args_is_help=True, help="Validate, store, verify and render leaderboard entries.")
app.add_typer(board_app, name="leaderboard")
console = Console(width=None if sys.stdout.isatty() else 160, markup=False)  # messages carry paths: no markup
err_console = Console(stderr=True, markup=False)


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


def _error(message: str) -> None:
    from rich.text import Text

    err_console.print(Text("error: ", style="red") + Text(message), highlight=False, soft_wrap=True)


def friendly(fn):
    """Turn LatbenchError into a one-line message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LatbenchError as e:
            _error(str(e))
            raise typer.Exit(1) from None

    return wrapper


# ------------------------------------------------------------------------------------- profile
@app.command("profile")
@friendly
def profile_cmd(
    space: str = typer.Option(..., help="Search space: nb201, fbnet or ofa."),
    runtime: list[str] = typer.Option(["torch"], help="torch, torch-graphs (CUDA graphs) or onnxruntime; repeat for several."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: list[int] = typer.Option([1], help="Intra-op threads (CPU); repeat for several."),
    batch: list[int] = typer.Option([1], help="Batch size; repeat for several."),
    precision: list[str] = typer.Option(["fp32"], help="fp32, fp16 (cuda) or int8 (onnxruntime); repeat for several."),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="Shorthand for --runtime torch-graphs."),
    archs: int = typer.Option(2000, help="How many archs: the reference archs, then a seeded sample."),
    warmup: int = typer.Option(5, help="Untimed forwards before timing."),
    repeats: int = typer.Option(20, help="Timed forwards per arch."),
    max_wait: float = typer.Option(300.0, help="Seconds to wait per arch for a quiet CPU before keeping a contended timing."),
    retest: int = typer.Option(0, help="Measure the first N archs a second time and report test-retest Spearman."),
    out: Path = typer.Option(Path("measured"), help="Output folder (resumable: rerun to continue)."),
    name: Optional[str] = typer.Option(None, help="Hardware name for the device names (default: from the CPU/GPU model)."),
    seed: int = typer.Option(0, help="Seed of the arch sample and the inputs."),
):
    """Measure archs on this machine: one device per (runtime, threads, batch, precision) combination."""
    from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from latbench.measure import profiler
    from latbench.data import store

    runtimes = ["torch-graphs" if cuda_graphs and r == "torch" else r for r in runtime]
    settings = [profiler.Setting(space, r, device, t, b, p, warmup, repeats)
                for r in runtimes for p in precision for b in batch for t in (threads if device == "cpu" else [1])]
    if len(runtimes) * len(precision) == 1:
        settings[0].check()  # one combination asked for: say exactly what is wrong with it
    settings = [s for s in settings if profiler.is_valid(s)]  # several: measure the valid combinations
    if not settings:
        raise LatbenchError(f"no valid (runtime, precision) combination on {device} in {runtimes} x {precision}")
    if not store.is_built():
        err_console.print("dataset not built yet: building it first")
        data_build(mirror=None, base_url=None, out=None, sources=None)
    sp = store.load_space(space)
    with Progress(*Progress.get_default_columns()[:-1], BarColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err_console, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"profile {space}", total=None)
        report = profiler.profile(sp, settings, out, archs, seed=seed, name_prefix=name, retest=retest, max_wait=max_wait,
                                  progress=lambda n, total: bar.update(task, completed=n, total=total),
                                  log=lambda msg: err_console.print(msg))
    console.print(f"measured {report.measured} archs ({report.skipped} already there) in {report.seconds:.0f} s: "
                  + ", ".join(report.devices) + f"  ->  {out / space}")


@app.command("profile-kernels")
@friendly
def profile_kernels_cmd(
    op: list[str] = typer.Option(["conv"], help="Kernel type: conv, dwconv, bn, relu or avgpool; repeat for several."),
    sampler: str = typer.Option("adaptive", help="adaptive (nn-Meter: prior + fine-grained rounds) or vae (LitePred)."),
    samples: int = typer.Option(200, help="Prior samples of round 0 (adaptive) or VAE samples."),
    finegrained: int = typer.Option(10, help="Adaptive: new samples around each badly predicted configuration."),
    iterations: int = typer.Option(3, help="Adaptive: rounds in all (nn-Meter's code: 5, its config: 3)."),
    error_threshold: float = typer.Option(0.1, help="Adaptive: relative error that counts as badly predicted."),
    threads: int = typer.Option(1, help="Intra-op threads."),
    warmup: int = typer.Option(5),
    repeats: int = typer.Option(20),
    max_wait: float = typer.Option(60.0, help="Seconds to wait per kernel for a quiet CPU."),
    zoo_archs: int = typer.Option(500, help="Archs per space whose kernels form the sampling prior (the model zoo)."),
    out: Path = typer.Option(Path("kernel-campaigns"), help="Output folder: <device>/kernels-<op>.parquet + campaign-<op>.json."),
    name: Optional[str] = typer.Option(None, help="Hardware name for the device name (default: from the CPU model)."),
    seed: int = typer.Option(0),
):
    """Measure sampled single-kernel configurations on this CPU (nn-Meter / LitePred data collection).

    The folder feeds `latbench eval -m nn-meter --param variant=faithful --param campaign=DIR`.
    """
    from latbench.measure import kernel_sampling
    from latbench.data import store

    if not store.is_built():
        err_console.print("dataset not built yet: building it first")
        data_build(mirror=None, base_url=None, out=None, sources=None)
    spaces = [store.load_space(s) for s in store.info()["spaces"]]
    for o in op:
        r = kernel_sampling.run_campaign(out, o, sampler, spaces, samples=samples, finegrained=finegrained,
                                         iterations=iterations, error_threshold=error_threshold, threads=threads,
                                         warmup=warmup, repeats=repeats, max_wait=max_wait, zoo_archs=zoo_archs,
                                         seed=seed, name=name, log=lambda m: err_console.print(m, highlight=False))
        last = r["history"][-1]
        console.print(f"{o}: {r['measured']} configurations measured in {r['seconds']} s ({r['contended']} contended), "
                      f"held-out ±10% accuracy {last['acc10']:.3f}  ->  {kernel_sampling.campaign_file(out, r['device'], o)}")


# ---------------------------------------------------------------------------------------- data
@data_app.command("build")
@friendly
def data_build(
    mirror: Optional[Path] = typer.Option(None, help="Local mirror of the sources (default: $LATBENCH_MIRROR)."),
    base_url: Optional[str] = typer.Option(None, help="HTTP mirror replacing the pinned upstream URL prefix."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: $LATBENCH_HOME/dataset)."),
    sources: Optional[str] = typer.Option(None, help="Comma-separated sources (help, latbench-measured); default all."),
):
    """Download (or take from a mirror), verify and convert every source into the HF dataset."""
    from latbench.tasks.dataset import build_dataset as build

    chosen = tuple(x.strip() for x in sources.split(",") if x.strip()) if sources else None
    info = build(out, mirror=mirror, base_url=base_url, sources=chosen, progress=sys.stderr.isatty(),
                 log=lambda m: err_console.print(m, highlight=False))
    console.print(f"dataset {info['dataset_version']} ready at {out or _data_dir()}")


@data_app.command("add-source")
@friendly
def data_add_source(
    folder: Path = typer.Argument(..., help="A `latbench profile --out` folder (<space>/<device>/...)."),
    name: Optional[str] = typer.Option(None, help="Name of the registered copy (default: the folder's name)."),
):
    """Validate profiler output and register it, so the next `latbench data build` includes its devices."""
    from latbench.data.measured import add_source, read_root

    target = add_source(folder, name)
    devices = read_root(target)
    console.print(f"registered {len(devices)} device(s) at {target}: "
                  + ", ".join(f"{d.meta.space}/{d.meta.device} ({len(d.archs)} archs)" for d in devices))
    console.print("run `latbench data build` to include them in the dataset")


def _data_dir():
    from latbench import paths

    return paths.data_dir()


@data_app.command("info")
@friendly
def data_info():
    """Spaces, devices, counts, version and location of the built dataset."""
    from latbench.data import store

    info = store.info()
    console.print(f"{store.root()}  version {info['dataset_version']}  (latbench {info['latbench_version']}, built {info['built_at']})")
    t = Table("space", "archs", "devices", "rows", "device names")
    for space, c in info["spaces"].items():
        t.add_row(space, f"{c['archs']:,}", str(len(c["devices"])), f"{c['rows']:,}", ", ".join(c["devices"]))
    console.print(t)
    for s in info["sources"]:
        console.print(f"source {s['name']}: {s['title']} ({s['license']}), {len(s['files'])} files")


@data_app.command("plot")
@friendly
def data_plot(out: Path = typer.Option(Path("plots"), help="Folder for the PNG files.")):
    """Device x device Spearman heatmaps and per-device latency histograms, per space."""
    from latbench.plots import plot_dataset

    for p in plot_dataset(out):
        console.print(str(p))


@data_app.command("push")
@friendly
def data_push(
    repo_id: str = typer.Option(..., help="Hugging Face dataset repo, ORG/NAME."),
    private: bool = typer.Option(False, help="Create the repo as private."),
    token: Optional[str] = typer.Option(None, help="HF token (default: the cached login / HF_TOKEN)."),
):
    """Upload the built dataset folder to the Hugging Face Hub."""
    from latbench.data.push import push

    url = push(repo_id, private=private, token=token)
    console.print(f"pushed to {url}")


# --------------------------------------------------------------------------------------- tasks
@tasks_app.command("list")
@friendly
def tasks_list():
    """id, space, #source, #target, difficulty of every task."""
    from latbench.tasks.spec import list_tasks

    t = Table("id", "kind", "space", "#source", "#target", "#valid", "difficulty")
    for task in list_tasks():
        t.add_row(task.id, task.tier or task.kind, task.space, str(len(task.source)), str(len(task.target)),
                  str(len(task.valid)), f"{task.difficulty:.3f}")
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
    console.print(f"pools: source sample {len(p.source_sample)}, query pool {len(p.query_pool)}, eval {len(p.eval)}; seed {task.seed}; generator {task.generator}")


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
            _error(f"tasks differ from a fresh generation: {', '.join(changed)}")
            raise typer.Exit(1)
        console.print("tasks/ matches a fresh generation")
    else:
        console.print(f"wrote {len(changed)} changed task file(s) to {paths.tasks_dir()}")


# ------------------------------------------------------------------------------------- methods
@app.command("methods")
@friendly
def methods():
    """Registered methods (built-in and plug-ins)."""
    from latbench.methods.registry import available, resolve

    t = Table("name", "class", "summary")
    for name, target in sorted(available().items()):
        t.add_row(name, target, resolve(name).summary)
    console.print(t)


# ---------------------------------------------------------------------------------------- eval
def _parse_params(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise LatbenchError(f"--param expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@app.command("eval")
@friendly
def eval_cmd(
    method: str = typer.Option(..., "--method", "-m", help="Method name (see `latbench methods`) or module:Class."),
    task: str = typer.Option(..., "--task", "-t", help="Task id, tier (easy/medium/hard), literature, all; comma-separated."),
    shots: list[int] = typer.Option([10], "--shots", "-k", help="Measurements allowed per target device (repeat for several)."),
    trials: int = typer.Option(5, help="Trials (seeds) per task."),
    out: Optional[Path] = typer.Option(None, help="Write the JSON results here."),
    plot: Optional[Path] = typer.Option(None, help="Folder for predicted-vs-measured scatter plots (PNG)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Method hyperparameter key=value (JSON values)."),
    source_archs: str = typer.Option("sample", help="'sample' (the task's source sample) or 'all'."),
    protocol: str = typer.Option("official", help="official, or a paper's reproduction mode: help-paper, nasflat-paper."),
):
    """Score a method on tasks under the official few-shot protocol."""
    from rich.progress import Progress

    from latbench.methods import registry as methods_mod
    from latbench.data import store
    from latbench.eval.runner import evaluate
    from latbench.tasks.spec import select

    m = methods_mod.make(method, **_parse_params(param))
    chosen = select(task)
    if min(shots) < 0 or trials < 1:
        raise LatbenchError(f"need --shots >= 0 and --trials >= 1 (got {shots}, {trials})")
    if not store.is_built():
        err_console.print("dataset not built yet: building it first")
        data_build(mirror=None, base_url=None, out=None, sources=None)
    with Progress(console=err_console, transient=True, disable=not sys.stderr.isatty()) as progress:
        bar = progress.add_task("eval", total=len(chosen) * trials)
        result = evaluate(m, chosen, shots=shots, trials=trials, source_archs=source_archs, protocol=protocol,
                          on_progress=lambda done, total, elapsed, u: progress.update(
                              bar, completed=done, description=f"{u.task.id} trial {u.trial + 1}/{trials}"))
    _print_summary(result)
    if out:
        result.write(out)
        console.print(f"results written to {out}")
    if plot:
        from latbench.plots import plot_predictions

        for p in plot_predictions(m, chosen, shots=shots[0], out=plot):
            console.print(str(p))


def _print_summary(result) -> None:
    t = Table("task", "space", "k", "Spearman", "Kendall", "MAPE %", "RMSE ms", "±5%", "±10%", "worst ρ",
              title=f"{result.method}  (mean ± std over trials; dataset {result.dataset_version})")
    for r in result.results:
        a = r.aggregate
        worst = sum(tr.worst["spearman"] for tr in r.trials) / len(r.trials)

        def f(m, d=3):
            return f"{a[m]['mean']:.{d}f} ± {a[m]['std']:.{d}f}"

        t.add_row(r.task, r.space, str(r.shots), f("spearman"), f("kendall"), f("mape", 1), f("rmse", 2),
                  f("acc5", 2), f("acc10", 2), f"{worst:.3f}")
    console.print(t)
    console.print(f"wall time {result.seconds:.2f} s")


# ---------------------------------------------------------------------------------- leaderboard
def _run_suite(method: str, suite: str, params: dict):
    from latbench.leaderboard import board as lb
    from latbench.methods import registry as methods_mod
    from latbench.data import store
    from latbench.eval.runner import evaluate

    m = methods_mod.make(method, **params)
    if not store.is_built():
        data_build(mirror=None, base_url=None, out=None, sources=None)
    return evaluate(m, lb.suite_tasks(suite), shots=list(lb.SUITE_SHOTS), trials=lb.SUITE_TRIALS,
                    on_progress=lambda done, total, elapsed, u: err_console.print(
                        f"[{done}/{total}] {u.task.id} trial {u.trial + 1}", highlight=False))


@app.command("submit")
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
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Score predictions made elsewhere instead of running: "
                                               "DIR/<task>/k<k>/trial<t>/<device>.csv (see examples/README.md); --method names the method."),
):
    """Run the official protocol on a whole suite (shots 5/10/20, 5 trials) and write an entry."""
    import os

    from latbench.leaderboard import board as lb
    from latbench.methods import registry as methods_mod

    params = _parse_params(param)
    if predictions is not None:
        entry = lb.score_predictions(predictions, suite=suite, method=method, params=params, hardware=hardware,
                                     paper_url=paper_url, code_url=code_url, contact=contact)
    else:
        cls = methods_mod.resolve(method)
        result = _run_suite(method, suite, params)
        code_ref = method if ":" in method else f"{cls.__module__}:{cls.__name__}"
        entry = lb.entry_from_result(result, suite=suite, code_ref=code_ref, hardware=hardware or f"{os.cpu_count()} CPU cores",
                                     paper_url=paper_url, code_url=code_url, contact=contact)
    lb.validate(entry)
    out.write_text(entry.model_dump_json(indent=1))
    console.print(f"entry {entry.entry_id} written to {out}")


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
    fresh = _run_suite(spec, entry.suite, lb.verify_params(entry, spec))
    lb.check_same(entry, fresh)
    lb.mark_verified(path, entry)
    console.print(f"{entry_id}: verified (all metrics reproduce)")


CHECKPOINT_HELP = ("Folder that keeps every finished (method, task, trial) unit; a rerun with the same folder "
                   "loads those and runs only the rest (resume a stopped sweep, or run it in slices).")
BUDGET_HELP = ("Minutes after which no new unit starts (needs --checkpoint; local workers only): the running units "
               "finish and are kept, and the command exits with an error saying how many remain.")


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
    results = _sweep(chosen, tasks, list(lb.SUITE_SHOTS), lb.SUITE_TRIALS, workers, None, checkpoint, budget)
    for name, entry in zip(names, lb.entries_from_results(names, results, suite=suite, hardware="latbench CI-class machine (2 CPU cores)")):
        entry.status = "verified"
        lb.store_entry(entry)
        console.print(f"{name}: {entry.entry_id}")


def _sweep(chosen, tasks, shots, trials, workers, ray_address, checkpoint=None, time_budget=None):
    """Run a sweep with one progress line per finished unit and the total wall time (on stderr)."""
    from latbench.data import store
    from latbench.eval import runner, sweep

    if not store.is_built():
        err_console.print("dataset not built yet: building it first")
        data_build(mirror=None, base_url=None, out=None, sources=None)
    t0 = time.perf_counter()
    err_console.print(f"sweep: {len(chosen)} method(s) x {len(tasks)} task(s) x {trials} trial(s) = "
                      f"{len(chosen) * len(tasks) * trials} units, shots {shots}, {sweep.describe_executor(workers, ray_address)}",
                      highlight=False)
    def resumed(loaded, total):
        if checkpoint is not None:
            err_console.print(f"checkpoint {checkpoint}: {loaded} of {total} units already finished", highlight=False)

    results = runner.run(chosen, tasks, shots=shots, trials=trials, workers=workers, ray_address=ray_address,
                        checkpoint=checkpoint, time_budget=time_budget, on_resume=resumed, on_progress=lambda done, total, elapsed, u: err_console.print(
                            f"[{done}/{total}] {elapsed:7.1f} s  {u.label} {u.task.id} trial {u.trial + 1}/{trials}", highlight=False))
    err_console.print(f"sweep wall time {time.perf_counter() - t0:.1f} s", highlight=False)
    return results


@app.command("sweep")
@friendly
def sweep_cmd(
    methods: str = typer.Option(..., "--methods", help="Comma-separated method names or module:Class paths."),
    tasks: str = typer.Option("main", "--tasks", help="A suite (main, literature) or a task selector as for `eval --task`."),
    shots: str = typer.Option("5,10,20", "--shots", help="Comma-separated shot counts; all share one fit per (task, trial)."),
    trials: int = typer.Option(5, help="Trials (seeds) per task."),
    workers: int = typer.Option(1, help="Parallel units: processes on this machine (1: in this process), or the CPUs of --ray-address local."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Run units as Ray tasks: local (a private Ray instance), auto, or ray://host:port."),
    out: Path = typer.Option(..., help="Folder for one entry JSON per method (written only if every unit succeeds)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Hyperparameter key=value (JSON values), given to every method."),
    store_entries: bool = typer.Option(False, "--store", help="Also validate the entries and add them to the board."),
    hardware: str = typer.Option("", help="Hardware the run used (default: this machine's CPU count and the executor)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help=BUDGET_HELP),
):
    """Run several methods on many tasks in parallel; write one leaderboard entry per method."""
    import os

    from latbench.leaderboard import board as lb
    from latbench.eval import sweep

    specs = sweep.parse_list(methods, "--methods")
    shot_list = sweep.parse_shots(shots)
    sweep.check_executor(workers, ray_address)
    budget = None if time_budget is None else time_budget * 60
    sweep.check_budget(budget, checkpoint, ray_address)
    if trials < 1 or min(shot_list) < 0:
        raise LatbenchError(f"need --shots >= 0 and --trials >= 1 (got {shot_list}, {trials})")
    suite, chosen_tasks = lb.select_tasks(tasks)
    if store_entries and (suite not in lb.SUITES or sorted(shot_list) != list(lb.SUITE_SHOTS) or trials != lb.SUITE_TRIALS):
        raise LatbenchError(f"--store needs a whole suite ({', '.join(lb.SUITES)}) with --shots "
                            f"{','.join(map(str, lb.SUITE_SHOTS))} and --trials {lb.SUITE_TRIALS}")
    chosen = sweep.make_methods(specs, _parse_params(param))
    results = _sweep(chosen, chosen_tasks, shot_list, trials, workers, ray_address, checkpoint, budget)
    hardware = hardware or f"{os.cpu_count()} CPU cores ({sweep.describe_executor(workers, ray_address)})"
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


# --------------------------------------------------------------------------------- checkpoints
checkpoints_app = typer.Typer(no_args_is_help=True, help="Maintain the unit folders of `sweep --checkpoint`.")
app.add_typer(checkpoints_app, name="checkpoints")


@checkpoints_app.command("prune")
@friendly
def checkpoints_prune(
    folder: Path = typer.Argument(..., metavar="DIR", help="A folder given to --checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
):
    """Remove the units no sweep would load again.

    Stale: the code of the unit's method, of a module it imports or of the evaluation changed, the
    latbench or protocol version changed, or the method is gone. A folder holding a JSON file that
    is not a unit checkpoint is refused: nothing is removed.
    """
    from latbench.eval import checkpoints

    kept, removed = checkpoints.prune(folder, dry_run=dry_run)
    for path in removed:
        console.print(f"{'would remove' if dry_run else 'removed'} {path}", highlight=False, soft_wrap=True)
    console.print(f"{folder}: kept {len(kept)} unit(s), {'would remove' if dry_run else 'removed'} {len(removed)} stale",
                  highlight=False, soft_wrap=True)


def main():  # pragma: no cover
    app()

