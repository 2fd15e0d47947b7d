"""Training configuration: one YAML file, validated into dataclasses (unknown keys are errors, so a
typo never silently falls back to a default)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from napari_clearnet.model import ClearNetConfig, check_keys

from .losses import LossWeights

__all__ = ["DataSettings", "OptimSettings", "PseudoSettings", "TrainConfig", "load_config"]


def _build(cls, data: dict | None, section: str):
    data = dict(data or {})
    check_keys(cls, data, f"keys in '{section}':")
    for f in fields(cls):
        if f.name in data and isinstance(data[f.name], list):
            data[f.name] = tuple(data[f.name])
    return cls(**data)


@dataclass
class PseudoSettings:
    """How re-hazed pseudo-pairs are drawn (see :func:`training.losses.make_pseudo_pairs`)."""

    t_mean_range: tuple[float, float] = (0.25, 0.9)
    grey_range: tuple[float, float] = (0.6, 1.0)
    tint: float = 0.05
    #: ω of the dehazing that makes J0 (None: the model prior's own ω); see make_pseudo_pairs
    j0_omega: float | None = None


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
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data or {})
        unknown = set(data) - {"model", "loss", "pseudo", "data", "optim"}
        if unknown:
            raise ValueError(
                f"unknown config sections {sorted(unknown)}; known: model, loss, pseudo, data, optim"
            )
        return cls(
            model=ClearNetConfig.from_dict(dict(data.get("model") or {})),
            loss=LossWeights.from_dict(dict(data.get("loss") or {})),
            pseudo=_build(PseudoSettings, data.get("pseudo"), "pseudo"),
            data=_build(DataSettings, data.get("data"), "data"),
            optim=_build(OptimSettings, data.get("optim"), "optim"),
        )

    @property
    def j0_gain(self) -> float:
        """Haze removed for J0 relative to the prior's estimate (``pseudo.j0_omega / prior ω``)."""
        if self.pseudo.j0_omega is None:
            return 1.0
        return self.pseudo.j0_omega / self.model.prior.omega

    def pseudo_pair_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``make_pseudo_pairs`` this recipe asks for (training and
        validation draw their pairs the same way)."""
        p = self.pseudo
        return {"t_min": self.model.t_min, "t0": self.model.t0, "t_mean_range": p.t_mean_range,
                "grey_range": p.grey_range, "tint": p.tint, "j0_gain": self.j0_gain}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "loss": self.loss.to_dict(),
            "pseudo": asdict(self.pseudo),
            "data": asdict(self.data),
            "optim": asdict(self.optim),
        }


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML training config; missing keys take the defaults above."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path} (see training/configs/)")
    try:
        return TrainConfig.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
