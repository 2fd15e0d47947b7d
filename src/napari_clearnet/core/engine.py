"""The engine: a loaded method that turns frames into clear frames.

A :class:`Dehazer` holds an :class:`~napari_clearnet.estimators.Estimator` on a device and does
what is the same for every method:

* batching: the working copies of up to ``batch_size`` frames go through one estimate (a single
  frame is a batch of one; never more than ``BATCH_PIXELS`` full-resolution pixels at once);
* temporal smoothing, with one path: each frame's A and haze amount s blend with the previous
  frame's, and the frames whose A or s moved are estimated again with the blended values;
* the user's adjustments of t (``strength``, ``sky_protection``);
* recovery at full resolution, in strips of rows, so only strip-sized temporaries exist.

Loading weights and the public ``dehaze()`` are one layer up, in :mod:`napari_clearnet.api`;
every front end drives :func:`napari_clearnet.core.run.run`, which drives :meth:`Dehazer.iter_frames`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._util.validate import (
    check_sky_protection,
)
from ..choices import METHODS
from . import dcp, physics, threads
from .arrays import FrameScaler, as_array, describe_layout, frame_rgb, frames
from .buffers import Buffers
from .checks import check_frame
from .devices import pick_device
from .estimators import ClearNetEstimator, DCPEstimator, Estimate, Estimator
from .model import ClearNet
from .options import DEFAULT_BATCH_SIZE, DEFAULT_STRIP_PIXELS, DehazeOptions
from .recovery import recover_frame
from .run import Carry, DehazeResult, FrameResult, drive, run

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_SKY_PROTECTION", "DEFAULT_STRIP_PIXELS", "Dehazer", "FrameResult",
           "check_method"]

#: at most this many full-resolution pixels are held for one batch of frames
BATCH_PIXELS = 16_000_000
#: at most this many airlight source pixels are reported per frame (the most haze-opaque ones)
MAX_SOURCES = 500
#: sky protection K each method uses unless told otherwise: ClearNet's was chosen on the paired
#: validation splits together with the shipped recipe and passes the sky check on the real photos
#: with sky; the DCP stays the classic method
DEFAULT_SKY_PROTECTION = {"clearnet": 0.2, "dcp": 0.0}
#: σ of the sky protection's flatness gate (see :func:`physics.sky_tolerance`), chosen with K
SKY_SMOOTH = 0.02
#: a frame whose reduced copy varies less than this (std over pixels and channels) holds no
#: structure to read haze from (a lens cap, a white-out, a test card of one grey): t = 1 there, so
#: it comes back unchanged instead of taking the airlight estimate's colour
FLAT_STD = 1e-3



@dataclass(frozen=True)
class _Params:
    """The checked per-run parameters every frame of a run uses."""

    t0: float
    strength: float
    sky_protection: float
    strip_pixels: int
    with_raw: bool


#: the previous frame's (A, s), which temporal smoothing blends with
_Previous = tuple[np.ndarray | None, float | None]


def check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


class Dehazer:
    """A loaded method on a device: call :meth:`dehaze` on many images without reloading."""

    def __init__(
        self,
        method: str = "clearnet",
        model: ClearNet | None = None,
        *,
        device: str | torch.device = "auto",
        model_name: str | None = None,
        sha256: str | None = None,
        dcp_params: dcp.DCPParams | None = None,
        half: bool | None = None,
        compile: bool = False,
    ) -> None:
        dev = pick_device(device)
        if check_method(method) == "dcp":
            self.estimator: Estimator = DCPEstimator(dcp_params or dcp.DCPParams(), dev)
        elif model is None:
            raise ValueError("method 'clearnet' needs a model; use load_model()")
        else:
            self.estimator = ClearNetEstimator(model, dev, half=half, compile=compile, name=model_name,
                                               sha256=sha256)
        #: the full-resolution pass's scratch, reused across strips and frames (one set per thread)
        self.buffers = Buffers()

    @property
    def method(self) -> str:
        return self.estimator.method

    @property
    def device(self) -> torch.device:
        return self.estimator.device

    @property
    def model(self) -> ClearNet | None:
        """The network (in its ordinary layout, for saving or training); None for the DCP."""
        return getattr(self.estimator, "model", None)

    @property
    def half(self) -> bool:
        return bool(getattr(self.estimator, "half", False))

    @property
    def t0(self) -> float:
        return self.estimator.recovery_t0(None)

    def resolve_sky(self, k: float | None) -> float:
        """The sky protection K a run uses: ``None`` means this method's default."""
        return DEFAULT_SKY_PROTECTION[self.method] if k is None else check_sky_protection(k)

    def provenance(self, **extra: Any) -> dict[str, Any]:
        """What produced an output: method, model, weights checksum, device and parameters."""
        from .._version import __version__

        own = self.estimator.provenance()
        p: dict[str, Any] = {"method": self.method, "model": own.pop("model"), "sha256": own.pop("sha256"),
                             "device": str(self.device), "precision": own.pop("precision"),
                             "napari_clearnet": __version__, **own}
        p.update(extra)
        return p

    # ------------------------------------------------------------------ frames
    def iter_frames(
        self,
        image: Any,
        options: DehazeOptions | None = None,
        *,
        out: tuple[np.ndarray, np.ndarray] | None = None,
        carry: Carry | None = None,
        **changes: Any,
    ) -> Iterator[tuple[int, int, FrameResult]]:
        """Yield ``(index, n_frames, FrameResult)`` frame by frame; frames of lazy (dask) arrays
        are read when their batch comes, never all at once. ``options`` (a :class:`DehazeOptions`,
        with keyword ``changes`` on top) say how; ``temporal_smoothing`` in [0, 1) blends each
        frame's A and haze amount s with the previous frame's (exponential moving average) so a
        clip does not flicker; batched or not, the results are the same. ``out`` = (J (n, H, W, 3),
        t (n, H, W)) float32 arrays receive the frames in place of new ones. ``carry`` starts at
        its frame with its smoothing state (an interrupted clip carried on); batches keep the
        bounds a run from frame 0 has, so a carry at a multiple of :meth:`batch_frames` gives
        that run's frames bit for bit.
        """
        opts = DehazeOptions.of(options, changes)
        with self._threads():  # the whole run, reading the input's range included
            yield from self._iter_frames(image, opts, out, carry or Carry())

    def batch_frames(self, height: int, width: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """How many frames of ``height`` × ``width`` go through one estimate together."""
        return max(1, min(batch_size, BATCH_PIXELS // max(1, height * width),
                          self.estimator.max_batch or batch_size))

    def _iter_frames(
        self, image: Any, opts: DehazeOptions, out: tuple[np.ndarray, np.ndarray] | None, carry: Carry,
    ) -> Iterator[tuple[int, int, FrameResult]]:
        image = as_array(image)
        layout = describe_layout(tuple(np.shape(image)), opts.channel_axis)
        smoothing, batch_size = opts.temporal_smoothing, opts.batch_size
        params = _Params(
            t0=self.estimator.recovery_t0(opts.t0), strength=opts.strength,
            sky_protection=self.resolve_sky(opts.sky_protection), with_raw=opts.with_raw,
            strip_pixels=opts.strip_pixels,
        )
        a_fixed = None if opts.airlight is None else np.asarray(opts.airlight, np.float32)
        # one range for the whole array (every frame, alpha excluded): a stack never gets two scales
        scaler = FrameScaler(image, layout, opts.value_range)
        stack = frames(image, layout)
        n = layout.n_frames
        k = self.batch_frames(layout.height, layout.width, batch_size)
        first = carry.frame
        if not 0 <= first <= n:
            raise ValueError(f"cannot carry on at frame {first} of a stack of {n}")
        prev: _Previous = (None if carry.airlight is None else np.asarray(carry.airlight, np.float32),
                           None if carry.scale is None else float(carry.scale))
        for start in [s for s in (first, *range((first // k + 1) * k, n, k)) if s < n]:
            idx = range(start, min(n, (start // k + 1) * k))
            with self._threads():  # counted again per batch: the load of other programs comes and goes
                scaled = scaler.scale([stack[i] for i in idx], idx[0])
                rgbs = [frame_rgb(f, layout.channels) for f in scaled]
                slots = [None if out is None else (out[0][i], out[1][i]) for i in idx]
                batch = self._batch(rgbs, a_fixed, prev, smoothing, params, slots, start if n > 1 else None)
                for i, res in zip(idx, batch, strict=True):
                    res.value_range = scaler.range
                    prev = (res.airlight, res.scale)
                    yield i, n, res

    def _to_device(self, frame: np.ndarray) -> torch.Tensor:
        """(1, 3, H, W) channels-last view of an (H, W, 3) float32 frame; pinned + async on CUDA."""
        x = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            x = x.to(self.device)
        return x.permute(2, 0, 1)[None]

    @torch.inference_mode()
    def _batch(
        self, rgbs: list[np.ndarray], a_fixed: np.ndarray | None, prev: _Previous, smoothing: float,
        params: _Params, slots: list[tuple[np.ndarray, np.ndarray] | None], first: int | None = None,
    ) -> Iterator[FrameResult]:
        """Estimate a batch of same-size frames, smooth A and s, adjust t, recover each frame and
        check it (:func:`~napari_clearnet.checks.check_frame`; ``first``: the batch's first frame
        index, for messages)."""
        est = self.estimator
        xs = [self._to_device(rgb) for rgb in rgbs]
        lows_list = [est.reduce(x) for x in xs]
        lows = lows_list[0] if len(xs) == 1 else torch.cat(lows_list)
        a_in = None
        if a_fixed is not None:  # a real (m, 3) tensor, not an expand()ed view: smoothing writes rows
            a_in = torch.as_tensor(a_fixed, dtype=torch.float32, device=self.device).reshape(1, 3)
            a_in = a_in.repeat(len(xs), 1)
        e = est.estimate(lows, a_in)
        if smoothing > 0 and (a_fixed is None or est.has_scale):
            self._smooth(e, lows, prev, smoothing, a_fixed)
        flat = lows.flatten(1).std(1) < FLAT_STD
        if bool(flat.any()):  # no contrast, no haze to read: the frame comes back as it is
            e.t[flat] = 1.0
        t = physics.sky_tolerance(physics.apply_strength(e.t, params.strength), lows, e.airlight,
                                  params.sky_protection, SKY_SMOOTH)
        for j, x in enumerate(xs):
            s = slice(j, j + 1)
            rows = est.rows_at_full_resolution(lows[s], t[s], tuple(x.shape[-2:]), self.buffers)
            j_out, t_out = recover_frame(x, rows, e.airlight[s], params.t0, params.strip_pixels, slots[j],
                                         self.buffers)
            raw = None
            if params.with_raw:
                raw = physics.resize(e.t_raw[s], tuple(x.shape[-2:]))[0, 0].clamp(0, 1).cpu().numpy()
            res = FrameResult(j_out, t_out, e.airlight[j].cpu().numpy().astype(np.float32), raw)
            check_frame(j_out, t[s], res.airlight, x, None if first is None else first + j)
            res.scale = None if e.scale is None else float(e.scale[j])
            res.sources = None if e.sources is None else self._sources(e.sources[j], lows.shape[-2:],
                                                                       x.shape[-2:])
            yield res

    def _threads(self) -> AbstractContextManager[Any]:
        """On the CPU, one torch thread per core other programs leave free (:mod:`.threads`)."""
        return threads.adapted() if self.device.type == "cpu" else nullcontext()

    def _smooth(self, e: Estimate, lows: torch.Tensor, prev: _Previous, smoothing: float,
                a_fixed: np.ndarray | None) -> None:
        """Blend each frame's A and s with the previous frame's (a fixed A stays fixed; the DCP has
        no s) and estimate again, with the blended values, the frames that had a previous one."""
        a_prev, s_prev = prev
        a_now = e.airlight.cpu().numpy()
        s_now = None if e.scale is None else e.scale.cpu().numpy()
        redo, a_use, s_use = [], [], []
        for j in range(len(a_now)):
            s_j = None if s_now is None else float(s_now[j])
            if a_prev is None:
                a_prev, s_prev = a_now[j], s_j
                continue
            a_prev = a_fixed if a_fixed is not None else smoothing * a_prev + (1 - smoothing) * a_now[j]
            s_prev = None if s_j is None or s_prev is None else smoothing * s_prev + (1 - smoothing) * s_j
            redo.append(j)
            a_use.append(a_prev)
            s_use.append(s_prev)
        if not redo:
            return
        a_t = torch.as_tensor(np.stack(a_use), dtype=torch.float32, device=self.device)
        s_t = None if None in s_use else torch.as_tensor(s_use, dtype=torch.float32, device=self.device)
        e.update(redo, self.estimator.estimate(lows if len(redo) == len(a_now) else lows[redo], a_t, s_t))

    def _sources(self, idx: torch.Tensor, low_shape: Any, full_shape: Any) -> np.ndarray:
        """(k, 2) full-resolution row/column of the first ``MAX_SOURCES`` source pixels (pixel
        centres of the working copy, mapped onto the frame's grid)."""
        (h, w), (height, width) = low_shape, full_shape
        flat = idx[:MAX_SOURCES].cpu().numpy()
        yx = np.stack([flat // w, flat % w], axis=1).astype(np.float64)
        yx = (yx + 0.5) * np.array([height / h, width / w]) - 0.5
        return yx.astype(np.float32)

    # ------------------------------------------------------------------ whole arrays
    def dehaze(self, image: Any, options: DehazeOptions | None = None, *,
               progress: Callable[[int, int], None] | None = None, **changes: Any) -> DehazeResult:
        """Dehaze an image or a stack; see :func:`napari_clearnet.dehaze` for the parameters."""
        return drive(run(self, image, options, **changes), progress)
