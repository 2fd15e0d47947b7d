"""``clearnet depth IMAGE --point X,Y,METRES ... -o OUTDIR``: what an image's haze says about depth.

Writes, atomically and never over existing files unless ``--overwrite``:

* ``<stem>_depth.tif``: float32 metres (with points), or ``<stem>_optical_depth.tif``: float32
  τ = −ln t, the relative depth (without points);
* ``<stem>_depth_uncertainty.tif``: the per-pixel standard error in metres (two points or more);
* ``<stem>_optical_depth.png`` with ``--png``: 16-bit τ / τ_floor (black near, white as far as the
  map can tell), to look at;
* ``<stem>_depth.json``: β, V, their standard errors and 95 % intervals, every point, warnings and
  provenance; the same JSON is printed on stdout.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._util import files
from .._util.validate import json_text
from ..analysis import depth
from ..api import resolve_dehazer
from ..core.arrays import describe_layout, frame
from ..core.run import drive
from ..io import images as io
from ..io.load import load_image

__all__ = ["run_from_args"]


def _outputs(image: Path, out: Path, n_points: int, png: bool) -> dict[str, Path]:
    stem = image.stem
    names = {"json": f"{stem}_depth.json"}
    names["map"] = f"{stem}_depth.tif" if n_points else f"{stem}_optical_depth.tif"
    if n_points >= 2:
        names["uncertainty"] = f"{stem}_depth_uncertainty.tif"
    if png:
        names["png"] = f"{stem}_optical_depth.png"
    return {k: out / v for k, v in names.items()}


def _frame(arr: np.ndarray, index: int | None, path: Path) -> np.ndarray:
    """The one frame of ``arr`` to read: float32 in [0, 1], channels last, on the whole file's
    value range (:func:`~napari_clearnet.core.arrays.frame`, as a run reads it)."""
    layout = describe_layout(arr.shape, "auto")
    n = layout.n_frames
    if index is None and n != 1:
        raise ValueError(f"{path} holds {n} frames; choose one with --frame I (0 to {n - 1})")
    if not 0 <= (index or 0) < n:
        raise ValueError(f"--frame {index} is out of range: {path} holds {n} frames (0 to {n - 1})")
    return frame(arr, index or 0, layout)


def _read(path: Path, index: int | None) -> np.ndarray:
    """Frame ``index`` of an image, a stack or a clip (clips are decoded up to that frame only)."""
    from ..video.reader import VideoReader, is_video

    if not is_video(path):
        return _frame(load_image(path).array, index, path)
    with VideoReader(path, warn=False) as clip:
        n = len(clip)
        if index is None and n > 1:
            raise ValueError(f"{path} is a clip of {n} frames; choose one with --frame I (0 to {n - 1})")
        if index is not None and not 0 <= index < n:
            raise ValueError(f"--frame {index} is out of range: {path} holds {n} frames (0 to {n - 1})")
        arr = frame(np.array(clip.frame(index or 0)))
        for note in clip.notes:
            print(f"clearnet depth: note: {path.name}: {note}", file=sys.stderr)
        return arr


def run_from_args(args: argparse.Namespace) -> int:
    path, out = Path(args.image), Path(args.output)
    targets = _outputs(path, out, len(args.points), args.png)
    try:
        taken = [str(p) for p in targets.values() if p.exists()]
        if taken and not args.overwrite:
            raise ValueError(f"outputs exist: {', '.join(taken)}; pass --overwrite to replace them")
        points = depth.as_points(args.points)
        arr = _read(path, args.frame)
        dehazer = resolve_dehazer(args.method, args.model, args.device)
        hd = drive(depth.estimate(dehazer, arr, value_range=(0.0, 1.0)))  # arr: one frame in [0, 1]
        fit = hd.fit(points) if points else None
        if fit is not None:
            for note in fit.warnings:
                print(f"clearnet depth: warning: {note}", file=sys.stderr)
        record = _write(hd, fit, path, targets, args.overwrite)
    except (ValueError, OSError, RuntimeError) as exc:  # WeightsError is a ValueError
        print(f"clearnet depth: error: {exc}", file=sys.stderr)
        return 2
    print(json_text(record, indent=2))
    print(f"clearnet depth: {fit.summary() if fit else 'no points: relative depth only'}; wrote "
          f"{', '.join(str(p) for p in targets.values())}", file=sys.stderr)
    return 0


def _write(hd: depth.HazeDepth, fit: depth.DepthFit | None, source: Path, targets: dict[str, Path],
           overwrite: bool) -> dict[str, Any]:
    """Write the maps, then the JSON that names them; returns the JSON's content."""
    fp = files.fingerprint(source)
    tau = hd.optical_depth
    if fit is None:
        io.write_float_tiff(targets["map"], tau, overwrite=overwrite, source_fingerprint=fp,
                            description="optical depth tau = -ln t (relative depth, d = tau / beta)")
    else:
        io.write_float_tiff(targets["map"], fit.depth(tau), overwrite=overwrite, source_fingerprint=fp,
                            description=f"depth in metres, d = -ln t / beta, beta = {fit.beta:.6g} /m")
        se = fit.depth_se(hd.transmission)
        if se is not None:
            io.write_float_tiff(targets["uncertainty"], se, overwrite=overwrite, source_fingerprint=fp,
                                description="standard error of the depth in metres")
    tau_floor = -math.log(hd.floor + depth.CLAMP_MARGIN)
    if "png" in targets:
        io.write_image(targets["png"], tau / np.float32(tau_floor), bit_depth=16, overwrite=overwrite,
                       source_fingerprint=fp)
    record: dict[str, Any] = {
        "source": str(source), "source_sha256": files.sha256_file(source), "source_fingerprint": fp,
        "files": {k: str(v) for k, v in targets.items() if k != "json"},
        "t_floor": hd.floor, "optical_depth_at_floor": tau_floor,
        "beyond_fraction": float(hd.beyond.mean()),
    }
    record.update(fit.to_dict() if fit is not None else {"beta_per_m": None, "visibility_m": None,
                                                         "note": "no points: relative depth only"})
    record["provenance"] = hd.provenance
    files.write_text(targets["json"], json_text(record, indent=2, ensure_ascii=False) + "\n",
                     overwrite=overwrite)
    return record
