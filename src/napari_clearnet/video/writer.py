"""Video files out: a clip dehazed into a new clip, streamed, with its sound and timing kept.

:func:`dehaze_video` streams a clip through the one run loop (:func:`napari_clearnet.run.run`
with a sink): a decoder thread reads ahead into a bounded queue (:class:`~napari_clearnet.video.
VideoReader`), the engine dehazes, and :class:`VideoWriter`'s thread converts and encodes from
another bounded queue, so decoding and encoding overlap the computation and only a few frames are
ever in memory. The output keeps every frame's timestamp (so the frame rate, constant or not) and
the frame size; audio streams are copied packet by packet, not re-encoded. Video is H.264 (CRF 18,
preset veryfast: visually lossless, not lossy by surprise), BT.709, in the input's container (MP4,
MOV, MKV, AVI; other containers become Matroska, which holds any audio). The file appears under
its name only when complete (:func:`files.atomic_path`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .._util.validate import check_number, option
from ..core.fused import to_uint8
from ..core.options import VIDEO_NETWORK_EVERY, VIDEO_TEMPORAL_SMOOTHING, DehazeOptions
from ..errors import ClearNetError
from .reader import ClipInfo, VideoReader, lazy

__all__ = ["DEFAULT_CRF", "DEFAULT_PRESET", "DEFAULT_TEMPORAL_SMOOTHING", "Encoding", "VideoWriter",
           "dehaze_video", "output_suffix"]

#: H.264 constant rate factor: 18 is visually lossless (0 = lossless, 51 = worst)
DEFAULT_CRF = 18
#: x264's speed/size trade-off; veryfast keeps encoding well ahead of dehazing (docs/video.md)
DEFAULT_PRESET = "veryfast"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
#: temporal smoothing of A and the haze amount for clips unless told otherwise (about 5 frames)
DEFAULT_TEMPORAL_SMOOTHING = VIDEO_TEMPORAL_SMOOTHING
#: containers a dehazed clip keeps; other inputs are written as Matroska (it holds any audio codec)
SAME_CONTAINER = (".mp4", ".m4v", ".mov", ".avi", ".mkv")
#: frames each of the decoder's and the encoder's queues holds
QUEUE_FRAMES = 8
#: the widest and tallest frame x264 encodes (it refuses larger ones only when the encoder opens)
H264_MAX_SIDE = 16384


def check_encodable(source: str | os.PathLike, width: int, height: int, side_by_side: bool = False) -> None:
    """Refuse, before any work, a clip whose dehazed frames H.264 cannot hold (x264 would fail
    after the dehazing with "Generic error in an external library")."""
    if max(width, height) > H264_MAX_SIDE:
        twice = f" ({option('side_by_side')} doubles the width)" if side_by_side else ""
        raise ValueError(f"cannot dehaze {source}: the dehazed clip would be {width}×{height}{twice}, "
                         f"and H.264 holds at most {H264_MAX_SIDE} pixels per side; crop or scale the clip "
                         "first")


def encoder_threads() -> int:
    """x264's threads: half the cores. The encoder thread is the parallelism on a small machine:
    x264's own threads there cost a quarter more CPU per frame, which the dehazing would miss
    (docs/video.md); the engine gets the other half (:func:`dehaze_video`)."""
    return max(1, (os.cpu_count() or 1) // 2)


def output_suffix(source: str | os.PathLike) -> str:
    """The container a dehazed clip of ``source`` is written in."""
    s = Path(source).suffix.lower()
    return s if s in SAME_CONTAINER else ".mkv"


@dataclass(frozen=True)
class Encoding:
    """How clips are encoded: H.264 ``crf`` (0-51, lower is better, 0 lossless) and x264 ``preset``."""

    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET

    def __post_init__(self) -> None:
        object.__setattr__(self, "crf", check_number(self.crf, option("crf"), "[0, 51]", integer=True))
        if self.preset not in PRESETS:
            raise ValueError(f"{option('preset')} must be one of {', '.join(PRESETS)}, got {self.preset!r}")


def _rgb8(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Frames side by side as one (H, W, 3) uint8: floats in [0, 1] are rounded, grey is repeated."""
    out = []
    for p in parts:
        p = p if p.dtype == np.uint8 else to_uint8(np.ascontiguousarray(p, np.float32))
        out.append(np.repeat(p[..., None], 3, axis=-1) if p.ndim == 2 else p)
    rgb = out[0] if len(out) == 1 else np.concatenate(out, axis=1)
    return rgb if rgb.flags.writeable and rgb.flags.c_contiguous else np.array(rgb)


