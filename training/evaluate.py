"""Score dehazing methods on paired folders: PSNR and SSIM per image and per set, as a Markdown
table, a CSV, a JSON record and comparison grids (hazy | DCP | prior | models | GT).

Every paired set is reported side by side, split into the validation IDs (which choose settings
and checkpoints) and the held-out IDs (which choose nothing), from the committed lists in
``training/splits/<set>-{val,heldout}.txt``. All methods run through the plugin's own engine at
full resolution, so the numbers describe what ships, not a training-time approximation.
"""

from __future__ import annotations

import csv
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_clearnet import api, io
from napari_clearnet._util.files import atomic_path, write_text
from napari_clearnet._util.validate import json_text
from napari_clearnet.analysis import metrics
from napari_clearnet.core import engine
from napari_clearnet.core.model import ClearNet

from .data import Pair, find_pairs, load_rgb, read_ids_file
from .oracle import Analysis, edge_band_mask

__all__ = [
    "SPLITS_DIR",
    "LoadedPair",
    "PairedSplit",
    "evaluate",
    "load_pairs",
    "make_grid",
    "paired_splits",
    "score",
]

#: the committed split lists, ``<set folder name>-val.txt`` and ``<set folder name>-heldout.txt``
SPLITS_DIR = Path(__file__).resolve().parent / "splits"
SPLIT_CHOICES = ("auto", "both", "val", "heldout", "all")
HAZY, DCP, PRIOR = "hazy input", "DCP (classic)", "prior (untrained)"


@dataclass
class LoadedPair:
    id: str
    hazy: np.ndarray
    gt: np.ndarray


@dataclass(frozen=True)
class PairedSplit:
    """One row of the report: a paired folder, restricted to a split's IDs (``None``: all)."""

    set: str
    split: str
    folder: Path
    ids: tuple[str, ...] | None

    @property
    def label(self) -> str:
        return f"{self.set} {self.split}"


