"""_validate: options named as the caller spelled them, numbers and the dehazing parameters
checked in one place, and JSON that stays JSON (issue 12: F10, F13, F37)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from napari_clearnet._util.validate import json_text
from napari_clearnet.bench import runner as bench


def test_json_text_writes_non_finite_numbers_as_null() -> None:  # F10, F13, F37
    text = json_text({"a": float("nan"), "b": [float("inf"), -math.inf, 1.5], "c": np.float32("nan"),
                      "d": np.arange(2), "e": np.int64(3)})
    assert json.loads(text) == {"a": None, "b": [None, None, 1.5], "c": None, "d": [0, 1], "e": 3}
    assert bench.MAX_MEGAPIXELS >= 12


def test_options_are_named_as_the_caller_spelled_them() -> None:
    from napari_clearnet._util.validate import check_sky_protection, check_strength, cli_spelling, option

    assert option("sky_protection") == "sky_protection" and option("channel_axis", 0) == "channel_axis=0"
    assert option("value_range_hint") == "value_range=(low, high)" and option("out_dir") == "out_dir"
    with cli_spelling():
        assert option("sky_protection") == "--sky-protection"
        assert option("channel_axis", 0) == "--channel-axis 0"
        assert option("value_range_hint") == "--value-range LOW,HIGH" and option("out_dir") == "-o"
        with pytest.raises(ValueError, match=r"^--strength must be"):
            check_strength(4)
    assert option("overwrite") == "overwrite=True"  # back to Python outside the block
    with pytest.raises(ValueError, match=r"^sky_protection must be in \[0, 1\]"):
        check_sky_protection(2)


@pytest.mark.parametrize(
    ("check", "value", "match"),
    [("check_t0", float("nan"), "t0 must be a finite number"), ("check_t0", 2, r"t0 must be in \[0, 1\]"),
     ("check_strength", -0.1, "strength must be a number in"), ("check_strength", "x", "strength"),
     ("check_sky_protection", float("inf"), "sky_protection must be a finite number"),
     ("check_airlight", [0.5, 2.0, 0.5], r"airlight must be one or three numbers in \(0, 1\]"),
     ("check_airlight", "bright", "airlight"), ("check_airlight", [0.5, 0.5], "airlight")],
)
def test_dehazing_parameters_are_checked_in_one_place(check: str, value, match: str) -> None:
    from napari_clearnet._util import validate as _validate

    with pytest.raises(ValueError, match=match):
        getattr(_validate, check)(value)


def test_airlight_one_number_means_grey() -> None:
    from napari_clearnet._util.validate import check_airlight

    np.testing.assert_array_equal(check_airlight(0.8), np.float32([0.8, 0.8, 0.8]))
    assert check_airlight((0.7, 0.8, 0.9)).dtype == np.float32
