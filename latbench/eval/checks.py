"""``check_method``: the contract every latency predictor must pass (like sklearn's check_estimator).

Third-party authors run it on their class before submitting::

    from latbench.eval.checks import check_method
    check_method(MyPredictor, task="hard-3")
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from latbench.data import store
from latbench.errors import MethodError
from latbench.protocol.scoring import check_predictions
from latbench.methods.base import Method
from latbench.eval.trials import run_trial
from latbench.data.store import get_space
from latbench.tasks.spec import get_task


def check_method(method_cls: type[Method], task: str = "hard-3", shots: int = 5, params: dict | None = None) -> None:
    """Raise MethodError (or AssertionError) at the first broken rule; return None when all pass."""
    if not (isinstance(method_cls, type) and issubclass(method_cls, Method)):
        raise MethodError(f"{method_cls!r} is not a latbench.Method subclass")
    params = params or {}
    spec = get_task(task)
    table = store.load_latency(spec.space)
    space = get_space(spec.space)

    proto = method_cls(**params)
    if proto.get_params() != clone(proto).get_params():
        raise MethodError(f"{method_cls.__name__}: clone() changes the parameters; __init__ must only store its arguments")

    def run():
        result = run_trial(proto, spec, 0, shots, table, space)  # raises on protocol/prediction violations
        one = result.adapted.predict(spec.target[0], result.trial.eval_ids[spec.target[0]][:1])
        check_predictions(one, 1, f"{method_cls.__name__} on a single arch")
        return result.predictions

    first, second = run(), run()
    for dev in first:
        if not np.allclose(first[dev], second[dev], rtol=1e-6, atol=0):
            raise MethodError(f"{method_cls.__name__}: not deterministic: two runs with the same seed differ on {dev}")
