"""How many CPU threads the engine's torch work uses: one per core that other programs leave free.

Torch splits each CPU operation into equal parts, one per thread of its OpenMP pool, and every
operation waits for its slowest part. When another program keeps one of the cores busy, the
thread that shares that core makes *every* operation wait for it, and the pool's spin-waiting
fights the other program for the core: on this project's 2-core machine the default (2 threads)
took 2-4x its idle time at 1 MP with one core busy. One thread per free core never waits on a core
it does not have, and running on fewer threads gives the same numbers bit for bit (torch's CPU
kernels here do not depend on the thread count; ``tests/test_threads.py`` checks it).

Before each batch of frames and each full-resolution pass, :func:`adapted` counts the runnable
threads of other programs (``procs_running`` of ``/proc/stat``, less this process's own running
threads; a few samples, about 0.2 ms) and sets torch's thread count to the free cores for that
stretch of work, then puts back what was there. It stays out of the way of the user's own
choice: with ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set, with ``CLEARNET_ADAPTIVE_THREADS=0``,
or once ``torch.set_num_threads`` has been called with anything but torch's default, the count is
left alone. Off Linux (no ``/proc``) nothing changes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["adapted", "banded", "busy_cores", "capped", "enabled", "free_cores"]

#: torch's own default when this module was imported (before anyone could change it)
_DEFAULT = torch.get_num_threads()
_LOCK = threading.Lock()
#: open adapted() blocks, the count in use, the count before the outermost, whether we manage it
_state: dict[str, int] = {"depth": 0, "ours": 0, "before": 0, "managed": 0}
#: samples of the run queue per decision
SAMPLES = 3
#: at most this many threads while a :func:`capped` block is open (None: no cap)
_cap: list[int] = []


def enabled() -> bool:
    """Whether the thread count may follow the free cores (see the module docstring)."""
    if os.environ.get("CLEARNET_ADAPTIVE_THREADS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return False
    return torch.get_num_threads() == _DEFAULT and os.path.exists("/proc/stat")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _running_system() -> int | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _running_own() -> int:
    n = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                s = f.read()
        except OSError:
            continue
        i = s.rfind(b")")
        n += s[i + 2:i + 3] == b"R"
    return max(n, 1)


def busy_cores() -> int | None:
    """Cores other programs keep busy now (median of a few samples of the run queue), or None
    where the system does not say."""
    samples = []
    for _ in range(SAMPLES):
        total = _running_system()
        if total is None:
            return None
        samples.append(max(0, total - _running_own()))
    return sorted(samples)[len(samples) // 2]


def free_cores() -> int:
    """Threads worth using now: the cores this process may run on less those other programs keep
    busy, between 1 and torch's default."""
    busy = busy_cores()
    free = _cores() - (busy or 0)
    return max(1, min(_DEFAULT, free, *_cap))


def banded() -> int:
    """Threads for work cut into many small bands that whichever thread is free takes next (the
    compiled kernels, :func:`~.kernels.bands`): there another program's load only slows the
    thread that shares its core, which then takes fewer bands, so such work uses every core this
    process may run on (within a :func:`capped` block's cap) rather than :func:`free_cores`.
    With one of two cores busy that is about 4/3 of a core instead of one. The user's own
    thread count (see :func:`enabled`) is kept."""
    with _LOCK:
        managed = _state["managed"] if _state["depth"] else int(enabled())
        if not managed:
            return torch.get_num_threads()
        return max(1, min(_DEFAULT, _cores(), *_cap))


@contextmanager
def capped(n: int) -> Iterator[None]:
    """At most ``n`` threads for the engine's work inside the block (where the count is managed):
    a video run leaves the encoder's cores to the encoder, whose threads :func:`busy_cores` does
    not count (they are this process's own)."""
    with _LOCK:
        _cap.append(max(1, int(n)))
    try:
        yield
    finally:
        with _LOCK:
            _cap.remove(max(1, int(n)))


@contextmanager
def adapted() -> Iterator[int]:
    """Run the block with one torch thread per free core (see the module docstring); yields the
    count in use. A block inside another (a batch inside a run) counts the free cores again; the
    outermost puts back the count it found."""
    with _LOCK:
        if _state["depth"] == 0:
            current = torch.get_num_threads()
            _state["before"], _state["managed"] = current, int(enabled())
        if _state["managed"]:
            _state["ours"] = free_cores()
            if _state["ours"] != torch.get_num_threads():
                torch.set_num_threads(_state["ours"])
        else:
            _state["ours"] = torch.get_num_threads()
        _state["depth"] += 1
        n = _state["ours"]
    try:
        yield n
    finally:
        with _LOCK:
            _state["depth"] -= 1
            if _state["depth"] == 0 and _state["managed"] and torch.get_num_threads() != _state["before"]:
                torch.set_num_threads(_state["before"])
