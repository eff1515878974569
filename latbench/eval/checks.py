"""The contract every latency predictor must pass, as named checks (like scikit-learn's estimator checks).

Third-party authors run them on their class before submitting, either all at once::

    from latbench.eval.checks import check_method
    check_method(MyPredictor, task="hard-3")          # MethodError naming the first failing check

or one pytest test per check, with readable ids such as ``MyPredictor-check_deterministic``::

    from latbench.eval.checks import parametrize_with_checks

    @parametrize_with_checks([MyPredictor])
    def test_contract(method_cls, check):
        check()

The checks, in the order ``check_method`` runs them:

- ``check_is_method_subclass``: the class derives from ``latbench.Method``.
- ``check_init_only_stores_params``: ``__init__`` stores its arguments under their own names and
  nothing else (``clone`` keeps the parameters; no learned ``*_`` attributes before ``fit``).
- ``check_fit_returns_self``: ``fit(source, space, seed)`` returns ``self``.
- ``check_respects_budget``: adapting to every target device never measures more than k archs or
  an arch outside the query pool (the oracle raises ``OracleError``; the check runs a trial).
- ``check_adapt_returns_self``: ``adapt(device, oracle)`` returns ``self``.
- ``check_predict_shape_and_positive``: ``predict`` returns one finite latency > 0 per arch id,
  on the whole evaluation set and on a single arch.
- ``check_deterministic``: two trials with the same seed give the same predictions (rtol 1e-6).
- ``check_no_target_truth_access``: the predictions do not change when the target devices'
  latencies (and kernel rows) of every arch the method did *not* measure are changed, so it cannot
  have read them (from the oracle's private state, say). Reading the dataset files directly is not
  detected.

All checks of one (class, params, task, shots) share one observed trial (fit, adapt and predict on
every target device, as :func:`latbench.eval.trials.run_trial` does, recording what each step
returned) plus one second trial on the perturbed latencies, which settles both
``check_deterministic`` and ``check_no_target_truth_access`` when they pass; a third trial runs
only to tell the two apart when the predictions differ. That is the two trials the contract suite
always cost.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np
from sklearn.base import clone

from latbench.data import store
from latbench.data.store import get_space
from latbench.errors import LatbenchError, MethodError, OracleError
from latbench.methods.base import Method
from latbench.paths import data_dir
from latbench.protocol.scoring import check_predictions
from latbench.protocol.trial import make_trial
from latbench.tasks.spec import load_task

#: Relative tolerance of the determinism and truth-access comparisons (as ``leaderboard verify``).
RTOL = 1e-6
#: Sessions (one observed trial and its reruns) kept for the parametrised checks.
_CACHE_SIZE = 4


class _Fail(Exception):
    """A check's verdict: the method breaks the rule (the message says how)."""


# ------------------------------------------------------------------------------------ trials
@dataclasses.dataclass
class _Run:
    """What one trial did, step by step (a failed step stops the steps after it)."""

    trial: object
    fit_is_self: bool = True
    adapted: Method | None = None  # the fitted method after adapting to every target device
    adapt_not_self: list = dataclasses.field(default_factory=list)  # devices whose adapt returned something else
    predictions: dict = dataclasses.field(default_factory=dict)  # device -> checked predictions
    fit_error: BaseException | None = None
    adapt_error: tuple | None = None  # (device, exception)
    predict_errors: dict = dataclasses.field(default_factory=dict)  # device -> exception

    def require(self, step: str) -> None:
        """Raise _Fail when ``step`` ("fit", "adapt" or "predict") did not complete on every device."""
        if self.fit_error is not None:
            e = self.fit_error
            raise _Fail(f"could not run: fit raised {type(e).__name__}: {e}") from e
        if step == "fit":
            return
        if self.adapt_error is not None:
            dev, e = self.adapt_error
            see = " (see check_respects_budget)" if isinstance(e, OracleError) else ""
            raise _Fail(f"could not run: adapt on {dev} raised {type(e).__name__}: {e}{see}") from e
        if step == "adapt":
            return
        for dev, e in self.predict_errors.items():
            raise _Fail(f"could not run: predict on {dev} failed: {_describe(e)} (see check_predict_shape_and_positive)") from e

    @property
    def ok(self) -> bool:
        return self.fit_error is None and self.adapt_error is None and not self.predict_errors


def _describe(e: BaseException) -> str:
    return str(e) if isinstance(e, LatbenchError) else f"{type(e).__name__}: {e}"


