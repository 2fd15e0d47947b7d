"""examples/batch_napari.py runs headless on a tiny folder and never overwrites results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("napari")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "batch_napari.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=240, env=env)


def test_batch_napari_script_headless(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 56, 3)) * 100 + 140).astype(np.uint8)).save(src / "rgb.png")
    Image.fromarray((rng.random((40, 56)) * 100 + 140).astype(np.uint8)).save(src / "grey.png")

    res = _run(str(src), str(dst), "--method", "dcp", "--transmission")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in dst.iterdir())
    assert names == ["grey_dehazed.png", "grey_transmission.png", "provenance.json",
                     "rgb_dehazed.png", "rgb_transmission.png"]
    assert np.asarray(Image.open(dst / "rgb_dehazed.png")).shape == (40, 56, 3)
    assert np.asarray(Image.open(dst / "grey_dehazed.png")).shape == (40, 56)
    prov = json.loads((dst / "provenance.json").read_text())
    assert prov["rgb_dehazed.png"]["method"] == "dcp"
    assert "2/2 images dehazed" in res.stdout

    before = (dst / "rgb_dehazed.png").read_bytes()
    again = _run(str(src), str(dst), "--method", "dcp")
    assert again.returncode == 1 and "exists" in again.stderr
    assert (dst / "rgb_dehazed.png").read_bytes() == before

    missing = _run(str(tmp_path / "nope"), str(dst))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
