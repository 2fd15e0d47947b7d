"""``python -m training smoke``: the whole training pipeline in about a minute, on data it makes.

Clear photos that ship inside scikit-image are hazed with the scattering model
I = J·t + A·(1 − t) (depth growing towards the top of the frame, with a smooth random field, at
three haze densities), written as a folder of hazy images (what ``train --data`` reads) and a
paired folder ``hazy/{id}_{k}.png`` + ``gt/{id}.png`` (what ``--val-pairs`` and ``evaluate``
read). Then the tiny recipe trains for a few steps on the CPU, the best checkpoint is exported
and scored. It checks that an installation can train; the weights it makes are not useful.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PHOTOS", "make_data", "smoke"]

#: scikit-image's colour photos used (the docs' sample scene, the stereo motorcycle, is kept out)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
#: mean transmissions of the hazed copies: light, medium and dense haze
T_MEANS = (0.75, 0.55, 0.35)
TINY = Path(__file__).resolve().parent / "configs" / "tiny.yaml"


def _photo(name: str, width: int) -> np.ndarray:
    from skimage import data, transform

    img = getattr(data, name)()[..., :3].astype(np.float32) / 255.0
    h = round(img.shape[0] * width / img.shape[1])
    return transform.resize(img, (h, width), anti_aliasing=True).astype(np.float32)


def _transmission(h: int, w: int, t_mean: float, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    depth = np.linspace(1.6, 0.4, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), max(h, w) / 8)
    depth = depth * np.exp(0.6 * field / (field.std() + 1e-6))
    depth /= depth.mean()
    return np.exp(np.log(t_mean) * depth).astype(np.float32)  # mean optical depth −ln(t_mean)


def make_data(folder: str | Path, width: int = 160, seed: int = 0) -> dict[str, Path]:
    """Write ``folder/hazy`` (hazy images for ``--data``) and ``folder/pairs`` (hazy/ + gt/ for
    ``--val-pairs`` and ``evaluate``); returns both paths."""
    from napari_clearnet.io import write_image

    folder = Path(folder)
    hazy_dir, pairs = folder / "hazy", folder / "pairs"
    rng = np.random.default_rng(seed)
    for i, name in enumerate(PHOTOS, start=1):
        clear = _photo(name, width)
        h, w = clear.shape[:2]
        write_image(pairs / "gt" / f"{i}.png", clear, overwrite=True)
        for k, t_mean in enumerate(T_MEANS, start=1):
            t = _transmission(h, w, t_mean, rng)[..., None]
            airlight = np.array([0.82, 0.84, 0.88], np.float32) * rng.uniform(0.9, 1.05)
            hazy = clear * t + airlight * (1 - t)
            write_image(hazy_dir / f"{name}_{k}.png", hazy, overwrite=True)
            if k == 2:  # one density per pair: the validation set stays small
                write_image(pairs / "hazy" / f"{i}_{k}.png", hazy, overwrite=True)
    return {"hazy": hazy_dir, "pairs": pairs}


def smoke(out: str | Path, *, steps: int = 4, overwrite: bool = False, data_only: bool = False,
          log: Any = print) -> dict[str, Any]:
    """Make the data under ``out/data``, train (``out/run``), export (``out/hub``) and evaluate
    (``out/eval``); returns paths and the evaluation table."""
    from .config import load_config
    from .evaluate import evaluate, markdown_table
    from .export import export
    from .train import TrainOptions, train

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty: pass --overwrite to replace it, or another --out")
        shutil.rmtree(out)
    start = time.perf_counter()
    data = make_data(out / "data")
    log(f"data: {len(list(data['hazy'].iterdir()))} hazy images in {data['hazy']}, "
        f"{len(list((data['pairs'] / 'gt').iterdir()))} pairs in {data['pairs']}")
    if data_only:
        return {"data": data}
    train(load_config(TINY), TrainOptions(
        data=[str(data["hazy"])], out=str(out / "run"), max_steps=steps, device="cpu",
        val_pairs=[str(data["pairs"])], progress=False))
    export(out / "run" / "best.pt", out / "hub", name="clearnet-smoke")
    weights = out / "hub" / "clearnet-smoke.safetensors"
    table = evaluate([data["pairs"]], [str(weights)], out_dir=out / "eval", device="cpu")
    log(markdown_table(table), end="")
    log(f"smoke run done in {time.perf_counter() - start:.0f} s: {out}/run (checkpoints, run.json), "
        f"{weights}, {out}/eval (scores)")
    return {"data": data, "weights": weights, "table": table}

