"""The Dehaze widget: dehaze an image or stack, with a live preview as the strength moves (or as the
time slider moves), and optionally its transmission map and airlight sources."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, Container, FloatSlider, FloatSpinBox
from napari.layers import Image

from ..._util.validate import MAX_STRENGTH
from ...core.engine import DEFAULT_SKY_PROTECTION
from ...core.options import VIDEO_TEMPORAL_SMOOTHING
from ..layers import LayerRun, Settings, check_layer
from ..preview import LivePreview
from .panel import LayerPanel, Plan, layer_job

__all__ = ["TIME_LABELS", "DehazeWidget", "is_time_stack", "spin"]


def spin(label: str, value: float, lo: float, hi: float, step: float = 0.01, **kw: Any) -> FloatSpinBox:
    return FloatSpinBox(label=label, value=value, min=lo, max=hi, step=step, **kw)


#: axis labels that say a stack's first axis is time
TIME_LABELS = ("t", "time", "frame", "frames")


def is_time_stack(layer: Any) -> bool:
    """A layer whose first axis is time: a clip opened by this plugin's reader (``metadata["video"]``)
    or a stack whose first axis label says time. It gets the CLI's temporal smoothing by default."""
    if not isinstance(layer, Image):
        return False
    if "video" in (layer.metadata or {}):
        return True
    labels = tuple(getattr(layer, "axis_labels", ()) or ())  # napari's ndim leaves out RGB's channels
    return layer.ndim > 2 and bool(labels) and str(labels[0]).strip().lower() in TIME_LABELS


class DehazeWidget(LayerPanel):
    """Dehaze an image or stack; optionally add its transmission map and airlight sources."""

    run_text = "Dehaze"

    def _add_controls(self) -> None:
        self.strength = FloatSlider(label="strength", value=1.0, min=0.0, max=MAX_STRENGTH, step=0.05,
                                    tooltip="how much of the estimated haze to remove: 1 = the model's "
                                            "estimate, 0 = none, >1 = more")
        self.live = CheckBox(text="preview while adjusting", value=True,
                             tooltip="dehaze a reduced copy of the current frame as the strength moves")
        self.follow = CheckBox(text="live: dehaze the frame shown", value=False,
                               tooltip="as a stack's or video's time slider moves, dehaze the frame shown: "
                                       "a reduced copy first, then full resolution; a newer frame cancels "
                                       "an older one")
        self.preview = LivePreview(self.viewer)
        self.strength.changed.connect(self._preview_changed)
        self.live.changed.connect(self._live_toggled)
        self.follow.changed.connect(self._follow_toggled)
        self.viewer.dims.events.current_step.connect(self._frame_changed)
        self.t0 = spin("t0", 0.1, 0.01, 0.9, tooltip="lower bound of t in J = (I - A)/max(t, t0) + A")
        self.override = CheckBox(text="set airlight A by hand", value=False)
        self.a_rgb = [spin(c, 0.85, 0.01, 1.0, 0.001, enabled=False) for c in "RGB"]
        self.override.changed.connect(lambda v: [setattr(s, "enabled", v) for s in self.a_rgb])
        self.smoothing = spin("temporal smoothing", 0.0, 0.0, 0.95, 0.05,
                               tooltip="stacks: blend each frame's A and haze amount with the previous "
                                       "frame's (no flicker); 0.8 for video, as on the command line")
        # the CLI's default follows the input (video: on, other layers: off) until it is set by hand
        self._smoothing_by_hand = False
        self._smoothing_auto = False
        self.smoothing.changed.connect(self._smoothing_changed)
        self.input.changed.connect(self._input_changed_smoothing)
        self.sky = spin("sky protection", DEFAULT_SKY_PROTECTION[self.method.value], 0.0, 1.0, 0.05,
                         tooltip="keep flat regions close to A (bright sky, dense fog) from turning into "
                                 "rings, blotches and noise; 0 = off (leaves more haze there when on)")
        # each method's own default (ClearNet protects skies, the classic DCP does not)
        self.method.changed.connect(lambda m: setattr(self.sky, "value", DEFAULT_SKY_PROTECTION[m]))
        self.add_t = CheckBox(text="add transmission map", value=False)
        self.add_a = CheckBox(text="add airlight sources", value=False)
        self.extend([self.strength, self.live, self.follow, self.t0, self.override,
                     Container(widgets=self.a_rgb, layout="horizontal", label="A (R, G, B)"),
                     self.smoothing, self.sky, self.add_t, self.add_a])

    def _smoothing_changed(self, *_: Any) -> None:
        if not self._smoothing_auto:
            self._smoothing_by_hand = True

    def _input_changed_smoothing(self, layer: Any) -> None:
        if self._smoothing_by_hand or self.runner.closed:
            return
        self._smoothing_auto = True
        try:
            self.smoothing.value = VIDEO_TEMPORAL_SMOOTHING if is_time_stack(layer) else 0.0
        finally:
            self._smoothing_auto = False

    def settings(self) -> Settings:
        a = tuple(s.value for s in self.a_rgb) if self.override.value else None
        return self.picker.settings(t0=float(self.t0.value), airlight=a,
                                    temporal_smoothing=float(self.smoothing.value),
                                    sky_protection=float(self.sky.value), strength=float(self.strength.value))

    def plan(self, layer: Any, settings: Settings) -> Plan:
        outputs = ["dehazed"] + ["transmission"] * self.add_t.value + ["airlight"] * self.add_a.value
        return Plan(layer_job, (layer, settings, outputs), self._done)

    def _preview_changed(self, *_: Any) -> None:
        """Strength moved: preview the current frame with it, in a worker (never blocks); live, at
        full resolution after the reduced copy."""
        if not (self.live.value or self.follow.value) or self.runner.closed or self.input.value is None:
            return
        try:
            check_layer(self.input.value)
            settings = self.settings()
        except ValueError as exc:
            self.status.value = str(exc)
            return
        self.preview.request(self.input.value, settings, full=bool(self.follow.value))

    def _frame_changed(self, *_: Any) -> None:
        """The time slider moved: with the live toggle on, preview the frame now shown."""
        if self.follow.value and not self.runner.closed:
            self._preview_changed()

    def _live_toggled(self, on: bool) -> None:
        if on:
            self._preview_changed()
        elif not self.follow.value:
            self.preview.remove()

    def _follow_toggled(self, on: bool) -> None:
        if on:
            self._preview_changed()
        elif self.live.value:
            self.preview.cancel()  # a full-resolution job in flight stops; the preview stays
        else:
            self.preview.remove()

    def _done(self, run: LayerRun) -> None:
        self.preview.remove()  # the full-resolution result replaces the preview
        self.add_layers(run)

    def _teardown(self, *_: Any) -> None:
        self.preview.close()
        self.viewer.dims.events.current_step.disconnect(self._frame_changed)
        super()._teardown()
