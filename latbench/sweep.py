"""Sweeps: several methods x tasks x trials run in parallel, with the same numbers as serial runs.

Why a module of its own: a board of baselines is hundreds of independent trials, and
``runner.evaluate`` runs them one after another in one process. A sweep cuts the work into units
of (method, task, trial) -- the smallest piece that keeps ``evaluate``'s "fit once per (task,
trial), adapt a deep copy per k" -- and runs them in-process (``workers=1``), in a pool of spawned
processes, or as Ray tasks. Each unit calls ``runner.run_trial`` exactly as ``evaluate`` does and
the results are put back in the fixed (method, task, k, trial) order, so the output does not depend
on the executor, the worker count or the completion order.

Only picklable data crosses process boundaries (the unfitted method, the task spec, the trial
index); every worker loads the dataset itself (cached per process) and checks that it sees the same
dataset hash as the driver. No entry is written until every unit has succeeded; with a checkpoint
folder each finished unit is also saved at once, so a stopped sweep resumes where it stopped
(``latbench.checkpoints``).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

# Only the standard library at import time: a spawned worker imports this module (for its
# initializer) before anything else, and must limit BLAS/OpenMP threads before numpy loads.
from latbench.errors import LatbenchError

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class SweepError(LatbenchError):
    """A sweep could not run or a unit failed; no output was written. ``detail``: the worker's traceback."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class SweepStopped(SweepError):
    """The time budget was spent before every unit ran; the finished ones are in the checkpoint."""


@dataclass(frozen=True)
class Unit:
    """One piece of work, picklable: everything a worker needs and nothing tied to the driver process."""

    index: int  # position in the fixed order (method, task, trial)
    label: str  # the method as the user named it
    method: Any  # the unfitted Method (hyperparameters only; each unit fits its own clone)
    task: Any  # TaskSpec
    trial: int
    shots: tuple[int, ...]
    source_archs: str = "sample"
    protocol: str = "official"
    env: tuple[tuple[str, str], ...] = ()  # LATBENCH_* variables the worker must see

    def describe(self) -> str:
        return f"method {self.label!r} on task {self.task.id} trial {self.trial}"


@dataclass
class Outcome:
    """What a unit sends back: one TrialResult per k (in ``shots`` order), or the error as text."""

    index: int
    trials: list | None
    dataset_hash: str
    seconds: float
    host: str
    error: str = ""
    detail: str = ""


# ------------------------------------------------------------------------------------- workers
_LIMITED = False


def limit_threads() -> None:
    """One BLAS/OpenMP/torch thread per worker: N workers on N cores must not fight over cores.

    Called as the process pool's initializer (before numpy loads, so the environment variables
    take effect) and again at the start of every worker-side unit (Ray workers have numpy loaded
    already; threadpoolctl limits what is loaded, torch is set directly).
    """
    global _LIMITED
    for var in THREAD_ENV:
        os.environ[var] = "1"
    if not _LIMITED and "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - a scikit-learn dependency
            pass
        else:
            threadpool_limits(1)
            _LIMITED = True
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _apply_env(env: tuple[tuple[str, str], ...]) -> None:
    """Point the worker at the driver's dataset (and forget cached data if it pointed elsewhere)."""
    changed = False
    for key, value in env:
        if os.environ.get(key) != value:
            os.environ[key] = value
            changed = True
    if changed:
        from latbench.data import store
        from latbench.tasks import clear_cache

        store.clear_cache()
        clear_cache()


def run_unit(unit: Unit, worker: bool = False) -> Outcome:
    """Fit once on the trial's source data, then adapt and score a deep copy per k.

    The inner loop of ``runner.evaluate`` for one (task, trial), through the same ``run_trial``.
    Never raises for a method's error: the error comes back as text, because arbitrary exception
    objects do not always survive pickling between processes.
    """
    tic = time.perf_counter()
    host = socket.gethostname()
    try:
        if worker:
            limit_threads()
            _apply_env(unit.env)
        from latbench.data import store
        from latbench.runner import run_trial
        from latbench.spaces import get_space

        table = store.load_latency(unit.task.space)
        space = get_space(unit.task.space)
        fitted, trials = None, []
        for k in unit.shots:
            run = run_trial(unit.method, unit.task, unit.trial, k, table, space, unit.source_archs, unit.protocol, fitted=fitted)
            trials.append(run.result)
            fitted = run.fitted
        return Outcome(unit.index, trials, store.info()["content_hash"], time.perf_counter() - tic, host)
    except Exception as e:
        return Outcome(unit.index, None, "", time.perf_counter() - tic, host,
                       error=f"{type(e).__name__}: {e}", detail=traceback.format_exc())


# ----------------------------------------------------------------------------------- executors
Report = Callable[[Unit, Outcome], None]


