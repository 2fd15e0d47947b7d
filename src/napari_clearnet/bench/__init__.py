"""``clearnet bench``: speed and memory per method and size, the clip row, and runs under load."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # the old flat module napari_clearnet.bench
    from .._moved import forward

    return forward(__name__, name, ("bench.runner",))
