"""Every registered method passes the contract suite (one test per named check); broken methods fail
the check they break; the registry finds plug-ins by path."""

from __future__ import annotations

import numpy as np
import pytest

from latbench.errors import MethodError, NotFittedError, TaskError
from latbench.eval.checks import CHECKS, _session, check_method, method_checks, parametrize_with_checks
from latbench.methods.base import Method
from latbench.methods.registry import available, make_method, resolve

REGISTERED = [resolve(name) for name in sorted(available())]


@parametrize_with_checks(REGISTERED)
def test_contract_suite(data, method_cls, check):
    check()
    if check.name == "check_predict_shape_and_positive":
        # While this check's trial is cached: a device adapt never saw is named, not a bare KeyError
        # (the base class wraps every subclass's predict; not a contract check, since a
        # device-agnostic plug-in may legitimately predict for any device).
        adapted = _session(method_cls, check.params, check.task, check.shots).base().adapted
        ids = np.arange(3)
        with pytest.raises(NotFittedError, match="predict: device 'no-such-device' was never adapted; call adapt"):
            adapted.predict("no-such-device", ids)


class PerDeviceScale(Method):
    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        self.scale_ = {**getattr(self, "scale_", {}), device: float(np.mean(self.shots_[device][1]))}
        return self

    def predict(self, device, arch_ids):
        return self.scale_[device] * np.ones(len(arch_ids))


class SubclassCallsSuper(PerDeviceScale):
    def predict(self, device, arch_ids):
        return super().predict(device, arch_ids) * 2


def test_predict_for_a_device_never_adapted_names_it_in_a_plugin_too():
    m = PerDeviceScale()
    m.remember_shots("pixel2", [1, 2], [3.0, 5.0])
    m.scale_ = {"pixel2": 4.0}
    assert m.predict("pixel2", np.arange(2)).tolist() == [4.0, 4.0]
    with pytest.raises(NotFittedError, match=r"PerDeviceScale.predict: device 'eyeriss' .*\(adapted so far: pixel2\)") as info:
        m.predict("eyeriss", np.arange(2))
    assert isinstance(info.value, AttributeError) and info.value.__cause__ is None
    s = SubclassCallsSuper()
    s.scale_ = {"pixel2": 4.0}
    assert s.predict("pixel2", np.arange(1)).tolist() == [8.0]
    with pytest.raises(NotFittedError, match=r"SubclassCallsSuper.predict: .*\(adapted so far: none\)"):
        s.predict("eyeriss", np.arange(1))


def test_a_key_error_of_another_key_or_of_an_adapted_device_is_left_alone():
    class OwnBug(Method):
        def predict(self, device, arch_ids):
            return {}["typo"]

    with pytest.raises(KeyError, match="typo"):
        OwnBug().predict("pixel2", np.arange(1))

    class ForgetsItsState(Method):  # adapt ran (shots kept) but stored nothing: not "never adapted"
        def predict(self, device, arch_ids):
            return {}[device]

    m = ForgetsItsState()
    m.remember_shots("pixel2", [1], [2.0])
    with pytest.raises(KeyError, match="pixel2") as info:
        m.predict("pixel2", np.arange(1))
    assert not isinstance(info.value, NotFittedError)


# ------------------------------------------------------------------- broken methods fail by name
class Noisy(Method):
    def predict(self, device, arch_ids):
        return np.random.default_rng().uniform(1, 2, len(arch_ids))


class NegativePredictions(Method):
    def predict(self, device, arch_ids):
        return -np.ones(len(arch_ids))


class FitReturnsNone(Method):
    def fit(self, source, space, seed):
        super().fit(source, space, seed)

    def predict(self, device, arch_ids):
        return np.ones(len(arch_ids))


class AdaptReturnsNone(Method):
    def adapt(self, device, oracle):
        super().adapt(device, oracle)

    def predict(self, device, arch_ids):
        return np.ones(len(arch_ids))


