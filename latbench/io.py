"""Atomic file writes: a crash or an error never leaves a half-written file behind.

Every file latbench writes goes through :func:`atomic_path`: the content goes to a hidden temporary
name in the target's folder, is fsynced, and only then gets its name -- ``os.replace`` (atomic on
POSIX: readers see the old file or the new one) or, with ``exclusive``, a hard link that fails if
the name exists (of concurrent writers exactly one wins).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, *, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path``. ``exclusive``: FileExistsError if it exists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    """Make the new name durable too (best effort: not every filesystem lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, *, exclusive: bool = False) -> Path:
    with atomic_path(path, exclusive=exclusive) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str, *, exclusive: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), exclusive=exclusive)


def write_parquet(path: Path, table, **options) -> Path:
    """A pyarrow Table as parquet (``options`` go to ``pyarrow.parquet.write_table``)."""
    import pyarrow.parquet as pq  # local: pyarrow is heavy and most writers only write text

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **options)
    return Path(path)


class NotReadable(Exception):
    """Why :func:`read_regular` refused a path: ``kind`` is "directory", "fifo", "special" or "error"."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(detail or kind)
        self.kind = kind
        self.detail = detail


def read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path``, which must be a regular file (else :class:`NotReadable`).

    Opened non-blocking and checked on the open descriptor, so a FIFO (or a device, a directory) is
    refused at once instead of blocking the reader forever, even if it replaced the file after a check.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise NotReadable("error", e.strerror or str(e)) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotReadable("directory" if stat.S_ISDIR(mode) else "fifo" if stat.S_ISFIFO(mode) else "special")
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read(limit + 1)
        except OSError as e:
            raise NotReadable("error", e.strerror or str(e)) from None
