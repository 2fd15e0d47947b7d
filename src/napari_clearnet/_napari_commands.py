"""napari glue without Qt widgets: layers in, layers out, all computation in the core.

The widgets run :func:`run_layer` in a worker thread and hand its result to
:func:`output_layers` / :func:`add_outputs` on the GUI thread; scripts call
:func:`dehaze_layer` / :func:`dehaze_layers`, which do the same synchronously. Keeping the two
paths on one generator means the GUI and scripts can never produce different layers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import engine, io, physics
from .engine import Dehazer, DehazeResult

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = [
    "METHOD_LABELS",
    "LayerRun",
    "Settings",
    "add_outputs",
    "airlight_sources",
    "channel_axis",
    "check_layer",
    "dehaze_layer",
    "dehaze_layers",
    "get_dehazer",
    "output_layers",
    "run_layer",
]

#: method id -> the name shown in layer names and widgets
METHOD_LABELS = {"clearnet": "ClearNet", "dcp": "DCP"}
#: kinds of output a run can add, in the order they are added
OUTPUTS = ("dehazed", "transmission", "raw transmission", "airlight")
#: at most this many airlight-source points per frame (the most haze-opaque ones)
MAX_SOURCE_POINTS = 500
METADATA_KEY = "napari_clearnet"

LayerDataTuple = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class Settings:
    """What a run depends on; equal settings on the same input replace the same output layers."""

    method: str = "clearnet"
    model: str | None = None
    device: str = "auto"
    t0: float | None = None
    airlight: tuple[float, float, float] | None = None
    temporal_smoothing: float = 0.0
    #: None: the method's default (engine.DEFAULT_SKY_PROTECTION)
    sky_protection: float | None = None
    strength: float = 1.0

    def __post_init__(self) -> None:
        engine.check_strength(self.strength)
        if self.method not in METHOD_LABELS:
            raise ValueError(f"method must be one of {tuple(METHOD_LABELS)}, got {self.method!r}")
        if self.airlight is not None:
            a = np.asarray(self.airlight, dtype=np.float64).reshape(-1)
            a = np.repeat(a, 3) if a.size == 1 else a
            if a.size != 3 or not np.isfinite(a).all() or a.min() <= 0 or a.max() > 1:
                raise ValueError(f"airlight must be one or three numbers in (0, 1], got {self.airlight!r}")
            object.__setattr__(self, "airlight", tuple(float(v) for v in a))

    @property
    def label(self) -> str:
        return METHOD_LABELS[self.method]

    def key(self) -> str:
        d = asdict(self)
        if self.method == "dcp":
            d["model"] = None
        return json.dumps(d, sort_keys=True)


@dataclass
class LayerRun:
    """A finished run on one layer: the core's result and, if asked, where A came from."""

    source: Layer
    settings: Settings
    result: DehazeResult
    #: (N, layer.ndim) data coordinates of the airlight-source pixels, or None
    airlight_points: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def check_layer(layer: Any) -> None:
    """Refuse anything but a single-scale RGB(A) or grey napari Image layer, saying what to use."""
    from napari.layers import Image

    if not isinstance(layer, Image):
        kind = type(layer).__name__
        name = getattr(layer, "name", repr(layer))
        raise ValueError(
            f"layer {name!r} is a {kind} layer; dehazing needs an Image layer (RGB, RGBA or grey, "
            "optionally a stack of frames)"
        )
    if layer.multiscale:
        raise ValueError(
            f"layer {layer.name!r} is multiscale; open its full-resolution level as a plain Image layer"
        )
    if layer.rgb and layer.data.shape[-1] not in (3, 4):
        raise ValueError(f"layer {layer.name!r} has {layer.data.shape[-1]} channels; accepted: 3 or 4")


def channel_axis(layer: Any) -> int | None:
    """napari knows whether a layer is RGB: say so, so (3, H, W) grey stacks are not ambiguous."""
    return -1 if layer.rgb else None


def get_dehazer(method: str, model: str | None = None, device: str = "auto") -> Dehazer:
    """A loaded method from the package's one model cache (:func:`engine.cached_model`)."""
    return engine.cached_model(model, method=method, device=device)


def _frames(data: Any, layout: io.Layout) -> Any:
    """The layer's data as (n, H, W[, C]) with the channel last; lazy arrays stay lazy."""
    tail = (layout.height, layout.width) + ((layout.channels,) if layout.channels else ())
    return data.reshape((layout.n_frames, *tail))


def _frame_rgb(frame: Any, channels: int, value_range: tuple[float, float]) -> np.ndarray:
    """One frame as float32 (H, W, 3) in [0, 1], as the engine sees it (grey repeated), scaled
    by the range decided once for the whole layer (:func:`io.pixel_range`)."""
    return engine.frame_rgb(io.to_float01(np.asarray(frame), value_range), channels)


