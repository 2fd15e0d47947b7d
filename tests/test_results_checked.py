"""Results that are black, flat or non-finite are errors, not outputs (review 2026-12-07: G10,
G11). Every frame the engine recovers is checked (``checks.check_frame``); weights are run once
on a probe image when loaded (``checks.probe_weights``); pixel ranges that would make an image
nearly black are refused with the ``value_range`` to pass (``arrays.pixel_range``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _common import cli, dehazer
from _gen import hazy
from safetensors.torch import save_file

import napari_clearnet as nc
from napari_clearnet import io
from napari_clearnet import weights as w
from napari_clearnet.core import checks
from napari_clearnet.core.engine import Dehazer


def _bundled() -> tuple[dict, object, dict]:
    return w.read_weights(w.bundled_dir() / "clearnet-default.safetensors")


def _scaled_model(factor: float) -> torch.nn.Module:
    sd, cfg, _ = _bundled()
    m = w.build_model(sd, cfg)
    with torch.no_grad():
        for q in m.parameters():
            q.mul_(factor)
    return m


# ------------------------------------------------------------------------------------------ G10
def test_finite_weights_that_overflow_are_refused_when_loaded_not_written_black(tmp_path: Path) -> None:
    # G10: weights × 1e15 are finite, pass every file check, and gave all-NaN results, a black PNG
    # and exit 0; the probe run at load refuses them, by name, before any image is read
    w.save_weights(_scaled_model(1e15), tmp_path / "huge.safetensors")
    with pytest.raises(w.WeightsError, match=r"huge\.safetensors: these weights fail on a test image"):
        nc.load_model(tmp_path / "huge.safetensors", device="cpu")
    io.write_image(tmp_path / "photo.png", hazy())
    r = cli("dehaze", "photo.png", "-o", "out_h", "--model", "./huge.safetensors", "--method", "clearnet",
            "--save-airlight", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "cannot load the model" in r.stderr and "not finite" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out_h").exists() or not list((tmp_path / "out_h").iterdir())


def test_a_model_that_overflows_midway_is_stopped_at_the_frame_that_went_wrong() -> None:
    # G10 (variant): a Dehazer built from a network directly (no load, so no probe) is still held
    # to the engine's invariant "J, t and A finite" on every frame, the frame named in a stack
    d = Dehazer("clearnet", _scaled_model(1e15), device="cpu")
    with pytest.raises(checks.ResultError, match="the result is not finite"):
        d.dehaze(hazy())
    stack = np.stack([hazy(seed=i) for i in range(3)])
    with pytest.raises(checks.ResultError, match=r"^frame 0: the result is not finite"):
        d.dehaze(stack, batch_size=1)


@pytest.mark.parametrize("kind", ["bool", "int"])
def test_weights_of_the_right_shape_but_not_floating_point_are_refused_by_type(tmp_path: Path, kind) -> None:
    # G10: boolean tensors of the right shapes were cast to float by load_state_dict and gave
    # near-black images (mean 2.9/255); integer tensors are the same case
    sd, _, meta = _bundled()
    bad = {k: (v > 0) if kind == "bool" else (v * 100).to(torch.int32) for k, v in sd.items()}
    save_file(bad, str(tmp_path / "x.safetensors"), metadata={w.CONFIG_KEY: meta[w.CONFIG_KEY]})
    with pytest.raises(w.WeightsError, match="not floating point"):
        nc.load_model(tmp_path / "x.safetensors", device="cpu")


def test_float_weights_that_turn_images_nearly_black_are_refused_by_the_probe(tmp_path: Path) -> None:
    # G10 (variant): the same boolean pattern stored as float32 passes the type check; the probe
    # run sees a test image turned nearly black and refuses the file
    sd, _, meta = _bundled()
    save_file({k: (v > 0).float() for k, v in sd.items()}, str(tmp_path / "ones.safetensors"),
              metadata={w.CONFIG_KEY: meta[w.CONFIG_KEY]})
    with pytest.raises(w.WeightsError, match=r"ones\.safetensors: these weights"):
        nc.load_model(tmp_path / "ones.safetensors", device="cpu")


def test_a_flat_result_from_a_varied_input_is_an_error_but_a_flat_input_may_give_one() -> None:
    # G10: the check on every frame: black / white / one-grey J from a varied input is refused,
    # naming the tone, t and A; a constant input legitimately gives a constant J
    x = torch.from_numpy(hazy().astype(np.float32) / 255).permute(2, 0, 1)[None]
    t = torch.full((1, 1, 8, 8), 0.5)
    for value, tone in ((0.0, "black"), (1.0, "white"), (0.4, "one grey")):
        with pytest.raises(checks.ResultError, match=rf"frame 3: the result is flat \({tone}"):
            checks.check_frame(np.full((64, 80, 3), value, np.float32), t, np.ones(3), x, 3)
    checks.check_frame(np.full((64, 80, 3), 0.4, np.float32), t, np.ones(3), torch.full((1, 3, 64, 80), 0.7))
    j = np.full((64, 80, 3), 0.4, np.float32)
    j[31, 5, 1] = np.nan  # on a row the cheap sample skips: the flat-looking sample reads all of J
    with pytest.raises(checks.ResultError, match="not finite"):
        checks.check_frame(j, t, np.ones(3), x)
    for method in ("clearnet", "dcp"):  # and real results pass
        dehazer(method).dehaze(np.full((16, 16, 3), 0.7, np.float32))
        dehazer(method).dehaze(hazy())


# ------------------------------------------------------------------------------------------ G11
@pytest.mark.parametrize("method", ["clearnet", "dcp"])
def test_float_images_above_two_are_refused_with_the_range_to_pass_not_made_black(method: str) -> None:
    # G11: linear float data up to 2.5 (a raw converter's) was divided by 255: mean 0.006, black
    hdr = hazy().astype(np.float32) / 255 * 2.5
    with pytest.raises(ValueError, match=r"reach 2\.06.*nearly black.*value_range=\(0, 2\.07\).*"
                                         r"value_range=\(0, 255\)"):
        nc.dehaze(hdr, method=method, device="cpu")
    out = nc.dehaze(hdr, method=method, device="cpu", value_range=(0, 2.5)).image
    assert out.mean() > 0.2


def test_any_guessed_range_that_would_make_the_image_nearly_black_is_refused() -> None:
    # G11 (the class): 12-bit data in int32 read as 16-bit was 6 % bright at most; float data up to
    # 30; the rule is one: a guessed 8/16-bit range must put the brightest value above a quarter
    d = dehazer("dcp")
    twelve = (hazy().astype(np.int32) * 16)
    with pytest.raises(ValueError, match=r"integer image values reach \d+: read as 16-bit.*\(0, 4095\)"):
        d.dehaze(twelve)
    np.testing.assert_allclose(d.dehaze(twelve, value_range=(0, 4095)).image,
                               d.dehaze((twelve / 4095).astype(np.float32)).image, atol=1e-5)
    with pytest.raises(ValueError, match=r"float image values reach 30"):
        d.dehaze(np.where(hazy() > 100, 30.0, 1.0))
    assert d.dehaze(hazy().astype(np.float64)).image.mean() > 0.2  # 8-bit data as float: as before
    assert d.dehaze(hazy().astype(np.int64) * 257).image.mean() > 0.2  # 16-bit data in int64


def test_a_float_tiff_above_two_names_the_cli_flag_and_works_with_it(tmp_path: Path) -> None:
    # G11 (variant, CLI): the message names --value-range 0,HIGH; given, the output is not black
    import tifffile

    tifffile.imwrite(tmp_path / "hdr.tif", hazy().astype(np.float32) / 255 * 2.5)
    r = cli("dehaze", "hdr.tif", "-o", "out", cwd=tmp_path)
    assert r.returncode == 1 and "--value-range 0,2.07" in r.stderr, r.stderr
    r = cli("dehaze", "hdr.tif", "-o", "out", "--value-range", "0,2.5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert io.read_image(next((tmp_path / "out").glob("hdr_dehazed.*"))).mean() > 0.2
