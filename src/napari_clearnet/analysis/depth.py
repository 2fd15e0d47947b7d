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
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .._util.validate import check_number
from ..api import resolve_dehazer
from ..core import physics
from ..core.arrays import FrameScaler, as_array, describe_layout, frame_rgb, frames
from ..core.engine import SKY_SMOOTH, Dehazer
from ..core.options import DehazeOptions
from ..core.run import DehazeResult, Progress, drive, run

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

#: ln(1/0.05): V = LN20 / β is the distance at which contrast falls to 5 % (meteorological optical range)
LN20 = math.log(20.0)
#: a point's t is the median of a (2r+1)² window around it (a click is never exactly on the pixel meant)
POINT_RADIUS = 2
#: t within this of the method's floor, or of 1, is read as clamped (no exact depth there)
CLAMP_MARGIN = 0.01
#: K of the check that warns about points in flat regions this close to the airlight (sky, opaque
#: fog: half of ClearNet's sky protection K, so only what looks like the airlight itself is named)
SKY_K = 0.1
#: distances a point may have, in metres: 1 cm to 1000 km (beyond, β under- or overflows and
#: no haze measurement means anything)
DISTANCE_RANGE = "[0.01, 1e6]"
#: points one fit takes at most (a pasted survey; every point is read in one vectorised pass)
MAX_POINTS = 100_000


@dataclass(frozen=True)
class KnownDistance:
    """A pixel whose distance from the camera is known: ``x`` is the column, ``y`` the row (pixels
    of the image, 0-based), ``distance`` in metres, ``label`` how messages name it."""

    x: float
    y: float
    distance: float
    label: str = ""

    def named(self) -> str:
        return f"{self.label} (x={self.x:g}, y={self.y:g})"


def as_points(points: Iterable[Any]) -> list[KnownDistance]:
    """Points as :class:`KnownDistance`: objects, ``(x, y, metres[, label])`` tuples or mappings with
    ``x``, ``y``, ``distance`` (and ``label``); unnamed ones become ``point 1``, ``point 2``, …"""
    out = []
    for i, p in enumerate(points if points is not None else ()):
        default = f"point {i + 1}"
        if isinstance(p, KnownDistance):
            kd = p
        elif isinstance(p, Mapping):
            try:
                kd = KnownDistance(p["x"], p["y"], p["distance"], str(p.get("label") or ""))
            except KeyError:
                raise ValueError(f"{default}: needs keys x, y and distance, got {sorted(p)}") from None
        elif isinstance(p, list | tuple) and len(p) in (3, 4):
            kd = KnownDistance(p[0], p[1], p[2], str(p[3]) if len(p) == 4 else "")
        else:
            raise ValueError(f"{default}: expected (x, y, metres[, label]) or a KnownDistance, got {p!r}")
        kd = replace(kd, label=kd.label or default)
        for name in ("x", "y"):
            check_number(getattr(kd, name), f"{kd.label}: {name}")
        d = check_number(kd.distance, f"{kd.named()}: distance")
        if d <= 0:
            raise ValueError(f"{kd.named()}: distance must be a positive number of metres, "
                             f"got {kd.distance!r}")
        d = check_number(d, f"{kd.named()}: distance (metres)", DISTANCE_RANGE)
        out.append(replace(kd, x=float(kd.x), y=float(kd.y), distance=float(d)))
        if len(out) > MAX_POINTS:
            raise ValueError(f"more than {MAX_POINTS} points of known distance; a fit needs a few "
                             "well-spread ones (thin the survey out)")
    return out


@dataclass(frozen=True)
class PointReading:
    """What the map says at a point: its t, and whether the fit may use it (``note`` says why not,
    or what to check)."""

    point: KnownDistance
    t: float
    used: bool
    note: str = ""

    @property
    def optical_depth(self) -> float:
        """τ = −ln t at the point (proportional to its distance)."""
        return -math.log(max(self.t, 1e-12))


