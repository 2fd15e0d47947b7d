"""The Haze depth dock widget: a frame's transmission read as depth, scaled by points of known distance.

**Estimate depth** runs :func:`napari_clearnet.depth.estimate` on the frame shown, in a worker
(progress, Cancel and errors as in the other widgets), and adds the relative depth τ = −ln t on the
input's grid. The user clicks points in the Points layer the widget makes and types their
distances in the table (new points get the distance in the box); every change refits β on the GUI
thread (a handful of numbers) and the metric depth and its uncertainty are computed in a worker,
the newest fit winning. **3D** adds the frame as a Surface draped on its depth (vertex colours from
the image) and switches the canvas to 3D. The input layer is never modified.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, Label, PushButton, Table
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error

from ...analysis import depth
from ...core import arrays
from ...core.arrays import describe_layout
from ...core.run import Progress
from ..activity import DownloadProgress
from ..layers import METADATA_KEY, Settings, add_outputs, channel_axis, get_dehazer
from ..preview import current_frame
from .panel import LayerPanel, Plan
from .runner import RunError

__all__ = ["HazeDepthWidget", "surface_data"]

#: the table's columns (one row per point); only the distance is edited by the user
COLUMNS = ("x", "y", "distance (m)", "map says (m)", "t")
#: the draped surface has at most this many vertices along the image's long side
SURFACE_SIDE = 384
#: the farthest the map can tell lies this many image long sides behind the nearest (3D relief)
RELIEF = 0.5
#: camera angles when the 3D view opens: from above and to the left, so the relief shows
VIEW_ANGLES = (0.0, 40.0, -25.0)


@dataclass(frozen=True)
class DepthRequest:
    """Which frame of the input to read (the one shown when Estimate was pressed)."""

    frame: int


@dataclass
class DepthRun:
    """A finished estimate: the input, its frame, the settings and the haze depth."""

    source: Any
    frame: int
    settings: Settings
    depth: depth.HazeDepth
    n_frames: int

    def tag(self, kind: str) -> dict[str, Any]:
        return {"source": self.source.name, "output": kind, "settings": self.settings.key(),
                "frame": self.frame}

    def name(self, kind: str) -> str:
        at = f", frame {self.frame}" if self.n_frames > 1 else ""
        return f"{self.source.name} {kind} ({self.settings.label}{at})"

    def geometry(self) -> dict[str, tuple]:
        """The input's grid in its last two (row, column) axes."""
        return {"scale": tuple(self.source.scale[-2:]), "translate": tuple(self.source.translate[-2:])}


