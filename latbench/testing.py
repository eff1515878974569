"""``check_method``: the contract every latency predictor must pass (like sklearn's check_estimator).

Third-party authors run it on their class before submitting::

    from latbench.testing import check_method
    check_method(MyPredictor, task="hard-3")
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from latbench.data import store
from latbench.errors import MethodError
from latbench.evaluator import check_predictions
from latbench.method import Method
from latbench.protocol import make_trial
from latbench.spaces import get_space
from latbench.tasks import get_task


def check_method(method_cls: type[Method], task: str = "hard-3", shots: int = 5, params: dict | None = None) -> None:
    """Raise MethodError (or AssertionError) at the first broken rule; return None when all pass."""
    if not (isinstance(method_cls, type) and issubclass(method_cls, Method)):
        raise MethodError(f"{method_cls!r} is not a latbench.method.Method subclass")
    params = params or {}
    spec = get_task(task)
    table = store.load_latency(spec.space)
    space = get_space(spec.space)

    proto = method_cls(**params)
    if proto.get_params() != clone(proto).get_params():
        raise MethodError(f"{method_cls.__name__}: clone() changes the parameters; __init__ must only store its arguments")

    def run(trial_index: int) -> dict[str, np.ndarray]:
        trial = make_trial(spec, trial_index, shots, table, reference_ids=space.reference_ids)
        m = clone(proto)
        if m.fit(trial.source, space, trial.seed) is not m:
            raise MethodError(f"{method_cls.__name__}.fit must return self")
        preds = {}
        for dev, oracle in trial.oracles.items():
            if m.adapt(dev, oracle) is not m:  # the oracle itself refuses over-budget/out-of-pool archs
                raise MethodError(f"{method_cls.__name__}.adapt must return self")
            if len(oracle.measured) > shots:
                raise MethodError(f"{method_cls.__name__}: measured {len(oracle.measured)} archs with k={shots}")
            ids = trial.eval_ids[dev]
            preds[dev] = check_predictions(m.predict(dev, ids.copy()), len(ids), f"{method_cls.__name__} on {dev}")
        one = m.predict(spec.target[0], trial.eval_ids[spec.target[0]][:1])
        check_predictions(one, 1, f"{method_cls.__name__} on a single arch")
        return preds

    first, second = run(0), run(0)
    for dev in first:
        if not np.allclose(first[dev], second[dev], rtol=1e-6, atol=0):
            raise MethodError(f"{method_cls.__name__}: not deterministic: two runs with the same seed differ on {dev}")
