"""Real hazy photos, no references: a comparison sheet and the sky check.

Paired scores cannot see what users see first on real photos: rings, colour blotches and
amplified JPEG noise in smooth bright skies. ``python -m training photos`` runs the classic DCP
and each model over every photo under the given folders, applies
:func:`napari_clearnet.analysis.metrics.sky_check` to each photo *with sky* (smooth bright regions close
to the airlight covering between ``SKY_MIN_FRACTION`` and ``SKY_MAX_FRACTION`` of the frame,
judged from the hazy input alone) and writes the per-photo table and a summary. Where such
regions fill most of the frame the "sky" is the haze itself (a dust storm, dense fog over the
whole scene), which dehazing is meant to remove: those photos are listed with their numbers but
not judged. With ``--sheet`` it also writes a sheet of
chosen photos (rows hazy | DCP | models) for the docs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_clearnet import api, io
from napari_clearnet._util.files import write_text
from napari_clearnet._util.validate import json_text
from napari_clearnet.analysis import metrics

from .data import find_hazy_images, load_rgb
from .evaluate import DCP, make_grid

__all__ = ["SKY_MAX_FRACTION", "SKY_MIN_FRACTION", "photos"]

#: a photo "has sky" when the sky mask covers at least this share of it
SKY_MIN_FRACTION = 0.05
#: ... and at most this share (beyond it the smooth bright region is the haze filling the scene)
SKY_MAX_FRACTION = 0.6


def _label(model: str | Path) -> str:
    return f"ClearNet ({Path(str(model)).stem})"


def photos(
    images: Sequence[str | Path],
    models: Sequence[str | Path],
    out: str | Path,
    *,
    sheet: str | Path | None = None,
    sheet_names: Sequence[str] = (),
    device: str = "auto",
    height: int = 200,
    max_side: int = 1024,
) -> dict[str, dict[str, float]]:
    """Sky-check every photo with sky under ``images`` for the DCP and each model; write
    ``scores.md`` / ``scores.json`` to ``out`` and, with ``sheet``, the photos whose file names
    (without suffix) are in ``sheet_names`` as one image. Photos are reduced to ``max_side``
    before dehazing, as a user's preview would. Returns ``{method: summary}``."""
    methods = {DCP: api.load_model(method="dcp", device=device)}
    for m in models:
        methods[_label(m)] = api.load_model(m, device=device)
    wanted = {Path(n).stem for n in sheet_names}
    rows: list[dict] = []
    tiles: dict[str, list[np.ndarray]] = {}
    for path, key in find_hazy_images(images):
        hazy = _reduced(load_rgb(path), max_side)
        frac = float(metrics.sky_mask(hazy).mean())
        show = path.stem in wanted
        if frac < SKY_MIN_FRACTION and not show:
            continue
        outputs = {name: d.dehaze(hazy).image for name, d in methods.items()}
        if show:
            tiles[path.stem] = [hazy, *outputs.values()]
        if frac >= SKY_MIN_FRACTION:
            judged = frac <= SKY_MAX_FRACTION
            for name, j in outputs.items():
                rows.append({"photo": key, "method": name, "judged": judged,
                             **metrics.sky_check(hazy, j).to_dict()})
    summary = _summary(rows, list(methods))
    _write(Path(out), rows, summary)
    if sheet is not None:
        missing = wanted - set(tiles)
        if missing:
            raise FileNotFoundError(f"--sheet-photos not found under {', '.join(map(str, images))}: "
                                    f"{sorted(missing)}")
        order = [n for n in (Path(s).stem for s in sheet_names) if n in tiles]
        cols = list(zip(*(tiles[n] for n in order), strict=True))
        io.write_image(sheet, make_grid(cols, height=height), overwrite=True, quality=90)
    return summary


def _reduced(img: np.ndarray, max_side: int) -> np.ndarray:
    import torch

    from napari_clearnet.core import physics

    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    return physics.resize(x, (round(h * s), round(w * s)))[0].permute(1, 2, 0).clamp(0, 1).numpy()


def _summary(rows: list[dict], methods: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for m in methods:
        r = [x for x in rows if x["method"] == m and x["judged"]]
        if not r:
            continue
        out[m] = {
            "photos": len(r),
            "passed": sum(x["passed"] for x in r),
            "median_gradient_gain": float(np.median([x["gradient_gain"] for x in r])),
            "worst_gradient_gain": float(max(x["gradient_gain"] for x in r)),
            "median_chroma_spread": float(np.median([x["chroma_spread"] for x in r])),
            "worst_chroma_spread": float(max(x["chroma_spread"] for x in r)),
            "worst_chroma_shift": float(max(x["chroma_shift"] for x in r)),
        }
    return out


def _write(out: Path, rows: list[dict], summary: dict[str, dict[str, float]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lim = (f"gradient gain ≤ {metrics.SKY_MAX_GRADIENT_GAIN:g}, chroma spread ≤ "
           f"{metrics.SKY_MAX_CHROMA_SPREAD:g} ΔE, chroma shift ≤ {metrics.SKY_MAX_CHROMA_SHIFT:g} ΔE")
    share = f"{SKY_MIN_FRACTION:.0%}–{SKY_MAX_FRACTION:.0%}"
    lines = [f"Sky check on the real photos with sky (sky mask {share} of the frame); passes when {lim}",
             "", "| method | passed | median / worst gradient gain | median / worst chroma spread (ΔE) "
             "| worst chroma shift (ΔE) |", "|---|---:|---|---|---:|"]
    for m, s in summary.items():
        lines.append(f"| {m} | {s['passed']} / {s['photos']} | {s['median_gradient_gain']:.2f} / "
                     f"{s['worst_gradient_gain']:.2f} | {s['median_chroma_spread']:.1f} / "
                     f"{s['worst_chroma_spread']:.1f} | {s['worst_chroma_shift']:.1f} |")
    photos_ = sorted({r["photo"] for r in rows})
    methods = list(summary)
    lines += ["", "| photo | sky | " + " | ".join(f"{m}: gain / spread" for m in methods) + " |",
              "|---|---:|" + "---|" * len(methods)]
    for p in photos_:
        cells, frac = [], 0.0
        for m in methods:
            r = next(x for x in rows if x["photo"] == p and x["method"] == m)
            frac = r["fraction"]
            mark = "" if r["passed"] else " ✗"
            cells.append(f"{r['gradient_gain']:.2f} / {r['chroma_spread']:.1f}{mark}")
        judged = next(x["judged"] for x in rows if x["photo"] == p)
        note = "" if judged else " (haze fills the frame: not judged)"
        lines.append(f"| {p}{note} | {frac:.0%} | " + " | ".join(cells) + " |")
    write_text(out / "scores.md", "\n".join(lines) + "\n")
    record = {"kind": "sky check", "min_fraction": SKY_MIN_FRACTION, "max_fraction": SKY_MAX_FRACTION,
              "thresholds": {"gradient_gain": metrics.SKY_MAX_GRADIENT_GAIN,
                             "chroma_spread": metrics.SKY_MAX_CHROMA_SPREAD,
                             "chroma_shift": metrics.SKY_MAX_CHROMA_SHIFT},
              "summary": summary, "photos": rows}
    write_text(out / "scores.json", json_text(record, indent=2) + "\n")
