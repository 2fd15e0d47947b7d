"""Validation during training: the measures that choose ``best.pt`` and the image grid
TensorBoard shows, computed on data no training step sees.

Kept apart from the training loop because it is the one place that decides what "better"
means (paired PSNR/SSIM through the real engine, else the pseudo-pair loss on held-out crops).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from napari_clearnet.core import engine, physics
from napari_clearnet.core.model import ClearNet

from .config import TrainConfig
from .data import find_pairs, hazy_crops, step_generator
from .evaluate import SPLITS_DIR, LoadedPair, load_pairs, mean_scores, paired_splits, score
from .losses import make_pseudo_pairs, pseudo_pair_losses
from .oracle import haze_free_psnr

__all__ = ["HAZE_FREE_PENALTY", "HAZE_FREE_TARGET", "Validator", "load_val_pairs"]

#: a haze-free frame must come back nearly unchanged: the median PSNR of the validation pairs'
#: clear images, dehazed, to themselves should reach this (dB) ...
HAZE_FREE_TARGET = 30.0
#: ... and each dB it falls short costs this much of the mean validation PSNR when choosing best.pt
HAZE_FREE_PENALTY = 0.25


def load_val_pairs(
    folders: list[str] | str | None, ids_file: str | None = None, splits_dir: str | Path | None = None
) -> dict[str, list[LoadedPair]]:
    """The validation pairs of each paired folder: its committed ``val`` split
    (``training/splits/<name>-val.txt``), or all its pairs when no split is committed, or the IDs
    of ``ids_file`` (one folder only). Held-out IDs are never loaded here."""
    if not folders:
        return {}
    folders = [folders] if isinstance(folders, str | Path) else list(folders)
    if ids_file is not None:
        rows = paired_splits(folders, ids_file=ids_file)
    else:
        where = SPLITS_DIR if splits_dir is None else splits_dir
        rows = [r for r in paired_splits(folders, "auto", splits_dir=where) if r.split in ("val", "all")]
    return {r.set: load_pairs(find_pairs(r.folder, r.ids)) for r in rows}


class Validator:
    """Both validation measures: the pseudo-pair loss on fixed crops of the held-out 30 % of the
    hazy photos (unsupervised), and PSNR/SSIM on paired validation sets through the real engine.
    With several paired sets the measure is the mean over sets of each set's mean, so a set of
    real haze weighs as much as a larger synthetic one."""

    def __init__(
        self, cfg: TrainConfig, val_paths: list[Path], pairs: dict[str, list[LoadedPair]] | None,
        device: torch.device, seed: int,
    ) -> None:
        self.cfg, self.device, self.pairs = cfg, device, pairs
        self.crops: torch.Tensor | None = None
        if val_paths:
            ds = hazy_crops(cfg, val_paths, seed + 1)
            self.crops = torch.stack([ds[i] for i in range(cfg.data.val_crops)])
            gen = step_generator(seed, 10**9, 0)  # a stream no training step uses
            prior = ClearNet(cfg.model).prior
            self.pseudo = make_pseudo_pairs(prior, self.crops, gen, **cfg.pseudo_pair_kwargs())

    @torch.no_grad()
    def __call__(self, model: ClearNet) -> dict[str, float]:
        model.eval()
        out: dict[str, float] = {}
        if self.crops is not None:
            terms = {"pseudo_depth": 0.0, "pseudo_airlight": 0.0}
            for i in range(0, len(self.crops), 8):
                sl = slice(i, i + 8)
                part = copy.copy(self.pseudo)
                part.hazy, part.depth = self.pseudo.hazy[sl], self.pseudo.depth[sl]
                part.airlight = self.pseudo.airlight[sl]
                pred = model(part.hazy.to(self.device))
                for k, v in pseudo_pair_losses(pred["t"].cpu(), pred["airlight"].cpu(), part).items():
                    terms[k] += float(v) * len(part.hazy) / len(self.crops)
            out["val/pseudo_depth"] = terms["pseudo_depth"]
            out["val/pseudo_airlight"] = terms["pseudo_airlight"]
            out["val/pseudo_total"] = terms["pseudo_depth"] + terms["pseudo_airlight"]
        if self.pairs:
            dehazer = engine.Dehazer("clearnet", model, device=self.device, half=False)
            for name, pairs in self.pairs.items():
                rows, _ = score(dehazer, pairs)
                out[f"val/psnr/{name}"], out[f"val/ssim/{name}"] = mean_scores(rows)
            out["val/psnr"] = float(np.mean([out[f"val/psnr/{n}"] for n in self.pairs]))
            out["val/ssim"] = float(np.mean([out[f"val/ssim/{n}"] for n in self.pairs]))
            clear = [haze_free_psnr(dehazer, p.gt) for pairs in self.pairs.values() for p in pairs]
            out["val/haze_free"] = float(np.median(clear))
        return out

    @property
    def has_signal(self) -> bool:
        return self.crops is not None or bool(self.pairs)

    def measure(self, scores: dict[str, float]) -> tuple[float | None, str]:
        """Higher is better. PSNR on the paired split when there is one (it measures the clear
        image users get); otherwise minus the pseudo-pair loss (the only label-free signal that
        penalises both doing nothing and over-dehazing). ``None`` when there is nothing to
        measure: then the last step is selected (never the untrained prior for ever)."""
        if "val/psnr" in scores:
            why = (f"val/psnr (mean over the validation splits of {', '.join(self.pairs or [])}) − "
                   f"{HAZE_FREE_PENALTY:g} × dB the haze-free median falls short of {HAZE_FREE_TARGET:g} dB")
            short = max(0.0, HAZE_FREE_TARGET - scores.get("val/haze_free", HAZE_FREE_TARGET))
            return scores["val/psnr"] + 1e-3 * scores["val/ssim"] - HAZE_FREE_PENALTY * short, why
        if "val/pseudo_total" in scores:
            return -scores["val/pseudo_total"], "-val/pseudo_total (pseudo-pair loss)"
        return None, "last step (no validation images or pairs to select by)"

    @torch.no_grad()
    def image_grid(self, model: ClearNet, n: int = 4) -> torch.Tensor | None:
        """(3, H, W) rows of hazy | dehazed | t | A swatch for TensorBoard."""
        if self.crops is None:
            return None
        x = self.crops[:n].to(self.device)
        pred = model(x)
        j = physics.recover(x, pred["t"], pred["airlight"], model.config.t0)
        t = pred["t"].expand(-1, 3, -1, -1)
        a = pred["airlight"].reshape(-1, 3, 1, 1).expand_as(x)
        rows = [torch.cat([x[i], j[i], t[i], a[i]], -1) for i in range(len(x))]
        return torch.cat(rows, -2).clamp(0, 1).cpu()
