"""The dataset build with the committed tasks written as configs: what ``latbench data build`` runs.

The data layer builds from sources alone and takes the tasks as an argument; this module, one
layer up, hands it the task registry.
"""

from __future__ import annotations

from latbench.data.build import build
from latbench.tasks.spec import list_tasks


def build_dataset(out=None, **options) -> dict:
    """:func:`latbench.data.build.build` with every committed task as a dataset config."""
    return build(out, tasks=list_tasks(), **options)
