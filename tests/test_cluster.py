"""Batches on a Dask cluster (issue 14): a LocalCluster of two worker processes gives the same
outputs as one process, names a failed file while the rest go on, and resumes with skip_existing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _common import photo, write_clip

pytest.importorskip("distributed")

from napari_clearnet import io
from napari_clearnet.batch import dehaze_files
from napari_clearnet.cli import main
from napari_clearnet.cluster import connect
from napari_clearnet.files import read_tag
from napari_clearnet.video import VideoReader


def _inputs(root: Path) -> Path:
    src = root / "in"
    for i in range(3):
        photo(src / f"p{i}.png", i)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    write_clip(src / "clip.mp4", n=8, audio=True)
    return src


def _same(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name.endswith(".mp4"):
            fa, fb = VideoReader(a / name), VideoReader(b / name)
            assert len(fa) == len(fb)
            for x, y in zip(fa, fb, strict=True):
                np.testing.assert_array_equal(x, y)
        elif name.endswith(".png"):
            np.testing.assert_array_equal(io.read_image(a / name), io.read_image(b / name))
        assert read_tag(a / name) == read_tag(b / name)


def test_local_cluster_matches_one_process_names_failures_and_resumes(tmp_path: Path, capsys) -> None:
    src = _inputs(tmp_path)
    args = ["dehaze", str(src), "--save-transmission", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "one")]) == 1
    environ = dict(os.environ)
    assert main([*args, "-o", str(tmp_path / "two"), "--workers", "2"]) == 1
    assert dict(os.environ) == environ  # Dask's worker settings (OMP_NUM_THREADS=1, ...) stay theirs
    err = capsys.readouterr().err
    assert err.count(f"error: {src / 'broken.png'}:") == 2  # named, and the rest went on
    assert "8 files written to" in err.splitlines()[-1]
    _same(tmp_path / "one", tmp_path / "two")

    # resume through the API: only what is missing is made again, by the cluster's workers
    (tmp_path / "two" / "p1_dehazed.png").unlink()
    (tmp_path / "two" / "clip_dehazed.mp4").unlink()
    with connect(workers=2) as client:
        loaded = client.run(lambda: len(__import__("napari_clearnet.engine").engine._CACHE))
        assert list(loaded.values()) == [0, 0]  # nothing loaded before the batch
        report = dehaze_files([src], tmp_path / "two", client=client, skip_existing=True,
                              save_transmission=True, progress=False)
        loaded = client.run(lambda: len(__import__("napari_clearnet.engine").engine._CACHE))
    assert list(loaded.values()) == [1, 1]  # each worker loaded the model once
    assert sorted(p.name for p in report.written) == ["clip_dehazed.mp4", "p1_dehazed.png"]
    assert len(report.skipped) == 2 and [f for f, _ in report.failed] == [str(src / "broken.png")]
    _same(tmp_path / "one", tmp_path / "two")
