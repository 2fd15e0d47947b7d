"""io: image files are read as a viewer shows them, every reader checks the size its header
declares before decoding, any decoder failure names the file (issue 12: F1, F2, F12, F23-F26,
F29, F34), and outputs keep what matters (ICC profiles, 16 bits, quality)."""

from __future__ import annotations

import io as pyio
import os
import re
import struct
import tracemalloc
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from _common import PNG_SIGNATURE, hazy, png_bytes, run_dcp
from PIL import Image, ImageCms, ImageOps

from napari_clearnet import io
from napari_clearnet.cli import main
from napari_clearnet.io import images as io_images


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _named_error(path: Path, match: str = "") -> pytest.ExceptionInfo:
    with pytest.raises(ValueError, match=match) as exc:
        io.read_image(path)
    assert str(path) in str(exc.value)
    return exc


def test_header_sizes_over_the_limit_are_refused_by_name_before_decoding(tmp_path: Path) -> None:  # F1
    png = tmp_path / "big.png"  # a 225-byte PNG that claims 50000 × 50000
    png.write_bytes(png_bytes(50000, 50000, 8, 2, zlib.compress(b"\0" * 100)))
    _named_error(png, "image too large")
    jpg = tmp_path / "sof.jpg"  # four corrupted SOF size bytes
    buf = pyio.BytesIO()
    Image.fromarray(_rgb()).save(buf, format="JPEG", quality=95)
    data = bytearray(buf.getvalue())
    i = data.find(b"\xff\xc0")
    data[i + 5 : i + 9] = b"\xff" * 4
    jpg.write_bytes(bytes(data))
    _named_error(jpg, "image too large")
    tif = tmp_path / "big.tif"  # a TIFF header that declares 60000 × 60000
    tifffile.imwrite(tif, np.zeros((8, 8), np.uint8))
    raw = bytearray(tif.read_bytes())
    for tag in (256, 257):
        k = raw.find(struct.pack("<HH", tag, 3))  # ImageWidth / ImageLength as SHORT
        if k < 0:
            k = raw.find(struct.pack("<HH", tag, 4))
            raw[k + 8 : k + 12] = struct.pack("<I", 60000)
        else:
            raw[k + 8 : k + 10] = struct.pack("<H", 60000)
    tif.write_bytes(bytes(raw))
    _named_error(tif, "cannot read")


