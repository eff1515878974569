"""The registry of upstream latency sources, and getting their files onto disk safely.

A source is a pinned manifest (upstream URL at a fixed commit, size and sha256 of every file) plus
an adapter that turns the files into :class:`SourceTables`. Files come either from a local mirror
(``LATBENCH_MIRROR``, laid out as ``<mirror>/<source>/<path>``) or are downloaded with pooch, which
caches them under ``LATBENCH_HOME/downloads`` and verifies the sha256; a rerun re-uses every file
already verified, so an interrupted download resumes file by file. Every file is checked for size
and sha256 before it is read, wherever it came from.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from latbench import paths
from latbench.data.tables import SourceTables, SpaceTables  # noqa: F401  (re-exported for adapters)
from latbench.errors import DataError, LatbenchError, did_you_mean

MANIFEST_DIR = Path(__file__).parent / "manifests"


class DownloadError(DataError):
    """The file could not be fetched (network, HTTP, URL), as opposed to a file that failed its checks."""


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    homepage: str
    license: str
    citation: str
    adapter: str  # "module:function", called with (source, {path: local file}) -> SourceTables

    @property
    def manifest(self) -> dict:
        return json.loads((MANIFEST_DIR / f"{self.name}.json").read_text())

    def read(self, files: dict[str, Path]) -> SourceTables:
        module, fn = self.adapter.split(":")
        reader: Callable = getattr(importlib.import_module(module), fn)
        return reader(self, files)


SOURCES: dict[str, Source] = {
    "help": Source(
        name="help",
        title="HELP: Hardware-adaptive Efficient Latency Prediction for NAS (Lee et al., NeurIPS 2021)",
        homepage="https://github.com/HayeonLee/HELP",
        license="MIT",
        citation=(
            "@inproceedings{lee2021help, title={{HELP}: Hardware-Adaptive Efficient Latency Prediction for "
            "{NAS} via Meta-Learning}, author={Lee, Hayeon and Lee, Sewoong and Chong, Song and Hwang, Sung Ju}, "
            "booktitle={NeurIPS}, year={2021}}"
        ),
        adapter="latbench.data.help:read_help",
    ),
}


def check_source_name(name: str, also: Sequence[str] = ()) -> None:
    """Raise unless ``name`` is a downloadable source or one of ``also`` (sources read another way)."""
    known = (*SOURCES, *also)
    if name not in known:
        raise LatbenchError(f"unknown source {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")


def get_source(name: str) -> Source:
    check_source_name(name)
    return SOURCES[name]


def sha256(path: Path) -> str:
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


def _verify(path: Path, entry: dict, where: str) -> None:
    if not path.is_file():
        raise DataError(f"{path}: missing from the {where} (expected {entry['path']}, {entry['size']} bytes)")
    size = path.stat().st_size
    if size != entry["size"]:
        raise DataError(f"{path}: truncated or wrong file: {size} bytes, expected {entry['size']}")
    digest = sha256(path)
    if digest != entry["sha256"]:
        raise DataError(f"{path}: sha256 mismatch: got {digest[:12]}..., expected {entry['sha256'][:12]}...")


def fetch(
    source: Source,
    *,
    mirror: Path | None = None,
    base_url: str | None = None,
    progress: bool = False,
    on_file: Callable[[dict, int], None] = lambda entry, total: None,
) -> dict[str, Path]:
    """Local, verified paths of every manifest file: from ``mirror`` if given, else downloaded.

    ``base_url`` replaces the manifest's pinned URL prefix (an HTTP mirror of the upstream tree).
    ``on_file(entry, total)`` is called after each file is verified (a progress bar's tick).
    """
    manifest = source.manifest
    files: dict[str, Path] = {}
    if mirror is not None:
        root = Path(mirror) / source.name
        if not root.is_dir():
            raise DataError(f"{root}: mirror folder for source {source.name!r} not found (LATBENCH_MIRROR={mirror})")
        for entry in manifest["files"]:
            path = root / entry["path"]
            _verify(path, entry, f"mirror {root}")
            files[entry["path"]] = path
            on_file(entry, len(manifest["files"]))
        return files

    import pooch

    cache = paths.download_dir() / source.name
    for entry in manifest["files"]:
        url = entry["url"] if base_url is None else base_url.rstrip("/") + "/" + entry["path"]
        target = cache / entry["path"]
        try:
            local = pooch.retrieve(
                url,
                known_hash=f"sha256:{entry['sha256']}",
                fname=target.name,
                path=target.parent,
                progressbar=progress,
            )
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else ""
            if isinstance(e, ValueError) and "does not match the known hash" in first:  # pooch's hash mismatch
                raise DataError(f"{url}: downloaded file failed its sha256 check ({first})") from None
            # network or HTTP error, or a malformed URL (pooch/requests raise ValueError for those too)
            raise DownloadError(f"{url}: download failed ({type(e).__name__}: {first})") from None
        _verify(Path(local), entry, "download cache")
        files[entry["path"]] = Path(local)
        on_file(entry, len(manifest["files"]))
    return files
