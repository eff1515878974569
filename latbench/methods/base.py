"""The one interface every latency predictor implements.

Shaped after scikit-learn's estimator contract (``__init__`` only stores hyperparameters, ``fit``
returns self, learned state ends in ``_``, ``get_params``/``clone`` for free from BaseEstimator)
and NASLib's predictor API. The protocol calls, per trial::

    method.fit(source, space, seed)          # source devices' latencies on the source sample
    method.adapt(device, oracle)             # per target device: measure up to k archs
    method.predict(device, arch_ids) -> ms   # per target device, on the evaluation set

Methods see architectures only through ``space`` (encodings, graphs, FLOPs, layer lists). A
method whose ``fit`` or ``adapt`` runs for minutes reports its steps with ``self.progress(done,
total, desc)``; ``latbench eval`` shows them as an inner progress bar with an ETA.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from latbench.errors import NotFittedError
from latbench.protocol.trial import Oracle, SourceData
from latbench.spaces.base import SearchSpace

#: Where ``Method.progress`` reports go: ``callback(done, total, desc)``, or None (nobody listens).
#: A context variable, not an attribute, so fitted methods (deep-copied per k, pickled to workers)
#: never carry a reference to a progress bar.
_PROGRESS: contextvars.ContextVar[Callable[[int, int, str], None] | None] = contextvars.ContextVar(
    "latbench_progress", default=None
)


@contextlib.contextmanager
def reporting_progress(callback: Callable[[int, int, str], None]) -> Iterator[None]:
    """Within the block, every ``Method.progress(done, total, desc)`` call goes to ``callback(done, total, desc)``."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def _naming_unadapted_devices(predict: Callable) -> Callable:
    """Wrap a subclass's ``predict`` so a device that was never adapted is named, not a bare KeyError.

    Methods keep per-device state in dicts (``coef_[device]``, ``targets_[device]``); predicting
    for a device that ``adapt`` never saw would end in ``KeyError: 'pixel2'``. Only the error path
    costs anything: the happy path is one ``try``.
    """

    @functools.wraps(predict)
    def wrapped(self, device, arch_ids):
        try:
            return predict(self, device, arch_ids)
        except KeyError as e:
            adapted = vars(self).get("shots_", {})
            if e.args != (device,) or device in adapted:  # another key, or adapt ran: the method's own bug
                raise
            adapted = sorted(adapted)
            raise NotFittedError(
                f"{type(self).__name__}.predict: device {device!r} was never adapted; call adapt({device!r}, oracle) "
                f"first (adapted so far: {', '.join(map(str, adapted)) or 'none'})"
            ) from None

    wrapped.__wrapped_for_unadapted_devices__ = True
    return wrapped


class Method(BaseEstimator):
    """Base class. Subclasses implement ``fit`` and ``predict``; ``adapt`` has a default."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        predict = cls.__dict__.get("predict")
        if callable(predict) and not getattr(predict, "__wrapped_for_unadapted_devices__", False):
            cls.predict = _naming_unadapted_devices(predict)

    #: Registry name and a one-line description for ``latbench methods``.
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: Hyperparameters that make the method cheap enough for the contract suite (tests only; like
    #: scikit-learn's checking parameters). Scores under these settings mean nothing.
    check_params: ClassVar[dict] = {}

    def __getattr__(self, name: str):
        # Reached only when normal lookup fails. Learned state ends in "_" (scikit-learn's rule), so
        # a missing one means fit/adapt has not run: say so instead of a bare AttributeError.
        if name.endswith("_") and not name.startswith("__"):
            raise NotFittedError(
                f"{type(self).__name__}.{name} is not set: call fit(source, space, seed), then adapt(device, oracle) "
                "for each target device, before predict"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def fit(self, source: SourceData, space: SearchSpace, seed: int) -> Method:
        """Learn from the source devices. ``seed`` is fixed by (task, trial): use it for all randomness."""
        self.source_ = source
        self.space_ = space
        self.seed_ = seed
        return self

    def adapt(self, device: str, oracle: Oracle) -> Method:
        """Default: measure the oracle's default random choice and keep the shots."""
        ids = oracle.default_choice()
        self.remember_shots(device, ids, oracle.measure(ids))
        return self

    def remember_shots(self, device: str, ids, latency) -> None:
        """Keep one target device's measured shots in ``shots_[device]`` = (ids, latency_ms): per-device state."""
        if not hasattr(self, "shots_"):
            self.shots_ = {}
        self.shots_[device] = (np.asarray(ids, dtype=np.int64), np.asarray(latency, dtype=np.float64))

    def progress(self, done: int, total: int, desc: str = "") -> None:
        """Report that ``done`` of ``total`` steps of ``desc`` (e.g. "meta-training episode") are finished.

        Call it from a long ``fit`` or ``adapt`` (once per epoch, episode or batch), so a run that
        takes minutes shows how far it is and an ETA. A no-op unless someone listens (``latbench
        eval`` in one process; see :func:`reporting_progress`), it never touches the results, and
        a method that never calls it needs nothing.
        """
        callback = _PROGRESS.get()
        if callback is not None:
            callback(int(done), int(total), desc)

    def predict(self, device: str, arch_ids: np.ndarray) -> np.ndarray:
        """Latency in ms of each arch id on ``device`` (finite, > 0, one per id)."""
        raise NotImplementedError
