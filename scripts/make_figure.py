"""Make the README's picture: hazy sample | DCP | ClearNet | ClearNet's transmission | clear.

Uses only the run-time sample (scikit-image's stereo photo hazed with its real depth), so the
figure can be remade anywhere. ``python scripts/make_figure.py`` writes it to the temporary folder
(the checkout stays clean); ``python scripts/make_figure.py docs/example.png`` updates the README's
copy, and only when its pixels change (the same figure is never rewritten).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import napari_clearnet as nc
from napari_clearnet._plugin.sample_data import hazy_motorcycle
from napari_clearnet.analysis import metrics


def main(out: str | None = None, beta: float = 1.8, width: int = 360) -> None:
    out = out or str(Path(tempfile.gettempdir()) / "napari-clearnet-example.png")
    (clear, _, _), (hazy, _, _) = hazy_motorcycle(beta)
    clear_f, hazy_f = clear / 255.0, hazy / 255.0
    cn = nc.dehaze(hazy, method="clearnet", device="cpu")
    dc = nc.dehaze(hazy, method="dcp", device="cpu")
    t = np.repeat(cn.transmission[..., None], 3, -1)
    panels = [
        ("hazy input", hazy_f),
        ("Dark Channel Prior", dc.image),
        ("ClearNet", cn.image),
        ("ClearNet transmission t", t),
        ("clear reference", clear_f),
    ]
    tiles = []
    for label, img in panels:
        if label in ("hazy input", "Dark Channel Prior", "ClearNet"):
            label += f"  {metrics.psnr(img, clear_f):.1f} dB"
        im = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        canvas = Image.new("RGB", (im.width, im.height + 22), "white")
        canvas.paste(im, (0, 22))
        ImageDraw.Draw(canvas).text((4, 5), label, fill="black")
        tiles.append(canvas)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + 4
    if Path(out).is_file():
        with Image.open(out) as old:
            if old.size == sheet.size and np.array_equal(np.asarray(old.convert("RGB")), np.asarray(sheet)):
                print(f"{out} is up to date")
                return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
