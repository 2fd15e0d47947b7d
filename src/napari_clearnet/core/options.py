"""One set of run options, checked once: :class:`DehazeOptions`.

The API (``dehaze(image, options)`` or its keyword arguments), the run loop, the engine, the
napari ``Settings`` and the CLI's ``BatchOptions`` all hand the same frozen object down, so an
option has one default, one check and one message (naming the option as the caller spelled it:
``sky_protection`` from Python, ``--sky-protection`` from the shell).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .._util.validate import (
    check_airlight,
    check_number,
    check_sky_protection,
    check_strength,
    check_t0,
    option,
)
from .values import check_value_range

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_STRIP_PIXELS", "VIDEO_NETWORK_EVERY", "VIDEO_TEMPORAL_SMOOTHING",
           "DehazeOptions"]

#: pixels per strip of the full-resolution pass at most (``strip_pixels``); bounds peak memory
DEFAULT_STRIP_PIXELS = 4_000_000
#: frames whose working copies go through the estimator together (video and stacks)
DEFAULT_BATCH_SIZE = 8
#: temporal smoothing of clips unless told otherwise (about 5 frames); image stacks default to off
VIDEO_TEMPORAL_SMOOTHING = 0.8
#: along a clip the network runs on every k-th frame unless told otherwise; the frames between reuse
#: its haze amount and airlight correction with their own prior (docs/benchmarks.md: the quality
#: cost on a clip with moving haze and a moving camera)
VIDEO_NETWORK_EVERY = 4
#: the dehazed image's types: float32 in [0, 1], or uint8 rounded
OUTPUT_DTYPES = ("float32", "uint8")


@dataclass(frozen=True)
class DehazeOptions:
    """How a run reads its input and adjusts its estimate; every field is checked on creation.

    Parameters
    ----------
    channel_axis : int, "auto" or None, default "auto"
        Which axis holds the colours (None: a stack of grey frames).
    value_range : (float, float), optional
        Pixel values that become black and white (None: decided from the data, once per array).
    airlight : float or (float, float, float), optional
        A fixed airlight A in (0, 1] (None: estimated per frame).
    t0 : float, optional
        The lower bound of t in the recovery (None: the method's).
    temporal_smoothing : float, default 0.0
        In [0, 1): steadies A and the haze amount along a stack.
    strip_pixels : int, default 4_000_000
        Bounds the memory of the full-resolution pass.
    batch_size : int, default 8
        Frames of a stack that share one estimate.
    sky_protection : float, optional
        K in [0, 1]: flat regions within K of the airlight are not amplified (None: the method's
        default; 0 = off).
    strength : float, default 1.0
        In [0, 3]: scales the optical depth (1 = the model's estimate, 0 = no change).
    with_raw : bool, default False
        Add the method's raw t to the result.
    with_sources : bool, default False
        Add the pixels A was taken from.
    output_dtype : {"float32", "uint8"}, default "float32"
        The dehazed image's type: float32 in [0, 1], or uint8 rounded (what 8-bit files and video
        hold). 8-bit RGB input with "uint8" output takes the fast 8-bit path (one pass over the
        pixels, :mod:`napari_clearnet.core.fused`), the same numbers rounded.
    network_every : int, default 1
        Along a stack, run the network on every k-th frame only and reuse its per-image haze
        amount and airlight correction on the frames between (the transmission is still computed
        on every frame from that frame's own prior): haze changes slowly, and temporal smoothing
        blends these numbers anyway. 1 = every frame.
    with_transmission : bool, default True
        Compute the full-resolution t; False leaves ``transmission`` out of streamed frames
        (writers that keep only J skip that work).

    Raises
    ------
    ValueError
        A value out of its range, named as the caller wrote it.

    Examples
    --------
    >>> from napari_clearnet import DehazeOptions
    >>> DehazeOptions(strength=0.5).replace(sky_protection=0).sky_protection
    0.0
    """

    channel_axis: int | str | None = "auto"
    value_range: tuple[float, float] | None = None
    airlight: tuple[float, float, float] | None = None
    t0: float | None = None
    temporal_smoothing: float = 0.0
    strip_pixels: int = DEFAULT_STRIP_PIXELS
    batch_size: int = DEFAULT_BATCH_SIZE
    sky_protection: float | None = None
    strength: float = 1.0
    with_raw: bool = False
    with_sources: bool = False
    output_dtype: str = "float32"
    network_every: int = 1
    with_transmission: bool = True

    def __post_init__(self) -> None:
        ca = self.channel_axis
        if not (ca is None or ca == "auto" or (isinstance(ca, int) and not isinstance(ca, bool))):
            raise ValueError(f"{option('channel_axis')} must be an axis number, None or 'auto', got {ca!r}")
        a, k, vr = self.airlight, self.sky_protection, self.value_range
        checked = {
            "value_range": None if vr is None else check_value_range(vr),
            "airlight": None if a is None else tuple(float(v) for v in check_airlight(a)),
            "t0": check_t0(self.t0),
            "temporal_smoothing": check_number(self.temporal_smoothing, option("temporal_smoothing"),
                                               "[0, 1)"),
            "strip_pixels": check_number(self.strip_pixels, option("strip_pixels"), "[1, inf)", integer=True),
            "batch_size": check_number(self.batch_size, option("batch_size"), "[1, inf)", integer=True),
            "sky_protection": None if k is None else check_sky_protection(k),
            "strength": check_strength(self.strength),
            "with_raw": bool(self.with_raw),
            "with_sources": bool(self.with_sources),
            "network_every": check_number(self.network_every, option("network_every"), "[1, inf)",
                                          integer=True),
            "with_transmission": bool(self.with_transmission),
        }
        if self.output_dtype not in OUTPUT_DTYPES:
            raise ValueError(f"{option('output_dtype')} must be one of {', '.join(OUTPUT_DTYPES)}, "
                             f"got {self.output_dtype!r}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> DehazeOptions:
        """A checked copy with ``changes``."""
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def of(cls, options: DehazeOptions | None = None, changes: dict[str, Any] | None = None) -> DehazeOptions:
        """``options`` (or the defaults) with the keyword arguments ``changes`` on top: how every
        entry point that takes both an ``options`` object and keyword options reads them."""
        if options is not None and not isinstance(options, DehazeOptions):
            raise TypeError(f"options must be a DehazeOptions, got {type(options).__name__}")
        unknown = sorted(set(changes or ()) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(map(repr, unknown))}; the options are "
                            f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        return (options or cls()).replace(**(changes or {}))
