"""latbench: few-shot latency prediction on unseen hardware -- data, tasks, baselines, leaderboard.

The public API for method authors is re-exported here::

    from latbench import Method, evaluate, load_task, check_method
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("latbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: public name -> module that defines it; imported on first use (PEP 562) so that `import latbench`
#: stays cheap for the CLI and for worker processes.
_API = {
    "Method": "latbench.methods.base",
    "SourceData": "latbench.protocol.trial",
    "Oracle": "latbench.protocol.trial",
    "Trial": "latbench.protocol.trial",
    "TaskSpec": "latbench.tasks.spec",
    "load_task": "latbench.tasks.spec",
    "list_tasks": "latbench.tasks.spec",
    "evaluate": "latbench.eval.runner",
    "EvalResult": "latbench.eval.results",
    "check_method": "latbench.eval.checks",
    "parametrize_with_checks": "latbench.eval.checks",
    "data_dir": "latbench.paths",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'latbench' has no attribute {name!r}")
    if name == "load_task":
        return importlib.import_module(module).get_task
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(__all__)
