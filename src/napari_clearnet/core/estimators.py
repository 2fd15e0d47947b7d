"""Estimators: what a method finds in a batch of frames, behind one small interface.

An :class:`Estimator` turns frames into an :class:`Estimate`: the transmission t, the airlight A,
ClearNet's haze amount s, the method's raw t, and the pixels A was taken from. Two methods:

* :class:`ClearNetEstimator`: the network on a reduced copy (long side ``working_size``), from a
  private channels-last copy of the model, in float16 on CUDA (bfloat16 on the CPU on request),
  optionally compiled;
* :class:`DCPEstimator`: the classic Dark Channel Prior on the full-resolution frame.

Every estimate is at the estimator's **working resolution**, ``working_shape(H, W)``: the reduced
copy for ClearNet, the frame itself for the DCP. :meth:`Estimator.rows_at_full_resolution` brings
any band of rows of t to the frame's resolution (ClearNet: fast guided upsampling that follows the
full-resolution edges; DCP: t as it is). The :class:`~napari_clearnet.engine.Dehazer` does
everything else (recovery, strips, batching, temporal smoothing) the same way for both.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from . import dcp, physics
from .buffers import Buffers
from .model import ClearNet

__all__ = ["ClearNetEstimator", "DCPEstimator", "Estimate", "Estimator"]

#: (full-resolution rows of the frame, first row, end row, out) -> t of those rows, (1, 1, rows, W),
#: written into ``out`` (a tensor of that shape) when it is given
RowsFn = Callable[..., torch.Tensor]


@dataclass
class Estimate:
    """A method's estimate for B frames at its working resolution (h, w).

    ``t`` and ``t_raw`` are (B, 1, h, w) in [0, 1]; ``airlight`` is (B, 3); ``scale`` is ClearNet's
    per-frame haze amount s, (B,) (None for the DCP); ``sources`` are the (B, k) flat indices into
    (h, w) of the pixels A was taken from, the most haze-opaque first (None when A was given).
    """

    t: torch.Tensor
    airlight: torch.Tensor
    t_raw: torch.Tensor
    scale: torch.Tensor | None
    sources: torch.Tensor | None
    #: ClearNet's per-image heads (B, 4), which a later frame may reuse (None for the DCP)
    heads: torch.Tensor | None = None

    def update(self, rows: list[int], other: Estimate) -> None:
        """Take ``other`` (the estimate of frames ``rows`` again, with a given A and s) for those
        frames; the source pixels stay the ones A was first estimated from."""
        self.t[rows], self.airlight[rows], self.t_raw[rows] = other.t, other.airlight, other.t_raw
        if self.scale is not None and other.scale is not None:
            self.scale[rows] = other.scale

    @staticmethod
    def join(parts: list[tuple[list[int], Estimate]], n: int) -> Estimate:
        """One estimate of ``n`` frames from estimates of some of them (``(rows, estimate)``)."""

        def put(name: str) -> torch.Tensor | None:
            values = [getattr(e, name) for _, e in parts]
            if any(v is None for v in values):
                return None
            out = values[0].new_empty((n, *values[0].shape[1:]))
            for (rows, _), v in zip(parts, values, strict=True):
                out[rows] = v
            return out

        t, a, raw = put("t"), put("airlight"), put("t_raw")
        assert t is not None and a is not None and raw is not None
        return Estimate(t, a, raw, put("scale"), put("sources"), put("heads"))


class Estimator(ABC):
    """One method on one device: frames in, :class:`Estimate` out (see the module docstring)."""

    method: ClassVar[str]
    #: how many frames one :meth:`estimate` call may take (None: as many as fit in memory)
    max_batch: ClassVar[int | None] = None
    #: whether A depends on s (with a fixed A, temporal smoothing then still has s to blend)
    has_scale: ClassVar[bool] = False

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def working_shape(self, height: int, width: int) -> tuple[int, int]:
        """The resolution the method estimates at, for a frame of ``height`` × ``width``."""
        return height, width

    def reduce(self, frame: torch.Tensor) -> torch.Tensor:
        """A (1, 3, H, W) frame at the working resolution (the frame itself when that is H × W)."""
        return physics.resize(frame, self.working_shape(*frame.shape[-2:]))

    @abstractmethod
    def estimate(
        self, low: torch.Tensor, airlight: torch.Tensor | None = None, scale: torch.Tensor | None = None,
        heads: torch.Tensor | None = None,
    ) -> Estimate:
        """The estimate of a (B, 3, h, w) batch at working resolution; ``airlight`` (B, 3) and
        ``scale`` (B,) replace the estimated A and s; ``heads`` (B, 4) are an earlier frame's
        :attr:`Estimate.heads`, reused instead of running the network (methods without a network
        ignore them)."""

    @abstractmethod
    def rows_at_full_resolution(self, low: torch.Tensor, t: torch.Tensor, size: tuple[int, int],
                                buffers: Buffers | None = None) -> RowsFn:
        """How to get t of any band of rows at full resolution ``size`` (H, W), for one frame whose
        working copy is ``low`` (1, 3, h, w) and whose t there is ``t`` (1, 1, h, w); the
        function's scratch comes from ``buffers`` when given."""

    @abstractmethod
    def recovery_t0(self, t0: float | None) -> float:
        """The lower bound of t in the recovery: ``t0``, or the method's own when None."""

    @property
    @abstractmethod
    def t_floor(self) -> float:
        """The smallest t the method reports: t there says "at least this much haze", no more
        (haze depth reads such pixels as a lower bound only)."""

    @abstractmethod
    def provenance(self) -> dict[str, Any]:
        """What identifies the method's output: model, weights checksum, precision, parameters."""


