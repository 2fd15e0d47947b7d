"""Live preview for the Dehaze widget: the frame shown, dehazed in a worker thread.

Two kinds of request: moving the strength slider previews a reduced copy of the current frame;
with the "live" toggle, moving a stack's time slider (``viewer.dims``) previews the frame shown,
first a reduced copy, then at full resolution. One worker runs at a time; every request gets a
new generation number, and a request that arrives meanwhile replaces any pending one and makes
the running one stale. A stale job stops at its next check (before it estimates, between the two
stages, and between the strips of rows of the full-resolution pass) and its results are never
shown: only the newest request's images reach the preview layer. So the GUI thread never waits
and a result never covers a newer one. :attr:`LivePreview.timings` records how long each shown
stage took from the request (the latency the docs report).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core import arrays, physics
from ..core.arrays import describe_layout, frame_rgb
from ..core.engine import Dehazer
from ..errors import ClearNetError
from .layers import METADATA_KEY, Settings, channel_axis, check_layer, get_dehazer

__all__ = ["LIVE_STRIP_PIXELS", "PREVIEW_SIDE", "LivePreview", "Superseded", "preview_frame"]

#: long side of the reduced copy the preview dehazes
PREVIEW_SIDE = 512
#: strip size of the full-resolution live pass: a 1080p frame is 8 strips, each a point to stop at
LIVE_STRIP_PIXELS = 1 << 18


class Superseded(ClearNetError):
    """A newer preview was asked for: the job for this one stops."""


@dataclass(frozen=True)
class Request:
    layer: Any
    settings: Settings
    frame: int
    #: follow the reduced copy with the full resolution (the live toggle)
    full: bool = False
    generation: int = 0
    #: time.perf_counter() when asked
    asked: float = field(default=0.0, compare=False)


class _Interruptible:
    """An estimator that raises :class:`Superseded` once ``stop()`` is true: before it estimates
    and before each strip of rows at full resolution (the engine's own loop does the rest)."""

    def __init__(self, inner: Any, stop: Callable[[], bool]) -> None:
        self._inner, self._stop = inner, stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _check(self) -> None:
        if self._stop():
            raise Superseded

    def estimate(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._inner.estimate(*args, **kwargs)

    def rows_at_full_resolution(self, low: Any, t: Any, size: tuple[int, int], buffers: Any = None) -> Any:
        rows = self._inner.rows_at_full_resolution(low, t, size, buffers)

        def checked(frame_rows: Any, r0: int, r1: int, out: Any = None) -> Any:
            self._check()
            return rows(frame_rows, r0, r1, out)

        return checked


def interruptible(dehazer: Dehazer, stop: Callable[[], bool]) -> Dehazer:
    """A shallow copy of ``dehazer`` (same model, same device) whose work stops with
    :class:`Superseded` at the next check once ``stop()`` is true."""
    out = copy.copy(dehazer)
    out.estimator = _Interruptible(dehazer.estimator, stop)  # type: ignore[assignment]
    return out


def current_frame(layer: Any, viewer: Any) -> int:
    """Index (row-major over the leading axes) of the frame of ``layer`` the viewer shows now."""
    layout = describe_layout(tuple(layer.data.shape), channel_axis(layer))
    if not layout.frames_shape:
        return 0
    point = tuple(viewer.dims.point)[-layer.ndim:]  # napari's layer.ndim leaves out an RGB axis
    lead = np.asarray(layer.world_to_data(point), dtype=np.float64)[: len(layout.frames_shape)]
    idx = [int(np.clip(round(c), 0, n - 1)) for c, n in zip(lead, layout.frames_shape, strict=True)]
    return int(np.ravel_multi_index(idx, layout.frames_shape))


def preview_frame(layer: Any, settings: Settings, frame: int = 0, side: int | None = PREVIEW_SIDE,
                  stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Frame ``frame`` of ``layer`` reduced to long side ``side`` (None: full resolution) and
    dehazed with ``settings``: float32 (h, w, 3) in [0, 1] (grey inputs come back grey, (h, w)).
    With ``stop``, the work ends with :class:`Superseded` at the next check once it is true."""
    check_layer(layer)
    layout = describe_layout(tuple(layer.data.shape), channel_axis(layer))
    rgb = frame_rgb(arrays.frame(layer.data, frame, layout), layout.channels)  # the whole layer's range
    h, w = rgb.shape[:2]
    s = 1.0 if side is None else min(1.0, side / max(h, w))
    if s < 1.0:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        rgb = physics.resize(x, size)[0].permute(1, 2, 0).clamp(0, 1).contiguous().numpy()
    dehazer = get_dehazer(settings.method, settings.model, settings.device)
    options = settings.options()
    if stop is not None:
        dehazer = interruptible(dehazer, stop)
        options = options.replace(strip_pixels=LIVE_STRIP_PIXELS)
    res = dehazer.dehaze(rgb, options)
    return res.image if layout.channels >= 3 else res.image.mean(-1)


class LivePreview:
    """Keeps one preview layer per widget up to date with the newest request (see module doc)."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.worker: Any = None
        self.pending: Request | None = None
        #: the newest request, unless cancelled since (a repeat of it is not asked again)
        self.last: Request | None = None
        self.layer: Any = None
        self.closed = False
        #: the newest request's number; a job whose request is older is stale
        self.generation = 0
        #: images shown so far (tests and the status line read it)
        self.done = 0
        #: (generation, stage "reduced" or "full", seconds from the request to the layer update)
        self.timings: list[tuple[int, str, float]] = []

    def request(self, layer: Any, settings: Settings, *, full: bool = False) -> None:
        """Ask for a preview of ``layer``'s current frame with ``settings`` (GUI thread); ``full``
        follows the reduced copy with the full resolution. Any older request becomes stale."""
        if self.closed:
            return
        frame = current_frame(layer, self.viewer)
        last = self.last
        if (last is not None and last.layer is layer and last.settings == settings and last.frame == frame
                and last.full == full):
            return  # e.g. another axis of the viewer moved: this frame is on its way or shown
        self.generation += 1
        self.pending = self.last = Request(layer, settings, frame, full, self.generation, time.perf_counter())
        if self.worker is None:
            self._start_next()

    def cancel(self) -> None:
        """Drop the pending request and make the running one stale (it stops at its next check)."""
        self.generation += 1
        self.pending = self.last = None

    def stale(self, req: Request) -> bool:
        """Whether a newer request came after ``req`` (read from the worker thread)."""
        return self.closed or req.generation != self.generation

    def _start_next(self) -> None:
        from napari.qt.threading import create_worker

        req, self.pending = self.pending, None
        if req is None or self.closed:
            return
        connect = {"yielded": self._show, "errored": self._failed, "finished": self._finished}
        self.worker = create_worker(self._job, req, _connect=connect, _start_thread=False)
        self.worker.start()

    def _job(self, req: Request) -> Generator[tuple[Request, str, np.ndarray], None, None]:
        """The worker: the reduced copy, then (live) the full resolution, stopping when stale."""
        stop = lambda: self.stale(req)  # noqa: E731
        try:
            if stop():
                return
            yield req, "reduced", preview_frame(req.layer, req.settings, req.frame, PREVIEW_SIDE, stop)
            if req.full and not stop():
                yield req, "full", preview_frame(req.layer, req.settings, req.frame, side=None, stop=stop)
        except Superseded:
            return

    def _show(self, value: tuple[Request, str, np.ndarray]) -> None:
        req, stage, image = value
        if self.stale(req):  # a newer request exists: its images, not this one, belong on screen
            return
        src = req.layer
        full = np.asarray(src.data.shape[-3:-1] if src.rgb else src.data.shape[-2:], np.float64)
        factor = full / np.asarray(image.shape[:2], np.float64)
        scale = tuple(np.asarray(src.scale[-2:]) * factor)
        translate = tuple(np.asarray(src.translate[-2:]) + np.asarray(src.scale[-2:]) * (factor - 1) / 2)
        n = describe_layout(tuple(src.data.shape), channel_axis(src)).n_frames
        at = f", frame {req.frame}" if n > 1 else ""
        what = "full resolution" if stage == "full" else "reduced"
        name = (f"{src.name} preview ({req.settings.label}, strength {req.settings.strength:.2f}{at}, "
                f"{what})")
        meta = {METADATA_KEY: {"source": src.name, "output": "preview", "frame": req.frame, "stage": stage}}
        if self.layer is not None and self.layer in self.viewer.layers:
            self.layer.data = image
            self.layer.name = name
            self.layer.scale, self.layer.translate = scale, translate
            self.layer.metadata = meta
        else:
            self.layer = self.viewer.add_image(image, name=name, rgb=image.ndim == 3, scale=scale,
                                               translate=translate, contrast_limits=(0.0, 1.0),
                                               metadata=meta)
        self.done += 1
        self.timings.append((req.generation, stage, time.perf_counter() - req.asked))

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
        self.cancel()
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None

    def close(self) -> None:
        self.closed = True
        self.pending = None
        if self.worker is not None:
            self.worker.quit()