def _in_process(units: list[Unit], report: Report, may_start: Callable[[], bool]) -> None:
    for u in units:
        if not may_start():
            return
        report(u, run_unit(u))


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
                raise SweepError(f"{u.describe()}: the worker process failed ({type(e).__name__}: {e}); no entries written") from None
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
                    raise SweepError(f"{u.describe()}: the Ray task failed ({type(e).__name__}: {str(e).splitlines()[0]}); "
                                     "no entries written") from None
                report(u, outcome)
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()


def execute(units: list[Unit], *, workers: int = 1, ray_address: str | None = None, checkpoint: Path | None = None,
            time_budget: float | None = None,
            on_progress: Callable[[int, int, float, Unit], None] = lambda done, total, elapsed, unit: None,
            on_resume: Callable[[int, int], None] = lambda loaded, total: None) -> list[Outcome]:
    """Run every unit; outcomes in unit order. Raises SweepError at the first failed unit.

    With ``checkpoint`` (a folder), units already finished there are loaded instead of run, and
    each unit that finishes is saved there at once (``latbench.checkpoints``). With
    ``time_budget`` (seconds, needs ``checkpoint``) no unit starts once the budget is spent; the
    running ones finish and are saved, then SweepStopped says how many remain.
    """
    from latbench import checkpoints
    from latbench.data import store

    check_executor(workers, ray_address)
    check_budget(time_budget, checkpoint, ray_address)
    expected_hash = store.info()["content_hash"]
    outcomes: list[Outcome | None] = [None] * len(units)
    if checkpoint is not None:
        outcomes = [checkpoints.load(checkpoint, u) for u in units]
    t0 = time.perf_counter()

    def report(unit: Unit, outcome: Outcome) -> None:
        if outcome.error:
            kept = f"; the finished units are kept in {checkpoint}" if checkpoint is not None else ""
            raise SweepError(f"{unit.describe()} failed: {outcome.error} (no entries written{kept})", outcome.detail)
        if outcome.dataset_hash != expected_hash:
            raise SweepError(f"{unit.describe()}: worker on {outcome.host} sees dataset {outcome.dataset_hash[:12]}..., "
                             f"the driver has {expected_hash[:12]}... (build the same dataset on every node)")
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
        _in_process(todo, report, may_start)
    else:
        _processes(todo, min(workers, len(todo)), report, may_start)
    left = sum(o is None for o in outcomes)
    if left:
        raise SweepStopped(f"time budget of {time_budget / 60:g} min spent: {len(units) - left} of {len(units)} units finished "
                           f"and kept in {checkpoint}, {left} to go; run the same command again to continue (no entries written)")
    return outcomes  # type: ignore[return-value]


def check_budget(time_budget: float | None, checkpoint: Path | None, ray_address: str | None) -> None:
    """A time budget only makes sense when finished units are kept, and on the local executors."""
    if time_budget is None:
        return
    if not time_budget > 0:
        raise SweepError(f"--time-budget must be > 0 minutes (got {time_budget / 60:g})")
    if checkpoint is None:
        raise SweepError("--time-budget needs --checkpoint DIR: without it the finished units would be lost")
    if ray_address:
        raise SweepError("--time-budget works with local workers only, not with --ray-address")


def check_executor(workers: int, ray_address: str | None) -> None:
    """Refuse impossible executor settings before any data is loaded or any worker started."""
    if workers < 1:
        raise SweepError(f"--workers must be >= 1 (got {workers})")
    if ray_address is not None and not ray_address.strip():
        raise SweepError("--ray-address must be auto, local, or a Ray address such as ray://host:10001")


# ------------------------------------------------------------------------------- plan/assemble
def plan(methods: Sequence[tuple[str, Any]], tasks: list, *, shots: Sequence[int], trials: int, source_archs: str = "sample",
         protocol: str = "official", env: dict[str, str] | None = None) -> list[Unit]:
    """The units, in the fixed order method -> task -> trial."""
    pairs = tuple(sorted((env or {}).items()))
    units = []
    for label, method in methods:
        for task in tasks:
            for t in range(trials):
                units.append(Unit(len(units), label, method, task, t, tuple(shots), source_archs, protocol, pairs))
    return units


def assemble(method, tasks: list, shots: Sequence[int], trials: int, outcomes: dict[tuple[str, int], Outcome], *,
             source_archs: str = "sample", protocol: str = "official"):
    """One method's EvalResult, built as ``runner.evaluate`` builds it (task-major, then k, trials in order).

    ``seconds`` is the sum of the method's unit times: what a serial run costs, whatever the
    parallelism (the sweep's wall time is reported separately).
    """
    from latbench import __version__
    from latbench.data import store
    from latbench.protocol import PROTOCOL_VERSION
    from latbench.results import EvalResult, TaskResult, jsonable_params

    label = f"{protocol}-v{PROTOCOL_VERSION}" + ("" if source_archs == "sample" else f"-source-{source_archs}")
    results = []
    for task in tasks:
        for i, k in enumerate(shots):
            results.append(TaskResult.from_trials(task, k, label, [outcomes[task.id, t].trials[i] for t in range(trials)]))
    info = store.info()
    return EvalResult(
        latbench_version=__version__, dataset_version=info["dataset_version"], dataset_hash=info["content_hash"],
        protocol_version=PROTOCOL_VERSION, method=method.name or type(method).__name__,
        method_params=jsonable_params(method.get_params()), results=results,
        seconds=round(sum(o.seconds for o in outcomes.values()), 3),
    )


