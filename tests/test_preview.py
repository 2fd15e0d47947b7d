"""_preview: the strength slider previews a reduced copy of the current frame in a worker; the
newest request wins, and the full run replaces the preview."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from _common import dock, rgb_scene

from napari_clearnet import _preview

PLUGIN = "napari-clearnet"
TIMEOUT_MS = 60_000




def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_strength_slider_previews_in_a_worker_and_the_run_uses_it(make_napari_viewer, qtbot, monkeypatch):
    """Moving the slider updates one preview layer (a reduced copy, computed off the GUI thread,
    laid over the input's extent); the full run then uses the chosen strength."""
    import threading

    threads: list[bool] = []
    real = _preview.preview_frame

    def spy(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(_preview, "preview_frame", spy)
    viewer = make_napari_viewer()
    data = np.repeat(np.repeat(rgb_scene(), 12, 0), 12, 1)  # 768 x 960: the preview is reduced to 512
    src = viewer.add_image(data, name="scene", rgb=True, scale=(2.0, 2.0))
    w = dock(viewer, "Dehaze")
    w.input.value = src
    w.strength.value = 0.5
    qtbot.waitUntil(lambda: w.preview.done >= 1 and w.preview.worker is None, timeout=TIMEOUT_MS)
    prev = w.preview.layer
    assert prev is not None and "preview" in prev.name and "0.50" in prev.name
    assert max(prev.data.shape[:2]) == _preview.PREVIEW_SIDE and prev.rgb
    extent = np.asarray(prev.data.shape[:2]) * np.asarray(prev.scale)
    np.testing.assert_allclose(extent, np.asarray(data.shape[:2]) * 2.0, rtol=1e-6)
    assert threads and not any(threads)  # never on the GUI thread

    w.strength.value = 0.0  # no haze removed: the preview is the reduced input
    qtbot.waitUntil(lambda: "0.00" in w.preview.layer.name and w.preview.worker is None, timeout=TIMEOUT_MS)
    small = w.preview.layer.data
    assert abs(float(small.mean()) - float(data.mean() / 255)) < 0.01

    w.strength.value = 1.5
    qtbot.waitUntil(lambda: "1.50" in w.preview.layer.name and w.preview.worker is None, timeout=TIMEOUT_MS)
    w.start()
    _wait(qtbot, w)
    out = viewer.layers["scene dehazed (ClearNet)"]
    assert out.metadata["provenance"]["strength"] == 1.5
    assert not any("preview" in lay.name for lay in viewer.layers)  # the result replaces the preview


def test_newest_preview_request_wins(make_napari_viewer, qtbot):
    """Requests made while a preview runs collapse into the newest one: a stale value is never
    computed after it, and the last value asked for is the one shown."""
    viewer = make_napari_viewer()
    src = viewer.add_image(rgb_scene(), name="scene", rgb=True)
    w = dock(viewer, "Dehaze")
    w.input.value = src
    for v in (0.2, 0.4, 0.6, 0.8, 1.2):
        w.strength.value = v
    qtbot.waitUntil(lambda: w.preview.worker is None and w.preview.pending is None, timeout=TIMEOUT_MS)
    assert "1.20" in w.preview.layer.name
    assert w.preview.done <= 2  # the first request, then only the newest
