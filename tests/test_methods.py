"""Every registered method passes the contract suite; the registry finds plug-ins by path."""

from __future__ import annotations

import pytest

from latbench.errors import MethodError
from latbench.methods.registry import available, make, resolve
from latbench.eval.checks import check_method


@pytest.mark.parametrize("name", sorted(available()))
def test_contract_suite(data, name):
    cls = resolve(name)
    check_method(cls, task="hard-3", shots=5, params=cls.check_params)


def test_check_method_catches_a_nondeterministic_method(data):
    import numpy as np

    from latbench.methods.base import Method

    class Noisy(Method):
        def predict(self, device, arch_ids):
            return np.random.default_rng().uniform(1, 2, len(arch_ids))

    with pytest.raises(MethodError, match="not deterministic"):
        check_method(Noisy)


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

    from latbench.data.store import load_latency
    from latbench.eval.runner import evaluate
    from latbench.data.store import get_space
    from latbench.tasks.spec import get_task

    task = get_task("help-nb201")
    res = evaluate(make("flops"), [task], shots=10, trials=1)
    ids = list(task.pools.eval)
    flops = get_space("nb201").flops(ids)
    table = load_latency("nb201")
    for dev, m in res.results[0].trials[0].devices.items():
        assert m["spearman"] == pytest.approx(spearmanr(flops, table.device(dev)[ids]).statistic, abs=1e-9)
