"""Every registered method passes the contract suite (one test per named check); broken methods fail
the check they break; the registry finds plug-ins by path."""

from __future__ import annotations

import numpy as np
import pytest

from latbench.errors import MethodError
from latbench.eval.checks import CHECKS, check_method, method_checks, parametrize_with_checks
from latbench.methods.base import Method
from latbench.methods.registry import available, make, resolve

REGISTERED = [resolve(name) for name in sorted(available())]


@parametrize_with_checks(REGISTERED)
def test_contract_suite(data, method_cls, check):
    check()


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


def test_module_class_path_and_bad_specs():
    assert resolve("latbench_baselines.flops:FLOPsRegression").name == "flops"
    with pytest.raises(MethodError, match="cannot load"):
        resolve("nosuch.module:Thing")
    with pytest.raises(MethodError, match="not a latbench.Method"):
        resolve("collections:OrderedDict")
    with pytest.raises(MethodError, match="bad parameters"):
        make("flops", nonsense=1)


def test_flops_ranking_equals_flops_ranking(data):
    """The FLOPs baseline's Spearman equals Spearman(FLOPs, latency) on each target device."""
    from scipy.stats import spearmanr

    from latbench.data.store import get_space, load_latency
    from latbench.eval.runner import evaluate
    from latbench.tasks.spec import get_task

    task = get_task("help-nb201")
    res = evaluate(make("flops"), [task], shots=10, trials=1)
    ids = list(task.pools.eval)
    flops = get_space("nb201").flops(ids)
    table = load_latency("nb201")
    for dev, m in res.results[0].trials[0].devices.items():
        assert m["spearman"] == pytest.approx(spearmanr(flops, table.device(dev)[ids]).statistic, abs=1e-9)
