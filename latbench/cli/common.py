"""What every command shares: the consoles, one-line errors, ``--param`` parsing, building the data on first use."""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from pathlib import Path

import typer
from rich.console import Console

from latbench.errors import LatbenchError

console = Console(width=None if sys.stdout.isatty() else 160, markup=False)  # messages carry paths: no markup
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
            if os.environ.get("LATBENCH_DEBUG") == "1":
                detail = getattr(e, "detail", "") or "".join(traceback.format_exception(type(e), e, e.__traceback__))
                err_console.print(detail.rstrip(), highlight=False, soft_wrap=True)
            print_error(one_line(str(e)))
            raise typer.Exit(1) from None

    return wrapper


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


def build_data(
    out: Path | None = None, *, mirror: Path | None = None, base_url: str | None = None, sources: tuple[str, ...] | None = None
) -> dict:
    """Build the dataset (with the committed tasks as configs), logging to stderr."""
    from latbench.tasks.dataset import build_dataset  # local: the CLI starts without pyarrow & co.

    return build_dataset(
        out,
        mirror=mirror,
        base_url=base_url,
        sources=sources,
        progress=sys.stderr.isatty(),
        log=lambda m: err_console.print(m, highlight=False),
    )


def ensure_data() -> None:
    """Commands that need the dataset build it on first use."""
    from latbench.data import store

    if not store.is_built():
        err_console.print("dataset not built yet: building it first")
        build_data()
