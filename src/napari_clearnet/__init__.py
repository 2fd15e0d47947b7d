"""napari-clearnet: physics-based dehazing (ClearNet and the Dark Channel Prior) for napari.

The plain-Python core has no Qt: ``dehaze`` and ``load_model`` work in scripts and on servers.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .depth import DepthFit, HazeDepth, KnownDistance, haze_depth, visibility
from .devices import pick_device
from .engine import Dehazer, dehaze, load_model
from .io import read_image, write_image
from .run import DehazeResult
from .video import read_video
from .video_out import dehaze_video

__all__ = [
    "DehazeResult",
    "Dehazer",
    "DepthFit",
    "HazeDepth",
    "KnownDistance",
    "__version__",
    "dehaze",
    "dehaze_video",
    "haze_depth",
    "load_model",
    "pick_device",
    "read_image",
    "read_video",
    "visibility",
    "write_image",
]
