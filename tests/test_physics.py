"""The scattering model and the Dark Channel Prior on synthetic haze with known t and A."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_clearnet import dcp, physics


def _scene(h: int = 96, w: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A clean image that obeys the dark-channel prior and a depth that grows to the top.

    Every pixel has one colour channel near zero (saturated colours, like foliage and shadows),
    so the clean image's dark channel is ~0; the top rows are so deep that t ~ 0 there and the
    hazy image is the airlight itself, which is where DCP must find A.
    """
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand((1, 3, h, w), generator=g) * 0.7 + 0.1
    zero = torch.randint(0, 3, (1, 1, h, w), generator=g)
    clean = clean.scatter(1, zero, 0.02)
    rows = torch.linspace(1.0, 0.0, h).reshape(1, 1, h, 1)  # 1 at the top (far), 0 at the bottom
    depth = (rows * 8.0).expand(1, 1, h, w)
    return clean, depth


def test_haze_then_recover_with_true_t_and_a_is_identity() -> None:
    clean, depth = _scene()
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


def test_dcp_recovers_known_airlight_and_depth_order() -> None:
    clean, depth = _scene()
    a_true = torch.tensor([[0.8, 0.85, 0.9]])
    hazy = physics.haze(clean, torch.exp(-1.0 * depth), a_true)
    t_raw, t, a = dcp.estimate(hazy, dcp.DCPParams(airlight_rule="mean"))
    assert a.shape == (1, 3)
    assert torch.allclose(a, a_true, atol=0.05), a
    # near (bottom) rows must be estimated clearer than far (top) rows
    assert t[..., -10:, :].mean() > t[..., :10, :].mean() + 0.5
    assert t_raw.shape == t.shape == (1, 1, *hazy.shape[-2:])


def test_dcp_transmission_matches_truth_where_prior_holds() -> None:
    clean, depth = _scene()
    a_true = torch.tensor([[0.8, 0.85, 0.9]])
    t_true = torch.exp(-0.15 * depth)
    hazy = physics.haze(clean, t_true, a_true)
    t_raw, _, _ = dcp.estimate(hazy, dcp.DCPParams(omega=1.0, patch=3), airlight=a_true)
    # with omega 1 and the true A, the raw DCP t equals the truth up to the tiny dark channel of J
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert (t_raw[inner] - t_true[inner]).abs().mean() < 0.05


def test_dark_channel_is_min_over_channels_and_patch() -> None:
    x = torch.ones((1, 3, 9, 9))
    x[0, 1, 4, 4] = 0.25
    d = physics.dark_channel(x, patch=3)
    assert d[0, 0, 3:6, 3:6].eq(0.25).all()
    assert d[0, 0, 0, 0] == 1.0 and d[0, 0, 8, 8] == 1.0


def test_guided_filter_keeps_constant_and_box_filter_is_a_mean() -> None:
    guide = torch.rand((1, 3, 20, 30), generator=torch.Generator().manual_seed(1))
    src = torch.full((1, 1, 20, 30), 0.4)
    assert torch.allclose(physics.guided_filter(guide, src, r=4), src, atol=1e-5)
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    assert physics.box_filter(x, 1)[0, 0, 2, 2] == pytest.approx(x[0, 0, 1:4, 1:4].mean().item())


def test_upsample_linear_in_strips_matches_whole_and_interpolate() -> None:
    x = torch.rand((1, 1, 7, 9), generator=torch.Generator().manual_seed(2))
    whole = physics.upsample_linear(x, (40, 50))
    ref = torch.nn.functional.interpolate(x, size=(40, 50), mode="bilinear", align_corners=False)
    assert torch.allclose(whole, ref, atol=1e-5)
    bands = [physics.upsample_linear(x, (40, 50), (r, min(40, r + 13))) for r in range(0, 40, 13)]
    strips = torch.cat(bands, -2)
    assert torch.equal(strips, whole)


def test_airlight_rules() -> None:
    img = torch.zeros((1, 3, 10, 10))
    img[0, :, 0, 0] = torch.tensor([0.9, 0.8, 0.7])
    dark = physics.dark_channel(img, 1)
    assert np.allclose(physics.airlight_top_dark(img, dark, 0.01, "brightest")[0].numpy(), [0.9, 0.8, 0.7])
    with pytest.raises(ValueError, match="airlight rule"):
        physics.airlight_top_dark(img, dark, 0.01, "median")
