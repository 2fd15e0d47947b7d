"""Depth and visibility from haze: a transmission map is a depth map, t = exp(−β·d).

The optical depth τ = −ln t is the relative depth (d = τ/β). Points whose distance the user
knows fix the scale: β is fitted by least squares over them, and with it come the metric depth
map d = τ/β and the meteorological visibility V = ln 20 / β ≈ 3.0 / β (the distance at which a
black object's contrast against the horizon falls to 5 %, the WMO's meteorological optical range).

Why the fit is made in t, not in τ: an estimator's error is roughly additive in t (the DCP's
dark-channel residue and ω, ClearNet's upsampled t: a few hundredths wherever t lies), so in τ
the same error grows as 1/t: a far point (t near the floor) would carry a large error in τ and,
through its large distance, the most weight of a fit in τ. Least squares in t weighs each point
by how much its t really says about β (most near t = 1/e), is the maximum-likelihood fit for
additive errors, and stays exact on ideal data. It starts from the closed-form fit in τ with
weights t² (its linearisation) and refines with Gauss–Newton. Clamped points say nothing exact:
t at the method's floor (sky, opaque fog: "at least this far") and t = 1 ("no haze measured")
are left out of the fit with a note naming them, as are points whose t sky protection raised.

Uncertainty comes from the spread of the points about the fit: with n ≥ 2 points the residual
standard deviation s (in t, n − 1 degrees of freedom) gives SE(β) = s / √Σ(dᵢ tᵢ)², propagated
to V (SE(V) = V · SE(β)/β; the 95 % interval maps β's through V = ln 20/β, so it is asymmetric)
and to every pixel (SE(d) = √((d · SE(β)/β)² + (s / (t β))²): the scale's error plus the pixel's
own t error of size s). One point fits exactly and shows no spread: its uncertainties are None.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..api import resolve_dehazer
from ..core import physics
from ..core.arrays import as_array, describe_layout, frame, frame_rgb
from ..core.engine import SKY_SMOOTH, Dehazer
from ..core.options import DehazeOptions
from ..core.run import DehazeResult, Progress, drive, run
from .fit import LN20, DepthFit, KnownDistance, PointReading, as_points, fit_beta

__all__ = [
    "LN20",
    "DepthFit",
    "HazeDepth",
    "KnownDistance",
    "PointReading",
    "estimate",
    "fit_beta",
    "haze_depth",
    "visibility",
]

#: a point's t is the median of a (2r+1)² window around it (a click is never exactly on the pixel meant)
POINT_RADIUS = 2
#: t within this of the method's floor, or of 1, is read as clamped (no exact depth there)
CLAMP_MARGIN = 0.01
#: K of the check that warns about points in flat regions this close to the airlight (sky, opaque
#: fog: half of ClearNet's sky protection K, so only what looks like the airlight itself is named)
SKY_K = 0.1


@dataclass
class HazeDepth:
    """A transmission map read as depth. ``transmission`` (H, W) in (0, 1]; ``airlight`` (3,);
    ``floor`` the method's smallest t; ``image`` the (H, W, 3) float input, for the check of points
    near the airlight; ``sky_protection`` the K the map was made with (> 0: t was raised on
    purpose in flat regions near A, and points there are left out)."""

    transmission: np.ndarray
    airlight: np.ndarray
    floor: float
    image: np.ndarray | None = None
    sky_protection: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = np.asarray(self.transmission, np.float32)
        if t.ndim != 2:
            raise ValueError(f"haze depth reads one (H, W) transmission map, got shape {t.shape}")
        self.transmission = t
        self.airlight = np.asarray(self.airlight, np.float32).reshape(3)

    @classmethod
    def from_result(cls, result: DehazeResult, image: Any = None, floor: float | None = None, *,
                    channel_axis: int | str | None = "auto", value_range: Any = None) -> HazeDepth:
        """The depth in a :class:`DehazeResult` of one image. Its ``strength`` s is undone (τ/s); a
        result made with sky protection needs its input ``image`` (as given to ``dehaze``: uint8,
        uint16 or float, scaled to [0, 1] as the engine does, with the same ``channel_axis`` and
        ``value_range``) so points where t was raised can be left out. ``floor``: the method's
        smallest t (default: the DCP's 1 − ω, ClearNet's default ``t_min``)."""
        from ..core.model import ClearNetConfig

        prov = result.provenance
        strength = float(prov.get("strength", 1.0))
        if strength <= 0:
            raise ValueError("this result was made with strength 0 (t = 1 everywhere): it holds no depth")
        if floor is None:
            dcp = prov.get("dcp")
            floor = max(1.0 - dcp["omega"], 1e-3) if dcp else ClearNetConfig().t_min
        t = np.asarray(result.transmission, np.float32)
        if strength != 1.0:
            t = t ** np.float32(1.0 / strength)
            floor = floor ** (1.0 / strength)
        k = float(prov.get("sky_protection") or 0.0)
        if k > 0 and image is None:
            raise ValueError(
                f"this result was made with sky_protection={k:g}, which raises t near the airlight on "
                "purpose; pass its input as image= so points there can be left out, or dehaze with "
                "sky_protection=0")
        rgb = None
        if image is not None:  # on the engine's scale: a uint8 image is not 255 times too bright
            rgb = _one_rgb(image, channel_axis, value_range, "image= is the one image of the result", "")
            if rgb.shape[:2] != t.shape:
                raise ValueError(f"image= has {rgb.shape[1]}×{rgb.shape[0]} pixels, the result's map "
                                 f"{t.shape[1]}×{t.shape[0]}: pass the image the result was made from")
        return cls(t, np.asarray(result.airlight).reshape(-1)[:3], float(floor), rgb, k, dict(prov))

    # ---------------------------------------------------------------- maps
    @property
    def optical_depth(self) -> np.ndarray:
        """τ = −ln t, the relative depth (d = τ / β); pixels at the floor read as its τ (a lower bound)."""
        return (-np.log(np.clip(self.transmission, 1e-6, 1.0))).astype(np.float32)

    @property
    def beyond(self) -> np.ndarray:
        """Pixels whose t is at the floor: farther than the map can tell."""
        return self.transmission <= self.floor + CLAMP_MARGIN

    # ---------------------------------------------------------------- points
    def _check_inside(self, p: KnownDistance) -> tuple[int, int]:
        h, w = self.transmission.shape
        r, c = round(p.y), round(p.x)
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(f"{p.named()} is outside the image ({w}×{h} pixels: x in [0, {w - 1}], "
                             f"y in [0, {h - 1}])")
        return r, c

    def read(self, points: Iterable[Any]) -> list[PointReading]:
        """Each point's t (median of a small window) and whether the fit may use it; a point outside
        the image is a ``ValueError`` naming it. All points are read in one vectorised pass."""
        pts = as_points(points)
        if not pts:
            return []
        rc = np.array([self._check_inside(p) for p in pts])
        ts = self._window_medians(rc)
        raised = self._near_airlight_all(rc, self.sky_protection)
        flat = self._near_airlight_all(rc, SKY_K if self.sky_protection <= 0 else 0.0)
        out = []
        for k, p in enumerate(pts):
            t, name = float(ts[k]), p.named()
            if raised[k]:
                out.append(PointReading(p, t, False, f"{name}: sky protection raised t there (the image is "
                                        "flat and close to the airlight); left out"))
            elif t >= 1.0 - CLAMP_MARGIN:
                out.append(PointReading(p, t, False, f"{name}: t = {t:.3f}, no haze measured there (t = 1 "
                                        "says distance 0 or no haze), so it cannot tell β; left out"))
            elif t <= self.floor + CLAMP_MARGIN:
                out.append(PointReading(p, t, False, f"{name}: t = {t:.3f} is at the method's floor "
                                        f"({self.floor:.3f}): sky, or haze too dense to read; the map says "
                                        "only that it is farther, so it is left out"))
            elif flat[k]:
                out.append(PointReading(p, t, True, f"{name}: the image there is flat and close to the "
                                        "airlight (sky or dense fog), where t is least reliable; check it"))
            else:
                out.append(PointReading(p, t, True))
        return out

    def _window_medians(self, rc: np.ndarray) -> np.ndarray:
        """The median t of each point's (2r+1)² window (clipped at the borders), all at once."""
        r = POINT_RADIUS
        padded = np.pad(self.transmission.astype(np.float64), r, constant_values=np.nan)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * r + 1, 2 * r + 1))
        return np.nanmedian(windows[rc[:, 0], rc[:, 1]].reshape(len(rc), -1), axis=1)

    def _near_airlight_all(self, rc: np.ndarray, k: float) -> np.ndarray:
        """Whether sky protection with K ``k`` raises t at each point (row, column): the image there
        is flat and within ``k`` of A (sky, opaque fog), judged on a window just large enough for
        its filters; windows of one shape go through one batched filter call."""
        out = np.zeros(len(rc), bool)
        if self.image is None or k <= 0:
            return out
        h, w = self.transmission.shape
        pad = 8
        groups: dict[tuple[int, int, int, int], list[int]] = {}
        for i, (r, c) in enumerate(rc):
            r0, r1, c0, c1 = max(0, r - pad), min(h, r + pad + 1), max(0, c - pad), min(w, c + pad + 1)
            groups.setdefault((r1 - r0, c1 - c0, r - r0, c - c0), []).append(i)
        a = torch.from_numpy(self.airlight)[None]
        for (hh, ww, dr, dc), idx in groups.items():
            crops = np.stack([self.image[rc[i, 0] - dr: rc[i, 0] - dr + hh, rc[i, 1] - dc: rc[i, 1] - dc + ww]
                              for i in idx])
            x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).permute(0, 3, 1, 2)
            half = torch.full((len(idx), 1, hh, ww), 0.5)
            raised = physics.sky_tolerance(half, x, a.expand(len(idx), 3), k, SKY_SMOOTH)
            out[idx] = (raised[:, 0, dr, dc] > 0.5).numpy()
        return out

    def fit(self, points: Iterable[Any]) -> DepthFit:
        """β, V and their uncertainties from points of known distance (see the module docstring).
        Points the fit cannot use are named in ``warnings``; if none is usable, a ``ValueError``
        says why for each."""
        readings = self.read(points)
        if not readings:
            raise ValueError("need at least one point with a known distance (x, y, metres)")
        used = [r for r in readings if r.used]
        if not used:
            raise ValueError("no point can be used: " + "; ".join(r.note for r in readings))
        beta, se, s = fit_beta([r.t for r in used], [r.point.distance for r in used])
        if not (math.isfinite(beta) and beta > 0):  # guards the divisions below (V, depth)
            raise ValueError(f"the points give no usable haze coefficient (β = {beta:g} /m); check their "
                             "distances")
        notes = [r.note for r in readings if r.note]
        if len(used) == 1:
            notes.append("one point: no spread, so no uncertainty can be estimated; add a point at "
                         "another distance")
        max_depth = -math.log(self.floor + CLAMP_MARGIN) / beta
        return DepthFit(beta, se, s, tuple(readings), max_depth, tuple(notes))


