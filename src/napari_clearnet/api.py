"""The public front door: :func:`dehaze`, :func:`load_model`, :func:`cached_model`.

One layer above the core and the weights: :func:`load_model` gets a network from
:func:`napari_clearnet.weights.load` (one call: which file, read, build, checksum) and wraps it in a
:class:`~napari_clearnet.core.engine.Dehazer`; :func:`dehaze` drives the one run loop
(:func:`napari_clearnet.core.run.run`) on it. Scripts, the CLI, video, batches and napari all come
through here for a loaded method.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import weights
from ._util.validate import option
from .core import dcp
from .core.checks import probe_weights
from .core.devices import pick_device
from .core.engine import Dehazer, check_method
from .core.options import DehazeOptions
from .core.run import DehazeResult

__all__ = ["cached_model", "dehaze", "load_model", "resolve_dehazer"]

def load_model(
    model: str | os.PathLike | None = None,
    *,
    method: str = "clearnet",
    device: str | torch.device = "auto",
    dcp_params: dcp.DCPParams | None = None,
    half: bool | None = None,
    compile: bool = False,
    tqdm_class: type | None = None,
) -> Dehazer:
    """Load a method once for many images.

    ``model`` is a registry name (default: the bundled ``clearnet-default``), a local
    ``.safetensors`` path, or ``hf://org/repo/file.safetensors``; ignored for ``method="dcp"``.
    ``tqdm_class`` (e.g. ``napari.utils.progress``) shows a download's bytes.
    """
    if check_method(method) == "dcp":
        return Dehazer("dcp", device=device, dcp_params=dcp_params)
    w = weights.load(model, tqdm_class=tqdm_class)
    dehazer = Dehazer("clearnet", w.net, device=device, model_name=w.name, sha256=w.sha256, half=half,
                      compile=compile)
    probe_weights(dehazer, str(w.path))  # finite weights can still overflow: refused before any image
    return dehazer


#: loaded methods per (method, model, device[, file stamp]): the one cache of the package, shared
#: by :func:`dehaze`, the napari widgets and the napari commands
_CACHE: dict[tuple, Dehazer] = {}
_CACHE_LOCK = threading.Lock()


def cached_model(
    model: str | os.PathLike | None = None, *, method: str = "clearnet", device: str | torch.device = "auto",
    tqdm_class: type | None = None,
) -> Dehazer:
    """:func:`load_model`, but each (method, model, device) is loaded once per process.

    A local weights file is keyed by its size and modification time as well, so a file retrained
    in between is loaded again while an unchanged one is reused. Thread-safe: a GUI worker and a
    script may ask at the same time (loading a Hub model not cached yet downloads it, so call this
    from a worker thread in a GUI).
    """
    dev = str(pick_device(device))
    name = None if model is None or method == "dcp" else str(model)
    key: tuple = (method, name, dev)
    if name is not None and Path(name).is_file():
        st = Path(name).stat()
        key += (st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        dehazer = _CACHE.get(key)
        if dehazer is None:
            dehazer = load_model(model, method=method, device=device, tqdm_class=tqdm_class)
            _CACHE[key] = dehazer
        return dehazer


def dehaze(
    image: Any,
    options: DehazeOptions | None = None,
    *,
    method: str | None = None,
    model: str | os.PathLike | Dehazer | None = None,
    device: str | torch.device = "auto",
    progress: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> DehazeResult:
    """Remove haze from an image or a stack of frames; returns a :class:`~napari_clearnet.DehazeResult`.

    ``image``: H×W (grey), H×W×1, H×W×3 (RGB), H×W×4 (RGBA, alpha passed through) or stacks
    …×H×W×C, as uint8, uint16, other integers, bool or float (numpy, dask, torch, PIL images or
    nested lists; see :func:`arrays.pixel_range` for how values are read). ``method`` is
    ``"clearnet"`` (the default) or ``"dcp"``; ``model`` a registry name, a path, an ``hf://``
    address or a :class:`Dehazer` from :func:`load_model` (whose method ``method`` must match).
    ``progress(done, total)`` is called after every frame.

    ``options`` (a :class:`~napari_clearnet.DehazeOptions`, checked when made) holds the run
    options below; keyword arguments go on top of it. Keyword arguments: ``channel_axis``, ``value_range``;
    ``airlight`` overrides A; ``t0`` the lower bound of t in the recovery; ``temporal_smoothing``
    in [0, 1) steadies A and the haze amount along a stack; ``strip_pixels`` bounds the memory of
    the full-resolution pass (lower it for huge images on a small GPU); ``batch_size`` frames of a
    stack share one estimate; ``sky_protection`` K keeps flat regions within K of the airlight
    (bright skies, dense fog) from being amplified into rings, blotches and noise, at the price of
    leaving more haze there (``None``: the method's default, :data:`DEFAULT_SKY_PROTECTION`, 0.2
    for ClearNet and off for the DCP; 0 = off); ``strength`` scales the estimated haze amount (the
    optical depth −ln t): 1 = the model's estimate, 0 = no change, >1 = more, like a photo
    editor's dehaze slider; ``with_raw`` adds the method's raw t, ``with_sources`` the airlight's
    source pixels. The input is never modified.
    """
    return resolve_dehazer(method, model, device).dehaze(image, options, progress=progress, **kwargs)


def resolve_dehazer(method: str | None, model: str | os.PathLike | Dehazer | None, device: str | torch.device
                    ) -> Dehazer:
    """The loaded method the API's ``method``, ``model`` and ``device`` arguments name: a given
    :class:`Dehazer` (whose method ``method`` must match), else one from :func:`cached_model`."""
    if method is not None:
        check_method(method)
    if method == "dcp" and model is not None and not isinstance(model, Dehazer):  # G24: never ignored
        raise ValueError(f"{option('model')} {model!r} is given, but method 'dcp' uses no weights; leave "
                         f"out {option('model')}, or use method 'clearnet' with it")
    if isinstance(model, Dehazer):
        if method is not None and method != model.method:
            raise ValueError(
                f"method={method!r} but the given Dehazer runs {model.method!r}; pass a Dehazer of "
                f"load_model(method={method!r}) or leave method out"
            )
        return model
    return cached_model(model, method=method or "clearnet", device=device)
