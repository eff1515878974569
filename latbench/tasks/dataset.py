"""The dataset build with the official tasks written as configs: what ``latbench data build`` runs.

The data layer builds from sources alone and takes the tasks as an argument; this module, one
layer up, hands it the official tasks of the registry (user tasks are not dataset configs: a
user task naming a device the build no longer has must not stop the build).
"""

from __future__ import annotations

from latbench.data.build import build
from latbench.tasks.spec import official_tasks


def build_dataset(out=None, **options) -> dict:
    """:func:`latbench.data.build.build` with every official task as a dataset config."""
    return build(out, tasks=official_tasks(), **options)
