"""The dock widgets under odd use (real viewer, Xvfb): non-image layers, the input deleted mid-run,
the viewer or the panel closed mid-run, a RuntimeError inside the worker.

Every test checks the same promises: no exception reaches Qt (pytest-qt's capture), no traceback
notification, no worker thread left running, and the progress bar / Run button back to idle when
the widget still exists. Runs that must be caught mid-way use :class:`_Gated`, a real DCP dehazer
whose frames after the first wait for the test, so "mid-run" is deterministic, not a race.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.utils.notifications import ErrorNotification, NotificationSeverity
from napari.viewer import current_viewer
from qtpy.QtCore import QThreadPool

from napari_clearnet import _widgets
from napari_clearnet._napari_commands import get_dehazer

PLUGIN = "napari-clearnet"
TIMEOUT_MS = 30_000


class _Gated:
    """A real dehazer whose frames after the first wait for :attr:`go`; ``fail_at`` raises a
    RuntimeError (as torch does when out of memory) when that frame is reached."""

    def __init__(self, fail_at: int | None = None) -> None:
        self._inner = get_dehazer("dcp")
        self.go = threading.Event()
        self.fail_at = fail_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def iter_frames(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for i, item in enumerate(self._inner.iter_frames(*args, **kwargs)):
            if i == self.fail_at:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            yield item
            assert self.go.wait(timeout=TIMEOUT_MS / 1000), "the test never released the run"



@pytest.fixture
def gated(monkeypatch) -> _Gated:
    gate = _Gated()
    monkeypatch.setattr(_widgets, "get_dehazer", lambda *_: gate)
    return gate


def _stack(n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.5 + 0.4 * rng.random((n, 32, 40, 3))).astype(np.float32)


def _dock(viewer, name: str = "Dehaze"):
    return viewer.window.add_plugin_dock_widget(PLUGIN, name)


def _names(viewer) -> list[str]:
    return [lay.name for lay in viewer.layers]


def _no_thread_left(worker) -> bool:
    return not worker.is_running and QThreadPool.globalInstance().activeThreadCount() == 0


def _idle(widget) -> bool:
    """The widget is ready for the next run: no worker, bar hidden, Run on, Cancel off."""
    return (not widget.running and widget.progress.native.isHidden() and widget.run_button.enabled
            and not widget.cancel_button.enabled)


def _errors(notes: list) -> list:
    return [n for n in notes if n.severity == NotificationSeverity.ERROR]


def test_non_image_layers_are_refused_by_name_and_start_nothing(make_napari_viewer, qtbot, notes):
    """Shapes, Vectors, Tracks, Surface (Labels/Points: test_napari_widgets.py) and a multiscale
    image: not offered as input; passed anyway, a notification names the layer and what is
    accepted, and no worker starts."""
    viewer = make_napari_viewer()
    shapes = viewer.add_shapes([np.array([[0, 0], [10, 0], [10, 10]])], shape_type="polygon", name="roi")
    viewer.add_vectors(np.zeros((2, 2, 2)), name="flow")
    viewer.add_tracks(np.array([[0, 0, 1.0, 1.0], [0, 1, 2.0, 2.0]]), name="cells")
    viewer.add_surface((np.random.default_rng(0).random((4, 3)), np.array([[0, 1, 2], [1, 2, 3]])),
                       name="mesh")
    pyramid = [np.zeros((64, 64), np.float32), np.zeros((32, 32), np.float32)]
    viewer.add_image(pyramid, multiscale=True, name="pyramid")
    viewer.layers.selection = {shapes}
    _, w = _dock(viewer)
    assert w.input.value is None or w.input.value.name == "pyramid"  # never the selected Shapes
    assert [lay.name for lay in w.input.choices if lay is not None] == ["pyramid"]

    with qtbot.capture_exceptions() as raised:
        for name in ("roi", "flow", "cells", "mesh", "pyramid"):
            assert w.start(viewer.layers[name]) is None
            assert _idle(w) and w.worker is None
        w.input.value = None
        w.run_button.native.click()  # the real button with no input chosen
        qtbot.wait(20)
    assert raised == []
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    messages = [n.message for n in _errors(notes)]
    for name, kind in (("roi", "Shapes"), ("flow", "Vectors"), ("cells", "Tracks"), ("mesh", "Surface")):
        assert any(f"layer {name!r} is a {kind} layer; dehazing needs an Image layer" in m
                   for m in messages), messages
    assert any("'pyramid' is multiscale; open its full-resolution level" in m for m in messages)
    assert any("choose an input image layer first" in m for m in messages)
    assert len(messages) == 6 and not any(isinstance(n, ErrorNotification) for n in notes)
    assert _names(viewer) == ["roi", "flow", "cells", "mesh", "pyramid"]


def test_input_deleted_mid_run_still_gets_its_outputs(make_napari_viewer, qtbot, notes, gated):
    """The data was read when the run started, so the run finishes and its layers are added, with
    an info note saying why an output has no input next to it; the widget goes back to idle."""
    viewer = make_napari_viewer()
    stack = _stack()
    viewer.add_image(stack, name="clip", rgb=True, scale=(1.0, 2.0, 2.0))
    _, w = _dock(viewer)
    w.add_t.value = True
    with qtbot.capture_exceptions() as raised:
        worker = w.start(viewer.layers["clip"])
        qtbot.waitUntil(lambda: w.progress.value >= 1, timeout=TIMEOUT_MS)
        viewer.layers.remove("clip")
        assert w.input.value is None  # the choices follow the layer list: no stale input
        gated.go.set()
        qtbot.waitUntil(lambda: _no_thread_left(worker) and not w.running, timeout=TIMEOUT_MS)
    assert raised == []
    assert _idle(w) and w.status.value == "frame 4/4"
    assert _names(viewer) == ["clip dehazed (ClearNet)", "clip transmission (ClearNet)"]
    out = viewer.layers["clip dehazed (ClearNet)"]
    assert out.data.shape == stack.shape and np.isfinite(out.data).all()
    assert out.metadata["provenance"]["source_layer"] == "clip"
    np.testing.assert_allclose(out.scale, (1.0, 2.0, 2.0))
    infos = [n.message for n in notes if n.severity == NotificationSeverity.INFO]
    assert any("'clip' was removed during the run; its results were added anyway" in m for m in infos)
    assert _errors(notes) == []


@pytest.mark.parametrize("how", ["close window", "close viewer", "close window, other viewer current"])
def test_closing_mid_run_stops_the_worker_and_adds_nothing(make_napari_viewer, qtbot, notes, gated, how):
    """Window closed (layers kept) or viewer closed (layers cleared first): the worker is asked to
    quit, stops at the next frame, no thread stays, no layer is added, and its late signals touch
    no deleted Qt widget (that raised RuntimeError in the Qt event loop before). napari itself
    only cancels workers made while their viewer was the current one; the last case (another
    viewer current) shows the widget's own teardown hook quitting the worker."""
    viewer = make_napari_viewer()
    viewer.add_image(_stack(), name="clip", rgb=True)
    _, w = _dock(viewer)
    if how.endswith("current"):
        other = make_napari_viewer()
        assert current_viewer() is other
    seen: list = []
    with qtbot.capture_exceptions() as raised:
        worker = w.start(viewer.layers["clip"])
        worker.yielded.connect(seen.append)
        worker.returned.connect(seen.append)
        qtbot.waitUntil(lambda: w.progress.value >= 1, timeout=TIMEOUT_MS)
        if how == "close viewer":
            viewer.close()
        else:
            viewer.window.close()  # as File > Close Window: the layers stay in the model
        qtbot.waitUntil(lambda: worker.abort_requested, timeout=TIMEOUT_MS)
        gated.go.set()
        qtbot.waitUntil(lambda: _no_thread_left(worker), timeout=TIMEOUT_MS)
        qtbot.wait(50)  # let the worker's last queued signals arrive
    assert raised == []
    assert not w.running and worker not in _widgets.GeneratorWorker._worker_set
    assert all(isinstance(v, tuple) for v in seen) and len(seen) < 4  # aborted, never returned
    assert not any("dehazed" in name for name in _names(viewer))
    assert _names(viewer) == ([] if how == "close viewer" else ["clip"])
    assert _errors(notes) == []


