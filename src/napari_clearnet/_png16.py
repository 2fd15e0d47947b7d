"""16-bit colour PNG, which Pillow (and imageio through it) can neither write nor read at full depth.

Pillow has no 48/64-bit RGB(A) mode: it refuses to write such arrays and silently reads such
files as 8-bit. Scientific cameras and pipelines do produce them, so this small codec keeps
their 16 bits. It handles every PNG filter type; interlaced (Adam7) files are refused with a
message, since they are rare for 16-bit data.

Decoding is bounded by the header: the caller (:func:`napari_clearnet.io.load_image`) checks the
declared size against its limits first, and the zlib stream is never inflated beyond what that
size needs, so a zlib bomb costs no more memory than an honest file of its declared size.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import numpy as np

__all__ = ["header", "is_png16_colour", "read_png16", "write_png16"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def write_png16(
    path: str | os.PathLike, data: np.ndarray, *, icc_profile: bytes | None = None,
    text: dict[str, str] | None = None,
) -> None:
    """Write a uint16 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array as a 16-bit PNG, with an
    optional ICC profile (iCCP) and Latin-1 text chunks (tEXt), both before the image data."""
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    h, w = data.shape[:2]
    c = 1 if data.ndim == 2 else data.shape[2]
    kind = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(data, dtype=">u2").view(np.uint8).reshape(h, w * c * 2)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per row
    with open(path, "wb") as f:
        f.write(SIGNATURE)
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, kind, 0, 0, 0)))
        if icc_profile:
            f.write(_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))
        for key, value in (text or {}).items():
            f.write(_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")))
        f.write(_chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(_chunk(b"IEND", b""))


def header(path: str | os.PathLike) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) of a PNG; ``ValueError`` otherwise."""
    hdr = _header(path)
    if hdr is None:
        raise ValueError("not a PNG file")
    return hdr


def _header(path: str | os.PathLike) -> tuple[int, int, int, int, int] | None:
    """(width, height, bit depth, colour type, interlace) of a PNG, or None for other files."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        return None
    w, h, depth, kind, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return w, h, depth, kind, interlace


def is_png16_colour(path: str | os.PathLike) -> bool:
    """True for 16-bit RGB, RGBA or grey+alpha PNGs (the ones Pillow would truncate to 8 bits)."""
    try:
        hdr = _header(path)
    except OSError:
        return False
    return hdr is not None and hdr[2] == 16 and hdr[3] in (2, 4, 6)


def read_png16(path: str | os.PathLike, *, with_icc: bool = False) -> Any:
    """Read a 16-bit colour PNG as uint16 (H, W, 3) or (H, W, 4); grey+alpha becomes RGBA.

    With ``with_icc`` returns ``(array, ICC profile or None)``. The caller checks the declared
    size first (see the module docstring); the data is inflated to at most that size.
    """
    with open(path, "rb") as f:
        blob = f.read()
    w, h, depth, kind, interlace = header(path)
    if depth != 16 or kind not in _CHANNELS:
        raise ValueError(f"not a 16-bit PNG (bit depth {depth}, colour type {kind})")
    if interlace:
        raise ValueError("interlaced 16-bit PNG is not supported; save it without interlacing or as TIFF")
    if w == 0 or h == 0:
        raise ValueError(f"the header declares an empty image ({w}×{h})")
    pos, idat, icc = 8, [], None
    while pos + 8 <= len(blob):
        (n,) = struct.unpack(">I", blob[pos : pos + 4])
        kind_b = blob[pos + 4 : pos + 8]
        if kind_b == b"IDAT":
            idat.append(blob[pos + 8 : pos + 8 + n])
        elif kind_b == b"iCCP" and with_icc:
            icc = _icc(blob[pos + 8 : pos + 8 + n])
        elif kind_b == b"IEND":
            break
        pos += 12 + n
    c = _CHANNELS[kind]
    bpp, stride = 2 * c, 2 * c * w
    need = h * (stride + 1)
    try:
        raw = np.frombuffer(zlib.decompressobj().decompress(b"".join(idat), need), np.uint8)
    except zlib.error as exc:
        raise ValueError(f"corrupt or truncated PNG data ({exc})") from None
    if raw.size < need:
        raise ValueError("truncated PNG: image data ends early")
    rows = raw.reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(h):
        out[y] = prev = _unfilter(int(rows[y, 0]), rows[y, 1:], prev, bpp)
    arr = out.view(">u2").reshape(h, w, c).astype(np.uint16)
    if c == 2:  # grey + alpha
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)
    return (arr, icc) if with_icc else arr


def _icc(body: bytes) -> bytes | None:
    """The profile of an iCCP chunk (name, NUL, method 0, zlib data), bounded to 16 MB."""
    try:
        data = body[body.index(b"\0") + 2 :]
        d = zlib.decompressobj()
        out = d.decompress(data, 1 << 24)
        return out if out and not d.unconsumed_tail else None
    except (ValueError, zlib.error):
        return None


def _unfilter(ftype: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Undo one scanline's PNG filter (types 0–4, PNG spec section 9)."""
    if ftype == 0:
        return line.copy()
    if ftype == 2:
        return line + prev  # uint8 arithmetic wraps modulo 256 as the spec wants
    if ftype == 1:
        # Sub: running sum over pixels, separately for each byte position within a pixel
        n = line.size // bpp
        cols = line.reshape(n, bpp).astype(np.int64)
        return (np.cumsum(cols, axis=0) % 256).astype(np.uint8).reshape(-1)
    if ftype not in (3, 4):
        raise ValueError(f"corrupt PNG: unknown filter type {ftype}")
    cur = line.astype(np.int64)
    up = prev.astype(np.int64)
    out = np.zeros_like(cur)
    for x0 in range(0, cur.size, bpp):
        x1 = x0 + bpp
        a = out[x0 - bpp : x0] if x0 else np.zeros(bpp, np.int64)
        b = up[x0:x1]
        if ftype == 3:
            pred = (a + b) // 2
        else:
            cc = up[x0 - bpp : x0] if x0 else np.zeros(bpp, np.int64)
            p = a + b - cc
            pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - cc)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, cc))
        out[x0:x1] = (cur[x0:x1] + pred) % 256
    return out.astype(np.uint8)
