"""The ``clearnet`` command: ``dehaze``, ``depth``, ``weights`` and ``bench``."""

from __future__ import annotations

from typing import Any

from .app import build_parser, main
from .signals import BROKEN_PIPE_STATUS, Terminated, broken_pipe, run_command, terminating_signals

__all__ = ["BROKEN_PIPE_STATUS", "Terminated", "broken_pipe", "build_parser", "main", "run_command",
           "terminating_signals"]


def __getattr__(name: str) -> Any:  # the rest of the old flat module napari_clearnet.cli
    from .._moved import forward

    return forward(__name__, name, ("cli.app", "cli.args", "cli.dehaze"))
