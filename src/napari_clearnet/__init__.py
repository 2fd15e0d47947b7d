"""napari-clearnet: physics-based dehazing (ClearNet and the Dark Channel Prior) for napari.

The plain-Python core has no Qt: ``dehaze`` and ``load_model`` work in scripts and on servers;
``dehaze_layer`` and ``dehaze_layers`` (napari needed) run on a viewer's layers.
Importing the package is cheap: the names below are loaded on first use (PEP 562), so
``import napari_clearnet`` and ``clearnet --help`` load neither torch nor napari.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from . import _moved
from ._version import __version__

_moved.install()

if "torch" not in sys.modules:
    # torch's OpenMP threads spin for a while after every parallel operation; on a small machine
    # that spinning takes the cores the 8-bit kernels, the video encoder and other programs want
    # (1 MP 8-bit: 13-15 ms instead of 15-18; docs/benchmarks.md). A shorter spin is read once,
    # when torch loads its OpenMP: only if torch is not loaded yet, and never over the user's own.
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

#: public name → the module that defines it (relative to this package)
_PUBLIC: dict[str, str] = {
    "ClearNetError": "errors",
    "DehazeOptions": "core.options",
    "DehazeResult": "core.run",
    "Dehazer": "core.engine",
    "DepthFit": "analysis.depth",
    "HazeDepth": "analysis.depth",
    "KnownDistance": "analysis.depth",
    "dehaze": "api",
    "dehaze_layer": "_plugin.layers",
    "dehaze_layers": "_plugin.layers",
    "dehaze_video": "video.writer",
    "haze_depth": "analysis.depth",
    "load_model": "api",
    "pick_device": "core.devices",
    "read_image": "io.load",
    "read_video": "video.reader",
    "visibility": "analysis.depth",
    "write_image": "io.images",
}

__all__ = [
    "ClearNetError",
    "DehazeOptions",
    "DehazeResult",
    "Dehazer",
    "DepthFit",
    "HazeDepth",
    "KnownDistance",
    "__version__",
    "dehaze",
    "dehaze_layer",
    "dehaze_layers",
    "dehaze_video",
    "haze_depth",
    "load_model",
    "pick_device",
    "read_image",
    "read_video",
    "visibility",
    "write_image",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads these
    from ._plugin.layers import dehaze_layer, dehaze_layers
    from .analysis.depth import DepthFit, HazeDepth, KnownDistance, haze_depth, visibility
    from .api import dehaze, load_model
    from .core.devices import pick_device
    from .core.engine import Dehazer
    from .core.options import DehazeOptions
    from .core.run import DehazeResult
    from .errors import ClearNetError
    from .io.images import write_image
    from .io.load import read_image
    from .video.reader import read_video
    from .video.writer import dehaze_video


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
        globals()[name] = value
        return value
    if name in _moved.MOVED:  # ``from napari_clearnet import engine``: the deprecated module
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