def test_limit_covers_every_format_including_frames(tmp_path: Path, monkeypatch) -> None:  # F1
    """One guard for all readers: lower the limit and every format is refused by its header."""
    paths = []
    for ext in ("png", "jpg", "bmp", "webp", "gif", "tif"):
        p = tmp_path / f"x.{ext}"
        if ext == "tif":
            tifffile.imwrite(p, _rgb(40, 40))
        else:
            Image.fromarray(_rgb(40, 40)).save(p)
        paths.append(p)
    p16 = tmp_path / "x16.png"
    p16.write_bytes(imagecodecs.png_encode(np.zeros((40, 40, 3), np.uint16)))
    paths.append(p16)
    monkeypatch.setattr(io_images, "MAX_PIXELS", 1000)
    for p in paths:
        _named_error(p, "image too large")
    monkeypatch.setattr(io_images, "MAX_PIXELS", 10**8)
    monkeypatch.setattr(io_images, "MAX_BYTES", 3 * 40 * 40 * 3)  # two frames fit, three do not
    frames = [Image.fromarray(_rgb(40, 40, s)) for s in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    _named_error(tmp_path / "anim.gif", "image too large")


def test_png16_zlib_bomb_is_refused_and_decoding_is_bounded(tmp_path: Path, monkeypatch) -> None:  # F2
    w = h = 2000
    row = b"\0" * (1 + w * 6)
    bomb = tmp_path / "bomb.png"
    comp = zlib.compressobj(9)
    bomb.write_bytes(png_bytes(w, h, 16, 2, b"".join(comp.compress(row) for _ in range(h)) + comp.flush()))
    assert bomb.stat().st_size < 100_000  # 24 MB of pixels in a few kB
    monkeypatch.setattr(io_images, "MAX_PIXELS", 1_000_000)
    _named_error(bomb, "image too large")
    # a small image whose data stream inflates far beyond its declared size: only what the
    # header needs is ever inflated
    small = tmp_path / "small.png"
    comp = zlib.compressobj(9)
    huge = comp.compress(b"\0" * (1 + 10 * 6) * 10) + comp.compress(b"\0" * 50_000_000) + comp.flush()
    small.write_bytes(png_bytes(10, 10, 16, 2, huge))
    tracemalloc.start()
    try:
        arr = io.read_image(small)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert arr.shape == (10, 10, 3) and arr.dtype == np.uint16
    assert peak < 5_000_000, peak


def test_memory_errors_and_unexpected_decoder_errors_name_the_file(tmp_path: Path, monkeypatch) -> None:  # F1
    p = tmp_path / "x.png"
    Image.fromarray(_rgb()).save(p)

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(io_images, "read_pillow", oom)
    _named_error(p, "not enough memory")

    def odd(*a, **k):
        raise KeyError("a decoder bug")

    monkeypatch.setattr(io_images, "read_pillow", odd)
    _named_error(p, "KeyError")


def _samples(tmp: Path) -> dict[str, bytes]:
    out = {}
    rgb = _rgb(12, 10)
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("WEBP", "webp")):
        buf = pyio.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt)
        out[ext] = buf.getvalue()
    buf = pyio.BytesIO()
    frames = [Image.fromarray(_rgb(12, 10, s)) for s in range(2)]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out["gif"] = buf.getvalue()
    p = tmp / "s16.png"
    p.write_bytes(imagecodecs.png_encode((np.random.default_rng(0).random((12, 10, 3)) * 65535)
                                         .astype(np.uint16)))
    out["png16.png"] = p.read_bytes()
    buf = pyio.BytesIO()
    tifffile.imwrite(buf, rgb, compression="zlib")
    out["tif"] = buf.getvalue()
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    d = bytearray(data)
    kind = rng.integers(0, 4)
    if kind == 0:  # flip a byte in the header region
        i = int(rng.integers(0, min(len(d), 80)))
        d[i] = int(rng.integers(0, 256))
    elif kind == 1:  # a size or length field becomes huge
        i = int(rng.integers(0, max(1, len(d) - 4)))
        d[i : i + 4] = b"\xff\xff\xff" + bytes([int(rng.integers(0, 256))])
    elif kind == 2:  # truncate
        d = d[: int(rng.integers(0, len(d)))]
    else:  # random bytes anywhere
        for _ in range(int(rng.integers(1, 6))):
            d[int(rng.integers(0, len(d)))] = int(rng.integers(0, 256))
    return bytes(d)


@pytest.mark.timeout(240)
def test_fuzz_mutated_files_of_every_format_give_an_image_or_a_named_error(tmp_path: Path) -> None:  # F1, F2
    """Random header, length-field, truncation and byte mutations of PNG, 16-bit PNG, JPEG, BMP,
    WebP, GIF and TIFF (fixed seed, 150 per format): a valid array or a ValueError that names the
    file, never another exception."""
    rng = np.random.default_rng(12)
    for ext, data in _samples(tmp_path).items():
        for k in range(150):
            p = tmp_path / f"m{k}.{ext}"
            p.write_bytes(_mutate(data, rng))
            try:
                arr = io.read_image(p)
            except ValueError as exc:
                assert str(p) in str(exc), (ext, k, exc)
            else:
                assert isinstance(arr, np.ndarray) and arr.ndim >= 2 and arr.size > 0, (ext, k)


