"""Self-training rounds: J0 of the pseudo-pairs made by a trained model instead of the prior.

The prior's dehazing (J0) removes everything the dark channel calls haze, so white walls and
bright skies come out too dark and the pseudo-pairs over-state how much haze real scenes hold. A
model of an earlier round, which already learned from clear photos what a scene's own dark
channel looks like, makes a J0 closer to the real scene; hazing that again with a known
transmission gives pseudo-pairs whose absolute amount is consistent with what the model itself
calls haze-free. The depth layout of the pseudo haze comes from the teacher's transmission too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from napari_clearnet.core.model import ClearNet

__all__ = ["load_teacher", "teacher_prior_fn"]


def load_teacher(model: str, device: torch.device) -> tuple[ClearNet, str]:
    """(frozen network, sha256 of its file) of a weights file or registry name."""
    from napari_clearnet import weights

    loaded = weights.load(model)
    net = loaded.net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, loaded.sha256


PriorFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def teacher_prior_fn(teacher: ClearNet) -> PriorFn:
    """A ``prior_fn`` for :func:`training.losses.make_pseudo_pairs`: (t, t, A) of the teacher."""

    @torch.no_grad()
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = teacher(x.float())
        return out["t"], out["t"], out["airlight"]

    return fn
