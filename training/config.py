"""Training configuration: one YAML file, validated into dataclasses.

Every value is checked before anything is built, by one mechanism
(:func:`napari_clearnet._util.validate.check_config`): unknown keys are errors (a typo never silently
falls back to a default), types come from the dataclass annotations, ranges from the tables
below. A bad file gives a one-line ``ValueError`` naming ``section.key``. Values can each be in
range while their product is not: :func:`check_memory` estimates what a step needs and refuses a
recipe this machine cannot hold, with the number and the limit.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from napari_clearnet._util.validate import MODEL_RANGES, check_config, check_number
from napari_clearnet.core.model import ClearNetConfig

from .losses import DEPTH_SOURCES, LossWeights

__all__ = ["DataSettings", "OptimSettings", "PseudoSettings", "TrainConfig", "load_config"]


#: allowed ranges per section (intervals; for lists, of each item); types come from the annotations
RANGES: dict[str, dict[str, str]] = {
    "model": MODEL_RANGES,
    "loss": {
        "pseudo_depth": "[0, inf)", "pseudo_airlight": "[0, inf)", "level": "[0, inf)",
        "dark_channel": "[0, inf)", "color_constancy": "[0, inf)", "tv": "[0, inf)", "exposure": "[0, inf)",
        "dark_patch": "[1, 255]", "exposure_floor": "[0, 1]", "level_target": "[0.05, 20]",
        "depth_relative": "[0, inf)", "pseudo_image": "[0, inf)",
    },
    "pseudo": {"t_mean_range": "(0, 1]", "grey_range": "[0, 1]", "tint": "[0, 1]", "j0_omega": "(0, 1]",
               "warm_tint": "[0, 1]", "depth_mix": "[0, inf)", "clear_batch": "[0, 100000]",
               "clear_none": "[0, 1]", "clear_t_mean_range": "(0, 1]", "clear_depth_mix": "[0, inf)"},
    "data": {"val_fraction": "[0, 1)", "crop_range": "(0, 1]", "crop_size": "[8, 8192]",
             "num_workers": "[0, 256]", "val_crops": "[1, 100000]", "clear_crop_range": "(0, 1]",
             "clear_contrast": "(0, 2]"},
    "optim": {
        "batch_size": "[1, 100000]", "max_steps": "[1, inf)", "lr": "(0, inf)", "head_lr_factor": "[0, inf)",
        "min_lr_factor": "[0, 1]", "warmup_steps": "[0, inf)", "weight_decay": "[0, inf)",
        "grad_clip": "(0, inf)",
        "ema_decay": "[0, 1)", "log_every": "[1, inf)", "val_every": "[1, inf)", "ckpt_every": "[1, inf)",
        "images_every": "[0, inf)", "seed": "[0, 4294967295]",
    },
}
#: (low, high) pairs that must be in order
ORDERED = {"pseudo": ("t_mean_range", "grey_range", "clear_t_mean_range"),
           "data": ("crop_range", "clear_crop_range", "clear_contrast")}


def _build(cls, data: Any, section: str):
    data = check_config(cls, {} if data is None else data, section, RANGES.get(section))
    for key in ORDERED.get(section, ()):
        if key in data and data[key][0] > data[key][1]:
            raise ValueError(f"{section}.{key} must be (low, high) with low <= high, got {list(data[key])}")
    try:
        return cls(**data)
    except ValueError as exc:  # a settings class's own check names its field bare: add the section
        field_name = re.match(r"\w+", str(exc))
        if field_name and field_name.group() in {f.name for f in dataclasses.fields(cls)}:
            raise ValueError(f"{section}.{exc}") from None
        raise


@dataclass
class PseudoSettings:
    """How re-hazed pseudo-pairs are drawn (see :func:`training.losses.make_pseudo_pairs`)."""

    t_mean_range: tuple[float, float] = (0.25, 0.9)
    grey_range: tuple[float, float] = (0.6, 1.0)
    tint: float = 0.05
    #: ω of the dehazing that makes J0 (None: the model prior's own ω); see make_pseudo_pairs
    j0_omega: float | None = None
    #: weights of the relative-depth sources (None: the prior's depth only); see make_pseudo_pairs
    depth_mix: dict[str, float] | None = None
    #: ± warm/cool shift of A′ (red against blue)
    warm_tint: float = 0.0
    #: crops of unpaired clear photos (``data.clear``) added to each step, hazed with a known t′
    clear_batch: int = 0
    #: share of those left haze-free (t′ = 1): what "no haze" looks like
    clear_none: float = 0.0
    #: mean t′ of the hazed clear crops
    clear_t_mean_range: tuple[float, float] = (0.1, 1.0)
    #: depth sources of the clear crops (None: uniform); see make_pseudo_pairs
    clear_depth_mix: dict[str, float] | None = None
    #: self-training: a trained model (weights file or registry name) whose own dehazing makes J0
    #: instead of the prior's (``train --teacher`` overrides); see training/teacher.py
    j0_teacher: str | None = None

    def __post_init__(self) -> None:
        if self.depth_mix is not None:
            unknown = sorted(set(self.depth_mix) - set(DEPTH_SOURCES))
            if unknown or not any(v > 0 for v in self.depth_mix.values()):
                raise ValueError(f"pseudo.depth_mix needs weights (>= 0, one > 0) of {list(DEPTH_SOURCES)}, "
                                 f"got {dict(self.depth_mix)}")


@dataclass
class DataSettings:
    val_fraction: float = 0.3
    crop_range: tuple[float, float] = (0.5, 1.0)
    #: side of the training crops at working resolution (None: the model's working size)
    crop_size: int | None = None
    #: crop at the scale the engine shows the image (see training.data.HazyCrops)
    match_engine_scale: bool = False
    num_workers: int = 0
    val_crops: int = 16  # fixed validation crops for the pseudo-pair validation loss
    #: unpaired clear photos: ``builtin`` (scikit-image's and scikit-learn's) and/or folders;
    #: ``train --clear`` adds folders (see training/clear.py)
    clear: tuple[str, ...] = ()
    #: crop side of the clear photos, as a fraction of their short side
    clear_crop_range: tuple[float, float] = (0.3, 1.0)
    #: contrast of the clear crops scaled about their mean by a factor in this range (flat light)
    clear_contrast: tuple[float, float] = (1.0, 1.0)


@dataclass
class OptimSettings:
    batch_size: int = 8
    max_steps: int = 600
    lr: float = 3e-4
    #: LR multiplier of the per-image global head: it learns a few numbers from pooled features
    #: and needs larger steps than the convolutions (see docs/training.md)
    head_lr_factor: float = 1.0
    #: train the per-pixel depth correction too (False keeps it at zero: only the per-image haze
    #: amount and airlight are learned)
    train_residual: bool = True
    min_lr_factor: float = 0.05  # cosine decays to lr × this
    warmup_steps: int = 20
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    log_every: int = 10
    val_every: int = 100
    ckpt_every: int = 100
    images_every: int = 0  # TensorBoard image grids (0: at validation only)
    seed: int = 0


@dataclass
class TrainConfig:
    model: ClearNetConfig = field(default_factory=ClearNetConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    pseudo: PseudoSettings = field(default_factory=PseudoSettings)
    data: DataSettings = field(default_factory=DataSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(
                f"expected a mapping of sections (model, loss, pseudo, data, optim) at the top level, "
                f"got a {type(data).__name__}"
            )
        unknown = set(data) - {"model", "loss", "pseudo", "data", "optim"}
        if unknown:
            raise ValueError(
                f"unknown config sections {sorted(map(str, unknown))}; "
                "known: model, loss, pseudo, data, optim"
            )
        cfg = cls(
            model=_build(ClearNetConfig, data.get("model"), "model"),
            loss=_build(LossWeights, data.get("loss"), "loss"),
            pseudo=_build(PseudoSettings, data.get("pseudo"), "pseudo"),
            data=_build(DataSettings, data.get("data"), "data"),
            optim=_build(OptimSettings, data.get("optim"), "optim"),
        )
        check_memory(cfg)
        return cfg

    @property
    def j0_gain(self) -> float:
        """Haze removed for J0 relative to the prior's estimate (``pseudo.j0_omega / prior ω``);
        1 with a teacher, whose estimate is taken as it is."""
        if self.pseudo.j0_omega is None or self.pseudo.j0_teacher:
            return 1.0
        return self.pseudo.j0_omega / self.model.prior.omega

    def pseudo_pair_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``make_pseudo_pairs`` this recipe asks for (training and
        validation draw their pairs the same way)."""
        p = self.pseudo
        return {"t_min": self.model.t_min, "t0": self.model.t0, "t_mean_range": p.t_mean_range,
                "grey_range": p.grey_range, "tint": p.tint, "j0_gain": self.j0_gain,
                "depth_mix": p.depth_mix, "warm_tint": p.warm_tint, "clear_none": p.clear_none,
                "clear_depth_mix": p.clear_depth_mix, "clear_t_mean_range": p.clear_t_mean_range}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "loss": self.loss.to_dict(),
            "pseudo": asdict(self.pseudo),
            "data": asdict(self.data),
            "optim": asdict(self.optim),
        }


