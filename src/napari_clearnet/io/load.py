"""Reading an image file: the one entry point, :func:`load_image`, that picks the decoder
(16-bit colour PNG through libpng, TIFF through tifffile in :mod:`.tiff`, the rest through Pillow in
:mod:`.images`) and turns every failure into ``cannot read <path>: …``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import images
from .images import ImageFile
from .tiff import read_tiff

__all__ = ["load_image", "read_image"]

def load_image(path: str | os.PathLike) -> ImageFile:
    """Read an image file as a viewer shows it, with its ICC profile; 16-bit depth is kept.

    Every frame is read (animated GIF/WebP/PNG, multi-page and multi-series TIFF) as a stack
    ``(T, H, W[, C])`` when the frames have one size; otherwise the file is refused. Any failure
    (corrupt data, a declared size over the limits, not enough memory, an unexpected decoder
    error) is a ``ValueError`` that starts with ``cannot read <path>:``.
    """
    path = Path(path)
    images._check_regular_file(path)
    try:
        if images._is_png16_colour(path):  # Pillow would silently drop 8 of the 16 bits
            return images._read_png16(path)
        if images._is_tiff(path):
            return read_tiff(path)
        return images.read_pillow(path)
    except MemoryError:
        raise ValueError(f"cannot read {path}: not enough memory to decode it") from None
    except ValueError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # decoders raise many types for hostile files: never a traceback
        raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an array (see :func:`load_image`)."""
    return load_image(path).array
