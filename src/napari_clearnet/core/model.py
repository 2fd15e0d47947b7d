"""ClearNet: an attention-gated U-Net that refines a physical haze prior.

The network never sees the full-resolution image. It looks at a reduced copy (long side
``working_size``), computes the Dark Channel Prior there, and predicts

* a per-image **haze amount** ``s`` (a scale of the optical depth ``-ln t``, exactly what the
  scattering coefficient β does in ``t = exp(-β d)``),
* a bounded per-pixel correction ``r`` of that depth, and
* a bounded correction of the prior's global atmospheric light ``A`` (three numbers).

All three heads start at zero, so an untrained ClearNet *is* the prior, and training can only
move it where its objective gains. Full resolution comes back through guided upsampling in the
engine, so the network's cost does not grow with the image.

This module holds the network and its configuration only: no files, no devices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from . import dcp

__all__ = [
    "FORMAT_VERSION", "AttentionGate", "ClearNet", "ClearNetConfig", "ConvBlock", "bounded", "check_keys",
]

#: the weight layout this version builds and reads
FORMAT_VERSION = 2


def check_keys(cls: type, data: dict, what: str) -> None:
    """Refuse keys that are not fields of dataclass ``cls``, so a typo in a config never silently
    falls back to a default; ``what`` names the config in the message."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(known)}")


def _default_prior() -> dcp.DCPParams:
    return dcp.DCPParams(patch=15, omega=0.85, airlight_rule="mean", guided_radius=None, sky_k=0.0)


@dataclass
class ClearNetConfig:
    """Architecture and physics settings; saved with the weights so every loader builds the same net."""

    widths: tuple[int, ...] = (8, 16, 24, 32)  # small trunk: the heads learn a few numbers per image
    in_channels: int = 4  # RGB + prior transmission
    working_size: int = 256  # long side of the network's copy (same validation score as 320, faster)
    prior: dcp.DCPParams = field(default_factory=_default_prior)
    t0: float = 0.1  # lower bound of t in the recovery J = (I - A) / max(t, t0) + A
    t_min: float = 0.02  # lower bound of predicted t
    max_log_scale: float = 1.5  # upper bound of ln s, the per-image haze amount
    #: lower bound of ln s (None: -max_log_scale). A haze-free frame needs s near 0, i.e. a bound
    #: far below -1.5 (s >= 0.22 changed clear photos by ~6 dB too much)
    min_log_scale: float | None = None
    max_residual: float = 1.0  # |r| bound of the per-pixel depth correction (log domain)
    airlight_range: float = 0.25  # |ΔA| bound of the airlight correction (real haze's A: often 0.1-0.2 lower)
    upsample_radius: int = 4  # fast guided upsampling radius at working resolution
    upsample_eps: float = 1e-3
    #: layout of the weights: 2 since the per-image head also reads image statistics
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.prior, dict):
            self.prior = dcp.DCPParams(**self.prior)
        self.widths = tuple(int(w) for w in self.widths)
        if len(self.widths) < 2 or any(w < 1 for w in self.widths):
            raise ValueError(f"widths needs at least two positive entries, got {self.widths}")
        if self.working_size < 16:
            raise ValueError(f"working_size must be >= 16, got {self.working_size}")
        if self.min_log_scale is not None and self.min_log_scale >= 0:
            raise ValueError(f"min_log_scale must be negative, got {self.min_log_scale}")

    @property
    def log_scale_bounds(self) -> tuple[float, float]:
        """(lowest, highest) ln s of the per-image haze amount."""
        hi = float(self.max_log_scale)
        return (-hi if self.min_log_scale is None else float(self.min_log_scale)), hi

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> ClearNetConfig:
        check_keys(cls, data, "ClearNet config keys")
        return cls(**data)


