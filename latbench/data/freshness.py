"""A partial dataset meeting its missing source: what ``latbench data build`` would now add.

A default build that cannot download a source (no network, no mirror) goes on with the measured
data alone and records the source in ``latbench.json`` as ``missing_sources``. Once a mirror
(``LATBENCH_MIRROR``) or the network can provide it, :func:`advice` says so with the exact command;
``latbench data info`` and the first command that loads the data show it, and when the mirror has
the source's files the CLI rebuilds from it on its own (a local, verified, atomic build).
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from latbench import paths
from latbench.data.sources import SOURCES

#: Seconds :func:`reachable` waits for the upstream host.
PROBE_TIMEOUT = 3.0
MEASURED = "latbench-measured"


@dataclass(frozen=True)
class Advice:
    """What the built dataset lacks, where it is available now, and the command that adds it."""

    missing: tuple[str, ...]
    where: str | None  # "mirror", "network", or None (not available now)
    command: str

    @property
    def head(self) -> str:
        """What is missing, and what that costs."""
        names = ", ".join(self.missing)
        return f"this dataset was built without the {names} source(s) (offline), so the tasks that need their devices are missing"

    @property
    def message(self) -> str:
        """:attr:`head`, where the source is available now, and the command that adds it."""
        head = self.head
        if self.where == "mirror":
            return f"{head}; LATBENCH_MIRROR has them: run `{self.command}`"
        if self.where == "network":
            return f"{head}; the network is reachable now: run `{self.command}`"
        return f"{head}; with network or LATBENCH_MIRROR set, run `{self.command}`"


def missing_sources(info: dict) -> list[str]:
    """Default sources the built dataset lacks because they could not be fetched.

    Datasets built before ``missing_sources`` was recorded: a build of the measured data alone.
    """
    if "missing_sources" in info:
        return [str(s) for s in info["missing_sources"]]
    have = {s.get("name") for s in info.get("sources", [])}
    return [name for name in SOURCES if name not in have] if have == {MEASURED} else []


def in_mirror(name: str, mirror: Path | None) -> bool:
    """Whether ``mirror`` holds the source's folder (its files are verified when the build reads them)."""
    return mirror is not None and (Path(mirror) / name).is_dir()


def reachable(name: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the source's first pinned file answers a HEAD request within ``timeout`` seconds."""
    files = SOURCES[name].manifest.get("files") or []
    if not files:
        return False
    try:
        req = urllib.request.Request(files[0]["url"], method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (a pinned https URL)
            return 200 <= resp.status < 400
    except (OSError, ValueError):
        return False


def advice(info: dict, *, mirror: Path | None = None, probe_network: bool = False) -> Advice | None:
    """None when nothing is missing; else what is missing, where it is now available, and the command.

    ``mirror``: default ``LATBENCH_MIRROR``. ``probe_network``: also try the upstream host
    (:func:`reachable`; up to :data:`PROBE_TIMEOUT` seconds per source when offline).
    """
    missing = tuple(missing_sources(info))
    if not missing:
        return None
    mirror = paths.mirror() if mirror is None else mirror
    if all(in_mirror(name, mirror) for name in missing):
        env = paths.mirror()
        prefix = "" if env is not None and Path(env) == Path(mirror) else f"LATBENCH_MIRROR={mirror} "
        return Advice(missing, "mirror", f"{prefix}latbench data build")
    if probe_network and all(reachable(name) for name in missing):
        return Advice(missing, "network", "latbench data build")
    return Advice(missing, None, "latbench data build")
