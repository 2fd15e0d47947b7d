"""Score dehazing methods on a paired folder: PSNR and SSIM per image and mean, as a Markdown
table, a CSV and a comparison grid (hazy | DCP | ClearNet | GT).

All methods run through the plugin's own engine (full resolution, the same code users get), so
the numbers describe what ships, not a training-time approximation.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_clearnet import engine, io, metrics
from napari_clearnet._validate import json_text

from .data import Pair, find_pairs, load_rgb, read_ids_file

__all__ = ["LoadedPair", "evaluate", "load_pairs", "make_grid", "preview", "score"]


@dataclass
class LoadedPair:
    id: str
    hazy: np.ndarray
    gt: np.ndarray


def load_pairs(pairs: Sequence[Pair]) -> list[LoadedPair]:
    """Read pairs into memory (validation sets are small); shapes must agree."""
    out = []
    for p in pairs:
        h, g = load_rgb(p.hazy), load_rgb(p.gt)
        if h.shape != g.shape:
            raise ValueError(f"pair {p.id}: hazy {h.shape} and gt {g.shape} differ in shape")
        out.append(LoadedPair(p.id, h, g))
    return out


def score(dehazer: engine.Dehazer | None, pairs: Sequence[LoadedPair]) -> tuple[list[dict], list[np.ndarray]]:
    """PSNR/SSIM of ``dehazer`` (``None``: the hazy input itself) per pair, and the outputs."""
    rows, outputs = [], []
    for p in pairs:
        j = p.hazy if dehazer is None else dehazer.run_frame(p.hazy).image
        rows.append({"id": p.id, "psnr": metrics.psnr(j, p.gt), "ssim": metrics.ssim(j, p.gt)})
        outputs.append(j)
    return rows, outputs


def mean_scores(rows: Sequence[dict]) -> tuple[float, float]:
    return float(np.mean([r["psnr"] for r in rows])), float(np.mean([r["ssim"] for r in rows]))


def make_grid(columns: Sequence[Sequence[np.ndarray]], height: int = 192, gap: int = 4) -> np.ndarray:
    """A grid image: one row per image, one column per method, each tile resized to ``height``."""
    import torch

    from napari_clearnet import physics

    rows = []
    for tiles in zip(*columns, strict=True):
        resized = []
        for t in tiles:
            h, w = t.shape[:2]
            x = torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32)).permute(2, 0, 1)[None]
            size = (height, max(1, round(w * height / h)))
            resized.append(physics.resize(x, size)[0].permute(1, 2, 0).clamp(0, 1).numpy())
        spacer = np.ones((height, gap, 3), np.float32)
        rows.append(np.concatenate([v for r in resized for v in (r, spacer)][:-1], 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows]
    return np.concatenate(rows, 0)[:-gap]


def evaluate(
    pairs_dir: str | Path,
    model: str | Path,
    *,
    ids_file: str | Path | None = None,
    out_dir: str | Path | None = None,
    n_grid: int = 4,
    device: str = "auto",
    title: str = "",
) -> dict[str, tuple[float, float]]:
    """Score ClearNet ``model``, the classic DCP and the hazy input; write results if ``out_dir``.

    Returns ``{method: (mean PSNR, mean SSIM)}``.
    """
    ids = read_ids_file(ids_file) if ids_file else None
    pairs = load_pairs(find_pairs(pairs_dir, ids))
    methods = {
        "hazy input": None,
        "DCP (classic)": engine.load_model(method="dcp", device=device),
        f"ClearNet ({Path(str(model)).stem})": engine.load_model(model, device=device),
    }
    per_method: dict[str, list[dict]] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    for name, dehazer in methods.items():
        per_method[name], outputs[name] = score(dehazer, pairs)
    summary = {name: mean_scores(rows) for name, rows in per_method.items()}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_csv(out / "scores.csv", per_method)
        label = title or f"{Path(pairs_dir).name}" + (f" ({Path(ids_file).stem})" if ids_file else "")
        (out / "scores.md").write_text(markdown_table(summary, len(pairs), label), encoding="utf-8")
        record = {"label": label, "n_pairs": len(pairs), "pairs_dir": str(pairs_dir), "model": str(model),
                  "ids_file": str(ids_file) if ids_file else None,
                  "mean": {k: {"psnr": v[0], "ssim": v[1]} for k, v in summary.items()}}
        # valid JSON: an identical pair's PSNR is infinite, written as null
        (out / "scores.json").write_text(json_text(record, indent=2) + "\n", encoding="utf-8")
        k = min(n_grid, len(pairs))
        cols = [[p.hazy for p in pairs[:k]]]
        cols += [outputs[n][:k] for n in list(methods)[1:]]
        cols.append([p.gt for p in pairs[:k]])
        io.write_image(out / "grid.png", make_grid(cols), overwrite=True)
    return summary


def preview(
    images: Sequence[str | Path], model: str | Path, out: str | Path, *, n: int = 6,
    device: str = "auto", height: int = 192,
) -> Path:
    """A grid of real hazy photos without references: rows hazy | DCP | ClearNet, to look for
    halos, colour casts and broken skies that paired scores do not show."""
    from .data import find_hazy_images

    paths = [p for p, _ in find_hazy_images(images)][:n]
    dcp_m = engine.load_model(method="dcp", device=device)
    net = engine.load_model(model, device=device)
    hazy = [load_rgb(p) for p in paths]
    cols = [hazy, [dcp_m.run_frame(h).image for h in hazy], [net.run_frame(h).image for h in hazy]]
    return io.write_image(out, make_grid(cols, height=height), overwrite=True)


def markdown_table(summary: dict[str, tuple[float, float]], n: int, label: str) -> str:
    lines = [f"{label}: {n} pairs, mean over images", "", "| method | PSNR (dB) | SSIM |", "|---|---|---|"]
    for name, (p, s) in summary.items():
        lines.append(f"| {name} | {p:.2f} | {s:.3f} |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, per_method: dict[str, list[dict]]) -> None:
    names = list(per_method)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id"] + [f"{n} {m}" for n in names for m in ("PSNR", "SSIM")])
        n_rows = len(per_method[names[0]])
        for i in range(n_rows):
            row = [per_method[names[0]][i]["id"]]
            for n in names:
                r = per_method[n][i]
                row += [f"{r['psnr']:.4f}", f"{r['ssim']:.5f}"]
            w.writerow(row)
        row = ["mean"]
        for n in names:
            p, s = mean_scores(per_method[n])
            row += [f"{p:.4f}" if math.isfinite(p) else "inf", f"{s:.5f}"]
        w.writerow(row)
