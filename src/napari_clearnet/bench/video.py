"""The clip row of ``clearnet bench``: end-to-end frames per second (decode, dehaze, encode) of an
H.264 clip beside dehaze-only frames per second, measured in a fresh subprocess.

Dehaze-only runs the one run loop over frames already decoded into memory, with a sink that
keeps nothing; end-to-end is :func:`napari_clearnet.video_out.dehaze_video` from file to file
with its defaults (temporal smoothing 0.8, H.264 CRF 18, preset veryfast, the decoder and encoder
threads). Both use the same loaded model and are interleaved, repeat by repeat, so a neighbour's
load on the machine falls on both alike. Decoding alone and encoding alone are timed too, to
show where the rest of the time goes.
"""

from __future__ import annotations

import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_CLIP", "clip_worker", "make_clip", "measure_clip", "parse_shape"]

#: frames, height, width of the clip measured unless --clip says otherwise (1080p)
DEFAULT_CLIP = (48, 1080, 1920)


def make_clip(path: Path, frames: int, height: int, width: int, rate: int = 25) -> Path:
    """An H.264 clip of the hazy sample scene (real stereo depth) panning, with a little sensor
    noise, encoded as a phone would (CRF 18): what the clip row decodes."""
    from skimage.transform import resize

    from .._plugin.sample_data import _motorcycle, make_hazy
    from ..video.reader import ClipInfo
    from ..video.writer import Encoding, VideoWriter

    clear, depth = _motorcycle()
    scale = max(height / clear.shape[0], 1.25 * width / clear.shape[1])
    size = (round(clear.shape[0] * scale), round(clear.shape[1] * scale))
    hazy, _ = make_hazy(resize(clear, size, anti_aliasing=True).astype(np.float32),
                        resize(depth, size).astype(np.float32), 1.8)
    rng = np.random.default_rng(0)
    info = ClipInfo(path, frames, height, width, Fraction(rate), Fraction(1, rate), None, ((0, 0),), 0,
                    "h264", 0, None)
    with VideoWriter(path, info, encoding=Encoding()) as writer:
        for i in range(frames):
            x0 = round(i * (size[1] - width) / max(1, frames - 1))
            y0 = (size[0] - height) // 2
            crop = hazy[y0:y0 + height, x0:x0 + width]
            noisy = np.clip(crop + rng.normal(0, 0.004, crop.shape).astype(np.float32), 0, 1)
            writer.write(i, (noisy,))
    return path


def parse_shape(text: str | None) -> tuple[int, int, int] | None:
    """FRAMESxWIDTHxHEIGHT as (frames, height, width); 'none' is None."""
    if not text or text.lower() == "none":
        return None
    n, w, h = (int(v) for v in text.lower().split("x"))
    return n, h, w


def measure_clip(clip: tuple[int, int, int], repeats: int, device: str) -> dict[str, Any]:
    """The clip row, measured by :func:`clip_worker` in a fresh subprocess."""
    import json

    from .worker import run_worker

    n, h, w = clip
    out = run_worker(["--clip-worker", json.dumps([n, h, w, repeats, device])], 1800.0)
    return {"frames": n, "height": h, "width": w, "skipped": out["error"]} if "error" in out else out


def _median(xs: list[float]) -> float:
    return float(np.median(xs))


def clip_worker(frames: int, height: int, width: int, repeats: int, device: str) -> dict[str, Any]:
    """Measure the clip row in this (fresh) process; returns its numbers."""
    import torch

    from .. import api
    from ..core.run import drive, run
    from ..video.reader import VideoReader
    from ..video.writer import DEFAULT_TEMPORAL_SMOOTHING, Encoding, VideoWriter, dehaze_video

    with tempfile.TemporaryDirectory(prefix="clearnet-bench-") as tmp:
        src = make_clip(Path(tmp) / "clip.mp4", frames, height, width)
        dehazer = api.load_model(device=device)
        t = time.perf_counter()
        with VideoReader(src) as reader:
            decoded = np.stack(list(reader))
            info = reader.info
        decode_s = time.perf_counter() - t
        t = time.perf_counter()
        with VideoWriter(Path(tmp) / "enc.mp4", info, encoding=Encoding()) as w:
            for i, f in enumerate(decoded):
                w.write(i, (f,))
        encode_s = time.perf_counter() - t

        def only() -> None:
            drive(run(dehazer, decoded, sink=lambda i, r: None, channel_axis=-1,
                      temporal_smoothing=DEFAULT_TEMPORAL_SMOOTHING))

        def end_to_end() -> None:
            dehaze_video(src, Path(tmp) / "out.mp4", model=dehazer, overwrite=True)

        drive(run(dehazer, decoded[:2], sink=lambda i, r: None, channel_axis=-1))  # warm-up
        times: dict[str, list[float]] = {"dehaze_only": [], "end_to_end": []}
        for _ in range(repeats):
            for name, fn in (("end_to_end", end_to_end), ("dehaze_only", only)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    only_fps = frames / _median(times["dehaze_only"])
    e2e_fps = frames / _median(times["end_to_end"])
    best_only, best_e2e = frames / min(times["dehaze_only"]), frames / min(times["end_to_end"])
    return {"frames": frames, "height": height, "width": width, "codec": "h264", "times": times,
            "dehaze_fps": only_fps, "end_to_end_fps": e2e_fps, "ratio": e2e_fps / only_fps,
            # the fastest repeat of each: what a machine shared with other work gives when it is quiet
            "best_dehaze_fps": best_only, "best_end_to_end_fps": best_e2e, "best_ratio": best_e2e / best_only,
            "decode_fps": frames / decode_s, "encode_fps": frames / encode_s,
            "threads": torch.get_num_threads(), "repeats": repeats}
