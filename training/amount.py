"""What predicts the haze amount: ``python -m training amount``.

Three questions, each answered on the same footing as ``evaluate --oracle-strength`` (the untrained
prior through the plugin's engine, at a *strength*: a multiple of its optical depth):

1. **Does a model fit its own training signal?** Pseudo-pairs made as training makes them (from
   the validation split of the hazy photos, and from the clear photos), binned by their target
   mean optical depth, separately for the two sources: the target, the model's and the prior's
   mean optical depth, and the error of each one's airlight.
2. **Does the amount the pseudo-pairs teach carry over to real pairs?** A regressor fitted on
   pseudo-pairs only (image statistics of the hazy crop → the strength that brings the prior's
   mean optical depth to the target's; crops of the *train* split) sets the prior's strength on
   every image of the paired sets: PSNR against the prior at strength 1 and at each image's best
   strength, and the haze-free check at the strength it gives the clear images.
3. **How far can image statistics go at all?** A diagnosis that reads the ground truth (never
   used for weights or settings): the per-image best strength predicted from the same statistics
   by a regressor fitted on the *other* sets (leave one set out), and within a set by k-fold.

The statistics are global (means, spreads and percentiles of the image, its dark channel and the
prior's depth, its gradients, the prior's airlight): what a per-image head can read. A question
answered "no" by a regressor fitted on thousands of pairs is not one more training steps will
answer "yes".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_clearnet._util.validate import json_text
from napari_clearnet.core import engine, physics
from napari_clearnet.core.model import ClearNet

from .checkpoints import load_checkpoint
from .clear import ClearCrops, load_clear_photos
from .config import TrainConfig
from .data import find_hazy_images, find_pairs, hazy_crops, split_train_val
from .evaluate import SPLITS_DIR, load_pairs, paired_splits
from .export import ema_model
from .losses import make_pseudo_pairs
from .oracle import PSNR_CAP, strength_sweep

__all__ = ["DEPTH_BINS", "FEATURE_NAMES", "STUDY_GRID", "image_features", "load_network", "study"]

#: strengths of the per-image curves (0: the input unchanged, for the haze-free check)
STUDY_GRID = (0.0, *[round(0.25 + 0.125 * i, 3) for i in range(19)])
#: bin edges of the pseudo-pairs' target mean optical depth (0.05: "haze-free")
DEPTH_BINS = (0.0, 0.05, 0.3, 0.7, 1.2, 1.8, math.inf)
FEATURE_NAMES = (
    "mean R", "mean G", "mean B", "mean t", "std R", "std G", "std B", "std t",
    "depth mean", "depth std", "depth p10", "depth p90",
    "luma p1", "luma p10", "luma p50", "luma p90", "luma p99", "sat p10", "sat p50", "sat p90",
    "dark p1", "dark p10", "dark p50", "dark p90", "grad x", "grad y", "near A", "depth slope",
    "A R", "A G", "A B",
)


def image_features(prior: ClearNet, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) working-size images → (B, 31) global statistics (``FEATURE_NAMES``): the 12 the
    network's per-image head is given, and the luma, saturation and normalised dark channel
    percentiles, mean gradients, the share of pixels within 0.08 of A, how the prior's depth grows
    towards the top, and the prior's A."""
    with torch.no_grad():
        x = x.float()
        _, t, a = prior.prior(x)
        t = t.clamp(prior.config.t_min, 1.0)
        depth = -torch.log(t)
        head = prior.image_stats(torch.cat([x, t], 1), depth)
        qs = torch.tensor([0.01, 0.1, 0.5, 0.9, 0.99])
        luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).flatten(1)
        hi, lo = x.amax(1), x.amin(1)
        sat = ((hi - lo) / hi.clamp(min=1e-3)).flatten(1)
        dark = lo.flatten(1) / a.mean(1, keepdim=True).clamp(min=1e-3)
        gx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean((1, 2, 3))
        gy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3))
        near_a = ((x - a[:, :, None, None]).abs().amax(1) < 0.08).float().mean((1, 2))
        rows = torch.linspace(-0.5, 0.5, x.shape[-2])[None]
        profile = depth.mean((1, 3))
        centred = profile - profile.mean(1, keepdim=True)
        slope = (centred * rows).mean(1) / rows.square().mean().clamp(min=1e-6)
        return torch.cat([
            head, torch.quantile(luma, qs, dim=1).T, torch.quantile(sat, qs[1:4], dim=1).T,
            torch.quantile(dark, qs[:4], dim=1).T, torch.stack([gx, gy, near_a, -slope], 1), a,
        ], 1).float()


