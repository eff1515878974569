"""The top-level names: what `from latbench import ...` gives, to users and to type checkers."""

from __future__ import annotations

import ast
import inspect
import re
import traceback

import numpy as np
import pytest

import latbench
from latbench.errors import ParameterError


def test_every_public_name_resolves_to_an_object_of_that_name():
    assert set(latbench.__all__) == {"__version__", *latbench._API}
    for name, module in latbench._API.items():
        obj = getattr(latbench, name)
        assert obj.__module__ == module and obj.__name__ == name, (name, obj)
        own = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
        assert own and not own.startswith(f"{name}("), f"latbench.{name} has no docstring of its own"


def test_type_checkers_see_the_same_names_as_the_lazy_imports():
    """`if TYPE_CHECKING:` must import each lazy name from its module, or IDEs and mypy see `Any`."""
    tree = ast.parse(inspect.getsource(latbench))
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {alias.name: node.module for node in block.body for alias in node.names}
    assert seen == latbench._API


def test_load_task_finds_a_task_created_since_and_objects_print_short(data, tmp_path, monkeypatch):
    from latbench.tasks.spec import list_tasks

    monkeypatch.setenv("LATBENCH_USER_TASKS", str(tmp_path))
    list_tasks()  # the registry is now cached without the new task
    hard3 = latbench.load_task("hard-3")
    (tmp_path / "mine.yaml").write_text(hard3.model_copy(update={"id": "mine", "kind": "user", "tier": None}).to_yaml())
    assert latbench.load_task("mine").target == hard3.target
    trial = latbench.make_trial(hard3, 0, 10)
    assert len(trial.source.reference_ids) == len(latbench.load_space("nb201").reference_ids) > 0  # as evaluate builds it
    for obj in (hard3, trial, trial.source, *trial.oracles.values()):
        assert len(repr(obj)) < 300 and len(str(obj)) < 300, repr(obj)  # print(task) too
    assert repr(hard3).startswith("TaskSpec(id='hard-3', version=") and "900/1000/2000" in repr(hard3)


class Boom(latbench.Method):
    def fit(self, source, space, seed):
        raise ValueError("my bug")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: latbench.evaluate(type(m), "hard-3"), "method must be an instance, not the class"),
        (lambda m: latbench.evaluate(object(), "hard-3"), "method must be a latbench.Method instance"),
        (lambda m: latbench.evaluate(m, [3]), "tasks must be TaskSpecs or task selectors"),
        (
            lambda m: latbench.evaluate(m, latbench.load_task("hard-3").model_copy(update={"target": ("1080ti_1",)})),
            "task hard-3: Value error, devices both source/valid and target: ['1080ti_1']",
        ),
        (lambda m: latbench.evaluate(m, ["hard-3", latbench.load_task("hard-3")]), "task hard-3 is given more than once"),
        (lambda m: latbench.evaluate(m, "hard-3", shots=10.0), "shots must be an int or a sequence of ints"),
        (lambda m: latbench.evaluate(m, "hard-3", shots=[5, 5]), "shots must be distinct ints >= 0"),
        (
            lambda m: latbench.evaluate(m, "hard-3", shots=5000),
            "k=5000 is larger than the query pool of task hard-3 (1000 archs)",
        ),
        (lambda m: latbench.evaluate(m, "hard-3", trials=0), "trials must be an int >= 1"),
        (lambda m: latbench.evaluate(m, "hard-3", protocol="offical"), "did you mean official"),
        (lambda m: latbench.evaluate(m, "hard-3", time_budget=-1), "time_budget must be > 0 seconds (got -1)"),
        (lambda m: latbench.evaluate(m, "hard-3", time_budget=60), "time_budget needs checkpoint: without it"),
        (lambda m: latbench.evaluate(m, "hard-3", workers=0), "workers must be an int >= 1 (got 0)"),
        (lambda m: latbench.evaluate(m, "hard-3", source_archs="every"), "source_archs must be 'sample' or 'all', got 'every'"),
    ],
)
def test_evaluate_refuses_bad_arguments_before_running_anything(data, call, message):
    with pytest.raises(ParameterError, match=re.escape(message)) as info:
        call(Boom())
    assert isinstance(info.value, ValueError)  # `except ValueError` catches it, as in scikit-learn


def test_evaluate_takes_one_task_a_selector_and_numpy_ints_alike(data):
    from latbench_baselines.flops import FLOPsRegression

    by_spec = latbench.evaluate(FLOPsRegression(), latbench.load_task("hard-3"), shots=np.int64(5), trials=1)
    by_name = latbench.evaluate(FLOPsRegression(), "hard-3", shots=[5], trials=1)
    assert by_spec.results[0].aggregate == by_name.results[0].aggregate and by_spec.results[0].shots == 5
    assert repr(by_spec) == str(by_spec) == "EvalResult(method='flops', tasks=1, shots=[5], trials=1)"


def test_a_methods_exception_stays_reachable_from_the_error_evaluate_raises(data):
    """In-process the traceback is not just text: a debugger can walk the chain to the method's frame."""
    with pytest.raises(latbench.LatbenchError, match="Boom.fit\\(\\) raised ValueError: my bug") as info:
        latbench.evaluate(Boom(), "hard-3", trials=1, shots=5)
    chain, e = [], info.value
    while e is not None:
        chain.append(e)
        e = e.__cause__
    assert type(chain[-1]) is ValueError and str(chain[-1]) == "my bug"
    frames = [frame.f_code for frame, _ in traceback.walk_tb(chain[-1].__traceback__)]
    assert frames[-1] is Boom.fit.__code__  # the frame that raised, for pdb.post_mortem


def test_predict_before_fit_says_so_for_every_registered_method():
    import copy
    import pickle

    from latbench.methods.registry import available

    for name in available():
        m = latbench.make_method(name)
        with pytest.raises(latbench.LatbenchError, match="before|not set") as info:  # not a bare AttributeError/KeyError
            m.predict("pixel3", np.array([1, 2]))
        assert isinstance(info.value, (latbench.NotFittedError, latbench.MethodError)), name
        assert not hasattr(m, "shots_")  # NotFittedError is an AttributeError: hasattr keeps working
        copy.deepcopy(m), pickle.loads(pickle.dumps(m))  # dunder lookups are not learned state
    with pytest.raises(AttributeError, match="no attribute 'nonsense'") as info:
        latbench.make_method("flops").nonsense  # noqa: B018
    assert not isinstance(info.value, latbench.NotFittedError)
