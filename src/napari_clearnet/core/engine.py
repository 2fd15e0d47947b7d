"""The engine: a loaded method that turns frames into clear frames.

A :class:`Dehazer` holds an :class:`~napari_clearnet.estimators.Estimator` on a device and does
what is the same for every method:

* batching: the working copies of up to ``batch_size`` frames go through one estimate (a single
  frame is a batch of one; never more than ``BATCH_PIXELS`` full-resolution pixels at once);
* temporal smoothing, with one path: each frame's A and haze amount s blend with the previous
  frame's, and the frames whose A or s moved are estimated again with the blended values;
* the user's adjustments of t (``strength``, ``sky_protection``);
* along a stack, the network on every ``network_every``-th frame (and at a scene cut), its
  per-image heads reused in between;
* recovery at full resolution, in strips of rows, so only strip-sized temporaries exist; 8-bit RGB
  with ``output_dtype="uint8"`` takes the 8-bit path instead (:mod:`.fused`: uint8 in, uint8 out,
  one pass).

Loading weights and the public ``dehaze()`` are one layer up, in :mod:`napari_clearnet.api`;
every front end drives :func:`napari_clearnet.core.run.run`, which drives :meth:`Dehazer.iter_frames`.
"""

from __future__ import annotations

import time
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
from . import dcp, fused, physics, threads
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
#: with ``network_every`` > 1, a frame whose working copy differs from the last one the network
#: ran on by more than this (mean absolute difference, values in [0, 1]) is run again at once:
#: a cut to another scene does not wait for the schedule
SCENE_CHANGE = 0.08


@dataclass(frozen=True)
class _Params:
    """The checked per-run parameters every frame of a run uses."""

    t0: float
    strength: float
    sky_protection: float
    strip_pixels: int
    with_raw: bool
    with_t: bool
    uint8: bool
    every: int


