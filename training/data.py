"""Training and evaluation data: RESIDE layouts, plain image folders, random crops, paired sets.

Unsupervised training only needs hazy photographs, so every layout reduces to "all images under
these folders, minus the ground-truth folders". Images are read lazily (one file per sample) so
a large set never has to fit in memory; unreadable files are skipped with a warning.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from napari_clearnet import io
from napari_clearnet.core import arrays, physics

from .config import TrainConfig

__all__ = [
    "GT_DIRS",
    "HazyCrops",
    "Pair",
    "StepSampler",
    "find_hazy_images",
    "find_pairs",
    "hazy_crops",
    "load_rgb",
    "read_ids_file",
    "split_train_val",
    "step_generator",
]

#: folders holding clear references in RESIDE (ITS/OTS ``clear``, SOTS/HSTS ``gt``/``GT``); never
#: used as hazy input
GT_DIRS = frozenset({"gt", "clear", "GT", "Clear", "clean", "original"})
SUFFIXES = frozenset(io.IMAGE_SUFFIXES)


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image as float32 (H, W, 3) in [0, 1]: grey is repeated, alpha dropped."""
    return rgb01(io.read_image(path), path)


def rgb01(image: np.ndarray, what: str | Path) -> np.ndarray:
    """An image array as float32 (H, W, 3) in [0, 1]: grey is repeated, alpha dropped; ``what``
    names it in the error."""
    arr = arrays.to_float01(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"cannot use {what}: shape {arr.shape} is not grey, RGB or RGBA")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")


