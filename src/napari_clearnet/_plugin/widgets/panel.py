"""A dock widget on one input layer, put together from parts: the input choice, a
:class:`~.picker.MethodPicker`, the widget's own controls and a :class:`~.runner.JobRunner`.

A widget says what its Run does with :meth:`LayerPanel.plan`: the job (a generator of progress
returning a result), its arguments and what to do with the result. The three layer widgets share
:func:`layer_job` (the one run loop on a layer, through :func:`~.._plugin.layers.run_layer`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import ComboBox, Container
from napari.layers import Image
from napari.qt.threading import GeneratorWorker
from napari.utils.notifications import show_error, show_info

from ...core.arrays import describe_layout
from ...core.run import Progress
from ..activity import DownloadProgress
from ..layers import LayerRun, Settings, add_outputs, check_layer, get_dehazer, output_layers, run_layer
from .picker import MethodPicker, image_layers, start_message
from .runner import JobRunner, RunError

__all__ = ["LayerPanel", "Plan", "layer_job"]


@dataclass
class Plan:
    """What one Run does: ``job(*args)`` in a worker, then ``on_done(result)`` on the GUI thread."""

    job: Callable[..., Generator[Progress, None, Any]]
    args: tuple
    on_done: Callable[[Any], None]


def layer_job(layer: Any, settings: Settings, outputs: list[str]) -> Generator[Progress, None, LayerRun]:
    """The run loop on ``layer`` with ``settings`` (in a worker); ``outputs`` are kept with the run."""
    try:
        dehazer = get_dehazer(settings.method, settings.model, settings.device, tqdm_class=DownloadProgress)
        run = yield from run_layer(layer, dehazer, settings, with_raw="raw transmission" in outputs,
                                   with_sources="airlight" in outputs)
    except RuntimeError as exc:  # e.g. torch's out-of-memory errors
        raise RunError(str(exc)) from exc
    run.extras["outputs"] = outputs
    return run


class LayerPanel(Container):
    """Input layer, method/model/device (:attr:`picker`), the widget's controls, Run/Cancel and
    progress (:attr:`runner`)."""

    run_text = "Run"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.input = ComboBox(label="input", choices=lambda _w: image_layers(self.viewer), nullable=True)
        self.picker = MethodPicker()
        self.runner = JobRunner(self.run_text)
        self.extend([self.input, *self.picker.widgets])
        self._add_controls()
        self.extend(self.runner.widgets)
        self.runner.run_button.changed.connect(self.start)
        self.runner.finished.append(self.picker.refresh_models)  # a download changes a model's label
        # napari keeps the layer choices in sync once docked (it calls reset_choices on layer events)
        self.reset_choices()
        self.native.destroyed.connect(self._teardown)
        if self.input.value is None:
            sel = [lay for lay in napari_viewer.layers.selection if isinstance(lay, Image)]
            if sel:
                self.input.value = sel[0]

    # the parts, by the names scripts and tests use
    method = property(lambda self: self.picker.method)
    model = property(lambda self: self.picker.model)
    device = property(lambda self: self.picker.device)
    run_button = property(lambda self: self.runner.run_button)
    cancel_button = property(lambda self: self.runner.cancel_button)
    progress = property(lambda self: self.runner.progress)
    status = property(lambda self: self.runner.status)
    worker = property(lambda self: self.runner.worker)
    running = property(lambda self: self.runner.running)

    def refresh_models(self) -> None:
        self.picker.refresh_models()

    def cancel(self, *_: Any) -> None:
        self.runner.cancel()

    # --------------------------------------------------------------- what a widget says
    def _add_controls(self) -> None:
        """Add the widget's own controls (between device and Run)."""

    def settings(self) -> Settings:
        """The settings a Run uses now."""
        return self.picker.settings()

    def plan(self, layer: Any, settings: Settings) -> Plan:
        """What Run does on ``layer``: by default the run loop, adding the dehazed layer."""
        return Plan(layer_job, (layer, settings, ["dehazed"]), self.add_layers)

    def add_layers(self, run: LayerRun) -> None:
        """Add a finished run's layers (the outputs chosen when it started)."""
        add_outputs(self.viewer, output_layers(run, run.extras["outputs"]))
        if run.source not in self.viewer.layers:
            # its data was read when the run started; dropping the result would lose the work
            show_info(f"napari-clearnet: layer {run.source.name!r} was removed during the run; "
                      "its results were added anyway")

    # --------------------------------------------------------------- running
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
            settings = settings or self.settings()
            plan = self.plan(layer, settings)
            n = describe_layout(tuple(layer.data.shape), -1 if layer.rgb else None).n_frames
        except ValueError as exc:
            show_error(f"napari-clearnet: {exc}")
            return None
        return self.runner.start(plan.job, plan.args, plan.on_done, total=n, message=start_message(settings),
                                 desc=f"dehazing {layer.name} ({settings.label})")

    def _teardown(self, *_: Any) -> None:
        self.runner.teardown()
