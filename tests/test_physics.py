"""physics: the scattering model and the operators built on it (dark channel, airlight rule,
guided filter, upsampling in strips), on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _common import prior_scene

from napari_clearnet.core import physics


def test_haze_then_recover_with_true_t_and_a_is_identity() -> None:
    clean, depth = prior_scene()
    t = torch.exp(-0.2 * depth)  # t in [0.2, 1]
    a = torch.tensor([[0.8, 0.85, 0.9]])
    hazy = physics.haze(clean, t, a)
    back = physics.recover(hazy, t, a, t0=1e-4, clip=False)
    assert torch.allclose(back, clean, atol=1e-5)
    # and hazing really changed the image, so the round trip is not trivially the identity
    assert (hazy - clean).abs().max() > 0.2


def test_recover_bounds_t_by_t0_and_clips() -> None:
    hazy = torch.full((1, 3, 4, 4), 0.5)
    t = torch.full((1, 1, 4, 4), 1e-6)
    a = torch.tensor([[0.2, 0.2, 0.2]])
    j = physics.recover(hazy, t, a, t0=0.1, clip=False)
    assert torch.allclose(j, torch.full_like(j, (0.5 - 0.2) / 0.1 + 0.2))
    assert physics.recover(hazy, t, a, t0=0.1).max() == 1.0


def test_dark_channel_is_min_over_channels_and_patch() -> None:
    x = torch.ones((1, 3, 9, 9))
    x[0, 1, 4, 4] = 0.25
    d = physics.dark_channel(x, patch=3)
    assert d[0, 0, 3:6, 3:6].eq(0.25).all()
    assert d[0, 0, 0, 0] == 1.0 and d[0, 0, 8, 8] == 1.0


@pytest.mark.parametrize("size", [1, 3, 7, 9, 15])
def test_min_filter_equals_the_max_pool_reference(size: int) -> None:
    """The doubling running minimum is exact: same numbers as -maxpool(-x) with edge replication."""
    x = torch.rand(2, 1, 23, 31)
    pad = size // 2
    padded = torch.nn.functional.pad(-x, (pad, pad, pad, pad), mode="replicate")
    ref = -torch.nn.functional.max_pool2d(padded, size, stride=1)
    assert torch.equal(physics._min_filter(x, size), ref)


def test_guided_filter_keeps_constant_and_box_filter_is_a_mean() -> None:
    guide = torch.rand((1, 3, 20, 30), generator=torch.Generator().manual_seed(1))
    src = torch.full((1, 1, 20, 30), 0.4)
    assert torch.allclose(physics.guided_filter(guide, src, r=4), src, atol=1e-5)
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    assert physics.box_filter(x, 1)[0, 0, 2, 2] == pytest.approx(x[0, 0, 1:4, 1:4].mean().item())


def test_airlight_rules() -> None:
    img = torch.zeros((1, 3, 10, 10))
    img[0, :, 0, 0] = torch.tensor([0.9, 0.8, 0.7])
    dark = physics.dark_channel(img, 1)
    assert np.allclose(physics.airlight_top_dark(img, dark, 0.01, "brightest")[0].numpy(), [0.9, 0.8, 0.7])
    with pytest.raises(ValueError, match="airlight rule"):
        physics.airlight_top_dark(img, dark, 0.01, "median")


@pytest.mark.parametrize(("shape", "size", "step"),
                         [((1, 2, 37, 53), (301, 410), 29), ((1, 1, 7, 9), (40, 50), 13)])
def test_upsample_linear_strips_equal_whole_and_match_interpolate(shape, size, step) -> None:
    """Any band of rows equals the same rows of the whole image (no seams between strips)."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    whole = physics.upsample_linear(x, size)
    bands = [physics.upsample_linear(x, size, (r, min(size[0], r + step))) for r in range(0, size[0], step)]
    strips = torch.cat(bands, -2)
    assert torch.equal(whole, strips)
    ref = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    assert torch.allclose(whole, ref, atol=1e-5)


def test_airlight_comes_from_the_most_haze_opaque_pixels() -> None:
    """The one definition of the rule: the top fraction of the dark channel, most opaque first;
    the "mean" airlight is the image's mean over exactly those pixels."""
    img = torch.rand((2, 3, 30, 40), generator=torch.Generator().manual_seed(4))
    dark = physics.dark_channel(img, 5)
    idx = physics.top_dark_indices(dark, 0.01)
    assert idx.shape == (2, 12)
    flat = dark.reshape(2, -1)
    picked = flat.gather(1, idx)
    assert (picked[:, :-1] >= picked[:, 1:]).all()  # most opaque first
    assert (picked[:, -1:] >= flat.sort(1, descending=True).values[:, 11:12]).all()
    mean = img.reshape(2, 3, -1).gather(2, idx[:, None].expand(2, 3, 12)).mean(2)
    assert torch.equal(physics.airlight_top_dark(img, dark, 0.01, "mean"), mean.clamp(1e-3, 1.0))
    assert torch.equal(physics.airlight_top_dark(img, dark, 0.01, "mean", idx),
                       physics.airlight_top_dark(img, dark, 0.01, "mean"))


@pytest.mark.parametrize(("shape", "r"),
                         [((1, 1, 9, 13), 3), ((2, 3, 17, 5), 4), ((1, 2, 1, 7), 2), ((1, 1, 6, 6), 9)])
def test_box_filter_is_the_mean_over_the_window_clipped_at_the_borders(shape, r) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    want = torch.empty_like(x)
    h, w = shape[-2:]
    for i in range(h):
        for j in range(w):
            want[..., i, j] = x[..., max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].mean((-2, -1))
    assert torch.allclose(physics.box_filter(x, r), want, atol=1e-12)


def test_gray_is_the_same_in_any_memory_layout_and_into_a_buffer() -> None:
    x = torch.rand(1, 3, 30, 40, generator=torch.Generator().manual_seed(6))
    cl = x.contiguous(memory_format=torch.channels_last)
    want = (x * torch.tensor(physics.LUMA).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
    out = torch.empty(1, 1, 30, 40)
    for got in (physics.gray(x), physics.gray(cl), physics.gray(cl, out=out), physics.gray(x, out=out)):
        assert got.shape == (1, 1, 30, 40) and torch.allclose(got, want, atol=1e-6)
    assert physics.gray(cl, out=out) is out
