"""The 8-bit fast path: a uint8 frame in, a uint8 clear frame out, in one pass over the pixels.

For a frame of 8-bit RGB (a decoded video frame, a JPEG) whose result is written as 8-bit again,
ClearNet's full-resolution work is a few arithmetic operations per pixel: the reduced copy the
network sees, then guided upsampling of t, ``J = A + (I - A) / max(t, t0)``, clipping and
rounding. The general path does that in float32 over whole frames (a float copy of the input, J
and t in float32, then a conversion back to 8 bits: three frame-sized arrays and as many passes
over memory). Here two small compiled kernels (numba) read the uint8 frame directly:

* :func:`reduce` makes the network's working copy with the weights of torch's antialiased
  bilinear resize (the general path's :func:`~.physics.resize`), so the network sees the same
  numbers to float rounding;
* :func:`recover` upsamples the guided coefficients row by row, computes t, recovers J and writes
  it rounded to uint8 (and t as float32 when asked), with the same float32 operations as
  :func:`~.recovery.recover_frame` and the same rounding as the video writer.

Results match the general path rounded to 8 bits to within one step (``tests/test_fused.py``).
The kernels release the GIL and run on bands of rows in a few threads of their own (no numba
threading layer, so any thread may call them, two at a time).

On a GPU (and on the CPU where numba is missing: :func:`available` is False) the same pass runs
as torch operations on the device, in strips of rows, in float16 on CUDA:
:func:`reduce_tensor` and :func:`recover_tensor`; the frames cross to the device as uint8 (a
quarter of float32's bytes) and come back as uint8.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["aa_weights", "available", "box_1d", "recover", "recover_tensor", "reduce", "reduce_tensor",
           "to_uint8"]

_F = np.float32
#: rows of the frame per task (a task per band keeps threads busy and caches warm)
BAND_ROWS = 64


@lru_cache(maxsize=1)
def _kernels() -> Any:
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
    return _kernels() is not None


def _compile(numba: Any) -> Any:
    jit = numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
    f255, half, zero, one = _F(255.0), _F(0.5), _F(0.0), _F(1.0)
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
                m = one - one / max(t, t0)
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


def _bands(height: int, threads: int, fn: Any, rows: int = BAND_ROWS) -> None:
    """Run ``fn(r0, r1)`` over ``threads`` bands of rows (at least ``rows`` each), this thread
    taking the first."""
    threads = max(1, min(threads, math.ceil(height / rows)))
    if threads == 1:
        fn(0, height)
        return
    step = math.ceil(height / threads)
    spans = [(r, min(height, r + step)) for r in range(0, height, step)]
    futures = [_pool().submit(fn, r0, r1) for r0, r1 in spans[1:]]
    fn(*spans[0])
    for f in futures:
        f.result()


# ---------------------------------------------------------------------- weights
@lru_cache(maxsize=32)
def aa_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(first source index (n_out,), weights (n_out, taps) float32) of torch's antialiased
    bilinear resize from ``n_in`` to ``n_out`` samples (``align_corners=False``): a triangle
    filter as wide as the scale, normalised per output sample."""
    scale = n_in / n_out
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    starts, rows = [], []
    for i in range(n_out):
        center = scale * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xsize = min(int(center + support + 0.5), n_in) - xmin
        w = np.maximum(0.0, 1.0 - np.abs((np.arange(xsize) + xmin - center + 0.5) * invscale))
        total = w.sum()
        starts.append(xmin)
        rows.append(w / total if total != 0 else w)
    taps = max(len(r) for r in rows)
    weights = np.zeros((n_out, taps), np.float32)
    for i, r in enumerate(rows):
        weights[i, : len(r)] = r
        if starts[i] + taps > n_in:  # keep every read inside the frame: shift the window left
            shift = starts[i] + taps - n_in
            weights[i] = np.concatenate([np.zeros(shift, np.float32), weights[i, : taps - shift]])
            starts[i] -= shift
    return np.asarray(starts, np.int64), weights


