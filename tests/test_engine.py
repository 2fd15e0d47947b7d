"""engine.Dehazer: batching (a single frame is a batch of one), temporal smoothing (one path),
the adjustments of t (strength, sky protection), recovery in strips, precision and devices, the
parameters it checks (issue 12: F18, F35), and outputs that stay valid on odd images."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from _common import METHODS, check_result, dehaze_cpu, dehazer, hazy, hazy_rgb, sky_scene
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import napari_clearnet
import napari_clearnet as nc
from napari_clearnet import api
from napari_clearnet._plugin.sample_data import _motorcycle, make_hazy
from napari_clearnet.core import engine

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def clearnet() -> engine.Dehazer:
    return api.load_model(device="cpu")


@pytest.fixture(scope="module")
def dcp() -> engine.Dehazer:
    return api.load_model(method="dcp", device="cpu")


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A hazy-looking RGB float32 image: a depth ramp towards a bright airlight plus texture."""
    rng = np.random.default_rng(seed)
    depth = np.linspace(0.2, 1.0, h, dtype=np.float32)[:, None, None]
    clear = rng.random((h, w, 3), dtype=np.float32) * 0.6
    t = np.exp(-1.5 * depth)
    return np.clip(clear * t + 0.9 * (1 - t), 0, 1).astype(np.float32)


