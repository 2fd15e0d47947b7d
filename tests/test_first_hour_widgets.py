"""napari details a newcomer met: the Airlight widget shows nothing until it has an estimate, and the
Haze depth widget's 3D view uses napari's current camera API (no deprecation warning)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("napari")

from _common import dock, rgb_scene

from napari_clearnet._plugin.widgets.depth import VIEW_ANGLES

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


def _clip(tmp_path):
    from _common import write_clip

    return write_clip(tmp_path / "clip.mp4", n=6, size=(48, 64))


def test_a_video_opens_lazily_through_this_plugin_as_documented(make_napari_viewer, tmp_path):
    """``viewer.open(path, plugin="napari-clearnet")``, and File › Open once the reader is chosen for
    the suffix (the dialog's "remember", or Preferences › Plugins): the lazy stack, not an array."""
    import dask.array as da
    from napari.settings import get_settings

    clip = _clip(tmp_path)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(clip), plugin="napari-clearnet")
    assert isinstance(layer.data, da.Array) and "video" in layer.metadata
    settings = get_settings().plugins
    before = dict(settings.extension2reader)
    try:
        settings.extension2reader = {**before, "*.mp4": "napari-clearnet"}
        [again] = viewer.open(str(clip), plugin=None)  # what File › Open does (scripts default to "napari")
        assert isinstance(again.data, da.Array) and "video" in again.metadata
    finally:
        settings.extension2reader = before


def test_dehaze_widget_smooths_video_by_default_like_the_cli(make_napari_viewer, tmp_path):
    clip = _clip(tmp_path)
    viewer = make_napari_viewer()
    viewer.add_image(rgb_scene(), name="photo", rgb=True)
    [video] = viewer.open(str(clip), plugin="napari-clearnet")
    stack = viewer.add_image(np.stack([rgb_scene()] * 3), name="stack", rgb=True)
    w = dock(viewer, "Dehaze")
    w.input.value = video
    assert w.smoothing.value == pytest.approx(0.8)
    w.input.value = viewer.layers["photo"]
    assert w.smoothing.value == 0.0
    w.input.value = stack  # an image stack: off, as for the CLI, unless its first axis says time
    assert w.smoothing.value == 0.0
    stack.axis_labels = ("t", "y", "x")
    w.input.value = viewer.layers["photo"]
    w.input.value = stack
    assert w.smoothing.value == pytest.approx(0.8)
    w.smoothing.value = 0.3  # set by hand: kept whatever the input
    w.input.value = video
    assert w.smoothing.value == pytest.approx(0.3)
