"""How far a method's haze amount is from right, and what it does where there is no haze.

Three measures beside :mod:`training.evaluate`'s mean PSNR/SSIM, all through the plugin's engine:

* **per-image best strength** (an oracle): each image dehazed at every strength of a fixed grid
  (the engine's ``strength`` scales the estimated optical depth); the best PSNR per image, and
  the gap between its mean and the method's own (strength 1). A method that estimates the haze
  amount right per image has a gap near 0; a global level knob shows up as a large gap.
* **haze-free check**: the clear images of the paired sets dehazed as if they were hazy; PSNR of
  the output to its own input. A tool run on every frame of a CCTV stream must leave clear frames
  alone.
* **edge band**: PSNR in a band around the strong edges of the clear image, against PSNR
  elsewhere. Halos (a transmission that does not follow thin structures) cost in the band.

``pairs-dev`` style folders carry ``params.csv`` (``hazy`` file name → ``beta``); their rows are
also reported by haze density.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_clearnet.analysis import metrics

__all__ = [
    "DEFAULT_GRID",
    "beta_bins",
    "edge_band_mask",
    "edge_band_psnr",
    "halo_levels",
    "halo_regions",
    "haze_free_psnr",
    "read_betas",
    "strength_sweep",
]

#: strengths tried per image (the engine's ``strength``: a multiple of the estimated optical depth)
DEFAULT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5)
#: PSNR of an image identical to its reference (∞), counted as this in means and quantiles
PSNR_CAP = 99.0
#: β bin edges for the density rows (pairs-dev's β spans about 0.5-2.5)
BETA_EDGES = (0.0, 1.0, 1.5, float("inf"))


def strength_sweep(dehazer, hazy: np.ndarray, gt: np.ndarray, grid: Sequence[float] = DEFAULT_GRID,
                   **settings) -> dict[float, float]:
    """PSNR against ``gt`` of ``hazy`` dehazed at every strength of ``grid`` (at most ``PSNR_CAP``)."""
    return {float(s): _psnr(dehazer.dehaze(hazy, strength=float(s), **settings).image, gt) for s in grid}


def _psnr(image: np.ndarray, reference: np.ndarray) -> float:
    return min(metrics.psnr(image, reference), PSNR_CAP)


def oracle(sweep: dict[float, float]) -> tuple[float, float]:
    """(best PSNR, the strength that gave it) of one image's sweep (the smallest such strength)."""
    best = max(sweep.values())
    return best, min(s for s, v in sweep.items() if v == best)


def haze_free_psnr(dehazer, clear: np.ndarray, **settings) -> float:
    """PSNR of a clear image dehazed against itself (``PSNR_CAP`` when nothing changed)."""
    return _psnr(dehazer.dehaze(clear, **settings).image, clear)


def edge_band_mask(gt: np.ndarray, fraction: float = 0.05, width: float = 0.03) -> np.ndarray:
    """Pixels within ``width`` × the long side of the strongest ``fraction`` of the clear image's
    edges (Sobel magnitude of its luma): where a transmission that does not follow edges shows."""
    luma = np.asarray(gt, np.float64)[..., :3].mean(-1)
    mag = np.hypot(ndimage.sobel(luma, 0), ndimage.sobel(luma, 1))
    strong = (mag >= np.quantile(mag, 1.0 - fraction)) & (mag > 0.1 * mag.max())  # flat images: none
    r = max(1, round(width * max(luma.shape)))
    return ndimage.binary_dilation(strong, iterations=r)


def _masked_psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    d = (np.asarray(image, np.float64) - np.asarray(reference, np.float64))[mask]
    mse = float(np.mean(d * d)) if d.size else 0.0
    return PSNR_CAP if mse == 0 else min(10.0 * np.log10(1.0 / mse), PSNR_CAP)


