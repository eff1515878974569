"""``latbench data ...``: build, inspect, plot, publish the datasets; register measured sources."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from latbench.cli.common import build_data, console, friendly
from latbench.cli.measure import import_cmd

data_app = typer.Typer(no_args_is_help=True, help="Build, inspect, plot and publish the latency datasets.")
sources_app = typer.Typer(no_args_is_help=True, help="The measured sources registered with `latbench data add-source`.")
data_app.add_typer(sources_app, name="sources")
data_app.command("import")(import_cmd)


@data_app.command("build")
@friendly
def data_build(
    mirror: Path | None = typer.Option(None, help="Local mirror of the sources (default: $LATBENCH_MIRROR)."),
    base_url: str | None = typer.Option(None, help="HTTP mirror replacing the pinned upstream URL prefix."),
    out: Path | None = typer.Option(None, help="Output folder (default: $LATBENCH_HOME/dataset)."),
    sources: str | None = typer.Option(None, help="Comma-separated sources (help, latbench-measured); default all."),
):
    """Download (or take from a mirror), verify and convert every source into the HF dataset."""
    chosen = tuple(x.strip() for x in sources.split(",") if x.strip()) if sources else None
    info = build_data(out, mirror=mirror, base_url=base_url, sources=chosen)
    console.print(f"dataset {info['dataset_version']} ready at {out or _data_dir()}")
    if info.get("missing_sources"):
        console.print(
            f"partial dataset: the {', '.join(info['missing_sources'])} source(s) could not be downloaded; "
            "run `latbench data build` again with network or LATBENCH_MIRROR for the full dataset"
        )


@data_app.command("add-source")
@friendly
def data_add_source(
    folder: Path = typer.Argument(..., help="A `latbench profile --out` folder (<space>/<device>/...)."),
    name: str | None = typer.Option(None, help="Name of the registered copy (default: the folder's name)."),
):
    """Validate profiler output and register it, so the next `latbench data build` includes its devices."""
    from latbench.data.measured import add_source, read_root

    target = add_source(folder, name)
    devices = read_root(target)
    console.print(
        f"registered {len(devices)} device(s) at {target}: "
        + ", ".join(f"{d.meta.space}/{d.meta.device} ({len(d.archs)} archs)" for d in devices)
    )
    console.print("run `latbench data build` to include them in the dataset")


@sources_app.command("list")
@friendly
def sources_list():
    """Every registered source, its devices, and any problem that would stop `latbench data build`."""
    from latbench.data.measured import list_sources, user_sources_dir

    found = list_sources()
    if not found:
        console.print(f"no registered sources (in {user_sources_dir()}); add one with `latbench data add-source FOLDER`")
        return
    t = Table("source", "devices", "archs", "folder", "status")
    for s in found:
        devices = ", ".join(f"{space}/{device}" for space, device, _ in s["devices"])
        archs = ", ".join(str(n) for _, _, n in s["devices"])
        status = "ok" if s["problem"] is None else f"broken: {s['problem']}"
        t.add_row(s["name"], devices or "-", archs or "-", str(s["folder"]), status)
    console.print(t)


@sources_app.command("remove")
@friendly
def sources_remove(name: str = typer.Argument(..., help="The source's name (see `latbench data sources list`).")):
    """Unregister a source; its devices leave the dataset at the next `latbench data build`."""
    from latbench.data.measured import remove_source

    folder = remove_source(name)
    console.print(f"removed source {name} ({folder}); run `latbench data build` to drop its devices from the dataset")


def _data_dir():
    from latbench import paths

    return paths.data_dir()


@data_app.command("info")
@friendly
def data_info():
    """Spaces, devices, counts, version and location of the built dataset; which tasks it can run."""
    from latbench.data import freshness, store
    from latbench.tasks.runnable import missing_devices
    from latbench.tasks.spec import list_tasks

    info = store.info()
    console.print(
        f"{store.root()}  version {info['dataset_version']}  (latbench {info['latbench_version']}, built {info['built_at']})"
    )
    t = Table("space", "archs", "devices", "rows", "device names")
    for space, c in info["spaces"].items():
        t.add_row(space, f"{c['archs']:,}", str(len(c["devices"])), f"{c['rows']:,}", ", ".join(c["devices"]))
    console.print(t)
    for s in info["sources"]:
        console.print(f"source {s['name']}: {s['title']} ({s['license']}), {len(s['files'])} files")
    tasks = list_tasks()
    blocked = {t.id: missing_devices(t, info) for t in tasks}
    blocked = {k: v for k, v in blocked.items() if v}
    console.print(f"tasks runnable on this data: {len(tasks) - len(blocked)} of {len(tasks)}")
    if blocked:
        some = ", ".join(f"{k} (needs {v[0]}{' and more' if len(v) > 1 else ''})" for k, v in list(blocked.items())[:4])
        console.print(f"not runnable: {some}{', ...' if len(blocked) > 4 else ''}")
    tip = freshness.advice(info, probe_network=True)
    if tip is not None:
        console.print(f"partial dataset: {tip.message}")


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
    token: str | None = typer.Option(None, help="HF token (default: the cached login / HF_TOKEN)."),
):
    """Upload the built dataset folder to the Hugging Face Hub."""
    from latbench.data.push import push

    url = push(repo_id, private=private, token=token)
    console.print(f"pushed to {url}")