@lru_cache(maxsize=32)
def _row_weights(height: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows and weights of half-pixel linear interpolation of ``n_in`` rows to ``height``
    (those of :func:`~.physics.rows_linear`)."""
    import torch

    from .physics import _linear_weights

    i0, i1, w1 = _linear_weights(height, n_in, 0, height, torch.device("cpu"))
    return i0.numpy().astype(np.int64), i1.numpy().astype(np.int64), w1.numpy().astype(np.float32)


# ---------------------------------------------------------------------- the passes
def reduce(frame: np.ndarray, size: tuple[int, int], threads: int = 1) -> np.ndarray:
    """The (h, w, 3) float32 working copy in [0, 1] of an (H, W, 3+) uint8 ``frame``: torch's
    antialiased bilinear resize of ``frame / 255`` to ``size`` (to float rounding)."""
    k = _kernels()
    frame = np.ascontiguousarray(frame[..., :3])
    height, width = frame.shape[:2]
    h, w = size
    x0, wx = aa_weights(width, w)
    y0, wy = aa_weights(height, h)
    tmp = np.empty((h, width * 3), np.float32)
    _bands(h, threads, lambda r0, r1: k["rows_v"](frame, r0, r1, y0, wy, tmp), rows=8)
    out = np.empty((h, w, 3), np.float32)
    k["cols_h"](tmp, x0, wx, out)
    return out


def recover(
    frame: np.ndarray, wide: np.ndarray, airlight: np.ndarray, t0: float, t_min: float, *,
    with_t: bool, threads: int = 1, out: np.ndarray | None = None, t_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """J (H, W, 3) uint8 and t (H, W) float32 (None unless ``with_t``) of an (H, W, 3) uint8
    ``frame`` (C-contiguous), from the guided coefficients ``wide`` (2, h, W) (a and b at the low
    height, already at the frame's width) and A (3,); ``out`` and ``t_out`` receive them."""
    k = _kernels()
    frame = np.ascontiguousarray(frame[..., :3])
    height, width = frame.shape[:2]
    yi0, yi1, wy = _row_weights(height, wide.shape[1])
    j = out if out is not None else np.empty((height, width, 3), np.uint8)
    if with_t:
        t = t_out if t_out is not None else np.empty((height, width), np.float32)
    else:
        t = np.empty((1, 1), np.float32)
    wide = np.ascontiguousarray(wide, np.float32)
    a3 = np.ascontiguousarray(airlight, np.float32).reshape(3)
    _bands(height, threads, lambda r0, r1: k["recover_rows"](
        frame, r0, r1, wide, yi0, yi1, wy, a3, _F(t0), _F(t_min), j, t, with_t))
    return j, (t if with_t else None)


def reduce_tensor(frame: Any, size: tuple[int, int]) -> Any:
    """:func:`reduce` in torch on the frame's device: (H, W, 3) uint8 tensor -> (1, 3, h, w)."""
    from .physics import resize

    return resize((frame.permute(2, 0, 1)[None].float() / 255.0).contiguous(), size)


def recover_tensor(
    frame: Any, wide: Any, airlight: Any, t0: float, t_min: float, *, with_t: bool, half: bool = False,
    strip_pixels: int = 1 << 20,
) -> tuple[Any, Any]:
    """:func:`recover` in torch on the frame's device, in strips of ``strip_pixels``: (H, W, 3)
    uint8 tensor, ``wide`` (1, 2, h, W), A (3,) -> J (H, W, 3) uint8 and t (H, W) float32 (None
    unless ``with_t``); ``half`` computes in float16 (CUDA), within an 8-bit step or two."""
    import torch

    from .physics import LUMA, rows_linear

    height, width = frame.shape[:2]
    dtype = torch.float16 if half else torch.float32
    j = torch.empty((height, width, 3), dtype=torch.uint8, device=frame.device)
    t_all = torch.empty((height, width), dtype=torch.float32, device=frame.device) if with_t else None
    luma = torch.tensor(LUMA, dtype=dtype, device=frame.device)
    a3 = airlight.reshape(3).to(device=frame.device, dtype=dtype)
    rows = max(1, strip_pixels // max(1, width))
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        ab = rows_linear(wide, height, (r0, r1))[0].to(dtype)  # (2, n, W)
        x = frame[r0:r1].to(dtype) / 255.0
        t = torch.addcmul(ab[1], ab[0], torch.matmul(x, luma)).clamp_(t_min, 1.0)
        if t_all is not None:
            t_all[r0:r1] = t
        r = t.clamp(min=t0).reciprocal_()
        out = torch.lerp(a3, x, r[..., None]).clamp_(0.0, 1.0).mul_(255.0).add_(0.5)
        j[r0:r1] = out.to(torch.uint8)  # truncation: the rounding of every 8-bit output
    return j, t_all


def box_1d(x: np.ndarray, r: int, axis: int) -> np.ndarray | None:
    """:func:`~.physics.box_filter`'s pass along ``axis`` (-1 or -2) of a float32 array, with the
    same numbers; None where the kernels are not here (the caller then uses torch)."""
    k = _kernels()
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


def to_uint8(x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Float values in [0, 1] to uint8, rounded (``x * 255 + 0.5`` truncated): the one rounding
    of every 8-bit output (video frames, 8-bit photos)."""
    out = np.empty(x.shape, np.uint8)
    k = _kernels()
    if k is None or x.dtype != np.float32 or not x.flags.c_contiguous or x.ndim < 2:
        tmp = np.multiply(x, _F(255), dtype=np.float32)
        tmp += _F(0.5)
        np.clip(tmp, 0, 255, out=tmp)
        np.copyto(out, tmp, casting="unsafe")
        return out
    _bands(x.shape[0], threads, lambda r0, r1: k["quantise_rows"](x, r0, r1, out))
    return out
