"""The ORIGINAL design, kept only as the reference point of the benchmark (not part of the package).

A classic full-resolution attention U-Net (Oktay et al. 2018): encoder widths 64-128-256-512 and a
1024-wide bottleneck (31.4 M parameters with the attention gates), predicting
transmission t(x) and the airlight A. It was trained on 256×256 resizes; for a fair speed reference
the benchmark runs it at the full resolution of the image, as the output resolution demands.
Untrained weights are fine here: only cost is measured, never quality.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_clearnet.core.model import AttentionGate  # the same additive gate as the original

__all__ = ["OriginalAttentionUNet"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class OriginalAttentionUNet(nn.Module):
    """(B, 3, H, W) hazy image -> dict ``t`` (B, 1, H, W) and ``airlight`` (B, 3), at full resolution."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), bottleneck: int = 1024) -> None:
        super().__init__()
        chans = (*widths, bottleneck)
        down = range(1, len(chans))
        up = range(len(chans) - 1, 0, -1)
        self.enc = nn.ModuleList([_block(3, chans[0])] + [_block(chans[i - 1], chans[i]) for i in down])
        self.upconv = nn.ModuleList(nn.ConvTranspose2d(chans[i], chans[i - 1], 2, stride=2) for i in up)
        self.gates = nn.ModuleList(AttentionGate(chans[i - 1], chans[i - 1], chans[i - 1] // 2) for i in up)
        self.dec = nn.ModuleList(_block(2 * chans[i - 1], chans[i - 1]) for i in up)
        self.t_head = nn.Conv2d(chans[0], 1, 1)
        self.a_head = nn.Linear(bottleneck, 3)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = image.shape[-2:]
        m = 2 ** (len(self.enc) - 1)
        x = F.pad(image, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(skips[-1], 2))
            skips.append(x)
        y = skips.pop()
        airlight = torch.sigmoid(self.a_head(y.mean((2, 3))))
        for up, gate, block in zip(self.upconv, self.gates, self.dec, strict=True):
            skip = skips.pop()
            y = up(y)
            y = block(torch.cat([gate(skip, y), y], 1))
        t = torch.sigmoid(self.t_head(y))[..., :h, :w]
        return {"t": t, "airlight": airlight}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