def run(methods: Sequence[tuple[str, Any]], tasks: list, *, shots: Sequence[int], trials: int, workers: int = 1,
        ray_address: str | None = None, source_archs: str = "sample", protocol: str = "official", checkpoint: Path | None = None,
        time_budget: float | None = None,
        on_progress: Callable[[int, int, float, Unit], None] = lambda done, total, elapsed, unit: None,
        on_resume: Callable[[int, int], None] = lambda loaded, total: None) -> list:
    """EvalResult per (label, Method) in ``methods``, identical whatever ``workers``/``ray_address``/``checkpoint``."""
    from latbench import paths

    shots = list(shots)
    if not methods:
        raise SweepError("no methods to run")
    if len({label for label, _ in methods}) != len(methods):
        raise SweepError("each method may appear only once in a sweep")
    if not tasks:
        raise SweepError("the task selection is empty")
    if trials < 1 or not shots or min(shots) < 0 or len(set(shots)) != len(shots):
        raise SweepError(f"need distinct shot counts >= 0 and trials >= 1 (got shots {shots}, {trials} trials)")
    remote = ray_address not in (None, "local")
    env = {} if remote else {"LATBENCH_HOME": str(paths.home())}  # a cluster's nodes keep their own home
    units = plan(methods, tasks, shots=shots, trials=trials, source_archs=source_archs, protocol=protocol, env=env)
    outcomes = execute(units, workers=workers, ray_address=ray_address, checkpoint=checkpoint,
                       time_budget=time_budget, on_progress=on_progress, on_resume=on_resume)
    results = []
    for label, method in methods:
        mine = {(u.task.id, u.trial): o for u, o in zip(units, outcomes) if u.label == label}
        results.append(assemble(method, tasks, shots, trials, mine, source_archs=source_archs, protocol=protocol))
    return results


# -------------------------------------------------------------------------------- entries/CLI
def parse_list(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise SweepError(f"{what}: expected a comma-separated list, got {text!r}")
    if len(set(items)) != len(items):
        raise SweepError(f"{what}: {sorted({x for x in items if items.count(x) > 1})[0]!r} is listed twice")
    return items


def parse_shots(text: str) -> list[int]:
    try:
        return [int(x) for x in parse_list(text, "--shots")]
    except ValueError:
        raise SweepError(f"--shots expects comma-separated integers such as 5,10,20, got {text!r}") from None


def select_tasks(selector: str) -> tuple[str, list]:
    """(suite name for the entries, tasks): a suite name (main, literature) or an ``eval --task`` selector."""
    from latbench import leaderboard as lb
    from latbench.tasks import select

    if selector in lb.SUITES:
        return selector, lb.suite_tasks(selector)
    return selector, select(selector)


def file_name(spec: str) -> str:
    """Entry file name for a method spec: ``flops`` -> flops.json, ``pkg.mod:Cls`` -> pkg-mod-cls.json."""
    return (re.sub(r"[^a-z0-9]+", "-", spec.lower()).strip("-") or "method") + ".json"


def code_ref(spec: str) -> str:
    """As ``latbench submit`` records it: the spec itself for module:Class, else the resolved class."""
    from latbench.method import resolve

    cls = resolve(spec)
    return spec if ":" in spec else f"{cls.__module__}:{cls.__name__}"


def make_methods(specs: Sequence[str], params: dict) -> list[tuple[str, Any]]:
    """Resolve and instantiate every method up front, so a typo fails before any work starts."""
    from latbench.method import make

    names = [file_name(s) for s in specs]
    for s, n in zip(specs, names):
        if names.count(n) > 1:
            raise SweepError(f"methods {[x for x, m in zip(specs, names) if m == n]} would share the output file {n}")
    return [(s, make(s, **params)) for s in specs]


def entries(specs: Sequence[str], results: list, *, suite: str, hardware: str) -> list:
    """One leaderboard Entry per method, in the format ``latbench submit`` writes."""
    from latbench import leaderboard as lb

    return [lb.entry_from_result(r, suite=suite, code_ref=code_ref(s), hardware=hardware) for s, r in zip(specs, results)]


def write_entries(specs: Sequence[str], items: list, out: Path) -> list[Path]:
    """Write every entry atomically (complete files only, after all units succeeded)."""
    from latbench.atomic import write_text

    return [write_text(Path(out) / file_name(s), e.model_dump_json(indent=1)) for s, e in zip(specs, items)]


def describe_executor(workers: int, ray_address: str | None) -> str:
    if ray_address == "local":
        return f"local Ray, {workers} CPUs"
    if ray_address:
        return f"Ray cluster at {ray_address}"
    return "in-process" if workers == 1 else f"{workers} worker processes"
