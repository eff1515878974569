"""Inter-process locks: ``fcntl.flock`` on a lock file, so two writers never share a folder.

The kernel drops an flock when its holder exits, however it exits (``kill -9`` included), so a lock
file left behind by a dead process never blocks anybody: the file stays, the lock does not. The
holder writes its pid into the file, only so that the error naming a live holder can say who it is.
Lock files are never deleted (deleting one while another process waits on it would let a third
process lock a new file of the same name). Where ``fcntl`` does not exist (Windows) locking is a no-op.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


class LockBusy(Exception):
    """Another live process holds the lock. ``pid``: its pid when known."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = Path(path), pid
        super().__init__(f"{path} is locked by {self.holder}")

    @property
    def holder(self) -> str:
        """Who holds the lock, for messages: ``pid 123`` or ``another process``."""
        return f"pid {self.pid}" if self.pid else "another process"


class FileLock:
    """An exclusive lock on ``path`` (created if missing); also a context manager (no wait)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float = 0.0, poll: float = 0.2) -> FileLock:
        """Take the lock, waiting up to ``timeout`` seconds; :class:`LockBusy` if it stays taken."""
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            deadline = time.monotonic() + max(timeout, 0.0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(fd)
                        raise LockBusy(self.path, self.holder()) from None
                    time.sleep(poll)
                except BaseException:
                    os.close(fd)
                    raise
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is informative only
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock

    def holder(self) -> int | None:
        """The pid recorded by the current (or last) holder, if readable."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a pid of another user's process counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
