"""Video files in: a clip as a lazy stack of RGB frames, decoded on demand (PyAV, its own FFmpeg).

A 2-hour recording never sits in memory: :func:`read_video` gives a dask array whose frames are
decoded when indexed. :func:`probe` reads a clip once without decoding (its packets only) to learn
how many frames it holds, where its keyframes are and whether it is complete, so any frame can be
found exactly: :class:`VideoReader` seeks to the keyframe before a frame and decodes forward, keeps
a small cache, and goes on decoding (without seeking) when frames are asked for in order; with
``readahead`` a thread of its own decodes the next frames into a bounded queue meanwhile.
Frames are shown as a player shows them: the stream's rotation is applied, and untagged HD video
is read with BT.709 colours. Any decoder failure is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VIDEO_SUFFIXES", "ClipInfo", "VideoReader", "is_video", "lazy", "probe", "read_video"]

#: files read as video (what cameras, phones, CCTV exports and editors write)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
                  ".m2ts", ".wmv", ".3gp", ".flv")
#: bytes of decoded frames a reader keeps (at least a batch of the engine, for side-by-side)
CACHE_BYTES = 256 * 2**20
#: a clip's declared length may exceed what its packets hold by this share before it is "truncated"
_LENGTH_SLACK = 0.02


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _error(path: Path, why: Any) -> ValueError:
    return ValueError(f"cannot read {path}: {why}")


@dataclass(frozen=True)
class ClipInfo:
    """What :func:`probe` learnt about a clip. ``timestamps`` are the frames' presentation times
    in ``time_base`` in display order (None where the container keeps none, as AVI: frames are
    then counted); ``seek_points`` are (frame index, timestamp to seek to) of every keyframe."""

    path: Path
    n_frames: int
    height: int
    width: int
    rate: Fraction
    time_base: Fraction
    timestamps: np.ndarray | None
    seek_points: tuple[tuple[int, int], ...]
    rotation: int
    codec: str
    audio_streams: int
    bit_rate: int | None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n_frames, self.height, self.width, 3)

    def describe(self) -> dict[str, Any]:
        """Plain values for layer metadata and reports."""
        return {"path": str(self.path), "frames": self.n_frames, "width": self.width, "height": self.height,
                "fps": float(self.rate), "codec": self.codec, "audio_streams": self.audio_streams,
                "rotation": self.rotation}


def _open(path: Path) -> Any:
    import av

    try:
        return av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise _error(path, f"not a readable video ({exc.strerror or exc}); a truncated file whose index is "
                           "missing reads like this") from None


def probe(path: str | os.PathLike) -> ClipInfo:
    """Read a clip's packets once (nothing is decoded): frame count, keyframes, timestamps. A clip
    that holds fewer frames than its header declares (a copy cut short) is refused by name."""
    from .io import _check_regular_file, check_size

    path = Path(path)
    _check_regular_file(path)
    import av

    with _open(path) as c:
        if not c.streams.video:
            raise _error(path, "it holds no video stream")
        v = c.streams.video[0]
        ctx = v.codec_context
        check_size(1, ctx.height or 1, ctx.width or 1, 3, 1)
        if not ctx.width or not ctx.height:
            raise _error(path, "its video stream declares no frame size")
        counted = c.format.name == "avi"  # AVI keeps decode times only: frames are counted
        pts, seek, n = [], [], 0
        try:
            for p in c.demux(v):
                if not p.size or p.is_discard:
                    continue
                stamp = p.dts if counted else p.pts
                if stamp is None and not counted:
                    counted = True  # a packet without a time: count frames instead
                if p.is_keyframe and stamp is not None:
                    seek.append((n, stamp))
                pts.append(stamp)
                n += 1
        except av.FFmpegError as exc:
            raise _error(path, f"damaged after {n} frames ({exc.strerror or exc})") from None
        if n == 0:
            raise _error(path, "its video stream holds no frames")
        declared = v.frames or 0
        tb = v.time_base or Fraction(1, 1000)
        rate = Fraction(v.average_rate or v.guessed_rate or 25)
        held = None if counted else float((max(pts) - min(pts)) * tb + 1 / rate)
        long = _declared_seconds(v, tb)
        if declared > n * (1 + _LENGTH_SLACK) + 1 or (
                held is not None and long is not None and long > held * (1 + _LENGTH_SLACK) + 2 / rate):
            said = f"{declared} frames" if declared > n else f"{long:.2f} s"
            raise _error(path, f"truncated or damaged: its header declares {said} but the file holds "
                               f"{n} frames; a recorder that stopped early or a copy cut short (ffmpeg -i "
                               "IN -c copy OUT.mkv keeps what is there)")
        stamps = None
        if not counted:
            stamps = np.asarray(sorted(pts), np.int64)
            order = {int(s): i for i, s in enumerate(stamps)}
            seek = [(order[int(s)], int(s)) for _, s in seek]
        rotation = _rotation(c)
        h, w = (ctx.width, ctx.height) if rotation % 180 else (ctx.height, ctx.width)
        return ClipInfo(path, n, h, w, rate, Fraction(tb), stamps, tuple(sorted(seek)) or ((0, 0),),
                        rotation, ctx.name, len(c.streams.audio), ctx.bit_rate or None)


def _declared_seconds(stream: Any, tb: Fraction) -> float | None:
    """How long the video stream says it is: its duration, or Matroska's DURATION tag."""
    if stream.duration:
        return float(stream.duration * tb)
    tag = (stream.metadata or {}).get("DURATION")
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (AttributeError, ValueError):
        return None


