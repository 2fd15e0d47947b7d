"""Image quality: PSNR/SSIM against a reference, and no-reference haze measures.

Reference metrics use scikit-image's implementations so our numbers are comparable with
everyone else's. The no-reference measures say how hazy an image still looks when there is no
clear reference (real photos): haze lifts the dark channel and flattens contrast.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["haze_measures", "psnr", "ssim"]


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
