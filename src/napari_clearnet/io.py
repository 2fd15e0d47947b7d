"""Input validation and normalisation, and safe image files.

Arrays from cameras, files and napari come in many dtypes, ranges and layouts; everything
downstream wants float32 RGB in [0, 1] frames. The rules live here, once, for the API, the CLI
and napari: what is not unambiguous is refused with a message that says what to pass, never
guessed.

Files are read as a viewer shows them (EXIF/TIFF orientation, MINISWHITE, palettes with
transparency, every frame of an animation or a multi-page TIFF), and every reader first checks
the size its header declares against :data:`MAX_PIXELS` and :data:`MAX_BYTES`, so a
decompression bomb or a corrupt size field is refused by name before anything is allocated. Any
failure of any decoder becomes a ``ValueError`` naming the file. Files are written atomically
(temporary name, then rename), never over an existing file unless asked.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _png16

__all__ = [
    "DEFAULT_JPEG_QUALITY",
    "IMAGE_SUFFIXES",
    "MAX_BYTES",
    "MAX_PIXELS",
    "ImageFile",
    "Layout",
    "as_array",
    "cli_spelling",
    "describe_layout",
    "fingerprint",
    "load_image",
    "pixel_range",
    "read_image",
    "read_tag",
    "remove_stale_parts",
    "to_float01",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: largest frame any reader decodes (Pillow's own default limit, about 13 400 × 13 400)
MAX_PIXELS = 178_956_970
#: largest decoded array (all frames and channels together), checked before decoding
MAX_BYTES = 2**31
#: JPEG quality when none is given: visually lossless, unlike Pillow's default of 75
DEFAULT_JPEG_QUALITY = 95
#: key under which outputs record the input they were made from (see :func:`fingerprint`)
TAG_KEY = "napari-clearnet"
#: how the partial files of :func:`write_image` are named: ``.<stem>.<random>.part.<ext>``
PART_PATTERN = re.compile(r"^\..+\.[a-z0-9_]{8}\.part\.[A-Za-z0-9]{1,5}$")


# ------------------------------------------------------------------------------ option spelling
_CLI = contextvars.ContextVar("napari_clearnet_cli_spelling", default=False)
#: how messages name an option: (Python API, command line)
_SPELLING = {
    "value_range": ("value_range=(low, high)", "--value-range LOW,HIGH"),
    "value_range_01": ("value_range=(0, 1)", "--value-range 0,1"),
    "value_range_255": ("value_range=(0, 255)", "--value-range 0,255"),
    "channel_axis": ("channel_axis", "--channel-axis"),
    "channel_axis_none": ("channel_axis=None", "--channel-axis none"),
    "overwrite": ("overwrite=True", "--overwrite"),
}


def option(key: str, axis: int | None = None) -> str:
    """How to name an option in a message: the Python argument, or the CLI flag inside
    :func:`cli_spelling` (``option("channel_axis", 0)`` -> ``channel_axis=0`` / ``--channel-axis 0``)."""
    api, cli = _SPELLING[key]
    if axis is not None:
        return f"{cli} {axis}" if _CLI.get() else f"{api}={axis}"
    return cli if _CLI.get() else api


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Messages raised inside name command-line flags instead of Python arguments."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


# ------------------------------------------------------------------------------------- arrays
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


def as_array(image: Any) -> Any:
    """The array behind ``image``, or a ``ValueError`` naming its type.

    numpy and dask arrays pass unchanged (dask stays lazy); torch tensors are detached and
    copied to the CPU; PIL images are read as :func:`read_image` reads files; anything else with
    ``__array__`` (zarr, h5py, xarray, nested lists of numbers) goes through ``numpy.asarray``.
    """
    if isinstance(image, np.ndarray):
        return image
    mod = type(image).__module__.split(".")[0]
    if mod == "dask":
        return image
    if mod == "torch":
        import torch

        if isinstance(image, torch.Tensor):
            t = image.detach().cpu()
            if t.dtype in (torch.bfloat16, torch.float16):
                t = t.float()
            if t.is_complex():
                raise ValueError(f"unsupported pixel dtype {t.dtype}; accepted: bool, integer or float")
            return t.numpy()
    if mod == "PIL":
        from PIL import Image

        if isinstance(image, Image.Image):
            return _pil_frame(image)
    if isinstance(image, str | bytes | os.PathLike):
        raise ValueError(
            f"image must be an array, got a {type(image).__name__}; read files with "
            "napari_clearnet.io.read_image(path) first"
        )
    if hasattr(image, "__array__") or isinstance(image, list | tuple):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", np.exceptions.VisibleDeprecationWarning)
                arr = np.asarray(image)
        except (ValueError, TypeError, np.exceptions.VisibleDeprecationWarning) as exc:
            raise ValueError(f"cannot read the {type(image).__name__} as an array: {exc}") from None
        if arr.dtype == object:
            raise ValueError(
                f"the {type(image).__name__} is not a regular array of numbers (ragged rows or "
                "objects); accepted: numpy, dask, torch, PIL images or nested lists of numbers"
            )
        return arr
    raise ValueError(
        f"image must be an array (numpy, dask, torch tensor, PIL image or nested lists of numbers), "
        f"got {type(image).__name__}"
    )


def _trailing_is_ambiguous(shape: tuple[int, ...]) -> bool:
    """A last axis of 2 or 5+ that is smaller than the two before it looks like channels
    (grey+alpha, multispectral) as much as like the width of tiny frames."""
    return len(shape) >= 3 and shape[-1] not in (1, 3, 4) and shape[-1] < min(shape[-3], shape[-2])


def describe_layout(shape: tuple[int, ...], channel_axis: int | str | None = "auto") -> Layout:
    """Decide how to read an array of ``shape``.

    ``"auto"``: 2-D is grey; a last axis of 1, 3 or 4 is channels (grey, RGB, RGBA); otherwise the
    array is a stack of grey frames. Shapes that read as well one way as another are refused, with
    the ``channel_axis`` to pass: 3 or 4 before the last two axes (``(3, H, W)``, ``(T, 3, H, W)``:
    channel-first colour or grey frames?) and a last axis of 2 or 5+ smaller than H and W
    (``(H, W, 2)``: grey+alpha or 64 frames 2 pixels wide?).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"image must have at least 2 dimensions (H, W), got shape {shape}")
    if any(s == 0 for s in shape):
        raise ValueError(f"image has an empty dimension: shape {shape}")
    if isinstance(channel_axis, str) and channel_axis == "auto":
        if len(shape) == 2:
            channel_axis = None
        elif shape[-1] in (1, 3, 4):
            channel_axis = len(shape) - 1
        elif shape[-3] in (3, 4) and min(shape[-2:]) > 4:
            ax = len(shape) - 3
            raise ValueError(
                f"shape {shape} is ambiguous: pass {option('channel_axis', ax)} for channel-first colour "
                f"or {option('channel_axis_none')} for a stack of grey frames"
            )
        elif _trailing_is_ambiguous(shape):
            raise ValueError(
                f"shape {shape} is ambiguous: its last axis ({shape[-1]}) looks like channels, which "
                f"need 1 (grey), 3 (RGB) or 4 (RGBA); pass {option('channel_axis_none')} if it is a "
                "stack of grey frames, or convert the channels first"
            )
        else:
            channel_axis = None
    if channel_axis is None:
        return Layout(shape[:-2], shape[-2], shape[-1], 0, None)
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, int | np.integer):
        raise ValueError(f"channel_axis must be an int, None or 'auto', got {channel_axis!r}")
    n = len(shape)
    if not -n <= int(channel_axis) < n:
        raise ValueError(
            f"{option('channel_axis')} {channel_axis} is out of range for shape {shape} ({n} axes)"
        )
    ax = int(channel_axis) % n
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


