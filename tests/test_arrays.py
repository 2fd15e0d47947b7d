"""arrays: how any array is read (layout, value range, objects, lazy stacks) and given back in
its own layout. What cannot be read unambiguously is refused with a message saying what to pass,
never guessed (issue 12: F9, F11, F16, F17, F21), with a property test over random shapes, dtypes
and values (a valid result or a ValueError, nothing else)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _common import METHODS, check_result, dehaze_cpu, dehazer, hazy, hazy_rgb
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_clearnet.core import arrays


def test_layout_rule_examples() -> None:
    assert arrays.describe_layout((64, 80, 3)).channels == 3
    assert arrays.describe_layout((10, 64, 80)).n_frames == 10
    assert arrays.describe_layout((4, 5, 64, 80, 4)).n_frames == 20


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
    check_result(dehazer("dcp").dehaze(np.full((5, 64, 80), 100, np.uint8)), (5, 64, 80))  # plain grey stack


def test_channel_first_with_channel_axis_0() -> None:
    x = hazy_rgb()
    cf = np.moveaxis(x, -1, 0).copy()
    res = dehaze_cpu(cf, channel_axis=0)
    assert res.image.shape == cf.shape
    np.testing.assert_allclose(np.moveaxis(res.image, 0, -1), dehaze_cpu(x).image, atol=1e-6)
    with pytest.raises(ValueError, match="ambiguous"):
        dehaze_cpu(cf)  # (3, H, W) needs the caller to say what it is


@pytest.mark.parametrize("method", METHODS)
def test_grey_layouts_stay_grey(method: str) -> None:
    g = hazy_rgb()[..., 1]
    r2 = dehaze_cpu(g, method)
    r1 = dehaze_cpu(g[..., None], method)
    assert r2.image.shape == g.shape and r1.image.shape == (*g.shape, 1)
    np.testing.assert_allclose(r1.image[..., 0], r2.image, atol=1e-6)
    rgb = dehaze_cpu(np.repeat(g[..., None], 3, -1), method)
    np.testing.assert_allclose(r2.image, rgb.image.mean(-1), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_rgba_alpha_passes_through_unchanged(method: str) -> None:
    rgb = np.round(hazy_rgb() * 255).astype(np.uint8)
    alpha = np.random.default_rng(3).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    rgba = np.concatenate([rgb, alpha[..., None]], -1)
    res = dehaze_cpu(rgba, method)
    assert res.image.shape == rgba.shape
    np.testing.assert_array_equal(res.image[..., 3], alpha.astype(np.float32) / 255)
    np.testing.assert_allclose(res.image[..., :3], dehaze_cpu(rgb, method).image, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_uint8_and_uint16_are_read_by_their_full_range(method: str) -> None:
    x8 = np.round(hazy_rgb() * 255).astype(np.uint8)
    x16 = x8.astype(np.uint16) * 257
    r8, r16 = dehaze_cpu(x8, method), dehaze_cpu(x16, method)
    assert r8.image.shape == x8.shape
    np.testing.assert_allclose(r8.image, r16.image, atol=1e-4)
    np.testing.assert_allclose(r8.image, dehaze_cpu(x8.astype(np.float32) / 255, method).image, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.uint8, 255), (np.uint16, 65535), (np.int32, 255), (np.int64, 60000), (np.float32, 255.0),
     (np.float64, 65535.0), (np.float32, 1.0), (bool, 1)],
)
def test_dtypes_and_ranges(method: str, dtype, scale) -> None:
    base = hazy()
    x = (base > 0.5) if dtype is bool else (base * scale).astype(dtype)
    before = x.copy()
    res = dehazer(method).dehaze(x)
    check_result(res, x, x.shape[:2])
    np.testing.assert_array_equal(x, before)  # the input is never modified


def test_value_rules_and_their_messages() -> None:
    d = dehazer("dcp")
    with pytest.raises(ValueError, match="beyond 16-bit range; pass value_range"):
        d.dehaze(np.full((4, 4), 70000.0))
    with pytest.raises(ValueError, match="negative values"):
        d.dehaze(np.full((4, 4), -2, np.int16))
    twelve = (hazy() * 4095).astype(np.uint16)
    as_12 = d.dehaze(twelve, value_range=(0, 4095)).image
    np.testing.assert_allclose(as_12, d.dehaze(twelve / 4095.0).image, atol=1e-5)
    with pytest.raises(ValueError, match="unsupported pixel dtype"):
        d.dehaze(np.full((4, 4), "a"))
    with pytest.raises(ValueError, match="empty dimension"):
        d.dehaze(np.zeros((0, 4, 3)))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        d.dehaze(np.zeros(5))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_clearly(method: str, bad: float) -> None:
    x = hazy()
    x[3, 4, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        dehazer(method).dehaze(x)


@pytest.mark.parametrize("method", METHODS)
def test_float_just_above_one_is_refused_not_divided_by_255(method: str) -> None:  # F9
    f = hazy() / hazy().max()
    hint = r"reach 1\.01, just above 1.*value_range=\(0, 1\).*value_range=\(0, 255\)"
    with pytest.raises(ValueError, match=hint):
        dehazer(method).dehaze(f * 1.01)
    clipped = dehazer(method).dehaze(f * 1.01, value_range=(0, 1)).image
    np.testing.assert_allclose(clipped, dehazer(method).dehaze(np.clip(f * 1.01, 0, 1)).image, atol=1e-6)
    assert clipped.mean() > 0.2  # not black
    check_result(dehazer(method).dehaze(f * 100), f.shape)  # well above 2: 8-bit data, as documented


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


def test_objects_that_can_be_read_unambiguously_are_accepted(tmp_path) -> None:  # F21
    d = dehazer("dcp")
    check_result(d.dehaze([[0.1, 0.2], [0.3, 0.4]]), (2, 2))
    rgb8 = (hazy() * 255).astype(np.uint8)
    Image.fromarray(rgb8).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        np.testing.assert_array_equal(d.dehaze(im).image, d.dehaze(rgb8).image)
    t = torch.from_numpy(hazy()).requires_grad_()
    np.testing.assert_array_equal(d.dehaze(t).image, d.dehaze(hazy()).image)
    check_result(d.dehaze(torch.from_numpy(hazy()).to(torch.bfloat16)), (20, 28, 3))


@pytest.mark.parametrize("obj", ["photo.png", b"bytes", 3.0, None, {"a": 1}, [[1, 2], [3]], object()])
def test_objects_that_are_not_arrays_are_refused_naming_their_type(obj) -> None:  # F21
    with pytest.raises(ValueError, match=type(obj).__name__):
        dehazer("dcp").dehaze(obj)


@pytest.mark.parametrize("method", METHODS)
def test_non_contiguous_and_read_only_arrays(method: str) -> None:
    big = hazy(40, 56)
    view = big[::2, ::-2]  # strided and reversed
    assert not view.flags.c_contiguous
    ro = big.copy()
    ro.setflags(write=False)
    d = dehazer(method)
    np.testing.assert_allclose(d.dehaze(view).image, d.dehaze(view.copy()).image, atol=1e-6)
    np.testing.assert_allclose(d.dehaze(ro).image, d.dehaze(big).image, atol=1e-6)
    cf = np.moveaxis(big, -1, 0)  # channel-first view of a channel-last buffer
    np.testing.assert_allclose(d.dehaze(cf, channel_axis=0).image, np.moveaxis(d.dehaze(big).image, -1, 0),
                               atol=1e-6)


def test_dask_grey_stack_and_dask_rgba() -> None:
    da = pytest.importorskip("dask.array")
    x = np.stack([hazy(16, 20, s)[..., 0] for s in range(5)])
    res = dehazer("clearnet").dehaze(da.from_array(x, chunks=(1, 16, 20)))
    check_result(res, x, (16, 20))
    rgba = np.concatenate([hazy(), np.full((20, 28, 1), 0.5, np.float32)], -1)
    res = dehazer("dcp").dehaze(da.from_array(rgba, chunks=(10, 28, 4)))
    assert np.all(res.image[..., 3] == 0.5)


@pytest.mark.parametrize("method", METHODS)
def test_dask_array_gives_the_numpy_result(method: str) -> None:
    da = pytest.importorskip("dask.array")
    frames = np.stack([hazy_rgb(24, 32, s) for s in range(2)])
    lazy = da.from_array(frames, chunks=(1, 24, 32, 3))
    res = dehaze_cpu(lazy, method)
    assert isinstance(res.image, np.ndarray)
    np.testing.assert_allclose(res.image, dehaze_cpu(frames, method).image, atol=1e-6)


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
    check_result(d.dehaze(np.stack([np.stack([x, x])] * 2)), (2, 2, 20, 28, 3))  # 5-D
    check_result(d.dehaze(np.ones((1, 1, 3), np.uint8)), (1, 1, 3))
    np.testing.assert_array_equal(d.dehaze(torch.from_numpy(x)).image, d.dehaze(x).image)
    da = pytest.importorskip("dask.array")
    stack = np.stack([hazy(seed=s) for s in range(4)])
    lazy = da.from_array(stack, chunks=(2, 17, 23, 2))
    np.testing.assert_allclose(d.dehaze(lazy).image, d.dehaze(stack).image, atol=1e-6)


_DTYPES = ("uint8", ">u2", "<u2", "int8", "int16", "int32", "uint32", "int64", "float16", "float32",
           ">f4", "float64", "bool", "complex64", "object", "U1")


@st.composite
def any_arrays(draw) -> np.ndarray:
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
@given(x=any_arrays(), axis=st.sampled_from(["auto", None, 0, -1, 2]))
@example(x=np.array(np.nan, dtype=object), axis="auto")  # NaN objects are never equal to themselves
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
        check_result(res, x.shape)
    _assert_unchanged(x, before)


def _assert_unchanged(x: np.ndarray, before: np.ndarray) -> None:
    """``x`` holds what its copy ``before`` holds. Object arrays compare element by element by
    identity (their copy shares the elements), since NaN objects are never equal to themselves."""
    assert x.dtype == before.dtype and x.shape == before.shape
    if x.dtype == object:
        assert all(a is b for a, b in zip(x.ravel().tolist(), before.ravel().tolist(), strict=True))
    else:
        np.testing.assert_array_equal(x, before)


def test_a_frame_of_a_float_stack_is_read_on_the_whole_stacks_range():
    """Frame 0 peaks at 0.9 and frame 1 at 200: the stack is 8-bit-like floats (0, 255), so frame 0
    is read as dark, as the run loop reads it, not on a (0, 1) range of its own."""
    from napari_clearnet.core.arrays import frame

    stack = np.zeros((2, 6, 8, 3), np.float32)
    stack[0] = np.linspace(0.1, 0.9, 6 * 8 * 3, dtype=np.float32).reshape(6, 8, 3)
    stack[1] = np.linspace(10, 200, 6 * 8 * 3, dtype=np.float32).reshape(6, 8, 3)
    assert arrays.pixel_range(stack) == (0.0, 255.0)
    f0 = frame(stack, 0)
    assert f0.dtype == np.float32 and f0.shape == (6, 8, 3)
    np.testing.assert_allclose(f0, stack[0] / 255, rtol=1e-6)
    np.testing.assert_array_equal(frame(stack, -1), frame(stack, 1))
    with pytest.raises(IndexError, match="frame 2 is out of range"):
        frame(stack, 2)
