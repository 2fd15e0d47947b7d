"""The dehazing engine: input normalisation, device and precision, full-resolution output, stacks.

``dehaze()`` is the one entry point that the CLI, the napari widgets and scripts share;
``load_model()`` returns a reusable :class:`Dehazer` so weights load once for a batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import dcp, io, physics
from .model import ClearNet
from .weights import DEFAULT_MODEL, build_model, read_weights, sha256_file

__all__ = ["DehazeResult", "Dehazer", "FrameResult", "dehaze", "load_model", "pick_device"]

METHODS = ("clearnet", "dcp")
#: pixels per strip of the full-resolution pass; bounds peak memory on huge images
DEFAULT_STRIP_PIXELS = 4_000_000


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev


@dataclass
class FrameResult:
    """One frame: J (H, W, 3), t (H, W), A (3,), and the raw (unrefined) t of the method."""

    image: np.ndarray
    transmission: np.ndarray
    airlight: np.ndarray
    transmission_raw: np.ndarray | None = None


@dataclass
class DehazeResult:
    """What :func:`dehaze` returns.

    ``image`` has the input's layout (grey stays grey, alpha is passed through), float32 in [0, 1];
    ``transmission`` is (…, H, W) float32 in (0, 1]; ``airlight`` is (…, 3) (three floats for a
    single image); ``provenance`` says what produced it.
    """

    image: np.ndarray
    transmission: np.ndarray
    airlight: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)
    transmission_raw: np.ndarray | None = None

    @property
    def method(self) -> str:
        return self.provenance["method"]

    @property
    def model(self) -> str | None:
        return self.provenance.get("model")

    @property
    def sha256(self) -> str | None:
        return self.provenance.get("sha256")

    @property
    def device(self) -> str:
        return self.provenance["device"]


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
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "clearnet" and model is None:
            raise ValueError("method 'clearnet' needs a model; use load_model()")
        self.method = method
        self.device = pick_device(device)
        self.model = model.to(self.device).eval() if model is not None else None
        self.model_name = model_name if method == "clearnet" else None
        self.sha256 = sha256 if method == "clearnet" else None
        self.dcp_params = dcp_params or dcp.DCPParams()
        # half precision only for the network and only on CUDA, where it is fast and safe
        self.half = (self.device.type == "cuda") if half is None else bool(half)
        if self.device.type != "cuda":
            self.half = False

    # ------------------------------------------------------------------ one frame
    @torch.inference_mode()
    def estimate_frame(
        self, frame: torch.Tensor, airlight: torch.Tensor | None = None, t0: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(t at working resolution, A, raw t) for a (1, 3, H, W) frame on the device.

        For ClearNet ``t`` is at the network's working resolution and is brought to full
        resolution by :meth:`full_resolution`; for DCP it is already full resolution.
        """
        if self.method == "dcp":
            params = self.dcp_params if t0 is None else replace(self.dcp_params, t0=t0)
            t_raw, t, a = dcp.estimate(frame, params, airlight)
            return t, a, t_raw
        assert self.model is not None
        h, w = self.model.working_shape(*frame.shape[-2:])
        low = physics.resize(frame, (h, w))
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            out = self.model(low, airlight)
        return out["t"].float(), out["airlight"].float(), out["t_prior"].float()

    @torch.inference_mode()
    def run_frame(
        self,
        frame: np.ndarray,
        *,
        airlight: np.ndarray | None = None,
        t0: float | None = None,
        strip_pixels: int = DEFAULT_STRIP_PIXELS,
        with_raw: bool = False,
    ) -> FrameResult:
        """Dehaze one float32 (H, W, 3) frame in [0, 1]."""
        height, width = frame.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1)[None]
        a_in = None if airlight is None else torch.as_tensor(airlight, dtype=torch.float32, device=self.device).reshape(1, 3)
        t_small, a, t_raw = self.estimate_frame(x, a_in, t0)
        t0_ = self.t0 if t0 is None else t0
        j_out = np.empty((height, width, 3), np.float32)
        t_out = np.empty((height, width), np.float32)
        rows = max(1, strip_pixels // max(1, width))
        if self.method == "dcp":
            for r0 in range(0, height, rows):
                sl = slice(r0, min(height, r0 + rows))
                t = t_small[..., sl, :].clamp(1e-3, 1.0)
                j = physics.recover(x[..., sl, :], t, a, t0_)
                j_out[sl] = j[0].permute(1, 2, 0).cpu().numpy()
                t_out[sl] = t[0, 0].cpu().numpy()
        else:
            cfg = self.model.config
            low = physics.resize(x, t_small.shape[-2:])
            ca, cb = physics.fast_guided_coefficients(low, t_small, cfg.upsample_radius, cfg.upsample_eps)
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                g = physics.gray(x[..., r0:r1, :])
                t = physics.upsample_linear(ca, (height, width), (r0, r1)) * g
                t = (t + physics.upsample_linear(cb, (height, width), (r0, r1))).clamp(cfg.t_min, 1.0)
                j = physics.recover(x[..., r0:r1, :], t, a, t0_)
                j_out[r0:r1] = j[0].permute(1, 2, 0).cpu().numpy()
                t_out[r0:r1] = t[0, 0].cpu().numpy()
        raw = None
        if with_raw and t_raw is not None:
            raw = physics.resize(t_raw, (height, width))[0, 0].clamp(0, 1).cpu().numpy()
        return FrameResult(j_out, t_out, a[0].cpu().numpy().astype(np.float32), raw)

    @property
    def t0(self) -> float:
        if self.method == "clearnet" and self.model is not None:
            return self.model.config.t0
        return self.dcp_params.t0

    # ------------------------------------------------------------------ arrays and stacks
    def iter_frames(
        self,
        image: Any,
        *,
        channel_axis: int | None | str = "auto",
        value_range: tuple[float, float] | None = None,
        airlight: Any = None,
        t0: float | None = None,
        temporal_smoothing: float = 0.0,
        strip_pixels: int = DEFAULT_STRIP_PIXELS,
        with_raw: bool = False,
    ) -> Iterator[tuple[int, int, FrameResult]]:
        """Yield ``(index, n_frames, FrameResult)`` frame by frame; frames of lazy (dask) arrays
        are read one at a time. ``temporal_smoothing`` in [0, 1) blends each frame's A with the
        previous one (exponential moving average) so a clip does not flicker."""
        layout = io.describe_layout(tuple(np.shape(image)), channel_axis)
        if not 0.0 <= temporal_smoothing < 1.0:
            raise ValueError(f"temporal_smoothing must be in [0, 1), got {temporal_smoothing}")
        arr = image
        if layout.channel_axis is not None and layout.channel_axis != len(np.shape(image)) - 1:
            arr = _moveaxis(arr, layout.channel_axis, -1)
        n = layout.n_frames
        tail = (layout.height, layout.width) + ((layout.channels,) if layout.channels else ())
        frames = arr.reshape((n,) + tail)
        a_fixed = None if airlight is None else _check_airlight(airlight)
        a_prev: np.ndarray | None = None
        for i in range(n):
            rgb = _frame_rgb(io.to_float01(frames[i], value_range), layout.channels)
            a_use = a_fixed
            if a_use is None and temporal_smoothing > 0 and a_prev is not None:
                a_now = self.run_airlight(rgb)
                a_use = temporal_smoothing * a_prev + (1 - temporal_smoothing) * a_now
            res = self.run_frame(rgb, airlight=a_use, t0=t0, strip_pixels=strip_pixels, with_raw=with_raw)
            a_prev = res.airlight
            yield i, n, res

    @torch.inference_mode()
    def run_airlight(self, rgb: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None]
        return self.estimate_frame(x)[1][0].cpu().numpy()

    def dehaze(
        self,
        image: Any,
        *,
        channel_axis: int | None | str = "auto",
        value_range: tuple[float, float] | None = None,
        airlight: Any = None,
        t0: float | None = None,
        temporal_smoothing: float = 0.0,
        strip_pixels: int = DEFAULT_STRIP_PIXELS,
        with_raw: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> DehazeResult:
        """Dehaze an image or a stack; see :func:`napari_clearnet.dehaze`."""
        start = time.perf_counter()
        shape = tuple(np.shape(image))
        layout = io.describe_layout(shape, channel_axis)
        n = layout.n_frames
        h, w = layout.height, layout.width
        j = np.empty((n, h, w, 3), np.float32)
        t = np.empty((n, h, w), np.float32)
        a = np.empty((n, 3), np.float32)
        raw = np.empty((n, h, w), np.float32) if with_raw else None
        for i, total, res in self.iter_frames(
            image, channel_axis=layout.channel_axis, value_range=value_range, airlight=airlight,
            t0=t0, temporal_smoothing=temporal_smoothing, strip_pixels=strip_pixels, with_raw=with_raw,
        ):
            j[i], t[i], a[i] = res.image, res.transmission, res.airlight
            if raw is not None and res.transmission_raw is not None:
                raw[i] = res.transmission_raw
            if progress is not None:
                progress(i + 1, total)
        out_image = _restore_layout(j, image, layout, value_range)
        fs = layout.frames_shape
        return DehazeResult(
            image=out_image,
            transmission=t.reshape(fs + (h, w)),
            airlight=a.reshape(fs + (3,)),
            provenance=self.provenance(
                seconds=time.perf_counter() - start, t0=self.t0 if t0 is None else t0,
                airlight_override=None if airlight is None else [float(v) for v in _check_airlight(airlight)],
                temporal_smoothing=temporal_smoothing,
            ),
            transmission_raw=None if raw is None else raw.reshape(fs + (h, w)),
        )

    def provenance(self, **extra: Any) -> dict[str, Any]:
        """What produced an output: method, model, weights checksum, device and parameters."""
        from . import __version__

        p: dict[str, Any] = {
            "method": self.method,
            "model": self.model_name,
            "sha256": self.sha256,
            "device": str(self.device),
            "precision": "float16" if self.half else "float32",
            "napari_clearnet": __version__,
        }
        if self.method == "dcp":
            p["dcp"] = self.dcp_params.to_dict()
        p.update(extra)
        return p


def _moveaxis(arr: Any, src: int, dst: int) -> Any:
    mod = type(arr).__module__.split(".")[0]
    if mod == "dask":
        import dask.array as da

        return da.moveaxis(arr, src, dst)
    return np.moveaxis(np.asarray(arr), src, dst)


def _check_airlight(airlight: Any) -> np.ndarray:
    a = np.asarray(airlight, dtype=np.float32).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 3)
    if a.size != 3 or not np.isfinite(a).all() or a.min() <= 0 or a.max() > 1:
        raise ValueError(f"airlight must be one or three numbers in (0, 1], got {airlight!r}")
    return a


def _frame_rgb(frame: np.ndarray, channels: int) -> np.ndarray:
    if channels == 0:
        return np.repeat(frame[..., None], 3, axis=-1)
    if channels == 1:
        return np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


def _restore_layout(
    j: np.ndarray, image: Any, layout: io.Layout, value_range: tuple[float, float] | None
) -> np.ndarray:
    """Give the result the input's layout: grey stays grey, alpha comes back unchanged."""
    fs = layout.frames_shape
    h, w = layout.height, layout.width
    if layout.channels == 0:
        out = j.mean(-1).reshape(fs + (h, w))
    elif layout.channels == 1:
        out = j.mean(-1, keepdims=True).reshape(fs + (h, w, 1))
    elif layout.channels == 4:
        arr = image
        if layout.channel_axis != len(np.shape(image)) - 1:
            arr = _moveaxis(arr, layout.channel_axis, -1)
        alpha = io.to_float01(np.asarray(arr[..., 3:4]), value_range)
        out = np.concatenate([j.reshape(fs + (h, w, 3)), alpha.reshape(fs + (h, w, 1))], -1)
    else:
        out = j.reshape(fs + (h, w, 3))
    if layout.channel_axis is not None and layout.channel_axis != len(np.shape(image)) - 1:
        out = np.moveaxis(out, -1, layout.channel_axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def load_model(
    model: str | os.PathLike | None = None,
    *,
    method: str = "clearnet",
    device: str | torch.device = "auto",
    dcp_params: dcp.DCPParams | None = None,
    half: bool | None = None,
) -> Dehazer:
    """Load a method once for many images.

    ``model`` is a registry name (default: the bundled ``clearnet-default``), a local
    ``.safetensors`` path, or ``hf://org/repo/file.safetensors``; ignored for ``method="dcp"``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "dcp":
        return Dehazer("dcp", device=device, dcp_params=dcp_params)
    from .weights import resolve

    path, name = resolve(model or DEFAULT_MODEL)
    state, config, _ = read_weights(path)
    net = build_model(state, config, source=str(path))
    return Dehazer(
        "clearnet", net, device=device, model_name=name, sha256=sha256_file(path), half=half
    )


_CACHE: dict[tuple, Dehazer] = {}


def dehaze(
    image: Any,
    *,
    method: str = "clearnet",
    model: str | os.PathLike | Dehazer | None = None,
    device: str | torch.device = "auto",
    channel_axis: int | None | str = "auto",
    value_range: tuple[float, float] | None = None,
    airlight: Any = None,
    t0: float | None = None,
    temporal_smoothing: float = 0.0,
    with_raw: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DehazeResult:
    """Remove haze from an image or a stack of frames.

    ``image``: H×W (grey), H×W×1, H×W×3 (RGB), H×W×4 (RGBA, alpha passed through) or stacks
    …×H×W×C, as uint8, uint16, other integers, bool or float (numpy or dask). ``method`` is
    ``"clearnet"`` or ``"dcp"``; ``model`` a registry name, a path, an ``hf://`` address or a
    :class:`Dehazer` from :func:`load_model`. ``airlight`` overrides A; ``t0`` the lower bound of
    t in the recovery. The input is never modified.
    """
    if isinstance(model, Dehazer):
        dehazer = model
    else:
        key = (method, str(model) if model is not None else None, str(pick_device(device)))
        if method == "dcp":
            key = ("dcp", None, key[2])
        dehazer = _CACHE.get(key)
        if dehazer is None or (isinstance(model, str | Path) and Path(str(model)).is_file()):
            dehazer = load_model(model, method=method, device=device)
            _CACHE[key] = dehazer
    return dehazer.dehaze(
        image, channel_axis=channel_axis, value_range=value_range, airlight=airlight, t0=t0,
        temporal_smoothing=temporal_smoothing, with_raw=with_raw, progress=progress,
    )