def _observe(proto: Method, spec, shots: int, table, space, kernels) -> _Run:
    """Trial 0 of ``spec`` at ``shots``, step by step as ``run_trial`` runs it, recording every step."""
    trial = make_trial(spec, 0, shots, table, reference_ids=space.reference_ids, kernels=kernels)
    run = _Run(trial)
    m = clone(proto)
    try:
        run.fit_is_self = m.fit(trial.source, space, trial.seed) is m
    except Exception as e:  # noqa: BLE001 -- recorded; the checks report it
        run.fit_error = e
        return run
    m = run.adapted = copy.deepcopy(m)  # like run_trial: adapt a copy of the fitted method
    for dev, oracle in trial.oracles.items():
        try:
            if m.adapt(dev, oracle) is not m:
                run.adapt_not_self.append(dev)
        except Exception as e:  # noqa: BLE001
            run.adapt_error = (dev, e)
            return run
        ids = trial.eval_ids[dev]
        try:
            run.predictions[dev] = check_predictions(m.predict(dev, ids.copy()), len(ids), dev)
        except Exception as e:  # noqa: BLE001
            run.predict_errors[dev] = e
    return run


def _first_difference(a: dict, b: dict) -> str | None:
    """The first device whose predictions differ between two runs (None when all agree within RTOL)."""
    for dev in a:
        if dev not in b or a[dev].shape != b[dev].shape or not np.allclose(a[dev], b[dev], rtol=RTOL, atol=0):
            return dev
    return None


def _perturb(table, kernels: dict, spec, run: _Run, seed: int = 0):
    """Copies of ``table`` and ``kernels`` where every target device's latency of every arch it did
    not measure in ``run`` is multiplied by a random factor in [0.5, 2]; everything else unchanged."""
    rng = np.random.default_rng(seed)
    values = table.values.copy()
    kernels = dict(kernels)
    protected = set(spec.source) | set(spec.valid)
    for dev in spec.target:
        if dev in protected:
            continue
        measured = np.fromiter(run.trial.oracles[dev].measured, dtype=np.int64)
        factor = rng.uniform(0.5, 2.0, values.shape[1])
        factor[measured] = 1.0
        values[table.devices.index(dev)] *= factor
        if dev in kernels:
            rows = kernels[dev].copy()
            rows["latency_ms"] = rows["latency_ms"] * factor[rows["arch_id"].to_numpy()]
            kernels[dev] = rows
    return dataclasses.replace(table, values=values), kernels


class _Session:
    """Everything the checks of one (class, params, task, shots) share, computed on first use."""

    def __init__(self, method_cls, params: dict | None, task: str, shots: int):
        self.method_cls, self.params, self.task, self.shots = method_cls, dict(params or {}), task, shots
        self._proto = self._data = self._base = self._perturbed = self._rerun = None

    @property
    def label(self) -> str:
        return getattr(self.method_cls, "__name__", repr(self.method_cls))

    def proto(self) -> Method:
        if self._proto is None:
            _check_is_method_subclass(self)
            try:
                self._proto = self.method_cls(**self.params)
            except TypeError as e:
                raise _Fail(f"bad parameters {self.params}: {e}") from None
        return self._proto

    def data(self):
        if self._data is None:
            spec = load_task(self.task)
            self._data = (spec, store.load_latency(spec.space), get_space(spec.space), store.load_kernels(spec.space))
        return self._data

    def base(self) -> _Run:
        """The shared observed trial."""
        if self._base is None:
            spec, table, space, kernels = self.data()
            self._base = _observe(self.proto(), spec, self.shots, table, space, kernels)
        return self._base

    def perturbed(self) -> _Run:
        """A second trial on the latencies perturbed outside what the base trial measured."""
        if self._perturbed is None:
            base = self.base()
            base.require("predict")
            spec, table, space, kernels = self.data()
            table2, kernels2 = _perturb(table, kernels, spec, base)
            self._perturbed = _observe(self.proto(), spec, self.shots, table2, space, kernels2)
        return self._perturbed

    def rerun(self) -> _Run:
        """A second trial on the real latencies (only when the perturbed one differs)."""
        if self._rerun is None:
            spec, table, space, kernels = self.data()
            self._rerun = _observe(self.proto(), spec, self.shots, table, space, kernels)
        return self._rerun


_SESSIONS: collections.OrderedDict = collections.OrderedDict()


def _session(method_cls, params: dict | None, task: str, shots: int) -> _Session:
    """The cached session of this (class, params, task, shots) on the current dataset."""
    stamp = data_dir() / "latbench.json"
    data_key = (str(stamp), stamp.stat().st_mtime_ns if stamp.is_file() else None)
    key = (method_cls, repr(sorted((params or {}).items())), task, shots, data_key)
    try:
        session = _SESSIONS.pop(key)
    except (KeyError, TypeError):  # TypeError: an unhashable "class"; don't cache it
        session = _Session(method_cls, params, task, shots)
    try:
        _SESSIONS[key] = session
    except TypeError:
        return session
    while len(_SESSIONS) > _CACHE_SIZE:
        _SESSIONS.popitem(last=False)
    return session


