"""Image files: read as a viewer shows them, written with what matters kept.

Files are read as a viewer shows them (EXIF/TIFF orientation, MINISWHITE, palettes with
transparency, every frame of an animation or a multi-page TIFF), and every reader first checks
the size its header declares against :data:`MAX_PIXELS` and :data:`MAX_BYTES`, so a
decompression bomb or a corrupt size field is refused by name before anything is allocated. Any
failure of any decoder becomes a ``ValueError`` naming the file. 16-bit colour PNGs, which
Pillow reads as 8-bit and cannot write, go through libpng (``imagecodecs``). Files are written
through :func:`files.atomic_path` (temporary name, then rename), never over an existing file
unless asked, with the input's ICC profile and fingerprint where the format holds them.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._util.files import TAG_KEY, ReplacesInputError, atomic_path, fingerprint, tag_text
from ..core.arrays import pil_frame
from ..errors import ImageTooLarge
from .metadata import Meta, output_exif, photo_metadata, processing_note, software, with_tag

__all__ = [
    "DEFAULT_JPEG_QUALITY",
    "IMAGE_SUFFIXES",
    "MAX_BYTES",
    "MAX_PIXELS",
    "READ_SUFFIXES",
    "ImageFile",
    "write_float_tiff",
    "write_image",
]

#: the formats images are written in (``--format same`` keeps these, others become PNG)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: the image files :func:`load_image` reads, and so what a folder gives (the one list: a folder walk
#: takes exactly these and names what it passes over); any other file named explicitly is still tried
READ_SUFFIXES = (*IMAGE_SUFFIXES, ".gif", ".jfif", ".jpe", ".apng", ".dib", ".pbm", ".pgm", ".ppm",
                 ".pnm", ".tga", ".jp2", ".j2k", ".avif", ".qoi")
#: largest frame any reader decodes (Pillow's own default limit, about 13 400 × 13 400)
MAX_PIXELS = 178_956_970
#: largest decoded array (all frames and channels together), checked before decoding
MAX_BYTES = 2**31
#: JPEG quality when none is given: visually lossless, unlike Pillow's default of 75
DEFAULT_JPEG_QUALITY = 95
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------- reading
@dataclass
class ImageFile:
    """A decoded file: its pixels as a viewer shows them, and what an output should keep."""

    array: np.ndarray
    #: Pillow's format name ("PNG", "JPEG", …) or "TIFF"
    format: str
    icc_profile: bytes | None = None
    #: False when the file's compression loses data (JPEG, lossy WebP, JPEG-compressed TIFF)
    lossless: bool = True
    #: the photo's EXIF (date, camera, lens, GPS, ...) with its orientation set to 1, since
    #: :attr:`array` is upright, and its XMP packet: an output keeps both (see :func:`write_image`)
    exif: bytes | None = None
    xmp: bytes | None = None


def check_size(frames: int, height: int, width: int, channels: int, itemsize: int) -> None:
    """Refuse what a header declares before decoding: :data:`MAX_PIXELS` per frame and
    :data:`MAX_BYTES` for the decoded array."""
    pixels = int(height) * int(width)
    total = pixels * int(frames) * int(channels) * int(itemsize)
    if height <= 0 or width <= 0 or frames <= 0:
        raise ValueError(f"the header declares an empty image ({width}×{height}, {frames} frames)")
    if pixels > MAX_PIXELS:
        raise ImageTooLarge(
            f"image too large: {width}×{height} = {pixels / 1e6:.0f} MP, over the limit of "
            f"{MAX_PIXELS / 1e6:.0f} MP per frame (napari_clearnet.io.MAX_PIXELS): a corrupt or hostile "
            "header, or an image to split into tiles"
        )
    if total > MAX_BYTES:
        raise ImageTooLarge(
            f"image too large: {frames} frame(s) of {width}×{height} would take {total / 2**30:.1f} GiB "
            f"to decode, over the limit of {MAX_BYTES / 2**30:.1f} GiB (napari_clearnet.io.MAX_BYTES)"
        )


def _check_regular_file(path: Path) -> None:
    """Never open what is not a regular file: a FIFO would block for ever, a folder fails late."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"cannot read {path}: it is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
        raise ValueError(f"cannot read {path}: {kind}; save the image to a file first")


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


