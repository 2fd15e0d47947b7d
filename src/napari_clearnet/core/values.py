"""Pixel values: dtypes, byte order, min and max in one pass, and the range rule.

The pieces :func:`~.arrays.pixel_range` (the one value range of an array), :func:`~.arrays.to_float01`
and :class:`~.arrays.FrameScaler` are made of; no layouts here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._util.validate import option

__all__ = ["check_value_range", "native"]

#: a guessed 8- or 16-bit range must put the brightest colour value at least this high: hazy
#: photos are bright (their haze is near white), so a guess that leaves the brightest pixel below a
#: quarter of the range (float data up to 2.5 read as 8-bit, 12-bit data read as 16-bit) is wrong
MIN_BRIGHTEST = 0.25


def native(a: np.ndarray) -> np.ndarray:
    """Big-endian data (FITS, raw buffers) in native byte order, so ``>u2`` counts as uint16."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def check_dtype(dtype: np.dtype) -> None:
    if dtype.kind == "b" or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
        return
    raise ValueError(f"unsupported pixel dtype {dtype}; accepted: bool, integer or float arrays")


def check_value_range(value_range: Any) -> tuple[float, float]:
    """``(low, high)``: two finite numbers with high > low."""
    name = option("value_range")
    try:
        if isinstance(value_range, str | bytes):
            raise TypeError
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (low, high), got {value_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"{name} must be two finite numbers with high > low, got {value_range!r}")
    return lo, hi


def min_max_bad(a: Any) -> tuple[float, float, int]:
    """(min, max, count of NaN/inf) in one pass; dask arrays are read once, chunk by chunk."""
    if is_lazy(a):
        import dask
        import dask.array as da

        if np.issubdtype(a.dtype, np.floating):
            lo, hi, n_bad = dask.compute(da.nanmin(a), da.nanmax(a), (~da.isfinite(a)).sum())
        else:
            lo, hi, n_bad = (*dask.compute(a.min(), a.max()), 0)
        return float(lo), float(hi), int(n_bad)
    a = native(np.asarray(a))
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = min_max(a)
        if math.isfinite(lo) and math.isfinite(hi):  # NaN would show in both, inf in one
            return lo, hi, 0
        finite = np.isfinite(a)
        n_bad = int(a.size - np.count_nonzero(finite))
        if n_bad:
            if n_bad == a.size:
                return float("nan"), float("nan"), n_bad
            return float(a[finite].min()), float(a[finite].max()), n_bad
    return float(a.min()), float(a.max()), 0


def min_max(a: np.ndarray) -> tuple[float, float]:
    """(min, max) of a numpy array in one multithreaded pass where torch can view it (NaN if any
    value is NaN), else numpy's two passes."""
    if (a.size and a.flags.writeable and a.dtype in (np.float32, np.float64, np.float16)
            and all(st >= 0 for st in a.strides)):
        import torch

        try:
            lo, hi = torch.aminmax(torch.from_numpy(a))
            return float(lo), float(hi)
        except (TypeError, RuntimeError, ValueError):
            pass
    return float(a.min()), float(a.max())



def decide_range(lo: float, hi: float, bad: int, dtype: np.dtype) -> tuple[float, float]:
    """The range rule of :func:`pixel_range`, from the colour values' min, max and NaN count."""
    if bad:
        raise ValueError(
            f"image has {bad} NaN or infinite pixel values; replace them first "
            "(for example numpy.nan_to_num(image))"
        )
    if lo < -1e-3:
        raise ValueError(
            f"image has negative values (min {lo:g}); pass {option('value_range_hint')} to rescale it"
        )
    if hi <= 1.0 + 1e-3:
        return 0.0, 1.0
    if np.issubdtype(dtype, np.floating) and hi <= 2.0:
        raise ValueError(
            f"float image values reach {hi:g}, just above 1: if it is [0, 1] data that overshot "
            f"(resampling, sharpening), pass {option('value_range_01_hint')} to clip it; if it is 8-bit "
            f"data, pass {option('value_range_255_hint')}"
        )
    if hi > 65535.0:
        raise ValueError(f"image values reach {hi:g}, beyond 16-bit range; pass {option('value_range_hint')}")
    guess = 255.0 if hi <= 255.0 else 65535.0
    if hi < guess * MIN_BRIGHTEST:  # a guess that would make the image nearly black is no guess
        kind = "float" if np.issubdtype(dtype, np.floating) else "integer"
        bits = "8" if guess == 255.0 else "16"
        raise ValueError(
            f"{kind} image values reach {hi:g}: read as {bits}-bit data (0-{guess:g}) the image would "
            f"be nearly black (at most {hi / guess:.1%} bright); if {hi:g} is its white (linear, HDR, "
            f"12-bit or raw data), pass {_range_hint(_round_up(hi))}; if it is a dark "
            f"{bits}-bit image, pass {_range_hint(guess)}"
        )
    return 0.0, guess


def _range_hint(high: float) -> str:
    """``value_range=(0, high)`` as the caller spells it (``--value-range 0,high`` on the CLI)."""
    name = option("value_range")
    return f"{name} 0,{high:g}" if name.startswith("--") else f"{name}=(0, {high:g})"


def _round_up(hi: float) -> float:
    """A tidy white level at or above ``hi`` for messages: 2.5 -> 2.5, 4000 -> 4095 (12 bits)."""
    if hi >= 64 and hi.is_integer():
        return float((1 << math.ceil(math.log2(hi + 1))) - 1)
    tidy = float(f"{hi:.3g}")
    return tidy if tidy >= hi else hi


def is_lazy(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "dask"
