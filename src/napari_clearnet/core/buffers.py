"""Scratch tensors that the full-resolution pass reuses across strips and frames.

Allocating fresh full-size temporaries for every strip and frame costs page faults and system
time that depend on the C library's allocator settings (about 2 s of system time for a 12 MP
image before this module). A :class:`Buffers` hands out views of a few grow-only tensors
instead, so the pass allocates once per thread and size, and its speed no longer depends on
``MALLOC_*`` tuning. Each thread gets its own set (a napari preview and a full run may share one
loaded model at the same time).
"""

from __future__ import annotations

import threading

import torch

__all__ = ["Buffers"]


class Buffers:
    """Named, grow-only scratch tensors per thread: ``take(name, shape)`` returns a contiguous view
    of at least ``shape``; the contents are whatever the last user left there."""

    def __init__(self) -> None:
        self._local = threading.local()

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A ``shape`` view of buffer ``name`` with ``like``'s dtype and device."""
        store: dict[str, torch.Tensor] = self._local.__dict__.setdefault("store", {})
        n = 1
        for s in shape:
            n *= int(s)
        buf = store.get(name)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(max(n, 1), dtype=like.dtype, device=like.device)
            store[name] = buf
        return buf[:n].view(shape)

    def clear(self) -> None:
        """Release this thread's buffers (they come back on the next :meth:`take`)."""
        self._local.__dict__.pop("store", None)