#: bytes per crop pixel besides the network's activations: the crop, its pseudo pair, targets, losses
PIXEL_BYTES = 64
#: float32 values autograd keeps per pixel and channel of each level (two convolutions and their
#: activations down, the same plus the gate and the concatenation up)
ACTIVATIONS_PER_CHANNEL = 10
#: float32 copies of every parameter: the weights, their gradients, Adam's two moments, the EMA
PARAMETER_COPIES = 5


def estimate_memory(cfg: TrainConfig) -> int:
    """Bytes one training step needs at least (a lower bound: parameters × their copies, plus
    crops × batch × the activations of every level), computed from the config alone."""
    import torch

    from napari_clearnet.core.model import ClearNet

    with torch.device("meta"):  # shapes only: nothing is allocated
        n_params = sum(p.numel() for p in ClearNet(cfg.model).parameters())
    side = cfg.data.crop_size or cfg.model.working_size
    per_pixel = PIXEL_BYTES + 4 * ACTIVATIONS_PER_CHANNEL * sum(
        w / 4**i for i, w in enumerate(cfg.model.widths))
    return int(n_params * 4 * PARAMETER_COPIES + cfg.optim.batch_size * side * side * per_pixel)


def memory_available() -> int:
    """The most memory this machine can give training: the RAM available now or the largest
    GPU's (``$CLEARNET_MEMORY_LIMIT`` overrides it)."""
    import os

    import torch

    from napari_clearnet.core.limits import MEMORY_ENV, memory_limit

    limit = memory_limit()
    if torch.cuda.is_available() and not os.environ.get(MEMORY_ENV):
        limit = max([limit] + [torch.cuda.get_device_properties(i).total_memory
                               for i in range(torch.cuda.device_count())])
    return limit


