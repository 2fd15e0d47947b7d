"""Training objectives for ClearNet.

Two families:

* the original ClearNet physics losses on real hazy photos (dark channel of J, colour constancy,
  total variation of t), plus an exposure guard. Alone they have an attractor: the dark-channel
  loss always prefers less transmission and a brighter A, i.e. a black, over-dehazed image;
* **self-supervised re-hazing pseudo-pairs** (the main signal): dehaze a real photo with the
  prior, haze the result again with a *known* transmission t′ = exp(−β′ d) and airlight A′, and
  supervise the network on what is known (optical depth −ln t and A). It teaches the per-image
  haze amount and penalises doing nothing (t = 1) as much as over-dehazing.

Every weight is applied exactly once, in :meth:`Objective.total`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from napari_clearnet.core import physics
from napari_clearnet.core.model import check_keys

__all__ = [
    "LossWeights",
    "Objective",
    "PseudoPairs",
    "color_constancy_loss",
    "dark_channel_loss",
    "exposure_loss",
    "make_pseudo_pairs",
    "pseudo_pair_losses",
    "tv_loss",
]


def dark_channel_loss(j: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """Mean dark channel of J: haze-free outdoor images have a dark channel near 0 (He et al.)."""
    return physics.dark_channel(j, patch).mean()


def color_constancy_loss(j: torch.Tensor) -> torch.Tensor:
    """Zero-DCE colour constancy: squared differences of J's channel means (grey-world)."""
    m = j.mean((2, 3))  # (B, 3)
    r, g, b = m[:, 0], m[:, 1], m[:, 2]
    return ((r - g) ** 2 + (r - b) ** 2 + (g - b) ** 2).mean()


