"""``clearnet dehaze``: folders with bad files and existing outputs, options, exit codes, resume."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_clearnet import batch, engine, io
from napari_clearnet.cli import main


def write_png(path: Path, seed: int = 0, size: tuple[int, int] = (24, 32), dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    arr = (rng.random((*size, 3)) * top).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    if dtype == np.uint8:
        Image.fromarray(arr).save(path)
    else:
        io.write_image(path, arr.astype(np.float32) / 65535, bit_depth=16)
    return arr


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three good images, one corrupt PNG and a text file that is not an image."""
    src = tmp_path / "in"
    for i, name in enumerate(("a.png", "b.png", "c.jpg")):
        write_png(src / name, i)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (src / "notes.txt").write_text("not an image")
    return src


def run(*args: str | Path) -> int:
    return main(["dehaze", *map(str, args), "--method", "dcp", "--no-progress"])


def test_folder_with_corrupt_file_and_existing_output(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_dehazed.png").write_bytes(b"user data")
    assert run(folder, "-o", out) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err  # the corrupt one is named
    assert "b_dehazed.png" in err and "--overwrite" in err
    assert (out / "b_dehazed.png").read_bytes() == b"user data"  # untouched
    for name in ("a_dehazed.png", "c_dehazed.jpg"):
        assert io.read_image(out / name).shape == (24, 32, 3)
    assert not (out / "notes_dehazed.png").exists()  # non-image files in folders are ignored

    assert run(folder / "a.png", folder / "b.png", "-o", out, "--overwrite") == 0
    assert io.read_image(out / "b_dehazed.png").shape == (24, 32, 3)
    assert not list(out.glob("*.part*")) and not list(out.glob(".*"))


def test_skip_existing_carries_on_silently(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run(folder / "a.png", "-o", out) == 0
    before = (out / "a_dehazed.png").stat().st_mtime_ns
    capsys.readouterr()
    assert run(folder / "a.png", folder / "b.png", "-o", out, "--skip-existing") == 0
    err = capsys.readouterr().err
    assert "exists" not in err and "1 inputs skipped" in err
    assert (out / "a_dehazed.png").stat().st_mtime_ns == before
    assert (out / "b_dehazed.png").is_file()


def test_overwrite_and_skip_existing_are_exclusive(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run(folder, "-o", tmp_path / "o", "--overwrite", "--skip-existing")
    assert exc.value.code == 2


def test_transmission_and_airlight_outputs(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(folder / "a.png", "-o", out, "--save-transmission", "--save-airlight") == 0
    t = io.read_image(out / "a_transmission.png")
    assert t.shape == (24, 32) and t.dtype == np.uint16 and t.min() > 0
    data = json.loads((out / "a_airlight.json").read_text())
    assert len(data["airlight"]) == 3 and all(0 < v <= 1 for v in data["airlight"])
    assert data["provenance"]["method"] == "dcp" and data["source"].endswith("a.png")


def test_sky_protection_option(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    photo = 0.85 * 0.6 + 0.4 * rng.random((32, 48, 3))  # hazy ground ...
    photo[:12] = 0.85 + np.linspace(-0.03, 0.03, 48)[None, :, None]  # ... under a bright sky
    io.write_image(tmp_path / "sky.png", photo)
    assert run(tmp_path / "sky.png", "-o", tmp_path / "plain", "--sky-protection", "0") == 0
    kept_dir = tmp_path / "kept"
    assert run(tmp_path / "sky.png", "-o", kept_dir, "--sky-protection", "0.3", "--save-airlight") == 0
    data = json.loads((tmp_path / "kept" / "sky_airlight.json").read_text())
    assert data["provenance"]["sky_protection"] == pytest.approx(0.3)
    plain = io.read_image(tmp_path / "plain" / "sky_dehazed.png").astype(float)
    kept = io.read_image(tmp_path / "kept" / "sky_dehazed.png").astype(float)
    assert np.ptp(kept[:10].mean(-1), 1).mean() < np.ptp(plain[:10].mean(-1), 1).mean()  # calmer sky
    assert run(tmp_path / "sky.png", "-o", tmp_path / "bad", "--sky-protection", "2") == 2
    assert "--sky-protection must be in [0, 1]" in capsys.readouterr().err


def test_globs_suffix_and_format(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(str(folder / "*.png"), "-o", out, "--suffix", "_clear", "--format", "tif") == 1  # broken.png
    assert sorted(p.name for p in out.iterdir()) == ["a_clear.tif", "b_clear.tif"]
    assert tifffile.imread(out / "a_clear.tif").dtype == np.uint8
    assert run(str(folder / "*.nothing"), "-o", out) == 2


def test_sixteen_bit_in_sixteen_bit_out(tmp_path: Path) -> None:
    src = write_png(tmp_path / "deep.png", dtype=np.uint16)
    assert src.dtype == np.uint16
    out = tmp_path / "out"
    assert run(tmp_path / "deep.png", "-o", out) == 0
    assert io.read_image(out / "deep_dehazed.png").dtype == np.uint16  # --bit-depth same
    assert run(tmp_path / "deep.png", "-o", out, "--bit-depth", "8", "--suffix", "_8") == 0
    assert io.read_image(out / "deep_8.png").dtype == np.uint8
    # 16-bit JPEG does not exist: refused up front with exit 2
    assert run(tmp_path / "deep.png", "-o", out, "--bit-depth", "16", "--format", "jpg") == 2


def test_collisions_never_overwrite_each_other(tmp_path: Path, capsys) -> None:
    a = write_png(tmp_path / "a" / "x.png", 1)
    b = write_png(tmp_path / "b" / "x.png", 2)
    write_png(tmp_path / "a" / "y.png", 3)
    Image.fromarray(a).save(tmp_path / "a" / "y.jpg")
    out = tmp_path / "out"
    assert run(tmp_path / "a", tmp_path / "b", "-o", out, "--format", "png") == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_x_dehazed.png", "b_x_dehazed.png", "y_jpg_dehazed.png", "y_png_dehazed.png"]
    assert "same output name" in capsys.readouterr().err
    assert not np.array_equal(io.read_image(out / "a_x_dehazed.png"), io.read_image(out / "b_x_dehazed.png"))
    del b
    # the same inputs map to the same names on the next run, so --skip-existing finds them
    assert run(tmp_path / "a", tmp_path / "b", "-o", out, "--format", "png", "--skip-existing") == 0
    assert len(list(out.iterdir())) == 4


def test_output_never_replaces_its_input(tmp_path: Path, capsys) -> None:
    write_png(tmp_path / "x.png")
    before = (tmp_path / "x.png").read_bytes()
    assert run(tmp_path / "x.png", "-o", tmp_path, "--suffix", "", "--overwrite") == 2
    assert "replace the input" in capsys.readouterr().err
    assert (tmp_path / "x.png").read_bytes() == before


def test_rerun_into_the_input_folder_skips_own_outputs(tmp_path: Path) -> None:
    write_png(tmp_path / "x.png")
    assert run(tmp_path, "-o", tmp_path, "--save-transmission") == 0
    assert run(tmp_path, "-o", tmp_path, "--save-transmission", "--skip-existing") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "x_dehazed.png", "x_transmission.png"]


def test_multi_page_tiff_stack(tmp_path: Path) -> None:
    stack = (np.random.default_rng(0).random((3, 20, 24, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", stack)
    out = tmp_path / "out"
    assert run(tmp_path / "s.tif", "-o", out, "--save-transmission") == 0
    assert tifffile.imread(out / "s_dehazed.tif").shape == stack.shape
    assert tifffile.imread(out / "s_transmission.tif").shape == (3, 20, 24)
    assert run(tmp_path / "s.tif", "-o", out, "--format", "png", "--suffix", "_p") == 1  # needs tif


def test_output_folder_under_a_file_is_named(folder: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run(folder / "a.png", "-o", blocker / "out") == 2
    assert str(blocker / "out") in capsys.readouterr().err


def test_read_only_output_folder_is_named(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: chmod does not make a folder read-only")
        assert run(folder / "a.png", "-o", out) == 2
        assert str(out) in capsys.readouterr().err and "not writable" in capsys.readouterr().err
    finally:
        out.chmod(0o755)


def _os_error(code: int, text: str):
    """A stand-in for a file-system call that always fails with ``OSError(code, text)``."""

    def fail(*a, **k):
        raise OSError(code, text)

    return fail


def test_unwritable_output_folder_is_named_even_as_root(
    folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(batch.tempfile, "TemporaryFile", _os_error(errno.EROFS, "Read-only file system"))
    out = tmp_path / "out"
    assert run(folder, "-o", out) == 2
    err = capsys.readouterr().err
    assert f"output folder {out} is not writable (Read-only file system)" in err


def test_full_disk_stops_with_the_folder_named(folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(io.os, "replace", _os_error(errno.ENOSPC, "No space left on device"))
    out = tmp_path / "out"
    assert run(folder, "-o", out) == 1
    err = capsys.readouterr().err
    assert f"cannot write to output folder {out}" in err and "No space left" in err
    assert err.count("No space left") == 1  # stops at the first full-disk error
    assert not list(out.iterdir())  # no .part files left behind


def test_ctrl_c_mid_folder_then_skip_existing_resumes(
    folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    real = batch.process_file
    done = []

    def interrupt_after_two(dehazer, plan, opts):
        if len(done) == 2:
            # interrupt in the middle of writing: the image is written to its .part name first
            monkeypatch.setattr(io.os, "replace", _raise_keyboard_interrupt)
        done.append(plan.source)
        return real(dehazer, plan, opts)

    monkeypatch.setattr(batch, "process_file", interrupt_after_two)
    assert run(folder, "-o", out) == 130
    assert "--skip-existing" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a_dehazed.png", "b_dehazed.png"]  # no .part
    for p in out.iterdir():
        assert io.read_image(p).shape == (24, 32, 3)  # complete files
    monkeypatch.undo()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert run(folder, "-o", out, "--skip-existing") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_dehazed.png", "b_dehazed.png", "c_dehazed.jpg"]
    assert all((out / n).stat().st_mtime_ns == m for n, m in mtimes.items())


def _raise_keyboard_interrupt(*a, **k):
    raise KeyboardInterrupt


def test_weights_load_once_per_run(folder: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = engine.load_model
    monkeypatch.setattr(batch, "load_model", lambda *a, **k: calls.append(k) or real(*a, **k))
    assert main(["dehaze", str(folder), "-o", str(tmp_path / "o"), "--no-progress", "--device", "cpu"]) == 1
    assert len(calls) == 1 and calls[0]["method"] == "clearnet"
    assert len(list((tmp_path / "o").iterdir())) == 3


def test_bad_model_and_device_exit_2_with_a_message(folder: Path, tmp_path: Path, capsys) -> None:
    args = ["dehaze", str(folder / "a.png"), "-o", str(tmp_path / "o"), "--no-progress"]
    assert main([*args, "--model", str(tmp_path / "missing.safetensors")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    assert main([*args, "--device", "quantum"]) == 2
    assert "unknown device" in capsys.readouterr().err
    assert main(["dehaze", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_dehaze_files_from_a_script(folder: Path, tmp_path: Path) -> None:
    dehazer = engine.load_model(method="dcp", device="cpu")
    report = batch.dehaze_files([folder / "a.png"], tmp_path / "o", dehazer=dehazer, format="png")
    assert report.exit_code == 0 and [p.name for p in report.written] == ["a_dehazed.png"]
    with pytest.raises(batch.BatchError, match="--format"):
        batch.BatchOptions(format="gif")


def test_progress_bar_goes_to_the_given_stream(folder: Path, tmp_path: Path) -> None:
    import io as pyio

    err = pyio.StringIO()
    report = batch.dehaze_files([folder / "a.png", folder / "b.png"], tmp_path / "o", method="dcp",
                                progress=True, stderr=err)
    assert report.exit_code == 0
    text = err.getvalue()
    assert "dehazing" in text and "2/2" in text
