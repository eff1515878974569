"""One exception family for latbench.

Every error a user can cause (bad input file, unknown task, oracle over budget, ...) is a
``LatbenchError`` whose message is one line that names the thing and what is wrong. The CLI turns
these into ``error: <message>`` and exit code 1, with no traceback.
"""


class LatbenchError(Exception):
    """Base class: a user-facing error with a one-line message."""


class DataError(LatbenchError):
    """A source file or built dataset is missing, corrupt or inconsistent."""


class UnsafePickleError(DataError):
    """A pickle asked for something other than plain data (a callable, a class, a tensor)."""


class UnknownArchError(LatbenchError):
    """An architecture string or index that is not part of the search space."""


class TaskError(LatbenchError):
    """A task file is invalid or refers to devices/archs that do not exist."""


class OracleError(LatbenchError):
    """A method broke the few-shot protocol (over budget, or an arch outside the pool)."""


class MethodError(LatbenchError):
    """A method is unknown, or returned something the protocol does not accept."""


class NotFittedError(LatbenchError, AttributeError):
    """A method's learned state (an attribute ending in ``_``) was read before ``fit``/``adapt`` set
    it (an ``AttributeError`` too, as in scikit-learn, so ``hasattr`` still answers False)."""


class ParameterError(LatbenchError, ValueError):
    """An argument of a latbench function has the wrong type or value (a ``ValueError`` too, as in
    scikit-learn)."""


def did_you_mean(name: str, choices) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when none is close."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""