class VideoWriter:
    """An H.264 encoder with a thread of its own, fed through a bounded queue: :meth:`write` hands
    it frame ``i`` (parts put side by side) and returns at once unless the queue is full. Audio
    streams of ``audio_from`` are copied into the output, interleaved by time. Use as a context
    manager: a normal exit finishes the file, an error or Ctrl-C stops the thread and leaves the
    (temporary) file to be removed."""

    def __init__(self, path: str | os.PathLike, info: ClipInfo, *, width: int | None = None,
                 encoding: Encoding | None = None, comment: str | None = None,
                 audio_from: str | os.PathLike | None = None) -> None:
        self.path, self.info = Path(path), info
        self.width = width or info.width
        check_encodable(info.path, self.width, info.height)
        self.encoding = encoding or Encoding()
        self.comment, self.audio_from = comment, audio_from
        self.notes: list[str] = []
        self.frames = 0
        self._last_stamp: int | None = None
        self._bumped = False
        self._closed = False
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._encode, name="clearnet-encode", daemon=True)
        self._thread.start()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _put(self, item: Any) -> None:
        while True:
            if self._error is not None:
                raise self._error
            if not self._thread.is_alive():
                raise RuntimeError(f"the encoder of {self.path.name} stopped")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def write(self, i: int, parts: Sequence[np.ndarray]) -> None:
        """Queue frame ``i``: its parts ((H, W[, 3]) float in [0, 1] or uint8) side by side."""
        self._put((i, parts))

    def close(self) -> None:
        """Flush the encoder, copy the rest of the audio and close the file."""
        if self._closed:
            return
        self._closed = True
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._closed = True
        self._stop.set()
        self._thread.join()

    # ------------------------------------------------------------------ the encoder thread
    def _encode(self) -> None:
        import av

        try:
            with av.open(str(self.path), "w") as out:
                for key, value in self.info.metadata.items():  # title, creation_time, …
                    with contextlib.suppress(ValueError, TypeError):
                        out.metadata[key] = value
                if self.comment:
                    out.metadata["comment"] = self.comment
                stream, tb = self._video_stream(out)
                audio = _AudioCopy(out, self.audio_from, self.notes)
                convert = av.video.reformatter.VideoReformatter()  # tables kept from frame to frame
                while True:
                    item = self._next()
                    if item is None:
                        break
                    i, parts = item
                    rgb = av.VideoFrame.from_numpy_buffer(_rgb8(parts), format="rgb24")  # no copy
                    frame = convert.reformat(rgb, format=stream.pix_fmt, dst_colorspace="ITU709")
                    frame.pts = self._stamp(i)
                    frame.time_base = tb
                    audio.until(float(frame.pts * tb))
                    out.mux(stream.encode(frame))
                    self.frames += 1
                out.mux(stream.encode(None))
                audio.until(None)
                audio.close()
        except BaseException as exc:  # handed to the writing thread
            self._error = exc if not isinstance(exc, av.FFmpegError) else RuntimeError(
                f"cannot write {self.path.name}: {exc.strerror or exc}")

    def _stamp(self, i: int) -> int:
        """Frame ``i``'s timestamp: the input's, one tick later where the input repeats one (a
        2000 fps camera in Matroska's milliseconds), so the encoder gets increasing times."""
        stamps = self.info.timestamps
        stamp = int(stamps[i]) if stamps is not None else i
        last = self._last_stamp
        if last is not None and stamp <= last:
            if not self._bumped:
                self._bumped = True
                self.notes.append("frames that share a timestamp (a camera faster than the container's "
                                  "clock) are written one tick apart")
            stamp = last + 1
        self._last_stamp = stamp
        return stamp

    def _next(self) -> Any:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue

    def _video_stream(self, out: Any) -> tuple[Any, Fraction]:
        info, enc = self.info, self.encoding
        tb = info.time_base if info.timestamps is not None else 1 / info.rate
        stream = out.add_stream("libx264", rate=info.rate)
        stream.width, stream.height = self.width, info.height
        # 4:2:0 needs even sizes; odd ones keep their size in 4:4:4 (fewer players show it)
        stream.pix_fmt = "yuv420p" if self.width % 2 == 0 and info.height % 2 == 0 else "yuv444p"
        stream.time_base = tb
        ctx = stream.codec_context
        ctx.time_base = tb
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1  # BT.709, as converted
        stream.options = {"crf": str(enc.crf), "preset": enc.preset, "threads": str(encoder_threads())}
        return stream, tb