def paired_splits(
    folders: Sequence[str | Path], split: str = "auto", *, ids_file: str | Path | None = None,
    splits_dir: str | Path = SPLITS_DIR,
) -> list[PairedSplit]:
    """The rows for ``folders``: ``split`` is ``val``, ``heldout``, ``both`` (val then held-out),
    ``all`` (every pair) or ``auto`` (``both`` for a set with committed lists, else ``all``); the
    IDs come from ``<splits_dir>/<folder name>-<split>.txt``.
    ``ids_file`` instead names the IDs directly (one folder only; the row is named after the file)."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    if ids_file is not None:
        if len(folders) != 1:
            raise ValueError("--ids-file applies to one --pairs folder; use --split for several")
        folder = Path(folders[0])
        return [PairedSplit(folder.name, Path(ids_file).stem, folder, tuple(read_ids_file(ids_file)))]
    rows = []
    for f in folders:
        folder = Path(f).expanduser()
        listed = (Path(splits_dir) / f"{folder.name}-val.txt").is_file()
        mode = ("both" if listed else "all") if split == "auto" else split
        if mode in ("both", "val", "heldout"):
            mode = _fitting_split(folder, mode, splits_dir, split == "auto")
        parts = ("val", "heldout") if mode == "both" else (mode,)
        for part in parts:
            if part == "all":
                rows.append(PairedSplit(folder.name, "all", folder, None))
                continue
            lst = Path(splits_dir) / f"{folder.name}-{part}.txt"
            if not lst.is_file():
                raise FileNotFoundError(
                    f"no {part} split for {folder}: {lst} is missing (commit one, or use --split all)"
                )
            rows.append(PairedSplit(folder.name, part, folder, tuple(read_ids_file(lst))))
    return rows


def _fitting_split(folder: Path, mode: str, splits_dir: str | Path, auto: bool) -> str:
    """``mode``, or ``all`` when the committed lists of a set name IDs this folder lacks: the lists
    were made for the project's copy of that set, and a folder of one's own with the same name
    (another I-HAZE download, one's own pairs called ``ihaze``) is scored on all its pairs with a
    note. An explicitly asked split that does not fit is an error that says so."""
    parts = ("val", "heldout") if mode == "both" else (mode,)
    lists = [Path(splits_dir) / f"{folder.name}-{part}.txt" for part in parts]
    listed = {i for lst in lists if lst.is_file() for i in read_ids_file(lst)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            have = {p.id for p in find_pairs(folder)}
    except FileNotFoundError:
        return mode  # not a paired folder: find_pairs says so when the pairs are read
    missing = sorted(listed - have)
    if not missing:
        return mode
    names = " and ".join(str(lst) for lst in lists)
    why = (f"{names} list {len(missing)} of their {len(listed)} IDs that {folder} does not have "
           f"(e.g. {', '.join(missing[:5])}): the lists were made for another copy of "
           f"'{folder.name}'")
    if not auto:
        raise FileNotFoundError(f"{why}; use --split all, or --splits-dir with lists for this folder")
    print(f"note: {why}; using all {len(have)} pairs of {folder}", file=sys.stderr)
    return "all"


def load_pairs(pairs: Sequence[Pair]) -> list[LoadedPair]:
    """Read pairs into memory (validation sets are small); shapes must agree."""
    out = []
    for p in pairs:
        h, g = load_rgb(p.hazy), load_rgb(p.gt)
        if h.shape != g.shape:
            raise ValueError(f"pair {p.id}: hazy {h.shape} and gt {g.shape} differ in shape")
        out.append(LoadedPair(p.id, h, g))
    return out


def score(
    dehazer: engine.Dehazer | None, pairs: Sequence[LoadedPair], **settings: float | None
) -> tuple[list[dict], list[np.ndarray]]:
    """PSNR/SSIM of ``dehazer`` (``None``: the hazy input itself) per pair, and the outputs;
    ``settings`` go to :meth:`Dehazer.dehaze` (e.g. ``sky_protection``)."""
    rows, outputs = [], []
    for p in pairs:
        j = p.hazy if dehazer is None else dehazer.dehaze(p.hazy, **settings).image
        rows.append({"id": p.id, "psnr": metrics.psnr(j, p.gt), "ssim": metrics.ssim(j, p.gt)})
        outputs.append(j)
    return rows, outputs


def mean_scores(rows: Sequence[dict]) -> tuple[float, float]:
    return float(np.mean([r["psnr"] for r in rows])), float(np.mean([r["ssim"] for r in rows]))


def make_grid(columns: Sequence[Sequence[np.ndarray]], height: int = 192, gap: int = 4) -> np.ndarray:
    """A grid image: one row per image, one column per method, each tile resized to ``height``."""
    import torch

    from napari_clearnet.core import physics

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


def methods_for(models: Sequence[str | Path], device: str = "auto", with_prior: bool = True) -> dict:
    """Label → Dehazer (``None`` for the hazy input): the hazy input, the classic DCP, the
    untrained prior of the first model (its heads at zero: exactly its physics prior) and each model."""
    loaded = [api.load_model(m, device=device) for m in models]
    methods: dict[str, engine.Dehazer | None] = {
        HAZY: None, DCP: api.load_model(method="dcp", device=device)}
    if with_prior and loaded:
        net = loaded[0].model
        assert net is not None
        methods[PRIOR] = engine.Dehazer("clearnet", ClearNet(net.config), device=device)
    for m, d in zip(models, loaded, strict=True):
        label = f"ClearNet ({Path(str(m)).stem})"
        k = 2
        while label in methods:  # two models with one stem still get a column each
            label, k = f"ClearNet ({Path(str(m)).stem} #{k})", k + 1
        methods[label] = d
    return methods


def evaluate(
    pairs_dirs: str | Path | Sequence[str | Path],
    models: str | Path | Sequence[str | Path],
    *,
    split: str = "auto",
    ids_file: str | Path | None = None,
    out_dir: str | Path | None = None,
    n_grid: int = 4,
    device: str = "auto",
    with_prior: bool = True,
    splits_dir: str | Path = SPLITS_DIR,
    sky_protection: float | None = None,
    analysis: Analysis | None = None,
) -> dict[str, dict[str, tuple[float, float]]]:
    """Score each model, the untrained prior, the classic DCP and the hazy input on every
    split of every paired folder; write the report to ``out_dir``. ``sky_protection`` replaces
    ClearNet's default for the prior and the models (the classic DCP never has it).

    With an ``analysis`` (:class:`training.oracle.Analysis`, filled here) the report also has, per
    set, the PSNR of the prior and each model at their best fixed strength and at each image's best
    strength (and by haze density where the folder has ``params.csv``), the haze-free check on the
    clear images and the edge-band PSNR.

    Returns ``{row label: {method: (mean PSNR, mean SSIM)}}``.
    """
    folders = [pairs_dirs] if isinstance(pairs_dirs, str | Path) else list(pairs_dirs)
    model_list = [models] if isinstance(models, str | Path) else list(models)
    rows = paired_splits(folders, split, ids_file=ids_file, splits_dir=splits_dir)
    methods = methods_for(model_list, device, with_prior)
    table: dict[str, dict[str, tuple[float, float]]] = {}
    per_image: list[dict] = []
    grids: dict[str, list[list[np.ndarray]]] = {}
    for row in rows:
        pairs = load_pairs(find_pairs(row.folder, row.ids))
        table[row.label] = {}
        k = min(n_grid, len(pairs))
        cols = [[p.hazy for p in pairs[:k]]]
        masks = None
        if analysis is not None:
            analysis.add_row(row.label, row.folder, [p.id for p in pairs])
            masks = [edge_band_mask(p.gt) for p in pairs]
        for name, dehazer in methods.items():
            kw = {} if dehazer is None or dehazer.method == "dcp" else {"sky_protection": sky_protection}
            scores, outputs = score(dehazer, pairs, **kw)
            table[row.label][name] = mean_scores(scores)
            if analysis is not None:
                analysis.add(row.label, name, dehazer, pairs, outputs, masks,
                             sweep=dehazer is not None and dehazer.method == "clearnet", **kw)
            per_image += [{"set": row.set, "split": row.split, "method": name, **s} for s in scores]
            if dehazer is not None:
                cols.append(outputs[:k])
        cols.append([p.gt for p in pairs[:k]])
        grids[row.label] = cols
        table[row.label]["n"] = (float(len(pairs)), math.nan)
    if out_dir is not None:
        _write_report(Path(out_dir), table, per_image, grids, rows, model_list, analysis)
    return table


def _write_report(out: Path, table: dict, per_image: list[dict], grids: dict, rows: list[PairedSplit],
                  models: list, analysis: Analysis | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    extra = "" if analysis is None else (analysis.summary(table, HAZY, DCP, PRIOR)
                                         + analysis.markdown([r.label for r in rows], HAZY))
    write_text(out / "scores.md", markdown_table(table) + extra)
    record = {
        "models": [str(m) for m in models],
        "rows": [{"set": r.set, "split": r.split, "folder": str(r.folder),
                  "n_pairs": int(table[r.label]["n"][0]),
                  "mean": {m: {"psnr": p, "ssim": s} for m, (p, s) in table[r.label].items() if m != "n"}}
                 for r in rows],
    }
    if analysis is not None:
        record["analysis"] = analysis.record([r.label for r in rows], HAZY)
    # valid JSON: an identical pair's PSNR is infinite, written as null
    write_text(out / "scores.json", json_text(record, indent=2) + "\n")
    csv_file = out / "scores.csv"
    with atomic_path(csv_file, overwrite=True) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["set", "split", "id", "method", "psnr", "ssim"])
        for r in per_image:
            w.writerow([r["set"], r["split"], r["id"], r["method"],
                        f"{r['psnr']:.4f}" if math.isfinite(r["psnr"]) else "inf", f"{r['ssim']:.5f}"])
    for label, cols in grids.items():
        if not cols[0]:  # --grid 0: no comparison images
            continue
        name = "grid.png" if len(grids) == 1 else f"grid-{label.replace(' ', '-')}.png"
        io.write_image(out / name, make_grid(cols), overwrite=True)


def markdown_table(table: dict[str, dict[str, tuple[float, float]]]) -> str:
    """Rows: set and split (with its number of pairs); columns: methods; cells PSNR dB / SSIM."""
    methods = [m for m in next(iter(table.values())) if m != "n"]
    lines = ["Mean over images, PSNR (dB) / SSIM", "",
             "| set | split | pairs | " + " | ".join(methods) + " |",
             "|---|---|---:|" + "---|" * len(methods)]
    for label, cells in table.items():
        s, split = label.rsplit(" ", 1)
        vals = [f"{cells[m][0]:.2f} / {cells[m][1]:.3f}" for m in methods]
        lines.append(f"| {s} | {split} | {int(cells['n'][0])} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
