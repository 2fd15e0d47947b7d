"""Compiled CPU kernels (numba): the 8-bit path's passes and the CPU box filter.

Small loops over contiguous memory that LLVM vectorises, compiled once per machine (numba's cache
on disk), releasing the GIL. They run on bands of rows in a few threads of their own (no numba
threading layer, so any thread may call them). :func:`compiled` is None where numba is missing or
``CLEARNET_NO_NUMBA=1``; callers then use torch (:mod:`.fused`, :func:`.physics.box_filter`).
This module imports neither torch nor the rest of the core.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["BAND_ROWS", "available", "bands", "box_1d", "compiled"]

_F = np.float32
#: rows of the frame per task (a task per band keeps threads busy and caches warm)
BAND_ROWS = 64
#: bands per thread in :func:`bands`: enough that a thread slowed by another program's load
#: leaves its share to the others, few enough that handing them out costs nothing
BANDS_PER_THREAD = 8


@lru_cache(maxsize=1)
def compiled() -> Any:
    """The compiled kernels (compiled once per machine and cached on disk by numba), or None."""
    if os.environ.get("CLEARNET_NO_NUMBA", "").strip() not in ("", "0"):
        return None
    try:
        import numba
    except ImportError:
        return None
    return _compile(numba)


def available() -> bool:
    """Whether the fast 8-bit path can run here (numba importable and not turned off with
    ``CLEARNET_NO_NUMBA=1``)."""
    return compiled() is not None


def _compile(numba: Any) -> Any:
    # error_model="numpy": a division is IEEE arithmetic either way, but numba's default checks
    # every divisor for zero, which stops LLVM from vectorising the loop (the recovery ran 1.8x
    # slower, the same bits); no divisor here can be zero (255, a window's count, and t clamped
    # at ``tiny`` at least, where the float path would make NaN and be refused)
    jit = numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False, error_model="numpy")
    f255, half, zero, one, tiny = _F(255.0), _F(0.5), _F(0.0), _F(1.0), _F(1e-30)
    lr, lg, lb = _F(0.299), _F(0.587), _F(0.114)

    @jit
    def rows_v(frame, r0, r1, y0, wy, out):
        """Vertical pass of the reduction for output rows r0:r1: out[o] (W * 3 float32) = the
        weighted sum of the frame's rows y0[o] + k (contiguous rows: vectorised)."""
        taps = wy.shape[1]
        n3 = frame.shape[1] * 3
        for o in range(r0, r1):
            acc = out[o]
            for j in range(n3):
                acc[j] = zero
            for k in range(taps):
                w = wy[o, k]
                row = frame[y0[o] + k].reshape(n3)
                for j in range(n3):
                    acc[j] += w * _F(row[j])

    @jit
    def cols_h(tmp, x0, wx, out):
        """Horizontal pass: out[o, i, c] = sum_k wx[i, k] tmp[o, x0[i] + k, c] / 255."""
        n_out, taps = wx.shape
        for o in range(tmp.shape[0]):
            row = tmp[o]
            for i in range(n_out):
                s0 = zero
                s1 = zero
                s2 = zero
                base = x0[i]
                for k in range(taps):
                    w = wx[i, k]
                    s0 += w * row[3 * (base + k)]
                    s1 += w * row[3 * (base + k) + 1]
                    s2 += w * row[3 * (base + k) + 2]
                out[o, i, 0] = s0 / f255
                out[o, i, 1] = s1 / f255
                out[o, i, 2] = s2 / f255

    @jit
    def recover_rows(frame, r0, r1, wide, yi0, yi1, wy, a3, t0, tmin, out, t_out, with_t):
        """J (uint8) and optionally t (float32) of rows r0:r1; see the module docstring. Each
        row goes through loops over contiguous memory that LLVM vectorises: the coefficient
        rows, the row's values as float, t and 1 - 1/max(t, t0) per pixel, then J per value."""
        width = frame.shape[1]
        n3 = 3 * width
        ca = np.empty(width, np.float32)
        cb = np.empty(width, np.float32)
        om3 = np.empty(n3, np.float32)
        af = np.empty(n3, np.float32)
        fl = np.empty(n3, np.float32)
        for x in range(width):
            af[3 * x] = a3[0]
            af[3 * x + 1] = a3[1]
            af[3 * x + 2] = a3[2]
        for y in range(r0, r1):
            top, bot, w = yi0[y], yi1[y], wy[y]
            at, ab, bt, bb = wide[0, top], wide[0, bot], wide[1, top], wide[1, bot]
            if w < half:  # torch.lerp(top, bot, w): the two formulas torch uses either side of 0.5
                for x in range(width):
                    ca[x] = at[x] + w * (ab[x] - at[x])
                    cb[x] = bt[x] + w * (bb[x] - bt[x])
            else:
                w1 = one - w
                for x in range(width):
                    ca[x] = ab[x] - (ab[x] - at[x]) * w1
                    cb[x] = bb[x] - (bb[x] - bt[x]) * w1
            row = frame[y].reshape(n3)
            for k in range(n3):
                fl[k] = _F(row[k]) / f255
            for x in range(width):
                g = fl[3 * x] * lr + fl[3 * x + 1] * lg + fl[3 * x + 2] * lb
                t = min(max(cb[x] + ca[x] * g, tmin), one)
                if with_t:
                    t_out[y, x] = t
                # torch.lerp(A, I, r) with r = 1 / max(t, t0) >= 1 is I - (I - A) (1 - r)
                m = one - one / max(t, t0, tiny)
                om3[3 * x] = m
                om3[3 * x + 1] = m
                om3[3 * x + 2] = m
            o = out[y].reshape(n3)
            for k in range(n3):
                v = fl[k]
                o[k] = np.uint8(min(max(v - (v - af[k]) * om3[k], zero), one) * f255 + half)

    @jit
    def quantise_rows(x, r0, r1, out):
        """Float [0, 1] (H, W[, C]) rows to uint8, rounded as the video writer does."""
        flat_in = x[r0:r1].reshape(-1)
        flat_out = out[r0:r1].reshape(-1)
        for k in range(flat_in.size):
            v = flat_in[k] * f255 + half
            v = min(max(v, zero), f255 + half - _F(1e-3))
            flat_out[k] = np.uint8(v)

    @jit
    def box_last(x, r, out):
        """Mean over a window of 2r+1 along the last axis of (M, n) float32, clipped at the ends:
        float64 running sums differenced, exactly as :func:`~.physics.box_filter` does in torch."""
        m_rows, n = x.shape
        c = np.empty(n, np.float64)
        full = np.float64(2 * r + 1)
        for m in range(m_rows):
            acc = 0.0
            for k in range(n):
                acc += np.float64(x[m, k])
                c[k] = acc
            o = out[m]
            for k in range(min(r + 1, n)):  # windows clipped at the start (and maybe the end)
                hi = min(k + r, n - 1)
                o[k] = _F((c[hi] - 0.0) / np.float64(min(k + r + 1, n) - max(k - r, 0)))
            for k in range(r + 1, n - r):  # whole windows: one loop without branches (vectorised)
                o[k] = _F((c[k + r] - c[k - r - 1]) / full)
            for k in range(max(r + 1, n - r), n):  # clipped at the end
                o[k] = _F((c[n - 1] - c[k - r - 1]) / np.float64(n - (k - r)))

    @jit
    def box_middle(x, r, out):
        """The same along the middle axis of (B, n, W) float32 (rows of W values at a time)."""
        b_n, n, width = x.shape
        c = np.empty((n, width), np.float64)
        for b in range(b_n):
            for w in range(width):
                c[0, w] = np.float64(x[b, 0, w])
            for k in range(1, n):
                for w in range(width):
                    c[k, w] = c[k - 1, w] + np.float64(x[b, k, w])
            for k in range(n):
                hi = min(k + r, n - 1)
                lo = k - r - 1
                cnt = np.float64(min(k + r + 1, n) - max(k - r, 0))
                if lo >= 0:
                    for w in range(width):
                        out[b, k, w] = _F((c[hi, w] - c[lo, w]) / cnt)
                else:
                    for w in range(width):
                        out[b, k, w] = _F((c[hi, w] - 0.0) / cnt)

    return {"box_last": box_last, "box_middle": box_middle, "rows_v": rows_v, "cols_h": cols_h,
            "recover_rows": recover_rows, "quantise_rows": quantise_rows}


