"""The clip row of ``clearnet bench``: an H.264 clip re-encoded, dehazed, and dehazed end to end.

Three ways through the same 1080p clip, measured in a fresh subprocess with the same loaded model
and interleaved repeat by repeat (a neighbour's load falls on all alike):

* **re-encode only**: decode and encode with the same reader and writer threads, queues and
  x264 settings (CRF 18, preset veryfast) as a dehazing run, no dehazing: the floor;
* **dehaze only**: the one run loop over frames already decoded into memory, as clips run
  (8-bit path, temporal smoothing 0.8, the network every :data:`VIDEO_NETWORK_EVERY` frames);
* **end to end**: :func:`~napari_clearnet.video.writer.dehaze_video` from file to file.

The CPU time of each stage per frame (decode, network, full-resolution pass, encode) is measured
with the stage alone. The clip is the hazy sample scene (real stereo depth) with the camera panning
and the haze thickening and thinning along it, so the network schedule's quality cost is measured
too: PSNR to the clear frames with the network on every frame and on the schedule.
"""

from __future__ import annotations

import math
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_CLIP", "clip_worker", "make_clip", "measure_clip", "parse_shape", "psnr8", "reencode"]

#: frames, height, width of the clip measured unless --clip says otherwise (1080p)
DEFAULT_CLIP = (48, 1080, 1920)


def _beta(i: int, frames: int) -> float:
    """The haze of frame ``i``: thickening and thinning once along the clip (β 1.0 to 2.6)."""
    return 1.8 - 0.8 * math.cos(2 * math.pi * i / max(1, frames))


def make_clip(path: Path, frames: int, height: int, width: int, rate: int = 25,
              keep_clear: bool = False) -> tuple[Path, list[np.ndarray]]:
    """An H.264 clip of the hazy sample scene (real stereo depth), the camera panning and the haze
    changing (:func:`_beta`), with a little sensor noise, encoded as a phone would (CRF 18): what
    the clip row decodes. With ``keep_clear`` also returns the clear frames (uint8)."""
    from skimage.transform import resize

    from .._plugin.sample_data import _motorcycle, make_hazy
    from ..video.reader import ClipInfo
    from ..video.writer import Encoding, VideoWriter

    clear, depth = _motorcycle()
    scale = max(height / clear.shape[0], 1.25 * width / clear.shape[1])
    size = (round(clear.shape[0] * scale), round(clear.shape[1] * scale))
    clear = resize(clear, size, anti_aliasing=True).astype(np.float32)
    depth = resize(depth, size).astype(np.float32)
    rng = np.random.default_rng(0)
    info = ClipInfo(path, frames, height, width, Fraction(rate), Fraction(1, rate), None, ((0, 0),), 0,
                    "h264", 0, None)
    kept: list[np.ndarray] = []
    with VideoWriter(path, info, encoding=Encoding()) as writer:
        for i in range(frames):
            x0 = round(i * (size[1] - width) / max(1, frames - 1))
            y0 = (size[0] - height) // 2
            window = (slice(y0, y0 + height), slice(x0, x0 + width))
            hazy, _ = make_hazy(clear[window], depth[window], _beta(i, frames))
            noisy = np.clip(hazy + rng.normal(0, 0.004, hazy.shape).astype(np.float32), 0, 1)
            writer.write(i, (noisy,))
            if keep_clear:
                kept.append((clear[window] * 255 + 0.5).astype(np.uint8))
    return path, kept


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