def find_hazy_images(roots: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """All hazy images under ``roots``, recursively, as ``(path, key)`` sorted by key.

    Works for RESIDE ITS/OTS (``hazy/``), SOTS (``hazy/`` next to ``gt/``), HSTS
    (``synthetic/hazy``, ``real-world``), RTTS (``JPEGImages/``), URHI and any plain folder:
    folders named like ground truth (:data:`GT_DIRS`) are skipped. ``key`` is
    ``root-name/relative/path``, stable across machines, used for the train/validation split.
    """
    found: list[tuple[Path, str]] = []
    for root in roots:
        root = Path(root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data folder not found: {root}")
        if root.is_file():
            found.append((root, root.name))
            continue
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root)
            if any(part in GT_DIRS for part in rel.parts[:-1]) or not _is_image(p):
                continue
            found.append((p, f"{root.name}/{rel.as_posix()}"))
    if not found:
        raise FileNotFoundError(
            f"no images ({', '.join(sorted(SUFFIXES))}) found under {', '.join(map(str, roots))}"
        )
    return sorted(found, key=lambda pk: pk[1])


def split_train_val(
    items: Sequence[tuple[Path, str]], val_fraction: float = 0.3
) -> tuple[list[Path], list[Path]]:
    """Deterministic split by a hash of each key, so it does not depend on listing order or on
    which other files exist (adding images never moves old ones between the splits)."""
    train, val = [], []
    for path, key in items:
        h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") / 2**64
        (val if h < val_fraction else train).append(path)
    return train, val


class HazyCrops(Dataset):
    """Random crops of hazy photos at native resolution, reduced to the network's working size.

    Sample ``n`` is a pure function of ``(seed, n)``: the image (a fresh permutation per pass over
    the data), a square crop of 50–100 % of the short side, and a horizontal flip (never a
    vertical one: sky stays on top). The crop is brought to ``size``×``size`` with
    :func:`physics.resize`, the same antialiased resize the engine applies before the network.
    With ``engine_scale`` (the model's working size) the crop side is instead chosen so the
    network sees the region at the scale the engine would show it (±25 %), still within
    ``crop_range`` of the short side: the dark channel's 15-px patch then covers the same scene
    extent in training as in use, and small crops (``size`` < working size) make steps cheaper.
    Returns a (3, size, size) float32 tensor.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        size: int,
        seed: int = 0,
        crop_range: tuple[float, float] = (0.5, 1.0),
        flip: bool = True,
        engine_scale: int | None = None,
    ) -> None:
        if not paths:
            raise ValueError("HazyCrops needs at least one image")
        self.paths = list(paths)
        self.size = int(size)
        self.seed = int(seed)
        self.crop_range = crop_range
        self.flip = flip
        self.engine_scale = engine_scale
        self._bad: dict[int, str] = {}

    def __len__(self) -> int:  # nominal; samples are addressed by any non-negative integer
        return len(self.paths)

    def _image_index(self, n: int) -> int:
        k = len(self.paths)
        perm = np.random.default_rng([self.seed, n // k]).permutation(k)
        return int(perm[n % k])

    def __getitem__(self, n: int) -> torch.Tensor:
        idx = self._image_index(int(n))
        for attempt in range(len(self.paths)):
            i = (idx + attempt) % len(self.paths)
            if i in self._bad:
                continue
            try:
                img = load_rgb(self.paths[i])
            except (ValueError, OSError, MemoryError) as exc:  # read_image names every decoder failure
                self._bad[i] = str(exc) or f"{self.paths[i]}: not enough memory"
                warnings.warn(f"skipping unreadable training image: {exc}", stacklevel=2)
                continue
            return self.crop(img, np.random.default_rng([self.seed, int(n), 1]))
        first = next(iter(self._bad.values()), "")
        raise ValueError(
            f"none of the {len(self.paths)} training images can be read (first: {first}); check --data"
        )

    def crop(self, img: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        h, w = img.shape[:2]
        short = min(h, w)
        if self.engine_scale:
            # the region that, at the engine's reduction (long side -> working size), is
            # ``size`` pixels wide, ×0.8–1.25, kept within crop_range of the short side
            scale = min(1.0, self.engine_scale / max(h, w))
            side = self.size / scale * rng.uniform(0.8, 1.25)
            side = min(max(side, short * self.crop_range[0]), short * self.crop_range[1])
        else:
            side = short * rng.uniform(*self.crop_range)
        side = max(1, min(short, round(side)))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        patch = torch.from_numpy(np.ascontiguousarray(img[y : y + side, x : x + side]))
        patch = patch.permute(2, 0, 1)[None]
        if self.flip and rng.random() < 0.5:
            patch = patch.flip(-1)
        return physics.resize(patch, (self.size, self.size))[0].clamp(0.0, 1.0).contiguous()


class StepSampler(Sampler[list[int]]):
    """Batches of sample numbers for steps ``start``, ``start+1``, …: rank ``r`` of ``world``
    takes its own slice of each global batch (per-rank sharding, no overlap), and resuming at a
    step reproduces exactly the batches an uninterrupted run would have seen."""

    def __init__(self, batch_size: int, start_step: int, total_steps: int, rank: int = 0, world: int = 1):
        self.batch_size, self.start, self.total = batch_size, start_step, total_steps
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[int]]:
        b = self.batch_size
        for step in range(self.start, self.total):
            base = (step * self.world + self.rank) * b
            yield list(range(base, base + b))

    def __len__(self) -> int:
        return max(0, self.total - self.start)


def hazy_crops(cfg: TrainConfig, paths: list[Path], seed: int) -> HazyCrops:
    """The crops the config's data and model sections ask for (training and validation alike)."""
    ws = cfg.model.working_size
    return HazyCrops(
        paths, cfg.data.crop_size or ws, seed=seed, crop_range=cfg.data.crop_range,
        engine_scale=ws if cfg.data.match_engine_scale else None,
    )


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The random stream of one step on one rank (its pseudo haze): a pure function of
    ``(seed, step, rank)``, so a resumed run draws exactly what an uninterrupted one would."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, step, rank, 7]).generate_state(1)[0]))
    return g


@dataclass(frozen=True)
class Pair:
    """One hazy image and its clear reference."""

    id: str
    hazy: Path
    gt: Path


_PAIR_RE = re.compile(r"^(?P<id>[^_]+)_.*$")


def read_ids_file(path: str | Path) -> list[str]:
    """IDs one per line; blank lines and ``#`` comments are ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [s.split("#", 1)[0].strip() for s in lines if s.split("#", 1)[0].strip()]


def find_pairs(folder: str | Path, ids: Sequence[str] | None = None) -> list[Pair]:
    """Pairs of a folder in RESIDE naming: ``hazy/{id}_{k}.png`` or ``hazy/{id}_{A}_{beta}.png``
    (SOTS) with ``gt/{id}.png`` (or ``clear/``, ``GT/``). ``ids`` keeps only those IDs."""
    folder = Path(folder).expanduser()
    hazy_dir = folder / "hazy"
    gt_dir = next((folder / d for d in ("gt", "GT", "clear") if (folder / d).is_dir()), None)
    if not hazy_dir.is_dir() or gt_dir is None:
        raise FileNotFoundError(
            f"{folder} is not a paired folder: expected hazy/ and gt/ (RESIDE naming "
            "hazy/{id}_{k}.png -> gt/{id}.png)"
        )
    gts = {p.stem: p for p in gt_dir.iterdir() if _is_image(p)}
    keep = set(ids) if ids is not None else None
    pairs = []
    for p in sorted(hazy_dir.iterdir()):
        if not _is_image(p):
            continue
        m = _PAIR_RE.match(p.stem)
        pid = m.group("id") if m else p.stem
        if keep is not None and pid not in keep:
            continue
        if pid not in gts:
            warnings.warn(f"no ground truth for {p.name} in {gt_dir}; skipped", stacklevel=2)
            continue
        pairs.append(Pair(pid, p, gts[pid]))
    if keep is not None:
        missing = keep - {q.id for q in pairs}
        if missing:
            raise FileNotFoundError(f"IDs not found in {folder}: {sorted(missing)[:10]}")
    if not pairs:
        raise FileNotFoundError(f"no hazy/gt pairs found in {folder}")
    return pairs
