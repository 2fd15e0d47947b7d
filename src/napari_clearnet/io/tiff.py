"""TIFF as a viewer shows it: every series and page, orientation, MINISWHITE, palettes, planar
samples, grey+alpha; the declared size is checked before any pixel is decoded.

The photometric tag says what the samples are, and is obeyed: grey, RGB, palette, CMYK and YCbCr
are read as colours; 8-bit CIELab is converted to RGB (by Pillow); every other interpretation
(16-bit or ICC/ITU Lab, LogLuv, CFA raw sensor data, …) is refused by name rather than read as
RGB. Samples beyond the colours (GIS and multispectral "extra samples") are dropped with a
warning, except a first one that is alpha."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .images import ImageFile, check_size, read_pillow

__all__ = ["read_tiff"]


_ORIENT = {  # TIFF/EXIF orientation -> numpy steps on (y, x) to display it
    2: ("flip_x",), 3: ("flip_y", "flip_x"), 4: ("flip_y",), 5: ("transpose",),
    6: ("transpose", "flip_x"), 7: ("transpose", "flip_y", "flip_x"), 8: ("transpose", "flip_y"),
}


def _orient(arr: np.ndarray, orientation: int, y: int, x: int) -> np.ndarray:
    for step in _ORIENT.get(orientation, ()):
        arr = np.swapaxes(arr, y, x) if step == "transpose" else np.flip(arr, y if step == "flip_y" else x)
    return arr


#: photometric interpretations whose samples are read as they are (0/1 grey, 2 RGB, 3 palette;
#: 5 CMYK and 6 YCbCr go through Pillow, 8 CIELab too when it can convert it)
_READ = {0: 1, 1: 1, 2: 3, 3: 1, 6: 3}


def _photometric_name(photometric: int) -> str:
    import tifffile

    try:
        return f"{tifffile.PHOTOMETRIC(photometric).name} ({photometric})"
    except ValueError:
        return f"{photometric}"


def _extra_samples(arr: np.ndarray, colours: int, extras: tuple, path: Path) -> np.ndarray:
    """Keep the colour samples (and a first extra sample that is alpha, or the only extra one, as
    alpha: grey+alpha and RGBA as before); drop the rest, saying so."""
    n = arr.shape[-1]
    kinds = [int(e) for e in extras] or [0] * (n - colours)
    keep = colours + 1 if kinds and (kinds[0] in (1, 2) or n == colours + 1) else colours
    if n > keep:
        warnings.warn(f"{path.name}: {n - keep} extra sample(s) per pixel beyond its "
                      f"{'RGB' if colours == 3 else 'grey'}{' and alpha' if keep > colours else ''} are "
                      "dropped (GIS or multispectral data; dehazing reads the colours only)", UserWarning,
                      stacklevel=4)
    return arr[..., :keep]


def read_tiff(path: Path) -> ImageFile:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        series = [s for s in tf.series if not getattr(s.pages[0], "is_reduced", False)] or list(tf.series)
        if not series:
            raise ValueError("no image data (corrupt or empty TIFF)")
        page = series[0].pages[0]
        photometric = int(getattr(page, "photometric", 1))
        if photometric == 5 or (photometric == 6 and int(getattr(page, "compression", 1)) != 7):
            return read_pillow(path)  # CMYK, uncompressed YCbCr: Pillow converts them to RGB
        if photometric == 8 and int(getattr(page, "bitspersample", 0)) == 8 and page.samplesperpixel == 3:
            return _read_lab(path)
        if photometric not in _READ:
            raise ValueError(
                f"its photometric interpretation {_photometric_name(photometric)} with "
                f"{getattr(page, 'bitspersample', '?')}-bit samples is not supported (only grey, RGB, "
                "palette, CMYK, YCbCr and 8-bit CIELab are); reading its samples as RGB would give wrong "
                "colours: convert it to RGB first"
            )
        extras = tuple(getattr(page, "extrasamples", ()) or ())
        shapes = {tuple(s.shape) for s in series}
        if len(shapes) > 1:
            sizes = ", ".join("×".join(map(str, s.shape)) for s in series[:6])
            raise ValueError(
                f"holds {len(series)} images of different sizes ({sizes}); save each as its own file"
            )
        s0 = series[0]
        axes = s0.axes
        if "Y" not in axes or "X" not in axes:
            raise ValueError(f"no image plane in its axes {axes!r}")
        h, w = s0.shape[axes.index("Y")], s0.shape[axes.index("X")]
        itemsize = np.dtype(s0.dtype).itemsize if s0.dtype is not None else 8
        n_values = int(np.prod(s0.shape)) * len(series)
        check_size(max(1, n_values // max(1, h * w)), h, w, 1, itemsize)
        try:
            arrs = [s.asarray() for s in series]
        except ValueError as exc:
            if "imagecodecs" in str(exc):  # a codec tifffile lacks: Pillow may have it
                return read_pillow(path)
            raise
        arr = np.asarray(arrs[0] if len(arrs) == 1 else np.stack(arrs))
        if len(arrs) > 1:
            axes = "Q" + axes
        orientation = int(page.tags[274].value) if 274 in page.tags else 1
        icc = page.tags[34675].value if 34675 in page.tags else None
        lossless = int(getattr(page, "compression", 1)) not in (6, 7, 34892)  # old JPEG, JPEG, lossy
        colormap = getattr(page, "colormap", None)
    if arr.size == 0 or arr.ndim < 2:  # tifffile returns an empty array for some corrupt files
        raise ValueError("no image data (corrupt or empty TIFF)")
    if "S" in axes and axes.index("S") != len(axes) - 1:  # planar RGB: samples last
        arr = np.moveaxis(arr, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    if photometric == 0:  # MINISWHITE: 0 is white
        arr = _invert(arr, int(getattr(page, "bitspersample", arr.dtype.itemsize * 8)))
    elif photometric == 3 and colormap is not None and np.issubdtype(arr.dtype, np.integer):
        cmap = np.asarray(colormap)
        if arr.max(initial=0) >= cmap.shape[1]:
            raise ValueError("palette index beyond the colour map")
        arr = np.moveaxis(cmap[:, arr], 0, -1)  # palette: the colours a viewer shows
        axes = axes + "S"
    colours = _READ[photometric] if photometric != 3 else 3
    if arr.ndim >= 3 and "S" in axes and arr.shape[-1] > colours:
        arr = _extra_samples(arr, colours, extras, path)
    if arr.ndim >= 3 and "S" in axes and arr.shape[-1] == 2:  # grey + alpha -> RGBA, as for PNG
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)
    y, x = axes.index("Y"), axes.index("X")
    arr = _orient(arr, orientation, y, x)
    return ImageFile(np.ascontiguousarray(arr), "TIFF", icc, lossless)


def _read_lab(path: Path) -> ImageFile:
    """An 8-bit CIELab TIFF converted to RGB by Pillow (its samples are L*, a*, b*, not colours)."""
    img = read_pillow(path)
    from PIL import Image

    with Image.open(path) as im:
        if im.mode != "LAB" or getattr(im, "n_frames", 1) != 1:
            raise ValueError("CIELab TIFF that Pillow cannot convert (several pages, or not 8-bit "
                             "L*a*b*); convert it to RGB first")
        img.array = np.asarray(im.convert("RGB"))
    return img


def _invert(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == bool:
        return ~arr
    if arr.dtype.kind == "u":
        top = (1 << bits) - 1 if 0 < bits < arr.dtype.itemsize * 8 else np.iinfo(arr.dtype).max
        return (top - arr).astype(arr.dtype)
    raise ValueError(f"MINISWHITE TIFF with {arr.dtype} samples is not supported; save it as MINISBLACK")