def reencode(source: Path, target: Path) -> int:
    """Decode ``source`` and encode it again as a dehazing run would, without dehazing (the same
    reader and writer threads, queues and x264 settings); returns the frames written."""
    from ..video.reader import VideoReader
    from ..video.writer import QUEUE_FRAMES, Encoding, VideoWriter

    with VideoReader(source, readahead=QUEUE_FRAMES) as reader, \
            VideoWriter(target, reader.info, encoding=Encoding()) as writer:
        for i, frame in enumerate(reader):
            writer.write(i, (frame,))
    return writer.frames


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (capped where they are equal, so a mean stays finite)."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def clip_worker(frames: int, height: int, width: int, repeats: int, device: str) -> dict[str, Any]:
    """Measure the clip row in this (fresh) process; returns its numbers."""
    import torch

    from .. import api
    from ..core.options import VIDEO_NETWORK_EVERY
    from ..core.run import drive, run
    from ..video.reader import VideoReader
    from ..video.writer import DEFAULT_TEMPORAL_SMOOTHING, Encoding, VideoWriter, dehaze_video

    every = VIDEO_NETWORK_EVERY
    with tempfile.TemporaryDirectory(prefix="clearnet-bench-") as tmp:
        src, clear = make_clip(Path(tmp) / "clip.mp4", frames, height, width, keep_clear=True)
        dehazer = api.load_model(device=device)
        wall, cpu = time.perf_counter(), time.process_time()
        with VideoReader(src) as reader:
            decoded = np.stack(list(reader))
            info = reader.info
        decode = (time.perf_counter() - wall, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        with VideoWriter(Path(tmp) / "enc.mp4", info, encoding=Encoding()) as w:
            for i, f in enumerate(decoded):
                w.write(i, (f,))
        encode = (time.perf_counter() - wall, time.process_time() - cpu)

        def only(k: int = every, sink: Any = None) -> None:
            drive(run(dehazer, decoded, sink=sink or (lambda i, r: None), channel_axis=-1,
                      temporal_smoothing=DEFAULT_TEMPORAL_SMOOTHING, output_dtype="uint8",
                      with_transmission=False, network_every=k))

        def end_to_end() -> None:
            dehaze_video(src, Path(tmp) / "out.mp4", model=dehazer, overwrite=True)

        def plain() -> None:
            reencode(src, Path(tmp) / "plain.mp4")

        only()  # warm-up (and the kernels' first compile, if any)
        times: dict[str, list[float]] = {"reencode": [], "dehaze_only": [], "end_to_end": []}
        for _ in range(repeats):
            for name, fn in (("reencode", plain), ("end_to_end", end_to_end), ("dehaze_only", only)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        dehazer.stage_cpu = {}
        only()
        stages = dict(dehazer.stage_cpu)
        dehazer.stage_cpu = None
        quality: dict[str, Any] = {}
        outs: dict[int, list[np.ndarray]] = {}
        for k in sorted({1, every}):
            got: list[np.ndarray] = []
            only(k, lambda i, r, got=got: got.append(r.image))
            outs[k] = got
            quality[f"every_{k}_psnr"] = float(np.mean([psnr8(j, c) for j, c in zip(got, clear,
                                                                                     strict=True)]))
        quality["hazy_psnr"] = float(np.mean([psnr8(h, c) for h, c in zip(decoded, clear, strict=True)]))
        quality["schedule_vs_every_frame_psnr"] = float(np.mean(
            [psnr8(a, b) for a, b in zip(outs[every], outs[1], strict=True)])) if every != 1 else None
    fps = {name: frames / _median(ts) for name, ts in times.items()}
    per_frame = {"decode": decode[1], "network": stages.get("network", 0.0),
                 "full_resolution": stages.get("full_resolution", 0.0), "encode": encode[1]}
    return {"frames": frames, "height": height, "width": width, "codec": "h264", "times": times,
            "reencode_fps": fps["reencode"], "dehaze_fps": fps["dehaze_only"],
            "end_to_end_fps": fps["end_to_end"],
            # end to end against re-encoding alone: how much the dehazing adds to a re-encode
            "vs_reencode": fps["reencode"] / fps["end_to_end"],
            "best_vs_reencode": min(times["end_to_end"]) / min(times["reencode"]),
            "ratio": fps["end_to_end"] / fps["dehaze_only"],
            "decode_fps": frames / decode[0], "encode_fps": frames / encode[0],
            "cpu_ms_per_frame": {k: 1000 * v / frames for k, v in per_frame.items()},
            "network_every": every, "quality": quality,
            "threads": torch.get_num_threads(), "repeats": repeats}