# ---------------------------------------------------------------------- threads
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="clearnet-fused")
    return _POOL


def bands(height: int, threads: int, fn: Any, rows: int = BAND_ROWS) -> None:
    """Run ``fn(r0, r1)`` over bands of rows (at least ``rows`` each) on ``threads`` threads,
    this thread one of them.

    The bands are many more than the threads (:data:`BANDS_PER_THREAD` each) and every thread takes
    the next one free: where another program keeps a core busy, the thread that shares it does
    fewer bands instead of holding everyone up with an equal share (one equal band per thread took
    twice as long on one free core of two)."""
    count = max(1, min(threads * BANDS_PER_THREAD, height // max(1, rows)))
    threads = max(1, min(threads, count))
    if threads == 1:
        fn(0, height)
        return
    step = math.ceil(height / count)
    spans = iter([(r, min(height, r + step)) for r in range(0, height, step)])
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                span = next(spans, None)
            if span is None:
                return
            fn(*span)

    futures = [_pool().submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for f in futures:  # every band is done (or failed) before the caller reads the output
            f.result()


def box_1d(x: np.ndarray, r: int, axis: int) -> np.ndarray | None:
    """:func:`~.physics.box_filter`'s pass along ``axis`` (-1 or -2) of a float32 array, with the
    same numbers; None where the kernels are not here (the caller then uses torch)."""
    k = compiled()
    if k is None or x.dtype != np.float32 or x.ndim < 2:
        return None
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    if axis == -1:
        k["box_last"](x.reshape(-1, x.shape[-1]), r, out.reshape(-1, x.shape[-1]))
    else:
        shape3 = (-1, x.shape[-2], x.shape[-1])
        k["box_middle"](x.reshape(shape3), r, out.reshape(shape3))
    return out
