"""_compare: outputs side by side, and PSNR/SSIM against a reference or the no-reference
measures, computed in a worker thread."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from _common import dock, rgb_scene

from napari_clearnet._plugin.widgets import compare as _compare

PLUGIN = "napari-clearnet"
TIMEOUT_MS = 60_000




def test_compare_widget_grid_reference_and_no_reference(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    clear = rgb_scene()
    viewer.add_image(clear, name="ref", rgb=True)
    viewer.add_image(clear, name="same", rgb=True)
    viewer.add_image(255 - clear, name="other", rgb=True)
    viewer.add_image(np.zeros((10, 10)), name="small")
    w = dock(viewer, "Compare")
    w.toggle_grid()
    assert _compare.grid_of(viewer).enabled and w.grid_button.text.startswith("Overlay")
    w.toggle_grid()
    assert not _compare.grid_of(viewer).enabled
    rows = _measured(w, qtbot)
    assert set(rows["same"]) == {"dark_channel", "contrast", "saturation"}
    w.reference.value = viewer.layers["ref"]
    rows = _measured(w, qtbot)
    assert "ref" not in rows
    assert rows["same"]["psnr"] > 60 and rows["same"]["ssim"] == pytest.approx(1.0)
    assert rows["other"]["psnr"] < 20
    assert rows["small"]["psnr"] == "n/a"
    assert w.table.shape[0] == 3


def _measured(widget, qtbot) -> dict:
    """Press Measure and wait for the worker: the measuring runs off the GUI thread."""
    import threading

    worker = widget.measure()
    assert worker is not None and not widget.measure_button.enabled
    assert widget.measure() is None  # one measurement at a time
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.measure_button.enabled and threading.current_thread() is threading.main_thread()
    return widget.rows


def test_measuring_runs_in_a_worker_thread(make_napari_viewer, qtbot, monkeypatch) -> None:
    import threading

    threads: list[bool] = []
    real = _compare.metrics.haze_measures

    def spy(*a, **k):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*a, **k)

    monkeypatch.setattr(_compare.metrics, "haze_measures", spy)
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([rgb_scene(seed=s) for s in range(3)]), name="clip", rgb=True)
    w = dock(viewer, "Compare")
    rows = _measured(w, qtbot)
    assert list(rows) == ["clip"] and len(threads) == 3 and not any(threads)
    assert w.table.shape[0] == 1

