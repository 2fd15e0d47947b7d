"""napari: video files open as a lazy stack (npe2 reader contribution ``read_video``).

The layer's data is :func:`napari_clearnet.video.read_video`'s dask array: a frame is decoded when
napari shows it (exact seeking to any frame, a small cache, no seek while frames come in order),
so a 2-hour recording opens at once and never sits in memory. Dehazing the layer is the same as
dehazing any stack.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..video.reader import VIDEO_SUFFIXES, VideoReader, lazy

__all__ = ["get_reader", "read_clip"]


def get_reader(path: str | os.PathLike | list) -> Callable[[Any], list] | None:
    """napari asks whether we read ``path``: video files, one at a time."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    return read_clip if Path(path).suffix.lower() in VIDEO_SUFFIXES else None


def read_clip(path: str | os.PathLike | list) -> list[tuple[Any, dict, str]]:
    """One RGB image layer (T, H, W, 3) uint8 decoded on demand; the clip's facts in its metadata."""
    if isinstance(path, list | tuple):
        path = path[0]
    reader = VideoReader(path)
    meta = {"video": reader.info.describe()}
    return [(lazy(reader), {"name": Path(path).stem, "rgb": True, "metadata": meta}, "image")]