def _source_pixels(rgb: np.ndarray, patch: int, fraction: float) -> np.ndarray:
    """(k, 2) row/col of the top ``fraction`` dark-channel pixels, the rule behind A."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    dark = physics.dark_channel(x, patch).reshape(-1)
    k = min(MAX_SOURCE_POINTS, max(1, round(dark.numel() * fraction)))
    idx = dark.topk(k).indices.numpy()
    return np.stack(np.unravel_index(idx, rgb.shape[:2]), axis=1)


def _source_rule(dehazer: Dehazer, height: int, width: int) -> tuple[int, float]:
    """Dark-channel patch (at full resolution) and top fraction the method uses for A."""
    if dehazer.method == "dcp" or dehazer.model is None:
        return dehazer.dcp_params.patch, dehazer.dcp_params.top_fraction
    prior = dehazer.model.config.prior
    wh, _ = dehazer.model.working_shape(height, width)
    patch = round(prior.patch * height / max(1, wh)) | 1
    return patch, prior.top_fraction


def airlight_sources(layer: Any, dehazer: Dehazer) -> np.ndarray:
    """Data coordinates (N, layer.ndim) of the pixels the airlight is estimated from."""
    check_layer(layer)
    layout = io.describe_layout(tuple(layer.data.shape), channel_axis(layer))
    frames = _frames(layer.data, layout)
    value_range = io.pixel_range(layer.data, layout)
    patch, fraction = _source_rule(dehazer, layout.height, layout.width)
    out = []
    for i in range(layout.n_frames):
        rgb = _frame_rgb(frames[i], layout.channels, value_range)
        out.append(_frame_points(_source_pixels(rgb, patch, fraction), i, layout))
    return np.concatenate(out).astype(np.float32)


def _frame_points(yx: np.ndarray, index: int, layout: io.Layout) -> np.ndarray:
    lead = np.unravel_index(index, layout.frames_shape) if layout.frames_shape else ()
    cols = [np.full(len(yx), v) for v in lead]
    return np.column_stack([*cols, yx[:, 0], yx[:, 1]])


def run_layer(
    layer: Any,
    dehazer: Dehazer,
    settings: Settings,
    *,
    with_raw: bool = False,
    with_sources: bool = False,
) -> Generator[tuple[int, int], None, LayerRun]:
    """Dehaze a layer frame by frame, yielding ``(frames done, n_frames)``; returns a
    :class:`LayerRun`. Stopping the generator early leaves nothing behind."""
    check_layer(layer)
    data = layer.data
    layout = io.describe_layout(tuple(data.shape), channel_axis(layer))
    n, h, w = layout.n_frames, layout.height, layout.width
    j = np.empty((n, h, w, 3), np.float32)
    t = np.empty((n, h, w), np.float32)
    a = np.empty((n, 3), np.float32)
    raw = np.empty((n, h, w), np.float32) if with_raw else None
    points: list[np.ndarray] = []
    frames = _frames(data, layout) if with_sources else None
    patch, fraction = _source_rule(dehazer, h, w)
    start = time.perf_counter()
    yield 0, n
    for i, total, res in dehazer.iter_frames(
        data, channel_axis=layout.channel_axis, airlight=settings.airlight, t0=settings.t0,
        temporal_smoothing=settings.temporal_smoothing, with_raw=with_raw,
        sky_protection=settings.sky_protection, strength=settings.strength,
    ):
        j[i], t[i], a[i] = res.image, res.transmission, res.airlight
        if raw is not None and res.transmission_raw is not None:
            raw[i] = res.transmission_raw
        if frames is not None:
            rgb = _frame_rgb(frames[i], layout.channels, res.value_range)  # as the engine read it
            points.append(_frame_points(_source_pixels(rgb, patch, fraction), i, layout))
        yield i + 1, total
    fs = layout.frames_shape
    result = DehazeResult(
        image=engine.restore_layout(j, data, layout, None),
        transmission=t.reshape((*fs, h, w)),
        airlight=a.reshape((*fs, 3)),
        provenance=dehazer.provenance(
            seconds=round(time.perf_counter() - start, 4),
            t0=dehazer.t0 if settings.t0 is None else settings.t0,
            airlight_override=None if settings.airlight is None else list(settings.airlight),
            temporal_smoothing=settings.temporal_smoothing,
            sky_protection=dehazer.resolve_sky(settings.sky_protection),
            strength=settings.strength,
            source_layer=layer.name,
        ),
        transmission_raw=None if raw is None else raw.reshape((*fs, h, w)),
    )
    pts = np.concatenate(points).astype(np.float32) if points else None
    return LayerRun(layer, settings, result, pts)


def output_name(source: str, kind: str, settings: Settings) -> str:
    """``"<input> dehazed (ClearNet)"``, ``"<input> transmission (DCP)"``, …"""
    return f"{source} {kind} ({settings.label})"


def output_layers(run: LayerRun, outputs: Iterable[str] = ("dehazed",)) -> list[LayerDataTuple]:
    """Layer data tuples for the chosen outputs, on the input's grid, with provenance."""
    outputs = list(outputs)
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if unknown:
        raise ValueError(f"unknown outputs {unknown}; accepted: {list(OUTPUTS)}")
    src, res = run.source, run.result
    prov = dict(res.provenance)
    prov["airlight"] = np.round(res.airlight, 5).tolist()
    geometry = {"scale": tuple(src.scale), "translate": tuple(src.translate)}

    def meta(kind: str) -> dict[str, Any]:
        tag = {"source": src.name, "output": kind, "settings": run.settings.key()}
        return {"provenance": prov, METADATA_KEY: tag}

    def kw(kind: str, **extra: Any) -> dict[str, Any]:
        name = output_name(src.name, kind, run.settings)
        return {"name": name, "metadata": meta(kind), **geometry, **extra}

    tuples: list[LayerDataTuple] = []
    for kind in OUTPUTS:
        if kind not in outputs:
            continue
        if kind == "dehazed":
            extra = {"rgb": bool(src.rgb), "contrast_limits": (0.0, 1.0)}
            if not src.rgb:
                extra["colormap"] = "gray"
            tuples.append((res.image, kw(kind, **extra), "image"))
        elif kind == "transmission":
            tuples.append((res.transmission, kw(kind, colormap="magma", contrast_limits=(0.0, 1.0)), "image"))
        elif kind == "raw transmission":
            if res.transmission_raw is None:
                raise ValueError("raw transmission was not computed; run with with_raw=True")
            tuples.append((res.transmission_raw, kw(kind, colormap="viridis", contrast_limits=(0.0, 1.0)),
                           "image"))
        elif kind == "airlight":
            if run.airlight_points is None:
                raise ValueError("airlight sources were not computed; run with with_sources=True")
            colour = np.clip(res.airlight.reshape(-1, 3).mean(0), 0, 1).tolist()
            size = max(3.0, min(res.transmission.shape[-2:]) / 60)
            style = {"size": size, "face_color": colour, "border_color": "red", "symbol": "disc"}
            tuples.append((run.airlight_points, kw(kind, **style), "points"))
    return tuples


