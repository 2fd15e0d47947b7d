"""Every accepted input kind through ``napari_clearnet.dehaze``, model reuse and provenance."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_clearnet
from napari_clearnet import engine, load_model, physics
from napari_clearnet.weights import DEFAULT_MODEL, bundled_dir, get_entry, sha256_file

METHODS = ("clearnet", "dcp")


def hazy_rgb(h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    """A float RGB image with haze that thickens to the top (values in [0, 1])."""
    rng = np.random.default_rng(seed)
    clean = rng.random((h, w, 3)).astype(np.float32) * 0.8
    t = np.linspace(0.2, 0.9, h, dtype=np.float32)[:, None, None]
    return (clean * t + 0.85 * (1 - t)).astype(np.float32)


def _dehaze(x, method="dcp", **kw):
    return napari_clearnet.dehaze(x, method=method, device="cpu", **kw)


def _check(res, spatial: tuple[int, int]) -> None:
    assert res.image.dtype == np.float32
    assert np.isfinite(res.image).all() and res.image.min() >= 0 and res.image.max() <= 1
    assert res.transmission.shape[-2:] == spatial
    assert res.transmission.min() > 0 and res.transmission.max() <= 1
    assert res.airlight.shape[-1] == 3


@pytest.mark.parametrize("method", METHODS)
def test_float_rgb_shape_and_dehazing_increases_contrast(method: str) -> None:
    x = hazy_rgb()
    res = _dehaze(x, method)
    _check(res, x.shape[:2])
    assert res.image.shape == x.shape
    assert res.image.std() > x.std()  # haze removal restores contrast


@pytest.mark.parametrize("method", METHODS)
def test_uint8_and_uint16_are_read_by_their_full_range(method: str) -> None:
    x8 = np.round(hazy_rgb() * 255).astype(np.uint8)
    x16 = x8.astype(np.uint16) * 257
    r8, r16 = _dehaze(x8, method), _dehaze(x16, method)
    assert r8.image.shape == x8.shape
    np.testing.assert_allclose(r8.image, r16.image, atol=1e-4)
    np.testing.assert_allclose(r8.image, _dehaze(x8.astype(np.float32) / 255, method).image, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_grey_layouts_stay_grey(method: str) -> None:
    g = hazy_rgb()[..., 1]
    r2 = _dehaze(g, method)
    r1 = _dehaze(g[..., None], method)
    assert r2.image.shape == g.shape and r1.image.shape == (*g.shape, 1)
    np.testing.assert_allclose(r1.image[..., 0], r2.image, atol=1e-6)
    rgb = _dehaze(np.repeat(g[..., None], 3, -1), method)
    np.testing.assert_allclose(r2.image, rgb.image.mean(-1), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_rgba_alpha_passes_through_unchanged(method: str) -> None:
    rgb = np.round(hazy_rgb() * 255).astype(np.uint8)
    alpha = np.random.default_rng(3).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    rgba = np.concatenate([rgb, alpha[..., None]], -1)
    res = _dehaze(rgba, method)
    assert res.image.shape == rgba.shape
    np.testing.assert_array_equal(res.image[..., 3], alpha.astype(np.float32) / 255)
    np.testing.assert_allclose(res.image[..., :3], _dehaze(rgb, method).image, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_colour_and_grey_stacks_equal_frame_by_frame(method: str) -> None:
    frames = np.stack([hazy_rgb(24, 32, s) for s in range(3)])
    res = _dehaze(frames, method)
    assert res.image.shape == frames.shape
    assert res.transmission.shape == (3, 24, 32) and res.airlight.shape == (3, 3)
    for i in range(3):
        np.testing.assert_allclose(res.image[i], _dehaze(frames[i], method).image, atol=1e-6)
    grey = frames[:2, ..., 0]  # T x H x W with T not 3 or 4 is read as grey frames
    rg = _dehaze(grey, method)
    assert rg.image.shape == grey.shape
    np.testing.assert_allclose(rg.image[1], _dehaze(grey[1], method).image, atol=1e-6)
    three = _dehaze(frames[..., 0], method, channel_axis=None)  # (3, H, W) frames, said explicitly
    assert three.image.shape == (3, 24, 32) and three.transmission.shape == (3, 24, 32)


def test_channel_first_with_channel_axis_0() -> None:
    x = hazy_rgb()
    cf = np.moveaxis(x, -1, 0).copy()
    res = _dehaze(cf, channel_axis=0)
    assert res.image.shape == cf.shape
    np.testing.assert_allclose(np.moveaxis(res.image, 0, -1), _dehaze(x).image, atol=1e-6)
    with pytest.raises(ValueError, match="ambiguous"):
        _dehaze(cf)  # (3, H, W) needs the caller to say what it is


@pytest.mark.parametrize("method", METHODS)
def test_dask_array_gives_the_numpy_result(method: str) -> None:
    da = pytest.importorskip("dask.array")
    frames = np.stack([hazy_rgb(24, 32, s) for s in range(2)])
    lazy = da.from_array(frames, chunks=(1, 24, 32, 3))
    res = _dehaze(lazy, method)
    assert isinstance(res.image, np.ndarray)
    np.testing.assert_allclose(res.image, _dehaze(frames, method).image, atol=1e-6)


def test_load_model_once_and_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    dehazer = load_model(device="cpu")
    x = hazy_rgb()
    a = napari_clearnet.dehaze(x, model=dehazer)
    b = dehazer.dehaze(x)
    np.testing.assert_array_equal(a.image, b.image)
    calls = []
    real = engine.load_model
    monkeypatch.setattr(engine, "load_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(engine, "_CACHE", {})
    for _ in range(3):
        napari_clearnet.dehaze(x, device="cpu")
    assert len(calls) == 1  # the registry model is cached between calls


def test_one_model_cache_for_api_and_napari_and_retrained_files_reload(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from napari_clearnet._napari_commands import get_dehazer

    monkeypatch.setattr(engine, "_CACHE", {})
    assert get_dehazer("clearnet", None, "cpu") is engine.cached_model(device="cpu")
    assert get_dehazer("dcp", "ignored", "cpu") is engine.cached_model(method="dcp", device="cpu")
    path = tmp_path / "mine.safetensors"
    shutil.copyfile(get_entry(DEFAULT_MODEL).bundled_path, path)
    first = engine.cached_model(path, device="cpu")
    assert engine.cached_model(path, device="cpu") is first  # unchanged file: reused
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # "retrained"
    assert engine.cached_model(path, device="cpu") is not first


def _sky_scene() -> np.ndarray:
    """Top half: a smooth bright sky at the airlight with a faint gradient; bottom: hazy ground."""
    x = hazy_rgb(48, 64)
    x[:24] = 0.85 + np.linspace(-0.03, 0.03, 64, dtype=np.float32)[None, :, None]
    return x


@pytest.mark.parametrize("method", METHODS)
def test_sky_protection_keeps_skies_and_leaves_the_rest(method: str) -> None:
    x = _sky_scene()
    off = _dehaze(x, method, sky_protection=0.0)
    default = _dehaze(x, method)
    # each method's default: ClearNet protects flat skies, the classic DCP does not
    assert default.provenance["sky_protection"] == engine.DEFAULT_SKY_PROTECTION[method]
    if engine.DEFAULT_SKY_PROTECTION[method] == 0:
        np.testing.assert_array_equal(default.image, off.image)  # 0 = off, exactly
    kept = _dehaze(x, method, sky_protection=0.2)
    sky, ground = (slice(2, 20), slice(None)), (slice(36, 48), slice(None))
    assert kept.transmission[sky].mean() > off.transmission[sky].mean() + 0.1
    # the sky's gradient is amplified less (no rings), the ground keeps most of its dehazing
    assert np.ptp(kept.image[sky].mean(-1), 1).mean() < np.ptp(off.image[sky].mean(-1), 1).mean()
    assert kept.image[ground].std() > x[ground].std()
    assert kept.provenance["sky_protection"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"sky_protection must be in \[0, 1\].*got 1.5"):
        _dehaze(x, method, sky_protection=1.5)


def test_sky_protection_spares_textured_regions_close_to_the_airlight() -> None:
    """The flatness gate: a flat bright region is protected, an equally bright textured one (a
    lit wall, fog over a street) is dehazed as without protection."""
    t = torch.full((1, 1, 40, 80), 0.2)
    img = torch.full((1, 3, 40, 80), 0.85)
    img[..., 40:] += 0.08 * (torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0)) - 0.5)
    a = torch.tensor([[0.86, 0.86, 0.86]])
    out = physics.sky_tolerance(t, img, a, 0.2, smooth=engine.SKY_SMOOTH)
    assert out[..., 5:35, 5:35].min() > 0.9  # flat: protected
    assert out[..., 5:35, 45:75].mean() < 0.3  # textured: left as estimated
    np.testing.assert_array_equal(physics.sky_tolerance(t, img, a, 0.0, smooth=0.02), t)


def test_sky_protection_batched_stack_equals_frame_by_frame() -> None:
    stack = np.stack([_sky_scene(), _sky_scene()[:, ::-1]])
    dehazer = load_model(device="cpu")
    both = dehazer.dehaze(stack, sky_protection=0.15, batch_size=2)
    for i in range(2):
        one = dehazer.dehaze(stack[i], sky_protection=0.15)
        np.testing.assert_allclose(both.image[i], one.image, atol=1e-5)


def test_provenance_names_method_weights_device_and_time() -> None:
    x = hazy_rgb()
    res = _dehaze(x, "clearnet")
    p = res.provenance
    entry = get_entry("clearnet-default")
    assert p["method"] == res.method == "clearnet"
    assert p["model"] == "clearnet-default"
    assert p["sha256"] == sha256_file(bundled_dir() / entry.filename)
    assert p["device"] == "cpu" and p["precision"] == "float32"
    assert p["seconds"] > 0 and p["t0"] == pytest.approx(0.1)
    assert p["napari_clearnet"] == napari_clearnet.__version__
    d = _dehaze(x, "dcp", airlight=0.9).provenance
    assert d["method"] == "dcp" and d["model"] is None and d["sha256"] is None
    assert d["dcp"]["patch"] == 15 and d["airlight_override"] == pytest.approx([0.9] * 3)


def test_airlight_override_is_used() -> None:
    res = _dehaze(hazy_rgb(), "clearnet", airlight=[0.7, 0.8, 0.9])
    np.testing.assert_allclose(res.airlight, [0.7, 0.8, 0.9], atol=1e-6)
    with pytest.raises(ValueError, match="airlight"):
        _dehaze(hazy_rgb(), airlight=[0.5, 2.0, 0.5])


def test_unknown_method_and_device_are_named() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        _dehaze(hazy_rgb(), "fancy")
    with pytest.raises(ValueError, match="unknown device"):
        napari_clearnet.dehaze(hazy_rgb(), method="dcp", device="tpu9")
