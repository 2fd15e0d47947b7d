"""Results that cannot be right are errors, not outputs.

Every frame the engine recovers is checked with cheap reductions (t at the method's working
resolution, A, and J on rows of :data:`SAMPLES` pixels in all; all of J only when those are flat):
t, A and J must be finite, and J must not be flat (all black, all white, one grey) where the
input frame was not. A result that fails raises
:class:`ResultError`, naming the frame and what is wrong, so a broken model or a numerical
overflow never becomes a black PNG with exit status 0.

Weights are held to the same rule before any user image sees them: :func:`probe_weights` runs a
freshly loaded model once on a small synthetic hazy image (:func:`probe_image`) and refuses
weights whose result is non-finite, flat or nearly black (finite weights scaled up until the
network overflows, weights of the right shape but the wrong values).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import ResultError, WeightsError

__all__ = ["FLAT", "ResultError", "check_frame", "probe_image", "probe_weights"]

#: J whose values all lie within this (one 8-bit step) is flat: one colour, black or white
FLAT = 1.0 / 255
#: an input whose values spread over at least this is not flat (a flat J from it is wrong)
INPUT_SPREAD = 4.0 / 255
#: pixels of J read on the way out, as whole rows (the whole frame only when these are flat)
SAMPLES = 1 << 16
#: on the probe image a good model keeps at least this fraction of the input's mean brightness
PROBE_MEAN_RATIO = 0.25


def _min_max(a: np.ndarray | torch.Tensor, *, large: bool = False) -> tuple[float, float]:
    """(min, max); NaN if any value is NaN. Small arrays go through numpy on this thread (torch's
    thread pool costs more to wake than they take); ``large`` ones through torch's threads."""
    if isinstance(a, torch.Tensor) and a.device.type == "cpu" and not large:
        a = a.detach().numpy()
    if isinstance(a, np.ndarray) and not large:
        return float(np.min(a)), float(np.max(a))
    lo, hi = torch.aminmax(torch.from_numpy(a) if isinstance(a, np.ndarray) else a)
    return float(lo), float(hi)


def _sample(image: np.ndarray) -> np.ndarray:
    """About :data:`SAMPLES` pixels of an (H, W, 3) image: whole rows spread over its height
    (contiguous memory, so reading them costs microseconds)."""
    h, w = image.shape[:2]
    return image[:: max(1, h // max(1, SAMPLES // max(1, w)))]


def check_frame(image: np.ndarray, transmission: torch.Tensor, airlight: np.ndarray,
                frame: torch.Tensor, index: int | None = None) -> None:
    """Raise :class:`ResultError` when a recovered frame cannot be right: A (3,) or the estimated
    t (at the method's working resolution, where any NaN starts) not finite, or J (H, W, 3) not
    finite or flat although the input ``frame`` (its RGB in [0, 1]; the working copy on the 8-bit
    path) is not; J may be float in [0, 1] or uint8.

    Cheap: the full-resolution J is read on rows of :data:`SAMPLES` pixels in all, and in full only
    when those are flat (finite t and A on a finite input give a finite J, as t ≥ t0)."""
    where = "the result" if index is None else f"frame {index}: the result"
    a = np.asarray(airlight, np.float64)
    t_lo, t_hi = _min_max(transmission)
    eight = image.dtype == np.uint8  # the 8-bit path's J
    step = 1 if eight else FLAT  # one 8-bit step in J's own units
    j_lo, j_hi = _min_max(_sample(image))
    if not j_hi - j_lo >= step:  # looks flat (or NaN) on the rows read: read all of it
        j_lo, j_hi = _min_max(image, large=not eight)
    flat = not j_hi - j_lo >= step
    if eight:
        j_lo, j_hi = j_lo / 255, j_hi / 255
    bad = [name for name, ok in (("the airlight A", bool(np.isfinite(a).all())),
                                 ("the transmission t", math.isfinite(t_lo) and math.isfinite(t_hi)),
                                 ("the image J", math.isfinite(j_lo) and math.isfinite(j_hi))) if not ok]
    if bad:
        raise ResultError(
            f"{where} is not finite (NaN or infinite values in {', '.join(bad)}): the model "
            "overflowed, so its weights are not usable here (use other weights, or method='dcp')"
        )
    if flat:
        x_lo, x_hi = _min_max(frame, large=True)
        if x_hi - x_lo >= INPUT_SPREAD:
            tone = "black" if j_hi < FLAT else "white" if j_lo > 1 - FLAT else f"one grey ({j_lo:.3f})"
            raise ResultError(
                f"{where} is flat ({tone} everywhere) although the input is not (values "
                f"{x_lo:.3f}-{x_hi:.3f}); t is {t_lo:.3g}-{t_hi:.3g} and A {np.round(a, 3).tolist()}: "
                "the model's estimate is broken (lower strength, or use other weights or method='dcp')"
            )


def probe_image(height: int = 48, width: int = 64) -> np.ndarray:
    """A small synthetic hazy RGB image in [0, 1] (texture under haze that thickens to the top)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    clear = np.stack([(x % 17) / 17, (y % 13) / 13, ((x + y) % 11) / 11], -1) * 0.6 + 0.1
    t = np.exp(-1.5 * (1 - y / height))[..., None]
    return np.clip(clear * t + 0.85 * (1 - t), 0, 1).astype(np.float32)


def probe_weights(dehazer: Any, source: str) -> None:
    """Run a freshly loaded model once on :func:`probe_image`; weights whose result is not finite,
    flat or nearly black (mean below :data:`PROBE_MEAN_RATIO` of the input's) are refused with a
    :class:`~napari_clearnet.weights.WeightsError` naming ``source``."""


    img = probe_image()
    try:
        res = dehazer.dehaze(img, sky_protection=0.0)
    except ResultError as exc:
        raise WeightsError(f"{source}: these weights fail on a test image: {exc}") from None
    mean_in, mean_out = float(img.mean()), float(res.image.mean())
    if mean_out < PROBE_MEAN_RATIO * mean_in:
        raise WeightsError(
            f"{source}: these weights turn a test image of mean brightness {mean_in:.2f} into one of "
            f"{mean_out:.3f} (nearly black); they are not usable weights (a diverged or damaged "
            "training run?)"
        )
