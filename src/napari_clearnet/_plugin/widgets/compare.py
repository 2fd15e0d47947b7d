"""The Compare dock widget: outputs side by side, and their quality measured in a worker.

With a reference layer (a clear image of the same scene) every other Image layer gets PSNR and
SSIM against it; without one, the no-reference haze measures. Stacks are measured frame by frame
and averaged. The layers' data are taken on the GUI thread when Measure is pressed; the measuring
runs in a worker thread, so the viewer stays responsive on large stacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, Table
from napari.layers import Image
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error

from ...analysis import metrics
from ...core.arrays import describe_layout, frame

__all__ = ["CompareWidget", "grid_of", "measure"]

Rows = dict[str, dict[str, float | str]]
_COLUMNS = ["psnr", "ssim", "dark_channel", "contrast", "saturation", "note"]


def grid_of(viewer: Any) -> Any:
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def frames01(data: Any, rgb: bool) -> list[np.ndarray]:
    """A layer's frames as float32 (H, W) or (H, W, 3) in [0, 1] (alpha dropped)."""
    data = np.asarray(data)
    layout = describe_layout(data.shape, -1 if rgb else None)
    out = [frame(data, i, layout) for i in range(layout.n_frames)]  # each on the whole layer's range
    return [f[..., :3] for f in out] if layout.channels else out


def measure(layers: Sequence[tuple[str, Any, bool]], reference: tuple[str, Any, bool] | None) -> Rows:
    """Quality of each ``(name, data, rgb)`` layer: PSNR/SSIM against ``reference`` (a layer of the
    same shape, one frame or as many as the layer), else the no-reference haze measures."""
    ref_frames = None if reference is None else frames01(reference[1], reference[2])
    rows: Rows = {}
    for name, data, rgb in layers:
        try:
            fr = frames01(data, rgb)
            if ref_frames is None:
                vals = [metrics.haze_measures(f) for f in fr]
                rows[name] = {k: round(float(np.mean([v[k] for v in vals])), 4) for k in vals[0]}
            elif len(ref_frames) not in (1, len(fr)) or ref_frames[0].shape != fr[0].shape:
                rows[name] = {"psnr": "n/a", "ssim": "n/a", "note": f"shape differs from {reference[0]!r}"}
            else:
                pairs = [(f, ref_frames[min(i, len(ref_frames) - 1)]) for i, f in enumerate(fr)]
                with np.errstate(divide="ignore"):  # identical images: PSNR is inf, not a warning
                    psnr = float(np.mean([metrics.psnr(f, r) for f, r in pairs]))
                rows[name] = {"psnr": round(psnr, 3),
                              "ssim": round(float(np.mean([metrics.ssim(f, r) for f, r in pairs])), 4)}
        except ValueError as exc:
            rows[name] = {"note": str(exc)}
    return rows


class CompareWidget(Container):
    """Outputs side by side (grid mode) and their quality: PSNR/SSIM against a reference layer,
    or no-reference haze measures when there is none."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.worker: FunctionWorker | None = None
        self._closed = False  # the Qt widget is gone: a late result touches no widget
        #: the last measurements (also shown in the table)
        self.rows: Rows = {}
        self.grid_button = PushButton(text="Side by side (grid)")
        self.grid_button.changed.connect(self.toggle_grid)
        self.reference = ComboBox(label="reference", choices=self._image_layers, nullable=True, value=None,
                                  tooltip="a clear image of the same scene; empty: no-reference measures")
        self.measure_button = PushButton(text="Measure")
        self.measure_button.changed.connect(self.measure)
        self.table = Table(value={"data": [], "columns": []})
        self.table.read_only = True
        self.extend([self.grid_button, self.reference, self.measure_button, self.table])
        self.native.destroyed.connect(lambda *_: setattr(self, "_closed", True))

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(lay.name, lay) for lay in self.viewer.layers if isinstance(lay, Image)]

    def toggle_grid(self, *_: Any) -> None:
        grid = grid_of(self.viewer)
        grid.enabled = not grid.enabled
        self.grid_button.text = "Overlay (no grid)" if grid.enabled else "Side by side (grid)"

    def measure(self, *_: Any) -> FunctionWorker | None:
        """Measure every image layer (stacks: mean over frames) in a worker; the table and
        :attr:`rows` show the result when it is done."""
        if self.worker is not None:
            return None
        ref = self.reference.value
        layers = [(lay.name, lay.data, bool(lay.rgb)) for lay in self.viewer.layers
                  if isinstance(lay, Image) and lay is not ref and not lay.multiscale]
        reference = None if ref is None else (ref.name, ref.data, bool(ref.rgb))
        self.measure_button.enabled = False
        worker = create_worker(measure, layers, reference, _start_thread=False,
                               _connect={"returned": self._show, "errored": self._failed,
                                         "finished": self._finished})
        self.worker = worker
        worker.start()
        return worker

    def _show(self, rows: Rows) -> None:
        self.rows = rows
        if self._closed:
            return
        columns = sorted({k for r in rows.values() for k in r}, key=_COLUMNS.index)
        self.table.value = {"data": [[r.get(c, "") for c in columns] for r in rows.values()],
                            "index": list(rows), "columns": columns}

    def _failed(self, exc: BaseException) -> None:
        if not self._closed:
            show_error(f"napari-clearnet: measuring failed: {type(exc).__name__}: {exc}")

    def _finished(self) -> None:
        self.worker = None
        if not self._closed:
            self.measure_button.enabled = True