class OverBudget(Method):
    def adapt(self, device, oracle):
        self.remember_shots(device, oracle.pool[: oracle.budget + 1], oracle.measure(oracle.pool[: oracle.budget + 1]))
        return self

    def predict(self, device, arch_ids):
        return np.ones(len(arch_ids))


class PeeksAtTruth(Method):
    """Measures its k shots honestly, then scales by the oracle's private latencies of the whole
    query pool (beyond the k it may measure)."""

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        self.scale_ = {**getattr(self, "scale_", {}), device: float(np.mean(list(oracle._pool_latency.values())))}
        return self

    def predict(self, device, arch_ids):
        return self.scale_[device] * self.space_.flops(arch_ids)


class ScalarForOneArch(Method):
    def predict(self, device, arch_ids):
        return np.ones(len(arch_ids)) if len(arch_ids) > 1 else 1.0


class SetsStateInInit(Method):
    def __init__(self, alpha=1.0):
        self.alpha = alpha
        self.coef_ = {}

    def predict(self, device, arch_ids):
        return np.ones(len(arch_ids))


class ValidOnlyAtCheckParams(Method):
    """Its defaults predict negative latencies; its declared check_params do not."""

    check_params = {"scale": 2.0}

    def __init__(self, scale=-1.0):
        self.scale = scale

    def predict(self, device, arch_ids):
        return self.scale * (1.0 + self.space_.flops(arch_ids))


def test_check_method_runs_at_check_params_unless_given_params(data):
    check_method(ValidOnlyAtCheckParams)  # scale=2.0 from check_params
    for _, check in method_checks(ValidOnlyAtCheckParams):
        check()
    with pytest.raises(MethodError, match="fails check_predict_shape_and_positive: "):
        check_method(ValidOnlyAtCheckParams, params={})  # explicit params win: the defaults


def test_check_method_catches_a_nondeterministic_method(data):
    with pytest.raises(MethodError, match="check_deterministic: not deterministic"):
        check_method(Noisy)


@pytest.mark.parametrize(
    "cls, failing",
    [
        (NegativePredictions, "check_predict_shape_and_positive"),
        (ScalarForOneArch, "check_predict_shape_and_positive"),
        (FitReturnsNone, "check_fit_returns_self"),
        (AdaptReturnsNone, "check_adapt_returns_self"),
        (OverBudget, "check_respects_budget"),
        (PeeksAtTruth, "check_no_target_truth_access"),
        (SetsStateInInit, "check_init_only_stores_params"),
    ],
)
def test_a_broken_method_fails_the_check_it_breaks(data, cls, failing):
    with pytest.raises(MethodError, match=f"^{cls.__name__} fails {failing}: "):
        check_method(cls)
    # run one by one (as the parametrised suite does), exactly that check fails
    failed = []
    for name, check in method_checks(cls):
        try:
            check()
        except MethodError as e:
            assert f"fails {name}:" in str(e)
            failed.append(name)
    assert failed[0] == failing, failed
    if cls in (FitReturnsNone, AdaptReturnsNone, ScalarForOneArch, SetsStateInInit, PeeksAtTruth):  # the rest still works
        assert failed == [failing]


