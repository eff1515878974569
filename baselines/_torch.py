"""Shared torch helpers for the learned baselines."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def torch_threads(n):
    """Run with ``n`` torch CPU threads (None/0: leave torch's setting), restoring it afterwards.

    The learned baselines default to 1 thread: on a small shared machine, 2 threads were measured
    8-17x slower than 1 for these small models (thread contention with other processes).
    """
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