def check_memory(cfg: TrainConfig) -> None:
    """Refuse a recipe whose widths, crops and batch multiply past this machine's memory (each
    value can be in range while their product is not), naming the number and the limit."""
    from napari_clearnet.core.limits import fmt_bytes

    need, limit = estimate_memory(cfg), memory_available()
    if need > limit:
        side = cfg.data.crop_size or cfg.model.working_size
        raise ValueError(
            f"this recipe needs at least {fmt_bytes(need)} (model.widths {list(cfg.model.widths)}, "
            f"optim.batch_size {cfg.optim.batch_size} crops of {side}×{side}), more than the "
            f"{fmt_bytes(limit)} this machine has available; lower optim.batch_size, data.crop_size or "
            "model.widths"
        )


def seed_option(text: str) -> int:
    """``--seed``: an integer in the range optim.seed accepts (for argparse)."""
    import argparse

    try:
        return int(check_number(int(text), "--seed", RANGES["optim"]["seed"], integer=True))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML training config; missing keys take the defaults above."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path} (see training/configs/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the config ({exc})") from None
    if data is None:  # G24: an empty file is not a request for the full default recipe
        raise ValueError(f"{path} is empty; write the settings to change, or {{}} to train the default "
                         "recipe on purpose (see training/configs/)")
    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
