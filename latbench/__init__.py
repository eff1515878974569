"""latbench: few-shot latency prediction on unseen hardware -- data, tasks, baselines, leaderboard.

The public API for method authors is re-exported here::

    from latbench import Method, evaluate, load_task, check_method
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("latbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: public name -> module that defines it; imported on first use (PEP 562) so that `import latbench`
#: stays cheap for the CLI and for worker processes.
_API = {
    "Method": "latbench.methods.base",
    "make_method": "latbench.methods.registry",
    "SourceData": "latbench.protocol.trial",
    "Oracle": "latbench.protocol.trial",
    "Trial": "latbench.protocol.trial",
    "make_trial": "latbench.protocol.trial",
    "TaskSpec": "latbench.tasks.spec",
    "load_task": "latbench.tasks.spec",
    "list_tasks": "latbench.tasks.spec",
    "SearchSpace": "latbench.spaces.base",
    "load_space": "latbench.data.store",
    "evaluate": "latbench.eval.runner",
    "EvalResult": "latbench.eval.results",
    "check_method": "latbench.eval.checks",
    "parametrize_with_checks": "latbench.eval.checks",
    "data_dir": "latbench.paths",
    "LatbenchError": "latbench.errors",
    "DataError": "latbench.errors",
    "TaskError": "latbench.errors",
    "OracleError": "latbench.errors",
    "MethodError": "latbench.errors",
    "ParameterError": "latbench.errors",
    "NotFittedError": "latbench.errors",
    "UnknownArchError": "latbench.errors",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from latbench.data.store import load_space
    from latbench.errors import (
        DataError,
        LatbenchError,
        MethodError,
        NotFittedError,
        OracleError,
        ParameterError,
        TaskError,
        UnknownArchError,
    )
    from latbench.eval.checks import check_method, parametrize_with_checks
    from latbench.eval.results import EvalResult
    from latbench.eval.runner import evaluate
    from latbench.methods.base import Method
    from latbench.methods.registry import make_method
    from latbench.paths import data_dir
    from latbench.protocol.trial import Oracle, SourceData, Trial, make_trial
    from latbench.spaces.base import SearchSpace
    from latbench.tasks.spec import TaskSpec, list_tasks, load_task

__all__ = [
    "__version__",
    "Method",
    "make_method",
    "SourceData",
    "Oracle",
    "Trial",
    "make_trial",
    "TaskSpec",
    "load_task",
    "list_tasks",
    "SearchSpace",
    "load_space",
    "evaluate",
    "EvalResult",
    "check_method",
    "parametrize_with_checks",
    "data_dir",
    "LatbenchError",
    "DataError",
    "TaskError",
    "OracleError",
    "MethodError",
    "ParameterError",
    "NotFittedError",
    "UnknownArchError",
]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'latbench' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(__all__)