class _Stopped(ClearNetError):
    """The writer was aborted."""


class _AudioCopy:
    """Copies a source's audio packets into ``out`` as the video's time passes (remux: no
    re-encoding); an audio codec the container cannot hold is left out, with a note."""

    def __init__(self, out: Any, source: str | os.PathLike | None, notes: list[str]) -> None:
        self._src = None
        self._packets: Any = iter(())
        self._pending: Any = None
        self._map: dict[int, Any] = {}
        self._out = out
        if source is None:
            return
        import av

        self._src = av.open(str(source))
        streams = []
        for a in self._src.streams.audio:
            name = a.codec_context.name
            if name not in out.supported_codecs:
                notes.append(f"its audio ({name}) cannot be copied into {Path(out.name).suffix}; left out")
                continue
            self._map[a.index] = out.add_stream_from_template(a)
            streams.append(a)
        if streams:
            self._packets = self._src.demux(*streams)
            self._pending = self._advance()

    def _advance(self) -> Any:
        for p in self._packets:
            if p.size and (p.pts is not None or p.dts is not None):
                return p
        return None

    def until(self, seconds: float | None) -> None:
        """Copy the packets up to ``seconds`` (None: all that are left)."""
        while self._pending is not None:
            p = self._pending
            stamp = p.pts if p.pts is not None else p.dts
            if seconds is not None and float(stamp * p.time_base) > seconds:
                return
            p.stream = self._map[p.stream_index]
            self._out.mux(p)
            self._pending = self._advance()

    def close(self) -> None:
        if self._src is not None:
            self._src.close()


