"""Speed and memory benchmark behind ``clearnet bench`` and ``benchmarks/bench.py``.

Every configuration (method × size) runs in a fresh Python subprocess, so its peak memory is its
own: the worker reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the kernel's high-water
mark of resident memory, exact, no sampling) after a warm-up and the timed repeats, and its
resident memory just before the first run (interpreter, torch and the model), so the
difference is what the image itself costs. Times are medians of the repeats after one warm-up.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._util.validate import json_text
from .load import busy_cores
from .report import format_header, format_markdown, format_report, format_row
from .worker import run_worker

__all__ = ["DEFAULT_SIZES", "format_markdown", "format_report", "machine_info", "run_benchmark", "shape_for"]

DEFAULT_SIZES = (0.25, 1.0, 4.0, 12.0)
METHODS = ("clearnet", "clearnet-8bit", "dcp", "original", "clearnet-bf16")
#: what runs unless --methods says otherwise (clearnet-8bit: an 8-bit photo to an 8-bit result,
#: the fast path of JPEGs and video frames; clearnet-bf16: the opt-in bfloat16 network on CPU)
DEFAULT_METHODS = ("clearnet", "clearnet-8bit", "dcp", "original")
#: a clip: frames, height, width
DEFAULT_VIDEO = (16, 360, 640)
#: the original design is skipped where one run is estimated to take longer than this
ORIGINAL_LIMIT_S = 60.0
#: largest image size accepted (megapixels): the worker allocates it as float32 RGB
MAX_MEGAPIXELS = 1000.0
#: benchmarks/original_unet.py of a source checkout (not shipped in the wheel)
ORIGINAL_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "original_unet.py"


def shape_for(megapixels: float) -> tuple[int, int]:
    """(H, W) of a 4:3 landscape image with about ``megapixels`` million pixels."""
    w = round(math.sqrt(megapixels * 1e6 * 4 / 3))
    return max(1, round(w * 3 / 4)), max(1, w)


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the numbers depend on: CPU model, cores, torch version and threads, device."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# ----------------------------------------------------------------------------- driver side
def _spawn(method: str, frames: int, height: int, width: int, repeats: int, device: str,
           original: str, timeout: float) -> dict:
    return run_worker(["--worker", json.dumps([method, frames, height, width, repeats, device, original])],
                       timeout)



def run_benchmark(
    sizes: Sequence[float] = DEFAULT_SIZES,
    methods: Sequence[str] = DEFAULT_METHODS,
    repeats: int = 5,
    device: str = "cpu",
    video: tuple[int, int, int] | None = DEFAULT_VIDEO,
    original: str | os.PathLike | None = None,
    log: Any = None,
    clip: tuple[int, int, int] | None = None,
    loads: Sequence[int] = (0,),
    progress: Any = None,
) -> dict[str, Any]:
    """Measure every method at every size (and the stack ``video``), once per entry of ``loads``
    (that many other cores kept busy: :func:`bench_load.busy_cores`); with ``clip`` (frames, H, W),
    also ClearNet on an H.264 clip end to end beside dehaze only, idle; returns a JSON-ready dict.
    ``progress(i, n, what)`` is called before each of the ``n`` measurements."""
    from ..core.engine import pick_device

    device = str(pick_device(device))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}; choose from {list(METHODS)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if any(not math.isfinite(s) or not 0 < s <= MAX_MEGAPIXELS for s in sizes):
        raise ValueError(f"sizes are megapixels in (0, {MAX_MEGAPIXELS:g}], got {list(sizes)}")
    if not loads or any(n < 0 for n in loads):
        raise ValueError(f"loads are numbers of busy cores >= 0, got {list(loads)}")
    original_path = Path(original) if original else ORIGINAL_PATH
    configs = [(f"{s:g} MP", 1, *shape_for(s)) for s in sorted(sizes)]
    if video is not None:
        n, h, w = video
        configs.append((f"video {n}x{w}x{h}", n, h, w))
    results: list[dict[str, Any]] = []
    total = len(loads) * len(methods) * len(configs) + (clip is not None)
    count = iter(range(1, total + 1))

    def step(what: str) -> None:
        if progress is not None:
            progress(next(count), total, what)

    for load in loads:
        with busy_cores(load):
            results += _measure(methods, configs, repeats, device, original_path, load, log, step)
    report = {"machine": machine_info(device), "repeats": repeats, "loads": list(loads), "results": results,
              "speedups": _speedups(results)}
    if clip is not None:
        from .report import format_clip
        from .video import measure_clip

        step(f"H.264 clip {clip[0]}x{clip[2]}x{clip[1]} end to end")
        report["clip"] = measure_clip(clip, repeats, device)
        if log is not None:
            log(format_clip(report["clip"]))
    return report


def _measure(methods: Sequence[str], configs: list[tuple[str, int, int, int]], repeats: int, device: str,
             original_path: Path, load: int, log: Any, step: Any = None) -> list[dict[str, Any]]:
    """One row per method and configuration, each in a fresh subprocess, under ``load``."""
    results: list[dict[str, Any]] = []
    original_s_per_mp: float | None = None
    for method in methods:
        for label, frames, h, w in configs:
            mp = frames * h * w / 1e6
            row: dict[str, Any] = {"method": method, "label": label, "frames": frames, "height": h,
                                   "width": w, "megapixels": mp, "load": load}
            reps = repeats
            if step is not None:
                step(f"{method} {label}" + (f", {load} core{'s' if load > 1 else ''} busy" if load else ""))
            if method == "original":
                reps = min(repeats, 2)
                if not original_path.is_file():
                    row["skipped"] = f"{original_path} not found (it lives in the source checkout)"
                elif original_s_per_mp is not None and original_s_per_mp * mp > ORIGINAL_LIMIT_S:
                    est = original_s_per_mp * mp
                    row["skipped"] = f"estimated {est:.0f} s per run (> {ORIGINAL_LIMIT_S:.0f} s)"
                    row["estimated_seconds"] = round(est, 1)
            if "skipped" not in row:
                timeout = 600.0 if method != "original" else (reps + 1) * ORIGINAL_LIMIT_S * 2
                out = _spawn(method, frames, h, w, reps, device, str(original_path), timeout)
                if "error" in out:
                    row["skipped"] = out["error"]
                else:
                    med = _median(out["times"])
                    row.update(out)
                    row.update(seconds=med, mp_per_s=mp / med, s_per_mp=med / mp,
                               cpu_seconds=_median(out["cpu_times"]))
                    if method == "original" and frames == 1:
                        original_s_per_mp = max(original_s_per_mp or 0.0, med / mp)
            results.append(row)
            if log is not None:
                log(format_row(row))
    return results


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    k = len(s) // 2
    return s[k] if len(s) % 2 else 0.5 * (s[k - 1] + s[k])


def _speedups(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """ClearNet's speed-up over each other method, per configuration (ratio of median times)."""
    by = {(r["method"], r["label"], r.get("load", 0)): r for r in results if "seconds" in r}
    out: dict[str, dict[str, float]] = {}
    for (method, label, load), r in by.items():
        if method != "clearnet":
            continue
        key = label if not load else f"{label}, {load} core{'s' if load > 1 else ''} busy"
        for other in ("dcp", "original"):
            o = by.get((other, label, load))
            if o is not None:
                out.setdefault(key, {})[f"vs_{other}"] = round(o["seconds"] / r["seconds"], 2)
        idle = by.get((method, label, 0))
        if load and idle is not None:
            out.setdefault(key, {})["loaded_vs_idle"] = round(r["seconds"] / idle["seconds"], 2)
    return out


