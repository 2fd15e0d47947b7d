"""run: the one loop every front end drives. It yields progress frame by frame and returns the
result; stopping it early leaves nothing behind; the airlight's source pixels come on the input's
grid, frame indices first."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _common import METHODS, dehazer, hazy, hazy_rgb

import napari_clearnet
from napari_clearnet import DehazeOptions
from napari_clearnet.core import engine
from napari_clearnet.core.run import DehazeResult, drive, run


@pytest.mark.parametrize("method", METHODS)
def test_run_yields_progress_and_returns_what_dehaze_returns(method: str) -> None:
    stack = np.stack([hazy(seed=s) for s in range(3)])
    gen = run(dehazer(method), stack, temporal_smoothing=0.5)
    seen = []
    while True:
        try:
            seen.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert isinstance(result, DehazeResult)
    same = dehazer(method).dehaze(stack, temporal_smoothing=0.5)
    np.testing.assert_array_equal(result.image, same.image)
    np.testing.assert_array_equal(result.airlight, same.airlight)
    calls = []
    drive(run(dehazer(method), stack), lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]  # drive reports frames done, not the start


def test_stopping_early_leaves_nothing_and_validation_comes_first() -> None:
    gen = run(dehazer("dcp"), np.stack([hazy(seed=s) for s in range(4)]))
    assert next(gen) == (0, 4)
    assert next(gen) == (1, 4)
    gen.close()  # what a cancelled napari worker does between frames
    bad = run(dehazer("dcp"), hazy(), t0=float("nan"))
    with pytest.raises(ValueError, match="t0"):
        next(bad)  # the options are checked (once, as a DehazeOptions) before any work or progress
    with pytest.raises(ValueError, match="t0"):
        DehazeOptions(t0=float("nan"))


def test_one_frozen_options_object_is_what_every_entry_point_reads() -> None:
    opts = DehazeOptions(strength=0.5, sky_protection=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.strength = 2.0  # type: ignore[misc]
    image = hazy()
    by_object = drive(run(dehazer("dcp"), image, opts))
    by_keywords = drive(run(dehazer("dcp"), image, strength=0.5, sky_protection=0))
    np.testing.assert_array_equal(by_object.image, by_keywords.image)
    np.testing.assert_array_equal(napari_clearnet.dehaze(image, opts, method="dcp", device="cpu").image,
                                  by_object.image)
    assert opts.replace(strength=1.0).strength == 1.0 and opts.strength == 0.5
    with pytest.raises(TypeError, match="unexpected keyword argument 'strenght'"):
        drive(run(dehazer("dcp"), image, strenght=0.5))


@pytest.mark.parametrize("method", METHODS)
def test_airlight_sources_on_the_input_grid(method: str) -> None:
    stack = np.stack([np.stack([hazy_rgb(60, 80, seed=2 * i + j) for j in range(2)]) for i in range(2)])
    res = drive(run(dehazer(method), stack, with_sources=True, provenance={"source_layer": "clip"}))
    pts = res.airlight_sources
    assert pts.dtype == np.float32 and pts.shape[1] == 4  # (frame, frame, row, column)
    assert {tuple(p) for p in pts[:, :2].astype(int)} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert pts[:, 2].min() >= -0.5 and pts[:, 2].max() <= 59.5 and pts[:, 3].max() <= 79.5
    per_frame = np.bincount((pts[:, 0] * 2 + pts[:, 1]).astype(int))
    assert per_frame.max() <= engine.MAX_SOURCES
    assert res.provenance["source_layer"] == "clip"
    # the haze thickens to the top: the most haze-opaque pixels are in the upper rows
    assert pts[:, 2].mean() < 30
    fixed = drive(run(dehazer(method), stack, with_sources=True, airlight=0.8))
    assert fixed.airlight_sources.shape == (0, 4)  # a given A comes from no pixel
    assert drive(run(dehazer(method), stack)).airlight_sources is None  # not asked for


def test_dcp_sources_are_capped_to_the_most_opaque() -> None:
    res = dehazer("dcp").dehaze(hazy_rgb(800, 900), with_sources=True)
    assert len(res.airlight_sources) == engine.MAX_SOURCES  # 720 candidates, the first 500 kept
    assert res.airlight_sources.shape == (engine.MAX_SOURCES, 2)
