"""The one run loop: an image or a stack in, a :class:`DehazeResult` out, progress on the way.

:func:`run` is a generator that yields ``(frames done, n_frames)`` and returns the result
(the pattern of stardist-napari's ``plugin_function_generator``): it allocates the outputs, goes
frame by frame through :meth:`Dehazer.iter_frames`, gives the result the input's layout and
records the provenance. Every front end drives it: :func:`napari_clearnet.dehaze` and the CLI
through :func:`drive`, the napari commands and widgets from a worker thread, one frame at a time,
so a Cancel between frames leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .arrays import as_array, describe_layout, restore_layout
from .limits import check_memory
from .options import DehazeOptions

if TYPE_CHECKING:  # the run loop drives any Dehazer; engine imports this module, not the reverse
    from .engine import Dehazer

__all__ = ["Carry", "DehazeResult", "FrameResult", "Progress", "drive", "run"]

@dataclass
class FrameResult:
    """One frame: J (H, W, 3), t (H, W), A (3,), the raw t, ClearNet's haze amount s (None for the
    DCP), the (low, high) pixel values the frame was read with, and the (k, 2) row/column of the
    pixels A was taken from (None when A was given)."""

    image: np.ndarray
    transmission: np.ndarray
    airlight: np.ndarray
    transmission_raw: np.ndarray | None = None
    scale: float | None = None
    value_range: tuple[float, float] | None = None
    sources: np.ndarray | None = None


@dataclass(frozen=True)
class Carry:
    """Where a run carries on: at ``frame``, with temporal smoothing's state after the frame before
    it (that frame's ``airlight`` and haze amount ``scale``, as its :class:`FrameResult` gave them).
    An interrupted clip is continued with the state its partial output recorded."""

    frame: int = 0
    airlight: Any = None
    scale: float | None = None


#: what :func:`run` yields: (frames done, n_frames)
Progress = tuple[int, int]
#: what a streaming run hands each frame to: (frame index, the frame's result)
Sink = Callable[[int, FrameResult], None]
R = TypeVar("R")


@dataclass
class DehazeResult:
    """What :func:`napari_clearnet.dehaze` returns.

    ``image`` has the input's layout (grey stays grey, alpha is passed through), float32 in [0, 1];
    ``transmission`` is (…, H, W) float32 in (0, 1]; ``airlight`` is (…, 3) (three floats for a
    single image); ``provenance`` says what produced it. A streaming run (``sink``) keeps no
    frames: ``image`` and ``transmission`` are None. ``transmission_raw`` (with ``with_raw``)
    is the method's unrefined t; ``airlight_sources`` (with ``with_sources``) are the pixels the
    method took A from, as rows ``(frame indices…, row, column)`` on the input's grid (at most
    :data:`~napari_clearnet.engine.MAX_SOURCES` per frame; none when A was given).
    """

    image: np.ndarray | None
    transmission: np.ndarray | None
    airlight: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)
    transmission_raw: np.ndarray | None = None
    airlight_sources: np.ndarray | None = None

    @property
    def method(self) -> str:
        return self.provenance["method"]

    @property
    def model(self) -> str | None:
        return self.provenance.get("model")

    @property
    def sha256(self) -> str | None:
        return self.provenance.get("sha256")

    @property
    def device(self) -> str:
        return self.provenance["device"]


def run(
    dehazer: Dehazer,
    image: Any,
    options: DehazeOptions | None = None,
    *,
    provenance: dict[str, Any] | None = None,
    sink: Sink | None = None,
    carry: Carry | None = None,
    **changes: Any,
) -> Generator[Progress, None, DehazeResult]:
    """Dehaze ``image`` with ``dehazer``, yielding ``(frames done, n_frames)`` (first ``(0, n)``)
    and returning a :class:`DehazeResult`; stopping the generator early leaves nothing behind.

    ``options`` is a :class:`~napari_clearnet.core.options.DehazeOptions` (checked once, when made),
    with keyword ``changes`` on top (``channel_axis``, ``value_range``, ``airlight``, ``t0``,
    ``temporal_smoothing``, ``strip_pixels``, ``batch_size``, ``sky_protection``, ``strength``,
    ``with_raw``, ``with_sources``; see :func:`napari_clearnet.dehaze`); ``provenance`` entries
    are added to the record.
    ``sink(i, frame)`` streams: each frame's :class:`~napari_clearnet.engine.FrameResult` (J as
    (H, W, 3) RGB, t as (H, W), its buffers the sink's to keep) goes to it as soon as it is done and
    nothing else is kept but A, so a clip of any length runs in the memory of a few frames.
    Without a sink, results that would not fit in the memory available are refused before any
    work (:func:`~napari_clearnet.limits.check_memory`). ``carry`` (a :class:`Carry`, with a
    sink) starts at its frame with its smoothing state; the frames before it are not dehazed (their
    A is NaN) and the first yield is ``(carry.frame, n_frames)``.
    """
    start = time.perf_counter()
    opts = DehazeOptions.of(options, changes)
    image = as_array(image)
    layout = describe_layout(tuple(np.shape(image)), opts.channel_axis)
    n, h, w = layout.n_frames, layout.height, layout.width
    keep = sink is None
    eight = opts.output_dtype == "uint8"
    with_t = opts.with_transmission
    if carry is not None and carry.frame and keep:
        raise ValueError("carrying on a run needs a sink (its frames stream into a file)")
    if keep:  # G9: J and t of every frame are held: refuse what the machine cannot hold, up front
        per_frame = h * w * ((3 if eight else 12) + 4 * (with_t + opts.with_raw))
        what = ("J and t, float32" if with_t and not eight else
                f"J ({'uint8' if eight else 'float32'}){' and t (float32)' if with_t else ''}")
        check_memory(n * per_frame, f"the results ({what}) of {n} frame(s) of {w}×{h}",
                     "dehaze clips with napari_clearnet.dehaze_video or `clearnet dehaze` (they stream "
                     "frames into a file), or pass fewer frames at a time")
    j = np.empty((n, h, w, 3), np.uint8 if eight else np.float32) if keep else None
    t = np.empty((n, h, w), np.float32) if keep and with_t else None
    a = np.full((n, 3), np.nan, np.float32)
    raw = np.empty((n, h, w), np.float32) if opts.with_raw and keep else None
    points: list[np.ndarray] = []
    out = (j, t) if keep else None
    frames = dehazer.iter_frames(image, opts.replace(channel_axis=layout.channel_axis), out=out, carry=carry)
    yield (0 if carry is None else carry.frame), n
    for i, total, res in frames:
        a[i] = res.airlight  # J and t were written into j[i] and t[i] (or go to the sink)
        if sink is not None:
            sink(i, res)
        if raw is not None and res.transmission_raw is not None:
            raw[i] = res.transmission_raw
        if opts.with_sources and res.sources is not None:
            lead = np.unravel_index(i, layout.frames_shape) if layout.frames_shape else ()
            points.append(np.column_stack([*(np.full(len(res.sources), v) for v in lead), res.sources]))
        yield i + 1, total
    fs = layout.frames_shape
    record = dehazer.provenance(
        seconds=time.perf_counter() - start, t0=dehazer.estimator.recovery_t0(opts.t0),
        airlight_override=None if opts.airlight is None else list(opts.airlight),
        temporal_smoothing=opts.temporal_smoothing,
        sky_protection=dehazer.resolve_sky(opts.sky_protection),
        strength=opts.strength,
        **(provenance or {}),
    )
    sources = None
    if opts.with_sources:
        sources = np.concatenate([np.zeros((0, len(fs) + 2)), *points]).astype(np.float32)
    return DehazeResult(
        image=None if j is None else restore_layout(j, image, layout, opts.value_range),
        transmission=None if t is None else t.reshape((*fs, h, w)),
        airlight=a.reshape((*fs, 3)),
        provenance=record,
        transmission_raw=None if raw is None else raw.reshape((*fs, h, w)),
        airlight_sources=sources,
    )


def drive(gen: Generator[Progress, None, R], progress: Callable[[int, int], None] | None = None) -> R:
    """Run a generator of :func:`run` to the end (calling ``progress(done, total)`` after every
    frame) and return its result: what scripts and the CLI do with the loop."""
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None and done:
            progress(done, total)
