"""dcp: the classic Dark Channel Prior finds a known airlight and transmission, and says which
pixels it took A from."""

from __future__ import annotations

import torch
from _common import prior_scene

from napari_clearnet.core import dcp, physics


def test_dcp_recovers_known_airlight_and_depth_order() -> None:
    clean, depth = prior_scene()
    a_true = torch.tensor([[0.8, 0.85, 0.9]])
    hazy = physics.haze(clean, torch.exp(-1.0 * depth), a_true)
    t_raw, t, a = dcp.estimate(hazy, dcp.DCPParams(airlight_rule="mean"))
    assert a.shape == (1, 3)
    assert torch.allclose(a, a_true, atol=0.05), a
    # near (bottom) rows must be estimated clearer than far (top) rows
    assert t[..., -10:, :].mean() > t[..., :10, :].mean() + 0.5
    assert t_raw.shape == t.shape == (1, 1, *hazy.shape[-2:])


def test_dcp_transmission_matches_truth_where_prior_holds() -> None:
    clean, depth = prior_scene()
    a_true = torch.tensor([[0.8, 0.85, 0.9]])
    t_true = torch.exp(-0.15 * depth)
    hazy = physics.haze(clean, t_true, a_true)
    t_raw, _, _ = dcp.estimate(hazy, dcp.DCPParams(omega=1.0, patch=3), airlight=a_true)
    # with omega 1 and the true A, the raw DCP t equals the truth up to the tiny dark channel of J
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert (t_raw[inner] - t_true[inner]).abs().mean() < 0.05


def test_estimate_says_which_pixels_it_took_the_airlight_from() -> None:
    clean, depth = prior_scene()
    hazy = physics.haze(clean, torch.exp(-1.0 * depth), torch.tensor([[0.8, 0.85, 0.9]]))
    params = dcp.DCPParams(airlight_rule="mean", top_fraction=0.002)
    t_raw, t, a, sources = dcp.estimate_with_sources(hazy, params)
    for mine, plain in zip((t_raw, t, a), dcp.estimate(hazy, params), strict=True):
        assert torch.equal(mine, plain)
    assert torch.equal(sources, dcp.airlight_sources(hazy, params))
    assert sources.shape == (1, round(hazy.shape[-2] * hazy.shape[-1] * 0.002))
    at_sources = hazy.reshape(1, 3, -1)[..., sources[0]].mean(-1)
    assert torch.allclose(a, at_sources.clamp(1e-3, 1.0))
    rows = sources[0] // hazy.shape[-1]
    assert rows.float().mean() < hazy.shape[-2] / 4  # the far (top) rows, where the haze is densest
    assert dcp.estimate_with_sources(hazy, params, airlight=a)[3] is None  # a given A has no sources

