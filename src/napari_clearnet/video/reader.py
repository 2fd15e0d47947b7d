"""Video files in: a clip as a lazy stack of RGB frames, decoded on demand (PyAV, its own FFmpeg).

A 2-hour recording never sits in memory: :func:`read_video` gives a dask array whose frames are
decoded when indexed. :func:`~napari_clearnet.video_probe.probe` reads a clip once without
decoding (its packets only) and numbers them; :class:`VideoReader` seeks to the keyframe before a
frame and decodes forward, and every decoded frame carries the number of the packet it came from
through the decoder, so it is the frame asked for, never a neighbour (B-frames, open GOPs, AVI,
equal timestamps). A small cache is kept, and frames asked for in order are decoded without
seeking; with ``readahead`` a thread of its own decodes the next frames into a bounded queue.

A frame the decoder rejects (a damaged packet) is shown as the frame before it (``damaged=
"repeat"``, counted and named in :attr:`VideoReader.notes`) or stops the reader by name
(``damaged="stop"``); a frame of another size than the clip's is scaled to it the same way.
Frames are shown as a player shows them: the stream's rotation is applied, and untagged HD video
is read with BT.709 colours. Any decoder failure is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClearNetError
from .probe import VIDEO_SUFFIXES, ClipInfo, container_comment, is_video, open_container, probe
from .repair import DAMAGED, VideoWarning, _Damage

__all__ = ["DAMAGED", "VIDEO_SUFFIXES", "ClipInfo", "VideoReader", "VideoWarning", "container_comment",
           "is_video", "lazy", "probe", "read_video"]

#: bytes of decoded frames a reader keeps (at least a batch of the engine, for side-by-side)
CACHE_BYTES = 256 * 2**20
def _error(path: Path, why: Any) -> ValueError:
    return ValueError(f"cannot read {path}: {why}")


_open = open_container


def frame_rgb(frame: Any, rotation: int | None = None, reformatter: Any = None,
              size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB, as a player shows it: untagged HD is BT.709 (PyAV
    would take BT.601), the rotation is applied (``None``: the frame's own). A ``reformatter``
    kept by the caller (one per thread) reuses its conversion tables: 4× faster at 1080p.
    ``size`` (width, height before rotation) scales the frame to it."""
    kw: dict[str, Any] = {} if size is None else {"width": size[0], "height": size[1]}
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


class _Restart(ClearNetError):
    """A seek landed where the frames cannot be named, or past the frame asked for."""


