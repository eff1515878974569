"""The one interface every latency predictor implements, and the registry that finds them.

Shaped after scikit-learn's estimator contract (``__init__`` only stores hyperparameters, ``fit``
returns self, learned state ends in ``_``, ``get_params``/``clone`` for free from BaseEstimator)
and NASLib's predictor API. The protocol calls, per trial::

    method.fit(source, space, seed)          # source devices' latencies on the source sample
    method.adapt(device, oracle)             # per target device: measure up to k archs
    method.predict(device, arch_ids) -> ms   # per target device, on the evaluation set

Methods see architectures only through ``space`` (encodings, graphs, FLOPs, layer lists).
Methods are found by name: built-ins from ``baselines/``, third-party ones from the
``latbench.methods`` entry-point group, or any ``package.module:Class`` path.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from latbench.errors import MethodError, did_you_mean


class Method(BaseEstimator):
    """Base class. Subclasses implement ``fit`` and ``predict``; ``adapt`` has a default."""

    #: Registry name and a one-line description for ``latbench methods``.
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: What the method reads from the space: any of "onehot", "graph", "flops", "layers".
    requires: ClassVar[tuple[str, ...]] = ()
    #: Hyperparameters that make the method cheap enough for the contract suite (tests only; like
    #: scikit-learn's checking parameters). Scores under these settings mean nothing.
    check_params: ClassVar[dict] = {}

    def fit(self, source, space, seed: int) -> "Method":
        self.source_ = source
        self.space_ = space
        self.seed_ = seed
        return self

    def adapt(self, device: str, oracle) -> "Method":
        """Default: measure the oracle's default random choice and keep the shots."""
        ids = oracle.default_choice()
        self.remember_shots(device, ids, oracle.measure(ids))
        return self

    def remember_shots(self, device: str, ids, latency) -> None:
        if not hasattr(self, "shots_"):
            self.shots_ = {}
        self.shots_[device] = (np.asarray(ids, dtype=np.int64), np.asarray(latency, dtype=np.float64))

    def predict(self, device: str, arch_ids) -> np.ndarray:
        raise NotImplementedError


def builtin_methods() -> dict[str, str]:
    from baselines import BUILTIN

    return dict(BUILTIN)


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="latbench.methods")}


def available() -> dict[str, str]:
    """name -> "module:Class" for built-ins and installed plug-ins (built-ins win on a clash)."""
    return {**_entry_points(), **builtin_methods()}


def resolve(spec: str) -> type[Method]:
    """A Method class from a registered name or a ``module:Class`` path."""
    known = available()
    target = known.get(spec, spec if ":" in spec else None)
    if target is None:
        raise MethodError(f"unknown method {spec!r}{did_you_mean(spec, known)}; see `latbench methods` or pass module:Class")
    module, _, attr = target.partition(":")
    if ":" in spec and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m` and uvicorn: module:Class paths resolve from the cwd
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise MethodError(f"cannot load method {spec!r} from {target!r}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise MethodError(f"{target!r} is not a latbench.method.Method subclass")
    return cls


def make(spec: str, **params) -> Method:
    cls = resolve(spec)
    try:
        return cls(**params)
    except TypeError as e:
        raise MethodError(f"method {spec!r}: bad parameters {params}: {e}") from None