# ------------------------------------------------------------------------------------ dehazing
def dehaze_video(
    source: str | os.PathLike,
    target: str | os.PathLike | None,
    *,
    model: Any = None,
    method: str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    temporal_smoothing: float = DEFAULT_TEMPORAL_SMOOTHING,
    network_every: int = VIDEO_NETWORK_EVERY,
    side_by_side: bool = False,
    encoding: Encoding | None = None,
    transmission: str | os.PathLike | None = None,
    source_fingerprint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    damaged: str = "repeat",
    options: DehazeOptions | None = None,
    **changes: Any,
) -> Any:
    """Dehaze a clip into a video file, streamed frame by frame (any length in the memory of a few
    frames).

    Parameters
    ----------
    source : str or path
        The clip to read.
    target : str or path or None
        The dehazed clip to write (None: write no dehazed clip, e.g. only the transmission). It
        appears only when complete and is never replaced unless ``overwrite``.
    model, method, device
        As for :func:`napari_clearnet.dehaze` (a loaded :class:`~napari_clearnet.Dehazer` is reused).
    overwrite : bool, default False
        Replace existing outputs.
    temporal_smoothing : float, default 0.8
        Steadies A and the haze amount along the clip (0 = off); ``options`` replaces it.
    network_every : int, default 4
        Run the network on every k-th frame and reuse its haze amount and airlight correction on
        the frames between (1 = every frame); ``options`` replaces it.
    side_by_side : bool, default False
        Write hazy | dehazed in one frame (twice the width).
    encoding : Encoding, optional
        H.264 quality (crf) and x264 preset.
    transmission : str or path, optional
        Also write the transmission map as a grey clip.
    source_fingerprint : str, optional
        The input's fingerprint, recorded in the outputs.
    progress : callable, optional
        ``progress(done, total)`` after every frame.
    damaged : {"repeat", "stop"}, default "repeat"
        A frame that cannot be decoded: shown as the one before it, or the clip fails.
    options : DehazeOptions, optional
        The run options; keyword ``changes`` go on top (``sky_protection``, ``strength``, ``t0``...).
    **changes
        Fields of :class:`~napari_clearnet.DehazeOptions`.

    Returns
    -------
    DehazeResult
        A per frame and the provenance (no frames); ``provenance["notes"]`` says what was
        repaired and what the output leaves out.
    """
    from .._util.files import atomic_path, tag_text
    from ..api import resolve_dehazer
    from ..core.run import drive, run

    base = options if options is not None else DehazeOptions(temporal_smoothing=temporal_smoothing,
                                                             network_every=network_every)
    # a clip's frames are 8-bit RGB and are written as 8-bit: the 8-bit path, t only where it is written
    opts = DehazeOptions.of(base, changes).replace(channel_axis=-1, output_dtype="uint8",
                                                   with_transmission=transmission is not None)
    dehazer = resolve_dehazer(method, model, device)
    encoding = encoding or Encoding()
    comment = tag_text(source_fingerprint) if source_fingerprint else None
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source, readahead=QUEUE_FRAMES, damaged=damaged, warn=False))
        info = reader.info
        check_encodable(source, info.width * (2 if side_by_side else 1), info.height, side_by_side)
        tmp = {role: stack.enter_context(atomic_path(p, overwrite, (source,)))  # never the source
               for role, p in (("image", target), ("transmission", transmission)) if p is not None}
        writers = {}
        if "image" in tmp:
            writers["image"] = stack.enter_context(VideoWriter(
                tmp["image"], info, width=info.width * (2 if side_by_side else 1), encoding=encoding,
                comment=comment, audio_from=source if info.audio_streams else None))
        if "transmission" in tmp:
            writers["transmission"] = stack.enter_context(
                VideoWriter(tmp["transmission"], info, encoding=encoding, comment=comment))

        def sink(i: int, res: Any) -> None:
            if "image" in writers:
                writers["image"].write(i, (reader.frame(i), res.image) if side_by_side else (res.image,))
            if "transmission" in writers:
                writers["transmission"].write(i, (res.transmission,))

        record = {"source": str(source), "video": info.describe(), "crf": encoding.crf,
                  "preset": encoding.preset, "side_by_side": bool(side_by_side)}
        import dask

        from ..core import threads

        # one chunk per frame (no thread pool per frame); the engine leaves the encoder its cores
        cap = (os.cpu_count() or 1) - encoder_threads()
        with dask.config.set(scheduler="synchronous"), threads.capped(cap):
            result = drive(run(dehazer, lazy(reader), opts, sink=sink, provenance=record), progress)
        for w in writers.values():
            w.close()
            if w.frames != info.n_frames:
                raise RuntimeError(f"{w.frames} of {info.n_frames} frames were written")
        result.provenance["notes"] = [*reader.notes, *(n for w in writers.values() for n in w.notes)]
    return result
