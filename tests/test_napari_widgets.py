"""The napari face in a real viewer (under Xvfb): menus, docking, runs, outputs, cancel, errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.layers import Image, Labels, Points
from napari.utils.notifications import NotificationSeverity

from napari_clearnet import _widgets

PLUGIN = "napari-clearnet"
TIMEOUT_MS = 60_000



def _rgb(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """A smooth hazy-looking RGB image: a colour gradient under a grey veil."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    clear = np.stack([yy, xx, 1 - yy], -1) * 0.8 + 0.05 * rng.random((h, w, 3))
    t = np.exp(-1.5 * xx)[..., None]
    return np.clip(255 * (clear * t + 0.85 * (1 - t)), 0, 255).astype(np.uint8)


def _dock(viewer, name: str):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def _bar_shown(widget) -> bool:
    """Whether the progress bar is shown (isHidden: the test viewer's window itself is not shown)."""
    return not widget.progress.native.isHidden()


def _names(viewer) -> list[str]:
    return [lay.name for lay in viewer.layers]


def test_menu_entries_in_live_layers_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    bar = viewer.window._qt_window.menuBar()
    layers = next(a.menu() for a in bar.actions() if a.text().replace("&", "") == "Layers")
    filt = next(a.menu() for a in layers.actions() if a.text() == "Filter")
    sub = next(a.menu() for a in filt.actions() if a.text() == "Dehazing (ClearNet)")
    texts = [a.text() for a in sub.actions()]
    for title in ("Dehaze", "Transmission map", "Airlight", "Compare"):
        assert any(t.startswith(title) for t in texts), texts


