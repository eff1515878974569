"""Methods: the base class, the entry-point registry, the contract checks and public fitting helpers."""

from latbench.methods.base import Method
from latbench.methods.registry import available, make_method, resolve

__all__ = ["Method", "available", "make_method", "resolve"]
