"""``clearnet``: the command line's options (their choices come from the core), exit codes, the
flag names in its messages, and terminating signals (issue 12: F8, F9, F20, F26, F29, F34)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _common import cli, photo, run_dcp
from PIL import Image

from napari_clearnet import io
from napari_clearnet._plugin.sample_data import _motorcycle, make_hazy
from napari_clearnet.cli import main


def test_overwrite_and_skip_existing_are_exclusive(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run_dcp(folder, "-o", tmp_path / "o", "--overwrite", "--skip-existing")
    assert exc.value.code == 2


def test_bad_model_and_device_exit_2_with_a_message(folder: Path, tmp_path: Path, capsys) -> None:
    args = ["dehaze", str(folder / "a.png"), "-o", str(tmp_path / "o"), "--no-progress"]
    assert main([*args, "--model", str(tmp_path / "missing.safetensors")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    assert main([*args, "--device", "quantum"]) == 2
    assert "unknown device" in capsys.readouterr().err
    assert main(["dehaze", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_sky_protection_option(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    photo = 0.85 * 0.6 + 0.4 * rng.random((32, 48, 3))  # hazy ground ...
    photo[:12] = 0.85 + np.linspace(-0.03, 0.03, 48)[None, :, None]  # ... under a bright sky
    io.write_image(tmp_path / "sky.png", photo)
    assert run_dcp(tmp_path / "sky.png", "-o", tmp_path / "plain", "--sky-protection", "0") == 0
    kept_dir = tmp_path / "kept"
    assert run_dcp(tmp_path / "sky.png", "-o", kept_dir, "--sky-protection", "0.3", "--save-airlight") == 0
    data = json.loads((tmp_path / "kept" / "sky_airlight.json").read_text())
    assert data["provenance"]["sky_protection"] == pytest.approx(0.3)
    plain = io.read_image(tmp_path / "plain" / "sky_dehazed.png").astype(float)
    kept = io.read_image(tmp_path / "kept" / "sky_dehazed.png").astype(float)
    assert np.ptp(kept[:10].mean(-1), 1).mean() < np.ptp(plain[:10].mean(-1), 1).mean()  # calmer sky
    assert run_dcp(tmp_path / "sky.png", "-o", tmp_path / "bad", "--sky-protection", "2") == 2
    assert "--sky-protection must be in [0, 1]" in capsys.readouterr().err


def test_cli_options_for_what_it_refuses(tmp_path: Path) -> None:  # F26, F9
    rgb = (np.random.default_rng(0).random((48, 64, 3)) * 200).astype(np.uint8)
    chw = np.moveaxis(rgb, -1, 0)
    tifffile.imwrite(tmp_path / "planar.tif", chw, photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "chw.tif", chw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "i32.tif", (rgb.astype(np.int32) * 1000))
    tifffile.imwrite(tmp_path / "f.tif", rgb.astype(np.float32) / rgb.max() * 1.01)
    p = cli("dehaze", "planar.tif", "chw.tif", "i32.tif", "f.tif", "-o", "out", cwd=tmp_path)
    assert p.returncode == 1
    assert "chw.tif: shape (3, 48, 64) is ambiguous: pass --channel-axis 0" in p.stderr
    assert "--channel-axis none" in p.stderr
    assert "i32.tif: image values reach" in p.stderr and "pass --value-range LOW,HIGH" in p.stderr
    assert "f.tif: float image values reach" in p.stderr and "--value-range 0,1" in p.stderr
    assert "channel_axis" not in p.stderr and "value_range" not in p.stderr  # CLI words only
    assert tifffile.imread(tmp_path / "out" / "planar_dehazed.tif").shape == (48, 64, 3)  # read as RGB
    p = cli("dehaze", "chw.tif", "-o", "out", "--channel-axis", "0", "--suffix", "_c", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "chw_c.tif"),
                                  tifffile.imread(tmp_path / "out" / "planar_dehazed.tif"))
    p = cli("dehaze", "i32.tif", "-o", "out", "--value-range", "0,255000", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = cli("dehaze", "f.tif", "-o", "out", "--value-range", "0,1", cwd=tmp_path)
    assert p.returncode == 0 and io.read_image(tmp_path / "out" / "f_dehazed.tif").mean() > 40
    assert run_dcp(tmp_path / "f.tif", "-o", tmp_path / "o2", "--value-range", "1,0") == 2


def test_devices_quality_and_odd_inputs_via_the_cli(tmp_path: Path) -> None:  # F20, F29, F34
    photo(tmp_path / "photo.png")
    for args in (["--device", "mps"], ["--device", "xpu"], ["--device", "meta"],
                 ["--method", "dcp", "--device", "mps"]):
        p = cli("dehaze", "photo.png", "-o", "out", *args, cwd=tmp_path)
        assert p.returncode == 2 and "Traceback" not in p.stderr and "'cpu'" in p.stderr, (args, p.stderr)
    os.mkfifo(tmp_path / "fifo.png")
    p = cli("dehaze", "fifo.png", "photo.png", "-o", "out", "--format", "jpg", "--quality", "60",
            cwd=tmp_path, timeout=60)
    assert p.returncode == 1 and "fifo.png: not a regular file" in p.stderr, p.stderr
    assert Image.open(tmp_path / "out" / "photo_dehazed.jpg").quantization[0][0] > 5
    assert run_dcp(tmp_path / "photo.png", "-o", tmp_path / "o", "--quality", "101") == 2


def _scene(beta: float = 1.5, side: int = 200) -> np.ndarray:
    """The sample photo (real depth from stereo) hazed at ``beta``, reduced for speed."""
    clear, depth = _motorcycle()
    step = max(1, max(clear.shape[:2]) // side)
    hazy, _ = make_hazy(clear[::step, ::step], depth[::step, ::step], beta)
    return hazy


def test_cli_strength(tmp_path) -> None:
    x = _scene(side=80)
    src = io.write_image(tmp_path / "in" / "scene.png", x)
    out = tmp_path / "out"
    run = [sys.executable, "-m", "napari_clearnet.cli", "dehaze", str(src), "-o", str(out), "--no-progress"]
    proc = subprocess.run([*run, "--strength", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(io.read_image(out / "scene_dehazed.png"), io.read_image(src))
    proc = subprocess.run([*run, "--strength", "-1", "--overwrite"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "--strength" in proc.stderr and "Traceback" not in proc.stderr


def test_choices_come_from_the_core(capsys) -> None:
    from napari_clearnet.choices import BIT_DEPTHS, FORMATS, METHODS

    with pytest.raises(SystemExit):
        main(["dehaze", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for choices in (METHODS, FORMATS, BIT_DEPTHS):
        assert "{" + ",".join(choices) + "}" in text


def test_messages_name_flags_on_the_command_line_and_arguments_in_python(tmp_path: Path, capsys) -> None:
    """The same mistakes: the CLI names its flags; Python callers of batch get their arguments."""
    from napari_clearnet import batch

    photo(tmp_path / "a.png")
    for flags, cli_words, py_kwargs, py_words in (
        (["--sky-protection", "2"], "--sky-protection must be in", {"sky_protection": 2},
         "sky_protection must be"),
        (["--quality", "0"], "--quality must be in", {"quality": 0}, "quality must be in"),
        (["--suffix", "a/b"], "--suffix must not contain", {"suffix": "a/b"}, "suffix must not contain"),
        (["--bit-depth", "16", "--format", "jpg"], "--bit-depth 16 needs --format",
         {"bit_depth": "16", "format": "jpg"}, "bit_depth='16' needs format"),
    ):
        assert run_dcp(tmp_path / "a.png", "-o", tmp_path / "out", *flags) == 2
        assert cli_words in capsys.readouterr().err
        with pytest.raises(batch.BatchError) as exc:
            batch.dehaze_files([tmp_path / "a.png"], tmp_path / "out", method="dcp", **py_kwargs)
        assert py_words in str(exc.value) and "--" not in str(exc.value)

