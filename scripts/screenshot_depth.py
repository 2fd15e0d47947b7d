"""Make docs/depth.png: the Haze depth widget on the hazy sample, with three points of known
distance, the metric depth map (left) and the photo draped on its depth in 3D (right).

Run under a virtual display: ``xvfb-run -a python scripts/screenshot_depth.py [OUTPUT.png]``.
The sample's depth is scikit-image's measured stereo depth, scaled here to 2-10 m.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
import numpy as np
from PIL import Image

from napari_clearnet._plugin.sample_data import _motorcycle

OUT = Path(__file__).resolve().parents[1] / "docs" / "depth.png"
#: metres of the sample's relative depth 1 (its stereo depth is normalised to a maximum of 1)
METRES = 10.0
#: (row, column) of the points whose distance is "known" (read from the stereo depth)
POINTS = ((120, 160), (300, 420), (430, 650))


def until(app, done, timeout: float = 120.0) -> None:
    """Process Qt events until ``done()`` (a worker's results arrive through them)."""
    end = time.monotonic() + timeout
    while not done():
        app.processEvents()
        if time.monotonic() > end:
            raise TimeoutError("the widget did not finish")
        time.sleep(0.02)


def main(out: Path = OUT) -> Path:
    app = napari.qt.get_qapp()
    viewer = napari.Viewer(title="napari-clearnet: haze depth", show=True)
    viewer.window._qt_window.resize(1600, 900)
    viewer.open_sample("napari-clearnet", "hazy_motorcycle")
    viewer.layers.remove("motorcycle (clear reference)")
    hazy = viewer.layers["motorcycle (hazy)"]
    _, w = viewer.window.add_plugin_dock_widget("napari-clearnet", "Haze depth")
    w.input.value = hazy
    w.start()
    until(app, lambda: not w.running)
    depth = _motorcycle()[1]
    pts = viewer.layers["motorcycle (hazy) known distances"]
    for r, c in POINTS:
        w.new_distance.value = round(float(depth[r, c]) * METRES, 2)
        pts.add([float(r), float(c)])
    name = "motorcycle (hazy) depth (m) (ClearNet)"
    until(app, lambda: name in viewer.layers and w.fit is not None and w.fit.n_used == len(POINTS))
    until(app, lambda: viewer.layers[name].metadata["provenance"]["depth_fit"]["points_used"] == len(POINTS))
    viewer.layers["motorcycle (hazy) relative depth (ClearNet)"].visible = False
    viewer.layers.selection.active = pts
    viewer.reset_view()
    app.processEvents()
    flat = viewer.screenshot(canvas_only=False)
    w.show_3d.value = True
    hazy.visible = False
    viewer.layers[name].visible = False
    app.processEvents()
    relief = viewer.screenshot(canvas_only=True)
    viewer.close()
    _save(flat, relief, out)
    print(f"wrote {out}")
    return out


def _save(flat: np.ndarray, relief: np.ndarray, out: Path) -> None:
    """Both views side by side, the 3D one scaled to the window's height, in 256 colours (small)."""
    left = Image.fromarray(flat[..., :3])
    right = Image.fromarray(relief[..., :3])
    right = right.resize((round(right.width * left.height / right.height), left.height))
    both = Image.new("RGB", (left.width + right.width, left.height))
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    both = both.resize((both.width * 2 // 3, both.height * 2 // 3), Image.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    both.quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
