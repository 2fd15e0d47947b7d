"""Clips in (``probe``, ``reader``, ``repair``: exact seeking, damaged frames) and out (``writer``:
H.264 with audio and timestamps kept, ``dehaze_video``)."""

from __future__ import annotations

from typing import Any

from .reader import (
    DAMAGED,
    VIDEO_SUFFIXES,
    ClipInfo,
    VideoReader,
    VideoWarning,
    container_comment,
    is_video,
    lazy,
    probe,
    read_video,
)
from .writer import Encoding, VideoWriter, dehaze_video

__all__ = ["DAMAGED", "VIDEO_SUFFIXES", "ClipInfo", "Encoding", "VideoReader", "VideoWarning", "VideoWriter",
           "container_comment", "dehaze_video", "is_video", "lazy", "probe", "read_video"]


def __getattr__(name: str) -> Any:  # the rest of the old flat module napari_clearnet.video
    from .._moved import forward

    return forward(__name__, name, ("video.reader",))