def bounded(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``x`` squashed into (lo, hi) (lo < 0 < hi) by tanh on each side: slope 1 at 0, so a
    zero-initialised head starts at 0, and each bound is reached smoothly."""
    up = hi * torch.tanh(x / hi)
    if lo == -hi:
        return up
    return torch.where(x >= 0, up, -lo * torch.tanh(x / -lo))


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions with LeakyReLU: (B, c_in, H, W) -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
        )


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018): the decoder signal ``g`` decides which
    skip features ``x`` pass. ``x``: (B, c_x, H, W), ``g``: (B, c_g, H, W) -> (B, c_x, H, W)."""

    def __init__(self, c_x: int, c_g: int, c_inner: int) -> None:
        super().__init__()
        self.wx = nn.Conv2d(c_x, c_inner, 1, bias=False)
        self.wg = nn.Conv2d(c_g, c_inner, 1)
        self.psi = nn.Conv2d(c_inner, 1, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.psi(F.relu(self.wx(x) + self.wg(g))))


class ClearNet(nn.Module):
    """Prior-refining attention U-Net. Input (B, 3, h, w) at working resolution, values in [0, 1].

    ``forward`` returns a dict with ``t`` (B, 1, h, w) in [t_min, 1], ``airlight`` (B, 3),
    the prior's ``t_prior`` and ``airlight_prior``, and the per-image ``scale`` (B,).
    """

    def __init__(self, config: ClearNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or ClearNetConfig()
        w = self.config.widths
        self.stem = ConvBlock(self.config.in_channels, w[0])
        self.down = nn.ModuleList(ConvBlock(w[i - 1], w[i]) for i in range(1, len(w)))
        self.gates = nn.ModuleList(
            AttentionGate(w[i - 1], w[i], max(4, w[i - 1] // 2)) for i in range(len(w) - 1, 0, -1)
        )
        self.up = nn.ModuleList(ConvBlock(w[i - 1] + w[i], w[i - 1]) for i in range(len(w) - 1, 0, -1))
        self.t_head = nn.Conv2d(w[0], 1, 1)
        self.global_head = nn.Sequential(
            nn.Linear(2 * w[-1] + self.n_stats, 32), nn.LeakyReLU(0.1, inplace=True), nn.Linear(32, 4)
        )
        for head in (self.t_head, self.global_head[-1]):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    #: image statistics given to the per-image heads besides the pooled features: mean and std of
    #: the four input channels, and mean, std and 10th/90th percentiles of the prior's depth
    n_stats = 12

    @staticmethod
    def image_stats(x: torch.Tensor, depth_prior: torch.Tensor) -> torch.Tensor:
        """(B, 12) global statistics of how hazy an image looks. The haze amount is a property of
        the whole image; handing the heads these numbers lets them use it from the first step
        instead of waiting for the trunk to learn to measure it through a zero-initialised head."""
        d = depth_prior.flatten(1).float()
        n = d.shape[1]  # kthvalue: 15x cheaper than torch.quantile on a 256-px copy
        q = torch.stack([torch.kthvalue(d, max(1, round(f * n)), dim=1).values for f in (0.1, 0.9)], 1)
        d_mean, d_std = d.mean(1, keepdim=True), d.std(1, correction=0, keepdim=True)
        # population spread (correction=0): defined for a 1-pixel image too
        return torch.cat([x.mean((2, 3)), x.std((2, 3), correction=0), d_mean, d_std, q], 1)

    def has_residual(self) -> bool:
        """Whether the per-pixel depth correction can be non-zero. A model trained without it
        (``t_head`` all zeros, as the shipped one) gives exactly 0 there, so inference skips the
        decoder that only feeds it: the same numbers, in half the convolutions."""
        return bool(self.t_head.weight.any() or self.t_head.bias.any())

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.config.widths) - 1)

    def prior(
        self, image: torch.Tensor, airlight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The Dark Channel Prior at working resolution: (t_raw, t, A); ``airlight`` overrides A."""
        return self.prior_with_sources(image, airlight)[:3]

    def prior_with_sources(
        self, image: torch.Tensor, airlight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`prior`, and the (B, k) pixels its A was taken from (None when A was given)."""
        return dcp.estimate_with_sources(image.float(), self.config.prior, airlight)

    def forward(
        self, image: torch.Tensor, airlight: torch.Tensor | None = None, scale: torch.Tensor | None = None,
        heads: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``airlight`` (B, 3) and ``scale`` (B,) replace the predicted A and haze amount (the
        engine's temporal smoothing passes both in). ``heads`` (B, 4) are the per-image heads'
        outputs of an earlier frame (``out["heads"]``), used instead of running the trunk: a video
        frame between two the network ran on. Without a per-pixel correction (as the shipped
        model) the trunk is not run when its outputs are not used, with the same numbers."""
        cfg = self.config
        with torch.no_grad():
            _, t_prior, a_prior, sources = self.prior_with_sources(image, airlight)
        t_prior = t_prior.clamp(cfg.t_min, 1.0)
        x = torch.cat([image, t_prior.to(image.dtype)], 1)
        depth_prior = -torch.log(t_prior.float())
        trunk = self.training or self.has_residual() or (
            heads is None and (airlight is None or scale is None))
        if trunk:
            residual, g = self._trunk(x, depth_prior)
        else:  # the per-image numbers come from ``heads`` or are replaced: no convolution needed
            residual = 0.0
            g = heads.float() if heads is not None else torch.zeros(x.shape[0], 4, device=x.device)
        lo, hi = cfg.log_scale_bounds
        if scale is not None:
            log_scale = torch.log(scale.float().reshape(-1).clamp(min=1e-6)).clamp(lo, hi)
        else:
            log_scale = bounded(g[:, 0], lo, hi)
        depth = depth_prior * torch.exp(log_scale.reshape(-1, 1, 1, 1) + residual)
        t = torch.exp(-depth).clamp(cfg.t_min, 1.0)
        if airlight is not None:
            a = a_prior.float()
        else:
            a = (a_prior.float() + cfg.airlight_range * torch.tanh(g[:, 1:4])).clamp(0.05, 1.0)
        return {
            "t": t,
            "airlight": a,
            "t_prior": t_prior.float(),
            "airlight_prior": a_prior.float(),
            "scale": torch.exp(log_scale),
            "heads": g,
            **({} if sources is None else {"sources": sources}),
        }

    def _trunk(self, x: torch.Tensor, depth_prior: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor]:
        """The U-Net on the input and prior t ``x``: the per-pixel depth correction (0.0 when the
        model has none and is not training) and the per-image heads' outputs (B, 4)."""
        cfg = self.config
        stats = self.image_stats(x.float(), depth_prior)
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.avg_pool2d(skips[-1], 2)))
        y = skips.pop()
        bottleneck = y
        residual: torch.Tensor | float = 0.0
        if self.training or self.has_residual():
            for gate, block in zip(self.gates, self.up, strict=True):
                skip = skips.pop()
                y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                y = block(torch.cat([gate(skip, y), y], 1))
            residual = self.t_head(y)[..., :h, :w].float()
            residual = cfg.max_residual * torch.tanh(residual / cfg.max_residual)
        pooled = torch.cat([bottleneck.mean((2, 3)).float(), bottleneck.amax((2, 3)).float(), stats], 1)
        return residual, self.global_head(pooled.to(bottleneck.dtype)).float()

    def working_shape(self, height: int, width: int) -> tuple[int, int]:
        """Shape of the reduced copy: long side ``working_size``, never upsampled."""
        s = self.config.working_size / max(height, width)
        if s >= 1.0:
            return height, width
        return max(1, round(height * s)), max(1, round(width * s))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
