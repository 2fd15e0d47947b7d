"""The Airlight widget: estimate A, show it and the pixels the method took it from; override it and
dehaze again."""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import Container, Label, PushButton
from napari.qt.threading import GeneratorWorker
from napari.utils.notifications import show_error

from ..layers import LayerRun, Settings
from .dehaze import spin
from .panel import LayerPanel, Plan, layer_job

__all__ = ["AirlightWidget"]


class AirlightWidget(LayerPanel):
    """Estimate A, show it and the pixels the method took it from; override it and dehaze again."""

    run_text = "Estimate airlight"

    def _add_controls(self) -> None:
        self.values = Label(label="A (R, G, B)", value="–")
        self.swatch = Label(label="colour", value="")
        self.swatch.native.setMinimumHeight(20)
        # nothing to show or override until an estimate exists: "—", not a made-up 0.850
        self.a_rgb = [spin(c, 0.0, 0.0, 1.0, 0.001, enabled=False) for c in "RGB"]
        for box in self.a_rgb:
            box.native.setSpecialValueText("—")
        self.rerun_button = PushButton(text="Dehaze with this A", enabled=False)
        self.rerun_button.changed.connect(self.rerun)
        self.extend([self.values, self.swatch,
                     Container(widgets=self.a_rgb, layout="horizontal", label="override A"),
                     self.rerun_button])

    def plan(self, layer: Any, settings: Settings) -> Plan:
        mode = "estimate" if settings.airlight is None else "override"
        return Plan(layer_job, (layer, settings, ["airlight"] if mode == "estimate" else ["dehazed"]),
                    lambda run: self._done(run, mode))

    def rerun(self, *_: Any) -> GeneratorWorker | None:
        """Dehaze the input with the A in the override boxes (a new layer, as the settings differ)."""
        try:
            settings = self.picker.settings(airlight=tuple(s.value for s in self.a_rgb))
        except ValueError as exc:
            show_error(f"napari-clearnet: {exc}")
            return None
        return self.start(None, settings)

    def _done(self, run: LayerRun, mode: str) -> None:
        self.add_layers(run)
        a = np.asarray(run.result.airlight, np.float32).reshape(-1, 3)
        mean = a.mean(0)
        text = ", ".join(f"{v:.3f}" for v in mean)
        if len(a) > 1:
            text += f"  (mean of {len(a)} frames; range {a.min():.3f}–{a.max():.3f})"
        self.values.value = text
        r, g, b = (round(255 * float(v)) for v in np.clip(mean, 0, 1))
        self.swatch.native.setStyleSheet(f"background-color: rgb({r}, {g}, {b}); border: 1px solid gray;")
        if mode == "estimate":
            for box, v in zip(self.a_rgb, mean, strict=True):
                box.min = 0.01
                box.value = round(float(v), 3)
                box.enabled = True
            self.rerun_button.enabled = True
