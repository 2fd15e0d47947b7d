"""Make docs/screenshot.png: the hazy sample, ClearNet's result and its transmission map side by side.

Run under a virtual display: ``xvfb-run -a python scripts/screenshot.py [OUTPUT.png]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari

from napari_clearnet._plugin.layers import dehaze_layer
from napari_clearnet._plugin.widgets.compare import grid_of

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"


def main(out: Path = OUT) -> Path:
    viewer = napari.Viewer(title="napari-clearnet", show=True)
    viewer.window._qt_window.resize(1800, 860)
    viewer.open_sample("napari-clearnet", "hazy_motorcycle")
    viewer.layers.remove("motorcycle (clear reference)")
    hazy = viewer.layers["motorcycle (hazy)"]
    dehaze_layer(viewer, hazy, outputs=("dehazed", "transmission"))
    _, widget = viewer.window.add_plugin_dock_widget("napari-clearnet", "Dehaze")
    widget.input.value = hazy
    widget.add_t.value = True
    # grid cells follow the layer order (index 0 first): input, dehazed, transmission
    viewer.layers.selection.active = hazy
    grid = grid_of(viewer)
    grid.enabled = True
    grid.shape = (1, 3)
    viewer.reset_view()
    out.parent.mkdir(parents=True, exist_ok=True)
    napari.qt.get_qapp().processEvents()
    viewer.screenshot(str(out), canvas_only=False)
    viewer.close()
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
