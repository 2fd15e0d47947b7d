"""Photo metadata an output keeps: the input's EXIF (date, camera, lens, GPS …) with its orientation
set to 1, since the pixels are read upright, and its XMP (``tiff:Orientation`` 1 too); EXIF's
Software tag names this program, and a result's provenance is noted as its UserComment. Unreadable
metadata is dropped, never an error (:mod:`.images` reads and writes the files)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .._version import __version__

__all__ = ["Meta", "output_exif", "photo_metadata", "processing_note", "software", "with_tag"]

_ORIENTATION, _SOFTWARE, _USER_COMMENT = 0x0112, 0x0131, 0x9286
_EXIF_IFD, _GPS_IFD, _MAKER_NOTE = 0x8769, 0x8825, 0x927C
#: what fits in a JPEG's APP1 segment
_MAX_EXIF = 65000
_XMP_ORIENTATION = (re.compile(rb'(tiff:Orientation\s*=\s*["\'])\d(["\'])'),
                    re.compile(rb"(<tiff:Orientation>\s*)\d(\s*</tiff:Orientation>)"))


def photo_metadata(im: Any) -> tuple[bytes | None, bytes | None]:
    """(EXIF, XMP) of an open Pillow image, to be kept by its outputs: EXIF with its orientation
    set to 1 (the pixels are read upright), the Exif and GPS sub-IFDs included; XMP with its
    ``tiff:Orientation`` set to 1 too. Unreadable metadata is dropped, never an error."""
    exif_bytes = None
    try:
        exif = im.getexif()
        if len(exif):
            if _ORIENTATION in exif:
                exif[_ORIENTATION] = 1
            for ifd in (_EXIF_IFD, _GPS_IFD):
                if ifd in exif:
                    exif.get_ifd(ifd)  # loaded, so that tobytes writes it
            exif_bytes = exif.tobytes()
            if len(exif_bytes) > _MAX_EXIF and _EXIF_IFD in exif:  # a long maker note
                exif.get_ifd(_EXIF_IFD).pop(_MAKER_NOTE, None)
                exif_bytes = exif.tobytes()
            if len(exif_bytes) > _MAX_EXIF:
                exif_bytes = None
    except Exception:  # a damaged EXIF block must not cost the pixels
        exif_bytes = None
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if xmp:
        for pattern in _XMP_ORIENTATION:
            xmp = pattern.sub(rb"\g<1>1\g<2>", xmp)
    return exif_bytes, (bytes(xmp) if xmp else None)


def software() -> str:
    """This program and its version, as an output's EXIF Software tag names it."""
    return f"napari-clearnet {__version__}"


def processing_note(provenance: Any) -> str | None:
    """One line saying what was done to the pixels, for an output's metadata."""
    if not provenance:
        return None
    keys = ("source_sha256", "method", "model", "sha256", "strength", "sky_protection",
            "temporal_smoothing", "t0", "airlight_override", "device")
    done = {k: provenance[k] for k in keys if k in provenance}
    return f"dehazed by {software()}: " + json.dumps(done, separators=(",", ":"), default=str)


def with_tag(exif: bytes, tag: int, value: Any) -> bytes:
    """``exif`` with ``tag`` set to ``value`` (its Exif and GPS sub-IFDs kept)."""
    from PIL import Image

    out = Image.Exif()
    out.load(exif)
    for ifd in (_EXIF_IFD, _GPS_IFD):
        if ifd in out:
            out.get_ifd(ifd)
    out[tag] = value
    return out.tobytes()


def output_exif(exif: bytes | None, software_text: str, note: str | None) -> bytes | None:
    """The EXIF of an output: the input's (already upright) with our Software tag and, as its
    UserComment, the processing note."""
    from PIL import Image

    out = Image.Exif()
    if exif:
        try:
            out.load(exif)
            for ifd in (_EXIF_IFD, _GPS_IFD):
                if ifd in out:
                    out.get_ifd(ifd)
        except Exception:
            out = Image.Exif()
    out[_SOFTWARE] = software_text
    if note:
        out.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"ASCII\0\0\0" + note.encode("ascii", "replace")
    try:
        data = out.tobytes()
    except Exception:
        return None
    return data if len(data) <= _MAX_EXIF else None


@dataclass
class Meta:
    """What :func:`~.images.write_image` keeps in an output: the input's EXIF and XMP, and the note."""

    exif: bytes | None = None
    xmp: bytes | None = None
    note: str | None = None