@dataclass
class _State:
    """What a run carries from frame to frame: the previous frame's (A, s), which temporal
    smoothing blends with, and the network's per-image heads and working copy of the last frame
    it ran on (``network_every``)."""

    airlight: np.ndarray | None = None
    scale: float | None = None
    heads: torch.Tensor | None = None
    key_low: torch.Tensor | None = None



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
        #: set to a dict to have the CPU seconds of the process (all threads) added up by stage:
        #: "network" (working copies, the estimate, smoothing) and "full_resolution" (recovery);
        #: ``clearnet bench --clip`` reads it
        self.stage_cpu: dict[str, float] | None = None

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
        out: tuple[np.ndarray, np.ndarray | None] | None = None,
        carry: Carry | None = None,
        **changes: Any,
    ) -> Iterator[tuple[int, int, FrameResult]]:
        """Yield ``(index, n_frames, FrameResult)`` frame by frame; frames of lazy (dask) arrays
        are read when their batch comes, never all at once. ``options`` (a :class:`DehazeOptions`,
        with keyword ``changes`` on top) say how; ``temporal_smoothing`` in [0, 1) blends each
        frame's A and haze amount s with the previous frame's (exponential moving average) so a
        clip does not flicker; batched or not, the results are the same. ``out`` = (J (n, H, W, 3),
        t (n, H, W) or None) float32 arrays receive the frames in place of new ones. ``carry`` starts at
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
        self, image: Any, opts: DehazeOptions, out: tuple[np.ndarray, np.ndarray | None] | None, carry: Carry,
    ) -> Iterator[tuple[int, int, FrameResult]]:
        image = as_array(image)
        layout = describe_layout(tuple(np.shape(image)), opts.channel_axis)
        smoothing, batch_size = opts.temporal_smoothing, opts.batch_size
        params = _Params(
            t0=self.estimator.recovery_t0(opts.t0), strength=opts.strength,
            sky_protection=self.resolve_sky(opts.sky_protection), with_raw=opts.with_raw,
            strip_pixels=opts.strip_pixels, with_t=opts.with_transmission,
            uint8=opts.output_dtype == "uint8", every=opts.network_every,
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
        # a carried-on run starts with the smoothing state its partial output recorded; the network
        # runs on its first frame (a keyframe of the schedule too: keyframes fall on batch bounds)
        state = _State(airlight=None if carry.airlight is None else np.asarray(carry.airlight, np.float32),
                       scale=None if carry.scale is None else float(carry.scale))
        eight = params.uint8 and self._eight_bit(scaler, layout)
        for start in [s for s in (first, *range((first // k + 1) * k, n, k)) if s < n]:
            idx = range(start, min(n, (start // k + 1) * k))
            with self._threads():  # counted again per batch: the load of other programs comes and goes
                if eight:  # 8-bit RGB to 8-bit: the frames as they are, no float copy
                    inputs = [np.ascontiguousarray(np.asarray(stack[i])[..., :3]) for i in idx]
                else:
                    scaled = scaler.scale([stack[i] for i in idx], idx[0])
                    inputs = [frame_rgb(f, layout.channels) for f in scaled]
                slots = [None if out is None else (out[0][i], None if out[1] is None else out[1][i])
                         for i in idx]
                batch = self._batch(inputs, eight, a_fixed, state, smoothing, params, slots, start, n > 1)
                for i, res in zip(idx, batch, strict=True):
                    res.value_range = scaler.range
                    state.airlight, state.scale = res.airlight, res.scale
                    yield i, n, res

    def _eight_bit(self, scaler: FrameScaler, layout: Any) -> bool:
        """Whether a run's frames take the 8-bit path (:mod:`.fused`): 8-bit RGB(A) read on its
        full range, with ClearNet (compiled kernels on the CPU, torch on other devices)."""
        return (scaler.dtype == np.uint8 and scaler.range == (0.0, 255.0) and layout.channels in (3, 4)
                and hasattr(self.estimator, "guided_wide"))

    @property
    def _kernels(self) -> bool:
        """Whether the 8-bit path runs the compiled CPU kernels (else torch on the device)."""
        return self.device.type == "cpu" and fused.available()

    def _to_device(self, frame: np.ndarray) -> torch.Tensor:
        """(1, 3, H, W) channels-last view of an (H, W, 3) float32 frame, or the (H, W, 3) tensor of
        a uint8 one (the 8-bit path); pinned + async on CUDA."""
        x = torch.from_numpy(np.ascontiguousarray(frame) if frame.dtype == np.uint8 else
                             np.ascontiguousarray(frame, dtype=np.float32))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            x = x.to(self.device)
        return x if x.dtype == torch.uint8 else x.permute(2, 0, 1)[None]

    @torch.inference_mode()
    def _batch(
        self, inputs: list[np.ndarray], eight: bool, a_fixed: np.ndarray | None, state: _State,
        smoothing: float, params: _Params, slots: list[tuple[np.ndarray, np.ndarray] | None], start: int,
        numbered: bool,
    ) -> Iterator[FrameResult]:
        """Estimate a batch of same-size frames, smooth A and s, adjust t, recover each frame and
        check it (:func:`~napari_clearnet.checks.check_frame`). ``inputs`` are (H, W, 3) float32
        frames in [0, 1], or uint8 ones with ``eight`` (the 8-bit path); ``start`` is the batch's
        first frame index (for the network's schedule and, if ``numbered``, messages)."""
        est = self.estimator
        clock = self.stage_cpu
        tick = time.process_time() if clock is not None else 0.0
        threads_now = threads.banded() if self.device.type == "cpu" else 1  # the kernels' bands
        if eight and self._kernels:
            xs = [fused.borrow(f) for f in inputs]  # (H, W, 3) uint8, only read
            lows_list = [torch.from_numpy(fused.reduce(f, est.working_shape(*f.shape[:2]), threads_now))
                         .permute(2, 0, 1)[None] for f in inputs]
        elif eight:  # uint8 crosses to the device (a quarter of float32's bytes)
            xs = [self._to_device(f) for f in inputs]
            lows_list = [fused.reduce_tensor(x, est.working_shape(*x.shape[:2])) for x in xs]
        else:
            xs = [self._to_device(rgb) for rgb in inputs]
            lows_list = [est.reduce(x) for x in xs]
        lows = lows_list[0] if len(xs) == 1 else torch.cat(lows_list)
        a_in = None
        if a_fixed is not None:  # a real (m, 3) tensor, not an expand()ed view: smoothing writes rows
            a_in = torch.as_tensor(a_fixed, dtype=torch.float32, device=self.device).reshape(1, 3)
            a_in = a_in.repeat(len(xs), 1)
        e = self._scheduled(lows, a_in, start, params.every, state)
        if smoothing > 0 and (a_fixed is None or est.has_scale):
            self._smooth(e, lows, state, smoothing, a_fixed)
        flat = lows.flatten(1).std(1) < FLAT_STD
        if bool(flat.any()):  # no contrast, no haze to read: the frame comes back as it is
            e.t[flat] = 1.0
        t = physics.sky_tolerance(physics.apply_strength(e.t, params.strength), lows, e.airlight,
                                  params.sky_protection, SKY_SMOOTH)
        if clock is not None:
            clock["network"] = clock.get("network", 0.0) + time.process_time() - tick
        for j, x in enumerate(xs):
            s = slice(j, j + 1)
            tick = time.process_time() if clock is not None else 0.0
            if eight:
                j_out, t_out = self._recover_eight(x, lows[s], t[s], e.airlight[j], params, slots[j],
                                                   threads_now)
            else:
                j_out, t_out = self._recover_float(x, lows[s], t[s], e.airlight[s], params, slots[j])
            raw = None
            if params.with_raw:
                raw = physics.resize(e.t_raw[s], tuple(j_out.shape[:2]))[0, 0].clamp(0, 1).cpu().numpy()
            res = FrameResult(j_out, t_out, e.airlight[j].cpu().numpy().astype(np.float32), raw)
            check_frame(j_out, t[s], res.airlight, lows[s] if eight else x, start + j if numbered else None)
            res.scale = None if e.scale is None else float(e.scale[j])
            res.sources = None if e.sources is None else self._sources(e.sources[j], lows.shape[-2:],
                                                                       j_out.shape[:2])
            if clock is not None:
                clock["full_resolution"] = clock.get("full_resolution", 0.0) + time.process_time() - tick
            yield res

    def _recover_float(self, x: torch.Tensor, low: torch.Tensor, t: torch.Tensor, airlight: torch.Tensor,
                       params: _Params, slot: tuple[np.ndarray, np.ndarray] | None,
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """J and t of one float frame (strips of rows, :func:`~.recovery.recover_frame`); J as
        uint8 when the run asks for it."""
        rows = self.estimator.rows_at_full_resolution(low, t, tuple(x.shape[-2:]), self.buffers)
        into = None
        if slot is not None:  # a uint8 result's float J, or a t not kept, go to scratch
            height, width = x.shape[-2:]
            into = (slot[0] if slot[0].dtype == np.float32 else np.empty((height, width, 3), np.float32),
                    slot[1] if slot[1] is not None else np.empty((height, width), np.float32))
        j_out, t_out = recover_frame(x, rows, airlight, params.t0, params.strip_pixels, into, self.buffers)
        if params.uint8:
            j8 = fused.to_uint8(j_out, threads.banded())
            if slot is not None:
                slot[0][...] = j8
                j8 = slot[0]
            j_out = j8
        return j_out, (t_out if params.with_t else None)

    def _recover_eight(self, frame: torch.Tensor, low: torch.Tensor, t: torch.Tensor, airlight: torch.Tensor,
                       params: _Params, slot: tuple[np.ndarray, np.ndarray] | None, threads_now: int,
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """J (uint8) and t of one uint8 frame ((H, W, 3) tensor) in one pass: the compiled kernel
        (:func:`~.fused.recover`) on the CPU, torch on the device elsewhere."""
        est = self.estimator
        wide = est.guided_wide(low, t, frame.shape[1])
        j_into, t_into = (None, None) if slot is None else slot
        if self._kernels:
            return fused.recover(frame.numpy(), wide[0].numpy(), airlight.numpy(), params.t0, est.t_floor,
                                 with_t=params.with_t, threads=threads_now, out=j_into, t_out=t_into)
        j_dev, t_dev = fused.recover_tensor(frame, wide, airlight, params.t0, est.t_floor,
                                            with_t=params.with_t, half=self.device.type == "cuda",
                                            strip_pixels=params.strip_pixels)
        j_out = j_dev.cpu().numpy()
        t_out = None if t_dev is None else t_dev.cpu().numpy()
        if slot is not None:
            slot[0][...] = j_out
            j_out = slot[0]
            if t_out is not None:
                slot[1][...] = t_out
                t_out = slot[1]
        return j_out, t_out

    def _scheduled(self, lows: torch.Tensor, a_in: torch.Tensor | None, start: int, every: int,
                   state: _State) -> Estimate:
        """The estimate of a batch, the network running on every ``every``-th frame (and on a
        frame that differs from the last one it ran on by more than :data:`SCENE_CHANGE`); the
        frames between reuse that frame's per-image heads (haze amount, airlight correction)
        with their own prior."""
        est = self.estimator
        n = lows.shape[0]
        if every <= 1 or not est.has_scale:
            return est.estimate(lows, a_in)
        key, heads_of = [], []
        for j in range(n):
            changed = state.key_low is None or state.key_low.shape != lows[j].shape or float(
                (lows[j] - state.key_low).abs().mean()) > SCENE_CHANGE
            if (start + j) % every == 0 or changed:
                key.append(j)
                state.key_low = lows[j]
            heads_of.append(len(key) - 1)  # the key frame (of this batch) frame j follows; -1: an earlier one

        def pick(rows: list[int]) -> torch.Tensor | None:
            return None if a_in is None else a_in[rows]

        parts = []
        e_key = None
        if key:
            e_key = est.estimate(lows[key] if len(key) < n else lows, pick(key))
            parts.append((key, e_key))
        rest = [j for j in range(n) if j not in key]
        if rest:
            heads = torch.stack([state.heads if heads_of[j] < 0 else e_key.heads[heads_of[j]] for j in rest])
            parts.append((rest, est.estimate(lows[rest], pick(rest), heads=heads)))
        if e_key is not None:
            state.heads = e_key.heads[-1]
        return parts[0][1] if len(parts) == 1 else Estimate.join(parts, n)

    def _threads(self) -> AbstractContextManager[Any]:
        """On the CPU, one torch thread per core other programs leave free (:mod:`.threads`)."""
        return threads.adapted() if self.device.type == "cpu" else nullcontext()

    def _smooth(self, e: Estimate, lows: torch.Tensor, state: _State, smoothing: float,
                a_fixed: np.ndarray | None) -> None:
        """Blend each frame's A and s with the previous frame's (a fixed A stays fixed; the DCP has
        no s) and estimate again, with the blended values, the frames that had a previous one."""
        a_prev, s_prev = state.airlight, state.scale
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
