"""Search spaces: one module each, one interface (:class:`latbench.spaces.base.SearchSpace`).

``get_space(name)`` returns the space with its architectures in the dataset's arch-id order and
its precomputed feature tables, loaded from the built dataset (``latbench data build``).
"""

from __future__ import annotations

import functools
import importlib

from latbench.errors import LatbenchError, did_you_mean
from latbench.spaces.base import Layer, SearchSpace

#: name -> "module:Class"; imported lazily so that `import latbench` stays cheap.
SPACE_CLASSES = {
    "nb201": "latbench.spaces.nb201:NB201Space",
    "fbnet": "latbench.spaces.fbnet:FBNetSpace",
    "ofa": "latbench.spaces.ofa:OFASpace",
}


def space_class(name: str) -> type[SearchSpace]:
    if name not in SPACE_CLASSES:
        raise LatbenchError(f"unknown search space {name!r}{did_you_mean(name, SPACE_CLASSES)}; known: {', '.join(SPACE_CLASSES)}")
    module, cls = SPACE_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


@functools.lru_cache(maxsize=None)
def get_space(name: str) -> SearchSpace:
    """The space as in the built dataset (arch ids = dataset ``arch_id``), with cached features."""
    from latbench.data.store import load_space

    return load_space(name)


__all__ = ["Layer", "SearchSpace", "SPACE_CLASSES", "space_class", "get_space"]
