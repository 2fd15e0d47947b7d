"""The strength control: 0 leaves the image as it is, 1 is the model's estimate, more removes more;
and the estimated haze amount follows the real haze amount."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

import napari_clearnet
from napari_clearnet import io
from napari_clearnet._sample_data import _motorcycle, make_hazy

METHODS = ("clearnet", "dcp")


def _scene(beta: float = 1.5, side: int = 200) -> np.ndarray:
    """The sample photo (real depth from stereo) hazed at ``beta``, reduced for speed."""
    clear, depth = _motorcycle()
    step = max(1, max(clear.shape[:2]) // side)
    hazy, _ = make_hazy(clear[::step, ::step], depth[::step, ::step], beta)
    return hazy


@pytest.mark.parametrize("method", METHODS)
def test_strength_zero_is_the_input_and_one_is_the_default(method: str) -> None:
    x = _scene()
    zero = napari_clearnet.dehaze(x, method=method, device="cpu", strength=0)
    np.testing.assert_allclose(zero.image, x, atol=1e-6)
    assert np.all(zero.transmission == 1.0)
    default = napari_clearnet.dehaze(x, method=method, device="cpu")
    one = napari_clearnet.dehaze(x, method=method, device="cpu", strength=1.0)
    np.testing.assert_array_equal(one.image, default.image)
    assert default.provenance["strength"] == 1.0 and zero.provenance["strength"] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_strength_scales_the_optical_depth(method: str) -> None:
    x = _scene()
    t1 = napari_clearnet.dehaze(x, method=method, device="cpu").transmission
    depths = [float(-np.log(napari_clearnet.dehaze(x, method=method, device="cpu", strength=s)
                            .transmission).mean()) for s in (0.5, 1.0, 1.5)]
    assert depths[0] < depths[1] < depths[2]
    half = napari_clearnet.dehaze(x, method=method, device="cpu", strength=0.5).transmission
    assert np.all(half >= t1 - 1e-6)  # less haze removed everywhere


@pytest.mark.parametrize("bad", [-0.1, 3.5, float("nan"), float("inf"), "strong", None])
def test_bad_strength_is_refused_by_name(bad) -> None:
    with pytest.raises(ValueError, match="strength"):
        napari_clearnet.dehaze(_scene(side=60), device="cpu", strength=bad)


def test_haze_amount_rises_monotonically_with_beta() -> None:
    """One scene (the stereo sample with its measured depth) at several haze densities: the
    estimated optical depth must rise with beta, for the model and for the DCP."""
    betas = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    model = napari_clearnet.load_model(device="cpu")
    depth = [float(-np.log(model.dehaze(_scene(b)).transmission).mean()) for b in betas]
    assert all(a < b for a, b in itertools.pairwise(depth)), depth


def test_cli_strength(tmp_path) -> None:
    x = _scene(side=80)
    src = io.write_image(tmp_path / "in" / "scene.png", x)
    out = tmp_path / "out"
    run = [sys.executable, "-m", "napari_clearnet.cli", "dehaze", str(src), "-o", str(out), "--no-progress"]
    proc = subprocess.run([*run, "--strength", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(io.read_image(out / "scene_dehazed.png"), io.read_image(src))
    proc = subprocess.run([*run, "--strength", "-1", "--overwrite"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "--strength" in proc.stderr and "Traceback" not in proc.stderr