class ClearNetEstimator(Estimator):
    """ClearNet on reduced copies, from a private channels-last (optionally compiled) copy."""

    method = "clearnet"
    has_scale = True

    def __init__(
        self, model: ClearNet, device: torch.device, *, half: bool | None = None, compile: bool = False,
        name: str | None = None, sha256: str | None = None,
    ) -> None:
        super().__init__(device)
        self.model = model.to(device).eval()
        self.name, self.sha256 = name, sha256
        # float16 on CUDA by default (fast and safe); bfloat16 on the CPU only on request (about 2x
        # faster with AVX512-BF16/AMX, but it moves t by up to ~1e-2, so float32 stays the default)
        self.half = device.type in ("cuda", "cpu") and (device.type == "cuda" if half is None else bool(half))
        self.amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        # channels-last convolutions are faster on CPU and CUDA with the same numbers; a private
        # copy keeps ``self.model`` in its ordinary layout for saving or training
        self.net: Any = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
        if compile:
            self.net = torch.compile(self.net, dynamic=True)
        self.compiled = bool(compile)

    def working_shape(self, height: int, width: int) -> tuple[int, int]:
        return self.model.working_shape(height, width)

    @torch.inference_mode()
    def estimate(
        self, low: torch.Tensor, airlight: torch.Tensor | None = None, scale: torch.Tensor | None = None,
        heads: torch.Tensor | None = None,
    ) -> Estimate:
        x = low.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.half):
            out = self.net(x, airlight, scale, heads)
        # the network's A starts from its prior's rule on this copy: these are that rule's pixels
        return Estimate(out["t"].float(), out["airlight"].float(), out["t_prior"].float(),
                        out["scale"].float(), out.get("sources"), out["heads"].float())

    def guided_wide(self, low: torch.Tensor, t: torch.Tensor, width: int) -> torch.Tensor:
        """The fast guided upsampling's coefficients (a, b) of one frame, (1, 2, h, ``width``):
        computed at working resolution and widened to the frame's width once; each full-resolution
        row interpolates them along the height and applies ``t = a * grey(I) + b``."""
        cfg = self.model.config
        ca, cb = physics.fast_guided_coefficients(low, t, cfg.upsample_radius, cfg.upsample_eps)
        return physics.widen(torch.cat([ca, cb], 1), width)

    def rows_at_full_resolution(self, low: torch.Tensor, t: torch.Tensor, size: tuple[int, int],
                                buffers: Buffers | None = None) -> RowsFn:
        """Fast guided upsampling (He & Sun 2015): coefficients at working resolution, widened to
        the frame's width once, then interpolated exactly per band of rows (no seams) and applied
        to the full-resolution grey image."""
        cfg = self.model.config
        wide = self.guided_wide(low, t, size[1])  # (1, 2, h, W)
        work = buffers or Buffers()

        def rows(frame_rows: torch.Tensor, r0: int, r1: int, out: torch.Tensor | None = None) -> torch.Tensor:
            shape = (1, 2, r1 - r0, size[1])
            ab = physics.rows_linear(wide, size[0], (r0, r1), work.take("ab", shape, wide),
                                     work.take("ab2", shape, wide))
            g = physics.gray(frame_rows, work.take("gray", (1, 1, r1 - r0, size[1]), wide))
            return torch.addcmul(ab[:, 1:2], ab[:, 0:1], g, out=out).clamp_(cfg.t_min, 1.0)

        return rows

    def recovery_t0(self, t0: float | None) -> float:
        return self.model.config.t0 if t0 is None else t0

    @property
    def t_floor(self) -> float:
        return float(self.model.config.t_min)  # the network's and the upsampling's clamp

    def provenance(self) -> dict[str, Any]:
        precision = str(self.amp_dtype).removeprefix("torch.") if self.half else "float32"
        return {"model": self.name, "sha256": self.sha256, "precision": precision}


class DCPEstimator(Estimator):
    """The classic Dark Channel Prior at full resolution (frames one at a time)."""

    method = "dcp"
    max_batch = 1

    def __init__(self, params: dcp.DCPParams, device: torch.device) -> None:
        super().__init__(device)
        self.params = params

    @torch.inference_mode()
    def estimate(
        self, low: torch.Tensor, airlight: torch.Tensor | None = None, scale: torch.Tensor | None = None,
        heads: torch.Tensor | None = None,
    ) -> Estimate:
        t_raw, t, a, sources = dcp.estimate_with_sources(low, self.params, airlight)
        return Estimate(t, a, t_raw, None, sources)

    def rows_at_full_resolution(self, low: torch.Tensor, t: torch.Tensor, size: tuple[int, int],
                                buffers: Buffers | None = None) -> RowsFn:
        def rows(frame_rows: torch.Tensor, r0: int, r1: int, out: torch.Tensor | None = None) -> torch.Tensor:
            return torch.clamp(t[..., r0:r1, :], 1e-3, 1.0, out=out)

        return rows

    def recovery_t0(self, t0: float | None) -> float:
        return self.params.t0 if t0 is None else replace(self.params, t0=t0).t0  # the DCP's (0, 1)

    @property
    def t_floor(self) -> float:
        # where the image's dark channel equals A's (sky, opaque fog), t = 1 - omega; the clamp
        # of rows_at_full_resolution is lower still
        return max(1.0 - float(self.params.omega), 1e-3)

    def provenance(self) -> dict[str, Any]:
        return {"model": None, "sha256": None, "precision": "float32", "dcp": self.params.to_dict()}