def test_dehaze_rgb_outputs_names_geometry_metadata_and_rerun(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data = _rgb()
    before = data.copy()
    src = viewer.add_image(data, name="scene", rgb=True, scale=(2.0, 3.0), translate=(5.0, 7.0))
    w = _dock(viewer, "Dehaze")
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
    grey = _rgb().mean(-1).astype(np.uint8)
    src = viewer.add_image(grey, name="grey")
    w = _dock(viewer, "Dehaze")
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
    stack = np.stack([_rgb(seed=i) for i in range(3)])
    src = viewer.add_image(stack, name="clip", rgb=True, scale=(1.0, 0.5, 0.5))
    w = _dock(viewer, "Transmission map")
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
    stack = np.stack([_rgb(seed=i).mean(-1) / 255.0 for i in range(3)]).astype(np.float32)
    viewer.add_image(stack, name="frames")
    w = _dock(viewer, "Dehaze")
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
    stack = np.repeat(_rgb(128, 160)[None], 40, axis=0)
    viewer.add_image(stack, name="long", rgb=True)
    w = _dock(viewer, "Dehaze")
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
    w = _dock(viewer, "Dehaze")
    assert [c for c in w.input.choices if isinstance(c, Labels | Points)] == []
    assert w.start(labels) is None
    assert w.start(viewer.layers["pts"]) is None
    errors = [n for n in notes if n.severity == NotificationSeverity.ERROR]
    assert any("'mask' is a Labels layer" in n.message for n in errors)
    assert any("'pts' is a Points layer" in n.message for n in errors)
    assert not w.running and not _bar_shown(w)

    # an error inside the worker (unknown model) is a notification too, and the bar goes away
    viewer.add_image(_rgb(), name="img", rgb=True)
    from napari_clearnet._napari_commands import Settings

    w.start(viewer.layers["img"], Settings("clearnet", "no-such-model"))
    _wait(qtbot, w)
    assert any("no-such-model" in n.message for n in notes)
    assert not _bar_shown(w) and w.status.value == "failed"
    assert _names(viewer) == ["mask", "pts", "img"]


def test_airlight_widget_estimate_show_and_override(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(_rgb(), name="scene", rgb=True)
    w = _dock(viewer, "Airlight")
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


def test_compare_widget_grid_reference_and_no_reference(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    clear = _rgb()
    viewer.add_image(clear, name="ref", rgb=True)
    viewer.add_image(clear, name="same", rgb=True)
    viewer.add_image(255 - clear, name="other", rgb=True)
    viewer.add_image(np.zeros((10, 10)), name="small")
    w = _dock(viewer, "Compare")
    w.toggle_grid()
    assert _widgets.grid_of(viewer).enabled and w.grid_button.text.startswith("Overlay")
    w.toggle_grid()
    assert not _widgets.grid_of(viewer).enabled
    rows = w.measure()
    assert set(rows["same"]) == {"dark_channel", "contrast", "saturation"}
    w.reference.value = viewer.layers["ref"]
    rows = w.measure()
    assert "ref" not in rows
    assert rows["same"]["psnr"] > 60 and rows["same"]["ssim"] == pytest.approx(1.0)
    assert rows["other"]["psnr"] < 20
    assert rows["small"]["psnr"] == "n/a"
    assert w.table.shape[0] == 3


def test_sample_opens_and_dehazes(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "hazy_motorcycle")
    assert _names(viewer) == ["motorcycle (clear reference)", "motorcycle (hazy)"]
    w = _dock(viewer, "Dehaze")
    w.start(viewer.layers["motorcycle (hazy)"])
    _wait(qtbot, w)
    c = _dock(viewer, "Compare")
    c.reference.value = viewer.layers["motorcycle (clear reference)"]
    rows = c.measure()
    assert rows["motorcycle (hazy) dehazed (ClearNet)"]["psnr"] > rows["motorcycle (hazy)"]["psnr"]


def test_scripting_command_on_every_layer(make_napari_viewer, notes):
    from npe2 import PluginManager

    viewer = make_napari_viewer()
    viewer.add_image(_rgb(), name="a", rgb=True)
    viewer.add_image(_rgb(seed=1).mean(-1), name="b")
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="lab")
    out = PluginManager.instance().commands.execute(
        "napari-clearnet.dehaze_layers", args=(viewer,), kwargs={"method": "dcp"}
    )
    assert [lay.name for lay in out] == ["a dehazed (DCP)", "b dehazed (DCP)"]
    assert all(isinstance(lay, Image) for lay in out)
    # explicit invalid layers are skipped with a warning naming them
    from napari_clearnet._napari_commands import dehaze_layers

    assert dehaze_layers(viewer, [viewer.layers["lab"]]) == []
    assert any("'lab' is a Labels layer" in n.message for n in notes)


def test_clip_sample_dehazed_as_a_stack_with_per_frame_progress(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "hazy_clip")
    clip = viewer.layers["hazy clip"]
    w = _dock(viewer, "Dehaze")
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

    from _hub import HubServer, registry_entry, tiny_weights
    from huggingface_hub import constants as hf_constants

    from napari_clearnet import engine, weights

    data, _ = tiny_weights(tmp_path / "tiny.safetensors")
    with HubServer() as hub:
        hub.add("clearnet-tests/tiny", "tiny.safetensors", data)
        reg = tmp_path / "registry.json"
        entry = registry_entry("tiny", "clearnet-tests/tiny", "tiny.safetensors", data)
        reg.write_text(json.dumps({"models": [entry]}))  # a registry without the bundled default
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.setenv(weights.REGISTRY_ENV, str(reg))
        monkeypatch.setenv(weights.TIMEOUT_ENV, "3")
        for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(engine, "_CACHE", {})

        viewer = make_napari_viewer()
        viewer.add_image(_rgb(), name="street")
        w = _dock(viewer, "Dehaze")
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


def test_strength_slider_previews_in_a_worker_and_the_run_uses_it(make_napari_viewer, qtbot, monkeypatch):
    """Moving the slider updates one preview layer (a reduced copy, computed off the GUI thread,
    laid over the input's extent); the full run then uses the chosen strength."""
    import threading

    from napari_clearnet import _preview

    threads: list[bool] = []
    real = _preview.preview_frame

    def spy(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(_preview, "preview_frame", spy)
    viewer = make_napari_viewer()
    data = np.repeat(np.repeat(_rgb(), 12, 0), 12, 1)  # 768 x 960: the preview is reduced to 512
    src = viewer.add_image(data, name="scene", rgb=True, scale=(2.0, 2.0))
    w = _dock(viewer, "Dehaze")
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
    src = viewer.add_image(_rgb(), name="scene", rgb=True)
    w = _dock(viewer, "Dehaze")
    w.input.value = src
    for v in (0.2, 0.4, 0.6, 0.8, 1.2):
        w.strength.value = v
    qtbot.waitUntil(lambda: w.preview.worker is None and w.preview.pending is None, timeout=TIMEOUT_MS)
    assert "1.20" in w.preview.layer.name
    assert w.preview.done <= 2  # the first request, then only the newest
