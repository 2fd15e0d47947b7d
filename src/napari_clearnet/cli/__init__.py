"""The ``clearnet`` command: ``dehaze``, ``depth``, ``weights`` and ``bench``."""

from __future__ import annotations

from typing import Any

from .main import build_parser, main, run_command

__all__ = ["build_parser", "main", "run_command"]


def __getattr__(name: str) -> Any:  # the rest of the old flat module napari_clearnet.cli
    from .._moved import forward

    return forward(__name__, name, ("cli.main",))
