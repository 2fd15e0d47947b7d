"""TIFF photometrics are obeyed, never guessed (review 2026-12-07: G16): CIELab is converted to
RGB or refused by name, never read as R, G, B; RGB or grey with extra samples (GIS,
multispectral) is read as its colours, with a warning for what is dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from _common import cli
from _gen import hazy
from PIL import Image

from napari_clearnet import io


def test_cielab_tiff_is_converted_to_rgb_not_read_as_rgb(tmp_path: Path) -> None:
    # G16: L*a*b* samples were taken as R, G, B (mean error 75 of 255); Pillow converts them
    Image.fromarray(hazy()).convert("LAB").save(tmp_path / "lab.tif")
    assert np.abs(io.read_image(tmp_path / "lab.tif").astype(int) - hazy()).mean() < 2
    r = cli("dehaze", "lab.tif", "-o", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(("photometric", "kw", "name"), [
    ("cielab", {"dtype": np.uint16}, "CIELAB"),  # G16 (variants): Lab that Pillow cannot convert
    ("cfa", {}, "CFA"),  # raw sensor samples
])
def test_photometrics_that_are_not_colours_are_refused_by_name(tmp_path: Path, photometric: str, kw: dict,
                                                               name: str) -> None:
    data = np.dstack([hazy().astype(kw.get("dtype", np.uint8))] * (3 if photometric == "cielab" else 1))
    if photometric == "cfa":
        data = hazy()[..., 0]
    tifffile.imwrite(tmp_path / "x.tif", data, photometric=photometric)
    with pytest.raises(ValueError, match=rf"x\.tif: its photometric interpretation {name} \(\d+\).*not "
                                         r"supported.*convert it to RGB first"):
        io.read_image(tmp_path / "x.tif")


def test_rgb_with_extra_samples_is_read_as_rgb_with_a_warning_not_called_ambiguous(tmp_path: Path) -> None:
    # G16: RGB + 2 extra samples was refused as "ambiguous … pass --channel-axis none"
    tifffile.imwrite(tmp_path / "rgbx.tif", np.dstack([hazy(), np.full((64, 80, 2), 9, np.uint8)]),
                     photometric="rgb", extrasamples=["unspecified", "unspecified"])
    with pytest.warns(UserWarning, match=r"rgbx\.tif: 2 extra sample\(s\) per pixel beyond its RGB are"):
        np.testing.assert_array_equal(io.read_image(tmp_path / "rgbx.tif"), hazy())
    r = cli("dehaze", "rgbx.tif", "-o", "out", cwd=tmp_path)
    assert r.returncode == 0 and "ambiguous" not in r.stderr, r.stderr
    # variants: a first extra sample that is alpha stays alpha; grey + extras stays grey
    tifffile.imwrite(tmp_path / "rgbax.tif", np.dstack([hazy(), np.full((64, 80, 2), 200, np.uint8)]),
                     photometric="rgb", extrasamples=["unassalpha", "unspecified"])
    with pytest.warns(UserWarning, match=r"1 extra sample\(s\) per pixel beyond its RGB and alpha"):
        assert io.read_image(tmp_path / "rgbax.tif").shape == (64, 80, 4)
    grey = hazy()[..., 1]
    tifffile.imwrite(tmp_path / "greyx.tif", np.dstack([grey, np.full((64, 80, 2), 9, np.uint8)]),
                     photometric="minisblack", extrasamples=["unspecified", "unspecified"])
    with pytest.warns(UserWarning, match="beyond its grey"):
        np.testing.assert_array_equal(io.read_image(tmp_path / "greyx.tif")[..., 0], grey)
