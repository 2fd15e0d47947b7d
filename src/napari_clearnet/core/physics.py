"""The atmospheric scattering model and the classic image operators built on it.

Everything here works on torch tensors shaped ``(B, C, H, W)`` (images) or ``(B, 1, H, W)``
(transmission), on any device, so the CPU and the GPU run the same code.

The model (Koschmieder): ``I = J * t + A * (1 - t)`` with ``J`` the clear scene radiance,
``t`` the transmission in (0, 1] and ``A`` the global atmospheric light (one RGB triple per image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kernels

__all__ = [
    "airlight_top_dark",
    "apply_strength",
    "box_filter",
    "dark_channel",
    "fast_guided_coefficients",
    "gray",
    "guided_filter",
    "haze",
    "recover",
    "resize",
    "rows_linear",
    "sky_tolerance",
    "top_dark_indices",
    "transmission_from_dark",
    "upsample_linear",
    "widen",
]

LUMA = (0.299, 0.587, 0.114)


def haze(clear: torch.Tensor, t: torch.Tensor, airlight: torch.Tensor) -> torch.Tensor:
    """Apply the scattering model: ``I = J t + A (1 - t)``.

    ``clear`` is (B, 3, H, W), ``t`` is (B, 1, H, W), ``airlight`` is (B, 3).
    """
    a = airlight.reshape(-1, clear.shape[1], 1, 1).to(clear)
    return clear * t + a * (1.0 - t)


def recover(
    hazy: torch.Tensor, t: torch.Tensor, airlight: torch.Tensor, t0: float = 0.1, clip: bool = True
) -> torch.Tensor:
    """Invert the scattering model: ``J = (I - A) / max(t, t0) + A``.

    ``t0`` bounds the amplification of noise where almost no scene light arrives; with
    ``clip`` the result is limited to the displayable range [0, 1].
    """
    a = airlight.reshape(-1, hazy.shape[1], 1, 1).to(hazy)
    j = (hazy - a) / t.clamp(min=t0) + a
    return j.clamp(0.0, 1.0) if clip else j


def gray(image: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Luma (Rec. 601) of an RGB batch, or the image itself if it has one channel; ``out``
    (B, 1, H, W) receives it. Channels-last images (the engine's frames) take one matrix-vector
    product, others three fused multiply-adds over channel views: both two to four times faster
    than a weighted sum over the channel axis."""
    if image.shape[1] == 1:
        return image if out is None else out.copy_(image)
    hwc = image.permute(0, 2, 3, 1)
    if image.shape[1] == 3 and hwc.is_contiguous() and (out is None or out.is_contiguous()):
        # channels-last memory (the engine's frames): one matrix-vector product, one pass
        w = image.new_tensor(LUMA)
        flat = out.view(-1) if out is not None else None
        res = torch.mv(hwc.reshape(-1, 3), w, out=flat)
        return out if out is not None else res.view(image.shape[0], 1, *image.shape[-2:])
    r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    out = torch.mul(r, LUMA[0], out=out) if out is not None else r * LUMA[0]
    return out.add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2])


def _min_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Separable square minimum filter with edge replication (size odd)."""
    if size <= 1:
        return x
    pad = size // 2
    x = _min_1d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), size, -1)
    return _min_1d(F.pad(x, (0, 0, pad, pad), mode="replicate"), size, -2)


def _min_1d(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Running minimum over ``size`` consecutive entries along ``dim`` (valid part only).

    Doubling windows (1, 2, 4, …) then two overlapping ones need O(log size) elementwise
    minima: exact, and several times faster on the CPU than ``max_pool2d``, which also
    computes indices.
    """
    n_out = x.shape[dim] - size + 1
    width = 1
    while 2 * width <= size:
        n = x.shape[dim] - width
        x = torch.minimum(x.narrow(dim, 0, n), x.narrow(dim, width, n))
        width *= 2
    if width == size:
        return x.narrow(dim, 0, n_out)
    return torch.minimum(x.narrow(dim, 0, n_out), x.narrow(dim, size - width, n_out))


