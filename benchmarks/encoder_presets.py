"""x264 presets on the bench's 1080p clip: encoding speed, file size and quality side by side.

What `clearnet dehaze` writes clips with (CRF 18 and a preset, docs/video.md) is chosen from this
table: each preset encodes the same decoded frames with the project's own writer (its thread and
its x264 thread count), then the file is decoded again and compared with the frames it was given.

    python benchmarks/encoder_presets.py [--clip 48x1920x1080] [--crf 18] [--markdown]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_clearnet.bench.video import make_clip, parse_shape, psnr8
from napari_clearnet.video.reader import VideoReader
from napari_clearnet.video.writer import PRESETS, Encoding, VideoWriter, encoder_threads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default="48x1920x1080", help="FRAMESxWIDTHxHEIGHT (default %(default)s)")
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--presets", default="ultrafast,superfast,veryfast,faster,fast,medium")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    n, h, w = parse_shape(args.clip)
    presets = [s for s in args.presets.split(",") if s in PRESETS]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src, _ = make_clip(Path(tmp) / "clip.mp4", n, h, w)
        with VideoReader(src) as reader:
            frames = np.stack(list(reader))
            info = reader.info
        for preset in presets:
            out = Path(tmp) / f"{preset}.mp4"
            wall, cpu = time.perf_counter(), time.process_time()
            with VideoWriter(out, info, encoding=Encoding(args.crf, preset)) as writer:
                for i, f in enumerate(frames):
                    writer.write(i, (f,))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            with VideoReader(out) as back:
                quality = float(np.mean([psnr8(a, b) for a, b in zip(back, frames, strict=True)]))
            mbit_s = out.stat().st_size * 8 / (n / float(info.rate)) / 1e6
            rows.append((preset, n / wall, 1000 * cpu / n, mbit_s, quality))
    threads = encoder_threads()
    print(f"x264 CRF {args.crf}, {n} frames {w}x{h}, {threads} x264 thread(s) + the writer's thread")
    if args.markdown:
        print("\n| preset | encode fps | CPU ms/frame | Mbit/s | PSNR to its input (dB) |")
        print("|---|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.2f} |")
    else:
        for r in rows:
            print(f"{r[0]:>10}  {r[1]:6.1f} fps  {r[2]:6.1f} CPU ms/frame  {r[3]:6.1f} Mbit/s  "
                  f"{r[4]:6.2f} dB")


if __name__ == "__main__":
    main()