def test_closing_the_panel_mid_run_lets_the_run_finish(make_napari_viewer, qtbot, notes, gated):
    """The panel's close button takes the widget out of the window without deleting it, and the
    viewer stays open: the run finishes and its layer is added, without errors."""
    viewer = make_napari_viewer()
    viewer.add_image(_stack(), name="clip", rgb=True)
    dock, w = _dock(viewer)
    with qtbot.capture_exceptions() as raised:
        worker = w.start(viewer.layers["clip"])
        qtbot.waitUntil(lambda: w.progress.value >= 1, timeout=TIMEOUT_MS)
        dock.destroyOnClose()  # what the panel's close button calls
        assert dock.widget() is None
        gated.go.set()
        qtbot.waitUntil(lambda: _no_thread_left(worker) and not w.running, timeout=TIMEOUT_MS)
    assert raised == []
    assert _names(viewer) == ["clip", "clip dehazed (ClearNet)"] and _idle(w)
    assert _errors(notes) == []


def test_runtime_error_mid_stack_is_a_notification_not_a_stuck_bar(make_napari_viewer, qtbot, notes,
                                                                    gated):
    """superqt treats a RuntimeError from a worker as 'worker deleted' and never emits finished:
    the bar stayed and Run stayed disabled. The widget now re-raises it as ``RunError`` and shows
    the original error. (Other errors, e.g. an unknown model: test_napari_widgets.py.)"""
    gated.fail_at = 2
    gated.go.set()
    viewer = make_napari_viewer()
    viewer.add_image(_stack(), name="clip", rgb=True)
    _, w = _dock(viewer)
    with qtbot.capture_exceptions() as raised:
        worker = w.start(viewer.layers["clip"])
        qtbot.waitUntil(lambda: not w.running, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: _no_thread_left(worker), timeout=TIMEOUT_MS)
    assert raised == []
    assert _idle(w) and w.status.value == "failed"
    errors = _errors(notes)
    assert [n.message for n in errors] == [
        "napari-clearnet: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"]
    assert not any(isinstance(n, ErrorNotification) for n in notes)  # no traceback notification
    assert _names(viewer) == ["clip"]  # no partial output

    # the widget is usable again
    gated.fail_at = None
    w.start(viewer.layers["clip"])
    qtbot.waitUntil(lambda: not w.running, timeout=TIMEOUT_MS)
    assert _names(viewer) == ["clip", "clip dehazed (ClearNet)"] and _idle(w)