def _one_rgb(image: Any, channel_axis: int | str | None, value_range: Any, what: str,
             hint: str) -> np.ndarray:
    """The one image of ``image`` as (H, W, 3) float32 on the engine's scale (:func:`frame`); an
    array of more frames is refused with ``what`` and ``hint`` around its frame count."""
    arr = as_array(image)
    layout = describe_layout(tuple(np.shape(arr)), channel_axis)
    if layout.n_frames != 1:
        raise ValueError(f"{what}; this array holds {layout.n_frames} frames (shape "
                         f"{tuple(np.shape(arr))}){hint}")
    return frame_rgb(frame(arr, 0, layout, value_range), layout.channels)


def estimate(dehazer: Dehazer, image: Any, *, channel_axis: int | str | None = "auto",
             value_range: Any = None) -> Generator[Progress, None, HazeDepth]:
    """The haze depth of one image, as a generator of the run loop's progress (for workers); the
    method's own t: no sky protection, strength 1 (both change t on purpose)."""
    rgb = _one_rgb(image, channel_axis, value_range, "haze depth reads one image", ": pass one of them")
    own_t = DehazeOptions(channel_axis=-1, value_range=(0.0, 1.0), sky_protection=0.0, strength=1.0)
    res = yield from run(dehazer, rgb, own_t)
    return HazeDepth(res.transmission, res.airlight, dehazer.estimator.t_floor, rgb, 0.0, res.provenance)


