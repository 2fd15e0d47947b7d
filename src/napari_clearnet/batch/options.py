"""The options of a batch (``clearnet dehaze``), checked before any work.

Errors name the Python arguments, or the command-line flags inside
:func:`~napari_clearnet._validate.cli_spelling` (as the CLI does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .._util.validate import check_number, option
from ..choices import BIT_DEPTHS, FORMATS, METHODS
from ..core.devices import pick_device
from ..core.options import VIDEO_NETWORK_EVERY, VIDEO_TEMPORAL_SMOOTHING, DehazeOptions
from ..errors import BatchError
from ..video.writer import DEFAULT_CRF, DEFAULT_PRESET, Encoding

__all__ = ["BatchOptions"]


def _one_of(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BatchError(f"{option(name)} must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class BatchOptions:
    """What to do with every file; mirrors the ``clearnet dehaze`` options. Errors name the
    Python arguments, or the command-line flags inside :func:`cli_spelling` (as the CLI does)."""

    method: str = "clearnet"
    model: str | os.PathLike | None = None
    device: str = "auto"
    suffix: str = "_dehazed"
    format: str = "same"
    bit_depth: str = "same"
    overwrite: bool = False
    skip_existing: bool = False
    save_transmission: bool = False
    save_airlight: bool = False
    #: None: the method's default (engine.DEFAULT_SKY_PROTECTION)
    sky_protection: float | None = None
    #: JPEG/WebP quality 1-100 (None: JPEG 95, WebP lossless)
    quality: int | None = None
    #: how to read each image's array (see :func:`arrays.describe_layout`)
    channel_axis: int | str | None = "auto"
    #: (low, high) pixel values that map to black and white (None: decided per image)
    value_range: tuple[float, float] | None = None
    strength: float = 1.0
    #: steadies A and the haze amount along clips and stacks (None: 0.8 for clips, off for stacks)
    temporal_smoothing: float | None = None
    #: along clips, run the network on every k-th frame (None: 4 for clips, every frame of stacks)
    network_every: int | None = None
    #: write hazy | dehazed side by side in one image or frame (twice the width)
    side_by_side: bool = False
    #: H.264 quality of clips (0-51, lower is better) and x264 preset
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET
    #: a clip's frame that cannot be decoded: "repeat" the one before it (counted), or "stop"
    damaged_frames: str = "repeat"
    #: on a cluster: seconds to wait for a first worker, and for one when all have left
    worker_wait: float = 120.0

    def dehaze_options(self, *, clip: bool) -> DehazeOptions:
        """The run options of one input (a clip's temporal smoothing and network schedule default
        to :data:`~napari_clearnet.core.options.VIDEO_TEMPORAL_SMOOTHING` and
        :data:`~napari_clearnet.core.options.VIDEO_NETWORK_EVERY`, an image stack's to off and 1)."""
        smoothing = self.temporal_smoothing
        if smoothing is None:
            smoothing = VIDEO_TEMPORAL_SMOOTHING if clip else 0.0
        every = self.network_every
        if every is None:
            every = VIDEO_NETWORK_EVERY if clip else 1
        return DehazeOptions(channel_axis=self.channel_axis, value_range=self.value_range,
                             sky_protection=self.sky_protection, strength=self.strength,
                             temporal_smoothing=smoothing, network_every=every)

    def __post_init__(self) -> None:
        _one_of("method", self.method, METHODS)
        _one_of("damaged_frames", self.damaged_frames, ("repeat", "stop"))
        try:
            Encoding(self.crf, self.preset)
            run = self.dehaze_options(clip=False)  # the run options: checked as every run checks them
            self.value_range = run.value_range
            pick_device(self.device)
            if self.quality is not None:
                self.quality = check_number(self.quality, option("quality"), "[1, 100]", integer=True)
            self.worker_wait = check_number(self.worker_wait, option("worker_wait"), "[0, 86400]")
        except ValueError as exc:
            raise BatchError(str(exc)) from None
        _one_of("format", self.format, FORMATS)
        self.bit_depth = str(self.bit_depth)
        _one_of("bit_depth", self.bit_depth, BIT_DEPTHS)
        if self.bit_depth == "16" and self.format == "jpg":
            raise BatchError(f"{option('bit_depth', '16')} needs {option('format')} png, tif or same (JPEG "
                             "is 8-bit only)")
        if os.sep in self.suffix or "/" in self.suffix or "\0" in self.suffix:
            raise BatchError(f"{option('suffix')} must not contain a path separator, got {self.suffix!r}")
