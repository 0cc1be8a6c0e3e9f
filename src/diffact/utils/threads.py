"""Pinning torch's CPU thread count for one piece of work (the bits of CPU kernels' sums follow the count,
docs/determinism.md)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the body with ``threads`` torch CPU threads, then restore the caller's count (commands may run
    in-process: tests, notebooks). None leaves torch alone and does not import it (a quick CLI)."""
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
