"""Issue 12, the API's inputs (``dehaze``, ``Dehazer``, ``io.describe_layout``/``pixel_range``):
what cannot be read unambiguously is refused with a message saying what to pass, never guessed.
Findings: F9, F11, F16, F17, F18, F20, F21, F22, F35, with a property test over random shapes,
dtypes and values (a valid result or a ValueError, nothing else).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import napari_clearnet as nc
from napari_clearnet import io

METHODS = ("clearnet", "dcp")


@functools.cache
def dehazer(method: str) -> nc.Dehazer:
    return nc.load_model(method=method, device="cpu")


def hazy(h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0.3, 0.9, h, dtype=np.float32)[:, None, None]
    return (rng.random((h, w, 3), dtype=np.float32) * 0.8 * t + 0.8 * (1 - t)).astype(np.float32)


def valid(res, shape) -> None:
    assert res.image.shape == tuple(shape)
    assert np.isfinite(res.image).all() and res.image.min() >= 0 and res.image.max() <= 1
    assert np.isfinite(res.transmission).all() and res.transmission.min() > 0
    assert np.isfinite(res.airlight).all()


# ------------------------------------------------------------------------------- F9
@pytest.mark.parametrize("method", METHODS)
def test_float_just_above_one_is_refused_not_divided_by_255(method: str) -> None:  # F9
    f = hazy() / hazy().max()
    hint = r"reach 1\.01, just above 1.*value_range=\(0, 1\).*value_range=\(0, 255\)"
    with pytest.raises(ValueError, match=hint):
        dehazer(method).dehaze(f * 1.01)
    clipped = dehazer(method).dehaze(f * 1.01, value_range=(0, 1)).image
    np.testing.assert_allclose(clipped, dehazer(method).dehaze(np.clip(f * 1.01, 0, 1)).image, atol=1e-6)
    assert clipped.mean() > 0.2  # not black
    valid(dehazer(method).dehaze(f * 100), f.shape)  # well above 2: 8-bit data, as documented


def test_float_just_above_one_in_napari_adds_no_black_layer(make_napari_viewer) -> None:  # F9, F18
    pytest.importorskip("napari")
    from napari_clearnet._napari_commands import dehaze_layer

    viewer = make_napari_viewer()
    viewer.add_image(hazy() * 1.01 / hazy().max(), name="over", rgb=True)
    with pytest.raises(ValueError, match="just above 1"):
        dehaze_layer(viewer, "over", method="dcp")
    viewer.add_image(hazy(), name="ok", rgb=True)
    with pytest.raises(ValueError, match="t0 must be a finite number"):
        dehaze_layer(viewer, "ok", method="dcp", t0=float("nan"))
    assert [lay.name for lay in viewer.layers] == ["over", "ok"]


# ------------------------------------------------------------------------------- F11
@pytest.mark.parametrize(
    ("shape", "hint"),
    [((64, 80, 2), "channel_axis=None"), ((64, 80, 5), "channel_axis=None"),
     ((64, 80, 31), "channel_axis=None"), ((2, 3, 64, 80), "channel_axis=1"),
     ((2, 4, 64, 80), "channel_axis=1"), ((3, 64, 80), "channel_axis=0"),
     ((2, 64, 80, 2), "channel_axis=None")],
)
def test_ambiguous_layouts_are_refused(shape: tuple[int, ...], hint: str) -> None:  # F11
    with pytest.raises(ValueError, match=rf"ambiguous.*{hint}"):
        dehazer("dcp").dehaze(np.full(shape, 100, np.uint8))


def test_ambiguous_layouts_work_when_the_axis_is_given() -> None:  # F11
    rgb = (hazy(24, 32) * 255).astype(np.uint8)
    cf = np.stack([np.moveaxis(rgb, -1, 0)] * 2)  # (T, 3, H, W) channel-first colour clip
    out = dehazer("dcp").dehaze(cf, channel_axis=1).image
    np.testing.assert_allclose(np.moveaxis(out[1], 0, -1), dehazer("dcp").dehaze(rgb).image, atol=1e-6)
    frames = dehazer("dcp").dehaze(np.full((64, 80, 2), 100, np.uint8), channel_axis=None)
    assert frames.transmission.shape == (64, 80, 2)  # asked for: 64 frames of 80 × 2
    valid(dehazer("dcp").dehaze(np.full((5, 64, 80), 100, np.uint8)), (5, 64, 80))  # plain grey stack


# ------------------------------------------------------------------------------- F16, F17
@pytest.mark.parametrize("method", METHODS)
def test_big_endian_integers_read_like_native_ones(method: str) -> None:  # F16
    img = (hazy() * 182).astype(np.uint8)
    d = dehazer(method)
    np.testing.assert_array_equal(d.dehaze(img.astype(">u2")).image, d.dehaze(img.astype("<u2")).image)
    np.testing.assert_array_equal(d.dehaze(img.astype(">i4")).image, d.dehaze(img.astype("<i4")).image)
    np.testing.assert_array_equal(d.dehaze(img.astype(">f4")).image, d.dehaze(img.astype("<f4")).image)


@pytest.mark.parametrize("method", METHODS)
def test_one_range_per_array_and_never_from_alpha(method: str) -> None:  # F17
    d = dehazer(method)
    img = (hazy() * 255).astype(np.int32)
    bright, dark = img * 257, img // 2  # 16-bit data, one frame dark
    stack = d.dehaze(np.stack([bright, dark])).image
    np.testing.assert_allclose(stack[1], d.dehaze(dark.astype(np.uint16)).image, atol=1e-6)
    rgb01 = hazy()
    rgba = np.dstack([rgb01, np.full(rgb01.shape[:2], 255.0, np.float32)])  # RGB in [0, 1], alpha 255
    out = d.dehaze(rgba).image
    np.testing.assert_allclose(out[..., :3], d.dehaze(rgb01).image, atol=1e-6)
    assert np.all(out[..., 3] == 1.0)


def test_lazy_stack_that_changes_range_midway_is_refused_by_frame() -> None:  # F17
    da = pytest.importorskip("dask.array")
    img = (hazy() * 255).astype(np.int32)
    lazy = da.from_array(np.stack([img // 2, img, img * 257]), chunks=(1, 20, 28, 3))
    with pytest.raises(ValueError, match=r"frame 2 reaches .*value_range"):
        dehazer("dcp").dehaze(lazy, batch_size=1)
    np.testing.assert_allclose(  # with the range given it is read as asked
        dehazer("dcp").dehaze(lazy, value_range=(0, 65535)).image[2],
        dehazer("dcp").dehaze((img * 257).astype(np.uint16)).image, atol=1e-6)


# ------------------------------------------------------------------------------- F18, F35
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t0", [float("nan"), float("inf"), 2.0, -1.0, "x", True])
def test_bad_t0_is_refused(method: str, t0) -> None:  # F18
    with pytest.raises(ValueError, match="t0"):
        nc.dehaze(hazy(), method=method, device="cpu", t0=t0)


@pytest.mark.parametrize("t0", [0, 1, None, 0.3])
def test_t0_in_range_works(t0) -> None:  # F18 (the cases that held)
    valid(dehazer("clearnet").dehaze(hazy(), t0=t0), (20, 28, 3))


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


# ------------------------------------------------------------------------------- F20
@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "foo", "cuda:7", "", "cpu:1"])
def test_devices_this_machine_lacks_are_value_errors(device: str) -> None:  # F20
    if device in ("", "cpu:1"):
        valid(nc.dehaze(hazy(), method="dcp", device=device), (20, 28, 3))  # cases that held
        return
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(ValueError, match="device") as exc:
        nc.dehaze(hazy(), method="dcp", device=device)
    assert "cpu" in str(exc.value)


# ------------------------------------------------------------------------------- F21
def test_objects_that_can_be_read_unambiguously_are_accepted(tmp_path) -> None:  # F21
    d = dehazer("dcp")
    valid(d.dehaze([[0.1, 0.2], [0.3, 0.4]]), (2, 2))
    rgb8 = (hazy() * 255).astype(np.uint8)
    Image.fromarray(rgb8).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        np.testing.assert_array_equal(d.dehaze(im).image, d.dehaze(rgb8).image)
    t = torch.from_numpy(hazy()).requires_grad_()
    np.testing.assert_array_equal(d.dehaze(t).image, d.dehaze(hazy()).image)
    valid(d.dehaze(torch.from_numpy(hazy()).to(torch.bfloat16)), (20, 28, 3))


@pytest.mark.parametrize("obj", ["photo.png", b"bytes", 3.0, None, {"a": 1}, [[1, 2], [3]], object()])
def test_objects_that_are_not_arrays_are_refused_naming_their_type(obj) -> None:  # F21
    with pytest.raises(ValueError, match=type(obj).__name__):
        dehazer("dcp").dehaze(obj)


# ------------------------------------------------------------------------------- F22
def test_method_must_match_a_given_dehazer() -> None:  # F22
    m = dehazer("clearnet")
    with pytest.raises(ValueError, match="runs 'clearnet'"):
        nc.dehaze(hazy(), method="dcp", model=m)
    with pytest.raises(ValueError, match="method must be one of"):
        nc.dehaze(hazy(), method="nonsense", model=m)
    assert nc.dehaze(hazy(), model=dehazer("dcp")).method == "dcp"  # no method: the Dehazer's
    assert nc.dehaze(hazy(), method="clearnet", model=m).method == "clearnet"


# ------------------------------------------------------------------------------- property
_DTYPES = ("uint8", ">u2", "<u2", "int8", "int16", "int32", "uint32", "int64", "float16", "float32",
           ">f4", "float64", "bool", "complex64", "object", "U1")


@st.composite
def arrays(draw) -> np.ndarray:
    ndim = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 9]), min_size=ndim, max_size=ndim)))
    if int(np.prod(shape)) > 4000:
        shape = shape[:2]
    dtype = draw(st.sampled_from(_DTYPES))
    kind = draw(st.sampled_from(["unit", "byte", "word", "over", "negative", "nan", "huge"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scale = {"unit": 1.0, "byte": 255.0, "word": 65535.0, "over": 1.5, "negative": -3.0, "nan": 1.0,
             "huge": 1e9}[kind]
    x = np.asarray(rng.random(shape) * scale)
    if kind == "nan" and x.size:
        x.flat[0] = np.nan
    if dtype in ("object", "U1"):
        return x.astype(dtype)
    if dtype == "bool":
        return x > 0.5
    with np.errstate(all="ignore"):
        return x.astype(dtype)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=arrays(), axis=st.sampled_from(["auto", None, 0, -1, 2]))
def test_property_any_array_gives_a_valid_result_or_a_value_error(method: str, x: np.ndarray, axis) -> None:
    """Random shapes (0-5 axes, sizes 0-9), dtypes (byte orders, float16, unsigned 32-bit,
    complex, object, strings, bool) and values (in range, 8/16-bit, just above 1, negative, NaN,
    huge), with any channel_axis: a valid result in the input's shape, or a ValueError."""
    before = x.copy()
    try:
        res = dehazer(method).dehaze(x, channel_axis=axis)
    except ValueError:
        pass
    else:
        valid(res, x.shape)
    np.testing.assert_array_equal(x, before)