def _own_layer(viewer: napari.Viewer, name_meta: dict[str, Any], layer_type: str) -> Layer | None:
    for lay in viewer.layers:
        tag = lay.metadata.get(METADATA_KEY) if isinstance(lay.metadata, dict) else None
        if tag == name_meta and type(lay).__name__.lower() == layer_type:
            return lay
    return None


def add_outputs(viewer: napari.Viewer, tuples: Sequence[LayerDataTuple]) -> list[Layer]:
    """Add output layers; a layer from an earlier run with the same input and settings gets the
    new data instead of a duplicate (so re-running does not pile up layers)."""
    added = []
    for data, kwargs, layer_type in tuples:
        own = _own_layer(viewer, kwargs["metadata"][METADATA_KEY], layer_type)
        if own is not None:
            own.data = data
            own.metadata = kwargs["metadata"]
            added.append(own)
            continue
        adder = getattr(viewer, f"add_{layer_type}")
        added.append(adder(data, **kwargs))
    return added


def _drive(gen: Generator[Any, None, LayerRun]) -> LayerRun:
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def dehaze_layer(
    viewer: napari.Viewer,
    layer: Any,
    *,
    method: str = "clearnet",
    model: str | None = None,
    device: str = "auto",
    t0: float | None = None,
    airlight: Sequence[float] | None = None,
    temporal_smoothing: float = 0.0,
    outputs: Iterable[str] = ("dehazed",),
    sky_protection: float | None = None,
    strength: float = 1.0,
) -> list[Layer]:
    """Dehaze one Image layer (by object or name) in ``viewer`` and add the chosen ``outputs``
    (``"dehazed"``, ``"transmission"``, ``"raw transmission"``, ``"airlight"``); returns the
    output layers. Blocking: for scripts, the console and batch jobs."""
    if isinstance(layer, str):
        layer = viewer.layers[layer]
    outputs = list(outputs)
    settings = Settings(method, model, device, t0, None if airlight is None else tuple(airlight),
                        temporal_smoothing, sky_protection, strength)
    dehazer = get_dehazer(method, model, device)
    run = _drive(run_layer(layer, dehazer, settings, with_raw="raw transmission" in outputs,
                           with_sources="airlight" in outputs))
    return add_outputs(viewer, output_layers(run, outputs))


def dehaze_layers(
    viewer: napari.Viewer, layers: Iterable[Any] | None = None, **kwargs: Any
) -> list[Layer]:
    """Dehaze several layers (default: every Image layer that is not itself an output).

    Layers that cannot be dehazed are skipped with a warning notification naming them."""
    from napari.layers import Image
    from napari.utils.notifications import show_warning

    if layers is None:
        layers = [lay for lay in viewer.layers if isinstance(lay, Image)
                  and METADATA_KEY not in lay.metadata]
    out: list[Layer] = []
    for lay in list(layers):
        try:
            check_layer(lay)
        except ValueError as exc:
            show_warning(f"napari-clearnet: skipped: {exc}")
            continue
        out.extend(dehaze_layer(viewer, lay, **kwargs))
    return out
