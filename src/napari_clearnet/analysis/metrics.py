"""Image quality: PSNR/SSIM against a reference, and no-reference haze measures.

Reference metrics use scikit-image's implementations so our numbers are comparable with
everyone else's. The no-reference measures say how hazy an image still looks when there is no
clear reference (real photos): haze lifts the dark channel and flattens contrast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["SkyReport", "haze_measures", "psnr", "sky_check", "sky_mask", "ssim"]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    a, b = _pair(image, reference)
    return float(peak_signal_noise_ratio(b, a, data_range=1.0))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """Structural similarity (Gaussian-free 7×7 windows, scikit-image defaults) for [0, 1] images."""
    a, b = _pair(image, reference)
    if min(a.shape[:2]) < 7:
        raise ValueError(f"SSIM needs images of at least 7×7 pixels, got {a.shape[:2]}")
    channel_axis = -1 if a.ndim == 3 else None
    return float(structural_similarity(b, a, data_range=1.0, channel_axis=channel_axis))


def haze_measures(image: np.ndarray, patch: int = 15) -> dict[str, float]:
    """No-reference measures: mean dark channel (lower is clearer), RMS contrast and mean
    saturation (higher is clearer). ``image`` is H×W or H×W×3 in [0, 1]."""
    from scipy.ndimage import minimum_filter

    img = np.asarray(image, dtype=np.float32)
    rgb = img if img.ndim == 3 else img[..., None].repeat(3, -1)
    rgb = rgb[..., :3]
    dark = minimum_filter(rgb.min(-1), size=patch, mode="nearest")
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    return {
        "dark_channel": float(dark.mean()),
        "contrast": float(luma.std()),
        "saturation": float(sat.mean()),
    }


# ---------------------------------------------------------------------------------- skies
#: default thresholds of :func:`sky_check` (see README, "Skies and bright regions")
SKY_MAX_GRADIENT_GAIN = 2.0
SKY_MAX_CHROMA_SPREAD = 3.0
SKY_MAX_CHROMA_SHIFT = 10.0


@dataclass(frozen=True)
class SkyReport:
    """What :func:`sky_check` measured in the smooth regions close to the airlight.

    ``fraction``: share of the image in such regions (0: nothing to check, the check passes).
    ``gradient_gain``: RMS luma gradient of the output over the input's there (amplified noise,
    banding and rings raise it; 1 = unchanged). ``chroma_spread``: increase of the spatial
    spread of CIELAB chroma (a*, b*) there, in ΔE units (colour blotches and coloured rings).
    ``chroma_shift``: change of their mean chroma (a colour cast), ΔE.
    """

    fraction: float
    gradient_gain: float
    chroma_spread: float
    chroma_shift: float
    passed: bool

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def sky_mask(
    hazy: np.ndarray, *, closeness: float = 0.1, smooth: float = 0.012, patch: int = 15
) -> np.ndarray:
    """Smooth bright regions of a hazy photo (skies, dense fog): where its dark channel is within
    ``closeness`` of the airlight's (the classic top-0.1 % rule) and the luma's local standard
    deviation (7×7) is below ``smooth``. Defined from the input alone, so every method is judged
    on the same pixels."""
    from scipy.ndimage import binary_erosion, minimum_filter, uniform_filter

    rgb = _rgb(hazy)
    dark = minimum_filter(rgb.min(-1), size=patch, mode="nearest")
    flat = dark.reshape(-1)
    k = max(1, round(flat.size * 0.001))
    top = np.argpartition(flat, -k)[-k:]
    a_dark = float(rgb.reshape(-1, 3)[top].mean(0).min())
    luma = rgb @ _LUMA
    mean = uniform_filter(luma, 7, mode="nearest")
    std = np.sqrt(np.maximum(uniform_filter(luma * luma, 7, mode="nearest") - mean * mean, 0.0))
    mask = (dark >= a_dark - closeness) & (std < smooth)
    return binary_erosion(mask, iterations=3, border_value=0)


def sky_check(
    hazy: np.ndarray,
    dehazed: np.ndarray,
    *,
    max_gradient_gain: float = SKY_MAX_GRADIENT_GAIN,
    max_chroma_spread: float = SKY_MAX_CHROMA_SPREAD,
    max_chroma_shift: float = SKY_MAX_CHROMA_SHIFT,
    max_side: int = 1024,
    min_fraction: float = 0.005,
) -> SkyReport:
    """No-reference check that dehazing left smooth bright regions (skies, dense fog) smooth:
    no rings, no colour blotches, no amplified JPEG noise. Both images are H×W×3 in [0, 1] of
    the same shape; images larger than ``max_side`` are reduced first, so the check means the
    same at any resolution. Photos whose such regions cover less than ``min_fraction`` pass
    (there is no sky to judge)."""
    from skimage.color import rgb2lab

    h, d = _pair(_rgb(hazy), _rgb(dehazed))
    h, d = _reduced(h, max_side), _reduced(d, max_side)
    mask = sky_mask(h)
    frac = float(mask.mean())
    if frac < min_fraction or mask.sum() < 64:
        return SkyReport(frac, 1.0, 0.0, 0.0, True)
    eps = 0.5 / 255  # an 8-bit sky with no gradient at all still has quantisation steps
    gain = (_grad_rms(d @ _LUMA, mask) + eps) / (_grad_rms(h @ _LUMA, mask) + eps)
    lab_h, lab_d = rgb2lab(h)[mask][:, 1:], rgb2lab(d)[mask][:, 1:]
    spread = float(np.sqrt(lab_d.var(0).sum()) - np.sqrt(lab_h.var(0).sum()))
    shift = float(np.linalg.norm(lab_d.mean(0) - lab_h.mean(0)))
    passed = gain <= max_gradient_gain and spread <= max_chroma_spread and shift <= max_chroma_shift
    return SkyReport(frac, float(gain), spread, shift, bool(passed))


_LUMA = np.array([0.299, 0.587, 0.114])


def _rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None].repeat(3, -1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise ValueError(f"expected an H×W or H×W×3 image, got shape {img.shape}")
    return img[..., :3]


def _reduced(img: np.ndarray, max_side: int) -> np.ndarray:
    s = max_side / max(img.shape[:2])
    if s >= 1:
        return img
    from skimage.transform import resize

    shape = (max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s)), 3)
    return resize(img, shape, order=1, anti_aliasing=True)


def _grad_rms(luma: np.ndarray, mask: np.ndarray) -> float:
    gy, gx = np.gradient(luma)
    return float(np.sqrt((gx[mask] ** 2 + gy[mask] ** 2).mean()))