def _photo_scene(beta: float = 1.5, side: int = 200) -> np.ndarray:
    """The sample photo (real depth from stereo) hazed at ``beta``, reduced for speed."""
    clear, depth = _motorcycle()
    step = max(1, max(clear.shape[:2]) // side)
    hazy, _ = make_hazy(clear[::step, ::step], depth[::step, ::step], beta)
    return hazy


@pytest.mark.parametrize("method", METHODS)
def test_colour_and_grey_stacks_equal_frame_by_frame(method: str) -> None:
    frames = np.stack([hazy_rgb(24, 32, s) for s in range(3)])
    res = dehaze_cpu(frames, method)
    assert res.image.shape == frames.shape
    assert res.transmission.shape == (3, 24, 32) and res.airlight.shape == (3, 3)
    for i in range(3):
        np.testing.assert_allclose(res.image[i], dehaze_cpu(frames[i], method).image, atol=1e-6)
    grey = frames[:2, ..., 0]  # T x H x W with T not 3 or 4 is read as grey frames
    rg = dehaze_cpu(grey, method)
    assert rg.image.shape == grey.shape
    np.testing.assert_allclose(rg.image[1], dehaze_cpu(grey[1], method).image, atol=1e-6)
    three = dehaze_cpu(frames[..., 0], method, channel_axis=None)  # (3, H, W) frames, said explicitly
    assert three.image.shape == (3, 24, 32) and three.transmission.shape == (3, 24, 32)


def _clip(n: int = 7, h: int = 48, w: int = 64, noise: float = 0.06, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = _scene(h, w, seed)
    frames = base[None] + noise * rng.standard_normal((n, h, w, 3)).astype(np.float32)
    frames *= rng.uniform(0.85, 1.1, (n, 1, 1, 3)).astype(np.float32)  # per-frame exposure flicker
    return np.clip(frames, 0, 1).astype(np.float32)


@pytest.mark.parametrize("kwargs", [{}, {"temporal_smoothing": 0.7}, {"airlight": 0.85},
                                    {"temporal_smoothing": 0.7, "airlight": 0.85}])
def test_batched_frames_equal_frame_by_frame(clearnet, kwargs) -> None:
    clip = _clip()
    one = clearnet.dehaze(clip, batch_size=1, **kwargs)
    batched = clearnet.dehaze(clip, batch_size=3, **kwargs)  # 3 + 3 + 1 frames
    np.testing.assert_allclose(batched.image, one.image, atol=1e-5)
    np.testing.assert_allclose(batched.transmission, one.transmission, atol=1e-5)
    np.testing.assert_allclose(batched.airlight, one.airlight, atol=1e-6)


def test_batched_network_runs_one_forward_per_batch(clearnet, monkeypatch) -> None:
    calls: list[int] = []
    real = clearnet.estimator.estimate

    def counting(low, airlight=None, scale=None):
        calls.append(low.shape[0])
        return real(low, airlight, scale)

    monkeypatch.setattr(clearnet.estimator, "estimate", counting)
    clearnet.dehaze(_clip(n=5), batch_size=4)
    assert calls == [4, 1]


def test_dask_stack_is_read_batch_by_batch(clearnet) -> None:
    da = pytest.importorskip("dask.array")
    clip = _clip(n=6, h=40, w=52)
    computed: list[int] = []

    def load(block, block_info=None):
        computed.append(block_info[0]["chunk-location"][0])
        return block

    lazy = da.from_array(clip, chunks=(1, 40, 52, 3)).map_blocks(load, dtype=np.float32)
    frames = clearnet.iter_frames(lazy, batch_size=2)
    first = next(frames)
    assert first[0] == 0 and sorted(set(computed)) == [0, 1]  # only the first batch was read
    rest = list(frames)
    assert [i for i, _, _ in rest] == [1, 2, 3, 4, 5]
    assert sorted(computed) == list(range(6))  # every chunk read exactly once
    np.testing.assert_allclose(rest[-1][2].image, clearnet.dehaze(clip[5]).image, atol=1e-5)


def test_temporal_smoothing_reduces_airlight_flicker(clearnet) -> None:
    clip = _clip(n=10, noise=0.08)
    raw = clearnet.dehaze(clip).airlight
    smooth = clearnet.dehaze(clip, temporal_smoothing=0.8).airlight
    jitter = lambda a: float(np.abs(np.diff(a, axis=0)).mean())  # noqa: E731
    assert jitter(smooth) < 0.5 * jitter(raw)
    np.testing.assert_array_equal(smooth[0], raw[0])  # the first frame has nothing to blend with


def test_temporal_smoothing_also_steadies_the_haze_amount(clearnet) -> None:
    """Frames of one scene whose haze thickens and thins: the network's per-frame haze amount s
    jumps with it; smoothed, it follows the exponential moving average (batched or not)."""
    base = _scene(48, 64, 5)
    t = np.array([0.95, 0.6, 0.9, 0.55, 0.92, 0.6, 0.95], np.float32)[:, None, None, None]
    clip = (base[None] * t + 0.8 * (1 - t)).astype(np.float32)
    raw = np.array([r.scale for _, _, r in clearnet.iter_frames(clip)])
    assert np.ptp(raw) > 0.005  # the trained network does react to the haze amount
    for batch in (1, 4):
        smooth = np.array([r.scale for _, _, r in clearnet.iter_frames(clip, temporal_smoothing=0.8,
                                                                       batch_size=batch)])
        expected = [raw[0]]
        for s_now in raw[1:]:
            expected.append(0.8 * expected[-1] + 0.2 * s_now)
        np.testing.assert_allclose(smooth, expected, rtol=1e-4)
        assert np.abs(np.diff(smooth)).mean() < 0.5 * np.abs(np.diff(raw)).mean()


def test_integral_float_strip_pixels_and_fixed_airlight_with_smoothing() -> None:  # F35
    d = dehazer("clearnet")
    np.testing.assert_allclose(d.dehaze(hazy(), strip_pixels=1e6).image, d.dehaze(hazy()).image, atol=0)
    clip = np.stack([hazy(seed=s) for s in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "index_put_ on expanded tensors" warning
        res = d.dehaze(clip, airlight=0.8, temporal_smoothing=0.5, batch_size=3)
    np.testing.assert_allclose(res.airlight, 0.8)
    one_by_one = d.dehaze(clip, airlight=0.8, temporal_smoothing=0.5, batch_size=1).image
    np.testing.assert_allclose(res.image, one_by_one, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_strength_zero_is_the_input_and_one_is_the_default(method: str) -> None:
    x = _photo_scene()
    zero = napari_clearnet.dehaze(x, method=method, device="cpu", strength=0)
    np.testing.assert_allclose(zero.image, x, atol=1e-6)
    assert np.all(zero.transmission == 1.0)
    default = napari_clearnet.dehaze(x, method=method, device="cpu")
    one = napari_clearnet.dehaze(x, method=method, device="cpu", strength=1.0)
    np.testing.assert_array_equal(one.image, default.image)
    assert default.provenance["strength"] == 1.0 and zero.provenance["strength"] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_strength_scales_the_optical_depth(method: str) -> None:
    x = _photo_scene()
    t1 = napari_clearnet.dehaze(x, method=method, device="cpu").transmission
    depths = [float(-np.log(napari_clearnet.dehaze(x, method=method, device="cpu", strength=s)
                            .transmission).mean()) for s in (0.5, 1.0, 1.5)]
    assert depths[0] < depths[1] < depths[2]
    half = napari_clearnet.dehaze(x, method=method, device="cpu", strength=0.5).transmission
    assert np.all(half >= t1 - 1e-6)  # less haze removed everywhere


@pytest.mark.parametrize("bad", [-0.1, 3.5, float("nan"), float("inf"), "strong", None])
def test_bad_strength_is_refused_by_name(bad) -> None:
    with pytest.raises(ValueError, match="strength"):
        napari_clearnet.dehaze(_photo_scene(side=60), device="cpu", strength=bad)


def test_haze_amount_rises_monotonically_with_beta() -> None:
    """One scene (the stereo sample with its measured depth) at several haze densities: the
    estimated optical depth must rise with beta, for the model and for the DCP."""
    betas = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    model = napari_clearnet.load_model(device="cpu")
    depth = [float(-np.log(model.dehaze(_photo_scene(b)).transmission).mean()) for b in betas]
    assert all(a < b for a, b in itertools.pairwise(depth)), depth


@pytest.mark.parametrize("method", METHODS)
def test_sky_protection_keeps_skies_and_leaves_the_rest(method: str) -> None:
    x = sky_scene()
    off = dehaze_cpu(x, method, sky_protection=0.0)
    default = dehaze_cpu(x, method)
    # each method's default: ClearNet protects flat skies, the classic DCP does not
    assert default.provenance["sky_protection"] == engine.DEFAULT_SKY_PROTECTION[method]
    if engine.DEFAULT_SKY_PROTECTION[method] == 0:
        np.testing.assert_array_equal(default.image, off.image)  # 0 = off, exactly
    kept = dehaze_cpu(x, method, sky_protection=0.2)
    sky, ground = (slice(2, 20), slice(None)), (slice(36, 48), slice(None))
    assert kept.transmission[sky].mean() > off.transmission[sky].mean() + 0.1
    # the sky's gradient is amplified less (no rings), the ground keeps most of its dehazing
    assert np.ptp(kept.image[sky].mean(-1), 1).mean() < np.ptp(off.image[sky].mean(-1), 1).mean()
    assert kept.image[ground].std() > x[ground].std()
    assert kept.provenance["sky_protection"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"sky_protection must be in \[0, 1\].*got 1.5"):
        dehaze_cpu(x, method, sky_protection=1.5)


def test_sky_protection_spares_textured_regions_close_to_the_airlight() -> None:
    """The flatness gate: a flat bright region is protected, an equally bright textured one (a
    lit wall, fog over a street) is dehazed as without protection."""
    from napari_clearnet.core import physics

    t = torch.full((1, 1, 40, 80), 0.2)
    img = torch.full((1, 3, 40, 80), 0.85)
    img[..., 40:] += 0.08 * (torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0)) - 0.5)
    a = torch.tensor([[0.86, 0.86, 0.86]])
    out = physics.sky_tolerance(t, img, a, 0.2, smooth=engine.SKY_SMOOTH)
    assert out[..., 5:35, 5:35].min() > 0.9  # flat: protected
    assert out[..., 5:35, 45:75].mean() < 0.3  # textured: left as estimated
    np.testing.assert_array_equal(physics.sky_tolerance(t, img, a, 0.0, smooth=0.02), t)


def test_sky_protection_batched_stack_equals_frame_by_frame() -> None:
    stack = np.stack([sky_scene(), sky_scene()[:, ::-1]])
    dehazer = nc.load_model(device="cpu")
    both = dehazer.dehaze(stack, sky_protection=0.15, batch_size=2)
    for i in range(2):
        one = dehazer.dehaze(stack[i], sky_protection=0.15)
        np.testing.assert_allclose(both.image[i], one.image, atol=1e-5)


@pytest.mark.parametrize("method", ["clearnet", "dcp"])
def test_strip_processing_equals_single_pass(method: str, clearnet, dcp) -> None:
    model = clearnet if method == "clearnet" else dcp
    img = _scene(203, 257)
    single = model.dehaze(img, strip_pixels=10**9)
    for strip in (257 * 13, 5000, 1):  # 13 rows, a ragged strip height, one row per strip
        striped = model.dehaze(img, strip_pixels=strip)
        np.testing.assert_allclose(striped.image, single.image, atol=1e-5)
        np.testing.assert_allclose(striped.transmission, single.transmission, atol=1e-5)
        np.testing.assert_array_equal(striped.airlight, single.airlight)


def test_strip_pixels_reaches_the_public_dehaze_and_rejects_nonsense(clearnet) -> None:
    img = _scene(64, 80)
    a = api.dehaze(img, model=clearnet, strip_pixels=300)
    b = api.dehaze(img, model=clearnet)
    np.testing.assert_allclose(a.image, b.image, atol=1e-5)
    with pytest.raises(ValueError, match="strip_pixels"):
        api.dehaze(img, model=clearnet, strip_pixels=0)


@pytest.mark.slow
def test_24_megapixel_image_runs_in_bounded_memory(tmp_path) -> None:
    """6000×4000 uint8 RGB through dehaze() in a fresh process: peak RSS < 3 GB."""
    script = textwrap.dedent(
        """
        import json, resource, numpy as np
        from napari_clearnet import dehaze
        h, w = 4000, 6000
        img = np.empty((h, w, 3), np.uint8)
        img[...] = (np.arange(w) % 200 + 30).astype(np.uint8)[None, :, None]
        img[::7] = 220
        res = dehaze(img, device="cpu")
        ok = bool(np.isfinite(res.image[::97, ::89]).all())
        print(json.dumps({"shape": list(res.image.shape), "t": list(res.transmission.shape), "finite": ok,
                          "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [4000, 6000, 3] and out["t"] == [4000, 6000] and out["finite"]
    assert out["peak_mb"] < 3 * 1024, f"peak RSS {out['peak_mb']:.0f} MB"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t0", [float("nan"), float("inf"), 2.0, -1.0, "x", True])
def test_bad_t0_is_refused(method: str, t0) -> None:  # F18
    with pytest.raises(ValueError, match="t0"):
        nc.dehaze(hazy(), method=method, device="cpu", t0=t0)


@pytest.mark.parametrize("t0", [0, 1, None, 0.3])
def test_t0_in_range_works(t0) -> None:  # F18 (the cases that held)
    check_result(dehazer("clearnet").dehaze(hazy(), t0=t0), (20, 28, 3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"channel_axis": 5}, "out of range"), ({"channel_axis": -4}, "out of range"),
     ({"channel_axis": True}, "channel_axis"), ({"strip_pixels": 1.5}, "integer"),
     ({"strip_pixels": 0}, "strip_pixels"), ({"strip_pixels": float("nan")}, "strip_pixels"),
     ({"batch_size": 0}, "batch_size"), ({"value_range": (0, np.inf)}, "finite"),
     ({"value_range": (0, 1, 2)}, "two numbers"), ({"value_range": "ab"}, "two numbers"),
     ({"value_range": (1, 1)}, "high > low"), ({"temporal_smoothing": float("nan")}, "temporal_smoothing"),
     ({"sky_protection": "x"}, "sky_protection")],
)
def test_parameters_are_checked(kwargs: dict, match: str) -> None:  # F35
    with pytest.raises(ValueError, match=match):
        dehazer("dcp").dehaze(hazy(), **kwargs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "shape", [(1, 1, 3), (2, 2, 3), (1, 5000, 3), (5000, 1, 3), (1, 1), (3, 1), (2, 2, 4)]
)
def test_tiny_and_thin_images(method: str, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    res = dehazer(method).dehaze(x)
    check_result(res, x, shape[:2])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value", [0.0, 1.0, 0.37])
def test_constant_black_and_white_images_do_not_divide_by_zero(method: str, value: float) -> None:
    for shape in ((16, 16, 3), (16, 16)):
        x = np.full(shape, value, np.float32)
        res = dehazer(method).dehaze(x)
        check_result(res, x, (16, 16))
        # a flat image has no structure to restore: it must come back (nearly) unchanged
        np.testing.assert_allclose(res.image, x, atol=0.02)


_IMAGE_DTYPES = ("uint8", "uint16", "int32", "float32", "float64", "bool")


@st.composite
def images(draw) -> np.ndarray:
    h = draw(st.integers(1, 24))
    w = draw(st.integers(1, 24))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    frames = draw(st.sampled_from([None, 2]))
    dtype = draw(st.sampled_from(_IMAGE_DTYPES))
    seed = draw(st.integers(0, 2**16))
    kind = draw(st.sampled_from(["random", "constant", "two-level"]))
    shape = (h, w) if channels is None else (h, w, channels)
    if frames and (channels is not None or frames not in (3, 4)):
        shape = (frames, *shape)
    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.random(shape)
    elif kind == "constant":
        x = np.full(shape, rng.random())
    else:
        x = np.where(rng.random(shape) > 0.5, 1.0, 0.0)
    top = {"uint8": 255, "uint16": 65535, "int32": 60000, "float32": 1.0, "float64": 255.0, "bool": 1}[dtype]
    if dtype in ("int32", "float64"):  # G11: a guessed 8/16-bit range needs its brightest value ≥ 1/4
        x = 0.3 + 0.7 * x  # of 65535 for int32 (top 60000: 0.25 gave 15000, under 16384)
    return (x > 0.5) if dtype == "bool" else (x * top).astype(dtype)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=images())
def test_property_outputs_are_valid_and_input_unchanged(method: str, x: np.ndarray) -> None:
    before = x.copy()
    res = dehazer(method).dehaze(x)
    check_result(res, x)
    np.testing.assert_array_equal(x, before)


def test_cpu_bfloat16_is_opt_in_and_close(clearnet) -> None:
    assert not clearnet.half and clearnet.provenance()["precision"] == "float32"
    bf16 = api.load_model(device="cpu", half=True)
    img = _scene(120, 160)
    res = bf16.dehaze(img)
    assert res.provenance["precision"] == "bfloat16"
    ref = clearnet.dehaze(img)
    assert res.image.shape == ref.image.shape
    np.testing.assert_allclose(res.transmission, ref.transmission, atol=5e-2)


@CUDA
def test_cuda_half_precision_matches_cpu(clearnet) -> None:
    img = _scene(300, 420)
    gpu = api.load_model(device="cuda")
    assert gpu.half
    ref = clearnet.dehaze(img)
    res = gpu.dehaze(img)
    assert res.image.shape == ref.image.shape and res.provenance["precision"] == "float16"
    np.testing.assert_allclose(res.transmission, ref.transmission, atol=3e-2)
    np.testing.assert_allclose(res.image, ref.image, atol=6e-2)


@CUDA
def test_cuda_strips_bound_memory_and_equal_one_pass() -> None:
    img = _scene(1200, 1600)
    gpu = api.load_model(device="cuda", half=False)
    whole = gpu.dehaze(img, strip_pixels=10**9)
    torch.cuda.reset_peak_memory_stats()
    striped = gpu.dehaze(img, strip_pixels=100_000)
    peak_striped = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    gpu.dehaze(img, strip_pixels=10**9)
    assert peak_striped < torch.cuda.max_memory_allocated()
    np.testing.assert_allclose(striped.image, whole.image, atol=1e-5)


@CUDA
def test_cuda_compiled_model_gives_the_same_output() -> None:
    img = _scene(240, 320)
    plain = api.load_model(device="cuda", half=False).dehaze(img)
    compiled = api.load_model(device="cuda", half=False, compile=True)
    assert compiled.estimator.compiled
    np.testing.assert_allclose(compiled.dehaze(img).image, plain.image, atol=1e-4)
