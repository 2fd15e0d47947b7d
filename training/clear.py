"""Unpaired clear photographs: what a haze-free scene looks like.

Hazy photos alone cannot tell the absolute haze amount: a bright wall and a veil of haze lift the
dark channel alike, and pseudo-pairs made from the prior's own dehazing (J0) only ever show
scenes whose dark channel is 0. Clear photos, hazed with a known transmission (and sometimes
left clear), teach the network what a scene's own dark channel looks like, so it can leave a
haze-free frame alone and remove the right amount where there is haze.

They are never the ground truth of an evaluation pair. ``builtin`` names the natural photos that
ship inside scikit-image (astronaut, chelsea, coffee) and scikit-learn (china, flower; the
``training`` extra installs it); the plugin's sample scene (stereo motorcycle) and the rocket
(the halo check) are kept out so that what the docs show was not trained on. Any folder of one's
own clear photos can be added (``--clear DIR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from napari_clearnet.core import physics

from .data import find_hazy_images, load_rgb, rgb01

__all__ = ["BUILTIN", "ClearCrops", "builtin_photos", "load_clear_photos"]

#: the keyword for the photos that ship inside scikit-image and scikit-learn
BUILTIN = "builtin"
_SKIMAGE = ("astronaut", "chelsea", "coffee")
_SKLEARN = ("china.jpg", "flower.jpg")


def builtin_photos() -> list[tuple[str, np.ndarray]]:
    """(name, RGB float32 in [0, 1]) of the clear photos scikit-image and scikit-learn ship."""
    from skimage import data

    out = [(f"skimage:{n}", rgb01(getattr(data, n)(), n)) for n in _SKIMAGE]
    try:
        from sklearn.datasets import load_sample_image
    except ImportError as exc:
        raise ValueError(
            "the builtin clear photos need scikit-learn (pip install -e '.[training]')"
        ) from exc
    out += [(f"sklearn:{n}", rgb01(load_sample_image(n), n)) for n in _SKLEARN]
    return out


def load_clear_photos(sources: Sequence[str | Path]) -> list[tuple[str, np.ndarray]]:
    """The clear photos of ``sources``: ``builtin`` and/or folders (read recursively)."""
    out: list[tuple[str, np.ndarray]] = []
    folders = []
    for s in sources:
        if str(s) == BUILTIN:
            out += builtin_photos()
        else:
            folders.append(s)
    if folders:
        out += [(str(p), load_rgb(p)) for p, _ in find_hazy_images(folders)]
    if not out and sources:
        raise ValueError(f"no clear photos found in {[str(s) for s in sources]}")
    return out


class ClearCrops:
    """Random square crops of the clear photos at ``size`` pixels, with the variation real
    cameras add: exposure (×0.6-1.1), gamma (0.8-1.25), white balance (±8 % per channel) and,
    with ``contrast`` (low, high), contrast scaled about the crop's mean, as flat lighting and
    cheap sensors give: unlike haze it does not lift the blacks towards the airlight.
    Every draw comes from the generator it is given, so a step's crops are reproducible."""

    def __init__(self, photos: Sequence[tuple[str, np.ndarray]], size: int,
                 crop_range: tuple[float, float] = (0.3, 1.0),
                 contrast: tuple[float, float] = (1.0, 1.0)) -> None:
        if not photos:
            raise ValueError("ClearCrops needs at least one photo")
        self.photos = [torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1)[None] for _, p in photos]
        self.names = [n for n, _ in photos]
        self.size = int(size)
        self.crop_range = crop_range
        self.contrast = contrast

    def __len__(self) -> int:
        return len(self.photos)

    def _u(self, g: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    def crop(self, g: torch.Generator) -> torch.Tensor:
        """One (3, size, size) crop in [0, 1]."""
        img = self.photos[int(torch.randint(len(self.photos), (1,), generator=g))]
        h, w = img.shape[-2:]
        short = min(h, w)
        side = max(8, min(short, round(short * float(self._u(g, *self.crop_range, 1)))))
        y = int(torch.randint(h - side + 1, (1,), generator=g))
        x = int(torch.randint(w - side + 1, (1,), generator=g))
        patch = img[..., y : y + side, x : x + side]
        if float(self._u(g, 0, 1, 1)) < 0.5:
            patch = patch.flip(-1)
        patch = physics.resize(patch, (self.size, self.size))[0].clamp(0.0, 1.0)
        gain = self._u(g, 0.6, 1.1, 1)
        gamma = torch.exp(self._u(g, -0.22, 0.22, 1))
        wb = 1.0 + self._u(g, -0.08, 0.08, 3).reshape(3, 1, 1)
        out = gain * wb * patch.pow(gamma)
        if self.contrast != (1.0, 1.0):
            c = self._u(g, *self.contrast, 1)
            mean = out.mean((1, 2), keepdim=True)
            out = mean + c * (out - mean)
        return out.clamp(0.0, 1.0)

    def batch(self, n: int, g: torch.Generator) -> torch.Tensor:
        """(n, 3, size, size) crops."""
        return torch.stack([self.crop(g) for _ in range(n)])