def haze_depth(image: Any, *, method: str | None = None, model: Any = None, device: str = "auto",
               channel_axis: int | str | None = "auto", value_range: Any = None) -> HazeDepth:
    """The transmission of one image read as depth.

    Parameters
    ----------
    image : array-like
        One image (as for :func:`napari_clearnet.dehaze`; a stack is refused: pass one frame).
    method, model, device
        As for :func:`napari_clearnet.dehaze`.
    channel_axis : int, "auto" or None, default "auto"
        Which axis holds the colours.
    value_range : (float, float), optional
        Pixel values that become black and white.

    Returns
    -------
    HazeDepth
        ``.optical_depth`` is the relative depth −ln t; ``.fit(points)`` gives β, the visibility
        V and the metric depth.
    """
    dehazer = resolve_dehazer(method, model, device)
    return drive(estimate(dehazer, image, channel_axis=channel_axis, value_range=value_range))


def visibility(image: Any, points: Iterable[Any], **kwargs: Any) -> DepthFit:
    """β and the meteorological visibility V = ln 20 / β of one image.

    Parameters
    ----------
    image : array-like
        One image.
    points : iterable
        Points of known distance, ``(x, y, metres[, label])`` or :class:`KnownDistance`.
    **kwargs
        As for :func:`haze_depth`.

    Returns
    -------
    DepthFit
        β with its standard error, V, and the readings of the points.

    Raises
    ------
    ValueError
        No point can be used, or the points give no usable haze coefficient.
    """
    return haze_depth(image, **kwargs).fit(points)
