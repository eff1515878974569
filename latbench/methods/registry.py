"""The registry: methods are found by name through the ``latbench.methods`` entry-point group.

The built-ins register there exactly as third-party packages do (see ``pyproject.toml``), so the
core never imports them. Any ``package.module:Class`` path works too.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, entry_points, packages_distributions, version

from latbench.errors import MethodError, did_you_mean
from latbench.methods.base import Method

GROUP = "latbench.methods"
#: The distribution whose entry points are the built-in baselines (latbench itself).
BUILTIN_DISTRIBUTION = "latbench"


@functools.lru_cache(maxsize=1)
def _registered() -> tuple[tuple[str, str, str], ...]:
    """(name, "module:Class", distribution) of every entry point in the group, built-ins first."""
    rows = []
    for ep in entry_points(group=GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", "") or ""
        rows.append((ep.name, ep.value, dist))
    return tuple(sorted(rows, key=lambda r: (r[2] != BUILTIN_DISTRIBUTION, r[0])))


def builtin_methods() -> dict[str, str]:
    """name -> "module:Class" of the baselines that ship with latbench."""
    return {name: value for name, value, dist in _registered() if dist == BUILTIN_DISTRIBUTION}


def available() -> dict[str, str]:
    """name -> "module:Class" for built-ins and installed plug-ins (a built-in wins a name clash)."""
    out: dict[str, str] = {}
    for name, value, _ in _registered():
        out.setdefault(name, value)
    return out


def shadowed() -> list[tuple[str, str, str]]:
    """(name, "module:Class", distribution) of plug-in entry points that lose a name clash, so that
    `latbench methods` can tell their authors instead of dropping them silently."""
    seen: set[str] = set()
    out = []
    for name, value, dist in _registered():  # the first of a name wins, as in available()
        if name in seen:
            out.append((name, value, dist))
        seen.add(name)
    return out


def in_packages(module: str, packages: Sequence[str]) -> bool:
    """Whether ``module`` is one of ``packages`` or inside one of them (``--allow-import`` values)."""
    return any(module == package or module.startswith(package + ".") for package in packages)


def import_allowed(module: str, allow_import: Sequence[str] = ()) -> bool:
    """Whether importing ``module`` runs only code the user chose: a registered method's module (the
    user installed it), one already imported, or one inside a package named in ``allow_import``
    (``--allow-import``). A module that a checkpoint file names needs this before it is imported."""
    registered = {target.partition(":")[0] for target in available().values()}
    return module in registered or module in sys.modules or in_packages(module, allow_import)


def resolve(spec: str) -> type[Method]:
    """A Method class from a registered name or a ``module:Class`` path."""
    known = available()
    target = known.get(spec, spec if ":" in spec else None)
    if target is None:
        raise MethodError(f"unknown method {spec!r}{did_you_mean(spec, known)}; see `latbench methods` or pass module:Class")
    module, _, attr = target.partition(":")
    if ":" in spec and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m` and uvicorn: module:Class paths resolve from the cwd
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        if spec == target:
            raise MethodError(
                f"cannot load method {spec!r}: {e} (a module:Class path is imported from the installed packages "
                "and the current folder)"
            ) from None
        raise MethodError(f"cannot load method {spec!r} from {target!r}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise MethodError(f"{target!r} is not a latbench.Method subclass")
    return cls


def make_method(spec: str, **params) -> Method:
    """A new instance of the method ``spec`` (a registered name such as ``latref``, or
    ``package.module:Class``) with hyperparameters ``params``; MethodError naming what is wrong."""
    cls = resolve(spec)
    try:
        return cls(**params)
    except TypeError as e:
        raise MethodError(f"method {spec!r}: bad parameters {params}: {e}") from None


@functools.lru_cache(maxsize=1)
def _distributions_of() -> dict[str, list[str]]:
    """Top-level module -> the installed distributions providing it (a scan of every installed package: once)."""
    return packages_distributions()


def code_version(code_ref: str) -> str:
    """The installed version of the distribution that provides ``code_ref``'s module (a plug-in's
    ``myplugin 0.3.1``, latbench's own for the built-ins), or "unversioned" for a module that no
    installed distribution provides (a ``module:Class`` from the current folder)."""
    top = code_ref.partition(":")[0].split(".")[0]
    for dist in _distributions_of().get(top, []):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "unversioned"


def code_ref(spec: str) -> str:
    """What results record as the code that ran: the spec itself for module:Class, else the resolved class."""
    cls = resolve(spec)
    return spec if ":" in spec else f"{cls.__module__}:{cls.__name__}"
