"""Image files: read as a viewer shows them, written atomically with ICC profile and fingerprint."""

from __future__ import annotations

from typing import Any

from .images import (
    DEFAULT_JPEG_QUALITY,
    IMAGE_SUFFIXES,
    MAX_BYTES,
    MAX_PIXELS,
    READ_SUFFIXES,
    ImageFile,
    write_float_tiff,
    write_image,
)
from .load import load_image, read_image

__all__ = ["DEFAULT_JPEG_QUALITY", "IMAGE_SUFFIXES", "MAX_BYTES", "MAX_PIXELS", "READ_SUFFIXES", "ImageFile",
           "load_image", "read_image", "write_float_tiff", "write_image"]


def __getattr__(name: str) -> Any:  # the rest of the old flat module napari_clearnet.io
    from .._moved import forward

    return forward(__name__, name, ("io.images", "io.load", "io.metadata"))
