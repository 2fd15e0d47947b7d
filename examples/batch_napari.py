"""Batch-dehaze a folder through napari, without showing a window.

Opens every image of INPUT_DIR in a hidden viewer (napari's own readers), runs the plugin's
``napari-clearnet.dehaze_layer`` command on it (the same code the Dehaze widget runs) and saves
the dehazed image, and optionally its transmission map, into OUTPUT_DIR. Existing files are never
replaced unless ``--overwrite`` is given. Provenance (method, model, sha256, device, seconds) of
every output is written to ``OUTPUT_DIR/provenance.json``.

    python examples/batch_napari.py hazy/ dehazed/ --method clearnet --transmission
    xvfb-run -a python examples/batch_napari.py hazy/ dehazed/   # where there is no display

A hidden viewer still needs a display (an X server or Wayland; Qt's offscreen platform does not
work with napari's OpenGL canvas): on a server, run it under ``xvfb-run -a``.

For a folder without napari, ``clearnet dehaze`` (the CLI) does the same faster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input_dir", type=Path, help="folder of hazy images")
    p.add_argument("output_dir", type=Path, help="folder for the results (created if needed)")
    p.add_argument("--method", choices=("clearnet", "dcp"), default="clearnet")
    p.add_argument("--model", default=None, help="registry name, .safetensors path or hf:// address")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--transmission", action="store_true", help="also save the transmission map")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.input_dir.is_dir():
        print(f"error: input folder {args.input_dir} does not exist", file=sys.stderr)
        return 2
    files = sorted(f for f in args.input_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        print(f"error: no images ({', '.join(IMAGE_SUFFIXES)}) in {args.input_dir}", file=sys.stderr)
        return 2

    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not display:
        print("error: napari needs a display even for a hidden viewer, and there is none: run this "
              "under a virtual X server, `xvfb-run -a python examples/batch_napari.py ...`, or use "
              "`clearnet dehaze` (no napari needed)", file=sys.stderr)
        return 2

    import napari
    from npe2 import PluginManager

    from napari_clearnet.io import write_image

    viewer = napari.Viewer(show=False)
    run = PluginManager.instance().commands.execute
    outputs = ["dehazed"] + (["transmission"] if args.transmission else [])
    provenance: dict[str, dict] = {}
    failed = 0
    try:
        for path in files:
            try:
                [layer] = viewer.open(str(path), plugin="napari")
                results = run(
                    "napari-clearnet.dehaze_layer",
                    args=(viewer, layer),
                    kwargs={"method": args.method, "model": args.model, "device": args.device,
                            "outputs": outputs},
                )
                for kind, out in zip(outputs, results, strict=True):
                    target = args.output_dir / f"{path.stem}_{kind}.png"
                    write_image(target, out.data, overwrite=args.overwrite)
                    provenance[target.name] = out.metadata["provenance"]
                    print(f"{path.name} -> {target}")
            except (ValueError, OSError) as exc:  # bad image, existing output: report, go on
                failed += 1
                print(f"error: {path.name}: {exc}", file=sys.stderr)
            finally:
                viewer.layers.clear()  # one image at a time in memory
    finally:
        viewer.close()
    if provenance:  # add to the record of earlier runs rather than replacing it
        record = args.output_dir / "provenance.json"
        old = json.loads(record.read_text()) if record.is_file() else {}
        record.write_text(json.dumps({**old, **provenance}, indent=2, default=str))
    print(f"{len(files) - failed}/{len(files)} images dehazed into {args.output_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