def test_animated_gif_webp_and_multi_series_tiff_keep_every_frame(tmp_path: Path) -> None:  # F12
    frames = [_rgb(24, 32, s) for s in range(3)]
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(tmp_path / "a.gif", save_all=True, append_images=ims[1:], duration=100)
    ims[0].save(tmp_path / "a.webp", save_all=True, append_images=ims[1:], lossless=True)
    ims[0].save(tmp_path / "a.png", save_all=True, append_images=ims[1:])  # APNG
    for name in ("a.gif", "a.webp", "a.png"):
        arr = io.read_image(tmp_path / name)
        assert arr.shape[:3] == (3, 24, 32), name
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.webp"), np.stack(frames))
    same = tmp_path / "same.tif"
    for f in frames:
        tifffile.imwrite(same, f, append=True)  # three series of one size: a stack
    np.testing.assert_array_equal(io.read_image(same), np.stack(frames))
    mixed = tmp_path / "mixed.tif"
    for shape in ((64, 80), (32, 40), (48, 60)):
        tifffile.imwrite(mixed, np.zeros(shape, np.uint8), append=True)
    _named_error(mixed, r"3 images of different sizes \(64×80, 32×40, 48×60\)")
    pages = tmp_path / "pil_pages.tif"  # multi-page TIFF written by Pillow (one series)
    ims[0].save(pages, save_all=True, append_images=ims[1:])
    np.testing.assert_array_equal(io.read_image(pages), np.stack(frames))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_read_as_displayed(tmp_path: Path, orientation: int) -> None:  # F23
    p = tmp_path / "o.tif"
    tifffile.imwrite(p, _rgb(16, 24), photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    shown = np.asarray(ImageOps.exif_transpose(Image.open(p)))  # how Pillow (a viewer) shows it
    np.testing.assert_array_equal(io.read_image(p), shown)


def test_miniswhite_tiff_is_read_as_displayed(tmp_path: Path) -> None:  # F24
    grey = _rgb()[..., 0]
    p = tmp_path / "mw.tif"
    tifffile.imwrite(p, 255 - grey, photometric="miniswhite")
    np.testing.assert_array_equal(io.read_image(p), grey)
    np.testing.assert_array_equal(io.read_image(p), np.asarray(Image.open(p).convert("L")))
    g16 = (np.random.default_rng(1).random((8, 9)) * 65535).astype(np.uint16)
    tifffile.imwrite(p, 65535 - g16, photometric="miniswhite")
    np.testing.assert_array_equal(io.read_image(p), g16)


@pytest.mark.parametrize("compression", ["tiff_lzw", "jpeg", "tiff_deflate", "packbits", "group4"])
def test_compressed_tiffs_are_read(tmp_path: Path, compression: str) -> None:  # F25
    p = tmp_path / "c.tif"
    im = Image.fromarray(_rgb())
    if compression == "group4":
        im = im.convert("1")
    im.save(p, compression=compression)
    expected = np.asarray(Image.open(p).convert("L" if compression == "group4" else "RGB"))
    got = io.read_image(p)
    if compression == "group4":
        got = got.astype(np.uint8) * (255 if got.max() <= 1 else 1)
    tol = 2 if compression == "jpeg" else 0  # two JPEG decoders may round differently
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tol


def test_tiff_falls_back_to_pillow_without_a_codec(tmp_path: Path, monkeypatch) -> None:  # F25
    p = tmp_path / "lzw.tif"
    Image.fromarray(_rgb()).save(p, compression="tiff_lzw")

    def no_codec(self, *a, **k):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", no_codec)
    np.testing.assert_array_equal(io.read_image(p), _rgb())


def test_planar_and_grey_alpha_tiffs_have_their_samples_last(tmp_path: Path) -> None:  # F26, F11
    rgb = _rgb()
    p = tmp_path / "planar.tif"
    tifffile.imwrite(p, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(io.read_image(p), rgb)
    la = tmp_path / "la.tif"
    tifffile.imwrite(la, np.dstack([rgb[..., 0], np.full(rgb.shape[:2], 200, np.uint8)]),
                     extrasamples=["unassalpha"])
    arr = io.read_image(la)
    assert arr.shape == (24, 32, 4) and np.all(arr[..., 3] == 200)  # grey+alpha -> RGBA, as for PNG


def test_palette_transparency_becomes_alpha(tmp_path: Path) -> None:  # F29
    p = tmp_path / "pal.png"
    im = Image.fromarray(_rgb()).convert("P")
    im.save(p, transparency=int(np.asarray(im)[0, 0]))  # the top-left pixel's colour is transparent
    arr = io.read_image(p)
    assert arr.shape == (24, 32, 4)
    expected = np.asarray(Image.open(p).convert("RGBA"))
    np.testing.assert_array_equal(arr, expected)
    assert (arr[..., 3] == 0).any() and (arr[..., 3] == 255).any()


def _srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif"])
def test_icc_profile_is_read_and_written_where_the_format_holds_it(tmp_path: Path, ext: str) -> None:  # F29
    icc = _srgb()
    src = tmp_path / f"in.{ext}"
    if ext == "tif":
        tifffile.imwrite(src, _rgb(), photometric="rgb", iccprofile=icc)
    else:
        Image.fromarray(_rgb()).save(src, icc_profile=icc)
    f = io.load_image(src)
    assert f.icc_profile == icc
    out = io.write_image(tmp_path / f"out.{ext}", f.array / 255.0, icc_profile=f.icc_profile)
    assert io.load_image(out).icc_profile == icc
    out16 = io.write_image(tmp_path / "out16.png", f.array / 255.0, bit_depth=16, icc_profile=icc)
    assert io.load_image(out16).icc_profile == icc  # our own 16-bit PNG writer too


def test_icc_profile_that_does_not_fit_the_output_is_dropped(tmp_path: Path) -> None:  # F29
    cmyk_like = bytearray(_srgb())
    cmyk_like[16:20] = b"CMYK"  # a CMYK JPEG's profile must not travel to RGB output
    out = io.write_image(tmp_path / "o.png", _rgb() / 255.0, icc_profile=bytes(cmyk_like))
    assert "icc_profile" not in Image.open(out).info


def test_jpeg_and_webp_quality_defaults_and_choice(tmp_path: Path) -> None:  # F29
    img = _rgb(64, 64) / 255.0
    hi = io.write_image(tmp_path / "d.jpg", img)
    lo = io.write_image(tmp_path / "q50.jpg", img, quality=50)
    q95 = Image.open(hi).quantization[0][:4]
    assert list(q95) == [2, 1, 1, 2] and Image.open(lo).quantization[0][0] > 10
    w = io.write_image(tmp_path / "d.webp", img)
    assert b"VP8L" in w.read_bytes()[:64]  # lossless by default
    np.testing.assert_array_equal(io.read_image(w), np.round(img * 255).astype(np.uint8))
    lossy = io.write_image(tmp_path / "q.webp", img, quality=80)
    assert b"VP8 " in lossy.read_bytes()[:64]
    with pytest.raises(ValueError, match="quality"):
        io.write_image(tmp_path / "bad.jpg", img, quality=0)


def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:  # F34
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    _named_error(fifo, "FIFO")  # opening it would block for ever
    _named_error(tmp_path, "folder")


def test_file_flavours_that_already_worked_still_do(tmp_path: Path) -> None:  # review rows 45, 66, 103
    rgb = _rgb()
    tifffile.imwrite(tmp_path / "be.tif", rgb.astype(">u2") * 257, byteorder=">")
    np.testing.assert_array_equal(io.read_image(tmp_path / "be.tif"), rgb.astype(np.uint16) * 257)
    im = Image.fromarray(rgb)
    im.save(tmp_path / "garbage_exif.jpg", exif=b"Exif\0\0garbage that is not a TIFF structure")
    assert io.read_image(tmp_path / "garbage_exif.jpg").shape == (24, 32, 3)
    im.convert("CMYK").save(tmp_path / "cmyk.jpg")
    im.convert("P").save(tmp_path / "pal.png")
    im.convert("1").save(tmp_path / "bw.png")
    im.convert("LA").save(tmp_path / "la.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "g16.png")
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 120, np.uint8)]))
    rgba.save(tmp_path / "rgba.bmp")
    rgba.save(tmp_path / "rgba.webp", lossless=True)
    shapes = {n: io.read_image(tmp_path / n).shape for n in
              ("cmyk.jpg", "pal.png", "bw.png", "la.png", "g16.png", "rgba.bmp", "rgba.webp")}
    assert shapes == {"cmyk.jpg": (24, 32, 3), "pal.png": (24, 32, 3), "bw.png": (24, 32),
                      "la.png": (24, 32, 4), "g16.png": (24, 32), "rgba.webp": (24, 32, 4),
                      "rgba.bmp": (24, 32, len(Image.open(tmp_path / "rgba.bmp").getbands()))}  # as Pillow
    assert io.read_image(tmp_path / "g16.png").dtype == np.uint16


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
    assert run_dcp(tmp_path, "-o", out) == 1
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
    (tmp_path / "rgb16.png").write_bytes(imagecodecs.png_encode(rgb))
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "g16.png"), grey)
    np.testing.assert_array_equal(io.read_image(tmp_path / "rgb16.png"), rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "rgb16.tif"), rgb)
    out = tmp_path / "out"
    assert run_dcp(tmp_path, "-o", out) == 0
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
    return PNG_SIGNATURE + chunk(b"IHDR", head) + idat + chunk(b"IEND", b"")


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


def test_a_stack_of_three_grey_frames_is_written_as_grey_pages(tmp_path: Path) -> None:
    """tifffile would take (3, H, W) for planar RGB; a transmission stack of three frames stays
    three grey frames when it is read back."""
    t = np.stack([np.full((20, 24), v, np.float32) for v in (0.2, 0.5, 0.8)])
    out = io.write_image(tmp_path / "t.tif", t, bit_depth=16)
    back = io.read_image(out)
    assert back.shape == (3, 20, 24) and back.dtype == np.uint16
    np.testing.assert_allclose(back[:, 0, 0] / 65535, [0.2, 0.5, 0.8], atol=1e-4)