def load_network(model: str | Path) -> tuple[ClearNet, str]:
    """A training checkpoint (``.pt``: its EMA weights), a ``.safetensors`` file or a registry name."""
    if str(model).endswith(".pt"):
        ck = load_checkpoint(model)
        return ema_model(ck), f"{Path(model).parent.name}/{Path(model).name} (step {ck['step']})"
    from napari_clearnet import weights

    return weights.load(model).net.eval(), str(model)


def _working(prior: ClearNet, image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()
    return physics.resize(x, prior.working_shape(*x.shape[-2:]))


def _pseudo(cfg: TrainConfig, prior: ClearNet, nets: dict[str, ClearNet], paths: Sequence[Path],
            clear: ClearCrops | None, batches: int, seed: int) -> dict[str, np.ndarray]:
    """Pseudo-pairs as training draws them (``batches`` × (batch size + clear batch)): features of
    each hazy crop, its target and the prior's mean optical depth (before the network's clamp),
    which source it came from, and each network's mean optical depth and airlight error."""
    data = hazy_crops(cfg, list(paths), seed)
    b = cfg.optim.batch_size
    cols: dict[str, list[np.ndarray]] = {}

    def add(k: str, v: torch.Tensor) -> None:
        cols.setdefault(k, []).append(v.detach().float().cpu().numpy())

    with torch.no_grad():
        for k in range(batches):
            batch = torch.stack([data[(k * b + i) % len(data)] for i in range(b)])
            gen = torch.Generator().manual_seed(seed * 100_003 + k)
            crops = None if clear is None else clear.batch(cfg.pseudo.clear_batch, gen)
            pairs = make_pseudo_pairs(prior.prior, batch, gen, clear=crops, **cfg.pseudo_pair_kwargs())
            features = image_features(prior, pairs.hazy)
            add("features", features)
            add("prior mean depth", features[:, FEATURE_NAMES.index("depth mean")])
            add("target", pairs.depth.mean((1, 2, 3)))
            add("exact", pairs.exact if pairs.exact is not None else torch.zeros(len(pairs.hazy)))
            for name, net in nets.items():
                out = net(pairs.hazy)
                add(f"{name} depth", (-torch.log(out["t"].float())).mean((1, 2, 3)))
                add(f"{name} A error", (out["airlight"].float() - pairs.airlight).abs().mean(1))
    return {k: np.concatenate(v) for k, v in cols.items()}


def _fit_table(fit: dict[str, np.ndarray], names: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for source, mask in (("real photos", fit["exact"] == 0), ("clear photos", fit["exact"] != 0)):
        for lo, hi in itertools.pairwise(DEPTH_BINS):
            m = mask & (fit["target"] >= lo) & (fit["target"] < hi)
            if not m.any():
                continue
            row: dict[str, Any] = {"source": source, "bin": f"[{lo:g}, {hi:g})", "n": int(m.sum()),
                                   "target": float(fit["target"][m].mean())}
            for n in names:
                row[n] = float(fit[f"{n} depth"][m].mean())
                row[f"{n} A error"] = float(fit[f"{n} A error"][m].mean())
            rows.append(row)
    return rows


def _regressor():
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=200, early_stopping=False, random_state=0)


def _at(curve: np.ndarray, strength: float, grid: np.ndarray) -> float:
    return float(np.interp(np.clip(strength, grid[0], grid[-1]), grid, curve))


def study(pairs_dirs: Sequence[str | Path], data: Sequence[str | Path], model: str | Path,
          cfg: TrainConfig, out_dir: str | Path | None = None, *, batches: int = 150, seed: int = 0,
          grid: Sequence[float] = STUDY_GRID, folds: int = 5, splits_dir: str | Path = SPLITS_DIR,
          ) -> dict[str, Any]:
    """Run the three parts (see the module docstring); write ``amount.md`` and ``amount.json`` to
    ``out_dir``. Returns the record (the json)."""
    if 1.0 not in grid or 0.0 not in grid:
        raise ValueError(f"the strength grid must hold 0 and 1, got {list(grid)}")
    torch.manual_seed(seed)
    net, label = load_network(model)
    prior = ClearNet(net.config).eval()
    items = find_hazy_images(data)
    train_paths, val_paths = split_train_val(items, cfg.data.val_fraction)
    if not train_paths or not val_paths:
        raise ValueError(f"{list(map(str, data))}: too few hazy images for a train and a validation split")
    clear = None
    if cfg.pseudo.clear_batch > 0:
        photos = load_clear_photos(cfg.data.clear)
        clear = ClearCrops(photos, cfg.data.crop_size or net.config.working_size, cfg.data.clear_crop_range,
                           cfg.data.clear_contrast)
    nets = {"model": net, "prior": prior}
    fit = _pseudo(cfg, prior, nets, val_paths, clear, max(1, batches // 4), seed + 1)
    teach = _pseudo(cfg, prior, {}, train_paths, clear, batches, seed)
    # the strength that brings the prior's mean optical depth to the target's
    target_strength = teach["target"] / np.maximum(teach["prior mean depth"], 1e-3)

    g = np.asarray(sorted({float(s) for s in grid}))
    dehazer = engine.Dehazer("clearnet", prior, device="cpu")
    images: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for row in paired_splits(pairs_dirs, "auto", splits_dir=splits_dir):
        for p in load_pairs(find_pairs(row.folder, row.ids)):
            f = image_features(prior, _working(prior, p.hazy))[0].numpy()
            with np.errstate(divide="ignore"):  # strength 0 on a clear image: identical, PSNR_CAP
                sw = strength_sweep(dehazer, p.hazy, p.gt, g)
            images.append({"kind": "hazy", "set": row.set, "split": row.split, "id": p.id, "features": f,
                           "curve": np.array([sw[s] for s in g])})
            if (row.set, p.id) not in seen:
                seen.add((row.set, p.id))
                f = image_features(prior, _working(prior, p.gt))[0].numpy()
                with np.errstate(divide="ignore"):
                    sw = strength_sweep(dehazer, p.gt, p.gt, g)
                images.append({"kind": "clear", "set": row.set, "split": row.split, "id": p.id, "features": f,
                               "curve": np.array([sw[s] for s in g])})
    hazy = [i for i in images if i["kind"] == "hazy"]
    clear_imgs = [i for i in images if i["kind"] == "clear"]
    if not hazy:
        raise ValueError(f"no pairs in {list(map(str, pairs_dirs))}")

    reg = _regressor().fit(teach["features"], np.clip(target_strength, 0.0, g[-1]))
    carried = reg.predict(np.stack([i["features"] for i in images]))
    for i, s in zip(images, carried, strict=True):
        i["pseudo strength"] = float(max(s, 0.0))

    x = np.stack([i["features"] for i in hazy])
    best = np.array([g[int(np.argmax(i["curve"]))] for i in hazy])
    sets = np.array([i["set"] for i in hazy])
    lo_set = np.full(len(hazy), np.nan)
    if len(set(sets)) > 1:
        for s in sorted(set(sets)):
            m = sets == s
            lo_set[m] = _regressor().fit(x[~m], best[~m]).predict(x[m])
    kfold = np.full(len(hazy), np.nan)
    for s in sorted(set(sets)):
        idx = np.flatnonzero(sets == s)
        if len(idx) < 2 * folds:
            continue
        for k in range(folds):
            test = idx[k::folds]
            train = np.setdiff1d(idx, test)
            kfold[test] = _regressor().fit(x[train], best[train]).predict(x[test])

    table = []
    for key in dict.fromkeys((i["set"], i["split"]) for i in hazy):
        m = [j for j, i in enumerate(hazy) if (i["set"], i["split"]) == key]
        c = [hazy[j]["curve"] for j in m]
        taught = np.array([hazy[j]["pseudo strength"] for j in m])
        row = {"set": key[0], "split": key[1], "n": len(m),
               "prior": float(np.mean([_at(v, 1.0, g) for v in c])),
               "pseudo-taught": _mean_at(c, taught, g),
               "leave-set-out": _mean_at(c, lo_set[m], g),
               "k-fold": _mean_at(c, kfold[m], g),
               "best": float(np.mean([v.max() for v in c])),
               "median best strength": float(np.median(best[m])),
               "median pseudo-taught strength": float(np.median(taught))}
        table.append(row)
    hf = {
        "prior": [_at(i["curve"], 1.0, g) for i in clear_imgs],
        "pseudo-taught": [_at(i["curve"], i["pseudo strength"], g) for i in clear_imgs],
    }
    record = {
        "model": label, "config": cfg.to_dict(), "data": [str(d) for d in data],
        "pairs": [str(p) for p in pairs_dirs], "grid": g.tolist(),
        "pseudo_pairs": {"fit": len(fit["target"]), "teach": len(teach["target"])},
        "fit": _fit_table(fit, ["model", "prior"]), "carry_over": table,
        "haze_free": {k: {"median": float(np.median(v)), "p10": float(np.quantile(v, 0.1)), "n": len(v)}
                      for k, v in hf.items() if v},
        "images": [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in i.items()
                    if k != "features"} for i in images],
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "amount.json").write_text(json_text(record, indent=1) + "\n", encoding="utf-8")
        (out / "amount.md").write_text(markdown(record), encoding="utf-8")
    return record


def _mean_at(curves: Sequence[np.ndarray], strengths: np.ndarray, g: np.ndarray) -> float | None:
    if np.isnan(strengths).any():
        return None
    return float(np.mean([_at(c, s, g) for c, s in zip(curves, strengths, strict=True)]))


def markdown(record: dict[str, Any]) -> str:
    """The report: the three tables of the module docstring."""
    f = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"# What predicts the haze amount ({record['model']})", "",
             f"## 1. The pseudo-pairs' fit ({record['pseudo_pairs']['fit']} pairs from the validation split)",
             "", "mean optical depth −ln t; |A error| mean over channels", "",
             "| source | target depth | n | target | model | prior | model A error | prior A error |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in record["fit"]:
        lines.append(f"| {r['source']} | {r['bin']} | {r['n']} | {r['target']:.3f} | {r['model']:.3f} | "
                     f"{r['prior']:.3f} | {r['model A error']:.3f} | {r['prior A error']:.3f} |")
    lines += ["", f"## 2–3. The prior's strength set by regressors ({record['pseudo_pairs']['teach']} "
              "pseudo-pairs teach one)", "",
              "PSNR dB through the engine. *pseudo-taught*: a regressor fitted on pseudo-pairs only; "
              "*leave-set-out* and *k-fold*: fitted on the ground truth's best strengths of the other "
              "sets / other folds of the same set (a diagnosis, never used for weights).", "",
              "| set | split | n | prior (1) | pseudo-taught | leave-set-out | k-fold | per-image best | "
              "median best strength | median pseudo-taught strength |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["carry_over"]:
        lines.append(f"| {r['set']} | {r['split']} | {r['n']} | {f(r['prior'])} | {f(r['pseudo-taught'])} | "
                     f"{f(r['leave-set-out'])} | {f(r['k-fold'])} | {f(r['best'])} | "
                     f"{r['median best strength']:.2f} | {r['median pseudo-taught strength']:.2f} |")
    hf = record["haze_free"]
    if hf:
        lines += ["", "Haze-free check (clear images, PSNR to themselves, median / 10 %; "
                  f"identical = {PSNR_CAP:g}): " + "; ".join(
                      f"{k} {v['median']:.2f} / {v['p10']:.2f}" for k, v in hf.items())]
    return "\n".join(lines) + "\n"