def test_layout_rule_examples() -> None:
    assert io.describe_layout((64, 80, 3)).channels == 3
    assert io.describe_layout((10, 64, 80)).n_frames == 10
    assert io.describe_layout((4, 5, 64, 80, 4)).n_frames == 20


def test_array_kinds_that_already_worked_still_do(tmp_path) -> None:  # review rows 107, 109, 61
    d = dehazer("dcp")
    x = hazy()
    mm = np.memmap(tmp_path / "m.dat", dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    for mode in ("r", "r+"):
        ro = np.memmap(tmp_path / "m.dat", dtype=np.float32, mode=mode, shape=x.shape)
        np.testing.assert_allclose(d.dehaze(ro).image, d.dehaze(x).image, atol=1e-6)
    np.testing.assert_allclose(d.dehaze(x.astype(np.longdouble)).image, d.dehaze(x).image, atol=1e-6)
    half = x.astype(np.float16)
    np.testing.assert_allclose(d.dehaze(half).image, d.dehaze(half.astype(np.float32)).image, atol=1e-6)
    valid(d.dehaze(np.stack([np.stack([x, x])] * 2)), (2, 2, 20, 28, 3))  # 5-D
    valid(d.dehaze(np.ones((1, 1, 3), np.uint8)), (1, 1, 3))
    np.testing.assert_array_equal(d.dehaze(torch.from_numpy(x)).image, d.dehaze(x).image)
    da = pytest.importorskip("dask.array")
    stack = np.stack([hazy(seed=s) for s in range(4)])
    lazy = da.from_array(stack, chunks=(2, 17, 23, 2))
    np.testing.assert_allclose(d.dehaze(lazy).image, d.dehaze(stack).image, atol=1e-6)
