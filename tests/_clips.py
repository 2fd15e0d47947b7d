"""Odd clips for the video robustness tests (from the 2026-12-07 review's gen.py, PyAV only).

Frame i of every clip is the test image of seed i rolled 2·i pixels (:func:`frame_img`), so
:func:`which` tells which frame a decoded image is, whatever codec or container carried it.
"""

from __future__ import annotations

import fractions
import random
from pathlib import Path

import av
import numpy as np
from _gen import frame_img


def which(img: np.ndarray, n: int = 40) -> int:
    """Which frame index (below ``n``) an RGB frame shows."""
    h, w = img.shape[:2]
    g = img.astype(float).mean(-1).ravel()
    return int(np.argmax([np.corrcoef(g, frame_img(i, h, w).astype(float).mean(-1).ravel())[0, 1]
                          for i in range(n)]))


def clip(out: Path, frames: int = 10, w: int = 80, h: int = 64, codec: str = "libx264", pix: str = "yuv420p",
         gop: int | None = None, bframes: int | None = None, tb: int = 1000, step: int = 40,
         metadata: dict[str, str] | None = None, second_video: bool = False) -> Path:
    """A clip whose frame i has pts i·step in time base 1/tb."""
    tbf = fractions.Fraction(1, tb)
    with av.open(str(out), "w") as c:
        for k, v in (metadata or {}).items():
            c.metadata[k] = v
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix
        s.time_base = s.codec_context.time_base = tbf
        if gop:
            s.codec_context.gop_size = gop
        if bframes is not None:
            s.codec_context.max_b_frames = bframes
        s2 = None
        if second_video:
            s2 = c.add_stream("mjpeg", rate=25)
            s2.width, s2.height, s2.pix_fmt = w, h, "yuvj420p"
            s2.time_base = s2.codec_context.time_base = tbf
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(frame_img(i, h, w), format="rgb24")
            f.pts, f.time_base = i * step, tbf
            c.mux(s.encode(f))
            if s2 is not None:
                c.mux(s2.encode(f.reformat(format="yuvj420p")))
        c.mux(s.encode())
        if s2 is not None:
            c.mux(s2.encode())
    return out


def avi(out: Path, frames: int = 20, codec: str = "mpeg4", pix: str = "yuv420p", bframes: int | None = None,
        gop: int | None = None, drop: tuple[int, ...] = ()) -> Path:
    """An AVI at 25 fps (time base 1/25: frame slots); dropped frames leave empty slots."""
    tbf = fractions.Fraction(1, 25)
    with av.open(str(out), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 80, 64, pix
        s.time_base = s.codec_context.time_base = tbf
        if gop:
            s.codec_context.gop_size = gop
        if bframes is not None:
            s.codec_context.max_b_frames = bframes
        for i in range(frames):
            if i in drop:
                continue
            f = av.VideoFrame.from_ndarray(frame_img(i), format="rgb24")
            f.pts, f.time_base = i, tbf
            c.mux(s.encode(f))
        c.mux(s.encode())
    return out


def _packets(src: Path) -> list:
    with av.open(str(src)) as s_in:
        return [p for p in s_in.demux(s_in.streams.video[0]) if p.size]


def remux(src: Path, out: Path, skip: int = 0, last_seconds: float | None = None) -> Path:
    """SRC without its first ``skip`` packets (a cut between keyframes); ``last_seconds``: the
    last frame is shown that long."""
    with av.open(str(src)) as s_in:
        vin = s_in.streams.video[0]
        packets = [p for p in s_in.demux(vin) if p.size]
        last = max(p.pts for p in packets)
        with av.open(str(out), "w") as o:
            vo = o.add_stream_from_template(vin)
            vo.time_base = vin.time_base
            for p in packets[skip:]:
                if last_seconds and p.pts == last:
                    p.duration = int(last_seconds / vin.time_base)
                p.stream = vo
                o.mux(p)
    return out


def damage(src: Path, out: Path, k: int, seed: int = 7) -> Path:
    """SRC with the middle of video packet ``k`` overwritten with noise."""
    with av.open(str(src)) as c:
        pos, size = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size][k]
    d = bytearray(src.read_bytes())
    r = random.Random(seed)
    for i in range(pos + 10, pos + size - 5):
        d[i] = r.randrange(256)
    out.write_bytes(bytes(d))
    return out


def sizechange(out: Path) -> Path:
    """An MJPEG clip: 5 frames of 80×64, then 5 of 48×32 (a stream that changed resolution)."""
    tbf = fractions.Fraction(1, 1000)

    def enc(w: int, h: int, start: int, n: int) -> list:
        cc = av.CodecContext.create("mjpeg", "w")
        cc.width, cc.height, cc.pix_fmt, cc.time_base = w, h, "yuvj420p", tbf
        pk = []
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frame_img(start + i, h, w), format="rgb24")
            f.pts, f.time_base = (start + i) * 40, tbf
            pk += cc.encode(f)
        return pk + list(cc.encode(None))

    with av.open(str(out), "w") as o:
        s = o.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt, s.time_base = 80, 64, "yuvj420p", tbf
        for k, p in enumerate(enc(80, 64, 0, 5) + enc(48, 32, 5, 5)):
            p.stream, p.time_base = s, tbf
            p.pts = p.dts = k * 40
            p.duration = 40
            o.mux(p)
    return out


def decoded_in_order(path: Path) -> list[int]:
    """Which frame each picture is, decoding the file in order (what a player shows)."""
    with av.open(str(path)) as c:
        return [which(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
