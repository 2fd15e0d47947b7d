"""Generators copied from the robustness review's gen.py (2026-12-07, appendix A), so the
findings' repros run from the project alone: the review's test photo and its clips."""

from __future__ import annotations

import fractions

import numpy as np


def hazy(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """The review's hazy-looking 8-bit RGB test photo (``gen.py photo``)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    j = np.stack([(x % 17) / 17, (y % 13) / 13, ((x + y) % 11) / 11], -1) * 0.6 + 0.1
    j += rng.random((h, w, 3)) * 0.1
    t = np.exp(-1.5 * (1 - y / h))[..., None]
    return (np.clip(j * t + 0.85 * (1 - t), 0, 1) * 255).round().astype(np.uint8)


def frame_img(i: int, h: int = 64, w: int = 80) -> np.ndarray:
    """Frame ``i`` of a generated clip: the photo of seed ``i`` rolled 2·i pixels."""
    return np.ascontiguousarray(np.roll(hazy(max(h, 2), max(w, 2), i)[:h, :w], 2 * i, axis=1))


def clip(out: str, frames: int = 10, w: int = 80, h: int = 64, codec: str = "libx264",
         pix: str = "yuv420p") -> None:
    """An H.264 clip of ``frames`` frames at 25 fps (``gen.py clip``)."""
    import av

    tbf = fractions.Fraction(1, 1000)
    with av.open(out, "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix
        s.time_base = tbf
        s.codec_context.time_base = tbf
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(frame_img(i, h, w), format="rgb24")
            f.pts, f.time_base = i * 40, tbf
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