# ------------------------------------------------------------------------------- 16-bit PNG
def png_header(path: str | os.PathLike) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR, or None for other files. Read
    here, not by the decoder, so the size is checked before anything is decoded."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    w, h, depth, kind = struct.unpack(">IIBB", head[16:26])
    return w, h, depth, kind


def _is_png16_colour(path: Path) -> bool:
    """16-bit RGB, RGBA or grey+alpha: the PNGs Pillow would truncate to 8 bits."""
    hdr = png_header(path)
    return hdr is not None and hdr[2] == 16 and hdr[3] in (2, 4, 6)


def _read_png16(path: Path) -> ImageFile:
    """libpng decodes; it fills an array of the declared size, which is checked first, so a zlib
    bomb costs no more than an honest file. Grey+alpha becomes RGBA, as for other formats."""
    import imagecodecs

    w, h, _, _ = png_header(path)  # type: ignore[misc]
    check_size(1, h, w, 4, 2)
    arr = np.asarray(imagecodecs.png_decode(path.read_bytes()))
    if arr.ndim != 3 or arr.shape[:2] != (h, w) or arr.dtype != np.uint16:
        raise ValueError(f"decoded {arr.shape} {arr.dtype}, not the 16-bit {w}×{h} its header declares")
    if arr.shape[-1] == 2:
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)
    return ImageFile(np.ascontiguousarray(arr), "PNG", _png_icc(path), True)


