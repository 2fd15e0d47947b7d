"""The ``clearnet`` parsers' arguments: what each subcommand accepts, in groups, and the argument
types they share. Nothing here loads torch or reads a file: ``clearnet --help`` stays fast."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..choices import BIT_DEPTHS, FORMATS, METHODS
from ..video.writer import DEFAULT_CRF, DEFAULT_PRESET, PRESETS

__all__ = [
    "add_dehaze_parser",
    "add_depth_arguments",
    "add_method_arguments",
    "add_output_and_method_arguments",
    "add_output_argument",
    "add_weights_arguments",
]

#: the environment variable of weights/registry.py (tests/test_cli.py checks they agree)
REGISTRY_ENV = "CLEARNET_REGISTRY"


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
    add_output_argument(p)
    add_method_arguments(p)


def add_output_argument(p: Any) -> None:
    """``-o OUTDIR`` (``p``: a parser or an argument group)."""
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder (created if needed)")


def add_method_arguments(p: Any) -> None:
    """``--method``, ``--model`` and ``--device`` (``p``: a parser or an argument group)."""
    p.add_argument("--method", choices=METHODS, default=METHODS[0],
                   help="ClearNet (default) or the classic Dark Channel Prior")
    p.add_argument("--model", metavar="NAME_OR_PATH", default=None,
                   help="registry name, .safetensors path or hf://ORG/REPO/FILE (default: bundled model)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")


def _point(text: str) -> tuple[float, float, float, str]:
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) not in (3, 4):
            raise ValueError
        x, y, d = (float(v) for v in parts[:3])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected X,Y,METRES[,LABEL] (pixel column, row, known distance), e.g. 412,230,85; got {text!r}"
        ) from None
    return x, y, d, parts[3] if len(parts) == 4 else ""


def add_depth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE",
                   help="one image file (or one frame of a stack or a video clip, with --frame)")
    p.add_argument("--point", dest="points", action="append", type=_point, default=[],
                   metavar="X,Y,METRES[,LABEL]",
                   help="a pixel (column X, row Y) whose distance from the camera is known; repeat for "
                        "more points (two or more give uncertainties)")
    add_output_and_method_arguments(p)
    p.add_argument("--frame", type=int, default=None, metavar="I",
                   help="which frame of a multi-frame file (animation, multi-page TIFF, video clip) to read")
    p.add_argument("--png", action="store_true",
                   help="also write <stem>_optical_depth.png (16-bit, to look at)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def add_weights_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``weights`` sub-subcommands to ``p``."""
    p.add_argument(
        "--registry", metavar="JSON", default=None,
        help=f"use this registry.json instead of the shipped one (or set ${REGISTRY_ENV})",
    )
    sub = p.add_subparsers(dest="weights_command", required=True, metavar="{list,download,verify,path}")
    ls = sub.add_parser("list", help="known models, their size and whether they are available offline")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    dl = sub.add_parser("download", help="fetch models from the Hub into the HF cache and verify them")
    dl.add_argument("names", nargs="+", metavar="NAME", help="registry name or hf://ORG/REPO/FILE.safetensors")
    dl.add_argument("--force", action="store_true", help="download again even if cached")
    ve = sub.add_parser("verify", help="check local copies against size and sha256 (no network)")
    ve.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: all)")
    pa = sub.add_parser("path", help="print the local file of a model (downloads nothing)")
    pa.add_argument("name", metavar="NAME")