def test_error_messages_name_the_problem(data):
    with pytest.raises(MethodError, match="eyeriss: predict returned 2000 non-positive latencies"):
        dict(method_checks(NegativePredictions))["check_predict_shape_and_positive"]()
    with pytest.raises(MethodError, match="would exceed the budget of k=5"):
        dict(method_checks(OverBudget))["check_respects_budget"]()
    with pytest.raises(MethodError, match="fit must return self"):
        dict(method_checks(FitReturnsNone))["check_fit_returns_self"]()
    with pytest.raises(MethodError, match=r"a single arch: predict returned shape \(\), expected \(1,\)"):
        dict(method_checks(ScalarForOneArch))["check_predict_shape_and_positive"]()
    with pytest.raises(MethodError, match="not a latbench.Method"):
        check_method(dict)
    with pytest.raises(MethodError, match="check_init_only_stores_params: bad parameters"):
        check_method(Noisy, params={"nonsense": 1})
    with pytest.raises(MethodError, match="pass the class, not an instance: check_method\\(Noisy"):
        check_method(Noisy())
    with pytest.raises(TaskError, match="unknown task 'hard-33'") as info:
        check_method(Noisy, task="hard-33")  # the task's fault, not the method's
    assert not isinstance(info.value, MethodError)
    with pytest.raises(TypeError, match="positional"):  # params, task and shots are keyword-only in all three
        check_method(Noisy, "hard-3")
    with pytest.raises(TypeError, match="positional"):
        next(method_checks(Noisy, {}))


def test_parametrize_with_checks_ids_and_params():
    from latbench_baselines.flops import FLOPsRegression
    from latbench_baselines.help import HELP

    mark = parametrize_with_checks([FLOPsRegression, HELP], params_by_class={HELP: {"num_episodes": 3}})
    argnames, cases = mark.args
    assert argnames == "method_cls, check"
    ids = [c.id for c in cases]
    assert len(ids) == 2 * len(CHECKS) and len(set(ids)) == len(ids)
    assert "FLOPsRegression-check_deterministic" in ids and "HELP-check_respects_budget" in ids
    checks = {c.id: c.values[1] for c in cases}
    assert checks["HELP-check_fit_returns_self"].params == {"num_episodes": 3}
    assert checks["FLOPsRegression-check_fit_returns_self"].params == FLOPsRegression.check_params


def test_code_version_names_the_installed_distribution():
    from importlib.metadata import version

    from latbench.methods.registry import code_version

    assert code_version("latbench_baselines.flops:FLOPsRegression") == f"latbench {version('latbench')}"
    assert code_version("sklearn.linear_model:Lasso") == f"scikit-learn {version('scikit-learn')}"
    assert code_version("examples.my_predictor:ParamsRegression") == "unversioned"  # a folder, no distribution


def test_module_class_path_and_bad_specs():
    assert resolve("latbench_baselines.flops:FLOPsRegression").name == "flops"
    with pytest.raises(MethodError, match="cannot load"):
        resolve("nosuch.module:Thing")
    with pytest.raises(MethodError, match="not a latbench.Method"):
        resolve("collections:OrderedDict")
    with pytest.raises(MethodError, match="bad parameters"):
        make_method("flops", nonsense=1)


