"""The full-resolution pass: the scattering model inverted over a frame, strip by strip.

J = A + (I - A) / max(t, t0) in one fused operation per strip, written with t straight into the
output arrays. Strips of :data:`STRIP_PIXELS` keep their temporaries in the CPU's cache between
steps, and those temporaries come from :class:`~napari_clearnet.buffers.Buffers`, reused across
strips and frames, so the pass neither allocates full-size tensors nor depends on the system
allocator's settings. The same code runs on CUDA (strips computed on the device, then copied).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .buffers import Buffers

__all__ = ["STRIP_PIXELS", "recover_frame"]

#: pixels per strip unless ``strip_pixels`` is lower (a quarter megapixel: a few MB of temporaries)
STRIP_PIXELS = 1 << 18


def recover_frame(
    x: torch.Tensor, rows_t: Callable[..., torch.Tensor], airlight: torch.Tensor, t0: float,
    strip_pixels: int, out: tuple[np.ndarray, np.ndarray] | None, buffers: Buffers,
) -> tuple[np.ndarray, np.ndarray]:
    """Clear frame J (H, W, 3) and t (H, W) of frame ``x`` ((1, 3, H, W), channels-last memory),
    with ``rows_t(rows, r0, r1, out)`` giving t of a band of rows (the estimator's
    ``rows_at_full_resolution``) and ``airlight`` (1, 3); ``out`` = (J, t) arrays to fill."""
    height, width = x.shape[-2:]
    j_out, t_out = out if out is not None else (
        np.empty((height, width, 3), np.float32), np.empty((height, width), np.float32)
    )
    rows = max(1, min(strip_pixels, STRIP_PIXELS) // max(1, width))
    a3 = airlight.reshape(3).to(x.dtype)
    hwc = x[0].permute(1, 2, 0)  # the frame's own (H, W, 3) memory
    on_cpu = x.device.type == "cpu"
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        n = r1 - r0
        t_np = torch.from_numpy(t_out[r0:r1])
        t = rows_t(x[..., r0:r1, :], r0, r1, t_np[None, None] if on_cpu else
                   buffers.take("t", (1, 1, n, width), x))[0, 0]
        r = torch.clamp(t, min=t0, out=buffers.take("r", (n, width), x)).reciprocal_()
        j_np = torch.from_numpy(j_out[r0:r1])
        j = j_np if on_cpu else buffers.take("j", (n, width, 3), x)
        torch.lerp(a3, hwc[r0:r1], r[..., None], out=j).clamp_(0.0, 1.0)  # A + (I - A) r
        if not on_cpu:
            j_np.copy_(j)
            t_np.copy_(t)
    return j_out, t_out
