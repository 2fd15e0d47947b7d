"""Issue 22: the 8-bit path (uint8 in, uint8 out, :mod:`napari_clearnet.core.fused`), the compiled
box filter, the trunk skipped where its outputs are not used, and the network's schedule along a
clip (``network_every``): the same numbers as the general path, to one 8-bit step at most."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_clearnet import api
from napari_clearnet._plugin.sample_data import _motorcycle, make_hazy
from napari_clearnet.core import checks, engine, fused, kernels, physics
from napari_clearnet.core.model import ClearNet
from napari_clearnet.errors import ResultError

pytestmark = pytest.mark.skipif(not fused.available(), reason="numba is not installed")


@pytest.fixture(scope="module")
def clearnet() -> engine.Dehazer:
    return api.load_model(device="cpu")


def _photo(h: int, w: int, beta: float = 1.6, shift: int = 0) -> np.ndarray:
    """A real scene (stereo depth) hazed at ``beta``, resized to (h, w), as 8-bit RGB."""
    from skimage.transform import resize

    clear, depth = _motorcycle()
    clear, depth = clear[:, shift:], depth[:, shift:]
    hazy, _ = make_hazy(resize(clear, (h, w)).astype(np.float32), resize(depth, (h, w)).astype(np.float32),
                        beta)
    return (hazy * 255 + 0.5).astype(np.uint8)


def _to8(x: np.ndarray) -> np.ndarray:
    return fused.to_uint8(np.ascontiguousarray(x, np.float32))


@pytest.mark.parametrize("shape", [(144, 256), (1000, 750), (301, 517), (97, 61), (37, 1201)])
def test_the_working_copy_is_torchs_antialiased_resize(clearnet: engine.Dehazer, shape) -> None:
    """The 8-bit path's reduced copy is the general path's, to float rounding (any size, odd ones,
    frames smaller than the working size, which are copied as they are)."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    est = clearnet.estimator
    size = est.working_shape(*shape)
    want = est.reduce(torch.from_numpy(frame.astype(np.float32) / 255).permute(2, 0, 1)[None])
    got = fused.reduce(frame, size, threads=2)
    assert got.shape == (*size, 3)
    np.testing.assert_allclose(got, want[0].permute(1, 2, 0).numpy(), atol=1e-5)  # torch: float32 weights


@pytest.mark.parametrize("shape", [(360, 640), (333, 517), (64, 48)])
def test_8bit_output_is_the_float_path_rounded(clearnet: engine.Dehazer, shape) -> None:
    """uint8 in, output_dtype='uint8' out: J within one 8-bit step of the float result rounded,
    on all but a handful of pixels equal; t within 1e-4 (the reduced copy's float rounding)."""
    img = _photo(*shape)
    ref = clearnet.dehaze(img)
    got = clearnet.dehaze(img, output_dtype="uint8")
    assert got.image.dtype == np.uint8 and got.image.shape == img.shape
    diff = np.abs(_to8(ref.image).astype(int) - got.image)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    np.testing.assert_allclose(got.transmission, ref.transmission, atol=1e-4)
    np.testing.assert_allclose(got.airlight, ref.airlight, atol=1e-4)


def test_8bit_output_without_the_kernels_is_the_same(clearnet: engine.Dehazer, monkeypatch) -> None:
    """Without numba (or with CLEARNET_NO_NUMBA=1) output_dtype='uint8' still works, through the
    general path and one rounding; and the compiled box filter gives torch's numbers bit for bit."""
    img = _photo(120, 160)
    fast = clearnet.dehaze(img, output_dtype="uint8").image
    x = torch.rand(2, 4, 37, 53)
    boxed = physics.box_filter(x, 5)
    monkeypatch.setattr(kernels, "compiled", lambda: None)
    assert not fused.available()
    slow = clearnet.dehaze(img, output_dtype="uint8")
    assert slow.image.dtype == np.uint8
    assert np.abs(slow.image.astype(int) - fast).max() <= 1
    assert torch.equal(physics.box_filter(x, 5), boxed)


