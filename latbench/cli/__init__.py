"""The ``latbench`` command line: parse, call the library, print."""

from latbench.cli.main import app

__all__ = ["app"]