def fit_beta(t: Any, distance: Any) -> tuple[float, float | None, float | None]:
    """β (per metre) by least squares in t over points with transmission ``t`` at ``distance``
    metres (model t = exp(−β d); see the module docstring), its standard error and the residual
    standard deviation s in t (both None for one point). Needs 0 < t < 1 and d > 0."""
    t = np.asarray(t, np.float64).reshape(-1)
    d = np.asarray(distance, np.float64).reshape(-1)
    if t.size == 0 or t.shape != d.shape:
        raise ValueError(f"need as many t values as distances, at least one; got {t.size} and {d.size}")
    if not (np.all((t > 0) & (t < 1)) and np.all(d > 0)):
        raise ValueError("t must be in (0, 1) and distances positive")
    tau = -np.log(t)
    w = t * t  # the fit in τ weighted as the fit in t (δτ = δt / t)
    beta = float(np.sum(w * d * tau) / np.sum(w * d * d))

    def sse(b: float) -> float:
        return float(np.sum((t - np.exp(-b * d)) ** 2))

    for _ in range(100):  # Gauss–Newton on r = t − exp(−βd), step halved until S falls
        m = np.exp(-beta * d)
        g = d * m  # ∂r/∂β
        step = -float(np.sum(g * (t - m)) / np.sum(g * g))
        s0, k = sse(beta), 1.0
        while (beta + k * step <= 0 or sse(beta + k * step) > s0) and k > 1e-6:
            k /= 2
        if k <= 1e-6:
            break
        beta += k * step
        if abs(k * step) <= 1e-13 * beta:
            break
    if t.size == 1:
        return beta, None, None
    g = d * np.exp(-beta * d)
    s = math.sqrt(sse(beta) / (t.size - 1))
    return beta, s / math.sqrt(float(np.sum(g * g))), s


