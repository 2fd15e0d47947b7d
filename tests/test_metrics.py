"""metrics: the no-reference sky check (rings, blotches and amplified noise in smooth bright
regions) on synthetic skies with known defects."""

from __future__ import annotations

import numpy as np
import pytest

from napari_clearnet.analysis import metrics


def _photo(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """A hazy 'photo': a smooth bright sky gradient on top, textured ground below, 8-bit."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, h)[:, None, None]
    sky = 0.86 + 0.06 * (yy * 2) + np.array([0.0, 0.005, 0.02])  # slightly bluish, brighter down
    ground = 0.35 + 0.25 * rng.random((h, w, 3))
    img = np.where(yy < 0.5, np.broadcast_to(sky, (h, w, 3)), ground)
    return np.round(np.clip(img, 0, 1) * 255) / 255


def _dehazed_clean(x: np.ndarray) -> np.ndarray:
    """A good result: ground contrast stretched, the sky left smooth (a gentle global curve)."""
    return np.clip((x - 0.3) * 1.2 + 0.3, 0, 1)


def _dehazed_with_rings(x: np.ndarray) -> np.ndarray:
    """The failure: the sky's gradient amplified into bands with pink/green blotches."""
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - h * 0.1, xx - w * 0.6)
    rings = 0.08 * np.sin(r / 6.0)
    out = _dehazed_clean(x).copy()
    sky = yy < h / 2
    out[sky, 0] += rings[sky]
    out[sky, 1] -= rings[sky]
    return np.clip(out, 0, 1)


def _dehazed_noisy(x: np.ndarray) -> np.ndarray:
    """The other failure: the sky's 8-bit noise amplified tenfold."""
    rng = np.random.default_rng(1)
    return np.clip(_dehazed_clean(x) + (rng.random(x.shape) - 0.5) * 0.06, 0, 1)


def test_sky_mask_finds_the_sky_and_not_the_ground() -> None:
    x = _photo()
    m = metrics.sky_mask(x)
    h = x.shape[0]
    assert m[: h // 2].mean() > 0.8 and m[h // 2 :].mean() < 0.01


def test_clean_sky_passes() -> None:
    x = _photo()
    r = metrics.sky_check(x, _dehazed_clean(x))
    assert r.passed and r.fraction > 0.3 and r.gradient_gain < 1.5 and r.chroma_spread < 1.0


@pytest.mark.parametrize("make", [_dehazed_with_rings, _dehazed_noisy])
def test_rings_blotches_and_noise_are_flagged(make) -> None:
    x = _photo()
    r = metrics.sky_check(x, make(x))
    assert not r.passed
    assert r.gradient_gain > metrics.SKY_MAX_GRADIENT_GAIN or r.chroma_spread > metrics.SKY_MAX_CHROMA_SPREAD


def test_doing_nothing_passes_and_a_photo_without_sky_is_not_judged() -> None:
    x = _photo()
    assert metrics.sky_check(x, x).passed
    ground = _photo()[120:]
    r = metrics.sky_check(ground, np.clip(ground * 3 - 1, 0, 1))
    assert r.fraction < 0.005 and r.passed


def test_resolution_does_not_change_the_verdict() -> None:
    x = _photo(480, 640)
    big = metrics.sky_check(x, _dehazed_with_rings(x), max_side=1024)
    small = metrics.sky_check(x, _dehazed_with_rings(x), max_side=320)
    assert big.passed == small.passed is False


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="shape"):
        metrics.sky_check(np.zeros((10, 10, 3)), np.zeros((10, 12, 3)))
