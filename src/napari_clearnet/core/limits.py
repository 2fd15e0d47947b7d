"""What this machine can hold: memory and processes are estimated before work starts.

A run that would need more memory than the machine has is refused up front with the number and
the limit (:func:`check_memory`), instead of being killed by the kernel minutes later with no
message; a count of processes (``--workers``, ``bench --load``) beyond this machine's cores or
memory is refused unless forced (:func:`check_processes`). ``$CLEARNET_MEMORY_LIMIT`` (bytes, or
with a K/M/G/T suffix) replaces the memory this machine reports as available, for machines
whose swap or overcommit the caller knows better, and for tests.
"""

from __future__ import annotations

import os
import re

from ..errors import MemoryLimitError

__all__ = ["MEMORY_ENV", "MemoryLimitError", "check_memory", "check_processes", "fmt_bytes", "memory_limit"]

MEMORY_ENV = "CLEARNET_MEMORY_LIMIT"
#: memory one local Dask worker process holds with the model loaded (measured: about 380 MB)
WORKER_BYTES = 400 * 2**20
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def fmt_bytes(n: float) -> str:
    """1.5 GiB, 380 MiB, … for messages."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def memory_limit() -> int:
    """Bytes a run may use: ``$CLEARNET_MEMORY_LIMIT``, else the memory available now."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text, re.IGNORECASE)
        if not m:
            raise MemoryLimitError(f"{MEMORY_ENV}={text!r} is not a size; give bytes or e.g. 8G, 512M")
        return int(float(m[1]) * _UNITS[m[2].upper()])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError):
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_memory(needed: float, what: str, hint: str = "", limit: int | None = None) -> None:
    """Refuse ``what`` (e.g. "J and t of 400 frames of 640×360") when it needs more than ``limit``
    bytes (default :func:`memory_limit`): a :class:`MemoryLimitError` with both numbers and ``hint``."""
    limit = memory_limit() if limit is None else limit
    if needed > limit:
        raise MemoryLimitError(
            f"{what} would need about {fmt_bytes(needed)}, more than the {fmt_bytes(limit)} of memory "
            f"available ({MEMORY_ENV} overrides it){'; ' + hint if hint else ''}"
        )


def check_processes(n: int, what: str, force_flag: str, per_process: int = 0) -> None:
    """Refuse ``n`` processes beyond this machine's cores, or whose ``per_process`` bytes together
    exceed the memory available, naming ``force_flag`` (how to ask for it anyway)."""
    cores = os.cpu_count() or 1
    if n > cores:
        raise MemoryLimitError(
            f"{what} {n} is more than this machine's {cores} cores: the processes would only wait for "
            f"each other; use at most {cores}, or add {force_flag} to run them anyway"
        )
    if per_process:
        check_memory(n * per_process, f"{what} {n} ({fmt_bytes(per_process)} each)",
                     f"use fewer, or add {force_flag} to run them anyway")
