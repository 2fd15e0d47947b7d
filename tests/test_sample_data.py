"""The sample data: real photo, real depth, the scattering model; no files, no network."""

from __future__ import annotations

import numpy as np
import pytest

from napari_clearnet._plugin import sample_data as sd


def test_hazy_motorcycle_follows_the_scattering_model():
    (clear, ck, ct), (hazy, hk, ht) = sd.hazy_motorcycle(beta=1.8)
    assert ct == ht == "image" and ck["rgb"] and hk["rgb"] and ck["visible"] is False
    assert clear.shape == hazy.shape == (500, 741, 3) and hazy.dtype == np.uint8
    t = hk["metadata"]["true_transmission"]
    assert t.shape == (500, 741) and 0 < t.min() < t.max() <= 1
    # I = J t + A (1 - t), up to 8-bit rounding
    a = np.array(sd.SAMPLE_AIRLIGHT)
    expected = (clear / 255.0) * t[..., None] + a * (1 - t[..., None])
    assert np.abs(hazy / 255.0 - expected).max() < 3 / 255
    # haze lifts the dark channel and lowers contrast
    assert hazy.min(-1).mean() > clear.min(-1).mean() + 40
    assert hazy.std() < clear.std()


def test_depth_is_from_disparity_and_finite():
    _, depth = sd._motorcycle()
    assert np.isfinite(depth).all() and 0 < depth.min() < depth.max() <= 1.0 + 1e-6
    # thicker haze (lower t) with larger beta, pixel by pixel
    clear = np.zeros((*depth.shape, 3), np.float32)
    _, t1 = sd.make_hazy(clear, depth, 1.0)
    _, t2 = sd.make_hazy(clear, depth, 2.0)
    assert (t2 <= t1).all()
    with pytest.raises(ValueError, match="beta"):
        sd.make_hazy(clear, depth, -1.0)


def test_hazy_clip_is_a_stack_with_thickening_fog():
    [(stack, kw, kind)] = sd.hazy_motorcycle_stack(n_frames=4, height=60, width=80)
    assert kind == "image" and kw["rgb"] and stack.shape == (4, 60, 80, 3) and stack.dtype == np.uint8
    dark = stack.min(-1).reshape(4, -1).mean(1)
    assert dark[-1] > dark[0]  # later frames are hazier
    assert len(kw["metadata"]["beta"]) == 4