def dark_channel(image: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """He et al.'s dark channel: min over colour channels, then over a ``patch``×``patch`` window."""
    return _min_filter(image.amin(1, keepdim=True), patch | 1)


def top_dark_indices(dark: torch.Tensor, fraction: float = 0.001) -> torch.Tensor:
    """(B, k) flat indices of the top ``fraction`` of dark-channel pixels, the most haze-opaque
    first: the pixels the atmospheric light is estimated from."""
    flat_dark = dark.reshape(dark.shape[0], -1)
    k = max(1, round(flat_dark.shape[1] * fraction))
    return flat_dark.topk(k, dim=1).indices


def airlight_top_dark(
    image: torch.Tensor, dark: torch.Tensor, fraction: float = 0.001, rule: str = "mean",
    indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Atmospheric light from the most haze-opaque pixels (the brightest of the dark channel).

    ``rule="mean"`` averages the image over the top ``fraction`` of dark-channel pixels, which is
    stabler than He et al.'s single brightest pixel (``rule="brightest"``) against white objects
    and noise. ``indices``: those pixels, if :func:`top_dark_indices` already found them.
    Returns (B, C) in [0, 1].
    """
    b, c = image.shape[:2]
    idx = top_dark_indices(dark, fraction) if indices is None else indices  # (B, k)
    k = idx.shape[1]
    flat = image.reshape(b, c, -1)
    picked = flat.gather(2, idx.unsqueeze(1).expand(b, c, k))  # (B, C, k)
    if rule == "mean":
        a = picked.mean(2)
    elif rule == "brightest":
        best = picked.sum(1).argmax(1)  # (B,)
        a = picked[torch.arange(b), :, best]
    else:
        raise ValueError(f"airlight rule must be 'mean' or 'brightest', got {rule!r}")
    return a.clamp(1e-3, 1.0)


def transmission_from_dark(
    image: torch.Tensor, airlight: torch.Tensor, omega: float = 0.95, patch: int = 15
) -> torch.Tensor:
    """Raw DCP transmission ``t = 1 - omega * dark(I / A)``; ``omega < 1`` keeps a trace of haze."""
    a = airlight.reshape(-1, image.shape[1], 1, 1).to(image).clamp(min=1e-3)
    return (1.0 - omega * dark_channel(image / a, patch)).clamp(0.0, 1.0)


def apply_strength(t: torch.Tensor, strength: float) -> torch.Tensor:
    """Scale the haze amount: the optical depth −ln t times ``strength``, i.e. ``t ** strength``
    (0 = no haze removed, t = 1; 1 = unchanged; >1 = more haze removed)."""
    if strength == 1.0:
        return t
    if strength == 0.0:
        return torch.ones_like(t)
    return t.clamp(min=1e-6).pow(float(strength))


def sky_tolerance(
    t: torch.Tensor, image: torch.Tensor, airlight: torch.Tensor, k: float, smooth: float = 0.0
) -> torch.Tensor:
    """Raise t where the image is close to A (sky, dense fog), where the dark-channel
    assumption fails and dehazing only amplifies noise, banding and colour errors:
    ``t = min(max(k / |I - A|, 1) * t, 1)``.

    With ``smooth`` σ > 0 the protection applies only where the image is locally flat: it fades
    out as the luma's standard deviation over a 7×7 window grows to σ, so textured regions close
    to A (a lit wall, fog over a street) are still dehazed while flat skies are kept. A pixel
    counts as flat when *any* 7×7 window around it is (the spread's minimum over 7×7): sky right
    next to a mast or a rocket is protected like the rest of the sky, instead of a band some
    three working pixels wide around every thin structure being dehazed (a dark halo)."""
    if k <= 0:
        return t
    a = airlight.reshape(-1, image.shape[1], 1, 1).to(image)
    dist = (image - a).abs().amax(1, keepdim=True).clamp(min=1e-3)
    kk: torch.Tensor | float = k
    if smooth > 0:
        g = gray(image).double()  # E[g²] - E[g]² cancels in flat regions: float32 left ~1e-4 of noise
        mean = box_filter(g, 3)
        std = (box_filter(g * g, 3) - mean * mean).clamp(min=0.0).sqrt().to(image.dtype)
        kk = k * (1.0 - _min_filter(std, 7) / smooth).clamp(0.0, 1.0)
    return (t * (kk / dist).clamp(min=1.0)).clamp(max=1.0)


def box_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)² window, clipped at the borders; O(1) per pixel via cumulative sums."""
    if r <= 0:
        return x
    return _box_1d(_box_1d(x, r, 2), r, 3)


def _box_1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    r = min(r, n - 1) if n > 1 else 0
    if r == 0:
        return x
    if x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad:
        # compiled: the same numbers, without the padded copies
        out = kernels.box_1d(x.detach().numpy(), r, dim - x.dim())
        if out is not None:
            return torch.from_numpy(out)
    c = x.cumsum(dim, dtype=torch.float64) if x.dtype != torch.float64 else x.cumsum(dim)
    # e[k] = (sum of x[: k - r]) with k - r clipped to [0, n]: a zero and r copies in front, r
    # copies of the total behind; the clipped window sums are then two shifted slices of e
    last = dim - x.dim()  # -1 or -2: F.pad's order is (last dim) then (the one before)
    pad_end = (0, r, 0, 0) if last == -1 else (0, 0, 0, r)
    pad_front = (r + 1, 0, 0, 0) if last == -1 else (0, 0, r + 1, 0)
    e = F.pad(F.pad(c, pad_end, mode="replicate"), pad_front)
    s = e.narrow(dim, 2 * r + 1, n) - e.narrow(dim, 0, n)
    idx = torch.arange(n, device=x.device)
    count_shape = [1] * x.dim()
    count_shape[dim] = n
    count = ((idx + r + 1).clamp(max=n) - (idx - r).clamp(min=0)).to(s.dtype).reshape(count_shape)
    return (s / count).to(x.dtype)


def _guided_ab(
    guide: torch.Tensor, src: torch.Tensor, r: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided filter's smoothed coefficients. On small images (a working copy) the four, then
    two, means go through one box filter together (fewer calls; each channel on its own, so the
    numbers are those of separate calls); on large ones one at a time, as each needs a float64
    temporary of the whole image."""
    batched = guide.numel() <= _BATCHED_BOX_PIXELS
    if batched:
        mean_i, mean_p, mean_ip, mean_ii = box_filter(
            torch.cat([guide, src, guide * src, guide * guide], 1), r).split(1, 1)
    else:
        mean_i, mean_p = box_filter(guide, r), box_filter(src, r)
        mean_ip, mean_ii = box_filter(guide * src, r), box_filter(guide * guide, r)
    cov_ip = mean_ip - mean_i * mean_p
    var_i = mean_ii - mean_i * mean_i
    a = cov_ip / (var_i.clamp(min=0) + eps)
    b = mean_p - a * mean_i
    if batched:
        return box_filter(torch.cat([a, b], 1), r).split(1, 1)
    return box_filter(a, r), box_filter(b, r)


#: images up to this size box-filter the guided filter's means together
_BATCHED_BOX_PIXELS = 1 << 20


def guided_filter(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float = 1e-3) -> torch.Tensor:
    """He et al.'s edge-preserving guided filter with a grey guide: ``q = mean(a) I + mean(b)``."""
    g = gray(guide)
    a, b = _guided_ab(g, src, r, eps)
    return a * g + b


def fast_guided_coefficients(
    guide_low: torch.Tensor, src_low: torch.Tensor, r: int, eps: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients (a, b) of the fast guided filter (He & Sun 2015), computed at low resolution.

    Upsample both bilinearly to any size and apply ``q = a * gray(I_full) + b``: the output
    follows the full-resolution edges of ``I_full`` at the cost of one multiply-add per pixel.
    """
    return _guided_ab(gray(guide_low), src_low, r, eps)


def _linear_weights(n_out: int, n_in: int, start: int, stop: int, device: torch.device):
    """Source indices and weights of half-pixel-centred linear interpolation (like
    ``F.interpolate(..., mode="bilinear", align_corners=False)``) for outputs ``start:stop``."""
    pos = (torch.arange(start, stop, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = pos.clamp(0, n_in - 1)
    i0 = pos.floor().long()
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = (pos - i0).to(torch.float32)
    return i0, i1, w1


def widen(x: torch.Tensor, width: int) -> torch.Tensor:
    """Linear interpolation of ``x`` (B, C, h, w) along its width only, to ``width`` columns (the
    first half of bilinear upsampling; done once per frame, at the low resolution's height)."""
    if x.shape[-1] == width:
        return x
    b, c, h, w = x.shape
    return F.interpolate(x.reshape(1, b * c * h, w), size=width, mode="linear",
                         align_corners=False).reshape(b, c, h, width)


def rows_linear(
    x: torch.Tensor, height: int, rows: tuple[int, int], out: torch.Tensor | None = None,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Output rows ``rows`` of ``x`` (B, C, h, W) linearly interpolated along the height to
    ``height`` rows (the second half of bilinear upsampling); ``out`` and ``scratch`` (both
    (B, C, r1 - r0, W)) let a caller reuse its memory."""
    r0, r1 = rows
    yi0, yi1, wy = _linear_weights(height, x.shape[-2], r0, r1, x.device)
    top = torch.index_select(x, -2, yi0, out=out) if out is not None else x.index_select(-2, yi0)
    bot = torch.index_select(x, -2, yi1, out=scratch) if scratch is not None else x.index_select(-2, yi1)
    return torch.lerp(top, bot, wy.to(x.dtype).reshape(-1, 1), out=top)


def upsample_linear(
    x: torch.Tensor, size: tuple[int, int], rows: tuple[int, int] | None = None
) -> torch.Tensor:
    """Bilinear upsampling of ``x`` to ``size``, optionally only for output rows ``rows``.

    Computing a band of rows gives exactly the same numbers as the whole image, which lets the
    engine walk a huge image in strips with bounded memory and no seams. The width is
    interpolated first (:func:`widen`, at the low height), then the rows (:func:`rows_linear`):
    the engine widens once per frame and reuses that for every strip.
    """
    return rows_linear(widen(x, size[1]), size[0], rows if rows is not None else (0, size[0]))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased area-like downsampling (or bilinear upsampling) to ``size`` = (H, W)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    down = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=down)
