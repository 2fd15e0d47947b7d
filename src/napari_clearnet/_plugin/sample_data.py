"""Sample data made at run time: real photos hazed with the scattering model and a real depth.

scikit-image's ``stereo_motorcycle`` comes with a disparity map, so depth ∝ 1/disparity is a
measured depth, not a guess: the haze thickens with distance as in a real scene, and the clear
photo is kept as a reference so PSNR/SSIM can be tried in the Compare widget. Nothing is
downloaded and nothing is shipped with the package.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..core import physics

__all__ = ["hazy_motorcycle", "hazy_motorcycle_stack", "make_hazy"]

#: grey atmospheric light of the samples
SAMPLE_AIRLIGHT = (0.85, 0.85, 0.85)


@lru_cache(maxsize=1)
def _motorcycle() -> tuple[np.ndarray, np.ndarray]:
    """(clear RGB float32 in [0, 1], relative depth in (0, 1]) of scikit-image's stereo pair."""
    from scipy import ndimage
    from skimage import data

    left, _right, disparity = data.stereo_motorcycle()
    disp = np.asarray(disparity, np.float64)
    valid = np.isfinite(disp) & (disp > 0)
    # occluded pixels have no disparity: take the nearest measured one
    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    disp = disp[tuple(idx)]
    depth = 1.0 / disp
    depth = ndimage.gaussian_filter(depth / depth.max(), 1.0)
    return left.astype(np.float32) / 255.0, depth.astype(np.float32)


def make_hazy(
    clear: np.ndarray, depth: np.ndarray, beta: float, airlight: tuple[float, float, float] = SAMPLE_AIRLIGHT
) -> tuple[np.ndarray, np.ndarray]:
    """Haze ``clear`` (H, W, 3) in [0, 1] with ``t = exp(-beta * depth)``; returns (hazy, t)."""
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    t = np.exp(-beta * depth).astype(np.float32)
    j = torch.from_numpy(np.ascontiguousarray(clear)).permute(2, 0, 1)[None]
    hazy = physics.haze(j, torch.from_numpy(t)[None, None], torch.tensor([airlight], dtype=torch.float32))
    return hazy[0].permute(1, 2, 0).clamp(0, 1).numpy(), t


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def hazy_motorcycle(beta: float = 1.8) -> list[tuple[Any, dict, str]]:
    """The hazy motorcycle (500×741 RGB) and its clear reference (hidden) as napari layers."""
    clear, depth = _motorcycle()
    hazy, t = make_hazy(clear, depth, beta)
    meta = {"sample": "stereo_motorcycle", "beta": beta, "airlight": list(SAMPLE_AIRLIGHT)}
    return [
        (_to_uint8(clear), {"name": "motorcycle (clear reference)", "rgb": True, "visible": False,
                            "metadata": meta}, "image"),
        (_to_uint8(hazy), {"name": "motorcycle (hazy)", "rgb": True,
                           "metadata": {**meta, "true_transmission": t}}, "image"),
    ]


def hazy_motorcycle_stack(
    n_frames: int = 8, height: int = 240, width: int = 320
) -> list[tuple[Any, dict, str]]:
    """A short hazy clip (T×H×W×3): a crop panning across the scene while the fog thickens."""
    clear, depth = _motorcycle()
    h, w = clear.shape[:2]
    height, width = min(height, h), min(width, w)
    betas = np.linspace(1.0, 2.6, n_frames)
    xs = np.linspace(0, w - width, n_frames).round().astype(int)
    y0 = (h - height) // 2
    frames = []
    for beta, x0 in zip(betas, xs, strict=True):
        crop = (slice(y0, y0 + height), slice(x0, x0 + width))
        hazy, _ = make_hazy(clear[crop], depth[crop], float(beta))
        frames.append(_to_uint8(hazy))
    meta = {"sample": "stereo_motorcycle", "beta": betas.tolist(), "airlight": list(SAMPLE_AIRLIGHT)}
    return [(np.stack(frames), {"name": "hazy clip", "rgb": True, "metadata": meta}, "image")]
