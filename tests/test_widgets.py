"""The dock widgets in a real viewer (under Xvfb): menus, docking, runs, outputs, progress,
cancel, errors, and odd use: non-image layers, the input deleted mid-run, the viewer or the panel
closed mid-run, a RuntimeError inside the worker, a model downloaded in the worker.

The robustness cases check the same promises: no exception reaches Qt (pytest-qt's capture), no
traceback notification, no worker thread left running, and the progress bar / Run button back to
idle when the widget still exists. Runs that must be caught mid-way use :class:`_Gated`, a real DCP
dehazer whose frames after the first wait for the test, so "mid-run" is deterministic, not a race.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")

from _common import dock, rgb_scene
from napari.layers import Labels, Points
from napari.utils.notifications import ErrorNotification, NotificationSeverity
from napari.viewer import current_viewer
from qtpy.QtCore import QThreadPool

from napari_clearnet._plugin import widgets as _widgets
from napari_clearnet._plugin.layers import get_dehazer
from napari_clearnet._plugin.widgets import panel, picker, runner

PLUGIN = "napari-clearnet"
TIMEOUT_MS = 60_000




def _dock_pair(viewer, name: str = "Dehaze"):
    """(the dock widget, the plugin widget): the dock is what the panel's close button acts on."""
    return viewer.window.add_plugin_dock_widget(PLUGIN, name)


def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def _bar_shown(widget) -> bool:
    """Whether the progress bar is shown (isHidden: the test viewer's window itself is not shown)."""
    return not widget.progress.native.isHidden()


def _names(viewer) -> list[str]:
    return [lay.name for lay in viewer.layers]


class _Gated:
    """A real dehazer whose frames after the first wait for :attr:`go`; ``fail_at`` raises a
    RuntimeError (as torch does when out of memory) when that frame is reached."""

    def __init__(self, fail_at: int | None = None) -> None:
        self._inner = get_dehazer("dcp")
        self.go = threading.Event()
        self.fail_at = fail_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def iter_frames(self, *args: Any, **kwargs: Any) -> Iterator[Any]:  # what the run loop drives
        for i, item in enumerate(self._inner.iter_frames(*args, **kwargs)):
            if i == self.fail_at:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            yield item
            assert self.go.wait(timeout=TIMEOUT_MS / 1000), "the test never released the run"


@pytest.fixture
def gated(monkeypatch) -> _Gated:
    gate = _Gated()
    monkeypatch.setattr(panel, "get_dehazer", lambda *_, **__: gate)
    return gate


def _stack(n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.5 + 0.4 * rng.random((n, 32, 40, 3))).astype(np.float32)


def _no_thread_left(worker) -> bool:
    return not worker.is_running and QThreadPool.globalInstance().activeThreadCount() == 0


def _idle(widget) -> bool:
    """The widget is ready for the next run: no worker, bar hidden, Run on, Cancel off."""
    return (not widget.running and widget.progress.native.isHidden() and widget.run_button.enabled
            and not widget.cancel_button.enabled)


def _errors(notes: list) -> list:
    return [n for n in notes if n.severity == NotificationSeverity.ERROR]


def test_menu_entries_in_live_layers_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    bar = viewer.window._qt_window.menuBar()
    layers = next(a.menu() for a in bar.actions() if a.text().replace("&", "") == "Layers")
    filt = next(a.menu() for a in layers.actions() if a.text() == "Filter")
    sub = next(a.menu() for a in filt.actions() if a.text() == "Dehazing (ClearNet)")
    texts = [a.text() for a in sub.actions()]
    for title in ("Dehaze", "Transmission map", "Airlight", "Compare", "Haze depth"):
        assert any(t.startswith(title) for t in texts), texts


