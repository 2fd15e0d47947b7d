"""napari details a newcomer met: the Airlight widget shows nothing until it has an estimate, and the
Haze depth widget's 3D view uses napari's current camera API (no deprecation warning)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("napari")

from _common import dock, rgb_scene

from napari_clearnet._depth_widget import VIEW_ANGLES

TIMEOUT_MS = 60_000


def test_airlight_boxes_show_a_dash_until_an_estimate_exists(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(rgb_scene(), name="scene", rgb=True)
    w = dock(viewer, "Airlight")
    assert [b.native.text() for b in w.a_rgb] == ["—"] * 3  # not a made-up 0.850
    assert not any(b.enabled for b in w.a_rgb) and not w.rerun_button.enabled
    w.input.value = viewer.layers["scene"]
    w.method.value = "dcp"
    w.start()
    qtbot.waitUntil(lambda: not w.running, timeout=TIMEOUT_MS)
    a = np.array(viewer.layers["scene airlight (DCP)"].metadata["provenance"]["airlight"])
    assert [b.native.text() for b in w.a_rgb] == [f"{v:.3f}" for v in a]
    assert all(b.enabled for b in w.a_rgb) and w.rerun_button.enabled


def test_depth_widget_3d_view_uses_no_deprecated_camera(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(rgb_scene(), name="scene", rgb=True)
    w = dock(viewer, "Haze depth")
    w.input.value = viewer.layers["scene"]
    w.method.value = "dcp"
    w.start()
    qtbot.waitUntil(lambda: not w.running, timeout=TIMEOUT_MS)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        w.show_3d.value = True
    assert viewer.dims.ndisplay == 3
    assert not [x for x in seen if "camera" in str(x.message) and "deprecated" in str(x.message)]
    camera = getattr(getattr(viewer, "scene", None), "camera", None) or viewer.camera
    assert tuple(camera.angles) == pytest.approx(tuple(VIEW_ANGLES))