def surface_data(hd: depth.HazeDepth, side: int = SURFACE_SIDE, relief: float = RELIEF
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (N, 3) as (depth, row, column) in pixels, faces (M, 3), vertex colours (N, 4)): the
    image on a grid of at most ``side`` vertices along its long side, lifted by τ (the farthest the
    map tells at ``relief`` long sides)."""
    h, w = hd.transmission.shape
    step = max(1, math.ceil(max(h, w) / side))
    rows = np.unique(np.r_[np.arange(0, h, step), h - 1])
    cols = np.unique(np.r_[np.arange(0, w, step), w - 1])
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    tau_far = -math.log(hd.floor + depth.CLAMP_MARGIN)
    z = hd.optical_depth[rr, cc] / tau_far * relief * max(h, w)
    vertices = np.stack([z, rr, cc], -1).reshape(-1, 3).astype(np.float32)
    idx = np.arange(rr.size).reshape(rr.shape)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
    rgb = np.full((rr.size, 3), 0.8, np.float32) if hd.image is None else hd.image[rr, cc].reshape(-1, 3)
    colours = np.concatenate([rgb, np.ones((rr.size, 1), np.float32)], 1)
    return vertices, faces.astype(np.int64), colours


def _metric_maps(hd: depth.HazeDepth, fit: depth.DepthFit) -> tuple[np.ndarray, np.ndarray | None]:
    return fit.depth(hd.optical_depth), fit.depth_se(hd.transmission)


class HazeDepthWidget(LayerPanel):
    """Relative depth from haze; with points of known distance, β, metric depth and visibility V."""

    run_text = "Estimate depth"

    def _add_controls(self) -> None:
        self.state: DepthRun | None = None
        self.points: Any = None  # the Points layer of known distances
        self.surface: Any = None
        self.fit: depth.DepthFit | None = None
        self._frame = 0
        self._generation = 0  # the newest fit; metric maps of older ones are dropped
        self._filling = False  # the table is being filled by code, not edited
        self.new_distance = FloatSpinBox(label="distance of new points (m)", value=100.0, min=0.01, max=1e6,
                                         step=1.0, tooltip="given to each point clicked next; edit the "
                                         "table to change a point's distance")
        self.points_button = PushButton(text="Click points of known distance")
        self.table = Table(value={"data": [], "index": [], "columns": list(COLUMNS)})
        self.table.native.setMinimumSize(340, 120)
        self.table.native.horizontalHeader().setStretchLastSection(True)
        self.beta_label = Label(label="β (1/m)", value="–")
        self.visibility_label = Label(label="visibility V", value="–")
        self.show_3d = CheckBox(text="3D: the image draped on its depth", value=False)
        self.new_distance.changed.connect(self._new_distance_changed)
        self.points_button.changed.connect(self.edit_points)
        self.table.changed.connect(self._table_edited)
        self.show_3d.changed.connect(self._toggle_3d)
        self.extend([self.new_distance, self.points_button, self.table, self.beta_label,
                     self.visibility_label, self.show_3d])

    # ------------------------------------------------------------------ the estimate
    def start(self, layer: Any = None, settings: Settings | None = None) -> GeneratorWorker | None:
        chosen = self.input.value if layer is None or isinstance(layer, bool) else layer
        try:
            self._frame = current_frame(chosen, self.viewer) if chosen is not None else 0
        except (ValueError, AttributeError):
            self._frame = 0  # the base class names what is wrong with the layer
        return super().start(layer, settings)

    def plan(self, layer: Any, settings: Settings) -> Plan:
        return Plan(self._job, (layer, settings, DepthRequest(self._frame)), self._done)

    @staticmethod
    def _job(layer: Any, settings: Settings, request: DepthRequest) -> Generator[Progress, None, DepthRun]:
        try:
            dehazer = get_dehazer(settings.method, settings.model, settings.device,
                                  tqdm_class=DownloadProgress)
            layout = describe_layout(tuple(layer.data.shape), channel_axis(layer))
            frame = arrays.frame(layer.data, request.frame, layout)  # on the whole layer's range
            hd = yield from depth.estimate(dehazer, frame, channel_axis=-1 if layout.channels else None,
                                           value_range=(0.0, 1.0))
        except RuntimeError as exc:  # e.g. torch's out-of-memory errors
            raise RunError(str(exc)) from exc
        return DepthRun(layer, request.frame, settings, hd, layout.n_frames)

    def _done(self, run: DepthRun) -> None:
        self.state = run
        hd = run.depth
        tau_far = -math.log(hd.floor + depth.CLAMP_MARGIN)
        meta = {"provenance": hd.provenance, METADATA_KEY: run.tag("relative depth")}
        add_outputs(self.viewer, [(hd.optical_depth, {
            "name": run.name("relative depth"), "metadata": meta, "colormap": "turbo",
            "contrast_limits": (0.0, tau_far), **run.geometry()}, "image")])
        self.edit_points()
        self._points_on_top()
        if self.show_3d.value:
            self._show_surface()

    # ------------------------------------------------------------------ points of known distance
    def edit_points(self, *_: Any) -> Any:
        """The Points layer to click known distances into (made on first use, and again for another
        input: its points are that image's pixels), selected in add mode."""
        src = self.state.source if self.state else self.input.value
        if src is None:
            show_error("napari-clearnet: choose an input image layer first")
            return None
        if (self.points is None or self.points not in self.viewer.layers
                or self.points.metadata.get(METADATA_KEY, {}).get("source") != src.name):
            geometry = {"scale": tuple(src.scale[-2:]), "translate": tuple(src.translate[-2:])}
            h, w = (src.data.shape[-3:-1] if src.rgb else src.data.shape[-2:])
            self.points = self.viewer.add_points(
                np.empty((0, 2)), ndim=2, name=f"{src.name} known distances",
                features={"distance_m": np.empty(0)},
                feature_defaults={"distance_m": float(self.new_distance.value)},
                text={"string": "{distance_m:.4g} m", "color": "magenta", "anchor": "upper_left",
                      "size": 10},
                size=max(6.0, min(h, w) / 60), face_color="magenta", border_color="white",
                metadata={METADATA_KEY: {"source": src.name, "output": "known distances"}}, **geometry)
            self.points.events.data.connect(self._points_changed)
            self.points.events.features.connect(self._points_changed)
        self.viewer.layers.selection.active = self.points
        self.points.mode = "add"
        self._points_changed()
        return self.points

    def _new_distance_changed(self, value: float) -> None:
        if self.points is not None:
            self.points.feature_defaults = {"distance_m": float(value)}

    def known_distances(self) -> list[depth.KnownDistance]:
        """The clicked points as (column, row, metres) of the frame."""
        if self.points is None or self.points not in self.viewer.layers:
            return []
        dist = self.points.features["distance_m"].to_numpy(np.float64)
        return [depth.KnownDistance(float(c), float(r), float(d), f"point {i + 1}")
                for i, ((r, c), d) in enumerate(zip(self.points.data[:, -2:], dist, strict=True))]

    def _points_changed(self, *_: Any) -> None:
        if self.runner.closed:
            return
        pts = self.known_distances()
        fit, message = None, ""
        if self.state is not None and pts:
            try:
                fit = self.state.depth.fit(pts)
            except ValueError as exc:
                message = str(exc)
        self.fit = fit
        self._fill_table(pts, fit)
        self._show_fit(fit, message, bool(pts))
        if fit is not None:
            self._start_metric(fit)

    def _fill_table(self, pts: list[depth.KnownDistance], fit: depth.DepthFit | None) -> None:
        rows = []
        readings = {r.point.label: r for r in fit.readings} if fit else {}
        if self.points is not None:
            self.points.refresh_text()  # napari may skip the first point's label otherwise
        for p in pts:
            r = readings.get(p.label)
            said = "" if r is None or fit is None else f"{r.optical_depth / fit.beta:.4g}"
            said += "" if r is None or r.used else " (not used)"
            rows.append([f"{p.x:.0f}", f"{p.y:.0f}", f"{p.distance:.4g}", said,
                         "" if r is None else f"{r.t:.3f}"])
        self._filling = True
        try:
            self.table.value = {"data": rows, "index": [p.label for p in pts], "columns": list(COLUMNS)}
            self.table.native.resizeColumnsToContents()
        finally:
            self._filling = False

    def _table_edited(self, change: Any) -> None:
        """A distance typed into the table goes to the point's feature (and refits); edits of the
        other columns are undone (they show what the map says)."""
        if self._filling or self.points is None or self.points not in self.viewer.layers:
            return
        row = change.get("row") if isinstance(change, dict) else None
        if change.get("column_header") != "distance (m)" or row is None or row >= len(self.points.data):
            self._points_changed()
            return
        try:
            metres = float(change["data"])
        except (TypeError, ValueError):
            self._points_changed()
            self.status.value = (f"point {row + 1}: distance must be a number of metres, "
                                 f"got {change['data']!r}")
            return
        features = self.points.features.copy()
        features.loc[row, "distance_m"] = metres
        self.points.features = features  # emits 'features': refits

    def _show_fit(self, fit: depth.DepthFit | None, message: str, any_points: bool) -> None:
        if fit is None:
            self.beta_label.value = self.visibility_label.value = "–"
            if message:
                self.status.value = message
            elif self.state is None:
                self.status.value = "estimate the depth first" if any_points else ""
            else:
                self.status.value = "click points whose distance you know, then type their distances"
            return
        if fit.beta_se is None:
            self.beta_label.value = f"{fit.beta:.4g} (one point: no uncertainty)"
            self.visibility_label.value = f"{fit.visibility:.4g} m (add a point for its uncertainty)"
        else:
            lo, hi = fit.beta_ci95 or (math.nan, math.nan)
            vlo, vhi = fit.visibility_ci95 or (math.nan, math.nan)
            self.beta_label.value = f"{fit.beta:.4g} ± {fit.beta_se:.2g} (95 %: {lo:.3g}–{hi:.3g})"
            self.visibility_label.value = (f"{fit.visibility:.4g} ± {fit.visibility_se:.2g} m "
                                           f"(95 %: {vlo:.3g}–{vhi:.3g} m)")
        said = "; ".join(fit.warnings) or f"fitted on {fit.n_used} points"
        self.status.value = "; ".join((said, *fit.caveats))

    def _start_metric(self, fit: depth.DepthFit) -> None:
        """Metric depth and its uncertainty in a worker; only the newest fit's are shown."""
        assert self.state is not None
        self._generation += 1
        gen, run = self._generation, self.state
        self._metric_worker = create_worker(
            _metric_maps, run.depth, fit, _start_thread=False,
            _connect={"returned": lambda maps: self._show_metric(gen, run, fit, maps),
                      "errored": lambda exc: show_error(f"napari-clearnet: {type(exc).__name__}: {exc}")})
        self._metric_worker.start()

    def _show_metric(self, gen: int, run: DepthRun, fit: depth.DepthFit,
                     maps: tuple[np.ndarray, np.ndarray | None]) -> None:
        if self.runner.closed or gen != self._generation:
            return
        metres, se = maps
        near_side = metres[~run.depth.beyond]
        far = float(np.percentile(near_side, 99)) if near_side.size else fit.max_depth
        meta = {"provenance": {**run.depth.provenance, "depth_fit": fit.to_dict()}}
        tuples = [(metres, {"name": run.name("depth (m)"), "colormap": "turbo", "contrast_limits": (0.0, far),
                            "metadata": {**meta, METADATA_KEY: run.tag("depth (m)")}, **run.geometry()},
                   "image")]
        stale = [lay for lay in self.viewer.layers
                 if lay.metadata.get(METADATA_KEY) == run.tag("depth uncertainty (m)")]
        if se is not None:
            top = float(np.nanpercentile(se, 99)) or 1.0
            tuples.append((se, {"name": run.name("depth uncertainty (m)"), "colormap": "magma",
                                "contrast_limits": (0.0, top), "visible": False,
                                "metadata": {**meta, METADATA_KEY: run.tag("depth uncertainty (m)")},
                                **run.geometry()}, "image"))
        else:
            for lay in stale:  # one point: no uncertainty, so none of an earlier fit is left
                self.viewer.layers.remove(lay)
        add_outputs(self.viewer, tuples)
        self._points_on_top()

    def _points_on_top(self) -> None:
        """Keep the points above the maps the widget adds, selected for the next click."""
        if self.points is not None and self.points in self.viewer.layers:
            layers = self.viewer.layers
            layers.move(layers.index(self.points), len(layers))
            layers.selection.active = self.points

    # ------------------------------------------------------------------ 3D
    def _toggle_3d(self, on: bool) -> None:
        if on:
            self._show_surface()
        else:
            if self.surface is not None and self.surface in self.viewer.layers:
                self.viewer.layers.remove(self.surface)
            self.surface = None
            self.viewer.dims.ndisplay = 2

    def _show_surface(self) -> None:
        if self.state is None:
            self.status.value = "estimate the depth first; the 3D view drapes the image on it"
            return
        run = self.state
        vertices, faces, colours = surface_data(run.depth)
        (sy, sx), (ty, tx) = run.geometry()["scale"], run.geometry()["translate"]
        kwargs = {"name": run.name("draped on depth"), "vertex_colors": colours, "scale": (sy, sy, sx),
                  "translate": (0.0, ty, tx), "shading": "none",
                  "metadata": {METADATA_KEY: run.tag("draped on depth")}}
        if self.surface is not None and self.surface in self.viewer.layers:
            self.viewer.layers.remove(self.surface)
        self.surface = self.viewer.add_surface((vertices, faces), **kwargs)
        if self.viewer.dims.ndisplay != 3:
            self.viewer.dims.ndisplay = 3
            # napari 0.9 moved the camera to viewer.scene (viewer.camera is deprecated there)
            scene = getattr(self.viewer, "scene", None)
            camera = getattr(scene, "camera", None) or self.viewer.camera
            camera.angles = VIEW_ANGLES