class _Cursor:
    """Decodes a clip in order from frame ``start`` (after a seek to the keyframe before it); with
    ``readahead`` > 0 a thread decodes up to that many frames ahead into a bounded queue. Every
    index from ``start`` on is given once, in order: a frame the decoder does not give is repeated
    from the one before it (:class:`_Damage`)."""

    def __init__(self, info: ClipInfo, start: int, readahead: int, damage: _Damage,
                 hwaccel: str | None = None) -> None:
        self.info = info
        self.hwaccel = hwaccel
        self.next = start
        self._damage = damage
        self._stop = threading.Event()
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()  # used by the one thread that decodes
        native = (info.width, info.height) if info.rotation % 180 == 0 else (info.height, info.width)
        self._native = native
        self._gen = self._decode(start)
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if readahead > 0:
            self._queue = queue.Queue(maxsize=readahead)
            self._thread = threading.Thread(target=self._produce, name="clearnet-decode", daemon=True)
            self._thread.start()

    def _decode(self, start: int) -> Iterator[tuple[int, np.ndarray]]:
        point = max((p for p in self.info.seek_points if p[0] <= start), default=(0, 0))
        if point[0] > 0:
            try:
                yield from self._fill(start, point)
                return
            except _Restart:
                pass  # _fill raises it before it gives any frame
        yield from self._fill(start, None)

    def _fill(self, start: int, point: tuple[int, int] | None) -> Iterator[tuple[int, np.ndarray]]:
        """Frames ``start``… decoded from ``point`` (a keyframe; None: the start), gaps repeated."""
        expected = point[0] if point else 0
        prev: np.ndarray | None = None
        for j, frame in self._frames(point):
            if j < expected:
                continue  # a picture before the keyframe we sought to (an open GOP), or a repeat
            odd_size = (frame.width, frame.height) != self._native  # read otherwise after a seek
            if prev is None and point is not None and (j > start or odd_size):
                raise _Restart
            rgb = self._rgb(j, frame)
            if rgb is None:
                continue
            while expected < j:
                if expected >= start:
                    self._damage.repeat(expected)
                    yield expected, prev if prev is not None else rgb
                expected += 1
            if j >= start:
                yield j, rgb
            prev, expected = rgb, j + 1
        if prev is None:
            raise _error(self.info.path, f"no frame from frame {expected} on can be decoded (damaged data)")
        while expected < self.info.n_frames:
            if expected >= start:
                self._damage.repeat(expected)
                yield expected, prev
            expected += 1

    def _rgb(self, j: int, frame: Any) -> np.ndarray | None:
        """The frame as RGB at the clip's size (scaled, and named, where the stream changed it)."""
        import av

        size = None
        if (frame.width, frame.height) != self._native:
            self._damage.scale(j, frame.width, frame.height)
            size = self._native
        try:
            return frame_rgb(frame, self.info.rotation, self._reformatter, size)
        except (av.FFmpegError, ValueError):
            return None  # a frame that cannot be converted counts as damaged

    def _frames(self, point: tuple[int, int] | None) -> Iterator[tuple[int, Any]]:
        """(index, decoded frame) from keyframe ``point`` on. A frame's index comes from the number
        of its packet, handed through the decoder (``opaque``); packets are numbered by their byte
        position, so a seek that lands elsewhere than asked is still read right."""
        import av

        info = self.info
        with _open(info.path, self.hwaccel) as c:
            v = c.streams[info.stream_index] if info.stream_index is not None else c.streams.video[0]
            v.thread_type = "AUTO"
            ctx = v.codec_context
            ctx.copy_opaque = True
            number: int | None = -1
            if point is not None:
                c.seek(point[1], stream=v, backward=True)
                number = None
            counted = 0
            try:
                for packet in c.demux(v):
                    if self._stop.is_set():
                        return
                    if not packet.size or packet.is_discard:
                        continue
                    k = info.packet_number(packet.pos)
                    if k is None and number is None:
                        raise _Restart  # cannot tell where the seek landed
                    number = k if k is not None else number + 1  # type: ignore[operator]
                    packet.opaque = (number,)  # a new object: PyAV keys opaque values by id()
                    for frame in self._send(ctx, packet):
                        j = self._index(frame, counted)
                        counted += 1
                        if j is not None:
                            yield j, frame
                for frame in self._send(ctx, None):
                    j = self._index(frame, counted)
                    counted += 1
                    if j is not None:
                        yield j, frame
            except av.FFmpegError as exc:
                raise _error(info.path, f"damaged after frame {counted} ({exc.strerror or exc})") from None

    def _send(self, ctx: Any, packet: Any) -> list[Any]:
        """Decode one packet; data the decoder rejects gives no frame (the gap is filled)."""
        import av

        try:
            return list(ctx.decode(packet))
        except av.FFmpegError:
            return []

    def _index(self, frame: Any, counted: int) -> int | None:
        order = self.info.order
        if order is None:
            return counted
        k = frame.opaque
        k = k[0] if isinstance(k, tuple) and k else None
        if isinstance(k, int) and 0 <= k < len(order):
            return int(order[k]) if order[k] >= 0 else None
        return None

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
    decoded on demand. ``damaged``: "repeat" shows a frame that cannot be decoded as the one
    before it (counted in :attr:`notes`; a :class:`VideoWarning` the first time when ``warn``),
    "stop" raises a ``ValueError`` naming it. Thread-safe; pickles by path (for dask's workers)."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path: str | os.PathLike, *, readahead: int = 0, info: ClipInfo | None = None,
                 damaged: str = "repeat", warn: bool = True, hwaccel: str | None = None) -> None:
        if damaged not in DAMAGED:
            raise ValueError(f"damaged must be one of {', '.join(DAMAGED)}, got {damaged!r}")
        self.info = info or probe(path)
        #: decode on this device where FFmpeg can ("cuda": NVDEC), in software elsewhere
        self.hwaccel = hwaccel
        self.readahead = int(readahead)
        self.damaged, self.warn = damaged, warn
        self._damage = _Damage(self.info, damaged, warn)
        frame_bytes = self.info.height * self.info.width * 3
        self.cache_frames = max(2, min(64, CACHE_BYTES // frame_bytes))
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cursor: _Cursor | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.info.shape

    @property
    def notes(self) -> list[str]:
        """What a reader of this clip should know: what is left out, and what was repaired."""
        return [*self.info.notes, *self._damage.notes()]

    def __len__(self) -> int:
        return self.info.n_frames

    def __getstate__(self) -> dict[str, Any]:
        return {"info": self.info, "readahead": self.readahead, "damaged": self.damaged, "warn": self.warn,
                "hwaccel": self.hwaccel}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["info"].path, readahead=state["readahead"], info=state["info"],  # type: ignore[misc]
                      damaged=state.get("damaged", "repeat"), warn=state.get("warn", True),
                      hwaccel=state.get("hwaccel"))

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
                cur = self._cursor = _Cursor(self.info, i, self.readahead, self._damage, self.hwaccel)
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


def lazy(reader: VideoReader) -> Any:
    """A reader as a dask array, one chunk per frame (what the run loop reads frame by frame)."""
    import dask.array as da

    from .._util.files import fingerprint

    info = reader.info
    name = f"clip-{fingerprint(info.path)}-{info.n_frames}"
    return da.from_array(reader, chunks=(1, info.height, info.width, 3), name=name, lock=False,
                         asarray=True, meta=np.empty((0, 0, 0, 0), np.uint8))


def read_video(path: str | os.PathLike, *, readahead: int = 0, damaged: str = "repeat") -> Any:
    """A clip as a lazy dask array, decoded when computed.

    What the frames leave out of the file (alpha, bits beyond 8, other streams) and frames that
    had to be repaired are told as a :class:`VideoWarning`.

    Parameters
    ----------
    path : str or path
        The video file.
    readahead : int, default 0
        Frames decoded ahead in a thread when frames are read in order.
    damaged : {"repeat", "stop"}, default "repeat"
        A frame that cannot be decoded: show the one before it, or fail (see :class:`VideoReader`).

    Returns
    -------
    dask.array.Array
        (T, H, W, 3) uint8, one chunk per frame (``nc.dehaze`` reads it frame by frame).
    """
    reader = VideoReader(path, readahead=readahead, damaged=damaged)
    for note in reader.info.notes:
        warnings.warn(f"{reader.info.path}: {note}", VideoWarning, stacklevel=2)
    return lazy(reader)