# ----------------------------------------------------------------------------- command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``clearnet bench`` and ``benchmarks/bench.py``."""
    p.add_argument("--sizes", default=",".join(f"{s:g}" for s in DEFAULT_SIZES),
                   help="comma-separated image sizes in megapixels (default %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per configuration after a warm-up")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from {','.join(METHODS)} (default %(default)s)")
    p.add_argument("--video", default="16x640x360",
                   help="clip as FRAMESxWIDTHxHEIGHT, or 'none' (default %(default)s)")
    p.add_argument("--clip", default="48x1920x1080",
                   help="also an H.264 clip FRAMESxWIDTHxHEIGHT end to end (decode, dehaze, encode) beside "
                        "dehaze only, e.g. 48x1920x1080, or 'none' (default %(default)s)")
    p.add_argument("--load", default="0",
                   help="comma-separated numbers of cores kept busy by other processes while measuring, "
                        "e.g. 0,1 for idle and one busy core side by side (default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="run a --load beyond this machine's cores anyway")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.add_argument("--original", default=None, help="path of original_unet.py (default: the checkout's)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--markdown", action="store_true", help="also print a Markdown table of the results")
    p.add_argument("--output", default=None, help="also write the JSON results to this file")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
        from .video import parse_shape

        video, clip = parse_shape(args.video), parse_shape(args.clip)
    except ValueError:
        print(f"bench: --sizes takes megapixels like 0.25,1,4 and --video and --clip FRAMESxWIDTHxHEIGHT "
              f"like 16x640x360; got {args.sizes!r}, {args.video!r} and {args.clip!r}", file=sys.stderr)
        return 2
    if clip is not None and min(clip) < 1:
        print(f"bench: --clip needs at least one frame of one pixel, got {args.clip!r}", file=sys.stderr)
        return 2
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    problem = _check_output(args.output) if args.output else None
    try:
        loads = [int(n) for n in args.load.split(",") if n.strip()]
    except ValueError:
        loads = []
    if problem is None and (not loads or min(loads) < 0):
        problem = f"--load takes numbers of busy cores like 0,1; got {args.load!r}"
    if problem is None and any(not math.isfinite(s) or not 0 < s <= MAX_MEGAPIXELS for s in sizes):
        problem = f"--sizes takes megapixels in (0, {MAX_MEGAPIXELS:g}], got {args.sizes!r}"
    problem = problem or _check_work(args, methods, video, clip, loads)
    if problem:  # checked before the benchmark runs, not after many minutes of it
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    log = None if args.json else (lambda line: print(line, flush=True))
    if log is not None:
        from ..core.devices import pick_device

        try:
            for line in format_header(machine_info(str(pick_device(args.device))), args.repeats):
                log(line)
        except ValueError as e:
            print(f"bench: {e}", file=sys.stderr)
            return 2
    progress = None
    if args.json or not sys.stdout.isatty():  # on a terminal the table's rows show it is alive

        def progress(i: int, n: int, what: str) -> None:
            print(f"bench: [{i}/{n}] {what}", file=sys.stderr, flush=True)

    try:
        report = run_benchmark(sizes, methods, args.repeats, args.device, video, args.original, log, clip,
                               loads, progress)
    except ValueError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    text = json_text(report, indent=2)
    status = 0
    if args.output:  # first: a closed pipe or a killed reader must not cost the results
        from .._util.files import write_text

        try:
            write_text(args.output, text + "\n")
        except OSError as exc:
            print(f"bench: cannot write --output {args.output}: {exc.strerror or exc} (the results are "
                  "printed below)", file=sys.stderr)
            status = 1
    print(text if args.json else format_report(report, rows=False))
    if args.markdown:
        print(format_markdown(report))
    return status


