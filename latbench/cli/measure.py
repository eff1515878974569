"""``latbench profile`` and ``latbench profile-kernels``: measure this machine; ``latbench data import``:
bring in latencies measured elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from latbench.cli.common import console, ensure_data, err_console, friendly
from latbench.errors import LatbenchError
from latbench.text import name_problem


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
    rounds: int = typer.Option(1, help="Interleaved passes over all archs, each timing every arch --repeats times."),
    pin_cpus: str | None = typer.Option(
        None, "--pin-cpus", help="Comma-separated CPU ids to confine the run to, one per thread (e.g. 1 or 0,1)."
    ),
    out: Path = typer.Option(Path("measured"), help="Output folder (resumable: rerun to continue)."),
    name: str | None = typer.Option(None, help="Hardware name for the device names (default: from the CPU/GPU model)."),
    seed: int = typer.Option(0, help="Seed of the arch sample and the inputs."),
):
    """Measure archs on this machine: one device per (runtime, threads, batch, precision) combination."""
    from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from latbench.data import store
    from latbench.measure import profiler

    runtimes = ["torch-graphs" if cuda_graphs and r == "torch" else r for r in runtime]
    settings = [
        profiler.Setting(space, r, device, t, b, p, warmup, repeats)
        for r in runtimes
        for p in precision
        for b in batch
        for t in (threads if device == "cpu" else [1])
    ]
    if len(runtimes) * len(precision) == 1:
        settings[0].check()  # one combination asked for: say exactly what is wrong with it
    if name is not None and name_problem(name):
        raise LatbenchError(f"--name: {name_problem(name)}")
    settings = [s for s in settings if profiler.is_valid(s)]  # several: measure the valid combinations
    if not settings:
        raise LatbenchError(f"no valid (runtime, precision) combination on {device} in {runtimes} x {precision}")
    try:
        pins = tuple(int(c) for c in pin_cpus.split(",")) if pin_cpus else ()
    except ValueError:
        raise LatbenchError(f"--pin-cpus {pin_cpus!r}: expected comma-separated CPU ids, e.g. 1 or 0,1") from None
    pins = profiler.check_pin_cpus(pins, max(s.threads for s in settings))
    if rounds < 1:
        raise LatbenchError(f"--rounds must be >= 1, got {rounds}")
    ensure_data()
    sp = store.load_space(space)
    with Progress(
        *Progress.get_default_columns()[:-1],
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(f"profile {space}", total=None)
        report = profiler.profile(
            sp,
            settings,
            out,
            archs,
            seed=seed,
            name_prefix=name,
            retest=retest,
            max_wait=max_wait,
            rounds=rounds,
            pin_cpus=pins,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
            log=lambda msg: err_console.print(msg, highlight=False, soft_wrap=True),
        )
    console.print(
        f"measured {report.measured} archs ({report.skipped} already there) in {report.seconds:.0f} s: "
        + ", ".join(report.devices)
        + f"  ->  {out / space}"
    )


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
    name: str | None = typer.Option(None, help="Hardware name for the device name (default: from the CPU model)."),
    seed: int = typer.Option(0),
):
    """Measure sampled single-kernel configurations on this CPU (nn-Meter / LitePred data collection).

    The folder feeds `latbench eval -m nn-meter --param variant=faithful --param campaign=DIR`.
    """
    from latbench.data import store
    from latbench.measure import kernel_sampling

    ensure_data()
    spaces = [store.load_space(s) for s in store.info()["spaces"]]
    for o in op:
        r = kernel_sampling.run_campaign(
            out,
            o,
            sampler,
            spaces,
            samples=samples,
            finegrained=finegrained,
            iterations=iterations,
            error_threshold=error_threshold,
            threads=threads,
            warmup=warmup,
            repeats=repeats,
            max_wait=max_wait,
            zoo_archs=zoo_archs,
            seed=seed,
            name=name,
            log=lambda m: err_console.print(m, highlight=False),
        )
        last = r["history"][-1]
        console.print(
            f"{o}: {r['measured']} configurations measured in {r['seconds']} s ({r['contended']} contended), "
            f"held-out ±10% accuracy {last['acc10']:.3f}  ->  {kernel_sampling.campaign_file(out, r['device'], o)}"
        )


@friendly
def import_cmd(
    table: Path = typer.Argument(
        ..., help="CSV or parquet with the columns latency_ms, arch (arch strings) or arch_id, and device (optional)."
    ),
    meta: Path = typer.Option(..., help="YAML or JSON: space, origin (optional), devices: {name: {hardware, family, ...}}."),
    name: str | None = typer.Option(None, help="Name of the registered source (default: the table file's name)."),
):
    """Register latencies measured elsewhere (see docs: Data, importing latencies); then `latbench data build`."""
    from latbench.data.imports import import_source
    from latbench.data.measured import read_root

    target = import_source(table, meta, name)
    devices = read_root(target)
    console.print(
        f"registered {len(devices)} device(s) at {target}: "
        + ", ".join(f"{d.meta.space}/{d.meta.device} ({len(d.archs)} archs)" for d in devices)
    )
    console.print(
        "run `latbench data build` to include them, then `latbench tasks create NAME --space SPACE --target DEVICE` for a task"
    )
