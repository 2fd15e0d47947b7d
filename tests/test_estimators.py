"""estimators: both methods behind one interface, with estimates at one defined resolution (the
estimator's working resolution) and the exact pixels the airlight was taken from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _common import METHODS, dehazer, hazy_rgb

from napari_clearnet.core import dcp, physics
from napari_clearnet.core.estimators import ClearNetEstimator, DCPEstimator, Estimate


def _frame(h: int = 300, w: int = 420) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(hazy_rgb(h, w))).permute(2, 0, 1)[None]


@pytest.mark.parametrize("method", METHODS)
def test_estimates_are_at_the_working_resolution_and_come_back_at_full(method: str) -> None:
    est = dehazer(method).estimator
    x = _frame()
    low = est.reduce(x)
    h, w = est.working_shape(300, 420)
    assert low.shape == (1, 3, h, w)
    e = est.estimate(low)
    assert isinstance(e, Estimate)
    assert e.t.shape == e.t_raw.shape == (1, 1, h, w) and e.airlight.shape == (1, 3)
    assert (e.scale is not None) == (method == "clearnet")
    if method == "clearnet":
        assert max(h, w) == est.model.config.working_size  # a reduced copy
    else:
        assert (h, w) == (300, 420) and low is x  # the DCP needs the frame itself
    rows = est.rows_at_full_resolution(low, e.t, (300, 420))
    band = rows(x[..., 40:90, :], 40, 90)
    assert band.shape == (1, 1, 50, 420) and band.min() > 0 and band.max() <= 1
    assert torch.equal(band, rows(x, 0, 300)[..., 40:90, :])  # bands are seamless


@pytest.mark.parametrize("method", METHODS)
def test_the_airlight_sources_are_the_pixels_the_method_used(method: str) -> None:
    """DCP: A is the mean (or brightest) of the image at its sources. ClearNet: its prior's A (the
    one the network corrects) is the mean of the working copy at its sources, so the napari
    layer shows what the model used, not a re-derived rule."""
    est = dehazer(method).estimator
    low = est.reduce(_frame())
    e = est.estimate(low)
    assert e.sources is not None and e.sources.ndim == 2 and e.sources.shape[0] == 1
    picked = low.reshape(1, 3, -1)[..., e.sources[0]]
    if method == "dcp":
        params = est.params
        assert params.airlight_rule == "brightest"
        best = picked.sum(1).argmax()
        assert torch.equal(e.airlight[0], picked[0, :, best].clamp(1e-3, 1.0))
    else:
        prior = est.model.config.prior
        assert prior.airlight_rule == "mean"
        with torch.inference_mode():
            a_prior = est.model(low)["airlight_prior"]
        torch.testing.assert_close(a_prior, picked.mean(-1).clamp(1e-3, 1.0))
        assert torch.equal(e.sources, dcp.airlight_sources(low, prior))
    fixed = est.estimate(low, torch.tensor([[0.8, 0.8, 0.8]]))
    assert fixed.sources is None  # a given A comes from no pixel


def test_network_copy_is_channels_last_but_the_model_stays_saveable() -> None:
    est = dehazer("clearnet").estimator
    assert isinstance(est, ClearNetEstimator)
    assert est.model.stem[0].weight.is_contiguous()  # safetensors can save self.model as it is
    assert est.net.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_recovery_bound_and_provenance_per_method() -> None:
    c, d = dehazer("clearnet").estimator, dehazer("dcp").estimator
    assert isinstance(d, DCPEstimator) and d.max_batch == 1 and c.max_batch is None
    assert c.recovery_t0(None) == c.model.config.t0 and c.recovery_t0(0.0) == 0.0
    assert d.recovery_t0(None) == d.params.t0 == 0.1
    with pytest.raises(ValueError, match=r"t0 must be in \(0, 1\)"):
        d.recovery_t0(0.0)  # the classic DCP keeps its open interval
    assert set(c.provenance()) == {"model", "sha256", "precision"}
    assert d.provenance()["dcp"]["patch"] == 15 and d.provenance()["model"] is None


def test_estimate_update_takes_the_new_rows_and_keeps_the_sources() -> None:
    t = torch.rand(3, 1, 4, 5)
    e = Estimate(t.clone(), torch.rand(3, 3), t.clone(), torch.rand(3), torch.arange(6).reshape(3, 2))
    again = Estimate(torch.zeros(2, 1, 4, 5), torch.ones(2, 3), torch.zeros(2, 1, 4, 5), torch.ones(2), None)
    sources = e.sources.clone()
    e.update([0, 2], again)
    assert e.t[[0, 2]].eq(0).all() and torch.equal(e.t[1], t[1])
    assert e.airlight[[0, 2]].eq(1).all() and e.scale[[0, 2]].eq(1).all()
    assert torch.equal(e.sources, sources)
    assert physics.resize(e.t, (4, 5)) is e.t  # nothing to resize at the working resolution


def test_a_model_without_a_per_pixel_correction_skips_its_decoder_with_the_same_numbers(monkeypatch) -> None:
    """The shipped model's t-head is all zeros (trained without the per-pixel correction): its
    output is exactly 0, so inference skips the decoder that feeds it, bit for bit the same. A
    model whose t-head is not zero runs the decoder and its correction shows."""
    import copy

    from napari_clearnet.core.model import ClearNet

    model = copy.deepcopy(dehazer("clearnet").model).eval()
    assert not model.has_residual()
    low = _frame(96, 128)
    with torch.inference_mode():
        fast = model(low)
        monkeypatch.setattr(ClearNet, "has_residual", lambda self: True)
        full = model(low)
        monkeypatch.undo()
        for key in ("t", "airlight", "scale", "t_prior", "sources"):
            assert torch.equal(fast[key], full[key]), key
        model.t_head.bias.fill_(0.3)
        assert model.has_residual()
        assert not torch.equal(model(low)["t"], fast["t"])