#: bytes per pixel one frame's estimate and recovery need besides its input and outputs (DCP, at most)
FRAME_WORK_BYTES = 128


def _check_work(args: argparse.Namespace, methods: list[str], video: tuple[int, int, int] | None,
                clip: tuple[int, int, int] | None, loads: list[int]) -> str | None:
    """Why the benchmark cannot run as asked (None if it can), known before it starts (G24, G9):
    no methods, repeats below 1, clips beyond the memory available, or more busy processes
    than cores (unless --force)."""
    from ..core.limits import check_memory, check_processes
    from ..io.images import MAX_PIXELS

    if not methods:
        return f"--methods names no method, got {args.methods!r}; choose from {','.join(METHODS)}"
    if args.repeats < 1:
        return f"--repeats must be >= 1, got {args.repeats}"
    try:
        for flag, shape in (("--video", video), ("--clip", clip)):
            if shape is not None:  # frames in, J and t out (28 bytes a pixel), one frame's work
                n, h, w = shape
                if h * w > MAX_PIXELS:
                    return (f"{flag} {n}x{w}x{h}: {h * w / 1e6:.0f} MP frames, over the "
                            f"{MAX_PIXELS / 1e6:.0f} MP limit per frame")
                check_memory(n * h * w * 28 + h * w * FRAME_WORK_BYTES, f"{flag} {n}x{w}x{h}",
                             f"choose a smaller {flag}")
        if not args.force:
            check_processes(max(loads), "--load", "--force")
    except ValueError as exc:
        return str(exc)
    return None


def _check_output(output: str) -> str | None:
    """Why ``--output`` cannot be written (None if it can), known before the benchmark runs."""
    out = Path(output)
    if out.is_dir():
        return f"--output {out} is a folder; give a file name"
    parent = out.parent
    if not parent.is_dir():
        return f"--output {out}: folder {parent} does not exist"
    if not os.access(parent, os.W_OK):
        return f"--output {out}: folder {parent} is not writable"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        from .worker import measure

        print(json.dumps(measure(*json.loads(argv[1]))))
        return 0
    if argv[:1] == ["--clip-worker"]:
        from .video import clip_worker

        print(json.dumps(clip_worker(*json.loads(argv[1]))))
        return 0
    p = argparse.ArgumentParser(prog="bench", description="ClearNet speed and memory benchmark")
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
