"""napari layers in, napari layers out: the napari side of a run, without Qt widgets.

:func:`run_layer` drives the one run loop (:func:`napari_clearnet.run.run`) on a layer's data and
returns a :class:`LayerRun`; :func:`output_layers` turns its result into layer data tuples (on the
input's grid, with provenance) and :func:`add_outputs` adds them, replacing the layers of an
earlier run with the same input and settings. The widgets run :func:`run_layer` in a worker
thread; :func:`dehaze_layer` / :func:`dehaze_layers` (the scripting commands) run it on the
calling thread, with a bar in napari's activity dock. All computation is in the core.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import api
from .._util.validate import check_airlight
from ..choices import METHOD_LABELS, METHODS
from ..core.engine import Dehazer
from ..core.options import DehazeOptions
from ..core.run import DehazeResult, Progress, drive, run

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = [
    "LayerRun",
    "Settings",
    "add_outputs",
    "channel_axis",
    "check_layer",
    "dehaze_layer",
    "dehaze_layers",
    "get_dehazer",
    "output_layers",
    "run_layer",
]

#: kinds of output a run can add, in the order they are added
OUTPUTS = ("dehazed", "transmission", "raw transmission", "airlight")
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
        self.options()  # every run option checked here, once, as the run will read it
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.airlight is not None:
            object.__setattr__(self, "airlight", tuple(float(v) for v in check_airlight(self.airlight)))

    @property
    def label(self) -> str:
        return METHOD_LABELS[self.method]

    def key(self) -> str:
        d = asdict(self)
        if self.method == "dcp":
            d["model"] = None
        return json.dumps(d, sort_keys=True)

    def options(self, **changes: Any) -> DehazeOptions:
        """The run options these settings stand for (with ``changes``)."""
        return DehazeOptions(airlight=self.airlight, t0=self.t0, temporal_smoothing=self.temporal_smoothing,
                             sky_protection=self.sky_protection, strength=self.strength).replace(**changes)


@dataclass
class LayerRun:
    """A finished run on one layer: its input, its settings and the core's result."""

    source: Layer
    settings: Settings
    result: DehazeResult
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


def get_dehazer(method: str, model: str | None = None, device: str = "auto",
                tqdm_class: type | None = None) -> Dehazer:
    """A loaded method from the package's one model cache (:func:`api.cached_model`);
    ``tqdm_class`` shows a download's bytes."""
    return api.cached_model(model, method=method, device=device, tqdm_class=tqdm_class)


def run_layer(
    layer: Any, dehazer: Dehazer, settings: Settings, *, with_raw: bool = False, with_sources: bool = False,
) -> Generator[Progress, None, LayerRun]:
    """Dehaze a layer frame by frame, yielding ``(frames done, n_frames)``; returns a
    :class:`LayerRun`. Stopping the generator early leaves nothing behind."""
    check_layer(layer)
    opts = settings.options(channel_axis=channel_axis(layer), with_raw=with_raw, with_sources=with_sources)
    result = yield from run(dehazer, layer.data, opts, provenance={"source_layer": layer.name})
    return LayerRun(layer, settings, result)


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
            if res.airlight_sources is None:
                raise ValueError("airlight sources were not computed; run with with_sources=True")
            colour = np.clip(res.airlight.reshape(-1, 3).mean(0), 0, 1).tolist()
            size = max(3.0, min(res.transmission.shape[-2:]) / 60)
            style = {"size": size, "face_color": colour, "border_color": "red", "symbol": "disc"}
            tuples.append((res.airlight_sources, kw(kind, **style), "points"))
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


def show_progress(bar: Any, done: int, total: int) -> None:
    """Bring a napari progress bar to ``done`` of ``total`` frames."""
    if bar.total != total:
        bar.total = total
    bar.update(done - bar.n)


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
    output layers. Blocking, with frames and downloads in napari's activity dock: for scripts,
    the console and batch jobs."""
    from napari.utils import progress

    if isinstance(layer, str):
        layer = viewer.layers[layer]
    outputs = list(outputs)
    settings = Settings(method, model, device, t0, None if airlight is None else tuple(airlight),
                        temporal_smoothing, sky_protection, strength)
    dehazer = get_dehazer(method, model, device, tqdm_class=progress)
    with progress(total=0, desc=f"dehazing {layer.name} ({settings.label})") as bar:
        done = drive(run_layer(layer, dehazer, settings, with_raw="raw transmission" in outputs,
                               with_sources="airlight" in outputs), lambda i, n: show_progress(bar, i, n))
    return add_outputs(viewer, output_layers(done, outputs))


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
