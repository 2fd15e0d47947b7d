"""Other programs keeping cores busy, for ``clearnet bench --load N``.

A user's machine is rarely idle (napari drawing, a video decoder, a browser). ``busy_cores(n)``
starts ``n`` processes that each spin a plain Python loop (one busy core each, like the load
the speed issue was measured under) and stops them when the block ends, also on errors and
Ctrl-C, so the benchmark's rows can be measured idle and loaded side by side.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["busy_cores"]

#: each busy process: a loop that never sleeps, and exits if its parent is gone
_SPIN = (
    "import os\n"
    "parent = os.getppid()\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    if n % 5_000_000 == 0 and os.getppid() != parent:\n"
    "        break\n"
)


@contextmanager
def busy_cores(n: int) -> Iterator[list[subprocess.Popen]]:
    """Keep ``n`` cores busy for the duration of the block (``n`` = 0: nothing runs)."""
    if n < 0:
        raise ValueError(f"load must be a number of busy cores >= 0, got {n}")
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if procs:
            time.sleep(0.3)  # let them get going before anything is timed
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
