"""Executors: run units in-process, in a pool of spawned processes, or as Ray tasks -- same numbers.

Only picklable data crosses process boundaries; every worker loads the dataset itself (cached per
process) and the driver checks that it sees the same dataset hash. With a checkpoint folder each
finished unit is saved at once, so a stopped run resumes where it stopped (:mod:`.checkpoints`).

Before anything runs, :func:`check_units` refuses what cannot make sense: an unknown protocol or
source-arch mode (the rules of :mod:`.arguments`, shared with :func:`latbench.evaluate` and the
CLI), and a numeric hyperparameter that is negative (or not finite) where the method's default
is a positive number (``epochs=-3``, ``lr=-1``; zero stays allowed: ``finetune_epochs=0`` and
``dropout=0`` are meaningful, and seeds such as ``random_state=0`` are too). A method that
raises in ``fit``, ``adapt`` or ``predict`` fails its unit with :class:`MethodFailed`, one line naming
the method, the phase and the exception (the traceback is the error's ``detail``; the CLI prints
it with ``LATBENCH_DEBUG=1``).

Progress inside a unit (a method's ``self.progress(done, total, desc)`` calls, see
:meth:`latbench.methods.base.Method.progress`) reaches ``on_step`` only from the in-process executor
(``workers=1``): worker processes and Ray tasks report finished units only.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable
from pathlib import Path

from latbench.data import store
from latbench.errors import MethodError
from latbench.eval import checkpoints
from latbench.eval.arguments import PYTHON, check_budget, check_executor, check_modes
from latbench.eval.units import Outcome, SweepError, SweepStopped, Unit, limit_threads, run_unit
from latbench.methods.base import reporting_progress

#: How a failed or stopped run ends its message: it wrote no results file, entry or board change.
NOTHING_WRITTEN = "no results or entries written"


class MethodFailed(SweepError, MethodError):
    """A unit failed because its method raised in fit, adapt or predict (``detail``: the traceback)."""


Report = Callable[[Unit, Outcome], None]
#: ``on_step(done, total, desc, unit)``: the running unit's method finished ``done`` of ``total``
#: steps of ``desc``; called with ``(0, 0, "", unit)`` when the unit starts. Every progress callback
#: of latbench takes ``done, total`` first, as ``Method.progress`` does.
Step = Callable[[int, int, str, Unit], None]


def _in_process(units: list[Unit], report: Report, may_start: Callable[[], bool], on_step: Step | None = None) -> None:
    for u in units:
        if not may_start():
            return
        if on_step is None:
            report(u, run_unit(u))
            continue
        on_step(0, 0, "", u)
        with reporting_progress(lambda done, total, desc, u=u: on_step(done, total, desc, u)):
            outcome = run_unit(u)
        report(u, outcome)


def _processes(units: list[Unit], workers: int, report: Report, may_start: Callable[[], bool]) -> None:
    """A pool of spawned processes: no fork of a process that may hold torch/OpenMP threads.

    At most ``workers`` units are in flight; the next one starts only when one finishes and
    ``may_start()`` allows it (a time budget), so a stopped sweep has nothing half-started.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=limit_threads)
    try:
        with _sigterm_raises():
            _drive(pool, units, workers, report, may_start)
    except BaseException:
        # Stopped (SIGTERM, Ctrl-C) or a unit failed: take the workers down now rather than leave
        # them computing units nobody will collect (there is no public API before Python 3.14).
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _sigterm_raises():
    """Within the block SIGTERM raises SystemExit (so cleanup runs) instead of killing the driver outright."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _drive(pool, units: list[Unit], workers: int, report: Report, may_start: Callable[[], bool]) -> None:
    """Keep up to ``workers`` units in flight, in order, and report each as it finishes."""
    from concurrent.futures import FIRST_COMPLETED, wait

    queue, running = list(reversed(units)), {}
    while queue or running:
        while queue and len(running) < workers and may_start():
            u = queue.pop()
            running[pool.submit(run_unit, u, True)] = u
        if not running:
            return
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in done:
            u = running.pop(f)
            try:
                outcome = f.result()
            except Exception as e:  # BrokenProcessPool (a worker died), or the unit could not be pickled
                raise SweepError(
                    f"{u.describe()}: the worker process failed ({type(e).__name__}: {e}); {NOTHING_WRITTEN}"
                ) from None
            report(u, outcome)


def _ray(units: list[Unit], workers: int, address: str, report: Report) -> None:
    """The same ``run_unit`` as Ray tasks (one CPU each); ``address="local"`` starts a private Ray."""
    try:
        import ray
    except ImportError:
        raise SweepError("--ray-address needs Ray, which is not installed: pip install 'latbench[ray]'") from None
    started = False
    if not ray.is_initialized():
        kwargs = {"num_cpus": workers} if address == "local" else {"address": address}
        try:
            ray.init(include_dashboard=False, logging_level="WARNING", **kwargs)
        except Exception as e:
            raise SweepError(f"cannot start or reach Ray at {address!r}: {type(e).__name__}: {e}") from None
        started = True
    pending: dict = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_unit)
        pending = {remote.remote(u, True): u for u in units}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                u = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # the worker died, or the unit could not be shipped
                    raise SweepError(
                        f"{u.describe()}: the Ray task failed ({type(e).__name__}: {str(e).splitlines()[0]}); {NOTHING_WRITTEN}"
                    ) from None
                report(u, outcome)
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()


def execute(
    units: list[Unit],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    checkpoint: Path | None = None,
    time_budget: float | None = None,
    on_progress: Callable[[int, int, float, Unit], None] = lambda done, total, elapsed, unit: None,
    on_resume: Callable[[int, int], None] = lambda loaded, total: None,
    on_step: Step | None = None,
) -> list[Outcome]:
    """Run every unit; outcomes in unit order. Raises SweepError at the first failed unit.

    With ``checkpoint`` (a folder), units already finished there are loaded instead of run, and
    each unit that finishes is saved there at once (``latbench.checkpoints``). With
    ``time_budget`` (seconds, needs ``checkpoint``) no unit starts once the budget is spent; the
    running ones finish and are saved, then SweepStopped says how many remain. ``on_step`` gets the
    progress a method reports inside a unit (in-process only, see the module docstring).
    """
    check_executor(workers, ray_address, PYTHON)  # the CLI checked these in its own terms already
    check_budget(time_budget, checkpoint, ray_address, PYTHON)
    check_units(units)
    if checkpoint is not None and Path(checkpoint).exists() and not Path(checkpoint).is_dir():
        raise SweepError(f"--checkpoint {checkpoint} is not a folder")
    expected_hash = store.info()["content_hash"]
    outcomes: list[Outcome | None] = [None] * len(units)
    if checkpoint is not None:
        outcomes = [checkpoints.load(checkpoint, u) for u in units]
    t0 = time.perf_counter()

    def report(unit: Unit, outcome: Outcome) -> None:
        if outcome.error:
            kept = f"; the finished units are kept in {checkpoint}" if checkpoint is not None else ""
            failed, text = SweepError, outcome.error
            if text.startswith(f"{MethodError.__name__}: "):  # the method raised (see latbench.eval.trials)
                failed, text = MethodFailed, text.partition(": ")[2]
            raise failed(f"{unit.describe()} failed: {text} ({NOTHING_WRITTEN}{kept})", outcome.detail) from outcome.exception
        if outcome.dataset_hash != expected_hash:
            raise SweepError(
                f"{unit.describe()}: worker on {outcome.host} sees dataset {outcome.dataset_hash[:12]}..., "
                f"the driver has {expected_hash[:12]}... (build the same dataset on every node)"
            )
        outcomes[unit.index] = outcome
        if checkpoint is not None:
            checkpoints.save(checkpoint, unit, outcome)
        on_progress(sum(o is not None for o in outcomes), len(units), time.perf_counter() - t0, unit)

    todo = [u for u in units if outcomes[u.index] is None]
    on_resume(len(units) - len(todo), len(units))
    if not todo:
        return outcomes  # type: ignore[return-value]
    deadline = None if time_budget is None else time.monotonic() + time_budget

    def may_start() -> bool:
        return deadline is None or time.monotonic() < deadline

    if ray_address:
        _ray(todo, workers, ray_address, report)
    elif workers == 1:
        _in_process(todo, report, may_start, on_step)
    else:
        _processes(todo, min(workers, len(todo)), report, may_start)
    left = sum(o is None for o in outcomes)
    if left:
        raise SweepStopped(
            f"time budget of {time_budget / 60:g} min spent: {len(units) - left} of {len(units)} units finished "
            f"and kept in {checkpoint}, {left} to go; run the same command again to continue ({NOTHING_WRITTEN})"
        )
    return outcomes  # type: ignore[return-value]


def check_units(units: list[Unit]) -> None:
    """Refuse units that cannot run meaningfully, before any work (see the module docstring)."""
    checked = set()
    for u in units:
        check_modes(u.protocol, u.source_archs, PYTHON)
        if u.label not in checked:
            checked.add(u.label)
            check_params(u.label, u.method)


def check_params(label: str, method) -> None:
    """A numeric hyperparameter whose default is a positive number must be a finite number >= 0."""
    try:
        signature = inspect.signature(type(method).__init__)
    except (TypeError, ValueError):
        return
    try:
        params = method.get_params(deep=False)
    except Exception:  # noqa: BLE001 -- someone's get_params; the run reports it properly
        return
    for name, value in params.items():
        param = signature.parameters.get(name)
        default = None if param is None else param.default
        if not (_is_number(default) and default > 0 and _is_number(value)):
            continue
        if not (math.isfinite(value) and value >= 0):
            raise MethodError(
                f"method {label!r}: parameter {name}={value!r} must be a finite number >= 0 (its default is {default!r})"
            )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