def test_grey_alpha_and_stacks_keep_their_layout_in_8_bits(clearnet: engine.Dehazer) -> None:
    img = _photo(64, 80)
    rgba = np.concatenate([img, np.full((64, 80, 1), 200, np.uint8)], -1)
    out = clearnet.dehaze(rgba, output_dtype="uint8").image
    assert out.dtype == np.uint8 and out.shape == rgba.shape and (out[..., 3] == 200).all()
    grey = clearnet.dehaze(img[..., 1], output_dtype="uint8").image
    assert grey.dtype == np.uint8 and grey.shape == (64, 80)
    stack = clearnet.dehaze(np.stack([img, img]), channel_axis=-1, output_dtype="uint8")
    assert stack.image.shape == (2, 64, 80, 3) and stack.transmission.shape == (2, 64, 80)
    assert clearnet.dehaze(img, output_dtype="uint8", with_transmission=False).transmission is None


def test_output_dtype_and_network_every_are_checked() -> None:
    with pytest.raises(ValueError, match="output_dtype must be one of float32, uint8"):
        api.DehazeOptions(output_dtype="float16")
    with pytest.raises(ValueError, match="network_every"):
        api.DehazeOptions(network_every=0)


def test_a_flat_8bit_result_of_a_textured_frame_is_refused() -> None:
    frame = torch.linspace(0, 1, 300).reshape(1, 3, 10, 10)
    flat = np.full((10, 10, 3), 7, np.uint8)
    with pytest.raises(ResultError, match="flat"):
        checks.check_frame(flat, torch.ones(1, 1, 4, 4), np.array([0.8, 0.8, 0.8]), frame)
    step = flat.copy()
    step[0, 0, 0] = 8  # one 8-bit step: not flat
    checks.check_frame(step, torch.ones(1, 1, 4, 4), np.array([0.8, 0.8, 0.8]), frame)


def test_the_trunk_is_skipped_only_where_its_outputs_are_unused(clearnet: engine.Dehazer,
                                                                monkeypatch) -> None:
    """With A and s given (the smoothing pass) or an earlier frame's heads, the shipped model (no
    per-pixel correction) runs no convolution, and gives the numbers it gives with them."""
    model: ClearNet = clearnet.model
    x = torch.from_numpy(_photo(96, 128).astype(np.float32) / 255).permute(2, 0, 1)[None]
    calls = []
    real = ClearNet._trunk

    def counted(self, *a):
        calls.append(1)
        return real(self, *a)

    monkeypatch.setattr(ClearNet, "_trunk", counted)
    with torch.inference_mode():
        full = model(x)
        assert len(calls) == 1
        given = model(x, full["airlight"], full["scale"])
        reused = model(x, heads=full["heads"])
        assert len(calls) == 1  # neither ran the trunk
        monkeypatch.setattr(ClearNet, "has_residual", lambda self: True)  # as a model with one would
        forced = model(x, full["airlight"], full["scale"])
        assert len(calls) == 2
    for out in (given, forced):
        assert torch.equal(out["t"], forced["t"])
    assert torch.equal(reused["t"], full["t"]) and torch.equal(reused["airlight"], full["airlight"])


