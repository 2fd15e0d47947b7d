"""What a clip holds, learnt once from its packets without decoding them (:func:`probe`).

A frame of a clip is named by the packet it was decoded from: :func:`probe` numbers the video
packets in the order the file stores them (decode order) and gives each its index in display
order, the order of presentation timestamps (equal timestamps keep the file's order; a clip
without timestamps is counted). The reader hands that number through the decoder with each packet
(FFmpeg's ``opaque``), so every decoded frame says which one it is, whatever the seek, the
B-frames, the container's timing or a damaged packet did. Files are judged by their content, not
their suffix, and what the reader leaves out (alpha, bits beyond 8, other streams) is named in
``ClipInfo.notes``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VIDEO_SUFFIXES", "ClipInfo", "container_comment", "is_video", "probe", "sniff"]

#: files read as video (what cameras, phones, CCTV exports and editors write)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
                  ".m2ts", ".wmv", ".3gp", ".flv")
#: a clip's declared length may exceed what its packets hold by this share before it is "truncated"
_LENGTH_SLACK = 0.02
#: the first bytes of image files FFmpeg would also open (as a one-frame "clip")
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                (b"GIF8", "a GIF image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
                (b"BM", "a BMP image"), (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
                (b"qoif", "a QOI image"), (b"8BPS", "a Photoshop image"))
#: container metadata that describes the file, not the recording (never copied to an output)
_FILE_KEYS = {"comment", "encoder", "major_brand", "minor_version", "compatible_brands", "duration"}


def is_video(path: str | os.PathLike) -> bool:
    """Named as a video file (its content is checked when it is read: :func:`sniff`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _error(path: Path, why: Any) -> ValueError:
    return ValueError(f"cannot read {path}: {why}")


def sniff(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a video by its first bytes ("it is a PNG image, …"), or None when it
    may be one. FFmpeg would read a PNG named ``.mp4`` as a one-frame clip; we refuse it by name."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "it is an empty file (0 bytes), not a video"
    for magic, what in _IMAGE_MAGIC:
        if head.startswith(magic):
            return f"it is {what}, not a video (read by its content; rename it to its own suffix)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "it is a WebP image, not a video (read by its content; rename it to .webp)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head[:-3].decode("utf-8", "ignore") if len(head) == 512 else None
    if text and all(ch.isprintable() or ch in "\r\n\t\f" for ch in text):
        return "it is a text file, not a video"
    return None


@dataclass(frozen=True)
class ClipInfo:
    """What :func:`probe` learnt about a clip. ``timestamps`` are the frames' presentation times
    in ``time_base`` in display order (None where frames are only counted); ``seek_points`` are
    (frame index, timestamp to seek to) of keyframes. ``order`` gives each counted video packet (in
    decode order) its frame index, -1 for packets that give no frame of the clip (before the first
    keyframe); ``pos_keys``/``pos_packets`` find a packet's number from its byte position.
    ``order`` None: frames are counted as they come out of the decoder, from the start."""

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
    order: np.ndarray | None = None
    pos_keys: np.ndarray | None = None
    pos_packets: np.ndarray | None = None
    stream_index: int | None = None
    notes: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n_frames, self.height, self.width, 3)

    def describe(self) -> dict[str, Any]:
        """Plain values for layer metadata and reports."""
        return {"path": str(self.path), "frames": self.n_frames, "width": self.width, "height": self.height,
                "fps": float(self.rate), "codec": self.codec, "audio_streams": self.audio_streams,
                "rotation": self.rotation, "notes": list(self.notes)}

    def packet_number(self, pos: int | None) -> int | None:
        """The decode-order number of the packet at byte ``pos`` (None: unknown)."""
        if self.pos_keys is None or pos is None or pos < 0:
            return None
        k = int(np.searchsorted(self.pos_keys, pos))
        if k < len(self.pos_keys) and self.pos_keys[k] == pos:
            return int(self.pos_packets[k])  # type: ignore[index]
        return None


def open_container(path: Path, hwaccel: str | None = None) -> Any:
    """The clip opened for reading; ``hwaccel`` (e.g. "cuda": NVDEC) decodes on that device where
    FFmpeg can, and in software where it cannot (the frames are the same either way)."""
    import av

    try:
        if hwaccel:
            from av.codec.hwaccel import HWAccel

            try:
                accel = HWAccel(device_type=hwaccel, allow_software_fallback=True)
                return av.open(str(path), "r", hwaccel=accel)
            except (av.FFmpegError, ValueError, NotImplementedError):
                pass  # no such device here: software decoding
        return av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise _error(path, f"not a readable video ({exc.strerror or exc}); a truncated file whose index is "
                           "missing reads like this") from None


def video_stream(c: Any) -> Any:
    """The clip's picture stream: the first video stream that is not cover art."""
    from av.stream import Disposition

    for s in c.streams.video:
        if not s.disposition & Disposition.attached_pic:
            return s
    return None


def probe(path: str | os.PathLike) -> ClipInfo:
    """Read a clip's packets once (nothing but the first frame is decoded): frames, keyframes,
    timestamps. A file that is no video, or holds less than its header declares, is refused by name."""
    from ..io.images import _check_regular_file, check_size

    path = Path(path)
    _check_regular_file(path)
    why = sniff(path)
    if why:
        raise _error(path, why)
    import av

    with open_container(path) as c:
        v = video_stream(c)
        if v is None:
            raise _error(path, "it holds no video stream")
        ctx = v.codec_context
        if ctx is None:
            raise _error(path, "its video codec is not one FFmpeg can decode "
                               "(a damaged header, or a codec this build lacks)")
        check_size(1, ctx.height or 1, ctx.width or 1, 3, 1)
        if not ctx.width or not ctx.height:
            raise _error(path, "its video stream declares no frame size")
        pts, pos, keys, seek_ts = [], [], [], []
        ends = 0  # where the last packet ends (its time plus its duration), in the time base
        try:
            for p in c.demux(v):
                if not p.size or p.is_discard:
                    continue
                pts.append(p.pts)
                pos.append(-1 if p.pos is None else p.pos)
                keys.append(bool(p.is_keyframe))
                seek_ts.append(p.dts if p.dts is not None else p.pts)
                if p.pts is not None:
                    ends = max(ends, p.pts + (p.duration or 0))
        except av.FFmpegError as exc:
            raise _error(path, f"damaged after {len(pts)} frames ({exc.strerror or exc})") from None
        if not pts:
            raise _error(path, "its video stream holds no frames")
        tb = Fraction(v.time_base or Fraction(1, 1000))
        notes: list[str] = []
        order, stamps, n = _frame_order(pts, keys, bool(ctx.has_b_frames), notes)
        if n == 0:
            raise _error(path, "none of its packets starts a picture that can be decoded (no keyframe)")
        rate = _rate(v, stamps, tb)
        _check_complete(path, c, v, len(pts), stamps, tb, rate, float(ends * tb))
        seek = _seek_points(order, keys, seek_ts)
        pos_arr = np.asarray(pos, np.int64)
        known = pos_arr >= 0
        pos_keys = pos_packets = None
        if known.all() and len(np.unique(pos_arr)) == len(pos_arr):
            by_pos = np.argsort(pos_arr, kind="stable")
            pos_keys, pos_packets = pos_arr[by_pos], by_pos.astype(np.int64)
        else:
            seek = [(0, 0)]  # packets cannot be told apart after a seek: decode from the start
        notes += _left_out(c, v)
        rotation = _rotation(c, v)
        h, w = (ctx.width, ctx.height) if rotation % 180 else (ctx.height, ctx.width)
        meta = {str(k): str(val) for k, val in (c.metadata or {}).items() if str(k).lower() not in _FILE_KEYS}
        return ClipInfo(path, n, h, w, rate, tb, stamps, tuple(seek), rotation, ctx.name,
                        len(c.streams.audio), ctx.bit_rate or None, order, pos_keys, pos_packets, v.index,
                        tuple(notes), meta)


def _frame_order(pts: list[int | None], keys: list[bool], reorders: bool,
                 notes: list[str]) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """(display index of every packet, -1 for none, or None: counted as decoded; presentation
    times in display order or None; number of frames).

    Packets before the first keyframe, and pictures shown before it that the file stores after it
    (an open GOP), reference pictures that are not in the file: they give no frame."""
    m = len(pts)
    first = keys.index(True) if True in keys else 0
    timed = all(t is not None for t in pts)
    valid = np.zeros(m, bool)
    valid[first:] = True
    if timed:
        t = np.asarray(pts, np.int64)
        valid &= t >= t[first]
    lost = m - int(valid.sum())
    if lost:
        notes.append(f"its first {lost} frame{'s' if lost > 1 else ''} could not be decoded: the clip starts "
                     "between keyframes, so they reference a part of the recording that is not in the file")
    order = np.full(m, -1, np.int64)
    idx = np.flatnonzero(valid)
    if timed:
        t = np.asarray(pts, np.int64)[idx]
        by_time = np.lexsort((idx, t))  # equal timestamps keep the file's order
        if reorders and len(t) > 2 and (np.diff(t) > 0).all():
            # times that follow the storage order although pictures are reordered are guesses
            # (H.264 in AVI): only decoding from the start tells the display order
            return None, t[by_time], len(idx)
        order[idx[by_time]] = np.arange(len(idx))
        return order, t[by_time], len(idx)
    if reorders:
        return None, None, len(idx)  # no times and reordered pictures: counted as decoded
    order[idx] = np.arange(len(idx))
    return order, None, len(idx)


def _rate(v: Any, stamps: np.ndarray | None, tb: Fraction) -> Fraction:
    """Frames per second: the typical step between timestamps where there are some (a container's
    declared rate can be its time base, 1000 for Matroska or a 1 ms AVI), else the declared one."""
    declared = Fraction(v.average_rate or v.guessed_rate or 25)
    if stamps is not None and len(stamps) > 1:
        steps = np.diff(stamps)
        step = float(np.median(steps[steps > 0])) if (steps > 0).any() else 0.0
        if step > 0:
            typical = Fraction(1 / (step * tb)).limit_denominator(1001)
            if not 0.5 < float(typical / declared) < 2:
                return typical
    return declared


def _seek_points(order: np.ndarray | None, keys: list[bool],
                 seek_ts: list[int | None]) -> list[tuple[int, int]]:
    """(frame index, timestamp) of keyframes a seek may start from; frame 0 is always one."""
    points = [(0, 0)]
    if order is None:
        return points
    for k, is_key in enumerate(keys):
        if is_key and order[k] > 0 and seek_ts[k] is not None:
            points.append((int(order[k]), int(seek_ts[k])))
    return sorted(set(points))


def _check_complete(path: Path, c: Any, v: Any, held: int, stamps: np.ndarray | None, tb: Fraction,
                    rate: Fraction, packets_end: float) -> None:
    """Refuse a copy cut short, judged by the last timestamp (where a clip ends), not the header's
    frame count alone: AVI counts frame slots (dropped frames too) and Matroska's DURATION tag
    is the stream's end time, not its span."""
    counts_slots = c.format.name == "avi"
    declared = v.frames or 0
    end = None if stamps is None else max(float(int(stamps.max()) * tb + 1 / rate), packets_end)
    said = None
    if counts_slots and end is not None and declared:
        if declared * tb > end * (1 + _LENGTH_SLACK) + 2 / rate:
            said = f"{float(declared * tb):.2f} s ({declared} frame slots)"
    elif declared > held * (1 + _LENGTH_SLACK) + 1:
        said = f"{declared} frames"
    if said is None and end is not None and not counts_slots:
        long = _declared_end(v, tb)
        if long is not None and long > end * (1 + _LENGTH_SLACK) + 2 / rate:
            said = f"{long:.2f} s"
    if said:
        raise _error(path, f"truncated or damaged: its header declares {said} but the file holds {held} "
                           f"frames, up to {end or 0:.2f} s; a recorder that stopped early or a copy cut "
                           "short (ffmpeg -i IN -c copy OUT.mkv keeps what is there)")


def _declared_end(stream: Any, tb: Fraction) -> float | None:
    """Where the video stream says it ends: its start plus duration, or Matroska's DURATION tag
    (the end time of the stream)."""
    if stream.duration:
        return float(((stream.start_time or 0) + stream.duration) * tb)
    tag = (stream.metadata or {}).get("DURATION")
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (AttributeError, ValueError):
        return None


def _left_out(c: Any, v: Any) -> list[str]:
    """What a dehazed clip will not hold, named (the reader gives 8-bit RGB of one stream)."""
    notes = []
    fmt = v.codec_context.format
    if fmt is not None:
        if any(comp.is_alpha for comp in fmt.components):
            notes.append(f"its alpha channel ({fmt.name}) is not kept: frames are read as RGB")
        bits = max((comp.bits for comp in fmt.components), default=8)
        if bits > 8:
            notes.append(f"its {bits}-bit samples ({fmt.name}) are read and written with 8 bits")
    others = [s for s in c.streams.video if s is not v]
    if others:
        notes.append(f"{len(others)} other video stream{'s' if len(others) > 1 else ''} (another angle or "
                     "cover art) not read: only the first is dehazed")
    for kind, streams in (("subtitle", c.streams.subtitles), ("data", c.streams.data),
                          ("attachment", getattr(c.streams, "attachments", ()))):
        if streams:
            notes.append(f"its {len(streams)} {kind} stream{'s' if len(streams) > 1 else ''} not copied")
    return notes


def _rotation(c: Any, v: Any) -> int:
    """Degrees counterclockwise a player turns the frames (the stream's display matrix), 0-270:
    PyAV gives it with each decoded frame, so the first one is decoded."""
    import av

    try:
        c.seek(0)
        for packet in c.demux(v):
            for frame in packet.decode():
                return round((frame.rotation or 0) / 90) % 4 * 90
    except av.FFmpegError:
        pass  # the first frame is damaged: decoding says so, by frame
    return 0


def container_comment(path: str | os.PathLike) -> str | None:
    """The comment a clip's container records (where our outputs keep their input's fingerprint)."""
    import av

    try:
        with av.open(str(path)) as c:
            return c.metadata.get("comment") or c.metadata.get("COMMENT")
    except (av.FFmpegError, OSError, ValueError):
        return None
