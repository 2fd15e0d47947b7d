"""The ``clearnet`` command line: ``clearnet dehaze | depth | weights | bench``.

The parsers (:mod:`.args`) load nothing heavy; each subcommand's work is imported when it runs
(:mod:`.dehaze`, :mod:`.depth`, :mod:`.weights`, :mod:`napari_clearnet.bench`), so ``clearnet
--help`` and ``clearnet --version`` never load torch. Nothing here knows about Qt.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .args import add_dehaze_parser, add_depth_arguments, add_weights_arguments
from .signals import BROKEN_PIPE_STATUS, Terminated, broken_pipe, run_command, terminating_signals

__all__ = ["BROKEN_PIPE_STATUS", "Terminated", "broken_pipe", "build_parser", "main", "run_command",
           "terminating_signals"]


def add_depth_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "depth", help="depth map and visibility from an image's haze",
        description="Read an image's transmission t as depth (t = exp(-beta d)): the relative depth "
        "-ln t, and with points of known distance beta by least squares, the depth in metres and the "
        "meteorological visibility V = ln(20)/beta, with uncertainties from the spread of the points. "
        "Writes float32 TIFFs and a JSON record (also printed). Exit status: 0 done, 2 nothing written.",
    )
    add_depth_arguments(p)
    p.set_defaults(func=_run_depth)


def add_weights_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list, download, verify and locate model weights")
    add_weights_arguments(p)
    p.set_defaults(func=_run_weights)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure speed and memory on this machine",
        description="Throughput (MP/s, s/MP) and peak memory of ClearNet, the DCP baseline and the "
        "original full-resolution U-Net, each configuration in a fresh subprocess.",
    )
    from ..bench.runner import add_arguments

    add_arguments(p)
    p.set_defaults(func=_run_bench)


def _run_dehaze(args: argparse.Namespace) -> int:
    from .dehaze import run

    return run(args)


def _run_depth(args: argparse.Namespace) -> int:
    from .depth import run_from_args

    return run_from_args(args)


def _run_weights(args: argparse.Namespace) -> int:
    from .weights import run

    return run(args)


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
    add_dehaze_parser(sub, _run_dehaze)
    add_depth_parser(sub)
    add_weights_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command(lambda: args.func(args))
    except BrokenPipeError:
        return broken_pipe()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
