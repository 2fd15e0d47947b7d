"""Measure the live preview's latency: from a move of the time slider to the preview layer holding
the frame shown, reduced and at full resolution (the numbers in docs/napari.md).

Run under a virtual display: ``xvfb-run -a python scripts/measure_live_preview.py``. A clip of
1080p (and 720p) frames made from the hazy sample is opened in a viewer, the Dehaze widget's
"live" toggle is turned on, and the slider is stepped frame by frame, waiting for each full
preview. The latency is read from :attr:`LivePreview.timings` (request to layer update: the next
repaint adds a frame of the display's refresh); the GUI thread's own share is the time the slider
event takes to return.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import napari
import numpy as np
import torch
from screenshot_depth import until  # scripts/ is on the path when this file runs

from napari_clearnet._plugin.sample_data import hazy_motorcycle_stack

SIZES = {"1080p": (1080, 1920), "720p": (720, 1280)}
FRAMES = 8


def _clip(height: int, width: int) -> np.ndarray:
    small = hazy_motorcycle_stack(FRAMES)[0][0]
    rows = np.linspace(0, small.shape[1] - 1, height).round().astype(int)
    cols = np.linspace(0, small.shape[2] - 1, width).round().astype(int)
    return np.ascontiguousarray(small[:, rows][:, :, cols])


def measure(viewer, widget, method: str, app) -> dict[str, list[float]]:
    widget.method.value = method
    widget.follow.value = False
    widget.preview.timings.clear()
    viewer.dims.set_current_step(0, 0)
    widget.follow.value = True  # frame 0: loads the model and warms up; not counted
    until(app, lambda: [s for _, s, _ in widget.preview.timings] == ["reduced", "full"])
    out: dict[str, list[float]] = {"gui": [], "reduced": [], "full": []}
    for i in range(1, FRAMES):
        n = len(widget.preview.timings)
        start = time.perf_counter()
        viewer.dims.set_current_step(0, i)
        out["gui"].append(time.perf_counter() - start)
        until(app, lambda n=n: len(widget.preview.timings) >= n + 2 and widget.preview.worker is None)
        for _, stage, seconds in widget.preview.timings[n:]:
            out[stage].append(seconds)
    return out


def main() -> None:
    app = napari.qt.get_qapp()
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    print(f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"load average before: {os.getloadavg()}")
    print("| frames | method | slider event (GUI thread) | reduced preview | full-resolution preview |")
    print("|---|---|---:|---:|---:|")
    for label, (h, w) in SIZES.items():
        viewer = napari.Viewer(show=True)
        layer = viewer.add_image(_clip(h, w), name=f"clip {label}", rgb=True)
        _, widget = viewer.window.add_plugin_dock_widget("napari-clearnet", "Dehaze")
        widget.input.value = layer
        widget.live.value = False
        for method in ("clearnet", "dcp"):
            r = measure(viewer, widget, method, app)

            def ms(xs: list[float]) -> str:
                return f"{1000 * statistics.median(xs):.0f} ms ({1000 * min(xs):.0f}–{1000 * max(xs):.0f})"

            print(f"| {label} ({w}×{h}) | {method} | {ms(r['gui'])} | {ms(r['reduced'])} | {ms(r['full'])} |")
        viewer.close()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