def _clip(n: int, cut: int | None = None) -> np.ndarray:
    """``n`` 8-bit frames of a panning camera under changing haze; from ``cut`` on, another scene."""
    frames = []
    for i in range(n):
        f = _photo(90, 120, beta=1.2 + 0.05 * i, shift=2 * i)
        if cut is not None and i >= cut:
            f = np.ascontiguousarray(f[::-1, ::-1] // 2 + 60)  # another view, darker and upside down
        frames.append(f)
    return np.stack(frames)


def _trunk_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = ClearNet._trunk

    def counted(self, x, depth):
        calls.append(x.shape[0])
        return real(self, x, depth)

    monkeypatch.setattr(ClearNet, "_trunk", counted)
    return calls


def test_the_network_runs_on_every_kth_frame_and_on_a_cut(clearnet: engine.Dehazer, monkeypatch) -> None:
    """network_every=4 over 12 frames in batches of 5: the trunk sees frames 0, 4 and 8 and the
    first frame after a scene cut, not the others; a static clip gives the every-frame result bit
    for bit (the heads it reuses are the ones it would compute)."""
    calls = _trunk_calls(monkeypatch)
    clearnet.dehaze(_clip(12), channel_axis=-1, network_every=4, batch_size=5, temporal_smoothing=0.8,
                    output_dtype="uint8")
    assert sum(calls) == 3
    calls.clear()
    clearnet.dehaze(_clip(12, cut=6), channel_axis=-1, network_every=4, batch_size=5, output_dtype="uint8")
    assert sum(calls) == 4  # 0, 4, the cut at 6, 8
    calls.clear()
    still = np.stack([_photo(90, 120)] * 6)
    every = clearnet.dehaze(still, channel_axis=-1, temporal_smoothing=0.8)
    sched = clearnet.dehaze(still, channel_axis=-1, temporal_smoothing=0.8, network_every=3)
    assert np.array_equal(every.image, sched.image) and np.array_equal(every.airlight, sched.airlight)


def test_the_schedule_costs_little_on_moving_haze(clearnet: engine.Dehazer) -> None:
    """On a panning camera with haze thickening frame by frame, the schedule's frames stay within
    a small distance of the every-frame result (the bench states the cost on a 1080p clip)."""
    clip = _clip(8)
    every = clearnet.dehaze(clip, channel_axis=-1, temporal_smoothing=0.8, output_dtype="uint8").image
    sched = clearnet.dehaze(clip, channel_axis=-1, temporal_smoothing=0.8, output_dtype="uint8",
                            network_every=4).image
    mse = np.mean((every.astype(np.float32) - sched) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 35


def test_8bit_photos_are_written_through_the_8bit_path(tmp_path, monkeypatch) -> None:
    """`clearnet dehaze` on a JPEG/PNG written at 8 bits asks for an 8-bit result (and the file
    holds the same pixels as the float result rounded, to one step)."""
    from PIL import Image

    from napari_clearnet.batch import BatchOptions, dehaze_files

    img = _photo(60, 80)
    Image.fromarray(img).save(tmp_path / "a.png")
    seen = []
    real = engine.Dehazer.iter_frames

    def spy(self, image, options=None, *, out=None, carry=None, **kw):
        o = (options or api.DehazeOptions()).replace(**kw)
        seen.append((o.output_dtype, o.with_transmission))
        return real(self, image, options, out=out, carry=carry, **kw)

    monkeypatch.setattr(engine.Dehazer, "iter_frames", spy)
    dehaze_files([tmp_path / "a.png"], tmp_path / "out", BatchOptions(device="cpu"), progress=False)
    # (the first: the weights check of a fresh load, on a float image); t only when it is written
    assert seen[-1] == ("uint8", False)
    written = np.asarray(Image.open(tmp_path / "out" / "a_dehazed.png"))
    ref = _to8(api.load_model(device="cpu").dehaze(img).image)
    assert np.abs(written.astype(int) - ref).max() <= 1


@pytest.mark.parametrize("half", [False, True])
def test_the_device_pass_equals_the_cpu_kernel(clearnet: engine.Dehazer, half: bool) -> None:
    """The GPU's 8-bit pass (torch on the device, float16 on CUDA), run here on the CPU: J within
    one 8-bit step of the compiled kernel's (two in float16), t to float rounding, and strips of
    any height give the same frame (no seams)."""
    img = _photo(270, 480)
    est = clearnet.estimator
    low = torch.from_numpy(fused.reduce(img, est.working_shape(270, 480))).permute(2, 0, 1)[None]
    low_t = fused.reduce_tensor(torch.from_numpy(img), est.working_shape(270, 480))
    torch.testing.assert_close(low_t, low, atol=1e-5, rtol=0)
    e = est.estimate(low)
    wide = est.guided_wide(low, e.t, 480)
    a = e.airlight[0]
    want_j, want_t = fused.recover(img, wide[0].numpy(), a.numpy(), 0.1, est.t_floor, with_t=True)
    frame = torch.from_numpy(img)
    got_j, got_t = fused.recover_tensor(frame, wide, a, 0.1, est.t_floor, with_t=True, half=half)
    diff = np.abs(got_j.numpy().astype(int) - want_j)
    assert diff.max() <= (2 if half else 1)
    np.testing.assert_allclose(got_t.numpy(), want_t, atol=2e-3 if half else 1e-6)
    strips, _ = fused.recover_tensor(frame, wide, a, 0.1, est.t_floor, with_t=False, half=half,
                                     strip_pixels=480 * 7)
    assert torch.equal(strips, got_j)


def test_without_the_kernels_the_device_pass_runs(clearnet: engine.Dehazer, monkeypatch) -> None:
    """Without numba the 8-bit path runs torch's pass (what a GPU runs), with the same result."""
    img = _photo(90, 160)
    fast = clearnet.dehaze(img, output_dtype="uint8")
    monkeypatch.setattr(kernels, "compiled", lambda: None)
    calls = []
    real = fused.recover_tensor
    monkeypatch.setattr(fused, "recover_tensor", lambda *a, **k: calls.append(1) or real(*a, **k))
    slow = clearnet.dehaze(img, output_dtype="uint8")
    assert calls and np.abs(slow.image.astype(int) - fast.image).max() <= 1
    np.testing.assert_allclose(slow.transmission, fast.transmission, atol=1e-4)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@CUDA
def test_cuda_8bit_path_matches_the_cpu() -> None:
    """On a GPU: uint8 frames to the device, float16 pass, uint8 back: within two 8-bit steps of the
    CPU's result."""
    img = _photo(540, 960)
    cpu = api.load_model(device="cpu").dehaze(img, output_dtype="uint8").image
    gpu = api.load_model(device="cuda").dehaze(img, output_dtype="uint8").image
    assert gpu.dtype == np.uint8 and np.abs(gpu.astype(int) - cpu).max() <= 2


def test_the_gpu_bench_script_runs_here_on_the_cpu(tmp_path) -> None:
    """scripts/gpu_bench.sh (what a lent GPU runs) works end to end; here on the CPU, tiny."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DEVICE": "cpu", "CLIP": "2x64x48", "SIZES": "0.01", "REPEATS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(root / "scripts" / "gpu_bench.sh"), "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp_path / "bench.txt").read_text()
    assert "re-encode only" in text and "clearnet-8bit" in text
    assert "gpu" in (tmp_path / "gpu.txt").read_text()


def test_importing_the_package_first_shortens_openmp_spinning_unless_told_otherwise() -> None:
    """GOMP_SPINCOUNT is set for torch's OpenMP when the package is imported before torch; a
    user's own value, or torch already loaded, is left alone."""
    import os
    import subprocess
    import sys

    code = "import os, napari_clearnet, torch; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}

    def spin(src: str, **extra: str) -> str:
        return subprocess.run([sys.executable, "-c", src], env={**env, **extra}, capture_output=True,
                              text=True, check=True, timeout=120).stdout.strip()

    assert spin(code) == "10000"
    assert spin(code, GOMP_SPINCOUNT="300000") == "300000"
    assert spin("import os, torch, napari_clearnet; print(os.environ.get('GOMP_SPINCOUNT'))") == "None"


def test_a_clip_read_with_hardware_decoding_asked_gives_the_same_frames(tmp_path) -> None:
    """VideoReader(hwaccel="cuda") (what a GPU run uses: NVDEC where FFmpeg can) gives the frames
    software decoding gives; here, with no such device, through the software fallback."""
    from _common import write_clip

    from napari_clearnet.video.reader import VideoReader

    clip = write_clip(tmp_path / "c.mp4", n=6)
    with VideoReader(clip) as soft, VideoReader(clip, hwaccel="cuda", readahead=2) as hard:
        a, b = np.stack(list(soft)), np.stack(list(hard))
    assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (7, 1, 3), (2, 2, 3), (3, 700, 3), (30, 2, 4)])
