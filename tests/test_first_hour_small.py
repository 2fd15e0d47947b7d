"""Small things a newcomer met: 12-bit data comes back in its own range, counts are singular when
they are one, scripts/make_figure.py leaves the checkout clean, and the napari batch example says
it needs a display."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
from _common import run_dcp

from napari_clearnet import io

REPO = Path(__file__).resolve().parents[1]


def test_twelve_bit_data_comes_back_in_its_own_range(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    scan = (1500 + rng.random((48, 64)) * 2000).astype(np.uint16)  # 12-bit values in a uint16 file
    scan[:, 32:] += 500
    tifffile.imwrite(tmp_path / "scan.tif", scan)
    assert run_dcp(tmp_path / "scan.tif", "-o", tmp_path / "out", "--value-range", "0,4095",
                   "--channel-axis", "none") == 0
    out = io.read_image(tmp_path / "out" / "scan_dehazed.tif")
    assert out.dtype == np.uint16 and out.max() <= 4095 and out.max() > 2000  # not stretched to 65535
    # as before where no range is given, and for 8-bit outputs: the format's full range
    assert run_dcp(tmp_path / "scan.tif", "-o", tmp_path / "o2", "--channel-axis", "none") == 0
    assert io.read_image(tmp_path / "o2" / "scan_dehazed.tif").max() > 4095
    # the counts of the summary
    assert "1 file written to" in capsys.readouterr().err


def test_make_figure_leaves_the_checkout_clean(tmp_path: Path) -> None:
    committed = (REPO / "docs" / "example.png").read_bytes()
    env = {**os.environ, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO / "src"), os.environ.get("PYTHONPATH"))))}
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "make_figure.py")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    made = tmp_path / "napari-clearnet-example.png"
    assert made.is_file() and str(made) in res.stdout
    assert (REPO / "docs" / "example.png").read_bytes() == committed
    # asked for a path that already holds the same figure: left alone
    before = made.stat().st_mtime_ns
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "make_figure.py"), str(made)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "up to date" in res.stdout and made.stat().st_mtime_ns == before


def test_napari_batch_example_says_it_needs_a_display() -> None:
    docs = (REPO / "docs" / "napari.md").read_text(encoding="utf-8")
    example = (REPO / "examples" / "batch_napari.py").read_text(encoding="utf-8")
    assert "xvfb-run -a python examples/batch_napari.py" in docs
    assert "headless" not in docs.split("A folder without a window", 1)[1].split("```", 1)[0]
    assert "xvfb-run -a" in example


def test_napari_batch_example_without_a_display_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    io.write_image(tmp_path / "in" / "a.png", np.full((8, 8, 3), 0.6, np.float32))
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    res = subprocess.run([sys.executable, str(REPO / "examples" / "batch_napari.py"), str(tmp_path / "in"),
                          str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    if not sys.platform.startswith("linux"):
        return
    assert res.returncode == 2 and "xvfb-run -a" in res.stderr and "Traceback" not in res.stderr
