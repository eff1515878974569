"""Search spaces: one module each, one interface (:class:`latbench.spaces.base.SearchSpace`).

A space here is pure code; :func:`latbench.data.store.get_space` gives the space with its
architectures in the built dataset's arch-id order and its precomputed feature tables.
"""

from __future__ import annotations

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
        raise LatbenchError(
            f"unknown search space {name!r}{did_you_mean(name, SPACE_CLASSES)}; known: {', '.join(SPACE_CLASSES)}"
        )
    module, cls = SPACE_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["Layer", "SearchSpace", "SPACE_CLASSES", "space_class"]
