"""Arrays in, frames out, and back: the one place that decides how an array is read.

Arrays from cameras, files and napari come in many dtypes, ranges and layouts; the engine wants
float32 RGB frames in [0, 1]. The rules live here, once, for the API, the CLI and napari: what is
not unambiguous is refused with a message that says what to pass, never guessed.
:func:`describe_layout` decides the layout, :func:`pixel_range` the value range (once per array),
:func:`frames` and :class:`FrameScaler` give the frames, :func:`frame_rgb` makes one RGB, and
:func:`restore_layout` gives a result the input's layout again (grey stays grey, alpha comes back).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._util.validate import option
from .values import check_dtype, check_value_range, decide_range, is_lazy, min_max, min_max_bad, native

__all__ = [
    "FrameScaler",
    "Layout",
    "as_array",
    "check_value_range",
    "describe_layout",
    "frame",
    "frame_rgb",
    "frames",
    "pixel_range",
    "restore_layout",
    "to_float01",
]


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
            return pil_frame(image)
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


def pil_frame(im: Any) -> np.ndarray:
    """One Pillow frame as a viewer shows it: orientation applied, palettes and exotic modes
    converted (transparency kept as alpha), 16-bit grey kept as uint16."""
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = native(np.asarray(im))
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


def pixel_range(
    image: Any, layout: Layout | None = None, value_range: Any = None
) -> tuple[float, float]:
    """The ``(low, high)`` that maps the image's colour values to [0, 1], decided once for the
    whole array (every frame, alpha excluded) so a stack never gets two scales.

    uint8 and uint16 (either byte order) use their full range; bool is {0, 1}; floats in [0, 1]
    are used as they are; other integers and floats are read as 8-bit (max ≤ 255) or 16-bit
    (max ≤ 65535) data when that reading leaves the brightest value at least
    :data:`MIN_BRIGHTEST` of the range. Refused with a message saying what to pass: NaN/inf
    pixels, negative values, values beyond 16 bits, floats just above 1 (max in (1, 2]: [0, 1]
    data that overshot, or 8-bit data?) and any other guess that would make the image nearly
    black (float data up to 2.5 from a raw converter, 12-bit data in int32).
    """
    if value_range is not None:
        return check_value_range(value_range)
    dtype = np.dtype(image.dtype)
    check_dtype(dtype)
    if dtype.kind == "b":
        return 0.0, 1.0
    if dtype.kind == "u" and dtype.itemsize in (1, 2):
        return 0.0, 255.0 if dtype.itemsize == 1 else 65535.0
    colour = image
    if layout is not None and layout.channels == 4:
        colour = channels_last(image, layout)[..., :3]
    if int(np.prod(np.shape(colour))) == 0:
        return 0.0, 1.0
    return decide_range(*min_max_bad(colour), dtype)



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
        check_dtype(self.dtype)
        fixed = value_range is not None or self.dtype.kind == "b" or (
            self.dtype.kind == "u" and self.dtype.itemsize in (1, 2))
        self.range: tuple[float, float] | None = None
        self.lazy = not fixed and is_lazy(image)
        if not self.lazy:
            self.range = pixel_range(image, layout, value_range)
        self._lo, self._hi, self._bad = np.inf, -np.inf, 0

    def scale(self, frames: list[Any], first: int = 0) -> list[np.ndarray]:
        """``frames`` (channels last, as numpy or lazy blocks) in [0, 1]; ``first`` is the index
        of the first one in the stack, for messages."""
        arrs = [native(np.asarray(f)) for f in frames]
        if self.lazy:
            for k, a in enumerate(arrs):
                colour = a[..., :3] if self.layout.channels == 4 else a
                if colour.size:
                    lo, hi, bad = min_max_bad(colour)
                    self._bad += bad
                    if bad < colour.size:
                        self._lo, self._hi = min(self._lo, lo), max(self._hi, hi)
                try:
                    now = decide_range(self._lo, self._hi, self._bad, self.dtype)
                except ValueError as exc:
                    raise ValueError(f"frame {first + k}: {exc}") from None
                if self.range is None:
                    self.range = now
                elif now != self.range:
                    raise ValueError(
                        f"frame {first + k} reaches {self._hi:g}, beyond the range {self.range} the "
                        f"frames before it were read with (a lazy array is read as it goes); pass "
                        f"{option('value_range_hint')} for the whole stack"
                    )
        assert self.range is not None or not arrs
        # the engine only reads its frames: float32 frames in [0, 1] are not copied
        return [to_float01(a, self.range, copy=False) for a in arrs]


def _moveaxis(arr: Any, src: int, dst: int) -> Any:
    if is_lazy(arr):
        import dask.array as da

        return da.moveaxis(arr, src, dst)
    return np.moveaxis(np.asarray(arr), src, dst)


def channels_last(image: Any, layout: Layout) -> Any:
    """``image`` with its channel axis (if any) moved last; lazy arrays stay lazy."""
    if layout.channel_axis is not None and layout.channel_axis != len(np.shape(image)) - 1:
        return _moveaxis(image, layout.channel_axis, -1)
    return image


def frames(image: Any, layout: Layout) -> Any:
    """The array as ``(n_frames, H, W[, C])`` with the channels last (a view where possible; lazy
    arrays stay lazy, so a frame is read when it is indexed)."""
    tail = (layout.height, layout.width) + ((layout.channels,) if layout.channels else ())
    return channels_last(image, layout).reshape((layout.n_frames, *tail))


def frame(image: Any, index: int = 0, layout: Layout | None = None, value_range: Any = None) -> np.ndarray:
    """Frame ``index`` of ``image`` (an array, or a napari layer's ``data``) as float32 in [0, 1],
    channels last, read on the value range of the **whole** array, as the run loop reads it
    (:class:`FrameScaler`). The one way to take a frame: the live preview, Compare, Haze depth and
    ``clearnet depth`` all come through here, so a frame looks the same in each and in a run. A lazy
    (dask) array is read one frame at a time, so its range is that frame's (see FrameScaler)."""
    image = as_array(image)
    layout = layout or describe_layout(tuple(np.shape(image)), "auto")
    if not -layout.n_frames <= index < layout.n_frames:
        raise IndexError(f"frame {index} is out of range: the array holds {layout.n_frames} frames")
    index %= layout.n_frames
    return FrameScaler(image, layout, value_range).scale([frames(image, layout)[index]], index)[0]


def frame_rgb(frame: np.ndarray, channels: int) -> np.ndarray:
    """A float frame in [0, 1] as (H, W, 3): grey is repeated, alpha is set aside."""
    if channels == 0:
        return np.repeat(frame[..., None], 3, axis=-1)
    if channels == 1:
        return np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


def restore_layout(j: np.ndarray, image: Any, layout: Layout, value_range: Any = None) -> np.ndarray:
    """Give the (n, H, W, 3) result ``j`` (float32, or uint8) the input's layout: grey stays grey,
    alpha comes back unchanged (scaled like the input's values), the channel axis goes back where
    it was."""
    fs, h, w = layout.frames_shape, layout.height, layout.width
    eight = j.dtype == np.uint8  # output_dtype="uint8": grey and alpha rounded to 8 bits as J is
    dtype = np.uint8 if eight else np.float32

    if layout.channels == 0:
        out = j.mean(-1).reshape((*fs, h, w))
        out = (out + 0.5).astype(np.uint8) if eight else out
    elif layout.channels == 1:
        out = j.mean(-1, keepdims=True).reshape((*fs, h, w, 1))
        out = (out + 0.5).astype(np.uint8) if eight else out
    elif layout.channels == 4:
        alpha = to_float01(np.asarray(channels_last(image, layout)[..., 3:4]), value_range)
        if eight:
            alpha = (alpha * 255.0 + 0.5).astype(np.uint8)
        out = np.concatenate([j.reshape((*fs, h, w, 3)), alpha.reshape((*fs, h, w, 1))], -1)
    else:
        out = j.reshape((*fs, h, w, 3))
    if layout.channel_axis is not None and layout.channel_axis != len(np.shape(image)) - 1:
        out = np.moveaxis(out, -1, layout.channel_axis)
    return np.ascontiguousarray(out, dtype=dtype)

def to_float01(array: Any, value_range: Any = None, *, copy: bool = True) -> np.ndarray:
    """Convert pixel values to float32 in [0, 1] without touching the input.

    ``value_range`` (low, high) maps low to 0 and high to 1 (values outside are clipped), e.g.
    ``(0, 4095)`` for a 12-bit camera; without it the range is decided from the whole array by
    :func:`pixel_range` (uint8/uint16 full range, floats in [0, 1] as they are, …). With
    ``copy=False`` a float32 array already in [0, 1] comes back as it is, for callers that only
    read it.
    """
    a = native(np.asarray(array))
    check_dtype(a.dtype)
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
    if not copy and a.dtype == np.float32 and lo == 0.0 and hi == 1.0 and a.size:
        low, high = min_max(a)
        if low >= 0.0 and high <= 1.0:  # False for NaN
            return a  # already what the engine works on, and the caller only reads it
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
