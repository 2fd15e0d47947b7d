"""The H.264 encoder of dehazed clips: :class:`VideoWriter` (a thread of its own, fed through a
bounded queue) and :class:`Encoding` (CRF and preset).

Every frame keeps its timestamp (:func:`frame_stamps`), audio is copied packet by packet
(:class:`~.audio.AudioCopy`), and a keyframe every ``keyframes`` frames is where an interrupted
clip carries on (:mod:`.resume`, which also copies a partial clip's first frames into a new
writer). Video is H.264 (CRF 18, preset veryfast: visually lossless, not lossy by surprise),
BT.709.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .._util.validate import check_number, option
from ..core.fused import to_uint8
from ..errors import ClearNetError
from .audio import AudioCopy
from .reader import ClipInfo

__all__ = ["DEFAULT_CRF", "DEFAULT_PRESET", "PRESETS", "Encoding", "VideoWriter", "check_encodable",
           "frame_stamps", "time_base"]

#: H.264 constant rate factor: 18 is visually lossless (0 = lossless, 51 = worst)
DEFAULT_CRF = 18
#: x264's speed/size trade-off; veryfast keeps encoding well ahead of dehazing (docs/video.md)
DEFAULT_PRESET = "veryfast"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
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


@dataclass(frozen=True)
class Encoding:
    """How clips are encoded: H.264 ``crf`` (0-51, lower is better, 0 lossless) and x264 ``preset``."""

    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET

    def __post_init__(self) -> None:
        object.__setattr__(self, "crf", check_number(self.crf, option("crf"), "[0, 51]", integer=True))
        if self.preset not in PRESETS:
            raise ValueError(f"{option('preset')} must be one of {', '.join(PRESETS)}, got {self.preset!r}")


def encoder_threads() -> int:
    """x264's threads: half the cores. The encoder thread is the parallelism on a small machine:
    x264's own threads there cost a quarter more CPU per frame, which the dehazing would miss
    (docs/video.md); the engine gets the other half (:func:`~.writer.dehaze_video`)."""
    return max(1, (os.cpu_count() or 1) // 2)


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
    manager: a normal exit finishes the file, an error or Ctrl-C stops the thread and closes what
    was written (the caller removes or keeps it).

    ``keyframes``: every frame whose index is a multiple of it is a keyframe (IDR, closed GOP),
    where an interrupted clip can be carried on. ``copy_from`` = (partial clip, frame K): its
    first K frames are copied packet by packet (no re-encoding) before frame K is encoded;
    :class:`~napari_clearnet.video.resume.CannotCarryOn` says when they cannot be."""

    def __init__(self, path: str | os.PathLike, info: ClipInfo, *, width: int | None = None,
                 encoding: Encoding | None = None, comment: str | None = None,
                 audio_from: str | os.PathLike | None = None, keyframes: int | None = None,
                 copy_from: tuple[str | os.PathLike, int] | None = None) -> None:
        self.path, self.info = Path(path), info
        self.width = width or info.width
        check_encodable(info.path, self.width, info.height)
        self.encoding = encoding or Encoding()
        self.comment, self.audio_from = comment, audio_from
        self.keyframes = keyframes
        self.notes: list[str] = []
        self._stamps, bumped = frame_stamps(info)
        if bumped:
            self.notes.append("frames that share a timestamp (a camera faster than the container's clock) "
                              "are written one tick apart")
        #: frames in the file: copied from a partial clip, then encoded
        self.frames = 0
        self._closed = False
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._out: Any = None
        self._floor: Fraction | None = None  # the last copied packet's decoding time (seconds)
        try:
            self._open(copy_from)
        except BaseException:
            self._finish()
            raise
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
        """Stop the encoder; the frames it finished stay in the file, which is closed properly."""
        self._closed = True
        self._stop.set()
        self._thread.join()

    # ------------------------------------------------------------------ the encoder thread
    def _open(self, copy_from: tuple[str | os.PathLike, int] | None) -> None:
        """Open the file, its video and audio streams; copy a partial clip's first frames."""
        import av

        try:
            out = self._out = av.open(str(self.path), "w")
            for key, value in self.info.metadata.items():  # title, creation_time, …
                with contextlib.suppress(ValueError, TypeError):
                    out.metadata[key] = value
            if self.comment:
                out.metadata["comment"] = self.comment
            self._stream, self._tb = self._video_stream(out)
            self._audio = AudioCopy(out, self.audio_from, self.notes)
            if copy_from is not None and copy_from[1] > 0:
                from .resume import copy_frames

                self._floor = copy_frames(out, self._stream, copy_from[0], copy_from[1], self._audio.until)
                self.frames = copy_from[1]
        except av.FFmpegError as exc:
            raise RuntimeError(f"cannot write {self.path.name}: {exc.strerror or exc}") from None

    def _finish(self) -> None:
        """Close the file (what was muxed stays readable: the container's index is written)."""
        out, self._out = self._out, None
        if out is None:
            return
        try:
            audio = getattr(self, "_audio", None)
            if audio is not None:
                audio.close()
        finally:
            out.close()

    def _encode(self) -> None:
        import av

        try:
            stream, tb = self._stream, self._tb
            convert = av.video.reformatter.VideoReformatter()  # tables kept from frame to frame
            key = av.video.frame.PictureType.I
            while True:
                item = self._next()
                if item is None:
                    break
                i, parts = item
                rgb = av.VideoFrame.from_numpy_buffer(_rgb8(parts), format="rgb24")  # no copy
                frame = convert.reformat(rgb, format=stream.pix_fmt, dst_colorspace="ITU709")
                frame.pts = int(self._stamps[i])
                frame.time_base = tb
                if self.keyframes and i % self.keyframes == 0:
                    frame.pict_type = key  # where an interrupted clip carries on
                self._audio.until(float(frame.pts * tb))
                self._mux(stream.encode(frame))
                self.frames += 1
            self._mux(stream.encode(None))
            self._audio.until(None)
        except BaseException as exc:  # handed to the writing thread
            self._error = exc if not isinstance(exc, av.FFmpegError) else RuntimeError(
                f"cannot write {self.path.name}: {exc.strerror or exc}")
        finally:
            try:
                self._finish()
            except Exception as exc:  # a full disk at the index: the file is not whole
                if self._error is None:
                    self._error = RuntimeError(f"cannot write {self.path.name}: {exc}")

    def _mux(self, packets: Any) -> None:
        """Mux encoded packets. After copied frames, a first packet whose decoding time would not
        come after the last copied one's (possible with a variable frame rate) gets the next tick."""
        for p in packets:
            if self._floor is not None and p.dts is not None:
                if p.dts * p.time_base <= self._floor:
                    p.dts = math.floor(self._floor / p.time_base) + 1
                    self._floor = p.dts * p.time_base
                else:
                    self._floor = None
            self._out.mux(p)

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
        tb = time_base(info)
        stream = out.add_stream("libx264", rate=info.rate)
        stream.width, stream.height = self.width, info.height
        # 4:2:0 needs even sizes; odd ones keep their size in 4:4:4 (fewer players show it)
        stream.pix_fmt = "yuv420p" if self.width % 2 == 0 and info.height % 2 == 0 else "yuv444p"
        stream.time_base = tb
        ctx = stream.codec_context
        ctx.time_base = tb
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1  # BT.709, as converted
        stream.options = {"crf": str(enc.crf), "preset": enc.preset, "threads": str(encoder_threads()),
                          "forced-idr": "1"}
        return stream, tb


def time_base(info: ClipInfo) -> Fraction:
    """The time base a dehazed clip's frames are stamped in: the input's, or 1/rate."""
    return info.time_base if info.timestamps is not None else 1 / info.rate


def frame_stamps(info: ClipInfo) -> tuple[np.ndarray, bool]:
    """Every frame's timestamp in :func:`time_base`: the input's, one tick later where the input
    repeats one (a 2000 fps camera in Matroska's milliseconds), so the encoder gets increasing
    times; and whether any was moved."""
    raw = (np.asarray(info.timestamps, np.int64) if info.timestamps is not None
           else np.arange(info.n_frames, dtype=np.int64))
    steps = np.arange(len(raw), dtype=np.int64)
    stamps = np.maximum.accumulate(raw - steps) + steps if len(raw) else raw
    return stamps, bool((stamps != raw).any())


class _Stopped(ClearNetError):
    """The writer was aborted."""
