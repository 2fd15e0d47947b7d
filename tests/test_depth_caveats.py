"""Depth from a result: ``HazeDepth.from_result`` scales a uint8 image as the engine does (points
where sky protection raised t are left out either way), and every printed β and V carries the
caveat that the ± is the points' spread only, with a flag when the points disagree with the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import napari_clearnet as nc
from napari_clearnet._plugin.sample_data import hazy_motorcycle
from napari_clearnet.analysis.fit import BIAS_CAVEAT


@pytest.fixture(scope="module")
def scene():
    _, (hazy, _, _) = hazy_motorcycle(2.6)
    img = np.asarray(hazy, np.uint8)
    result = nc.dehaze(img, method="clearnet", device="cpu")
    plain = nc.dehaze(img, method="clearnet", device="cpu", sky_protection=0)
    raised = result.transmission - plain.transmission
    y, x = np.unravel_index(int(raised.argmax()), raised.shape)
    assert raised[y, x] > 0.3  # sky protection raised t there on purpose
    return img, result, [(int(x), int(y), 150.0), (412, 230, 85.0), (120, 300, 40.0)]


def test_from_result_scales_a_uint8_image_like_the_engine(scene):
    img, result, points = scene
    as_uint8 = nc.HazeDepth.from_result(result, img).fit(points)
    as_float = nc.HazeDepth.from_result(result, img / 255.0).fit(points)
    assert [r.used for r in as_uint8.readings] == [False, True, True]  # the protected sky point left out
    assert [r.used for r in as_float.readings] == [False, True, True]
    assert as_uint8.beta == pytest.approx(as_float.beta)
    with pytest.raises(ValueError, match="pass the image the result was made from"):
        nc.HazeDepth.from_result(result, img[:100])


def test_printed_beta_and_visibility_carry_the_caveat(scene, tmp_path, capsys):
    img, result, points = scene
    fit = nc.HazeDepth.from_result(result, img).fit(points[1:])
    assert BIAS_CAVEAT in fit.summary() and BIAS_CAVEAT in fit.to_dict()["caveats"]
    # points that disagree with t = exp(-beta d): flagged where the numbers are shown
    wild = nc.HazeDepth.from_result(result, img).fit([(412, 230, 85.0), (120, 300, 40.0), (600, 100, 2.0),
                                                      (50, 400, 900.0)])
    assert wild.disagrees and "disagree with the haze model" in wild.summary()
    from PIL import Image

    from napari_clearnet.cli import main

    Image.fromarray(img).save(tmp_path / "p.png")
    assert main(["depth", str(tmp_path / "p.png"), "-o", str(tmp_path / "d"), "--point", "412,230,85",
                 "--point", "120,300,40", "--method", "dcp"]) == 0
    out, err = capsys.readouterr()
    assert "the ± is the points' spread only" in err
    assert json.loads(out)["caveats"][-1] == BIAS_CAVEAT