def _png_icc(path: Path) -> bytes | None:
    """The ICC profile of a PNG, from Pillow's chunk reader (it opens the header, decodes nothing)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                return im.info.get("icc_profile") or None
        except (OSError, ValueError, Image.DecompressionBombError):
            return None


def _png16_bytes(data: np.ndarray, icc: bytes | None, text: str | None, exif: bytes | None = None,
                 xmp: bytes | None = None) -> bytes:
    """A 16-bit PNG from libpng, with the ICC profile (iCCP), our tag (tEXt), the EXIF (eXIf) and
    XMP (iTXt) put after the header chunk, where readers expect them."""
    import imagecodecs

    png = bytes(imagecodecs.png_encode(np.ascontiguousarray(data)))
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc))
    if text:
        extra += _png_chunk(b"tEXt", TAG_KEY.encode("latin-1") + b"\0" + text.encode("latin-1"))
    if exif:
        extra += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)
    if xmp:
        extra += _png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp)
    end_of_header = len(PNG_SIGNATURE) + 25  # IHDR: length, type, 13 bytes, CRC
    return png[:end_of_header] + extra + png[end_of_header:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _webp_lossless(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return b"VP8L" in head and b"VP8 " not in head


def read_pillow(path: Path) -> ImageFile:
    from PIL import Image

    with warnings.catch_warnings():
        # Pillow only warns between 1× and 2× its limit: check_size below refuses these
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(f"image too large ({exc})") from None
    with im:
        w, h = im.size
        fmt = im.format or "?"
        n = 1 if fmt == "MPO" else int(getattr(im, "n_frames", 1))  # MPO: the 2nd image is a preview
        deep = im.mode in ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")
        check_size(n, h, w, 1 if deep else 4, 4 if deep else 1)
        icc = im.info.get("icc_profile") or None
        lossless = fmt not in ("JPEG", "MPO") and not (fmt == "WEBP" and not _webp_lossless(path))
        frames = []
        for i in range(n):
            if i:
                im.seek(i)
            frames.append(pil_frame(im))
        # after the frames: it sets the orientation to 1, which they must still see
        exif, xmp = photo_metadata(im) if n == 1 else (None, None)
    if len({f.shape for f in frames}) > 1:
        raise ValueError(f"its {n} frames differ in size; save each as its own file")
    arr = frames[0] if n == 1 else np.stack(frames)
    return ImageFile(arr, fmt, icc, lossless, exif, xmp)


# ------------------------------------------------------------------------------------- writing
def _icc_fits(profile: bytes | None, channels: int) -> bytes | None:
    """An ICC profile only where it describes the output's colours (a CMYK profile of a JPEG
    read as RGB does not)."""
    if not profile or len(profile) < 20:
        return None
    space = profile[16:20]
    if channels in (3, 4) and space == b"RGB ":
        return profile
    if channels in (0, 1) and space == b"GRAY":
        return profile
    return None


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    bit_depth: int = 8,
    overwrite: bool = False,
    quality: int | None = None,
    icc_profile: bytes | None = None,
    source_fingerprint: str | None = None,
    source: str | os.PathLike | None = None,
    exif: bytes | None = None,
    xmp: bytes | None = None,
    provenance: Any = None,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """Write a float image in [0, 1] (or a uint8 one, written as it is at 8 bits) atomically;
    refuse to replace an existing file unless asked,
    and never the input it was made from (``source``, or a file with the ``source_fingerprint``),
    even when asked.

    ``bit_depth`` 16 writes 16-bit PNG or TIFF. ``quality`` (1-100) sets JPEG and WebP
    compression: JPEG defaults to :data:`DEFAULT_JPEG_QUALITY`, WebP is lossless unless a quality
    is given. ``icc_profile`` is embedded where the format can hold it and it fits the colours;
    ``source_fingerprint`` records the input (see :func:`fingerprint`). ``exif`` and ``xmp``
    (an :class:`ImageFile`'s) are kept where the format holds them (JPEG, PNG, WebP, TIFF; in a
    16-bit colour TIFF only XMP), with EXIF's Software tag naming this program and the
    ``provenance`` (a result's) noted as its UserComment. ``value_range`` (low, high) writes
    [0, 1] back as those integer values (e.g. 0-4095 for 12-bit data in 16-bit files) instead of
    the format's full range. The file appears under its final name only when complete, so an
    interrupted batch never leaves a half-written output.
    """
    path = Path(path)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)
                                or not 1 <= quality <= 100):
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}")
    suffix = path.suffix.lower()
    top = 65535.0 if bit_depth == 16 else 255.0
    lo, hi = (0.0, top) if value_range is None else (float(value_range[0]), float(value_range[1]))
    if not (0 <= lo < hi <= top):
        raise ValueError(f"value_range must be LOW,HIGH with 0 <= LOW < HIGH <= {top:g} for "
                         f"{bit_depth}-bit output, got {value_range}")
    eight = np.asarray(image).dtype == np.uint8  # already rounded (output_dtype="uint8")
    img = None if eight else np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
    if eight and (bit_depth != 8 or value_range is not None):
        img = np.asarray(image, np.float32) / np.float32(255)
    if img is None:
        data = np.asarray(image)
    elif bit_depth == 16:
        if suffix not in (".png", ".tif", ".tiff"):
            raise ValueError(f"16-bit output needs .png or .tif, not {suffix!r}")
        data = np.round(lo + img * (hi - lo)).astype(np.uint16)
    else:
        data = np.round(lo + img * (hi - lo)).astype(np.uint8)
    channels = data.shape[-1] if data.ndim == 3 and data.shape[-1] in (1, 3, 4) else 0
    icc = _icc_fits(icc_profile, channels)
    tag = tag_text(source_fingerprint) if source_fingerprint else None
    _refuse_fingerprint(path, source_fingerprint)
    meta = Meta(exif, xmp, processing_note(provenance))
    with atomic_path(path, overwrite, (source,)) as tmp:
        _encode(tmp, data, suffix, quality, icc, tag, meta)
    return path


def _refuse_fingerprint(path: Path, source_fingerprint: str | None) -> None:
    """An existing target whose own fingerprint is its input's is that input (or a copy of it):
    refused, so a caller that gives only the fingerprint is protected too."""
    if not source_fingerprint or not path.is_file():
        return
    try:
        same = fingerprint(path) == source_fingerprint
    except OSError:
        return
    if same:
        raise ReplacesInputError(
            f"output {path} holds the very input it would be made from (its fingerprint is the "
            "input's); an output never replaces its input: choose another output name or folder")


def _encode(tmp: str, data: np.ndarray, suffix: str, quality: int | None, icc: bytes | None,
            tag: str | None, meta: Meta | None = None) -> None:
    """Write ``data`` (uint8/uint16) to ``tmp`` in the format of ``suffix``."""
    meta = meta or Meta()
    tiff = suffix in (".tif", ".tiff")
    # TIFF: the Software tag carries our tag, as it always has (read_tag finds it there)
    exif = output_exif(meta.exif, (tag or TAG_KEY) if tiff else software(), meta.note)
    one_frame = data.ndim == 2 or (data.ndim == 3 and data.shape[-1] in (1, 3, 4))
    if tiff and not (one_frame and data.dtype == np.uint8 and exif and meta.exif):
        import tifffile

        kw: dict[str, Any] = {"software": tag or TAG_KEY}
        if icc is not None:
            kw["iccprofile"] = icc
        if meta.xmp:
            kw["extratags"] = [(700, 1, len(meta.xmp), meta.xmp, True)]
        if meta.note:
            kw["metadata"] = {"processing": meta.note}
        # say it: tifffile would take a stack of 3 or 4 grey frames for planar RGB
        kw["photometric"] = "rgb" if data.ndim >= 3 and data.shape[-1] in (3, 4) else "minisblack"
        tifffile.imwrite(tmp, data, **kw)
        return
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    text = tag[len(TAG_KEY) + 1:] if tag else None
    if data.dtype == np.uint16 and data.ndim == 3:  # Pillow has no 16-bit RGB mode
        with open(tmp, "wb") as f:
            f.write(_png16_bytes(data, icc, text, exif, meta.xmp))
        return
    from PIL import Image, PngImagePlugin

    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(suffix)
    fmt = fmt or Image.registered_extensions().get(suffix, "PNG")
    kw = {}
    if icc is not None and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kw["icc_profile"] = icc
    if exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kw["exif"] = exif
    if meta.xmp and fmt == "JPEG":
        kw["xmp"] = meta.xmp
    if meta.xmp and fmt == "TIFF" and exif:
        kw["exif"] = with_tag(exif, 700, meta.xmp)  # Pillow writes a TIFF's XMP from its IFD0
    if fmt == "JPEG":
        kw["quality"] = DEFAULT_JPEG_QUALITY if quality is None else quality
        if tag:
            kw["comment"] = tag.encode()
    elif fmt == "WEBP":
        kw.update({"lossless": True, "quality": 100} if quality is None else {"quality": quality})
        if tag:
            kw["xmp"] = tag.encode()
    elif fmt == "PNG" and text:
        info = PngImagePlugin.PngInfo()
        info.add_text(TAG_KEY, text)
        kw["pnginfo"] = info
    if fmt == "PNG" and meta.xmp:
        info = kw.setdefault("pnginfo", PngImagePlugin.PngInfo())
        info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8", "replace"))
    Image.fromarray(data).save(tmp, format=fmt, **kw)


def write_float_tiff(
    path: str | os.PathLike, data: np.ndarray, *, overwrite: bool = False,
    source_fingerprint: str | None = None, description: str | None = None,
    source: str | os.PathLike | None = None,
) -> Path:
    """Write an (H, W) map of measurements (metres, optical depth) as a float32 TIFF with its values
    as they are, atomically; refuse to replace an existing file unless asked, and never its input."""
    import tifffile

    path = Path(path)
    arr = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
    _refuse_fingerprint(path, source_fingerprint)
    with atomic_path(path, overwrite, (source,)) as tmp:
        tifffile.imwrite(tmp, arr, photometric="minisblack", description=description,
                         software=tag_text(source_fingerprint) if source_fingerprint else TAG_KEY)
    return path
