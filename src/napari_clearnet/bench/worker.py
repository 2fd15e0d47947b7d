"""One benchmark measurement in its own process: ``python -m napari_clearnet.bench --worker …``."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["measure", "run_worker"]

def run_worker(argv: list[str], timeout: float) -> dict:
    """Run ``python -m napari_clearnet.bench ARGV`` and return the JSON its last line prints."""
    args = [sys.executable, "-m", "napari_clearnet.bench", *argv]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"worker failed (exit {proc.returncode}): {' | '.join(tail)}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _test_image(frames: int, height: int, width: int):
    """A smooth synthetic hazy scene (float32, deterministic): content shapes the DCP's top-k and
    the guided filter no more than any photo, and no data file is needed."""
    import numpy as np

    rng = np.random.default_rng(0)
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    base = 0.35 + 0.3 * yy + 0.15 * np.sin(6 * xx) * np.array([1.0, 0.9, 0.8], np.float32)
    out = np.empty((frames, height, width, 3), np.float32)
    for i in range(frames):
        out[i] = base + 0.05 * rng.random((height, width, 3), dtype=np.float32)
    np.clip(out, 0, 1, out=out)
    return out[0] if frames == 1 else out


def _rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def measure(
    method: str, frames: int, height: int, width: int, repeats: int, device: str, original: str
) -> dict:
    """Run one configuration in this (fresh) process and return its timings and memory."""
    import numpy as np
    import torch

    from .. import api
    from ..core import devices, physics

    image = _test_image(frames, height, width)
    if method == "original":
        import importlib.util

        spec = importlib.util.spec_from_file_location("original_unet", original)
        mod = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(mod)
        dev = devices.pick_device(device)
        net = mod.OriginalAttentionUNet().to(dev).eval()

        @torch.inference_mode()
        def run() -> tuple[int, ...]:
            stack = image if frames > 1 else image[None]
            outs = []
            for f in stack:  # one frame at a time, as its full-resolution activations are huge
                x = torch.from_numpy(f).to(dev).permute(2, 0, 1)[None]
                o = net(x)
                outs.append(physics.recover(x, o["t"], o["airlight"]).permute(0, 2, 3, 1).cpu().numpy())
            return outs[0].shape[1:] if frames == 1 else np.concatenate(outs).shape
    else:
        half = True if method == "clearnet-bf16" else None
        dehazer = api.load_model(method=method.removesuffix("-bf16").removesuffix("-8bit"), device=device,
                                 half=half)
        kw = {}
        if method == "clearnet-8bit":  # an 8-bit photo (a JPEG) to an 8-bit result, as
            image = (image * 255 + 0.5).astype(np.uint8)  # `clearnet dehaze` makes it: J, no t
            kw = {"output_dtype": "uint8", "with_transmission": False}

        def run() -> tuple[int, ...]:
            return dehazer.dehaze(image, **kw).image.shape

    from ..core import threads

    baseline = _rss_mb()
    shape = run()  # warm-up
    times, cpu_times = [], []
    before = resource.getrusage(resource.RUSAGE_SELF)
    chosen = threads.free_cores() if threads.enabled() and not device.startswith("cuda") else None
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t, c = time.perf_counter(), time.process_time()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    after = resource.getrusage(resource.RUSAGE_SELF)
    peak = after.ru_maxrss / 1024  # KiB on Linux
    res = {"times": times, "cpu_times": cpu_times, "output_shape": list(shape),
           "input_shape": list(image.shape), "peak_rss_mb": peak, "baseline_rss_mb": baseline,
           "threads": torch.get_num_threads(), "adaptive_threads": chosen,
           # per run: page faults and system time (allocator churn shows here)
           "minor_faults": (after.ru_minflt - before.ru_minflt) / repeats,
           "system_seconds": (after.ru_stime - before.ru_stime) / repeats}
    if device.startswith("cuda") and torch.cuda.is_available():
        res["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return res