@dataclass(frozen=True)
class DepthFit:
    """β from points of known distance, V and their uncertainties (None: one point, no spread).

    ``beta`` is in 1/m, ``visibility`` in m; ``residual_sd`` is the spread s of the points about
    the fit, in t; ``max_depth`` the farthest distance the map can tell (t at the floor);
    ``readings`` every point with its t and whether it was used; ``warnings`` what to check.
    """

    beta: float
    beta_se: float | None
    residual_sd: float | None
    readings: tuple[PointReading, ...]
    max_depth: float
    warnings: tuple[str, ...] = ()

    @property
    def n_used(self) -> int:
        return sum(r.used for r in self.readings)

    @property
    def visibility(self) -> float:
        """V = ln 20 / β (m)."""
        return LN20 / self.beta

    @property
    def visibility_se(self) -> float | None:
        """SE(V) = V · SE(β) / β (first order)."""
        return None if self.beta_se is None else self.visibility * self.beta_se / self.beta

    @property
    def beta_ci95(self) -> tuple[float, float] | None:
        """β ± t₀.₉₇₅(n − 1) · SE(β), the lower end at least 0."""
        if self.beta_se is None:
            return None
        from scipy.stats import t as student

        half = float(student.ppf(0.975, self.n_used - 1)) * self.beta_se
        return max(0.0, self.beta - half), self.beta + half

    @property
    def visibility_ci95(self) -> tuple[float, float] | None:
        """β's interval mapped through V = ln 20 / β (inf when β's reaches 0)."""
        ci = self.beta_ci95
        if ci is None:
            return None
        return LN20 / ci[1], (LN20 / ci[0] if ci[0] > 0 else math.inf)

    def depth(self, optical_depth: np.ndarray) -> np.ndarray:
        """Metres from τ = −ln t: d = τ / β."""
        return (np.asarray(optical_depth, np.float32) / np.float32(self.beta)).astype(np.float32)

    def depth_se(self, transmission: np.ndarray) -> np.ndarray | None:
        """Per-pixel SE of the depth: √((d · SE(β)/β)² + (s / (t β))²); None for one point."""
        if self.beta_se is None or self.residual_sd is None:
            return None
        t = np.clip(np.asarray(transmission, np.float32), 1e-6, 1.0)
        d = -np.log(t) / np.float32(self.beta)
        scale = d * np.float32(self.beta_se / self.beta)
        own = np.float32(self.residual_sd / self.beta) / t
        return np.sqrt(scale * scale + own * own).astype(np.float32)

    def summary(self) -> str:
        """One line: β and V with their standard errors (or why there are none)."""
        if self.beta_se is None:
            return (f"β = {self.beta:.4g} /m, V = {self.visibility:.4g} m (one point: no spread, so no "
                    "uncertainty; add a point at another distance)")
        return (f"β = {self.beta:.4g} ± {self.beta_se:.2g} /m, V = {self.visibility:.4g} ± "
                f"{self.visibility_se:.2g} m (SE from {self.n_used} points)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers (metres, 1/m; None where undefined)."""
        pts = []
        for r in self.readings:
            p = r.point
            pred = math.exp(-self.beta * p.distance)
            pts.append({"label": p.label, "x": p.x, "y": p.y, "distance_m": p.distance, "t": r.t,
                        "optical_depth": r.optical_depth, "used": r.used, "note": r.note or None,
                        "fitted_t": pred, "residual_t": r.t - pred,
                        "depth_from_map_m": r.optical_depth / self.beta})
        return {
            "beta_per_m": self.beta, "beta_se_per_m": self.beta_se, "beta_ci95_per_m": self.beta_ci95,
            "visibility_m": self.visibility, "visibility_se_m": self.visibility_se,
            "visibility_ci95_m": self.visibility_ci95, "residual_sd_t": self.residual_sd,
            "points_used": self.n_used, "max_depth_m": self.max_depth,
            "uncertainty": ("standard errors from the spread of the points about the fit" if self.beta_se
                            is not None else "one point: no spread, so no uncertainty can be estimated"),
            "model": "t = exp(-beta * d), least squares in t; V = ln(20) / beta",
            "points": pts, "warnings": list(self.warnings),
        }


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
    def from_result(cls, result: DehazeResult, image: Any = None, floor: float | None = None) -> HazeDepth:
        """The depth in a :class:`DehazeResult` of one image. Its ``strength`` s is undone (τ/s); a
        result made with sky protection needs its input ``image`` (float RGB in [0, 1]) so points
        where t was raised can be left out. ``floor``: the method's smallest t (default: the DCP's
        1 − ω, ClearNet's default ``t_min``)."""
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
        rgb = None if image is None else np.asarray(image, np.float32)
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


def estimate(dehazer: Dehazer, image: Any, *, channel_axis: int | str | None = "auto",
             value_range: Any = None) -> Generator[Progress, None, HazeDepth]:
    """The haze depth of one image, as a generator of the run loop's progress (for workers); the
    method's own t: no sky protection, strength 1 (both change t on purpose)."""
    image = as_array(image)
    layout = describe_layout(tuple(np.shape(image)), channel_axis)
    if layout.n_frames != 1:
        raise ValueError(f"haze depth reads one image; this array holds {layout.n_frames} frames (shape "
                         f"{tuple(np.shape(image))}): pass one of them")
    scaled = FrameScaler(image, layout, value_range).scale([frames(image, layout)[0]])[0]
    rgb = frame_rgb(scaled, layout.channels)
    own_t = DehazeOptions(channel_axis=-1, value_range=(0.0, 1.0), sky_protection=0.0, strength=1.0)
    res = yield from run(dehazer, rgb, own_t)
    return HazeDepth(res.transmission, res.airlight, dehazer.estimator.t_floor, rgb, 0.0, res.provenance)


def haze_depth(image: Any, *, method: str | None = None, model: Any = None, device: str = "auto",
               channel_axis: int | str | None = "auto", value_range: Any = None) -> HazeDepth:
    """The transmission of one image read as depth (:class:`HazeDepth`): ``.optical_depth`` is the
    relative depth, ``.fit(points)`` gives β, V and the metric depth. ``method``, ``model`` and
    ``device`` as for :func:`napari_clearnet.dehaze`."""
    dehazer = resolve_dehazer(method, model, device)
    return drive(estimate(dehazer, image, channel_axis=channel_axis, value_range=value_range))


def visibility(image: Any, points: Iterable[Any], **kwargs: Any) -> DepthFit:
    """β and the meteorological visibility V = ln 20 / β of one image from points of known distance
    (``(x, y, metres[, label])``); ``kwargs`` as for :func:`haze_depth`."""
    return haze_depth(image, **kwargs).fit(points)
