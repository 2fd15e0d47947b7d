"""The Haze depth widget in a real viewer (under Xvfb): the relative depth layer on the input's grid,
points of known distance clicked into its Points layer and typed into its table, the fit and its
uncertainty shown, metric depth in a worker, the 3D drape, and the input never modified."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from _common import dock, haze_with, tilted_plane
from napari.layers import Surface

from napari_clearnet._plugin.widgets import depth as _depth_widget
from napari_clearnet.analysis import depth

TIMEOUT_MS = 60_000
BETA = 0.008


def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def _scene():
    clean, d = tilted_plane()
    return (haze_with(clean, d, BETA) * 255).round().astype(np.uint8), d


def test_relative_depth_points_fit_metric_depth_and_3d(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data, d = _scene()
    before = data.copy()
    src = viewer.add_image(data, name="plane", rgb=True, scale=(2.0, 3.0), translate=(5.0, 7.0))
    w = dock(viewer, "Haze depth")
    assert isinstance(w, _depth_widget.HazeDepthWidget)
    w.input.value = src
    w.method.value = "dcp"
    w.start()
    _wait(qtbot, w)
    rel = viewer.layers["plane relative depth (DCP)"]
    assert rel.data.shape == d.shape
    np.testing.assert_allclose(rel.scale, (2.0, 3.0))
    np.testing.assert_allclose(rel.translate, (5.0, 7.0))
    assert np.corrcoef(rel.data.ravel(), d.ravel())[0, 1] > 0.95  # far is deep

    pts = viewer.layers["plane known distances"]
    assert viewer.layers.selection.active is pts and pts.mode == "add"  # ready for clicks
    w.new_distance.value = 270.0
    pts.add([20.0, 30.0])  # data (row, column) of the frame, as a click on the canvas gives
    qtbot.waitUntil(lambda: "plane depth (m) (DCP)" in viewer.layers, timeout=TIMEOUT_MS)
    assert "no uncertainty" in w.beta_label.value
    assert "plane depth uncertainty (m) (DCP)" not in viewer.layers
    w.new_distance.value = 999.0
    pts.add([[96.0, 128.0], [172.0, 226.0]])
    # type the true distances into the table: the points' features follow and the fit updates
    truth = [float(d[r, 0]) for r in (20, 96, 172)]
    column = _depth_widget.COLUMNS.index("distance (m)")
    for row, metres in enumerate(truth):
        w.table.native.item(row, column).setText(f"{metres:.2f}")  # as a user types it
    np.testing.assert_allclose(pts.features["distance_m"], truth, atol=0.01)
    fit = w.fit
    assert fit is not None and fit.n_used == 3 and fit.beta_se is not None
    assert "±" in w.beta_label.value and "95 %" in w.visibility_label.value
    assert abs(fit.beta / BETA - 1) < 0.2  # the DCP's bias on this scene, see test_depth.py
    qtbot.waitUntil(lambda: "plane depth uncertainty (m) (DCP)" in viewer.layers, timeout=TIMEOUT_MS)
    metres = viewer.layers["plane depth (m) (DCP)"]
    qtbot.waitUntil(lambda: metres.metadata["provenance"]["depth_fit"]["points_used"] == 3,
                    timeout=TIMEOUT_MS)
    np.testing.assert_allclose(metres.scale, (2.0, 3.0))
    assert np.median(np.abs(metres.data / d - 1)) < 0.1

    pts.add([500.0, 10.0])  # off the image: named in the status line, no fit
    assert "point 4 (x=10, y=500) is outside the image (256×192" in w.status.value and w.fit is None
    assert w.beta_label.value == "–"
    w.show_3d.value = True
    surf = [lay for lay in viewer.layers if isinstance(lay, Surface)]
    assert len(surf) == 1 and viewer.dims.ndisplay == 3
    w.show_3d.value = False
    assert not any(isinstance(lay, Surface) for lay in viewer.layers) and viewer.dims.ndisplay == 2
    np.testing.assert_array_equal(src.data, before)  # the input is never modified


def test_surface_drapes_the_image_on_its_depth():
    clean, d = tilted_plane(64, 80)
    t = np.exp(-BETA * d)
    hd = depth.HazeDepth(t, np.full(3, 0.85), 0.02, clean)
    vertices, faces, colours = _depth_widget.surface_data(hd, side=40)
    assert vertices.shape[1] == 3 and faces.max() < len(vertices) and colours.shape == (len(vertices), 4)
    far, near = vertices[vertices[:, 1] == 0, 0], vertices[vertices[:, 1] == 63, 0]
    assert far.min() > near.max()  # the top rows are farther
    assert vertices[:, 1].max() == 63 and vertices[:, 2].max() == 79  # the grid reaches the last pixel


def test_another_input_gets_its_own_points_layer(make_napari_viewer, qtbot):
    """Points are pixels of one image: estimating another input makes a new Points layer for it."""
    viewer = make_napari_viewer()
    data, _ = _scene()
    a = viewer.add_image(data, name="a", rgb=True)
    b = viewer.add_image(data[::2, ::2], name="b", rgb=True)
    w = dock(viewer, "Haze depth")
    w.method.value = "dcp"
    for layer in (a, b):
        w.input.value = layer
        w.start()
        _wait(qtbot, w)
    assert "a known distances" in viewer.layers and "b known distances" in viewer.layers
    assert viewer.layers.selection.active is viewer.layers["b known distances"]
