"""Training checkpoints on disk: what a run folder holds, writing a checkpoint so that an
interrupt never leaves a partial one, and reading one back with a one-line error for anything
that is not a checkpoint of this version.

Kept apart from the training loop so that export (and anyone reading a run) can load a
checkpoint without importing the loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from napari_clearnet._util.files import atomic_path

__all__ = ["CHECKPOINT_KEYS", "RUN_FILES", "atomic_save", "load_checkpoint"]

#: what a run folder holds (``--overwrite`` removes these and nothing else)
RUN_FILES = ("best.pt", "last.pt", "best.json", "run.json", "tensorboard")
#: keys every training checkpoint has
CHECKPOINT_KEYS = ("step", "model", "ema", "optimizer", "scheduler", "scaler", "model_config", "train_config")


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through the package's one atomic writer: an interrupt (Ctrl-C, SIGTERM)
    leaves no partial checkpoint behind, and a checkpoint is replaced only once the new one is whole."""
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``last.pt``/``best.pt``, or a run folder → ``last.pt``).

    Checkpoints are our own files and hold optimiser state and RNG states, hence ``weights_only``
    is off; never load checkpoints from untrusted sources (export to safetensors to share).
    Anything else (exported weights, a truncated or foreign file) is a one-line ``ValueError``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) > 9 and head[8:9] == b"{":  # a safetensors header
        raise ValueError(
            f"{path} holds exported weights (safetensors), not a training checkpoint; --resume and "
            "export take a run's last.pt or best.pt"
        )
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch.load raises many types for truncated or foreign files
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"cannot read checkpoint {path}: {first[:200]}; the file is truncated or not a checkpoint "
            "(a run folder keeps best.pt and last.pt)"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise ValueError(f"{path} is not a training checkpoint of this version (missing {missing})")
    return ck
