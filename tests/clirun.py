"""Running latbench's command line inside a test, with stdout and stderr kept apart."""

from __future__ import annotations

from typer.testing import CliRunner

from latbench.cli import app


def run_cli(*args, **kwargs):
    """``latbench ARGS...`` in this process (arguments may be paths); ``kwargs`` go to ``CliRunner.invoke``.
    The result has ``stdout`` and ``stderr`` apart, so a test can check that an error is one line."""
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always keeps stderr apart
        runner = CliRunner()
    return runner.invoke(app, [str(a) for a in args], **kwargs)