def tv_loss(t: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of t (mean absolute neighbour difference): smooth maps."""
    dy = (t[..., 1:, :] - t[..., :-1, :]).abs().mean()
    dx = (t[..., :, 1:] - t[..., :, :-1]).abs().mean()
    return dx + dy


def exposure_loss(j_unclipped: torch.Tensor, floor: float = 0.2, patch: int = 16) -> torch.Tensor:
    """Guard against the black attractor (t → t_min with A → 1 sends J below 0): penalise local
    mean luma below ``floor``. One-sided, so a correctly dehazed image pays nothing."""
    luma = physics.gray(j_unclipped)
    k = max(1, min(patch, *luma.shape[-2:]))
    means = F.avg_pool2d(luma, k, stride=k)
    return F.relu(floor - means).pow(2).mean()


@dataclass
class PseudoPairs:
    """A batch of re-hazed images with what is known about them."""

    hazy: torch.Tensor  # (B, 3, h, w) I′ = J0 t′ + A′ (1 − t′)
    depth: torch.Tensor  # (B, 1, h, w) −ln t′ = β′ d
    airlight: torch.Tensor  # (B, 3) A′
    t_mean: torch.Tensor  # (B,) mean of t′ (uniform in the configured range)
    scene: torch.Tensor | None = None  # (B, 3, h, w) the J0 (or clear crop) each was made from
    exact: torch.Tensor | None = None  # (B,) True where the scene is a clear photo, not a J0


def _solve_beta(d: torch.Tensor, target: torch.Tensor, t_min: float, iters: int = 40) -> torch.Tensor:
    """β per image with mean(clamp(exp(−β d), t_min, 1)) = target, by bisection (monotone in β)."""
    lo = torch.zeros_like(target)
    hi = torch.full_like(target, 64.0)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        m = torch.exp(-mid.reshape(-1, 1, 1, 1) * d).clamp(t_min, 1.0).mean((1, 2, 3))
        too_hazy = m < target
        hi = torch.where(too_hazy, mid, hi)
        lo = torch.where(too_hazy, lo, mid)
    return 0.5 * (lo + hi)


@torch.no_grad()
def make_pseudo_pairs(
    prior_fn,
    hazy: torch.Tensor,
    generator: torch.Generator,
    *,
    t_mean_range: tuple[float, float] = (0.25, 0.9),
    grey_range: tuple[float, float] = (0.6, 1.0),
    tint: float = 0.05,
    t_min: float = 0.02,
    t0: float = 0.1,
    j0_gain: float = 1.0,
    depth_mix: dict[str, float] | None = None,
    warm_tint: float = 0.0,
    clear: torch.Tensor | None = None,
    clear_none: float = 0.0,
    clear_depth_mix: dict[str, float] | None = None,
    clear_t_mean_range: tuple[float, float] = (0.1, 1.0),
) -> PseudoPairs:
    """Re-haze real hazy crops with a known transmission and airlight (no gradient).

    ``prior_fn(I) -> (t_raw, t, A)`` is the model's prior. J0 = recover(I, t_p, A_p) is a partly
    dehazed scene; d = −ln t_p, normalised to mean 1 per image, is its relative depth; β′ is
    chosen so the mean of t′ = exp(−β′ d) is uniform in ``t_mean_range``; A′ is grey in
    ``grey_range`` with a ±``tint`` colour tint.

    ``j0_gain`` scales the haze removed to make J0: ``1 − t_J0 = j0_gain · (1 − t_p)``. With the
    prior's ω < 1, J0 keeps part of the haze, and the pseudo-pairs then teach that hazier photos
    need *less* dehazing than the prior gives, the opposite of what paired data shows; a gain of
    1/ω removes the prior's full estimate, so J0 obeys the dark-channel assumption.

    ``depth_mix`` draws each image's relative depth from several sources, with these weights
    (default: the prior's depth only): ``prior`` (d above), ``uniform`` (haze of equal density
    everywhere, as a haze machine fills a room), ``field`` (a smooth random density, as real haze
    drifts), ``prior_uniform`` (the prior's depth plus a uniform veil) and ``prior_field`` (the
    prior's depth modulated by a smooth random field). Haze that does not follow the prior's
    depth teaches the network to read haze from what haze does to an image (lifted blacks, lost
    contrast, colours pulled towards A), not from the dark channel alone. ``warm_tint`` adds a
    warm/cool shift (±, red against blue) to A′, as indoor lamps and low sun give.

    ``clear`` (C, 3, h, w) are crops of unpaired clear photos: they are hazed as they are (J0 is
    the photo itself, so the haze amount is known in absolute terms, over a scene with its own
    dark channel), with depths from ``clear_depth_mix`` and mean t′ uniform in
    ``clear_t_mean_range``; a ``clear_none`` share of them is left haze-free (t′ = 1), which
    teaches the network to leave clear frames alone. Their pairs follow the hazy crops' in the
    batch.
    """
    b = hazy.shape[0]
    dev = hazy.device
    _, t_p, a_p = prior_fn(hazy)
    t_p = (1.0 - j0_gain * (1.0 - t_p.float())).clamp(t_min, 1.0)
    j0 = physics.recover(hazy.float(), t_p, a_p.float(), t0)
    d = -torch.log(t_p) + 1e-3  # +ε: an image the prior calls haze-free still gets some depth
    d = d / d.mean((1, 2, 3), keepdim=True)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=generator, device="cpu").to(dev)

    if depth_mix:
        d = _mixed_depth(d, depth_mix, generator)

    t_mean = uniform(*t_mean_range, b)
    if clear is not None and clear.shape[0] > 0:
        c = clear.shape[0]
        j0 = torch.cat([j0, clear.to(j0)])
        ones = torch.ones(c, 1, *clear.shape[-2:], device=dev)
        dc = _mixed_depth(ones, clear_depth_mix or {"uniform": 1.0}, generator)
        d = torch.cat([d, dc])
        tc = uniform(*clear_t_mean_range, c)
        none = torch.rand(c, generator=generator).to(dev) < clear_none
        t_mean = torch.cat([t_mean, torch.where(none, torch.ones_like(tc), tc)])
        b += c
    beta = _solve_beta(d, t_mean.clamp(max=1.0), t_min)
    beta = torch.where(t_mean >= 1.0, torch.zeros_like(beta), beta)  # haze-free: exactly t′ = 1
    t_new = torch.exp(-beta.reshape(-1, 1, 1, 1) * d).clamp(t_min, 1.0)
    a_new = uniform(*grey_range, b, 1) + uniform(-tint, tint, b, 3)
    if warm_tint > 0:
        a_new = a_new + uniform(-warm_tint, warm_tint, b, 1) * a_new.new_tensor([[1.0, 0.0, -1.0]])
    a_new = a_new.clamp(0.05, 1.0)
    rehazed = physics.haze(j0, t_new, a_new).clamp(0.0, 1.0)
    exact = torch.zeros(b, dtype=torch.bool, device=dev)
    if clear is not None and clear.shape[0] > 0:
        exact[b - clear.shape[0]:] = True
    return PseudoPairs(rehazed, -torch.log(t_new), a_new, t_new.mean((1, 2, 3)), j0, exact)


#: the relative-depth sources of :func:`make_pseudo_pairs`
DEPTH_SOURCES = ("prior", "uniform", "field", "prior_uniform", "prior_field", "gradient")


def _smooth_field(shape: tuple[int, ...], generator: torch.Generator, dev: torch.device) -> torch.Tensor:
    """(1, 1, h, w) smooth zero-mean unit-scale random field: a 2-5 cell grid of normals, bicubic."""
    k = int(torch.randint(2, 6, (1,), generator=generator))
    z = torch.randn(1, 1, k, k, generator=generator)
    return F.interpolate(z, size=shape[-2:], mode="bicubic", align_corners=False).to(dev)


def _mixed_depth(d: torch.Tensor, mix: dict[str, float], generator: torch.Generator) -> torch.Tensor:
    """Per image, a relative depth (mean 1) from a source drawn with the weights in ``mix``."""
    unknown = set(mix) - set(DEPTH_SOURCES)
    if unknown:
        raise ValueError(f"unknown depth sources {sorted(unknown)}; known: {list(DEPTH_SOURCES)}")
    names = [k for k in DEPTH_SOURCES if mix.get(k, 0) > 0]
    if not names:
        raise ValueError("depth_mix needs at least one source with a positive weight")
    w = torch.tensor([float(mix[k]) for k in names])
    picks = torch.multinomial(w / w.sum(), d.shape[0], replacement=True, generator=generator)
    out = []
    for i, k in enumerate(picks.tolist()):
        name, di = names[k], d[i : i + 1]
        if name == "uniform":
            di = torch.ones_like(di)
        elif name == "field":
            di = torch.exp(0.5 * _smooth_field(di.shape, generator, di.device))
        elif name == "prior_uniform":
            a = 0.2 + 0.6 * float(torch.rand(1, generator=generator))
            di = a * di + (1 - a)
        elif name == "prior_field":
            di = di * torch.exp(0.4 * _smooth_field(di.shape, generator, di.device))
        elif name == "gradient":  # outdoors: farther towards the top of the frame, unevenly
            h = di.shape[-2]
            ramp = torch.linspace(1.0, 0.0, h, device=di.device).reshape(1, 1, h, 1).expand_as(di)
            k = 0.5 + 2.5 * float(torch.rand(1, generator=generator))
            di = torch.exp(k * ramp) * torch.exp(0.3 * _smooth_field(di.shape, generator, di.device))
        out.append(di / di.mean())
    return torch.cat(out)


def _mean_log_ratio(depth: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Batch mean of ln(mean depth / mean reference depth) per image: the batch's haze level
    relative to the reference."""
    per_image = depth.mean((1, 2, 3)).clamp(min=1e-4) / reference.mean((1, 2, 3)).clamp(min=1e-4)
    return torch.log(per_image).mean()


def pseudo_pair_losses(
    t_pred: torch.Tensor,
    a_pred: torch.Tensor,
    pairs: PseudoPairs,
    centre: bool = False,
    t_prior: torch.Tensor | None = None,
    level_target: float = 1.0,
    relative: float = 0.0,
    image_t0: float | None = None,
    image_exact_only: bool = False,
) -> dict[str, torch.Tensor]:
    """L1 on optical depth (−ln t vs β′ d) and on A vs A′: zero iff the prediction is right.

    With ``centre`` the predicted depths are first divided by the batch's geometric-mean ratio
    of predicted to target depth: the loss then teaches *relative* haze amounts (which image is
    hazier, and the spatial layout) but exerts no pull on the global haze level, which stays
    where the prior puts it (its ω was chosen on validation data; the pseudo-pairs' own level is
    biased by the haze the prior leaves in J0).

    Centring leaves the level free, so it can drift; with ``t_prior`` (the prior's transmission
    on the same inputs) a ``level`` term is returned too: (batch mean of ln(mean predicted depth /
    mean prior depth))², squared so its gradient fades at the optimum instead of adding ±1/B
    noise to every image's haze amount; zero while the network keeps the prior's average haze
    level and moves only single images and pixels around it. ``level_target`` moves that average
    to a fraction of the prior's (0.8: a fifth less optical depth than the prior's ω gives).

    With ``relative`` c > 0 each image's depth error is divided by (its mean target depth + c):
    an error of 0.1 in optical depth costs as much on a haze-free or lightly hazy image (where it
    is what changes a clear frame) as an error of 0.1 × (d + c) / c on dense haze.

    With ``image_t0`` an ``pseudo_image`` term is returned too: the mean over images of
    ln(MSE + 1e-4) between the scene recovered from each pseudo-pair (``J = (I′ − A) / max(t, t0)
    + A``, clipped to [0, 1] as the engine does) and the scene it was made from. That is the
    evaluation's mean PSNR (up to a factor −10 / ln 10, capped at 40 dB), measured on pairs the
    training made: an error in optical depth δ costs |J − A| · δ in the image whatever the haze
    density, and each image's cost is relative to its own error, as a mean of PSNRs weighs it.
    With ``image_exact_only`` it is taken over the pairs made from clear photos only (their scene
    is the truth; a J0 carries the prior's errors).
    """
    depth = -torch.log(t_pred.float())
    out = {}
    if t_prior is not None:
        ratio = _mean_log_ratio(depth, -torch.log(t_prior.float()))
        out["level"] = (ratio - math.log(level_target)).square()
    if centre:
        depth = depth / torch.exp(_mean_log_ratio(depth, pairs.depth))
    err = (depth - pairs.depth).abs().mean((1, 2, 3))
    if relative > 0:
        err = err / (pairs.depth.mean((1, 2, 3)) + relative)
    out["pseudo_depth"] = err.mean()
    out["pseudo_airlight"] = (a_pred.float() - pairs.airlight).abs().mean()
    if image_t0 is not None:
        if pairs.scene is None:
            raise ValueError("the pseudo_image term needs the pairs' scenes (PseudoPairs.scene)")
        j = physics.recover(pairs.hazy.float(), t_pred.float(), a_pred.float(), image_t0)
        mse = (j - pairs.scene.float()).square().mean((1, 2, 3))
        per_image = torch.log(mse + IMAGE_MSE_FLOOR)
        if image_exact_only:
            if pairs.exact is None or not bool(pairs.exact.any()):
                raise ValueError(
                    "image_exact_only needs pairs made from clear photos (pseudo.clear_batch > 0)"
                )
            per_image = per_image[pairs.exact]
        out["pseudo_image"] = per_image.mean()
    return out


#: MSE floor of the ``pseudo_image`` term (40 dB): a haze-free pair recovered exactly is not
#: worth an unbounded reward
IMAGE_MSE_FLOOR = 1e-4


@dataclass
class LossWeights:
    """Weight of each term; 0 switches a term off (and skips its computation)."""

    pseudo_depth: float = 1.0
    pseudo_airlight: float = 1.0
    #: ln MSE of the scene recovered from each pseudo-pair (see :func:`pseudo_pair_losses`)
    pseudo_image: float = 0.0
    #: ... over the pairs made from clear photos only
    image_exact_only: bool = False
    #: keep the batch's mean haze level at the prior's (see :func:`pseudo_pair_losses`)
    level: float = 0.0
    #: ... times this (the mean optical depth relative to the prior's)
    level_target: float = 1.0
    dark_channel: float = 0.0
    color_constancy: float = 0.0
    tv: float = 0.0
    exposure: float = 0.0
    dark_patch: int = 15
    exposure_floor: float = 0.2
    #: remove the batch-wide haze level from the depth term (see :func:`pseudo_pair_losses`)
    centre_depth: bool = False
    #: c of the relative depth error (0: absolute L1; see :func:`pseudo_pair_losses`)
    depth_relative: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> LossWeights:
        check_keys(cls, data, "loss keys")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def needs_real_pass(self) -> bool:
        """Whether any term is computed on the real (not re-hazed) photos."""
        return any(getattr(self, k) > 0 for k in ("dark_channel", "color_constancy", "tv", "exposure"))


TERM_NAMES = (
    "pseudo_depth", "pseudo_airlight", "pseudo_image", "level",
    "dark_channel", "color_constancy", "tv", "exposure",
)


class Objective:
    """Computes the terms and their weighted sum; the only place a weight is applied."""

    def __init__(self, weights: LossWeights, t0: float = 0.1) -> None:
        self.w = weights
        self.t0 = t0

    def physics_terms(
        self, hazy: torch.Tensor, t: torch.Tensor, airlight: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The original ClearNet losses (+ exposure guard) for predictions on real photos."""
        w = self.w
        j_raw = physics.recover(hazy.float(), t.float(), airlight.float(), self.t0, clip=False)
        j = j_raw.clamp(0.0, 1.0)
        terms: dict[str, torch.Tensor] = {}
        if w.dark_channel > 0:
            terms["dark_channel"] = dark_channel_loss(j, w.dark_patch)
        if w.color_constancy > 0:
            terms["color_constancy"] = color_constancy_loss(j)
        if w.tv > 0:
            terms["tv"] = tv_loss(t.float())
        if w.exposure > 0:
            terms["exposure"] = exposure_loss(j_raw, w.exposure_floor)
        return terms

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ weight × term, each weight once."""
        out = None
        for name, value in terms.items():
            part = getattr(self.w, name) * value
            out = part if out is None else out + part
        if out is None:
            raise ValueError("no loss term computed: every weight is 0")
        return out
