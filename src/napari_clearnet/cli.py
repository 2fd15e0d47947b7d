"""The ``clearnet`` command line: ``clearnet dehaze | weights | bench``.

Each subcommand's parser lives in its own ``add_*_parser`` function and calls the plain-Python
core; nothing here knows about Qt.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def add_dehaze_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dehaze", help="dehaze image files, folders or globs into an output folder")
    p.set_defaults(func=_not_ready)


def add_weights_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list, download, verify and locate model weights")
    p.set_defaults(func=_not_ready)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure speed and memory on this machine")
    p.set_defaults(func=_not_ready)


def _not_ready(args: argparse.Namespace) -> int:  # replaced as each subcommand lands
    print(f"clearnet {args.command}: not available in this build", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="clearnet", description="Physics-based dehazing: ClearNet and the Dark Channel Prior."
    )
    parser.add_argument("--version", action="version", version=f"napari-clearnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_dehaze_parser(sub)
    add_weights_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