# ------------------------------------------------------------------------------------ checks
def _check_is_method_subclass(s: _Session) -> None:
    cls = s.method_cls
    if isinstance(cls, Method):
        raise _Fail(f"pass the class, not an instance: check_method({type(cls).__name__}, params={{...}})")
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise _Fail(f"{cls!r} is not a latbench.Method subclass")


def _same_params(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not np.array_equal(np.asarray(x), np.asarray(y)):
                return False
        elif x is not y and x != y:
            return False
    return True


def _check_init_only_stores_params(s: _Session) -> None:
    proto = s.proto()
    try:
        params = proto.get_params()
    except AttributeError as e:
        raise _Fail(f"get_params() failed ({e}); __init__ must store every argument under its own name") from None
    try:
        cloned = clone(proto)
    except RuntimeError as e:  # sklearn: the constructor modified or did not set a parameter
        raise _Fail(f"clone() failed ({e}); __init__ must only store its arguments") from None
    if not _same_params(params, cloned.get_params()):
        raise _Fail("clone() changes the parameters; __init__ must only store its arguments")
    learned = sorted(a for a in vars(proto) if a.endswith("_") and not a.startswith("_"))
    if learned:
        raise _Fail(f"__init__ sets learned attribute(s) {', '.join(learned)}; set state ending in '_' in fit or adapt")


def _check_fit_returns_self(s: _Session) -> None:
    run = s.base()
    run.require("fit")
    if not run.fit_is_self:
        raise _Fail("fit must return self")


def _check_respects_budget(s: _Session) -> None:
    run = s.base()
    run.require("fit")
    if run.adapt_error is not None and isinstance(run.adapt_error[1], OracleError):
        raise _Fail(f"broke the few-shot protocol while adapting: {run.adapt_error[1]}") from run.adapt_error[1]
    for dev, e in run.predict_errors.items():
        if isinstance(e, OracleError):
            raise _Fail(f"broke the few-shot protocol while predicting on {dev}: {e}") from e
    run.require("adapt")
    for dev, oracle in run.trial.oracles.items():  # the oracle enforces both; checked here all the same
        measured = set(oracle.measured)
        if len(measured) > oracle.budget:
            raise _Fail(f"{dev}: measured {len(measured)} archs, over the budget of k={oracle.budget}")
        outside = sorted(measured - set(oracle.pool.tolist()))
        if outside:
            raise _Fail(f"{dev}: measured arch {outside[0]}, which is not in the query pool")


def _check_adapt_returns_self(s: _Session) -> None:
    run = s.base()
    run.require("adapt")
    if run.adapt_not_self:
        raise _Fail(f"adapt must return self (it did not on {run.adapt_not_self[0]})")


def _check_predict_shape_and_positive(s: _Session) -> None:
    run = s.base()
    run.require("adapt")
    for dev, e in run.predict_errors.items():
        raise _Fail(str(e) if isinstance(e, MethodError) else f"predict on {dev} raised {_describe(e)}") from e
    dev = next(iter(run.trial.oracles), None)
    if dev is not None:
        one = run.trial.eval_ids[dev][:1]
        try:
            pred = run.adapted.predict(dev, one.copy())
        except Exception as e:  # noqa: BLE001
            raise _Fail(f"predict on {dev}, a single arch, raised {_describe(e)}") from e
        check_predictions(pred, 1, f"{dev}, a single arch")


def _check_deterministic(s: _Session) -> None:
    base = s.base()
    base.require("predict")
    perturbed = s.perturbed()
    if perturbed.ok and _first_difference(base.predictions, perturbed.predictions) is None:
        return  # same predictions even on perturbed unmeasured latencies: deterministic
    rerun = s.rerun()
    rerun.require("predict")
    dev = _first_difference(base.predictions, rerun.predictions)
    if dev is not None:
        raise _Fail(f"not deterministic: two runs with the same seed differ on {dev}")


def _check_no_target_truth_access(s: _Session) -> None:
    base = s.base()
    base.require("predict")
    perturbed = s.perturbed()
    if perturbed.ok and _first_difference(base.predictions, perturbed.predictions) is None:
        return
    rerun = s.rerun()
    if not rerun.ok or _first_difference(base.predictions, rerun.predictions) is not None:
        raise _Fail("cannot tell: two runs with the same seed differ (see check_deterministic)")
    if not perturbed.ok:
        e = perturbed.fit_error or (perturbed.adapt_error or (None, None))[1] or next(iter(perturbed.predict_errors.values()))
        raise _Fail(f"the trial fails when only latencies of archs the method never measured change: {_describe(e)}") from e
    dev = _first_difference(base.predictions, perturbed.predictions)
    raise _Fail(
        f"predictions on {dev} change when only latencies of archs the method never measured change: "
        "it reads target-device latencies beyond its k measurements (e.g. the oracle's private state)"
    )


#: name -> check, in the order check_method runs them.
CHECKS = {
    "check_is_method_subclass": _check_is_method_subclass,
    "check_init_only_stores_params": _check_init_only_stores_params,
    "check_fit_returns_self": _check_fit_returns_self,
    "check_respects_budget": _check_respects_budget,
    "check_adapt_returns_self": _check_adapt_returns_self,
    "check_predict_shape_and_positive": _check_predict_shape_and_positive,
    "check_deterministic": _check_deterministic,
    "check_no_target_truth_access": _check_no_target_truth_access,
}


class MethodCheck:
    """One named check bound to a method class and its settings; call it to run it.

    Raises :class:`MethodError` ``"<Class> fails <check>: <what is wrong>"``; returns None when the
    method passes. Checks of the same (class, params, task, shots) share their trials.
    """

    def __init__(
        self,
        name: str,
        method_cls,
        params: dict | None = None,
        task: str = "hard-3",
        shots: int = 5,
        session: _Session | None = None,
    ):
        if name not in CHECKS:
            raise ValueError(f"unknown check {name!r}; choose from {', '.join(CHECKS)}")
        self.name, self.method_cls, self.params, self.task, self.shots = name, method_cls, params, task, shots
        self._session = session

    def __call__(self) -> None:
        s = self._session or _session(self.method_cls, self.params, self.task, self.shots)
        try:
            CHECKS[self.name](s)
        except Exception as e:  # noqa: BLE001 -- a verdict (_Fail) or a crash inside the method
            detail = str(e) if isinstance(e, _Fail) else _describe(e)
            raise MethodError(f"{s.label} fails {self.name}: {detail}") from (e.__cause__ if isinstance(e, _Fail) else e)

    def __repr__(self) -> str:
        return f"{getattr(self.method_cls, '__name__', repr(self.method_cls))}-{self.name}"


def _params_or_check_params(method_cls, params: dict | None) -> dict:
    """``params`` when given, else the class's ``check_params``: the checks exercise the contract,
    not the method's quality, so by default they run at the method's declared cheap settings."""
    return dict(params) if params is not None else dict(getattr(method_cls, "check_params", {}) or {})


def method_checks(
    method_cls, *, params: dict | None = None, task: str = "hard-3", shots: int = 5
) -> Iterator[tuple[str, MethodCheck]]:
    """(check name, zero-argument callable) for every check, in order; ``params`` are the method's
    hyperparameters (None: its ``check_params``). Data is read when a check runs, not here."""
    params = _params_or_check_params(method_cls, params)
    for name in CHECKS:
        yield name, MethodCheck(name, method_cls, params, task, shots)


def check_method(method_cls: type[Method], *, params: dict | None = None, task: str = "hard-3", shots: int = 5) -> None:
    """Run every check in order; raise MethodError naming the first failing check, return None when all pass.

    ``params`` are the hyperparameters to check under (None: the class's ``check_params``). Uses fresh
    trials (not the cache the parametrised checks share), so it always sees the class as it is now.
    """
    params = _params_or_check_params(method_cls, params)
    load_task(task)  # a TaskError of its own: a mistyped task is not the method's failure
    session = _Session(method_cls, params, task, shots)
    for name in CHECKS:
        MethodCheck(name, method_cls, params, task, shots, session=session)()


def parametrize_with_checks(
    classes: Iterable[type], params_by_class: dict | None = None, *, task: str = "hard-3", shots: int = 5
):
    """A ``pytest.mark.parametrize("method_cls, check", ...)`` over every check of every class.

    Ids read ``<Class>-<check>`` (e.g. ``FLOPsRegression-check_deterministic``). A class runs with
    ``params_by_class[cls]`` when given, else with its ``check_params`` (the cheap settings a
    method declares for the contract suite). The test calls ``check()``; it needs the dataset
    (``latbench data build``)::

        @parametrize_with_checks([MyPredictor])
        def test_contract(method_cls, check):
            check()
    """
    import pytest  # local: only test suites need pytest

    params_by_class = params_by_class or {}
    cases = []
    for cls in classes:
        for _, check in method_checks(cls, params=params_by_class.get(cls), task=task, shots=shots):
            cases.append(pytest.param(cls, check, id=repr(check)))
    return pytest.mark.parametrize("method_cls, check", cases)
