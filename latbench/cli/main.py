"""The ``latbench`` command line: parse, call the Python API, print. No logic of its own.

Every ``LatbenchError`` becomes ``error: <one line>`` on stderr and exit code 1 (no traceback).
One module per command group; this one assembles them.
"""

from __future__ import annotations

import typer

from latbench.cli.common import hide_flag_types, plain_warnings, reflow_help
from latbench.cli.data import data_app
from latbench.cli.evaluate import eval_cmd, methods, submit
from latbench.cli.leaderboard import board_app
from latbench.cli.measure import profile_cmd, profile_kernels_cmd
from latbench.cli.sweep import checkpoints_app, sweep_cmd
from latbench.cli.tasks import tasks_app

hide_flag_types()
app = typer.Typer(add_completion=False, no_args_is_help=True, help="latbench: few-shot latency prediction on unseen hardware.")


def _version(value: bool) -> None:
    if value:
        from latbench import __version__

        typer.echo(f"latbench {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print latbench's version and exit."),
):
    """latbench: few-shot latency prediction on unseen hardware."""
    plain_warnings()


app.add_typer(data_app, name="data")
app.add_typer(tasks_app, name="tasks")
app.add_typer(board_app, name="leaderboard")
app.add_typer(checkpoints_app, name="checkpoints")
app.command("profile")(profile_cmd)
app.command("profile-kernels")(profile_kernels_cmd)
app.command("methods")(methods)
app.command("eval")(eval_cmd)
app.command("submit")(submit)
app.command("sweep")(sweep_cmd)
reflow_help(app)


def main():  # pragma: no cover
    app()
