"""The ``clearnet`` command line: ``clearnet dehaze | depth | weights | bench``.

Each subcommand's parser lives in its own ``add_*_parser`` function and calls the plain-Python
core; nothing here knows about Qt.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._util.validate import cli_spelling
from ..choices import BIT_DEPTHS, FORMATS, METHODS
from ..video.writer import DEFAULT_CRF, DEFAULT_PRESET, PRESETS

__all__ = ["Terminated", "build_parser", "main", "run_command", "terminating_signals"]


class Terminated(KeyboardInterrupt):
    """A terminating signal (SIGTERM from ``timeout``, systemd, Docker, Slurm; SIGHUP from a closed
    terminal), raised like Ctrl-C so every ``finally`` cleans up the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.reason = f"terminated by {signal.Signals(signum).name}"


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def terminating_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (a KeyboardInterrupt), so
    partial files are removed as on Ctrl-C. Signals a parent set to be ignored (``nohup``) stay
    ignored; the previous handlers come back afterwards. Only the main thread can do this."""
    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue
            old[sig] = signal.signal(sig, _raise_terminated)
        except (ValueError, OSError):  # not the main thread
            continue
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _channel_axis(text: str) -> int | str | None:
    t = text.strip().lower()
    if t in ("auto", "none"):
        return None if t == "none" else "auto"
    try:
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an axis number, 'none' or 'auto', got {text!r}") from None


def _value_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH such as 0,4095, got {text!r}") from None
    return lo, hi


def add_output_and_method_arguments(p: argparse.ArgumentParser) -> None:
    """``-o OUTDIR``, ``--method``, ``--model`` and ``--device``: what every command that runs a
    method asks for."""
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder (created if needed)")
    p.add_argument("--method", choices=METHODS, default=METHODS[0],
                   help="ClearNet (default) or the classic Dark Channel Prior")
    p.add_argument("--model", metavar="NAME_OR_PATH", default=None,
                   help="registry name, .safetensors path or hf://ORG/REPO/FILE (default: bundled model)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")


def add_dehaze_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dehaze",
        help="dehaze image and video files, folders or globs into an output folder",
        description="Dehaze image and video files, folders (their images and clips) or glob patterns "
        "into OUTDIR; a clip becomes a clip (H.264, same frame rate and size, audio kept). "
        "Existing outputs are never replaced unless --overwrite is given. Exit status: 0 all "
        "done, 1 some inputs failed or outputs already existed, 2 nothing could start, "
        "130 interrupted (rerun with --skip-existing to carry on).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image or video files, folders or glob patterns")
    add_output_and_method_arguments(p)
    p.add_argument("--sky-protection", type=float, default=None, metavar="K",
                   help="keep flat regions within K of the airlight (bright sky, dense fog) from turning "
                        "into rings, blotches and noise: 0 = off; default 0.2 for ClearNet, off for the DCP")
    p.add_argument("--strength", type=float, default=1.0, metavar="S",
                   help="how much of the estimated haze to remove: 1 = the model's estimate (default), "
                        "0 = none, 0.5 = half the optical depth, >1 = more (up to 3)")
    p.add_argument("--save-transmission", action="store_true", help="also write <stem>_transmission.png")
    p.add_argument("--save-airlight", action="store_true",
                   help="also write <stem>_airlight.json with A and provenance")
    p.add_argument("--suffix", default="_dehazed", help="added to each output name (default: _dehazed)")
    p.add_argument("--format", choices=FORMATS, default="same",
                   help="output format (default: same as the input)")
    p.add_argument("--bit-depth", choices=BIT_DEPTHS, default="same",
                   help="8, 16 (PNG/TIFF only) or same as the input (default)")
    p.add_argument("--quality", type=int, default=None, metavar="Q",
                   help="JPEG/WebP quality 1-100 (default: JPEG 95, WebP lossless)")
    p.add_argument("--channel-axis", type=_channel_axis, default="auto", metavar="AXIS",
                   help="which axis of each image holds the colours: a number (0 for a channel-first "
                        "or planar TIFF), 'none' for a stack of grey frames, or 'auto' (default)")
    p.add_argument("--value-range", type=_value_range, default=None, metavar="LOW,HIGH",
                   help="pixel values that become black and white, e.g. 0,4095 for 12-bit data "
                        "(default: decided from the data type and values)")
    p.add_argument("--temporal-smoothing", type=float, default=None, metavar="S",
                   help="steady the airlight and haze amount along clips and stacks, in [0, 1): 0 = off; "
                        "default 0.8 for video (about 5 frames), off for image stacks")
    p.add_argument("--side-by-side", action="store_true",
                   help="write hazy | dehazed side by side in one image or frame (twice the width), "
                        "for reports")
    p.add_argument("--crf", type=int, default=DEFAULT_CRF, metavar="N",
                   help=f"H.264 quality of video outputs, 0-51, lower is better, 0 lossless "
                        f"(default {DEFAULT_CRF})")
    p.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET, metavar="NAME",
                   help=f"x264 speed/size preset of video outputs (default {DEFAULT_PRESET}): "
                        + ", ".join(PRESETS))
    p.add_argument("--damaged-frames", choices=("repeat", "stop"), default="repeat",
                   help="a clip's frame that cannot be decoded (a damaged packet): repeat the frame "
                        "before it and go on, with a note counting them (default), or stop that clip")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--cluster", metavar="ADDRESS", default=None,
                       help="spread the inputs over the Dask cluster whose scheduler is at ADDRESS "
                            "(tcp://HOST:8786); inputs and OUTDIR must be on a shared file system")
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="spread the inputs over a local Dask cluster of N worker processes (at most "
                            "this machine's cores and memory, about 400 MB each, unless --force)")
    p.add_argument("--force", action="store_true",
                   help="allow --workers beyond this machine's cores and memory")
    p.add_argument("--worker-wait", type=float, default=120.0, metavar="SECONDS",
                   help="with --cluster: how long to wait for a first worker to join (a queued batch "
                        "job), and for one when all have left, before giving up (default 120)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    group.add_argument("--skip-existing", action="store_true",
                       help="silently skip inputs whose outputs exist (resume an interrupted run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_dehaze)


def _run_dehaze(args: argparse.Namespace) -> int:
    from ..batch import BatchError, BatchOptions, dehaze_files

    try:
        if args.method == "dcp" and args.model is not None:  # G24: a --model is never silently ignored
            raise BatchError(f"--model {args.model} is given, but --method dcp uses no weights; leave out "
                             "--model, or use --method clearnet with it")
        with cli_spelling():  # messages name --flags, not Python arguments
            opts = BatchOptions(
                method=args.method, model=args.model, device=args.device, suffix=args.suffix,
                format=args.format, bit_depth=args.bit_depth, overwrite=args.overwrite,
                skip_existing=args.skip_existing, save_transmission=args.save_transmission,
                save_airlight=args.save_airlight, sky_protection=args.sky_protection, quality=args.quality,
                channel_axis=args.channel_axis, value_range=args.value_range, strength=args.strength,
                temporal_smoothing=args.temporal_smoothing, side_by_side=args.side_by_side, crf=args.crf,
                preset=args.preset, damaged_frames=args.damaged_frames, worker_wait=args.worker_wait,
            )
            progress = False if args.no_progress else None  # None: a bar on a terminal only
            if args.cluster is None and args.workers is None:
                report = dehaze_files(args.inputs, args.output, opts, progress=progress)
            else:
                from ..core.limits import WORKER_BYTES, check_processes

                if args.workers is not None and not args.force:
                    try:
                        check_processes(args.workers, "--workers", "--force", WORKER_BYTES)
                    except ValueError as exc:
                        raise BatchError(str(exc)) from None
                report = _on_cluster(args, opts, progress)
    except BatchError as exc:
        print(f"clearnet dehaze: error: {exc}", file=sys.stderr)
        return 2
    print(report.summary(args.output), file=sys.stderr)
    return report.exit_code


def _on_cluster(args: argparse.Namespace, opts: Any, progress: bool | None) -> Any:
    """``--cluster`` / ``--workers``: the model checked before any cluster starts; after a stop, the
    partial files of workers that were killed with the local cluster are removed."""
    from pathlib import Path

    from .._util import files
    from ..batch import dehaze_files
    from ..batch.cluster import check_model, connect

    check_model(opts)
    try:
        with connect(args.cluster, args.workers) as client:
            return dehaze_files(args.inputs, args.output, opts, progress=progress, client=client)
    except KeyboardInterrupt:
        files.remove_stale_parts(Path(args.output).expanduser())  # the workers are gone: unlocked
        raise


def add_depth_parser(sub: argparse._SubParsersAction) -> None:
    from .depth import add_arguments, run_from_args

    p = sub.add_parser(
        "depth", help="depth map and visibility from an image's haze",
        description="Read an image's transmission t as depth (t = exp(-beta d)): the relative depth "
        "-ln t, and with points of known distance beta by least squares, the depth in metres and the "
        "meteorological visibility V = ln(20)/beta, with uncertainties from the spread of the points. "
        "Writes float32 TIFFs and a JSON record (also printed). Exit status: 0 done, 2 nothing written.",
    )
    add_arguments(p)
    p.set_defaults(func=run_from_args)


def add_weights_parser(sub: argparse._SubParsersAction) -> None:
    from .weights import add_arguments

    p = sub.add_parser("weights", help="list, download, verify and locate model weights")
    add_arguments(p)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure speed and memory on this machine",
        description="Throughput (MP/s, s/MP) and peak memory of ClearNet, the DCP baseline and the "
        "original full-resolution U-Net, each configuration in a fresh subprocess.",
    )
    from ..bench.runner import add_arguments

    add_arguments(p)
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from ..bench.runner import run_from_args

    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="clearnet", description="Physics-based dehazing: ClearNet and the Dark Channel Prior."
    )
    parser.add_argument("--version", action="version", version=f"napari-clearnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_dehaze_parser(sub)
    add_depth_parser(sub)
    add_weights_parser(sub)
    add_bench_parser(sub)
    return parser


def run_command(func: Callable[[], int | None]) -> int:
    """Run a command's work with terminating signals cleaned up like Ctrl-C; returns the exit
    status (128+N after signal N, 130 after Ctrl-C). ``python -m training`` runs through it too."""
    try:
        with terminating_signals():
            return int(func() or 0)
    except Terminated as exc:
        if not getattr(exc, "reported", False):  # a batch has said it, with what was done
            print(exc.reason, file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt as exc:
        if not getattr(exc, "reported", False):
            print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
