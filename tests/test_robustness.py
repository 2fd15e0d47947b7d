"""Issue 7: odd arrays, odd files and bad weights, through the API and the CLI.

Every case ends in a correct result or a clear error that names the problem; see
docs/robustness.md for the table of cases and expected outcomes.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save_file

import napari_clearnet
from napari_clearnet import _png16, io, weights
from napari_clearnet.cli import main
from napari_clearnet.model import ClearNet, ClearNetConfig

METHODS = ("clearnet", "dcp")


@functools.cache
def dehazer(method: str) -> napari_clearnet.Dehazer:
    """One loaded model per method for the whole module (weights load once)."""
    return napari_clearnet.load_model(method=method, device="cpu")


def check_result(res, image: np.ndarray, spatial: tuple[int, int] | None = None) -> None:
    """The invariants every output must keep, whatever the input."""
    assert res.image.shape == np.shape(image)
    assert np.isfinite(res.image).all() and res.image.min() >= 0 and res.image.max() <= 1
    t, a = res.transmission, res.airlight
    assert np.isfinite(t).all() and t.min() > 0 and t.max() <= 1
    assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1 and a.shape[-1] == 3
    if spatial is not None:
        assert t.shape[-2:] == spatial


def hazy(h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0.3, 0.9, h, dtype=np.float32)[:, None, None]
    return (rng.random((h, w, 3), dtype=np.float32) * 0.8 * t + 0.8 * (1 - t)).astype(np.float32)


# ----------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.uint8, 255), (np.uint16, 65535), (np.int32, 255), (np.int64, 4095), (np.float32, 255.0),
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


# ----------------------------------------------------------------------------------- shapes
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


# ----------------------------------------------------------------------------------- properties
_DTYPES = ("uint8", "uint16", "int32", "float32", "float64", "bool")


@st.composite
def images(draw) -> np.ndarray:
    h = draw(st.integers(1, 24))
    w = draw(st.integers(1, 24))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    frames = draw(st.sampled_from([None, 2]))
    dtype = draw(st.sampled_from(_DTYPES))
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
    top = {"uint8": 255, "uint16": 65535, "int32": 1000, "float32": 1.0, "float64": 255.0, "bool": 1}[dtype]
    return (x > 0.5) if dtype == "bool" else (x * top).astype(dtype)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=images())
def test_property_outputs_are_valid_and_input_unchanged(method: str, x: np.ndarray) -> None:
    before = x.copy()
    res = dehazer(method).dehaze(x)
    check_result(res, x)
    np.testing.assert_array_equal(x, before)


# ----------------------------------------------------------------------------------- files
def _png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def test_truncated_empty_and_non_image_files_are_named(tmp_path: Path) -> None:
    good = _png(tmp_path / "good.png", (hazy() * 255).astype(np.uint8))
    data = good.read_bytes()
    cases = {
        "truncated.png": data[: len(data) // 2],
        "empty.png": b"",
        "text.png": b"hello, I am not a picture",
        "truncated.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 20,
        "broken.tif": b"II*\x00garbage",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ValueError, match=f"cannot read .*{re.escape(name)}"):
            io.read_image(tmp_path / name)
    with pytest.raises(ValueError, match="cannot read"):
        io.read_image(tmp_path / "missing.png")
    # the CLI names each bad one, still writes the good one, and exits 1
    out = tmp_path / "out"
    assert main(["dehaze", str(tmp_path), "-o", str(out), "--method", "dcp", "--no-progress"]) == 1
    assert [p.name for p in out.iterdir()] == ["good_dehazed.png"]


def test_unreadable_file(tmp_path: Path) -> None:
    p = _png(tmp_path / "secret.png", np.zeros((4, 4), np.uint8))
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as root: chmod 0 does not make a file unreadable")
        with pytest.raises(ValueError, match=r"cannot read .*secret\.png"):
            io.read_image(p)
    finally:
        p.chmod(0o644)


def test_sixteen_bit_png_and_tiff_keep_their_depth(tmp_path: Path) -> None:
    import tifffile

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    rgb = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    _png16.write_png16(tmp_path / "rgb16.png", rgb)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "g16.png"), grey)
    np.testing.assert_array_equal(io.read_image(tmp_path / "rgb16.png"), rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "rgb16.tif"), rgb)
    out = tmp_path / "out"
    assert main(["dehaze", str(tmp_path), "-o", str(out), "--method", "dcp", "--no-progress"]) == 0
    for name in ("g16_dehazed.png", "rgb16_dehazed.png", "rgb16_dehazed.tif"):
        assert io.read_image(out / name).dtype == np.uint16, name


def _encode_png16_with_filters(arr: np.ndarray) -> bytes:
    """Encode uint16 RGB with PNG filters 0-4 in turn (what other tools write), for the decoder test."""
    h, w, c = arr.shape
    bpp = 2 * c
    rows = arr.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(np.int64)
    out = bytearray()
    for y in range(h):
        x = rows[y]
        up = rows[y - 1] if y else np.zeros_like(x)
        left = np.concatenate([np.zeros(bpp, np.int64), x[:-bpp]])
        ul = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        f = y % 5
        if f == 0:
            pred = np.zeros_like(x)
        elif f == 1:
            pred = left
        elif f == 2:
            pred = up
        elif f == 3:
            pred = (left + up) // 2
        else:
            p = left + up - ul
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, ul))
        out.append(f)
        out.extend(((x - pred) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    head = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(bytes(out)))
    return _png16.SIGNATURE + chunk(b"IHDR", head) + idat + chunk(b"IEND", b"")


def test_png16_decoder_handles_every_filter_type(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for c in (3, 4):
        arr = rng.integers(0, 65536, (11, 7, c), dtype=np.uint16)
        p = tmp_path / f"f{c}.png"
        p.write_bytes(_encode_png16_with_filters(arr))
        np.testing.assert_array_equal(io.read_image(p), arr)
        p.write_bytes(p.read_bytes()[:60])
        with pytest.raises(ValueError, match="cannot read"):
            io.read_image(p)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:20, :20] = 255  # a white block in the top-left corner, as stored
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    out = io.read_image(path)
    assert out.shape == (80, 40, 3)  # as displayed: portrait
    assert out[:20, -20:].mean() > 200 and out[-20:, :20].mean() < 50  # top-left went top-right
    outdir = tmp_path / "out"
    assert main(["dehaze", str(path), "-o", str(outdir), "--method", "dcp", "--no-progress"]) == 0
    assert io.read_image(outdir / "rotated_dehazed.jpg").shape == (80, 40, 3)


def test_grayscale_jpeg_stays_grey(tmp_path: Path) -> None:
    path = tmp_path / "grey.jpg"
    Image.fromarray((hazy()[..., 0] * 255).astype(np.uint8), mode="L").save(path)
    assert io.read_image(path).shape == (20, 28)
    out = tmp_path / "out"
    assert main(["dehaze", str(path), "-o", str(out), "--method", "dcp", "--no-progress"]) == 0
    assert io.read_image(out / "grey_dehazed.jpg").shape == (20, 28)


def test_rgba_png_keeps_alpha_and_jpg_drops_it(tmp_path: Path) -> None:
    rgba = np.concatenate([(hazy() * 255).astype(np.uint8), np.full((20, 28, 1), 77, np.uint8)], -1)
    _png(tmp_path / "a.png", rgba)
    out = tmp_path / "out"
    assert main(["dehaze", str(tmp_path / "a.png"), "-o", str(out), "--method", "dcp", "--no-progress"]) == 0
    assert np.all(io.read_image(out / "a_dehazed.png")[..., 3] == 77)
    assert main(["dehaze", str(tmp_path / "a.png"), "-o", str(out), "--method", "dcp", "--no-progress",
                 "--format", "jpg"]) == 0
    assert io.read_image(out / "a_dehazed.jpg").shape == (20, 28, 3)


def test_paths_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    src = tmp_path / "my photos" / "brume matinale"
    src.mkdir(parents=True)
    _png(src / "café ☕ 霧.png", (hazy() * 255).astype(np.uint8))
    out = tmp_path / "sortie dehazée"
    assert main(["dehaze", str(src), "-o", str(out), "--method", "dcp", "--no-progress",
                 "--save-transmission"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["café ☕ 霧_dehazed.png", "café ☕ 霧_transmission.png"]


def test_write_image_is_atomic_and_never_overwrites(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "x.png"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        io.write_image(target, np.zeros((4, 4, 3)))
    assert target.read_bytes() == b"precious"

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        io.write_image(tmp_path / "y.png", np.zeros((4, 4, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no y.png, no .part file


# ----------------------------------------------------------------------------------- weights
def _bundled() -> Path:
    return weights.bundled_dir() / weights.get_entry(weights.DEFAULT_MODEL).filename


def _default_still_works() -> None:
    res = napari_clearnet.dehaze(hazy(), device="cpu")
    assert res.model == weights.DEFAULT_MODEL and np.isfinite(res.image).all()


def _cli_model(tmp_path: Path, model: Path, capsys) -> str:
    _png(tmp_path / "in.png", (hazy() * 255).astype(np.uint8))
    code = main(["dehaze", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", str(model),
                 "--no-progress", "--device", "cpu"])
    assert code == 2
    assert not (tmp_path / "out" / "in_dehazed.png").exists()
    return capsys.readouterr().err


def test_missing_weights(tmp_path: Path, capsys) -> None:
    p = tmp_path / "nope.safetensors"
    with pytest.raises(weights.WeightsError, match="not found"):
        napari_clearnet.dehaze(hazy(), model=p, device="cpu")
    assert "weights file not found" in _cli_model(tmp_path, p, capsys)
    _default_still_works()


def test_truncated_weights(tmp_path: Path, capsys) -> None:
    p = tmp_path / "cut.safetensors"
    p.write_bytes(_bundled().read_bytes()[:100_000])
    with pytest.raises(weights.WeightsError, match="truncated"):
        napari_clearnet.dehaze(hazy(), model=p, device="cpu")
    assert "cut.safetensors" in _cli_model(tmp_path, p, capsys)
    p.write_bytes(_bundled().read_bytes()[:5])
    with pytest.raises(weights.WeightsError, match="not a safetensors file"):
        napari_clearnet.load_model(p)
    _default_still_works()


def test_wrong_checksum_of_a_registry_model(tmp_path: Path, monkeypatch) -> None:
    entry = weights.get_entry(weights.DEFAULT_MODEL)
    tampered = tmp_path / "weights"
    tampered.mkdir()
    shutil.copy(weights.bundled_dir() / "registry.json", tampered / "registry.json")
    blob = bytearray(_bundled().read_bytes())
    blob[-10] ^= 0xFF  # one flipped byte in the tensor data
    (tampered / entry.filename).write_bytes(bytes(blob))
    monkeypatch.setattr(weights, "bundled_dir", lambda: tampered)
    with pytest.raises(weights.WeightsError, match="checksum mismatch"):
        napari_clearnet.load_model(weights.DEFAULT_MODEL, device="cpu")
    with pytest.raises(weights.WeightsError, match="checksum mismatch"):
        weights.verify_file(tampered / entry.filename, entry)
    monkeypatch.undo()
    _default_still_works()


def test_state_dict_of_another_architecture(tmp_path: Path, capsys) -> None:
    small = ClearNet(ClearNetConfig(widths=(8, 16)))
    meta = {weights.CONFIG_KEY: json.dumps(ClearNetConfig().to_dict())}
    p = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(p), metadata=meta)
    with pytest.raises(weights.WeightsError, match="do not fit the ClearNet architecture"):
        napari_clearnet.dehaze(hazy(), model=p, device="cpu")
    q = tmp_path / "resnet.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(q), metadata=meta)
    with pytest.raises(weights.WeightsError, match="missing"):
        napari_clearnet.load_model(q)
    r = tmp_path / "noconfig.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(r))
    with pytest.raises(weights.WeightsError, match="clearnet_config"):
        napari_clearnet.load_model(r)
    assert "do not fit" in _cli_model(tmp_path, p, capsys)
    _default_still_works()


class _Trap:
    """Unpickling this creates a marker file: proof that nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", ["torch", 2, 5])
def test_pickle_offered_as_weights_is_refused(tmp_path: Path, protocol, capsys) -> None:
    marker = tmp_path / "unpickled"
    p = tmp_path / "evil.safetensors"
    if protocol == "torch":
        torch.save({"trap": _Trap(marker)}, p)
    else:
        p.write_bytes(pickle.dumps({"trap": _Trap(marker)}, protocol=protocol))
    with pytest.raises(weights.WeightsError, match=r"pickle|not a safetensors file") as exc:
        napari_clearnet.dehaze(hazy(), model=p, device="cpu")
    assert "evil.safetensors" in str(exc.value)
    assert "evil.safetensors" in _cli_model(tmp_path, p, capsys)
    assert not marker.exists()
    _default_still_works()
