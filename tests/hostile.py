"""Shared tools of the hostile-input tests: a byte snapshot of a folder, another process holding a lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folder``; FIFOs and links by kind, never opened."""
    out: dict[str, bytes | None] = {}
    if not os.path.lexists(folder):
        return out
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = b"link:" + os.readlink(p).encode()
        elif p.is_dir():
            out[rel] = None
        elif p.is_file():
            out[rel] = p.read_bytes()
        else:
            out[rel] = b"special"
    return out


HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0); os.write(fd, f"{os.getpid()}\\n".encode())
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def hold(lock_file: Path, seconds: float = 60.0) -> subprocess.Popen:
    """Another live process holding an flock on ``lock_file`` (what a running build or profile does)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_file), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def legacy_schema(d: dict) -> dict:
    """A copy of an entry dict as entry schema 1 stored it: the six original metrics only."""
    import json

    from latbench.protocol.metrics import LEGACY_METRICS

    d = json.loads(json.dumps(d))
    d["schema_version"] = "1"
    for b in d["results"]:
        for tr in b["trials"]:
            for key in ("mean", "worst"):
                tr[key] = {m: tr[key][m] for m in LEGACY_METRICS}
            tr["devices"] = {dev: {m: v[m] for m in LEGACY_METRICS} for dev, v in tr["devices"].items()}
        b["aggregate"] = {m: b["aggregate"][m] for m in LEGACY_METRICS}
    return d
