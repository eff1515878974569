"""``python -m latbench``: the same as the ``latbench`` command."""

from latbench.cli.main import app

app(prog_name="latbench")
