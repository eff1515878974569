"""Public helpers for method authors: positive predictions, a monotone scale fit, stable seeds, torch threads and devices.

Every built-in uses these, so a new method gets the same conventions without re-implementing them.
"""

from __future__ import annotations

import contextlib
import zlib

import numpy as np

from latbench.errors import MethodError


def positive_floor(pred: np.ndarray, shots: np.ndarray) -> np.ndarray:
    """Clip predictions to a small positive floor (a linear fit may go below 0 at the low end)."""
    floor = 1e-3 * (float(np.min(shots)) if len(shots) else 1.0)
    return np.maximum(pred, floor)


def scale_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y ~ a*x + b with a > 0 (least squares); falls back to y ~ a*x through the origin when the
    least-squares slope is not positive, so the prediction keeps the ranking of x."""
    if len(y) >= 2 and np.ptp(x) > 0:
        a, b = np.polyfit(x, y, 1)
        if a > 0:
            return float(a), float(b)
    if len(y) == 0:
        return 1.0, 0.0
    return float(np.mean(y) / max(np.mean(x), 1e-12)), 0.0


def stable_seed(*parts) -> int:
    """A 31-bit seed from any printable parts (e.g. the trial seed and a device name).

    Independent of Python's hash randomisation, so it is the same in every process and run.
    """
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


@contextlib.contextmanager
def torch_threads(n):
    """Run with ``n`` torch CPU threads (None/0: leave torch's setting), restoring it afterwards.

    The learned baselines default to 1 thread: on a small shared machine, 2 threads were measured
    8-17x slower than 1 for these small models (thread contention with other processes).
    """
    import torch  # local: torch is heavy and only the learned methods need it

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def torch_device(spec="cpu"):
    """The ``torch.device`` a learned method's ``device`` parameter names, checked against this machine.

    ``spec`` is a torch device string ("cpu", "cuda", "cuda:1", "mps", ...), a ``torch.device``,
    or "auto": the first CUDA GPU when there is one, else the CPU. Why check: a ``device="cuda"``
    run on a machine without a GPU should stop at once with one line saying so, not with a CUDA
    traceback half-way through a fit. Raises MethodError for a string that is no device or a
    device this machine lacks.
    """
    import torch  # local: torch is heavy and only the learned methods need it

    if isinstance(spec, str) and spec.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec.strip().lower() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError, ValueError):
        raise MethodError(f"device={spec!r} is not a torch device: use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise MethodError(
                f"device={spec!r}: no CUDA GPU is available here (torch {torch.__version__}, {built}); use cpu or auto"
            )
        if dev.index is not None and dev.index >= count:
            raise MethodError(f"device={spec!r}: this machine has {count} CUDA GPU(s), numbered from 0")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise MethodError(f"device={spec!r}: Apple's MPS backend is not available here; use cpu or auto")
    return dev


#: Percentage-error weights 1/y^2 are capped at 1/(WEIGHT_FLOOR x median y)^2: a few NB201 archs
#: whose cells compute nothing run in ~0.01 ms on some devices (raspi4, pixel3; median ~20 ms), and
#: uncapped they would carry 10^6 x the weight of every other arch.
WEIGHT_FLOOR = 0.1


def relative_weights(y: np.ndarray) -> np.ndarray:
    """Per-row divisor of the squared percentage error: y, floored at WEIGHT_FLOOR x median(y)."""
    y = np.asarray(y, dtype=np.float64)
    return np.maximum(y, WEIGHT_FLOOR * np.median(y)) if len(y) else y


def best_scale_source(P: np.ndarray, y: np.ndarray) -> tuple[int, float]:
    """(source column, scale a) minimising the squared percentage error of ``a * P[:, d]`` on the shots."""
    P = np.asarray(P, dtype=np.float64)
    if len(y) == 0:
        return 0, 1.0
    w = relative_weights(y)
    R, t = P / w[:, None], np.asarray(y) / w  # prediction / divisor, truth / divisor
    num, den = (R * t[:, None]).sum(axis=0), (R**2).sum(axis=0)
    a = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)  # argmin_a sum (t - a r)^2
    err = ((t[:, None] - a[None, :] * R) ** 2).sum(axis=0)
    err = np.where(a > 0, err, np.inf)
    d = int(np.argmin(err))
    return d, float(a[d]) if np.isfinite(err[d]) else 1.0


def loo_pick(grid, y: np.ndarray, predict_left_out):
    """The value of ``grid`` with the smallest leave-one-out squared percentage error on the shots
    ``y``; ``predict_left_out(value, keep, i)`` fits on the rows ``keep`` and predicts shot ``i``.
    The first value when the grid has one value or k < 5 (too few shots to hold one out)."""
    grid = tuple(np.atleast_1d(grid).tolist())
    k = len(y)
    if len(grid) == 1 or k < 5:
        return grid[0]
    w = relative_weights(y)
    errs = []
    for value in grid:
        err = 0.0
        for i in range(k):
            err += ((predict_left_out(value, np.arange(k) != i, i) - y[i]) / w[i]) ** 2
        errs.append(err)
    return grid[int(np.argmin(errs))]
