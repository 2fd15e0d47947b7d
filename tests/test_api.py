"""The public API (``napari_clearnet.dehaze``, ``load_model``, the model cache): a result for
every method, one model load for many calls, provenance, and the choices it checks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from _common import METHODS, dehaze_cpu, dehazer, hazy, hazy_rgb

import napari_clearnet
import napari_clearnet as nc
from napari_clearnet import api, load_model
from napari_clearnet.weights import DEFAULT_MODEL, bundled_dir, get_entry, sha256_file


def _check(res, spatial: tuple[int, int]) -> None:
    assert res.image.dtype == np.float32
    assert np.isfinite(res.image).all() and res.image.min() >= 0 and res.image.max() <= 1
    assert res.transmission.shape[-2:] == spatial
    assert res.transmission.min() > 0 and res.transmission.max() <= 1
    assert res.airlight.shape[-1] == 3


@pytest.mark.parametrize("method", METHODS)
def test_float_rgb_shape_and_dehazing_increases_contrast(method: str) -> None:
    x = hazy_rgb()
    res = dehaze_cpu(x, method)
    _check(res, x.shape[:2])
    assert res.image.shape == x.shape
    assert res.image.std() > x.std()  # haze removal restores contrast


def test_load_model_once_and_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    dehazer = load_model(device="cpu")
    x = hazy_rgb()
    a = napari_clearnet.dehaze(x, model=dehazer)
    b = dehazer.dehaze(x)
    np.testing.assert_array_equal(a.image, b.image)
    calls = []
    real = api.load_model
    monkeypatch.setattr(api, "load_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(api, "_CACHE", {})
    for _ in range(3):
        napari_clearnet.dehaze(x, device="cpu")
    assert len(calls) == 1  # the registry model is cached between calls


def test_one_model_cache_for_api_and_napari_and_retrained_files_reload(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from napari_clearnet._plugin.layers import get_dehazer

    monkeypatch.setattr(api, "_CACHE", {})
    assert get_dehazer("clearnet", None, "cpu") is api.cached_model(device="cpu")
    assert get_dehazer("dcp", "ignored", "cpu") is api.cached_model(method="dcp", device="cpu")
    path = tmp_path / "mine.safetensors"
    shutil.copyfile(get_entry(DEFAULT_MODEL).bundled_path, path)
    first = api.cached_model(path, device="cpu")
    assert api.cached_model(path, device="cpu") is first  # unchanged file: reused
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # "retrained"
    assert api.cached_model(path, device="cpu") is not first


def test_provenance_names_method_weights_device_and_time() -> None:
    x = hazy_rgb()
    res = dehaze_cpu(x, "clearnet")
    p = res.provenance
    entry = get_entry("clearnet-default")
    assert p["method"] == res.method == "clearnet"
    assert p["model"] == "clearnet-default"
    assert p["sha256"] == sha256_file(bundled_dir() / entry.filename)
    assert p["device"] == "cpu" and p["precision"] == "float32"
    assert p["seconds"] > 0 and p["t0"] == pytest.approx(0.1)
    assert p["napari_clearnet"] == napari_clearnet.__version__
    d = dehaze_cpu(x, "dcp", airlight=0.9).provenance
    assert d["method"] == "dcp" and d["model"] is None and d["sha256"] is None
    assert d["dcp"]["patch"] == 15 and d["airlight_override"] == pytest.approx([0.9] * 3)


def test_airlight_override_is_used() -> None:
    res = dehaze_cpu(hazy_rgb(), "clearnet", airlight=[0.7, 0.8, 0.9])
    np.testing.assert_allclose(res.airlight, [0.7, 0.8, 0.9], atol=1e-6)
    with pytest.raises(ValueError, match="airlight"):
        dehaze_cpu(hazy_rgb(), airlight=[0.5, 2.0, 0.5])


def test_unknown_method_and_device_are_named() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        dehaze_cpu(hazy_rgb(), "fancy")
    with pytest.raises(ValueError, match="unknown device"):
        napari_clearnet.dehaze(hazy_rgb(), method="dcp", device="tpu9")


def test_method_must_match_a_given_dehazer() -> None:  # F22
    m = dehazer("clearnet")
    with pytest.raises(ValueError, match="runs 'clearnet'"):
        nc.dehaze(hazy(), method="dcp", model=m)
    with pytest.raises(ValueError, match="method must be one of"):
        nc.dehaze(hazy(), method="nonsense", model=m)
    assert nc.dehaze(hazy(), model=dehazer("dcp")).method == "dcp"  # no method: the Dehazer's
    assert nc.dehaze(hazy(), method="clearnet", model=m).method == "clearnet"
