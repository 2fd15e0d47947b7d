"""_preview: the strength slider previews a reduced copy of the current frame in a worker; the
newest request wins, and the full run replaces the preview."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from _common import dock, rgb_scene

from napari_clearnet._plugin import preview as _preview

PLUGIN = "napari-clearnet"
TIMEOUT_MS = 60_000




def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


@pytest.fixture
def threads(monkeypatch) -> list[bool]:
    """For every preview computed: whether it ran on the GUI thread."""
    import threading

    seen: list[bool] = []
    real = _preview.preview_frame

    def spy(*args, **kwargs):
        seen.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(_preview, "preview_frame", spy)
    return seen


def test_strength_slider_previews_in_a_worker_and_the_run_uses_it(make_napari_viewer, qtbot, threads):
    """Moving the slider updates one preview layer (a reduced copy, computed off the GUI thread,
    laid over the input's extent); the full run then uses the chosen strength."""
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


def _clip(n: int = 3, h: int = 256, w: int = 320) -> np.ndarray:
    """A small stack whose frames differ (the veil thickens), uint8 RGB."""
    return np.stack([np.clip(rgb_scene(h, w, seed=i).astype(np.int16) + 12 * i, 0, 255).astype(np.uint8)
                     for i in range(n)])


def _on_frame_one(make_napari_viewer) -> tuple:
    """(viewer, clip, its layer, the Dehaze widget): the clip at frame 1, the strength preview off."""
    viewer = make_napari_viewer()
    clip = _clip()
    src = viewer.add_image(clip, name="clip", rgb=True)
    w = dock(viewer, "Dehaze")
    w.input.value = src
    w.live.value = False
    viewer.dims.set_current_step(0, 1)
    return viewer, clip, src, w


def _shown(w) -> tuple[int, str] | None:
    lay = w.preview.layer
    if lay is None:
        return None
    tag = lay.metadata["napari_clearnet"]
    return tag["frame"], tag["stage"]


def test_live_preview_follows_the_time_slider_reduced_then_full(make_napari_viewer, qtbot, monkeypatch,
                                                                threads):
    """With "live" on, moving a stack's time slider previews the frame shown: a reduced copy, then
    the full resolution (identical to dehazing that frame alone), computed off the GUI thread."""
    import napari_clearnet as nc

    monkeypatch.setattr(_preview, "PREVIEW_SIDE", 128)
    viewer, clip, src, w = _on_frame_one(make_napari_viewer)
    assert w.preview.layer is None  # the live toggle is off: the slider alone previews nothing
    w.follow.value = True
    qtbot.waitUntil(lambda: _shown(w) == (1, "full"), timeout=TIMEOUT_MS)
    viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: _shown(w) == (2, "full") and w.preview.worker is None, timeout=TIMEOUT_MS)
    stages = [stage for _, stage, _ in w.preview.timings]
    assert stages == ["reduced", "full", "reduced", "full"]
    gen = w.preview.generation
    w._frame_changed()  # a dims event that leaves the frame as it is (another axis) asks for nothing
    assert w.preview.generation == gen and w.preview.worker is None
    assert threads and not any(threads)
    lay = w.preview.layer
    assert lay.data.shape == clip.shape[1:] and "frame 2" in lay.name and "full resolution" in lay.name
    alone = nc.dehaze(clip[2], device="cpu")
    np.testing.assert_allclose(lay.data, alone.image, atol=1e-5)  # strips leave no seams
    np.testing.assert_allclose(lay.scale, src.scale[-2:])


class _SlowRows:
    """A real DCP estimator whose full-resolution strips each take ``delay`` s; ``log`` records the
    height of every frame a strip is computed for (reduced copies run at full speed)."""

    def __init__(self, inner, full_height: int, delay: float) -> None:
        self._inner, self.full_height, self.delay = inner, full_height, delay
        self.log: list[int] = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def rows_at_full_resolution(self, low, t, size, buffers=None):
        import time

        rows = self._inner.rows_at_full_resolution(low, t, size, buffers)

        def slow(frame_rows, r0, r1, out=None):
            self.log.append(size[0])
            if size[0] == self.full_height:
                time.sleep(self.delay)
            return rows(frame_rows, r0, r1, out)

        return slow


def test_newer_frame_cancels_a_running_full_resolution_job(make_napari_viewer, qtbot, monkeypatch):
    """Moving the slider while frame 1's full-resolution pass runs stops that pass between strips
    (it computes only part of them), never shows its result, and frame 2's preview follows; the
    slider's event returns at once (the GUI never waits for a preview)."""
    import time

    import napari_clearnet as nc

    clip = _clip()
    h = clip.shape[1]
    slow = _SlowRows(nc.load_model(method="dcp", device="cpu").estimator, h, delay=0.05)
    dehazer = nc.Dehazer("dcp", device="cpu")
    dehazer.estimator = slow
    monkeypatch.setattr(_preview, "get_dehazer", lambda *_, **__: dehazer)
    monkeypatch.setattr(_preview, "PREVIEW_SIDE", 128)
    monkeypatch.setattr(_preview, "LIVE_STRIP_PIXELS", 8 * clip.shape[2])  # 32 strips of 8 rows
    viewer, _, _, w = _on_frame_one(make_napari_viewer)
    w.follow.value = True
    qtbot.waitUntil(lambda: slow.log.count(h) >= 2, timeout=TIMEOUT_MS)  # frame 1's full pass runs
    first = w.preview.generation
    start = time.perf_counter()
    viewer.dims.set_current_step(0, 2)
    assert time.perf_counter() - start < 0.2  # the GUI thread only asked for a preview
    qtbot.waitUntil(lambda: _shown(w) == (2, "full") and w.preview.worker is None, timeout=TIMEOUT_MS)
    # strips, in order: frame 1 reduced, frame 1 full (stopped), frame 2 reduced, frame 2 full (32)
    full_runs = "".join("F" if n == h else "r" for n in slow.log).strip("r").split("r")
    full_runs = [run for run in full_runs if run]
    assert len(full_runs) == 2 and len(full_runs[1]) == 32
    assert 2 <= len(full_runs[0]) < 32  # stopped early, between strips
    shown = [(gen, stage) for gen, stage, _ in w.preview.timings]
    assert (first, "full") not in shown and shown[-1] == (first + 1, "full")


def test_the_preview_of_a_float_stack_frame_reads_it_as_the_run_does():
    """The live preview of frame 0 of a float stack whose frames need the stack's range (0, 255)
    shows what the Dehaze run gives for that frame, not a frame brightened onto (0, 1)."""
    from napari.layers import Image

    from napari_clearnet import dehaze
    from napari_clearnet._plugin.layers import Settings

    rng = np.random.default_rng(3)
    stack = np.empty((2, 32, 40, 3), np.float32)
    stack[0] = rng.uniform(0.2, 0.9, (32, 40, 3))
    stack[1] = rng.uniform(20, 200, (32, 40, 3))
    layer = Image(stack, rgb=True)
    shown = _preview.preview_frame(layer, Settings(method="dcp", device="cpu"), frame=0, side=None)
    run = dehaze(stack, method="dcp", device="cpu")
    np.testing.assert_allclose(shown, run.image[0], atol=1e-5)
