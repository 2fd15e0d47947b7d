"""_layers: a run on a napari layer becomes layers on the input's grid (names, geometry,
provenance, the airlight's source pixels as the method used them), and the scripting commands
refuse what the API refuses (issue 12: F9, F18)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from _common import hazy, rgb_scene
from napari.layers import Image, Points

from napari_clearnet._plugin import layers as _layers
from napari_clearnet._plugin.layers import Settings, dehaze_layer, dehaze_layers


def test_float_just_above_one_in_napari_adds_no_black_layer(make_napari_viewer) -> None:  # F9, F18
    viewer = make_napari_viewer()
    viewer.add_image(hazy() * 1.01 / hazy().max(), name="over", rgb=True)
    with pytest.raises(ValueError, match="just above 1"):
        dehaze_layer(viewer, "over", method="dcp")
    viewer.add_image(hazy(), name="ok", rgb=True)
    with pytest.raises(ValueError, match="t0 must be a finite number"):
        dehaze_layer(viewer, "ok", method="dcp", t0=float("nan"))
    assert [lay.name for lay in viewer.layers] == ["over", "ok"]


def test_scripting_command_on_every_layer(make_napari_viewer, notes):
    from npe2 import PluginManager

    viewer = make_napari_viewer()
    viewer.add_image(rgb_scene(), name="a", rgb=True)
    viewer.add_image(rgb_scene(seed=1).mean(-1), name="b")
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="lab")
    out = PluginManager.instance().commands.execute(
        "napari-clearnet.dehaze_layers", args=(viewer,), kwargs={"method": "dcp"}
    )
    assert [lay.name for lay in out] == ["a dehazed (DCP)", "b dehazed (DCP)"]
    assert all(isinstance(lay, Image) for lay in out)
    # explicit invalid layers are skipped with a warning naming them
    assert dehaze_layers(viewer, [viewer.layers["lab"]]) == []
    assert any("'lab' is a Labels layer" in n.message for n in notes)


@pytest.mark.parametrize("method", ["clearnet", "dcp"])
def test_airlight_points_are_the_pixels_the_method_used(make_napari_viewer, method: str) -> None:
    """The points layer shows the method's own source pixels (capped, on the layer's grid), not a
    rule re-derived for display; a given A has none."""
    from napari_clearnet._plugin.layers import get_dehazer
    from napari_clearnet.core.run import drive, run

    viewer = make_napari_viewer()
    stack = np.stack([rgb_scene(seed=s) for s in range(2)])
    viewer.add_image(stack, name="clip", rgb=True, scale=(1.0, 2.0, 2.0))
    (pts,) = dehaze_layer(viewer, "clip", method=method, device="cpu", outputs=["airlight"])
    assert isinstance(pts, Points) and pts.name == f"clip airlight ({Settings(method).label})"
    expected = drive(run(get_dehazer(method, None, "cpu"), stack, channel_axis=-1, with_sources=True))
    np.testing.assert_array_equal(pts.data, expected.airlight_sources)
    assert set(pts.data[:, 0]) == {0.0, 1.0} and pts.data.shape[1] == 3
    np.testing.assert_allclose(pts.scale, (1.0, 2.0, 2.0))
    (fixed,) = dehaze_layer(viewer, "clip", method=method, device="cpu", airlight=(0.8, 0.8, 0.8),
                            outputs=["airlight"])
    assert len(fixed.data) == 0


def test_output_layers_need_what_they_show(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    layer = viewer.add_image(rgb_scene(), name="scene", rgb=True)
    from napari_clearnet._plugin.layers import get_dehazer, run_layer
    from napari_clearnet.core.run import drive

    done = drive(run_layer(layer, get_dehazer("dcp", None, "cpu"), Settings("dcp")))
    with pytest.raises(ValueError, match="with_raw=True"):
        _layers.output_layers(done, ["raw transmission"])
    with pytest.raises(ValueError, match="with_sources=True"):
        _layers.output_layers(done, ["airlight"])
    with pytest.raises(ValueError, match="unknown outputs"):
        _layers.output_layers(done, ["colour"])
    assert [t[1]["name"] for t in _layers.output_layers(done, ["transmission", "dehazed"])] == [
        "scene dehazed (DCP)", "scene transmission (DCP)"]

