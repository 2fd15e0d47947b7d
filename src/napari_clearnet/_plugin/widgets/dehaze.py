"""The napari dock widgets: Dehaze, Transmission map and Airlight (Compare: ``_compare.py``).

Thin on purpose: each widget collects settings, runs :func:`._layers.run_layer` in a napari
generator worker (per-frame progress in the panel and in napari's activity dock, download bytes
in the dock, Cancel through ``worker.quit()``) and adds the layers it returns on the GUI thread,
so a cancelled or failed run leaves no partial layer. Closing the viewer quits a running worker,
and its late signals then touch no deleted widget.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)
from napari.layers import Image
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info

from ... import weights
from ..._util.validate import MAX_STRENGTH
from ...choices import METHOD_TITLES
from ...core.arrays import describe_layout
from ...core.devices import available_devices
from ...core.engine import DEFAULT_SKY_PROTECTION
from ...core.run import Progress
from ...errors import ClearNetError
from ..activity import DownloadProgress
from ..layers import (
    LayerRun,
    Settings,
    add_outputs,
    check_layer,
    get_dehazer,
    output_layers,
    run_layer,
    show_progress,
)
from ..preview import LivePreview

__all__ = ["AirlightWidget", "DehazeWidget", "TransmissionWidget"]


def model_choices() -> list[tuple[str, str]]:
    """Registry models, labelled with whether they are ready or need a download."""
    out = []
    for entry in weights.list_models():
        if entry.bundled:
            state = "bundled"
        elif weights.cached_path(entry) is not None:
            state = "cached"
        else:
            state = f"download {entry.size / 1e6:.1f} MB"
        out.append((f"{entry.name} ({state})", entry.name))
    return out


class RunError(ClearNetError):
    """A RuntimeError raised by a run, re-raised as this: superqt's worker takes a RuntimeError
    for 'the worker was deleted' and then never emits 'finished' (Run would stay disabled)."""


def _spin(label: str, value: float, lo: float, hi: float, step: float = 0.01, **kw: Any) -> FloatSpinBox:
    return FloatSpinBox(label=label, value=value, min=lo, max=hi, step=step, **kw)


def image_layers(viewer: Any) -> list[tuple[str, Image]]:
    """The viewer's Image layers as (name, layer) choices."""
    return [(lay.name, lay) for lay in viewer.layers if isinstance(lay, Image)]


