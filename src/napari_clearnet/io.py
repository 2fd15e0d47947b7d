"""Input validation and normalisation, and safe image files.

Arrays from cameras, files and napari come in many dtypes, ranges and layouts; everything
downstream wants float32 RGB in [0, 1] frames. Files are read with EXIF orientation applied and
written atomically (temporary name, then rename), never over an existing file unless asked.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _png16

__all__ = [
    "IMAGE_SUFFIXES",
    "Layout",
    "describe_layout",
    "read_image",
    "to_float01",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


@dataclass(frozen=True)
class Layout:
    """How an array maps to frames of RGB: ``frames_shape`` (leading dims), ``channels`` (0 = none,
    i.e. grey without a channel axis; 1 grey; 3 RGB; 4 RGBA) and the channel axis moved last."""

    frames_shape: tuple[int, ...]
    height: int
    width: int
    channels: int
    channel_axis: int | None

    @property
    def n_frames(self) -> int:
        return int(np.prod(self.frames_shape)) if self.frames_shape else 1


def describe_layout(shape: tuple[int, ...], channel_axis: int | str | None = "auto") -> Layout:
    """Decide how to read an array of ``shape``.

    ``"auto"``: 2-D is grey; a last axis of 1, 3 or 4 is channels (grey, RGB, RGBA); otherwise the
    array is a stack of grey frames. A 3-D array with 3 or 4 in front only (``(3, H, W)``) is
    ambiguous and refused: pass ``channel_axis=0`` for channel-first colour or ``None`` for frames.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"image must have at least 2 dimensions (H, W), got shape {shape}")
    if any(s == 0 for s in shape):
        raise ValueError(f"image has an empty dimension: shape {shape}")
    if channel_axis == "auto":
        if len(shape) == 2:
            channel_axis = None
        elif shape[-1] in (1, 3, 4):
            channel_axis = len(shape) - 1
        elif len(shape) == 3 and shape[0] in (3, 4) and min(shape[1:]) > 4:
            raise ValueError(
                f"shape {shape} is ambiguous: pass channel_axis=0 for a channel-first colour "
                "image or channel_axis=None for a stack of grey frames"
            )
        else:
            channel_axis = None
    if channel_axis is None:
        return Layout(shape[:-2], shape[-2], shape[-1], 0, None)
    if not isinstance(channel_axis, int | np.integer):
        raise ValueError(f"channel_axis must be an int, None or 'auto', got {channel_axis!r}")
    ax = int(channel_axis) % len(shape)
    c = shape[ax]
    if c not in (1, 3, 4):
        raise ValueError(
            f"channel axis {channel_axis} of shape {shape} has {c} channels; "
            "accepted: 1 (grey), 3 (RGB) or 4 (RGBA)"
        )
    rest = shape[:ax] + shape[ax + 1 :]
    if len(rest) < 2:
        raise ValueError(f"shape {shape} has no (H, W) besides the channel axis")
    return Layout(rest[:-2], rest[-2], rest[-1], c, ax)


def to_float01(
    array: Any, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Convert pixel values to float32 in [0, 1] without touching the input.

    uint8 and uint16 use their full range; bool maps to {0, 1}; other integers and floats
    outside [0, 1] are read as 8-bit (max ≤ 255) or 16-bit (max ≤ 65535) data. ``value_range``
    (low, high) overrides the guess, e.g. ``(0, 4095)`` for a 12-bit camera. NaN/Inf pixels and
    negative values are refused with a message saying how to fix them.
    """
    a = np.asarray(array)
    if a.dtype == bool:
        return a.astype(np.float32)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(
            f"unsupported pixel dtype {a.dtype}; accepted: bool, integer or float arrays"
        )
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
        out = (a.astype(np.float32) - lo) / (hi - lo)
        return _finite_clip(out)
    if a.dtype in (np.uint8, np.uint16):
        f = a.astype(np.float32)
        f /= 255.0 if a.dtype == np.uint8 else 65535.0  # in place: no second full-size copy
        return f
    if a.size == 0:
        return a.astype(np.float32)
    f = a.astype(np.float32, copy=True) if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(f).all():
        bad = int((~np.isfinite(f)).sum())
        raise ValueError(
            f"image has {bad} NaN or infinite pixel values; replace them first "
            "(for example numpy.nan_to_num(image)) "
        )
    lo, hi = float(f.min()), float(f.max())
    if lo < -1e-3:
        raise ValueError(
            f"image has negative values (min {lo:g}); pass value_range=(low, high) to rescale it"
        )
    if hi <= 1.0 + 1e-3:
        scale = 1.0
    elif hi <= 255.0:
        scale = 255.0
    elif hi <= 65535.0:
        scale = 65535.0
    else:
        raise ValueError(
            f"image values reach {hi:g}, beyond 16-bit range; pass value_range=(low, high)"
        )
    if scale == 1.0 and lo >= 0.0 and hi <= 1.0 and f.dtype == np.float32:
        return f  # already a private float32 copy in [0, 1]
    return np.clip(f / scale, 0.0, 1.0).astype(np.float32, copy=False)


def _finite_clip(out: np.ndarray) -> np.ndarray:
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise ValueError(f"image has {bad} NaN or infinite pixel values; replace them first")
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an array (EXIF orientation applied), keeping 16-bit depth."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if _png16.is_png16_colour(path):  # Pillow would silently drop 8 of the 16 bits
        try:
            return _png16.read_png16(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            arr = np.asarray(tifffile.imread(path))
        except Exception as exc:  # tifffile raises many types for bad files
            raise ValueError(f"cannot read {path}: {exc}") from None
        if arr.size == 0 or arr.ndim < 2:  # tifffile returns an empty array for some corrupt files
            raise ValueError(f"cannot read {path}: no image data (corrupt or empty TIFF)")
        return arr
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im)
                return arr.astype(np.uint16) if arr.max() <= 65535 else arr
            if im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def write_image(
    path: str | os.PathLike, image: np.ndarray, *, bit_depth: int = 8, overwrite: bool = False
) -> Path:
    """Write a float image in [0, 1] atomically; refuse to replace an existing file unless asked.

    ``bit_depth`` 16 writes 16-bit PNG or TIFF. The file appears under its final name only when
    complete, so an interrupted batch never leaves a half-written output behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    img = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
    suffix = path.suffix.lower()
    if bit_depth == 16:
        if suffix not in (".png", ".tif", ".tiff"):
            raise ValueError(f"16-bit output needs .png or .tif, not {suffix!r}")
        data = np.round(img * 65535.0).astype(np.uint16)
    else:
        data = np.round(img * 255.0).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    _umask_mode(tmp)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, data)
        else:
            from PIL import Image

            if data.ndim == 3 and data.shape[-1] == 1:
                data = data[..., 0]
            if data.dtype == np.uint16 and data.ndim == 3:
                # Pillow (and imageio through it) has no 16-bit RGB mode
                from ._png16 import write_png16

                write_png16(tmp, data)
            else:
                fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(suffix)
                fmt = fmt or Image.registered_extensions().get(suffix, "PNG")
                Image.fromarray(data).save(tmp, format=fmt)
        if not overwrite and path.exists():
            raise FileExistsError(f"{path} appeared while writing; not replaced")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask_mode(path: str) -> None:
    """Give a temporary file the permissions a normal new file would have (mkstemp uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