def _native(a: np.ndarray) -> np.ndarray:
    """Big-endian data (FITS, raw buffers) in native byte order, so ``>u2`` counts as uint16."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind == "b" or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
        return
    raise ValueError(f"unsupported pixel dtype {dtype}; accepted: bool, integer or float arrays")


def check_value_range(value_range: Any, name: str = "value_range") -> tuple[float, float]:
    """``(low, high)``: two finite numbers with high > low."""
    try:
        if isinstance(value_range, str | bytes):
            raise TypeError
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (low, high), got {value_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"{name} must be two finite numbers with high > low, got {value_range!r}")
    return lo, hi


def _min_max_bad(a: Any) -> tuple[float, float, int]:
    """(min, max, count of NaN/inf) in one pass; dask arrays are read once, chunk by chunk."""
    if _lazy(a):
        import dask
        import dask.array as da

        if np.issubdtype(a.dtype, np.floating):
            lo, hi, n_bad = dask.compute(da.nanmin(a), da.nanmax(a), (~da.isfinite(a)).sum())
        else:
            lo, hi, n_bad = (*dask.compute(a.min(), a.max()), 0)
        return float(lo), float(hi), int(n_bad)
    a = _native(np.asarray(a))
    if np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        n_bad = int(a.size - np.count_nonzero(finite))
        if n_bad:
            if n_bad == a.size:
                return float("nan"), float("nan"), n_bad
            return float(a[finite].min()), float(a[finite].max()), n_bad
    return float(a.min()), float(a.max()), 0


def pixel_range(
    image: Any, layout: Layout | None = None, value_range: Any = None
) -> tuple[float, float]:
    """The ``(low, high)`` that maps the image's colour values to [0, 1], decided once for the
    whole array (every frame, alpha excluded) so a stack never gets two scales.

    uint8 and uint16 (either byte order) use their full range; bool is {0, 1}; floats in [0, 1]
    are used as they are; other integers and floats are read as 8-bit (max ≤ 255) or 16-bit
    (max ≤ 65535) data. Refused with a message saying what to pass: NaN/inf pixels, negative
    values, values beyond 16 bits, and floats just above 1 (max in (1, 2]: [0, 1] data that
    overshot, or 8-bit data? Dividing by 255 would make it black).
    """
    if value_range is not None:
        return check_value_range(value_range)
    dtype = np.dtype(image.dtype)
    _check_dtype(dtype)
    if dtype.kind == "b":
        return 0.0, 1.0
    if dtype.kind == "u" and dtype.itemsize in (1, 2):
        return 0.0, 255.0 if dtype.itemsize == 1 else 65535.0
    colour = image
    if layout is not None and layout.channels == 4:
        if layout.channel_axis is not None and layout.channel_axis != len(np.shape(image)) - 1:
            colour = _moveaxis(image, layout.channel_axis, -1)
        colour = colour[..., :3]
    if int(np.prod(np.shape(colour))) == 0:
        return 0.0, 1.0
    return _decide(*_min_max_bad(colour), dtype)


def _decide(lo: float, hi: float, bad: int, dtype: np.dtype) -> tuple[float, float]:
    """The range rule of :func:`pixel_range`, from the colour values' min, max and NaN count."""
    if bad:
        raise ValueError(
            f"image has {bad} NaN or infinite pixel values; replace them first "
            "(for example numpy.nan_to_num(image))"
        )
    if lo < -1e-3:
        raise ValueError(
            f"image has negative values (min {lo:g}); pass {option('value_range')} to rescale it"
        )
    if hi <= 1.0 + 1e-3:
        return 0.0, 1.0
    if np.issubdtype(dtype, np.floating) and hi <= 2.0:
        raise ValueError(
            f"float image values reach {hi:g}, just above 1: if it is [0, 1] data that overshot "
            f"(resampling, sharpening), pass {option('value_range_01')} to clip it; if it is 8-bit "
            f"data, pass {option('value_range_255')}"
        )
    if hi <= 255.0:
        return 0.0, 255.0
    if hi <= 65535.0:
        return 0.0, 65535.0
    raise ValueError(f"image values reach {hi:g}, beyond 16-bit range; pass {option('value_range')}")