def edge_band_psnr(image: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(PSNR in the edge band, PSNR elsewhere) of ``image`` against ``gt``."""
    return _masked_psnr(image, gt, mask), _masked_psnr(image, gt, ~mask)


def halo_levels(image: np.ndarray, gt: np.ndarray, mask: np.ndarray, flat: float = 0.02,
                regions: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """How much darker or brighter a method leaves the flat regions next to strong edges than the
    same regions a little further out, in 8-bit levels of luma error (0: no halo; NaN where the
    clear image has no such flat regions).

    ``mask`` is :func:`edge_band_mask`'s band; "further out" is a ring as wide again around it.
    Only pixels where the clear image is locally flat (luma std over 7x7 below ``flat``: skies,
    walls) count, so the edges' own detail does not; rows are compared one by one. ``regions``:
    :func:`halo_regions` of ``gt`` and ``mask`` when already made (they depend on the clear image
    only, not on the method)."""
    near, ring = halo_regions(gt, mask, flat) if regions is None else regions
    err = np.asarray(image, np.float64)[..., :3].mean(-1) - np.asarray(gt, np.float64)[..., :3].mean(-1)
    # row by row, so that haze that changes with height (depth haze, a sky's gradient) is not
    # taken for a halo: per row the mean error near the edges against the ring's, weighted by
    # the row's pixels near edges
    n_near, n_ring = near.sum(1), ring.sum(1)
    rows = (n_near >= 4) & (n_ring >= 4)
    if n_near[rows].sum() < 100:
        return float("nan")
    e_near = (err * near).sum(1)[rows] / n_near[rows]
    e_ring = (err * ring).sum(1)[rows] / n_ring[rows]
    return float(np.average(np.abs(e_near - e_ring), weights=n_near[rows]) * 255.0)


def halo_regions(gt: np.ndarray, mask: np.ndarray, flat: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(near, ring) of :func:`halo_levels`: the clear image's flat pixels in the edge band
    ``mask``, and in a ring as wide again around it."""
    luma = np.asarray(gt, np.float64)[..., :3].mean(-1)
    mean = ndimage.uniform_filter(luma, 7)
    std = np.sqrt(np.clip(ndimage.uniform_filter(luma * luma, 7) - mean * mean, 0, None))
    smooth = std < flat
    r = max(1, round(0.03 * max(luma.shape)))
    ring = ndimage.binary_dilation(mask, iterations=r) & ~mask & smooth
    return mask & smooth, ring


def read_betas(folder: str | Path) -> dict[str, float]:
    """``{pair id: β}`` from ``folder/params.csv`` (columns ``hazy`` and ``beta``); {} without one."""
    f = Path(folder) / "params.csv"
    if not f.is_file():
        return {}
    out = {}
    with open(f, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if "hazy" in row and "beta" in row:
                out[Path(row["hazy"]).stem.rsplit("_", 1)[0]] = float(row["beta"])
    return out


def beta_bins(betas: dict[str, float], ids: Sequence[str]) -> dict[str, list[str]]:
    """The IDs grouped by β bin (``β < 1``, ``1 ≤ β < 1.5``, ``β ≥ 1.5``); IDs without a β are left out."""
    bins: dict[str, list[str]] = {}
    for lo, hi in itertools.pairwise(BETA_EDGES):
        label = f"β<{hi:g}" if lo == 0 else (f"β≥{lo:g}" if hi == float("inf") else f"{lo:g}≤β<{hi:g}")
        keep = [i for i in ids if i in betas and lo <= betas[i] < hi]
        if keep:
            bins[label] = keep
    return bins


class Analysis:
    """Collects the oracle, haze-free and edge-band measures of every (row, method) of an
    evaluation, and writes them as Markdown tables and a JSON-ready record."""

    def __init__(self, grid: Sequence[float] = DEFAULT_GRID) -> None:
        self.grid = tuple(sorted(float(s) for s in grid))
        if 1.0 not in self.grid:
            raise ValueError(f"the strength grid must contain 1 (the method's own estimate), got {self.grid}")
        #: (row label, method) -> per image {id, sweep}
        self.sweeps: dict[tuple[str, str], list[dict]] = {}
        #: (row label, method) -> per image PSNR of the clear image dehazed, to itself
        self.haze_free: dict[tuple[str, str], list[float]] = {}
        #: (row label, method) -> per image (band PSNR, elsewhere PSNR)
        self.edges: dict[tuple[str, str], list[tuple[float, float]]] = {}
        #: (row label, method) -> per image halo in 8-bit levels (:func:`halo_levels`; NaN: no flat
        #: regions next to strong edges)
        self.halos: dict[tuple[str, str], list[float]] = {}
        #: row label -> per image :func:`halo_regions` (made once: they depend on the clear image only)
        self._halo_regions: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        #: row label -> {bin label: ids}
        self.bins: dict[str, dict[str, list[str]]] = {}

    def add_row(self, label: str, folder: Path, ids: Sequence[str]) -> None:
        betas = read_betas(folder)
        if betas:
            self.bins[label] = beta_bins(betas, ids)

    def add(self, label: str, method: str, dehazer, pairs, outputs: Sequence[np.ndarray], masks,
            *, sweep: bool, **settings) -> None:
        """Measure one method on one row's ``pairs`` (``outputs``: its images at strength 1;
        ``dehazer`` None is the hazy input)."""
        self.edges[(label, method)] = [edge_band_psnr(o, p.gt, m) for o, p, m in
                                       zip(outputs, pairs, masks, strict=True)]
        if label not in self._halo_regions:
            self._halo_regions[label] = [halo_regions(p.gt, m) for p, m in zip(pairs, masks, strict=True)]
        self.halos[(label, method)] = [halo_levels(o, p.gt, m, regions=r) for o, p, m, r in
                                       zip(outputs, pairs, masks, self._halo_regions[label], strict=True)]
        if dehazer is None:
            return
        self.haze_free[(label, method)] = [haze_free_psnr(dehazer, p.gt, **settings) for p in pairs]
        if sweep:
            rows = []
            for p, o in zip(pairs, outputs, strict=True):
                sw = strength_sweep(dehazer, p.hazy, p.gt, [s for s in self.grid if s != 1.0], **settings)
                sw[1.0] = _psnr(o, p.gt)
                rows.append({"id": p.id, "sweep": dict(sorted(sw.items()))})
            self.sweeps[(label, method)] = rows

    # ---------------------------------------------------------------------------- summaries
    def oracle_summary(self, label: str, method: str, ids: Sequence[str] | None = None) -> dict[str, float]:
        """Mean PSNR at strength 1, at the best fixed strength, at each image's best, and the gap."""
        rows = [r for r in self.sweeps[(label, method)] if ids is None or r["id"] in ids]
        own = float(np.mean([r["sweep"][1.0] for r in rows]))
        fixed = {s: float(np.mean([r["sweep"][s] for r in rows])) for s in self.grid}
        best_fixed = max(fixed, key=lambda s: fixed[s])
        per_image = [oracle(r["sweep"]) for r in rows]
        best = float(np.mean([v for v, _ in per_image]))
        return {"n": len(rows), "psnr": own, "best_fixed_psnr": fixed[best_fixed], "best_fixed": best_fixed,
                "oracle_psnr": best, "gap": best - own,
                "median_best_strength": float(np.median([s for _, s in per_image]))}

    def haze_free_summary(self, method: str) -> dict[str, float]:
        """Median and 10 % quantile over every clear image of every row."""
        vals = [v for (lab, m), vs in self.haze_free.items() if m == method for v in vs]
        return {"n": len(vals), "median": float(np.median(vals)), "p10": float(np.quantile(vals, 0.1))}

    def edge_summary(self, label: str, method: str, hazy: str) -> dict[str, float]:
        """Mean PSNR gain over the hazy input in the edge band and elsewhere, and the mean halo
        (levels; NaN where no image of the row has flat regions next to strong edges)."""
        me, hz = self.edges[(label, method)], self.edges[(label, hazy)]
        band = float(np.mean([a[0] - b[0] for a, b in zip(me, hz, strict=True)]))
        rest = float(np.mean([a[1] - b[1] for a, b in zip(me, hz, strict=True)]))
        def halo(m: str) -> float:
            vals = [v for v in self.halos.get((label, m), []) if np.isfinite(v)]
            return float(np.mean(vals)) if vals else float("nan")

        return {"gain_band": band, "gain_elsewhere": rest, "halo_levels": halo(method),
                "halo_levels_hazy": halo(hazy)}

    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for _, m in self.sweeps))

    def record(self, labels: Sequence[str], hazy: str) -> dict:
        out: dict = {"grid": list(self.grid), "oracle": {}, "by_beta": {}, "haze_free": {}, "edge_band": {}}
        for label in labels:
            out["oracle"][label] = {m: self.oracle_summary(label, m)
                                    for (lab, m) in self.sweeps if lab == label}
            for b, ids in self.bins.get(label, {}).items():
                out["by_beta"][f"{label} {b}"] = {
                    m: self.oracle_summary(label, m, ids) for (lab, m) in self.sweeps if lab == label}
            out["edge_band"][label] = {m: self.edge_summary(label, m, hazy)
                                       for (lab, m) in self.edges if lab == label and m != hazy}
        for m in dict.fromkeys(m for _, m in self.haze_free):
            out["haze_free"][m] = self.haze_free_summary(m)
            out["haze_free"][m]["per_set"] = {
                lab: float(np.median(vs)) for (lab, mm), vs in self.haze_free.items()
                if mm == m}
        return out

    def summary(self, table: dict, hazy: str, dcp: str, prior: str) -> str:
        """One table per model: set | hazy | classic DCP | untrained prior | model | model at its
        best fixed strength | per-image best strength | gap, and the haze-free row (PSNR dB)."""
        out = []
        for model in [m for m in self.methods() if m != prior]:
            lines = ["", f"## {model}: every set side by side (PSNR dB)", "",
                     f"| set | split | pairs | hazy | classic DCP | untrained prior | {model} "
                     "| at its best fixed strength (s) | per-image best strength | gap |",
                     "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for label, cells in table.items():
                if (label, model) not in self.sweeps:
                    continue
                o = self.oracle_summary(label, model)
                s, split = label.rsplit(" ", 1)
                prior_cell = f"{cells[prior][0]:.2f}" if prior in cells else "—"
                lines.append(f"| {s} | {split} | {int(cells['n'][0])} | {cells[hazy][0]:.2f} | "
                             f"{cells[dcp][0]:.2f} | {prior_cell} | **{cells[model][0]:.2f}** | "
                             f"{o['best_fixed_psnr']:.2f} ({o['best_fixed']:g}) | {o['oracle_psnr']:.2f} | "
                             f"{o['gap']:.2f} |")
            hf = {m: self.haze_free_summary(m) for m in (dcp, prior, model)
                  if any(k[1] == m for k in self.haze_free)}
            cells = " | ".join(f"{hf[m]['median']:.2f} / {hf[m]['p10']:.2f}" if m in hf else "—"
                               for m in (dcp, prior, model))
            n = hf[model]["n"] if model in hf else 0
            lines.append(f"| haze-free ({n} clear images): median / 10 % | | | — | {cells} | | | |")
            out += lines
        return "\n".join(out) + "\n"

    def markdown(self, labels: Sequence[str], hazy: str) -> str:
        rec = self.record(labels, hazy)
        lines = ["", "## Haze amount: each method at its own estimate, at its best fixed strength and at "
                 "each image's best strength (PSNR dB)", "",
                 f"Strengths tried per image: {', '.join(f'{s:g}' for s in self.grid)}. "
                 "gap = per-image best − own estimate.", "",
                 "| set | split | method | own (s = 1) | best fixed (s) | per-image best | gap "
                 "| median best s |",
                 "|---|---|---|---:|---:|---:|---:|---:|"]
        rows = list(rec["oracle"].items()) + list(rec["by_beta"].items())
        for label, per_method in rows:
            s, split = label.split(" ", 1)
            for m, v in per_method.items():
                lines.append(f"| {s} | {split} | {m} | {v['psnr']:.2f} | {v['best_fixed_psnr']:.2f} "
                             f"({v['best_fixed']:g}) | {v['oracle_psnr']:.2f} | {v['gap']:.2f} | "
                             f"{v['median_best_strength']:g} |")
        lines += ["", "## Haze-free check: the clear image of every pair dehazed, PSNR to itself (dB)", "",
                  "| method | images | median | 10 % quantile |", "|---|---:|---:|---:|"]
        for m, v in rec["haze_free"].items():
            lines.append(f"| {m} | {v['n']} | {v['median']:.2f} | {v['p10']:.2f} |")
        lines += ["", "## Edge band: PSNR gain over the hazy input near the clear image's strongest edges "
                  "and elsewhere (dB), and the halo: how much the flat regions next to them differ "
                  "from those a little further out (8-bit levels of luma error, row by row; the "
                  "hazy input's own beside each for reference)", "",
                  "| set | split | method | gain in band | gain elsewhere | halo (levels) |",
                  "|---|---|---|---:|---:|---:|"]
        for label, per_method in rec["edge_band"].items():
            s, split = label.split(" ", 1)
            for m, v in per_method.items():
                lines.append(f"| {s} | {split} | {m} | {v['gain_band']:.2f} | {v['gain_elsewhere']:.2f} | "
                             f"{v['halo_levels']:.2f} (hazy {v['halo_levels_hazy']:.2f}) |")
        return "\n".join(lines) + "\n"