def add_dehaze_parser(sub: argparse._SubParsersAction, run: Callable[[argparse.Namespace], int]) -> None:
    p = sub.add_parser(
        "dehaze",
        help="dehaze image and video files, folders or globs into an output folder",
        description="Dehaze image and video files, folders (their images and clips) or glob patterns "
        "into OUTDIR; a clip becomes a clip (H.264, same frame rate and size, audio kept). "
        "Existing outputs are never replaced unless --overwrite is given. Exit status: 0 all "
        "done, 1 some inputs failed or outputs already existed, 2 nothing could start, "
        "130 interrupted (rerun with --skip-existing to carry on).",
    )
    inp = p.add_argument_group("input", "what to read and how its values are read")
    out = p.add_argument_group("output", "where results go, their names and formats")
    method = p.add_argument_group("method", "which method runs, where, and how strongly")
    video = p.add_argument_group("video", "clips in and out (H.264)")
    batch = p.add_argument_group("batch and cluster", "many inputs: existing outputs, a Dask cluster")
    inp.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image or video files, folders or glob patterns")
    add_output_argument(out)
    add_method_arguments(method)
    method.add_argument("--sky-protection", type=float, default=None, metavar="K",
                   help="keep flat regions within K of the airlight (bright sky, dense fog) from turning "
                        "into rings, blotches and noise: 0 = off; default 0.2 for ClearNet, off for the DCP")
    method.add_argument("--strength", type=float, default=1.0, metavar="S",
                   help="how much of the estimated haze to remove: 1 = the model's estimate (default), "
                        "0 = none, 0.5 = half the optical depth, >1 = more (up to 3)")
    out.add_argument("--save-transmission", action="store_true", help="also write <stem>_transmission.png")
    out.add_argument("--save-airlight", action="store_true",
                   help="also write <stem>_airlight.json with A and provenance")
    out.add_argument("--suffix", default="_dehazed", help="added to each output name (default: _dehazed)")
    out.add_argument("--format", choices=FORMATS, default="same",
                   help="output format (default: same as the input)")
    out.add_argument("--bit-depth", choices=BIT_DEPTHS, default="same",
                   help="8, 16 (PNG/TIFF only) or same as the input (default)")
    out.add_argument("--quality", type=int, default=None, metavar="Q",
                   help="JPEG/WebP quality 1-100 (default: JPEG 95, WebP lossless)")
    inp.add_argument("--channel-axis", type=_channel_axis, default="auto", metavar="AXIS",
                   help="which axis of each image holds the colours: a number (0 for a channel-first "
                        "or planar TIFF), 'none' for a stack of grey frames, or 'auto' (default)")
    inp.add_argument("--value-range", type=_value_range, default=None, metavar="LOW,HIGH",
                   help="pixel values that become black and white, e.g. 0,4095 for 12-bit data "
                        "(default: decided from the data type and values)")
    method.add_argument("--temporal-smoothing", type=float, default=None, metavar="S",
                   help="steady the airlight and haze amount along clips and stacks, in [0, 1): 0 = off; "
                        "default 0.8 for video (about 5 frames), off for image stacks")
    out.add_argument("--side-by-side", action="store_true",
                   help="write hazy | dehazed side by side in one image or frame (twice the width), "
                        "for reports")
    video.add_argument("--crf", type=int, default=DEFAULT_CRF, metavar="N",
                   help=f"H.264 quality of video outputs, 0-51, lower is better, 0 lossless "
                        f"(default {DEFAULT_CRF})")
    video.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET, metavar="NAME",
                   help=f"x264 speed/size preset of video outputs (default {DEFAULT_PRESET}): "
                        + ", ".join(PRESETS))
    video.add_argument("--network-every", type=int, default=None, metavar="K",
                   help="run the network on every K-th frame of a clip and reuse its haze amount and "
                        "airlight correction on the frames between, each with its own transmission "
                        "(default 4; 1 = every frame; a scene cut runs it at once)")
    video.add_argument("--damaged-frames", choices=("repeat", "stop"), default="repeat",
                   help="a clip's frame that cannot be decoded (a damaged packet): repeat the frame "
                        "before it and go on, with a note counting them (default), or stop that clip")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--cluster", metavar="ADDRESS", default=None,
                       help="spread the inputs over the Dask cluster whose scheduler is at ADDRESS "
                            "(tcp://HOST:8786); inputs and OUTDIR must be on a shared file system")
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="spread the inputs over a local Dask cluster of N worker processes (at most "
                            "this machine's cores and memory, about 400 MB each, unless --force)")
    batch.add_argument("--force", action="store_true",
                   help="allow --workers beyond this machine's cores and memory")
    batch.add_argument("--worker-wait", type=float, default=120.0, metavar="SECONDS",
                   help="with --cluster: how long to wait for a first worker to join (a queued batch "
                        "job), and for one when all have left, before giving up (default 120)")
    group = batch.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    group.add_argument("--skip-existing", action="store_true",
                       help="silently skip inputs whose outputs exist (resume an interrupted run); a clip "
                            "an interrupted run left half done carries on from its last complete keyframe")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
