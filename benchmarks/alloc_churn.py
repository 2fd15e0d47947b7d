"""Allocator churn of one method at one size: median wall time, page faults and system time per call.

    python benchmarks/alloc_churn.py 12                      # ClearNet at 12 MP
    METHOD=dcp python benchmarks/alloc_churn.py 1            # the DCP at 1 MP
    MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_TOP_PAD_=268435456 \\
        python benchmarks/alloc_churn.py 12                  # glibc told to keep freed blocks

Prints one JSON line. Seven calls after a warm-up in this process; the page faults and system
time are ``getrusage`` deltas over those calls. ``clearnet bench`` reports the same per row; this
script also runs on older checkouts (``PYTHONPATH=OLD/src``), for before/after comparisons.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

from napari_clearnet import api
from napari_clearnet.bench import runner as bench

REPEATS = 7


def main() -> None:
    mp = float(sys.argv[1]) if len(sys.argv) > 1 else 12.0
    h, w = bench.shape_for(mp)
    image = bench._test_image(1, h, w)
    dehazer = api.load_model(method=os.environ.get("METHOD", "clearnet"), device="cpu")
    dehazer.dehaze(image)  # warm-up
    times = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(REPEATS):
        t = time.perf_counter()
        dehazer.dehaze(image)
        times.append(time.perf_counter() - t)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"megapixels": mp, "median_s": float(np.median(times)), "min_s": min(times),
                      "page_faults_per_call": (r1.ru_minflt - r0.ru_minflt) / REPEATS,
                      "system_s_per_call": (r1.ru_stime - r0.ru_stime) / REPEATS,
                      "user_s_per_call": (r1.ru_utime - r0.ru_utime) / REPEATS}))


if __name__ == "__main__":
    main()
