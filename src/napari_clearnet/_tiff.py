"""TIFF as a viewer shows it: every series and page, orientation, MINISWHITE, palettes, planar
samples, grey+alpha; the declared size is checked before any pixel is decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import ImageFile, check_size, read_pillow

__all__ = ["read_tiff"]


_ORIENT = {  # TIFF/EXIF orientation -> numpy steps on (y, x) to display it
    2: ("flip_x",), 3: ("flip_y", "flip_x"), 4: ("flip_y",), 5: ("transpose",),
    6: ("transpose", "flip_x"), 7: ("transpose", "flip_y", "flip_x"), 8: ("transpose", "flip_y"),
}


def _orient(arr: np.ndarray, orientation: int, y: int, x: int) -> np.ndarray:
    for step in _ORIENT.get(orientation, ()):
        arr = np.swapaxes(arr, y, x) if step == "transpose" else np.flip(arr, y if step == "flip_y" else x)
    return arr


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
    if arr.ndim >= 3 and "S" in axes and arr.shape[-1] == 2:  # grey + alpha -> RGBA, as for PNG
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)
    y, x = axes.index("Y"), axes.index("X")
    arr = _orient(arr, orientation, y, x)
    return ImageFile(np.ascontiguousarray(arr), "TIFF", icc, lossless)


def _invert(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == bool:
        return ~arr
    if arr.dtype.kind == "u":
        top = (1 << bits) - 1 if 0 < bits < arr.dtype.itemsize * 8 else np.iinfo(arr.dtype).max
        return (top - arr).astype(arr.dtype)
    raise ValueError(f"MINISWHITE TIFF with {arr.dtype} samples is not supported; save it as MINISBLACK")