def test_tiny_and_thin_8bit_images(clearnet: engine.Dehazer, shape) -> None:
    """The 8-bit path on a pixel, a row, a column and thin strips: the float path rounded."""
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    got = clearnet.dehaze(img, output_dtype="uint8").image
    want = _to8(np.clip(clearnet.dehaze(img).image, 0, 1))
    assert got.shape == img.shape and np.abs(got.astype(int) - want).max() <= 1


def test_odd_memory_layouts_and_strength_zero_in_8_bits(clearnet: engine.Dehazer) -> None:
    img = _photo(40, 50)
    want = clearnet.dehaze(img, output_dtype="uint8").image
    assert np.array_equal(clearnet.dehaze(np.asfortranarray(img), output_dtype="uint8").image, want)
    flipped = clearnet.dehaze(np.ascontiguousarray(img[::-1]), output_dtype="uint8").image
    assert np.array_equal(clearnet.dehaze(img[::-1], output_dtype="uint8").image, flipped)
    assert np.array_equal(clearnet.dehaze(img, output_dtype="uint8", strength=0).image, img)


def test_a_read_only_8bit_frame_is_dehazed_without_a_warning() -> None:
    """Decoded frames and files' pixels can be read-only; the 8-bit path only reads them, so the
    user sees no warning from torch about writing through them (the demo showed one). In a fresh
    process: torch gives that warning once per program."""
    import subprocess
    import sys

    code = (
        "import warnings, numpy as np\n"
        "warnings.simplefilter('error', UserWarning)\n"
        "import napari_clearnet as nc\n"
        "img = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)\n"
        "img.flags.writeable = False\n"
        "out = nc.load_model(device='cpu').dehaze(img, output_dtype='uint8')\n"
        "assert out.image.dtype == np.uint8\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
