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

import warnings
from functools import lru_cache
from typing import Any

import numpy as np

from . import kernels

__all__ = ["aa_weights", "available", "borrow", "recover", "recover_tensor", "reduce", "reduce_tensor",
           "to_uint8"]

_F = np.float32


#: whether the compiled kernels run here (else the 8-bit path runs in torch)
available = kernels.available


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
    k = kernels.compiled()
    frame = np.ascontiguousarray(frame[..., :3])
    height, width = frame.shape[:2]
    h, w = size
    x0, wx = aa_weights(width, w)
    y0, wy = aa_weights(height, h)
    tmp = np.empty((h, width * 3), np.float32)
    kernels.bands(h, threads, lambda r0, r1: k["rows_v"](frame, r0, r1, y0, wy, tmp), rows=8)
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
    k = kernels.compiled()
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
    kernels.bands(height, threads, lambda r0, r1: k["recover_rows"](
        frame, r0, r1, wide, yi0, yi1, wy, a3, _F(t0), _F(t_min), j, t, with_t))
    return j, (t if with_t else None)


def borrow(frame: np.ndarray) -> Any:
    """A tensor over ``frame``'s memory, without a copy, for a frame that is only read: decoded
    frames and files' pixels may be read-only, which torch warns about once per program (the
    warning is for code that would write through the tensor; the 8-bit path does not)."""
    import torch

    if frame.flags.writeable:
        return torch.from_numpy(frame)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(frame)


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


def to_uint8(x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Float values in [0, 1] to uint8, rounded (``x * 255 + 0.5`` truncated): the one rounding
    of every 8-bit output (video frames, 8-bit photos)."""
    out = np.empty(x.shape, np.uint8)
    k = kernels.compiled()
    if k is None or x.dtype != np.float32 or not x.flags.c_contiguous or x.ndim < 2:
        tmp = np.multiply(x, _F(255), dtype=np.float32)
        tmp += _F(0.5)
        np.clip(tmp, 0, 255, out=tmp)
        np.copyto(out, tmp, casting="unsafe")
        return out
    kernels.bands(x.shape[0], threads, lambda r0, r1: k["quantise_rows"](x, r0, r1, out))
    return out
