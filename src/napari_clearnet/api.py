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

    Parameters
    ----------
    model : str or path, optional
        A registry name (default: the bundled ``clearnet-default``), a local ``.safetensors``
        path, or ``hf://org/repo/file.safetensors``; ignored for ``method="dcp"``.
    method : {"clearnet", "dcp"}, default "clearnet"
        The method to load.
    device : str or torch.device, default "auto"
        Where it runs.
    dcp_params : DCPParams, optional
        The Dark Channel Prior's parameters (``method="dcp"``).
    half : bool, optional
        bfloat16 inference (None: on CUDA only).
    compile : bool, default False
        ``torch.compile`` the network.
    tqdm_class : type, optional
        A tqdm-like bar for a download's bytes (e.g. ``napari.utils.progress``).

    Returns
    -------
    Dehazer
        The loaded method; pass it as ``model=`` or call its ``dehaze``.

    Raises
    ------
    napari_clearnet.errors.WeightsError
        Weights that are missing, corrupt, pickled, of another architecture, or that fail on a
        test image.
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

    Parameters
    ----------
    model : str or path, optional
        As for :func:`load_model`.
    method : {"clearnet", "dcp"}, default "clearnet"
        The method.
    device : str or torch.device, default "auto"
        Where it runs.
    tqdm_class : type, optional
        A tqdm-like bar for a download's bytes.

    Returns
    -------
    Dehazer
        The one loaded method for these arguments in this process.
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
    """Remove haze from an image or a stack of frames.

    Parameters
    ----------
    image : array-like
        H×W (grey), H×W×1, H×W×3 (RGB), H×W×4 (RGBA, alpha passed through) or stacks ...×H×W×C,
        as uint8, uint16, other integers, bool or float: numpy, dask (read frame by frame), torch,
        PIL images or nested lists. One value range is read for the whole array
        (:func:`napari_clearnet.core.arrays.pixel_range`). The input is never modified.
    options : DehazeOptions, optional
        The run options as one checked object; keyword arguments go on top of it.
    method : {"clearnet", "dcp"}, optional
        ClearNet (the default) or the classic Dark Channel Prior.
    model : str, path or Dehazer, optional
        A registry name, a ``.safetensors`` path, an ``hf://`` address, or a :class:`Dehazer` from
        :func:`load_model` (whose method ``method`` must match). Default: the bundled model.
    device : str or torch.device, default "auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    progress : callable, optional
        ``progress(done, total)`` is called after every frame.
    **kwargs
        Fields of :class:`DehazeOptions`: ``channel_axis``, ``value_range``, ``airlight`` (a fixed
        A), ``t0`` (the lower bound of t), ``temporal_smoothing`` in [0, 1) (steadies A and the
        haze amount along a stack), ``strip_pixels`` (bounds the memory of the full-resolution
        pass), ``batch_size``, ``sky_protection`` K (keeps flat regions within K of the airlight
        from being amplified into rings and noise; None: 0.2 for ClearNet, off for the DCP),
        ``strength`` (scales the optical depth: 1 = the model's estimate, 0 = no change, >1 =
        more), ``with_raw`` (adds the raw t), ``with_sources`` (adds A's source pixels).

    Returns
    -------
    DehazeResult
        ``image`` in the input's layout (float32 in [0, 1]), ``transmission``, ``airlight`` and
        ``provenance`` (method, model, sha256, device, parameters).

    Raises
    ------
    ValueError
        A layout, value range or option that cannot be right, named as the caller wrote it.
    napari_clearnet.errors.WeightsError
        Weights that cannot be loaded (also a ``ValueError`` and a ``ClearNetError``).

    Examples
    --------
    >>> import numpy as np, napari_clearnet as nc
    >>> hazy = np.full((32, 48, 3), 200, np.uint8)
    >>> nc.dehaze(hazy, method="dcp", device="cpu").image.shape
    (32, 48, 3)
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
