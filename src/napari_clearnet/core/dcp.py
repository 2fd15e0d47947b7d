"""The classic Dark Channel Prior (He, Sun and Tang, CVPR 2009 / TPAMI 2011).

It is both the baseline every user can get for free and, run on a reduced copy with the
improvements below, the prior that ClearNet's network refines. One function serves both so the
two can never drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from . import physics

__all__ = ["DCPParams", "airlight_sources", "estimate", "estimate_with_sources"]


@dataclass(frozen=True)
class DCPParams:
    """Parameters of the Dark Channel Prior.

    The defaults are the classic configuration (15×15 patch, ω 0.95, guided refinement, t0 0.1,
    A from the brightest pixel among the top 0.1 % of the dark channel).
    """

    patch: int = 15
    omega: float = 0.95
    t0: float = 0.1
    top_fraction: float = 0.001
    airlight_rule: str = "brightest"
    #: guided-filter radius in pixels; ``None`` means one twelfth of the shorter side
    guided_radius: int | None = None
    guided_eps: float = 1e-3
    #: sky tolerance K (0 turns it off); see :func:`physics.sky_tolerance`
    sky_k: float = 0.0

    def __post_init__(self) -> None:
        if self.patch < 1:
            raise ValueError(f"patch must be >= 1, got {self.patch}")
        if not 0.0 < self.omega <= 1.0:
            raise ValueError(f"omega must be in (0, 1], got {self.omega}")
        if not 0.0 < self.t0 < 1.0:
            raise ValueError(f"t0 must be in (0, 1), got {self.t0}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if self.airlight_rule not in ("mean", "brightest"):
            raise ValueError(f"airlight_rule must be 'mean' or 'brightest', got {self.airlight_rule!r}")

    def radius_for(self, height: int, width: int) -> int:
        if self.guided_radius is not None:
            return int(self.guided_radius)
        return max(1, round(min(height, width) / 12))

    def to_dict(self) -> dict:
        return asdict(self)


def estimate(
    image: torch.Tensor, params: DCPParams = DCPParams(), airlight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Estimate haze with the dark channel prior.

    ``image`` is (B, 3, H, W) in [0, 1]. ``airlight`` (B, 3) overrides the estimate of A.
    Returns ``(t_raw, t, A)``: the blocky raw transmission, the guided-filter refined one
    (both (B, 1, H, W) in [0, 1]) and A (B, 3).
    """
    return estimate_with_sources(image, params, airlight)[:3]


def estimate_with_sources(
    image: torch.Tensor, params: DCPParams = DCPParams(), airlight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`estimate`, and the (B, k) flat indices of the pixels A was estimated from (the most
    haze-opaque first; None when ``airlight`` was given)."""
    dark = physics.dark_channel(image, params.patch)
    sources = None
    if airlight is None:
        sources = physics.top_dark_indices(dark, params.top_fraction)
        airlight = physics.airlight_top_dark(image, dark, params.top_fraction, params.airlight_rule, sources)
    t_raw = physics.transmission_from_dark(image, airlight, params.omega, params.patch)
    t_raw = physics.sky_tolerance(t_raw, image, airlight, params.sky_k)
    r = params.radius_for(*image.shape[-2:])
    t = physics.guided_filter(image, t_raw, r, params.guided_eps).clamp(0.0, 1.0)
    return t_raw, t, airlight, sources


def airlight_sources(image: torch.Tensor, params: DCPParams) -> torch.Tensor:
    """The (B, k) flat indices of the pixels :func:`estimate` takes A from, without the rest."""
    return physics.top_dark_indices(physics.dark_channel(image, params.patch), params.top_fraction)