def test_dehaze_rgb_outputs_names_geometry_metadata_and_rerun(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data = rgb_scene()
    before = data.copy()
    src = viewer.add_image(data, name="scene", rgb=True, scale=(2.0, 3.0), translate=(5.0, 7.0))
    w = dock(viewer, "Dehaze")
    assert isinstance(w, _widgets.DehazeWidget)
    w.input.value = src
    w.add_t.value = True
    w.add_a.value = True
    w.start()
    assert _bar_shown(w) and w.running and not w.run_button.enabled
    _wait(qtbot, w)
    assert not _bar_shown(w)
    out = viewer.layers["scene dehazed (ClearNet)"]
    t = viewer.layers["scene transmission (ClearNet)"]
    pts = viewer.layers["scene airlight (ClearNet)"]
    assert isinstance(pts, Points) and len(pts.data) >= 1
    assert out.data.shape == data.shape and out.rgb and out.data.dtype == np.float32
    assert t.data.shape == data.shape[:2] and t.data.min() >= 0 and t.data.max() <= 1
    assert tuple(t.contrast_limits) == (0.0, 1.0)
    for lay in (out, t, pts):
        np.testing.assert_allclose(lay.scale, (2.0, 3.0))
        np.testing.assert_allclose(lay.translate, (5.0, 7.0))
        prov = lay.metadata["provenance"]
        assert prov["method"] == "clearnet" and prov["model"] == "clearnet-default"
        assert len(prov["sha256"]) == 64 and prov["device"] == "cpu" and prov["seconds"] >= 0
        assert prov["t0"] == pytest.approx(0.1)
    # dehazing lifts the veil: the dark channel drops
    assert out.data.min(-1).mean() < (data / 255.0).min(-1).mean()
    np.testing.assert_array_equal(src.data, before)  # the input is never modified

    n = len(viewer.layers)
    w.start()
    _wait(qtbot, w)
    assert len(viewer.layers) == n  # same settings: own layers replaced, not duplicated
    w.t0.value = 0.2
    w.add_t.value = w.add_a.value = False
    w.start()
    _wait(qtbot, w)
    assert len(viewer.layers) == n + 1
    assert viewer.layers[-1].metadata["provenance"]["t0"] == pytest.approx(0.2)


def test_dehaze_grey_with_dcp_and_airlight_override(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    grey = rgb_scene().mean(-1).astype(np.uint8)
    src = viewer.add_image(grey, name="grey")
    w = dock(viewer, "Dehaze")
    w.input.value = src
    w.method.value = "dcp"
    w.override.value = True
    for box in w.a_rgb:
        box.value = 0.9
    w.start()
    _wait(qtbot, w)
    out = viewer.layers["grey dehazed (DCP)"]
    assert out.data.shape == grey.shape and not out.rgb
    prov = out.metadata["provenance"]
    assert prov["method"] == "dcp" and prov["model"] is None
    assert prov["airlight_override"] == pytest.approx([0.9] * 3)
    assert prov["airlight"] == pytest.approx([0.9] * 3)


def test_transmission_widget_on_rgb_stack_with_raw(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    stack = np.stack([rgb_scene(seed=i) for i in range(3)])
    src = viewer.add_image(stack, name="clip", rgb=True, scale=(1.0, 0.5, 0.5))
    w = dock(viewer, "Transmission map")
    w.input.value = src
    w.raw.value = True
    progress: list = []
    w.start().yielded.connect(progress.append)
    _wait(qtbot, w)
    assert progress[-1] == (3, 3)
    t = viewer.layers["clip transmission (ClearNet)"]
    raw = viewer.layers["clip raw transmission (ClearNet)"]
    assert t.data.shape == raw.data.shape == stack.shape[:3]
    assert t.colormap.name in ("magma", "viridis") and tuple(t.contrast_limits) == (0.0, 1.0)
    np.testing.assert_allclose(t.scale, (1.0, 0.5, 0.5))
    assert "clip dehazed (ClearNet)" not in _names(viewer)


def test_dehaze_grey_stack_frame_by_frame(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    # (3, H, W) grey frames: ambiguous to guess, unambiguous for a non-rgb napari layer
    stack = np.stack([rgb_scene(seed=i).mean(-1) / 255.0 for i in range(3)]).astype(np.float32)
    viewer.add_image(stack, name="frames")
    w = dock(viewer, "Dehaze")
    w.smoothing.value = 0.5
    w.sky.value = 0.15
    w.start(viewer.layers["frames"])
    _wait(qtbot, w)
    out = viewer.layers["frames dehazed (ClearNet)"]
    assert out.data.shape == stack.shape
    assert out.metadata["provenance"]["temporal_smoothing"] == pytest.approx(0.5)
    assert out.metadata["provenance"]["sky_protection"] == pytest.approx(0.15)


def test_cancel_stops_stack_and_leaves_no_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    stack = np.repeat(rgb_scene(128, 160)[None], 40, axis=0)
    viewer.add_image(stack, name="long", rgb=True)
    w = dock(viewer, "Dehaze")
    w.method.value = "dcp"
    worker = w.start(viewer.layers["long"])
    seen: list = []
    worker.yielded.connect(seen.append)
    w.cancel()  # as the Cancel button does: the worker stops at its next frame boundary
    assert w.status.value == "cancelling…"
    _wait(qtbot, w)
    assert worker.abort_requested
    assert not seen or seen[-1][0] < 40
    assert _names(viewer) == ["long"]
    assert w.status.value == "cancelled" and not _bar_shown(w) and w.run_button.enabled


def test_invalid_layers_and_errors_become_notifications(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((64, 80), np.uint8), name="mask")
    viewer.add_points(np.array([[1.0, 2.0]]), name="pts")
    w = dock(viewer, "Dehaze")
    assert [c for c in w.input.choices if isinstance(c, Labels | Points)] == []
    assert w.start(labels) is None
    assert w.start(viewer.layers["pts"]) is None
    errors = [n for n in notes if n.severity == NotificationSeverity.ERROR]
    assert any("'mask' is a Labels layer" in n.message for n in errors)
    assert any("'pts' is a Points layer" in n.message for n in errors)
    assert not w.running and not _bar_shown(w)

    # an error inside the worker (unknown model) is a notification too, and the bar goes away
    viewer.add_image(rgb_scene(), name="img", rgb=True)
    from napari_clearnet._plugin.layers import Settings

    w.start(viewer.layers["img"], Settings("clearnet", "no-such-model"))
    _wait(qtbot, w)
    assert any("no-such-model" in n.message for n in notes)
    assert not _bar_shown(w) and w.status.value == "failed"
    assert _names(viewer) == ["mask", "pts", "img"]


def test_airlight_widget_estimate_show_and_override(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(rgb_scene(), name="scene", rgb=True)
    w = dock(viewer, "Airlight")
    w.input.value = viewer.layers["scene"]
    w.method.value = "dcp"
    w.start()
    _wait(qtbot, w)
    pts = viewer.layers["scene airlight (DCP)"]
    assert isinstance(pts, Points)
    a = np.array(pts.metadata["provenance"]["airlight"])
    assert a.shape == (3,) and a.min() > 0.5  # the veil is 0.85 grey
    assert w.values.value.startswith(f"{a[0]:.3f}")
    assert "background-color: rgb(" in w.swatch.native.styleSheet()
    assert [b.value for b in w.a_rgb] == pytest.approx(a, abs=1e-3)
    # the source pixels sit where the haze is thickest (right side, large x)
    assert pts.data[:, 1].mean() > 40

    for b in w.a_rgb:
        b.value = 0.7
    w.rerun()
    _wait(qtbot, w)
    out = viewer.layers["scene dehazed (DCP)"]
    assert out.metadata["provenance"]["airlight_override"] == pytest.approx([0.7] * 3)


def test_sample_opens_and_dehazes(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "hazy_motorcycle")
    assert _names(viewer) == ["motorcycle (clear reference)", "motorcycle (hazy)"]
    w = dock(viewer, "Dehaze")
    w.start(viewer.layers["motorcycle (hazy)"])
    _wait(qtbot, w)
    c = dock(viewer, "Compare")
    c.reference.value = viewer.layers["motorcycle (clear reference)"]
    c.measure()
    qtbot.waitUntil(lambda: c.worker is None, timeout=TIMEOUT_MS)
    rows = c.rows
    assert rows["motorcycle (hazy) dehazed (ClearNet)"]["psnr"] > rows["motorcycle (hazy)"]["psnr"]


def test_clip_sample_dehazed_as_a_stack_with_per_frame_progress(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "hazy_clip")
    clip = viewer.layers["hazy clip"]
    w = dock(viewer, "Dehaze")
    assert w.input.value is clip  # the choices follow the layer list
    w.smoothing.value = 0.6
    w.add_t.value = True
    seen: list = []
    w.start().yielded.connect(seen.append)
    assert _bar_shown(w) and not w.run_button.enabled and w.cancel_button.enabled
    _wait(qtbot, w)
    assert seen[-1] == (8, 8) and w.status.value == "frame 8/8"
    out = viewer.layers["hazy clip dehazed (ClearNet)"]
    assert out.data.shape == clip.data.shape == (8, 240, 320, 3)
    assert viewer.layers["hazy clip transmission (ClearNet)"].data.shape == (8, 240, 320)
    a = np.array(out.metadata["provenance"]["airlight"])
    assert a.shape == (8, 3) and np.abs(np.diff(a, axis=0)).max() < 0.1  # smoothed, no flicker


def test_uncached_hub_model_downloads_in_the_worker(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """A registry model that is not cached: the list says 'download', the run fetches it (through
    the real huggingface_hub code, from a Hub served on 127.0.0.1) in the worker thread, verifies
    it, dehazes, and the list then says 'cached'."""
    import json

    from _hub import HubServer, registry_entry, tiny_weights, use_hub
    from napari.utils import progress

    from napari_clearnet import api, weights

    data, _ = tiny_weights(tmp_path / "tiny.safetensors")
    with HubServer() as hub:
        hub.add("clearnet-tests/tiny", "tiny.safetensors", data)
        reg = tmp_path / "registry.json"
        entry = registry_entry("tiny", "clearnet-tests/tiny", "tiny.safetensors", data)
        reg.write_text(json.dumps({"models": [entry]}))  # a registry without the bundled default
        use_hub(monkeypatch, hub.url, tmp_path / "hf")
        monkeypatch.setenv(weights.REGISTRY_ENV, str(reg))
        monkeypatch.setenv(weights.TIMEOUT_ENV, "3")
        monkeypatch.setattr(api, "_CACHE", {})
        bars: list = []  # napari progress bars made, and whether on the GUI thread
        seen = lambda e: bars.extend((p, threading.current_thread() is threading.main_thread())  # noqa: E731
                                     for p in e.added)
        progress._all_instances.events.changed.connect(seen)

        viewer = make_napari_viewer()
        viewer.add_image(rgb_scene(), name="street")
        w = dock(viewer, "Dehaze")
        w.model.reset_choices()
        assert [c for c in w.model.choices] == ["tiny"]
        assert "download" in w.model.native.currentText()
        w.model.value = "tiny"
        w.start(viewer.layers["street"])
        assert w.status.value.startswith("downloading tiny")
        _wait(qtbot, w)
        assert hub.count("GET") == 1
        out = viewer.layers["street dehazed (ClearNet)"]
        assert out.metadata["provenance"]["model"] == "tiny"
        assert out.metadata["provenance"]["sha256"] == entry["sha256"]
        assert "cached" in w.model.native.currentText()
        progress._all_instances.events.changed.disconnect(seen)
        downloads = [(p, main) for p, main in bars if p.unit == "B"]
        # the bytes show in the activity dock, on a bar made on the GUI thread
        assert downloads and all(main for _, main in downloads)
        assert downloads[0][0].n == len(data)
        frames = [p for p, _ in bars if "dehazing street" in p.desc]
        assert len(frames) == 1 and frames[0].total == 1


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
    _, w = _dock_pair(viewer)
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
    _, w = _dock_pair(viewer)
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
    _, w = _dock_pair(viewer)
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
    assert not w.running and worker not in runner.GeneratorWorker._worker_set
    assert all(isinstance(v, tuple) for v in seen) and len(seen) < 4  # aborted, never returned
    assert not any("dehazed" in name for name in _names(viewer))
    assert _names(viewer) == ([] if how == "close viewer" else ["clip"])
    assert _errors(notes) == []


def test_closing_the_panel_mid_run_lets_the_run_finish(make_napari_viewer, qtbot, notes, gated):
    """The panel's close button takes the widget out of the window without deleting it, and the
    viewer stays open: the run finishes and its layer is added, without errors."""
    viewer = make_napari_viewer()
    viewer.add_image(_stack(), name="clip", rgb=True)
    dock, w = _dock_pair(viewer)
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
    _, w = _dock_pair(viewer)
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


def test_model_choices_are_read_once_not_on_every_layer_event(make_napari_viewer, qtbot, monkeypatch):
    calls: list[int] = []
    real = picker.model_choices
    monkeypatch.setattr(picker, "model_choices", lambda: calls.append(1) or real())
    viewer = make_napari_viewer()
    w = dock(viewer, "Dehaze")
    assert len(calls) == 1
    for i in range(4):  # napari asks every widget for its choices on each layer event
        viewer.add_image(rgb_scene(seed=i), name=f"img{i}", rgb=True)
    viewer.layers.remove("img0")
    assert len(calls) == 1 and [c for c in w.model.choices] == ["clearnet-default"]
    w.method.value = "dcp"
    w.start(viewer.layers["img1"])
    _wait(qtbot, w)
    assert len(calls) == 2  # read again after a run (a download changes a label)