class _Panel(Container):
    """Shared parts: input layer, method/model/device, Run/Cancel, progress and the worker."""

    run_text = "Run"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.worker: GeneratorWorker | None = None
        self.activity: Any = None  # the run's bar in napari's activity dock
        self._closed = False  # the Qt widget is gone (viewer closed): touch no widget, add nothing
        self.input = ComboBox(label="input", choices=lambda _w: image_layers(self.viewer), nullable=True)
        self.method = ComboBox(label="method", choices=[(v, k) for k, v in METHOD_TITLES.items()],
                               value="clearnet")
        # read once, and again after a run (a download changes a label): napari asks for the
        # choices on every layer event, and the registry is a file with checksums behind it
        self._models = model_choices()
        names = [name for _, name in self._models]
        # a registry of your own (CLEARNET_REGISTRY) need not hold the bundled default
        default = weights.DEFAULT_MODEL if weights.DEFAULT_MODEL in names or not names else names[0]
        self.model = ComboBox(label="model", choices=lambda _w: self._models, value=default,
                              tooltip="models marked 'download' are fetched from the Hugging Face Hub")
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.method.changed.connect(lambda v: setattr(self.model, "enabled", v == "clearnet"))
        self.extend([self.input, self.method, self.model, self.device])
        self._add_controls()
        self.run_button = PushButton(text=self.run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0, visible=False)
        self.status = Label(label="", value="")
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.extend([Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                               labels=False), self.progress, self.status])
        # napari keeps the layer choices in sync once docked (it calls reset_choices on layer events)
        self.reset_choices()
        self.native.destroyed.connect(self._teardown)
        if self.input.value is None:
            sel = [lay for lay in napari_viewer.layers.selection if isinstance(lay, Image)]
            if sel:
                self.input.value = sel[0]

    def refresh_models(self) -> None:
        """Read the registry and the cache again (after a download, or a new registry)."""
        self._models = model_choices()
        self.model.reset_choices()

    # --------------------------------------------------------------- for subclasses
    def _add_controls(self) -> None:
        """Add the widget's own controls (between device and Run)."""

    def _settings(self) -> Settings:
        return Settings(self.method.value, self.model.value, self.device.value)

    def _outputs(self) -> list[str]:
        return ["dehazed"]

    def _done(self, run: LayerRun) -> None:
        # the outputs chosen when the run started (checkboxes may have changed since)
        add_outputs(self.viewer, output_layers(run, run.extras["outputs"]))
        if run.source not in self.viewer.layers:
            # its data was read when the run started; dropping the result would lose the work
            show_info(f"napari-clearnet: layer {run.source.name!r} was removed during the run; "
                      "its results were added anyway")

    # --------------------------------------------------------------- running
    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, layer: Any = None, settings: Settings | None = None) -> GeneratorWorker | None:
        """Validate on the GUI thread, then run in a worker; problems become notifications."""
        if self.running:
            show_info("napari-clearnet: a run is already in progress; cancel it first")
            return None
        layer = self.input.value if layer is None or isinstance(layer, bool) else layer
        try:
            if layer is None:
                raise ValueError("choose an input image layer first")
            check_layer(layer)
            settings = settings or self._settings()
            outputs = self._outputs()
            n = describe_layout(tuple(layer.data.shape), -1 if layer.rgb else None).n_frames
        except ValueError as exc:
            show_error(f"napari-clearnet: {exc}")
            return None
        # connecting 'errored' here stops the worker from re-raising into the Qt event loop
        connect = {"yielded": self._on_progress, "returned": self._on_returned, "errored": self._on_error,
                   "aborted": self._on_aborted, "finished": self._on_finished}
        worker = create_worker(self._job, layer, settings, outputs, _connect=connect, _start_thread=False)
        self.worker = worker
        self.activity = progress(total=n, desc=f"dehazing {layer.name} ({settings.label})")
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.visible = True
        self.progress.max, self.progress.value = 0, 0  # busy until the first frame count arrives
        self.status.value = _start_message(settings)
        worker.start()
        return worker

    @staticmethod
    def _job(layer: Any, settings: Settings, outputs: list[str]) -> Generator[Progress, None, LayerRun]:
        try:
            dehazer = get_dehazer(settings.method, settings.model, settings.device,
                                  tqdm_class=DownloadProgress)
            run = yield from run_layer(layer, dehazer, settings, with_raw="raw transmission" in outputs,
                                       with_sources="airlight" in outputs)
        except RuntimeError as exc:  # e.g. torch's out-of-memory errors
            raise RunError(str(exc)) from exc
        run.extras["outputs"] = outputs
        return run

    def cancel(self, *_: Any) -> None:
        """Stop after the current frame; the results so far are dropped."""
        if self.worker is not None:
            self.status.value = "cancelling…"
            self.worker.quit()

    def _teardown(self, *_: Any) -> None:
        """The widget is being destroyed (viewer closed): stop the job at its next frame."""
        self._closed = True
        if self.worker is not None:
            self.worker.quit()

    def _on_progress(self, value: tuple[int, int]) -> None:
        done, total = value
        if not self._closed:
            self.progress.max = total
            self.progress.value = done
            self.status.value = f"frame {done}/{total}" if total > 1 else ("done" if done else "working…")
        if self.activity is not None:  # last: napari's bar processes events, later frames may arrive
            show_progress(self.activity, done, total)

    def _on_returned(self, run: LayerRun) -> None:
        if not self._closed:  # a closed viewer gets no layers
            self._done(run)

    def _on_aborted(self) -> None:
        if not self._closed:
            self.status.value = "cancelled"

    def _on_error(self, exc: BaseException) -> None:
        if self._closed:
            return
        self.status.value = "failed"
        if isinstance(exc, RunError) and exc.__cause__ is not None:
            exc = exc.__cause__
        show_error(f"napari-clearnet: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self.worker = None
        if self.activity is not None:
            self.activity.close()
            self.activity = None
        if self._closed:
            return
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        self.progress.visible = False
        self.refresh_models()  # a download changes the model's 'cached' label


class DehazeWidget(_Panel):
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
        self.t0 = _spin("t0", 0.1, 0.01, 0.9, tooltip="lower bound of t in J = (I - A)/max(t, t0) + A")
        self.override = CheckBox(text="set airlight A by hand", value=False)
        self.a_rgb = [_spin(c, 0.85, 0.01, 1.0, 0.001, enabled=False) for c in "RGB"]
        self.override.changed.connect(lambda v: [setattr(s, "enabled", v) for s in self.a_rgb])
        self.smoothing = _spin("temporal smoothing", 0.0, 0.0, 0.95, 0.05,
                               tooltip="stacks: blend each frame's A and haze amount with the previous "
                                       "frame's (no flicker)")
        self.sky = _spin("sky protection", DEFAULT_SKY_PROTECTION[self.method.value], 0.0, 1.0, 0.05,
                         tooltip="keep flat regions close to A (bright sky, dense fog) from turning into "
                                 "rings, blotches and noise; 0 = off (leaves more haze there when on)")
        # each method's own default (ClearNet protects skies, the classic DCP does not)
        self.method.changed.connect(lambda m: setattr(self.sky, "value", DEFAULT_SKY_PROTECTION[m]))
        self.add_t = CheckBox(text="add transmission map", value=False)
        self.add_a = CheckBox(text="add airlight sources", value=False)
        self.extend([self.strength, self.live, self.follow, self.t0, self.override,
                     Container(widgets=self.a_rgb, layout="horizontal", label="A (R, G, B)"),
                     self.smoothing, self.sky, self.add_t, self.add_a])

    def _settings(self) -> Settings:
        a = tuple(s.value for s in self.a_rgb) if self.override.value else None
        return Settings(self.method.value, self.model.value, self.device.value, float(self.t0.value), a,
                        float(self.smoothing.value), float(self.sky.value), float(self.strength.value))

    def _outputs(self) -> list[str]:
        return ["dehazed"] + ["transmission"] * self.add_t.value + ["airlight"] * self.add_a.value

    def _preview_changed(self, *_: Any) -> None:
        """Strength moved: preview the current frame with it, in a worker (never blocks); live, at
        full resolution after the reduced copy."""
        if not (self.live.value or self.follow.value) or self._closed or self.input.value is None:
            return
        try:
            check_layer(self.input.value)
            settings = self._settings()
        except ValueError as exc:
            self.status.value = str(exc)
            return
        self.preview.request(self.input.value, settings, full=bool(self.follow.value))

    def _frame_changed(self, *_: Any) -> None:
        """The time slider moved: with the live toggle on, preview the frame now shown."""
        if self.follow.value and not self._closed:
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
        super()._done(run)

    def _teardown(self, *_: Any) -> None:
        self.preview.close()
        self.viewer.dims.events.current_step.disconnect(self._frame_changed)
        super()._teardown()


class TransmissionWidget(_Panel):
    """Add the transmission map t(x) in [0, 1] (1 = clear, 0 = only haze), optionally the raw one."""

    run_text = "Estimate transmission"

    def _add_controls(self) -> None:
        self.raw = CheckBox(text="also the raw (unrefined) map", value=False)
        self.append(self.raw)

    def _outputs(self) -> list[str]:
        return ["transmission"] + ["raw transmission"] * self.raw.value


class AirlightWidget(_Panel):
    """Estimate A, show it and the pixels the method took it from; override it and dehaze again."""

    run_text = "Estimate airlight"

    def _add_controls(self) -> None:
        self.values = Label(label="A (R, G, B)", value="–")
        self.swatch = Label(label="colour", value="")
        self.swatch.native.setMinimumHeight(20)
        self.a_rgb = [_spin(c, 0.85, 0.01, 1.0, 0.001) for c in "RGB"]
        self.rerun_button = PushButton(text="Dehaze with this A")
        self.rerun_button.changed.connect(self.rerun)
        self.extend([self.values, self.swatch,
                     Container(widgets=self.a_rgb, layout="horizontal", label="override A"),
                     self.rerun_button])
        self._mode = "estimate"

    def _outputs(self) -> list[str]:
        return ["airlight"] if self._mode == "estimate" else ["dehazed"]

    def start(self, layer: Any = None, settings: Settings | None = None) -> GeneratorWorker | None:
        self._mode = "estimate" if settings is None or settings.airlight is None else "override"
        return super().start(layer, settings)

    def rerun(self, *_: Any) -> GeneratorWorker | None:
        """Dehaze the input with the A in the override boxes (a new layer, as the settings differ)."""
        try:
            settings = Settings(self.method.value, self.model.value, self.device.value,
                                airlight=tuple(s.value for s in self.a_rgb))
        except ValueError as exc:
            show_error(f"napari-clearnet: {exc}")
            return None
        return self.start(None, settings)

    def _done(self, run: LayerRun) -> None:
        super()._done(run)
        a = np.asarray(run.result.airlight, np.float32).reshape(-1, 3)
        mean = a.mean(0)
        text = ", ".join(f"{v:.3f}" for v in mean)
        if len(a) > 1:
            text += f"  (mean of {len(a)} frames; range {a.min():.3f}–{a.max():.3f})"
        self.values.value = text
        r, g, b = (round(255 * float(v)) for v in np.clip(mean, 0, 1))
        self.swatch.native.setStyleSheet(f"background-color: rgb({r}, {g}, {b}); border: 1px solid gray;")
        if self._mode == "estimate":
            for box, v in zip(self.a_rgb, mean, strict=True):
                box.value = round(float(v), 3)


def _start_message(settings: Settings) -> str:
    """Say up front when the first run will download a model (it can take a while)."""
    if settings.method != "clearnet":
        return "starting…"
    name = settings.model or weights.DEFAULT_MODEL
    try:
        entry = weights.get_entry(name)
    except KeyError:
        return "loading the model…"
    if not entry.bundled and weights.cached_path(entry) is None:
        return f"downloading {name} ({entry.size / 1e6:.1f} MB) from the Hugging Face Hub…"
    return "loading the model…"