def _rotation(c: Any) -> int:
    """Degrees counterclockwise a player turns the frames (the stream's display matrix), 0-270:
    PyAV gives it with each decoded frame, so the first one is decoded."""
    import av

    try:
        c.seek(0)
        for frame in c.decode(video=0):
            return round((frame.rotation or 0) / 90) % 4 * 90
    except av.FFmpegError:
        pass  # the first frame is damaged: decoding says so, by frame
    return 0


def frame_rgb(frame: Any, rotation: int | None = None, reformatter: Any = None) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB, as a player shows it: untagged HD is BT.709 (PyAV
    would take BT.601), the rotation is applied (``None``: the frame's own). A ``reformatter``
    kept by the caller (one per thread) reuses its conversion tables: 4× faster at 1080p."""
    kw = {}
    if frame.colorspace in (0, 2):  # RGB/unspecified: players read HD as BT.709, SD as BT.601
        kw["src_colorspace"] = "ITU709" if frame.height >= 720 else "ITU601"
    if reformatter is None:
        rgb = frame.reformat(format="rgb24", **kw).to_ndarray()
    else:
        rgb = reformatter.reformat(frame, format="rgb24", **kw).to_ndarray()
    turn = (frame.rotation if rotation is None else rotation) or 0
    k = round(turn / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


# ------------------------------------------------------------------------------------ decoding
_END = object()


class _Cursor:
    """Decodes a clip in order from frame ``start`` (after a seek to the keyframe before it); with
    ``readahead`` > 0 a thread decodes up to that many frames ahead into a bounded queue."""

    def __init__(self, info: ClipInfo, start: int, readahead: int) -> None:
        self.info = info
        self.next = start
        self._stop = threading.Event()
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()  # used by the one thread that decodes
        self._gen = self._decode(start)
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if readahead > 0:
            self._queue = queue.Queue(maxsize=readahead)
            self._thread = threading.Thread(target=self._produce, name="clearnet-decode", daemon=True)
            self._thread.start()

    def _decode(self, start: int) -> Iterator[tuple[int, np.ndarray]]:
        k, stamp = max((p for p in self.info.seek_points if p[0] <= start), default=(0, 0))
        for j, frame in self._frames(k, stamp):
            if j > start and k > 0:  # the seek landed past the frame (odd streams): from the start
                yield from self._decode(0) if start == 0 else self._from_start(start)
                return
            if j >= start:
                yield j, frame_rgb(frame, self.info.rotation, self._reformatter)

    def _from_start(self, start: int) -> Iterator[tuple[int, np.ndarray]]:
        for j, frame in self._frames(0, 0):
            if j >= start:
                yield j, frame_rgb(frame, self.info.rotation, self._reformatter)

    def _frames(self, k: int, stamp: int) -> Iterator[tuple[int, Any]]:
        """(index, decoded frame) from keyframe ``k`` on; indices come from the timestamps where the
        container keeps them, else by counting."""
        import av

        info = self.info
        with _open(info.path) as c:
            v = c.streams.video[0]
            v.thread_type = "AUTO"
            if k > 0:
                c.seek(stamp, stream=v, backward=True)
            i = k
            try:
                for packet in c.demux(v):
                    for frame in packet.decode():
                        if self._stop.is_set():
                            return
                        if info.timestamps is not None and frame.pts is not None:
                            j = int(np.searchsorted(info.timestamps, frame.pts))
                            i = j if j < info.n_frames and info.timestamps[j] == frame.pts else i
                        yield i, frame
                        i += 1
            except av.FFmpegError as exc:
                raise _error(info.path, f"damaged at frame {i} ({exc.strerror or exc})") from None

    def _produce(self) -> None:
        last: Any = _END
        try:
            for item in self._gen:
                if not self._offer(item):
                    return
        except BaseException as exc:  # handed to the reading thread
            last = exc
        self._offer(last)

    def _offer(self, item: Any) -> bool:
        """Put ``item`` in the queue, waiting for room unless the cursor is closed (False)."""
        assert self._queue is not None
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def take(self) -> tuple[int, np.ndarray]:
        item = next(self._gen, _END) if self._queue is None else self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is _END:
            raise _error(self.info.path, f"frame {self.next} of {self.info.n_frames} could not be decoded "
                                         "(the file ends early: truncated or damaged)")
        self.next = item[0] + 1
        return item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    self._queue.get(timeout=0.05)  # type: ignore[union-attr]
            self._thread.join()
        self._gen.close()


class VideoReader:
    """A clip as an array-like (T, H, W, 3) uint8 for dask and numpy-style indexing; frames are
    decoded on demand. Thread-safe; pickles by path (for dask's worker processes)."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path: str | os.PathLike, *, readahead: int = 0, info: ClipInfo | None = None) -> None:
        self.info = info or probe(path)
        self.readahead = int(readahead)
        frame_bytes = self.info.height * self.info.width * 3
        self.cache_frames = max(2, min(64, CACHE_BYTES // frame_bytes))
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cursor: _Cursor | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.info.shape

    def __len__(self) -> int:
        return self.info.n_frames

    def __getstate__(self) -> dict[str, Any]:
        return {"info": self.info, "readahead": self.readahead}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["info"].path, readahead=state["readahead"], info=state["info"])

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._cursor is not None:
                self._cursor.close()
                self._cursor = None
            self._cache.clear()

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (negative counts from the end) as (H, W, 3) uint8; read-only."""
        n = self.info.n_frames
        if not -n <= i < n:
            raise IndexError(f"frame {i} is out of range for a clip of {n} frames")
        i %= n
        with self._lock:
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
            cur = self._cursor
            key = max((p[0] for p in self.info.seek_points if p[0] <= i), default=0)
            if cur is None or cur.next > i or key > cur.next:  # behind us, or a keyframe is nearer
                if cur is not None:
                    cur.close()
                cur = self._cursor = _Cursor(self.info, i, self.readahead)
            while True:
                j, arr = cur.take()
                arr.flags.writeable = False
                self._cache[j] = arr
                while len(self._cache) > self.cache_frames:
                    self._cache.popitem(last=False)
                if j >= i:
                    if j != i:
                        raise _error(self.info.path, f"frame {i} is missing from the decoded stream")
                    return arr

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.frame(i)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, int | np.integer):
            return self.frame(int(first))[rest] if rest else self.frame(int(first))
        idx = range(len(self))[first] if isinstance(first, slice) else np.arange(len(self))[first]
        out = np.empty((len(idx), *self.shape[1:]), np.uint8)
        for k, i in enumerate(idx):
            out[k] = self.frame(int(i))
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)


def container_comment(path: str | os.PathLike) -> str | None:
    """The comment a clip's container records (where our outputs keep their input's fingerprint)."""
    import av

    try:
        with av.open(str(path)) as c:
            return c.metadata.get("comment") or c.metadata.get("COMMENT")
    except (av.FFmpegError, OSError, ValueError):
        return None


def lazy(reader: VideoReader) -> Any:
    """A reader as a dask array, one chunk per frame (what the run loop reads frame by frame)."""
    import dask.array as da

    from .files import fingerprint

    info = reader.info
    name = f"clip-{fingerprint(info.path)}-{info.n_frames}"
    return da.from_array(reader, chunks=(1, info.height, info.width, 3), name=name, lock=False,
                         asarray=True, meta=np.empty((0, 0, 0, 0), np.uint8))


def read_video(path: str | os.PathLike, *, readahead: int = 0) -> Any:
    """A clip as a lazy dask array (T, H, W, 3) uint8, one chunk per frame, decoded when computed
    (the napari reader and the API; ``nc.dehaze`` reads it frame by frame). ``readahead`` frames
    are decoded ahead in a thread when frames are read in order."""
    return lazy(VideoReader(path, readahead=readahead))
