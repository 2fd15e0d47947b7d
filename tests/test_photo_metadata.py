"""Photographs keep their metadata: EXIF (date, camera, lens, GPS) and XMP go to the dehazed file,
the orientation is applied to the pixels and written as 1, and the output says what made it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _common import run_dcp
from PIL import Image

from napari_clearnet import io

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmlns:tiff="http://ns.adobe.com/'
       b'tiff/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" tiff:Orientation="6" xmp:Rating="4"/>'
       b"</rdf:RDF></x:xmpmeta>")


def camera_jpeg(path: Path, orientation: int = 6) -> np.ndarray:
    """A 64×40 (W×H) JPEG as stored, shown rotated by ``orientation``, with a camera's EXIF and XMP;
    returns the stored pixels."""
    yy, xx = np.mgrid[0:40, 0:64]
    stored = np.stack([120 + xx * 2, 140 + yy, 170 + 0 * xx], axis=-1).astype(np.uint8)
    stored[:8, :8] = 20  # a dark corner: top left as stored
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "Canon", "EOS R5", "2026:12:01 10:11:12"
    exif[0x0112] = orientation
    sub = exif.get_ifd(EXIF_IFD)
    sub[0x9003] = "2026:12:01 10:11:12"
    sub[0xA434] = "RF 24-105mm F4 L IS USM"
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 29.6), "E", (2.0, 17.0, 40.2)
    Image.fromarray(stored).save(path, exif=exif.tobytes(), xmp=XMP, quality=95)
    return stored


@pytest.mark.parametrize(("fmt", "name"), [("same", "cam_dehazed.jpg"), ("tif", "cam_dehazed.tif"),
                                           ("png", "cam_dehazed.png")])
def test_exif_date_camera_lens_and_gps_survive_dehazing(tmp_path: Path, fmt: str, name: str) -> None:
    stored = camera_jpeg(tmp_path / "cam.jpg")
    assert run_dcp(tmp_path / "cam.jpg", "-o", tmp_path / "out", "--format", fmt) == 0
    with Image.open(tmp_path / "out" / name) as im:
        exif = im.getexif()
        pixels = np.asarray(im.convert("RGB"))
        xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp") or exif.get(700)
    assert (exif[0x010F], exif[0x0110], exif[0x0132]) == ("Canon", "EOS R5", "2026:12:01 10:11:12")
    sub = exif.get_ifd(EXIF_IFD)
    assert sub[0x9003] == "2026:12:01 10:11:12" and sub[0xA434] == "RF 24-105mm F4 L IS USM"
    gps = exif.get_ifd(GPS_IFD)
    assert gps[1] == "N" and tuple(map(float, gps[2])) == (48.0, 51.0, 29.6) and gps[3] == "E"
    # orientation 6 (rotate 90° clockwise to show): written upright, orientation 1
    assert exif[0x0112] == 1
    assert pixels.shape[:2] == stored.shape[1::-1]
    assert pixels[:8, -8:].mean() < pixels.mean() - 40  # the stored top-left corner is now top right
    # the processing is noted: Software names this program, the UserComment what it did
    assert "napari-clearnet" in exif[0x0131]
    if name.endswith((".jpg", ".png")):
        assert exif[0x0131].startswith("napari-clearnet 0.")
    note = sub[0x9286]
    assert b"dehazed by napari-clearnet" in note and b'"method":"dcp"' in note
    xmp = xmp.encode() if isinstance(xmp, str) else bytes(xmp or b"")
    assert b'tiff:Orientation="1"' in xmp and b'xmp:Rating="4"' in xmp


def test_sixteen_bit_outputs_keep_the_exif_too(tmp_path: Path) -> None:
    camera_jpeg(tmp_path / "cam.jpg", orientation=1)
    assert run_dcp(tmp_path / "cam.jpg", "-o", tmp_path / "out", "--format", "png", "--bit-depth", "16") == 0
    with Image.open(tmp_path / "out" / "cam_dehazed.png") as im:
        exif = im.getexif()
    assert exif[0x010F] == "Canon" and exif.get_ifd(GPS_IFD)[1] == "N"
    assert io.read_image(tmp_path / "out" / "cam_dehazed.png").dtype == np.uint16


def test_files_without_metadata_and_damaged_exif_still_work(tmp_path: Path) -> None:
    Image.fromarray(np.full((20, 30, 3), 150, np.uint8)).save(tmp_path / "plain.png")
    assert io.load_image(tmp_path / "plain.png").exif is None
    with open(tmp_path / "bad.jpg", "wb") as f:  # an APP1 "Exif" segment of garbage
        Image.fromarray(np.full((20, 30, 3), 150, np.uint8)).save(f, format="JPEG",
                                                                 exif=b"Exif\0\0II*\0\xff\xff\xff\xff")
    assert io.load_image(tmp_path / "bad.jpg").array.shape == (20, 30, 3)
    assert run_dcp(tmp_path / "plain.png", tmp_path / "bad.jpg", "-o", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "plain_dehazed.png") as im:
        assert im.getexif()[0x0131].startswith("napari-clearnet")
