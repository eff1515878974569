"""What every command shares: the consoles, one-line errors, ``--param`` and ``--device``, progress bars,
building the data on first use."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

from latbench.errors import LatbenchError

# messages carry paths: no markup, and no hard line breaks (a wrapped path breaks grep and copy-paste)
console = Console(width=None if sys.stdout.isatty() else 160, markup=False, soft_wrap=True)
err_console = Console(stderr=True, markup=False)


def print_error(message: str) -> None:
    from rich.text import Text

    err_console.print(Text("error: ", style="red") + Text(message), highlight=False, soft_wrap=True)


def one_line(text: str) -> str:
    """A message as one line (a method's exception text may span several)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def friendly(fn):
    """Turn LatbenchError into a one-line message and exit code 1.

    With ``LATBENCH_DEBUG=1`` the traceback comes first (for a failed unit: the worker's, where the
    method raised), then the same one-line message.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LatbenchError as e:
            debug = os.environ.get("LATBENCH_DEBUG") == "1"
            if debug:
                detail = getattr(e, "detail", "") or "".join(traceback.format_exception(type(e), e, e.__traceback__))
                err_console.print(detail.rstrip(), highlight=False, soft_wrap=True)
            hint = "" if debug or not getattr(e, "detail", "") else " (LATBENCH_DEBUG=1 prints the traceback)"
            print_error(one_line(str(e)) + hint)
            raise typer.Exit(1) from None

    return wrapper


def plain_warnings() -> None:
    """Python warnings as one ``warning: ...`` line on stderr, without the source line; a constant
    prediction is reported once, not once per target device and trial."""
    import warnings

    from latbench.protocol.metrics import ConstantPredictionWarning

    shown: set[str] = set()  # not the "once" filter: any change to the filters (an import) resets it

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ConstantPredictionWarning):
            if str(message) in shown:
                return
            shown.add(str(message))
            text = f"warning: {message}"
        else:
            text = f"warning: {category.__name__}: {message}"
        err_console.print(text, highlight=False, soft_wrap=True)

    warnings.showwarning = show


def parse_params(items: list[str]) -> dict:
    """``--param key=value`` items: values are JSON when they parse as JSON, else strings."""
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


DEVICE_HELP = (
    "Torch device of the methods that take a `device` parameter (help, brp-nas, nasflat, mlp-finetune, "
    "mlp-hwparams): cpu, cuda, cuda:N, or auto (cuda when this machine has a GPU). Default: each method's "
    "own (cpu). The other methods run on the CPU; cuda on a machine without a GPU is an error."
)


def set_device(chosen: list, device: str | None, params: dict | None = None) -> str | None:
    """``--device``: set the ``device`` parameter of every (label, method) in ``chosen`` that has one.

    ``auto`` is resolved here, once, so results, entries and checkpoint keys record the device that
    ran. A note on stderr names the methods without a ``device`` parameter when the device is not
    the CPU. Returns the resolved device (None without ``--device``). LatbenchError when the device
    does not exist here, or when ``--param device=...`` says something else too.
    """
    if device is None:
        return None
    if params and "device" in params:
        raise LatbenchError("give the device once: --device or --param device=..., not both")
    from latbench.methods.fitting import torch_device  # local: resolving imports torch

    resolved = str(torch_device(device))
    cpu_only = []
    for label, m in chosen:
        if "device" in m.get_params(deep=False):
            m.set_params(device=resolved)
        elif resolved != "cpu":
            cpu_only.append(label)
    if cpu_only:
        err_console.print(
            f"note: {', '.join(cpu_only)}: no `device` parameter, runs on the CPU (--device {device})", highlight=False
        )
    return resolved


def device_hardware(device) -> str:
    """What an entry's default ``hardware`` adds for a method run with ``device=...``: " + <GPU name>",
    or nothing for the CPU (or a value that is not a device string)."""
    if not isinstance(device, str) or device == "cpu":
        return ""
    from latbench.methods.fitting import torch_device  # local: imports torch

    dev = torch_device(device)
    if dev.type == "cuda":
        import torch

        return f" + {torch.cuda.get_device_name(dev)}"
    return "" if dev.type == "cpu" else f" + {dev}"


class RunProgress:
    """Progress on stderr while units run (a terminal only; nothing otherwise).

    One bar counts the finished (task, trial) units; a second one follows the steps the running
    unit's method reports through ``Method.progress`` (epochs, episodes, batches), reset at every new
    phase so its ETA is that phase's. The second bar needs the in-process executor (``workers=1``):
    worker processes and Ray tasks report finished units only.
    """

    def __init__(self, total: int, describe: Callable):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            _eta_column(),
            console=err_console,
            transient=True,
            disable=not sys.stderr.isatty(),
        )
        self.describe = describe
        self.units = self.bars.add_task("starting", total=total)
        self.inner = None
        self._phase: tuple | None = None
        self._done = 0

    def __enter__(self) -> RunProgress:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)

    def _elapsed(self, task_id) -> float:
        return next((t.elapsed or 0.0 for t in self.bars.tasks if t.id == task_id), 0.0)

    def unit_done(self, done: int, total: int, elapsed: float, unit) -> None:
        """``on_progress`` of :func:`latbench.eval.runner.run`."""
        self.bars.update(self.units, completed=done, done_at=self._elapsed(self.units))

    def step(self, done: int, total: int, desc: str, unit) -> None:
        """``on_step`` of :func:`latbench.eval.runner.run`: ``total`` 0 when a unit starts."""
        if total <= 0:
            self.bars.update(self.units, description=self.describe(unit))
            if self.inner is not None:
                self.bars.update(self.inner, visible=False)
            self._phase = None
            return
        phase = (unit.index, desc, total)
        if self.inner is None:
            self.inner = self.bars.add_task("", total=total)
        if phase != self._phase or done < self._done:
            self.bars.reset(self.inner, total=total, completed=done, description=f"  {desc}", visible=True, start_done=done)
            self._phase = phase
        else:
            self.bars.update(self.inner, completed=done, done_at=self._elapsed(self.inner))
        self._done = done


def _eta_column():
    """A rich column: time left at the bar's average pace since it (re)started, counting down
    between steps (field ``done_at``: the bar's elapsed seconds at its last step).

    Rich's own ETA needs two updates within its 30 s look-back; a learned method's unit takes
    minutes, so the units' bar would show none for the whole first unit.
    """
    from datetime import timedelta

    from rich.progress import ProgressColumn
    from rich.text import Text

    class Eta(ProgressColumn):
        def render(self, task) -> Text:
            done, at = task.completed - task.fields.get("start_done", 0), task.fields.get("done_at")
            if task.finished:
                return Text("0:00:00", style="progress.remaining")
            if task.total is None or done <= 0 or not at:
                return Text("-:--:--", style="progress.remaining")
            left = at / done * (task.total - task.completed) - ((task.elapsed or at) - at)
            return Text(str(timedelta(seconds=max(0, int(left)))), style="progress.remaining")

    return Eta()


def hide_flag_types() -> None:
    """Show no type next to a flag in ``--help`` (``--store``, not ``--store <bool>``): a flag takes no value.

    Typer's rich help labels every option with its type, flags included (typer 0.29); every command
    gets this through ``latbench.cli.main``. Older Typer versions have no such label and are left as they are.
    """
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - a Typer without that class
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_latbench_flags_hidden", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._latbench_flags_hidden = True
    TyperOption.display_type_rich = display_type_rich


def _reflow(doc: str) -> str:
    """A docstring with each prose paragraph on one line; lists and indented blocks kept as written."""
    out = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines = para.splitlines()
        block = any(line[:1].isspace() or line.lstrip().startswith(("- ", "* ", "```")) for line in lines)
        out.append(para if block else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def reflow_help(app: typer.Typer) -> None:
    """Let ``--help`` wrap command descriptions to the terminal.

    Typer's rich help keeps a docstring's own line breaks after its first paragraph, so text wrapped
    at the source's width comes out ragged in a narrower terminal; this joins each prose paragraph
    of every command's (and sub-app's) docstring into one line, recursively.
    """
    infos = list(app.registered_commands)
    if app.registered_callback is not None:
        infos.append(app.registered_callback)
    for info in infos:
        doc = info.help if isinstance(info.help, str) else getattr(info.callback, "__doc__", None)
        if doc:
            info.help = _reflow(doc)
    for group in app.registered_groups:
        reflow_help(group.typer_instance)


def build_data(
    out: Path | None = None, *, mirror: Path | None = None, base_url: str | None = None, sources: tuple[str, ...] | None = None
) -> dict:
    """Build the dataset (with the committed tasks as configs): log lines and, on a terminal, one
    progress bar per stage (fetch and verify, read, spaces, kernel tables, task configs) on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from latbench import paths
    from latbench.tasks.dataset import build_dataset  # local: the CLI starts without pyarrow & co.

    local = mirror if mirror is not None else paths.mirror()
    labels = {
        "read latbench-measured": "read the measured devices",
        "spaces": "write the spaces",
        "kernels": "write the kernel tables",
        "tasks": "write the task configs",
    }
    bars: dict = {}
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not sys.stderr.isatty(),
    ) as progress:

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                kind, _, name = stage.partition(" ")
                label = labels.get(stage) or (
                    f"{'verify' if local else 'download'} {name} files" if kind == "fetch" else f"convert {name} files"
                )
                bars[stage] = progress.add_task(label, total=total)
            progress.update(bars[stage], completed=done, total=total)

        return build_dataset(
            out,
            mirror=mirror,
            base_url=base_url,
            sources=sources,
            log=lambda m: progress.console.print(m, highlight=False),
            on_progress=on_progress,
        )


def rebuild_if_partial() -> None:
    """A partial dataset (built offline) meets its missing source: rebuild from LATBENCH_MIRROR when it
    has the source (a local, verified, atomic build; on failure the partial dataset stays and the
    command goes on), else say which command adds it. Never waits on the network."""
    from latbench.data import freshness, store
    from latbench.errors import DataError

    tip = freshness.advice(store.info())
    if tip is None:
        return
    if tip.where != "mirror":
        err_console.print(f"warning: {tip.message}", highlight=False, soft_wrap=True)
        return
    err_console.print(f"{tip.head}; LATBENCH_MIRROR has them: rebuilding (`{tip.command}`)", highlight=False, soft_wrap=True)
    try:
        build_data()
    except DataError as e:
        err_console.print(
            f"warning: rebuild failed ({one_line(str(e))}); going on with the partial dataset", highlight=False, soft_wrap=True
        )


def ensure_data() -> None:
    """Commands that need the dataset build it on first use, and complete a partial (offline) one
    when its missing source has become available (:func:`rebuild_if_partial`)."""
    from latbench.data import store

    if not store.is_built():
        err_console.print("dataset not built yet: building it first")
        build_data()
    else:
        rebuild_if_partial()
