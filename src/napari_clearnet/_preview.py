"""Live preview for the Dehaze widget: the current frame, reduced, dehazed in a worker thread.

Moving the strength slider fires many requests. One worker runs at a time; a request that
arrives meanwhile replaces any pending one, and when the worker finishes the newest pending
request starts. So the GUI thread never waits, a stale value is never computed after a newer
one was asked for, and the last value asked for is always the one shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import physics
from ._layers import METADATA_KEY, Settings, channel_axis, check_layer, get_dehazer
from .arrays import describe_layout, frame_rgb, frames, to_float01

__all__ = ["PREVIEW_SIDE", "LivePreview", "preview_frame"]

#: long side of the reduced copy the preview dehazes
PREVIEW_SIDE = 512


@dataclass(frozen=True)
class Request:
    layer: Any
    settings: Settings
    frame: int


def current_frame(layer: Any, viewer: Any) -> int:
    """Index (row-major over the leading axes) of the frame of ``layer`` the viewer shows now."""
    layout = describe_layout(tuple(layer.data.shape), channel_axis(layer))
    if not layout.frames_shape:
        return 0
    point = tuple(viewer.dims.point)[-layer.ndim:]  # napari's layer.ndim leaves out an RGB axis
    lead = np.asarray(layer.world_to_data(point), dtype=np.float64)[: len(layout.frames_shape)]
    idx = [int(np.clip(round(c), 0, n - 1)) for c, n in zip(lead, layout.frames_shape, strict=True)]
    return int(np.ravel_multi_index(idx, layout.frames_shape))


def preview_frame(layer: Any, settings: Settings, frame: int = 0, side: int = PREVIEW_SIDE) -> np.ndarray:
    """Frame ``frame`` of ``layer`` reduced to long side ``side`` and dehazed with ``settings``:
    float32 (h, w, 3) in [0, 1] (grey inputs come back grey, (h, w))."""
    check_layer(layer)
    layout = describe_layout(tuple(layer.data.shape), channel_axis(layer))
    raw = np.asarray(frames(layer.data, layout)[frame])
    rgb = frame_rgb(to_float01(raw), layout.channels)
    h, w = rgb.shape[:2]
    s = min(1.0, side / max(h, w))
    size = (max(1, round(h * s)), max(1, round(w * s)))
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    small = physics.resize(x, size)[0].permute(1, 2, 0).clamp(0, 1).contiguous().numpy()
    dehazer = get_dehazer(settings.method, settings.model, settings.device)
    res = dehazer.dehaze(small, **settings.run_options())
    return res.image if layout.channels >= 3 else res.image.mean(-1)


class LivePreview:
    """Keeps one preview layer per widget up to date with the latest request (see module doc)."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.worker: Any = None
        self.pending: Request | None = None
        self.layer: Any = None
        self.closed = False
        #: requests computed so far (tests and the status line read it)
        self.done = 0

    def request(self, layer: Any, settings: Settings) -> None:
        """Ask for a preview of ``layer``'s current frame with ``settings`` (GUI thread)."""
        if self.closed:
            return
        self.pending = Request(layer, settings, current_frame(layer, self.viewer))
        if self.worker is None:
            self._start_next()

    def _start_next(self) -> None:
        from napari.qt.threading import create_worker

        req, self.pending = self.pending, None
        if req is None or self.closed:
            return
        connect = {"returned": self._show, "errored": self._failed, "finished": self._finished}
        self.worker = create_worker(self._job, req, _connect=connect, _start_thread=False)
        self.worker.start()

    @staticmethod
    def _job(req: Request) -> tuple[Request, np.ndarray]:
        return req, preview_frame(req.layer, req.settings, req.frame)

    def _show(self, value: tuple[Request, np.ndarray]) -> None:
        if self.closed:
            return
        req, image = value
        src = req.layer
        full = np.asarray(src.data.shape[-3:-1] if src.rgb else src.data.shape[-2:], np.float64)
        factor = full / np.asarray(image.shape[:2], np.float64)
        scale = tuple(np.asarray(src.scale[-2:]) * factor)
        translate = tuple(np.asarray(src.translate[-2:]) + np.asarray(src.scale[-2:]) * (factor - 1) / 2)
        name = f"{src.name} preview ({req.settings.label}, strength {req.settings.strength:.2f})"
        meta = {METADATA_KEY: {"source": src.name, "output": "preview"}}
        if self.layer is not None and self.layer in self.viewer.layers:
            self.layer.data = image
            self.layer.name = name
            self.layer.scale, self.layer.translate = scale, translate
        else:
            self.layer = self.viewer.add_image(image, name=name, rgb=image.ndim == 3, scale=scale,
                                               translate=translate, contrast_limits=(0.0, 1.0),
                                               metadata=meta)
        self.done += 1

    def _failed(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        if not self.closed:
            show_error(f"napari-clearnet: preview failed: {type(exc).__name__}: {exc}")

    def _finished(self) -> None:
        self.worker = None
        if self.pending is not None and not self.closed:
            self._start_next()

    def remove(self) -> None:
        """Drop the preview layer (after a full run, or when the preview is switched off)."""
        self.pending = None
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None

    def close(self) -> None:
        self.closed = True
        self.pending = None
        if self.worker is not None:
            self.worker.quit()
