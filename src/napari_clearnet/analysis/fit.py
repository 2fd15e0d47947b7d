"""Points of known distance and the fit of β through them: t = exp(−β d), by least squares in t,
with the standard error from the spread of the points (:class:`DepthFit`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._util.validate import check_number

__all__ = ["BIAS_CAVEAT", "DISAGREE_SD_T", "DISTANCE_RANGE", "LN20", "MAX_POINTS", "DepthFit",
           "KnownDistance", "PointReading", "as_points", "fit_beta"]

#: ln(1/0.05): V = LN20 / β is the distance at which contrast falls to 5 % (meteorological optical range)
LN20 = math.log(20.0)

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


#: what every printed β and V must carry: the ± is the points' spread, not the method's bias
BIAS_CAVEAT = ("the ± is the points' spread only: β and V also inherit the method's bias in reading "
               "haze (V came out 10–30 % long on scenes of known depth, more in dense haze; docs/depth.md)")
#: points scattered more than this (in t) about the fit disagree with t = exp(−β d)
DISAGREE_SD_T = 0.05


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

    @property
    def disagrees(self) -> bool:
        """Whether three or more points scatter about the fit more than :data:`DISAGREE_SD_T` in t:
        they disagree with the haze model (a wrong distance, patchy haze, a point on a light)."""
        return self.n_used >= 3 and self.residual_sd is not None and self.residual_sd > DISAGREE_SD_T

    @property
    def caveats(self) -> tuple[str, ...]:
        """What to keep in mind when reading β and V: always :data:`BIAS_CAVEAT`; and when the
        points disagree with the haze model, that."""
        out = [BIAS_CAVEAT]
        if self.disagrees:
            out.insert(0, f"the points disagree with the haze model t = exp(-β d): their t scatter by "
                          f"{self.residual_sd:.2f} about the fit (over {DISAGREE_SD_T:g}); check their "
                          "distances, or the haze is not uniform")
        return tuple(out)

    def summary(self) -> str:
        """One line: β and V with their standard errors (or why there are none), and the caveats."""
        if self.beta_se is None:
            line = (f"β = {self.beta:.4g} /m, V = {self.visibility:.4g} m (one point: no spread, so no "
                    "uncertainty; add a point at another distance)")
        else:
            line = (f"β = {self.beta:.4g} ± {self.beta_se:.2g} /m, V = {self.visibility:.4g} ± "
                    f"{self.visibility_se:.2g} m (SE from {self.n_used} points)")
        return line + "; " + "; ".join(self.caveats)

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
            "points_disagree_with_model": self.disagrees, "caveats": list(self.caveats),
            "points_used": self.n_used, "max_depth_m": self.max_depth,
            "uncertainty": ("standard errors from the spread of the points about the fit" if self.beta_se
                            is not None else "one point: no spread, so no uncertainty can be estimated"),
            "model": "t = exp(-beta * d), least squares in t; V = ln(20) / beta",
            "points": pts, "warnings": list(self.warnings),
        }