def test_methods_lists_the_rest_when_a_plugin_is_broken_and_names_a_clash(monkeypatch):
    from clirun import run_cli

    from latbench.methods import registry

    rows = registry._registered() + (
        ("broken", "nosuch_plugin.mod:Thing", "nosuch-plugin"),
        ("flops", "other_plugin:Flops", "other-plugin"),
    )
    monkeypatch.setattr(registry, "_registered", lambda: rows)
    out = run_cli("methods", env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.stderr
    assert "latbench_baselines.flops:FLOPsRegression" in out.stdout and "latref" in out.stdout
    assert "warning: not listed: cannot load method 'broken'" in out.stderr
    assert "other-plugin registers 'flops' = 'other_plugin:Flops', but that name is taken" in out.stderr
    assert registry.shadowed() == [("flops", "other_plugin:Flops", "other-plugin")]


def test_flops_ranking_equals_flops_ranking(data):
    """The FLOPs baseline's Spearman equals Spearman(FLOPs, latency) on each target device."""
    from scipy.stats import spearmanr

    from latbench.data.store import get_space, load_latency
    from latbench.eval.runner import evaluate
    from latbench.tasks.spec import load_task

    task = load_task("help-nb201")
    res = evaluate(make_method("flops"), [task], shots=10, trials=1)
    ids = list(task.pools.eval)
    flops = get_space("nb201").flops(ids)
    table = load_latency("nb201")
    for dev, m in res.results[0].trials[0].devices.items():
        assert m["spearman"] == pytest.approx(spearmanr(flops, table.device(dev)[ids]).statistic, abs=1e-9)


# ---- progress inside a unit (Method.progress) ---------------------------------------------------
class Counting(Method):
    """Reports 3 steps of a source training and 2 per target device."""

    name = "counting"

    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        for i in range(3):
            self.progress(i + 1, 3, "source epoch")
        return self

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        for i in range(2):
            self.progress(i + 1, 2, f"fine-tuning on {device}")
        return self

    def predict(self, device, arch_ids):
        return np.asarray(self.space_.flops(arch_ids), dtype=np.float64) + 1.0


def test_progress_is_a_no_op_unless_someone_listens():
    from latbench.methods.base import reporting_progress

    m, seen, inner = Counting(), [], []
    m.progress(1, 2, "nobody listens")  # no error, nothing recorded
    with reporting_progress(lambda *a: seen.append(a)):
        m.progress(1, 4, "outer")
        with reporting_progress(lambda *a: inner.append(a)):
            m.progress(2.0, 4, "inner")
        m.progress(3, 4, "outer")
    m.progress(4, 4, "after")
    assert seen == [(1, 4, "outer"), (3, 4, "outer")]
    assert inner == [(2, 4, "inner")] and all(isinstance(v, int) for v in inner[0][:2])


def test_in_process_runs_pass_a_methods_steps_on_and_keep_the_results(data):
    from latbench.eval.runner import evaluate
    from latbench.tasks.spec import load_task

    task = load_task("hard-3")
    steps = []
    with_steps = evaluate(Counting(), [task], shots=[5, 10], trials=2, on_step=lambda *a: steps.append((a[3].trial, *a[:3])))
    plain = evaluate(Counting(), [task], shots=[5, 10], trials=2)
    assert [t.devices for r in with_steps.results for t in r.trials] == [t.devices for r in plain.results for t in r.trials]
    targets = list(task.target)
    per_unit = (
        [(0, 0, "")]
        + [(i, 3, "source epoch") for i in (1, 2, 3)]
        + [(i, 2, f"fine-tuning on {d}") for _k in (5, 10) for d in targets for i in (1, 2)]
    )
    assert steps == [(t, *s) for t in (0, 1) for s in per_unit]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, fit_desc, adapt_desc",
    [
        ("help", "meta-training episode", None),
        ("brp-nas", "pre-training epoch", "fine-tuning on {}"),
        ("nasflat", "source training: batch", "fine-tuning on {}: batch"),
        ("mlp-finetune", "source training: batch", None),
        ("mlp-hwparams", "source training: batch", None),
        ("opwise-mlp", "source device models", None),
    ],
)
def test_learned_baselines_report_their_training_steps(data, name, fit_desc, adapt_desc):
    from latbench.data import store
    from latbench.methods.base import reporting_progress
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task("hard-3")
    space = store.get_space(spec.space)
    trial = make_trial(spec, 0, 10, store.load_latency(spec.space), reference_ids=space.reference_ids)
    cls = resolve(name)
    m, seen, dev = cls(**cls.check_params), [], spec.target[0]
    with reporting_progress(lambda *a: seen.append(a)):
        m.fit(trial.source, space, trial.seed)
        n_fit = len(seen)
        m.adapt(dev, trial.oracles[dev])
    fit = seen[:n_fit]
    assert fit and {desc for _, _, desc in fit} == {fit_desc}, set(fit)
    done = [d for d, _, _ in fit]
    assert done == sorted(done) and 0 <= done[0] and done[-1] == fit[-1][1] > 0  # climbs to its total
    adapt = seen[n_fit:]
    if adapt_desc is None:
        assert adapt == []
    else:
        assert adapt and {desc for _, _, desc in adapt} == {adapt_desc.format(dev)} and adapt[-1][0] == adapt[-1][1]