def _lazy(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "dask"


class FrameScaler:
    """Frames of one array to float32 [0, 1], all on the one range of the whole array.

    In-memory arrays get their range from every frame up front (:func:`pixel_range`). Lazy
    (dask) arrays are read frame by frame, never all at once: their range is decided on the
    first frames read, and every later frame is held to it: a frame that would need another
    range (a dark clip that brightens past 8 bits, a negative value) is refused by its index
    rather than put on a scale of its own.
    """

    def __init__(self, image: Any, layout: Layout, value_range: Any = None) -> None:
        self.layout = layout
        self.dtype = np.dtype(image.dtype)
        _check_dtype(self.dtype)
        fixed = value_range is not None or self.dtype.kind == "b" or (
            self.dtype.kind == "u" and self.dtype.itemsize in (1, 2))
        self.range: tuple[float, float] | None = None
        self.lazy = not fixed and _lazy(image)
        if not self.lazy:
            self.range = pixel_range(image, layout, value_range)
        self._lo, self._hi, self._bad = np.inf, -np.inf, 0

    def scale(self, frames: list[Any], first: int = 0) -> list[np.ndarray]:
        """``frames`` (channels last, as numpy or lazy blocks) in [0, 1]; ``first`` is the index
        of the first one in the stack, for messages."""
        arrs = [_native(np.asarray(f)) for f in frames]
        if self.lazy:
            for k, a in enumerate(arrs):
                colour = a[..., :3] if self.layout.channels == 4 else a
                if colour.size:
                    lo, hi, bad = _min_max_bad(colour)
                    self._bad += bad
                    if bad < colour.size:
                        self._lo, self._hi = min(self._lo, lo), max(self._hi, hi)
                try:
                    now = _decide(self._lo, self._hi, self._bad, self.dtype)
                except ValueError as exc:
                    raise ValueError(f"frame {first + k}: {exc}") from None
                if self.range is None:
                    self.range = now
                elif now != self.range:
                    raise ValueError(
                        f"frame {first + k} reaches {self._hi:g}, beyond the range {self.range} the "
                        f"frames before it were read with (a lazy array is read as it goes); pass "
                        f"{option('value_range')} for the whole stack"
                    )
        assert self.range is not None or not arrs
        return [to_float01(a, self.range) for a in arrs]


def _moveaxis(arr: Any, src: int, dst: int) -> Any:
    if type(arr).__module__.split(".")[0] == "dask":
        import dask.array as da

        return da.moveaxis(arr, src, dst)
    return np.moveaxis(np.asarray(arr), src, dst)


def to_float01(array: Any, value_range: Any = None) -> np.ndarray:
    """Convert pixel values to float32 in [0, 1] without touching the input.

    ``value_range`` (low, high) maps low to 0 and high to 1 (values outside are clipped), e.g.
    ``(0, 4095)`` for a 12-bit camera; without it the range is decided from the whole array by
    :func:`pixel_range` (uint8/uint16 full range, floats in [0, 1] as they are, …).
    """
    a = _native(np.asarray(array))
    _check_dtype(a.dtype)
    if a.dtype == bool:
        return a.astype(np.float32)
    if value_range is None:
        value_range = pixel_range(a)
    lo, hi = check_value_range(value_range)
    if lo == 0.0 and a.dtype.kind == "u" and a.dtype.itemsize in (1, 2) and hi == (255.0, 65535.0)[
            a.dtype.itemsize - 1]:
        f = a.astype(np.float32)
        f /= hi  # in place: no second full-size copy
        return f
    # floats are scaled in float32, other integers in float64 (exact for 32-bit values)
    work = np.float32 if np.issubdtype(a.dtype, np.floating) else np.float64
    if lo == 0.0 and hi == 1.0:
        out = a.astype(work, copy=True)
    elif lo == 0.0:
        out = a.astype(work) / work(hi)
    else:
        out = (a.astype(work) - work(lo)) / work(hi - lo)
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise ValueError(
            f"image has {bad} NaN or infinite pixel values; replace them first "
            "(for example numpy.nan_to_num(image))"
        )
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


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


class ImageTooLarge(ValueError):
    """The header declares more pixels or bytes than the limits allow."""


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


def load_image(path: str | os.PathLike) -> ImageFile:
    """Read an image file as a viewer shows it, with its ICC profile; 16-bit depth is kept.

    Every frame is read (animated GIF/WebP/PNG, multi-page and multi-series TIFF) as a stack
    ``(T, H, W[, C])`` when the frames have one size; otherwise the file is refused. Any failure
    (corrupt data, a declared size over the limits, not enough memory, an unexpected decoder
    error) is a ``ValueError`` that starts with ``cannot read <path>:``.
    """
    path = Path(path)
    _check_regular_file(path)
    try:
        if _png16.is_png16_colour(path):  # Pillow would silently drop 8 of the 16 bits
            return _read_png16(path)
        if _is_tiff(path):
            return _read_tiff(path)
        return _read_pillow(path)
    except MemoryError:
        raise ValueError(f"cannot read {path}: not enough memory to decode it") from None
    except ValueError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # decoders raise many types for hostile files: never a traceback
        raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an array (see :func:`load_image`)."""
    return load_image(path).array


def _read_png16(path: Path) -> ImageFile:
    w, h, _, _, _ = _png16.header(path)
    check_size(1, h, w, 4, 2)
    arr, icc = _png16.read_png16(path, with_icc=True)
    return ImageFile(arr, "PNG", icc, True)


_ORIENT = {  # TIFF/EXIF orientation -> numpy steps on (y, x) to display it
    2: ("flip_x",), 3: ("flip_y", "flip_x"), 4: ("flip_y",), 5: ("transpose",),
    6: ("transpose", "flip_x"), 7: ("transpose", "flip_y", "flip_x"), 8: ("transpose", "flip_y"),
}


def _orient(arr: np.ndarray, orientation: int, y: int, x: int) -> np.ndarray:
    for step in _ORIENT.get(orientation, ()):
        arr = np.swapaxes(arr, y, x) if step == "transpose" else np.flip(arr, y if step == "flip_y" else x)
    return arr


def _read_tiff(path: Path) -> ImageFile:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        series = [s for s in tf.series if not getattr(s.pages[0], "is_reduced", False)] or list(tf.series)
        if not series:
            raise ValueError("no image data (corrupt or empty TIFF)")
        page = series[0].pages[0]
        photometric = int(getattr(page, "photometric", 1))
        if photometric == 5 or (photometric == 6 and int(getattr(page, "compression", 1)) != 7):
            return _read_pillow(path)  # CMYK, uncompressed YCbCr: Pillow converts them to RGB
        shapes = {tuple(s.shape) for s in series}
        if len(shapes) > 1:
            sizes = ", ".join("×".join(map(str, s.shape)) for s in series[:6])
            raise ValueError(
                f"holds {len(series)} images of different sizes ({sizes}); save each as its own file"
            )
        s0 = series[0]
        axes = s0.axes
        if "Y" not in axes or "X" not in axes:
            raise ValueError(f"no image plane in its axes {axes!r}")
        h, w = s0.shape[axes.index("Y")], s0.shape[axes.index("X")]
        itemsize = np.dtype(s0.dtype).itemsize if s0.dtype is not None else 8
        n_values = int(np.prod(s0.shape)) * len(series)
        check_size(max(1, n_values // max(1, h * w)), h, w, 1, itemsize)
        try:
            arrs = [s.asarray() for s in series]
        except ValueError as exc:
            if "imagecodecs" in str(exc):  # a codec tifffile lacks: Pillow may have it
                return _read_pillow(path)
            raise
        arr = np.asarray(arrs[0] if len(arrs) == 1 else np.stack(arrs))
        if len(arrs) > 1:
            axes = "Q" + axes
        orientation = int(page.tags[274].value) if 274 in page.tags else 1
        icc = page.tags[34675].value if 34675 in page.tags else None
        lossless = int(getattr(page, "compression", 1)) not in (6, 7, 34892)  # old JPEG, JPEG, lossy
        colormap = getattr(page, "colormap", None)
    if arr.size == 0 or arr.ndim < 2:  # tifffile returns an empty array for some corrupt files
        raise ValueError("no image data (corrupt or empty TIFF)")
    if "S" in axes and axes.index("S") != len(axes) - 1:  # planar RGB: samples last
        arr = np.moveaxis(arr, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    if photometric == 0:  # MINISWHITE: 0 is white
        arr = _invert(arr, int(getattr(page, "bitspersample", arr.dtype.itemsize * 8)))
    elif photometric == 3 and colormap is not None and np.issubdtype(arr.dtype, np.integer):
        cmap = np.asarray(colormap)
        if arr.max(initial=0) >= cmap.shape[1]:
            raise ValueError("palette index beyond the colour map")
        arr = np.moveaxis(cmap[:, arr], 0, -1)  # palette: the colours a viewer shows
        axes = axes + "S"
    if arr.ndim >= 3 and "S" in axes and arr.shape[-1] == 2:  # grey + alpha -> RGBA, as for PNG
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)
    y, x = axes.index("Y"), axes.index("X")
    arr = _orient(arr, orientation, y, x)
    return ImageFile(np.ascontiguousarray(arr), "TIFF", icc, lossless)


def _invert(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == bool:
        return ~arr
    if arr.dtype.kind == "u":
        top = (1 << bits) - 1 if 0 < bits < arr.dtype.itemsize * 8 else np.iinfo(arr.dtype).max
        return (top - arr).astype(arr.dtype)
    raise ValueError(f"MINISWHITE TIFF with {arr.dtype} samples is not supported; save it as MINISBLACK")


def _webp_lossless(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return b"VP8L" in head and b"VP8 " not in head


def _pil_frame(im: Any) -> np.ndarray:
    """One Pillow frame as a viewer shows it: orientation applied, palettes and exotic modes
    converted (transparency kept as alpha), 16-bit grey kept as uint16."""
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = _native(np.asarray(im))
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:
            return arr.astype(np.uint16)
        return arr
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32)
    transparent = bool(getattr(im, "has_transparency_data", "transparency" in im.info))
    if im.mode == "1":
        im = im.convert("L")
    if im.mode in ("L", "RGB") and transparent and "transparency" in im.info:
        im = im.convert("RGBA")
    elif im.mode not in ("L", "RGB", "RGBA"):
        im = im.convert("RGBA" if transparent or "A" in im.getbands() else "RGB")
    return np.asarray(im)


def _read_pillow(path: Path) -> ImageFile:
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
            frames.append(_pil_frame(im))
    if len({f.shape for f in frames}) > 1:
        raise ValueError(f"its {n} frames differ in size; save each as its own file")
    arr = frames[0] if n == 1 else np.stack(frames)
    return ImageFile(arr, fmt, icc, lossless)


# ----------------------------------------------------------------------------------- provenance
def fingerprint(path: str | os.PathLike) -> str:
    """A short digest of a file's size and first and last 64 KiB: outputs carry their input's, so
    a rerun can tell an output made from this input from one made from another of the same name."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(str(size).encode())
        h.update(f.read(1 << 16))
        if size > 1 << 17:
            f.seek(-(1 << 16), os.SEEK_END)
        h.update(f.read(1 << 16))
    return h.hexdigest()[:16]


_TAG_RE = re.compile(rb"napari-clearnet[\x00 ]source=([0-9a-f]{16})")


def read_tag(path: str | os.PathLike) -> str | None:
    """The input fingerprint an output of ours records (None: none, or not readable)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            import json

            value = json.loads(path.read_text(encoding="utf-8")).get("source_fingerprint")
            return value if isinstance(value, str) else None
        with open(path, "rb") as f:  # we write it near the start (WebP: at the end): 16 KiB to read
            head = f.read(1 << 13)
            f.seek(max(len(head), os.fstat(f.fileno()).st_size - (1 << 13)))
            head += f.read(1 << 13)
    except (OSError, ValueError, AttributeError):
        return None
    m = _TAG_RE.search(head)
    return m.group(1).decode() if m else None


def _tag_text(source_fingerprint: str) -> str:
    return f"{TAG_KEY} source={source_fingerprint}"


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


def _short_stem(stem: str, limit: int = 96) -> str:
    """The stem cut to ``limit`` bytes for a temporary name (never the part that is too long)."""
    while len(os.fsencode(stem)) > limit:
        stem = stem[: max(1, len(stem) * limit // len(os.fsencode(stem)) - 1)]
    return stem or "x"


@contextlib.contextmanager
def atomic_path(path: Path, overwrite: bool) -> Iterator[str]:
    """A temporary name beside ``path`` to write to; renamed to ``path`` when the block ends
    without an error, removed otherwise (Ctrl-C and terminating signals included).

    The temporary file is locked while it lives, so :func:`remove_stale_parts` in another run
    never removes a file that is being written.
    """
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {option('overwrite')} to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{_short_stem(path.stem)}.", suffix=f".part{path.suffix}",
                               dir=path.parent)
    try:
        _lock(fd)
        _umask_mode(tmp)
        yield tmp
        if not overwrite and path.exists():
            raise FileExistsError(f"{path} appeared while writing; not replaced")
        os.replace(tmp, path)
    finally:
        os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: stale files are recognised by age instead
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale_parts(folder: str | os.PathLike, max_age_s: float = 3600.0) -> list[Path]:
    """Remove partial files ``.<stem>.<random>.part.<ext>`` that an interrupted or killed run left
    in ``folder``; files another run is still writing (locked, or younger than ``max_age_s``
    where locks are not available) are left alone. Returns the files removed."""
    import time

    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not PART_PATTERN.match(e.name) or not e.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(e.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                import fcntl  # noqa: F401
            except ImportError:
                if time.time() - os.fstat(fd).st_mtime < max_age_s:
                    continue
            else:
                if not _lock(fd):
                    continue  # being written right now
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    bit_depth: int = 8,
    overwrite: bool = False,
    quality: int | None = None,
    icc_profile: bytes | None = None,
    source_fingerprint: str | None = None,
) -> Path:
    """Write a float image in [0, 1] atomically; refuse to replace an existing file unless asked.

    ``bit_depth`` 16 writes 16-bit PNG or TIFF. ``quality`` (1-100) sets JPEG and WebP
    compression: JPEG defaults to :data:`DEFAULT_JPEG_QUALITY`, WebP is lossless unless a quality
    is given. ``icc_profile`` is embedded where the format can hold it and it fits the colours;
    ``source_fingerprint`` records the input (see :func:`fingerprint`). The file appears under its
    final name only when complete, so an interrupted batch never leaves a half-written output.
    """
    path = Path(path)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)
                                or not 1 <= quality <= 100):
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}")
    img = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
    suffix = path.suffix.lower()
    if bit_depth == 16:
        if suffix not in (".png", ".tif", ".tiff"):
            raise ValueError(f"16-bit output needs .png or .tif, not {suffix!r}")
        data = np.round(img * 65535.0).astype(np.uint16)
    else:
        data = np.round(img * 255.0).astype(np.uint8)
    channels = data.shape[-1] if data.ndim == 3 and data.shape[-1] in (1, 3, 4) else 0
    icc = _icc_fits(icc_profile, channels)
    tag = _tag_text(source_fingerprint) if source_fingerprint else None
    with atomic_path(path, overwrite) as tmp:
        _encode(tmp, data, suffix, quality, icc, tag)
    return path


def _encode(tmp: str, data: np.ndarray, suffix: str, quality: int | None, icc: bytes | None,
            tag: str | None) -> None:
    """Write ``data`` (uint8/uint16) to ``tmp`` in the format of ``suffix``."""
    if suffix in (".tif", ".tiff"):
        import tifffile

        kw: dict[str, Any] = {"software": tag or TAG_KEY}
        if icc is not None:
            kw["iccprofile"] = icc
        if data.ndim >= 3 and data.shape[-1] in (3, 4):
            kw["photometric"] = "rgb"
        tifffile.imwrite(tmp, data, **kw)
        return
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    text = tag[len(TAG_KEY) + 1:] if tag else None
    if data.dtype == np.uint16 and data.ndim == 3:
        # Pillow (and imageio through it) has no 16-bit RGB mode
        _png16.write_png16(tmp, data, icc_profile=icc, text={TAG_KEY: text} if text else None)
        return
    from PIL import Image, PngImagePlugin

    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(suffix)
    fmt = fmt or Image.registered_extensions().get(suffix, "PNG")
    kw = {}
    if icc is not None and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kw["icc_profile"] = icc
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
    Image.fromarray(data).save(tmp, format=fmt, **kw)


def _umask_mode(path: str) -> None:
    """Give a new file the permissions a normal new file would have (mkstemp uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
