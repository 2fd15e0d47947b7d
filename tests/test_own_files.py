"""Which files a batch takes and which it may replace: no output ever replaces its input, through any
API, name or link (G4); our own outputs are never inputs, whatever their name (G17); a folder takes
exactly the files the readers read and names the rest (G22). Review: robustness-2026-12-07."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from _common import photo, run_dcp, write_clip

import napari_clearnet as nc
from napari_clearnet import io
from napari_clearnet._util.files import ReplacesInputError, atomic_path, fingerprint, refuse_input
from napari_clearnet.batch.plan import INPUT_SUFFIXES, collect_inputs


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _no_parts(folder: Path) -> None:
    assert not [q.name for q in folder.iterdir() if ".part" in q.name]


# ------------------------------------------------------------------------------- G4: never the input
def test_dehaze_video_never_replaces_its_source_even_with_overwrite(tmp_path: Path, monkeypatch) -> None:
    # G4: nc.dehaze_video(src, src, overwrite=True) replaced the recording with its dehazed copy
    src = write_clip(tmp_path / "clip.mp4", n=3)
    before = _sha(src)
    with pytest.raises(ReplacesInputError, match="would replace the input"):
        nc.dehaze_video(src, src, method="dcp", overwrite=True)
    # the same file through another spelling, a relative name, a symbolic link and a hard link
    (tmp_path / "soft.mp4").symlink_to(src)
    os.link(src, tmp_path / "hard.mp4")
    monkeypatch.chdir(tmp_path)
    for target in (tmp_path / "." / "clip.mp4", "clip.mp4", tmp_path / "soft.mp4", tmp_path / "hard.mp4"):
        with pytest.raises(ReplacesInputError, match="would replace the input"):
            nc.dehaze_video(src, target, method="dcp", overwrite=True)
        with pytest.raises(ReplacesInputError):  # the transmission clip is an output too
            nc.dehaze_video(src, None, method="dcp", overwrite=True, transmission=target)
    assert _sha(src) == before and _sha(tmp_path / "hard.mp4") == before
    _no_parts(tmp_path)


def test_write_image_and_atomic_writes_never_replace_their_source(tmp_path: Path) -> None:
    # G4's class through the image writer: by path, by link, and by the input's own fingerprint
    src = photo(tmp_path / "a.png")
    before = _sha(src)
    img = np.zeros((48, 64, 3), np.float32)
    os.link(src, tmp_path / "b.png")
    for target in (src, tmp_path / "b.png"):
        with pytest.raises(ReplacesInputError):
            io.write_image(target, img, overwrite=True, source=src)
        with pytest.raises(ReplacesInputError, match="fingerprint"):  # no path given: the fingerprint says it
            io.write_image(target, img, overwrite=True, source_fingerprint=fingerprint(src))
        with pytest.raises(ReplacesInputError):
            io.write_float_tiff(tmp_path / "b.png", img[..., 0], overwrite=True, source=src)
    with pytest.raises(ReplacesInputError), atomic_path(tmp_path / "b.png", True, (src,)):
        pass
    assert _sha(src) == before
    refuse_input(tmp_path / "new.png", [src])  # any other name is fine
    io.write_image(tmp_path / "c.png", img, overwrite=True, source=src)  # and is written
    _no_parts(tmp_path)


def test_a_batch_never_replaces_an_input_through_a_link_even_with_overwrite(tmp_path: Path, capsys) -> None:
    # G4's class in batches: an existing output that is an input under another name is that input's
    # error, named; the other inputs go on and the input is unchanged
    src = tmp_path / "in"
    photo(src / "a.png")
    photo(src / "b.png", 1)
    out = tmp_path / "out"
    out.mkdir()
    os.link(src / "a.png", out / "a_dehazed.png")
    (out / "b_transmission.png").symlink_to(src / "b.png")
    before = {p.name: _sha(p) for p in src.iterdir()}
    assert run_dcp(src, "-o", out, "--overwrite", "--save-transmission") == 1
    err = capsys.readouterr().err
    assert f"output {out / 'a_dehazed.png'} is the input {src / 'a.png'}" in err
    assert f"output {out / 'b_transmission.png'} is the input {src / 'b.png'}" in err
    assert "--overwrite" in err and "Traceback" not in err
    assert {p.name: _sha(p) for p in src.iterdir()} == before
    # an output folder that is the input folder through a link, with no suffix: refused up front
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    assert run_dcp(src, "-o", tmp_path / "link", "--suffix", "", "--overwrite") == 2
    assert "would replace the input file itself" in capsys.readouterr().err
    assert {p.name: _sha(p) for p in src.iterdir()} == before


# ----------------------------------------------------------------------- G17: our outputs by their tag
def test_outputs_of_an_earlier_run_with_another_suffix_are_not_inputs(tmp_path: Path, monkeypatch,
                                                                      capsys) -> None:
    # G17: changing --suffix between runs into the input folder dehazed the previous run's outputs again
    monkeypatch.chdir(tmp_path)
    s = tmp_path / "s"
    photo(s / "photo.png")
    assert run_dcp("s", "-o", "s", "--strength", "0.5", "--suffix", "_s05") == 0
    assert run_dcp("s", "-o", "s", "--strength", "1", "--suffix", "_s1") == 0
    err = capsys.readouterr().err
    assert "1 file written" in err and "outputs of napari-clearnet" in err and "s/photo_s05.png" in err
    assert sorted(q.name for q in s.iterdir()) == ["photo.png", "photo_s05.png", "photo_s1.png"]
    # variant: through a glob, and a folder of earlier outputs given as an input with another -o
    assert run_dcp("s/*.png", "-o", "s", "--suffix", "_s2") == 0
    assert "1 file written" in capsys.readouterr().err
    assert run_dcp("s", "-o", "elsewhere", "--save-transmission") == 0
    assert "2 files written" in capsys.readouterr().err  # photo.png's image and map, nothing else
    assert sorted(q.name for q in (tmp_path / "elsewhere").iterdir()) == [
        "photo_dehazed.png", "photo_transmission.png"]
    # named explicitly, an output is still taken (the user asked for it)
    assert run_dcp("s/photo_s05.png", "-o", "again") == 0
    assert (tmp_path / "again" / "photo_s05_dehazed.png").is_file()


# ------------------------------------------------------------------ G22: what a folder walk takes
def test_a_folder_takes_gif_and_jfif_and_names_what_it_passes_over(tmp_path: Path, monkeypatch,
                                                                   capsys) -> None:
    # G22: a folder input silently skipped GIF and JFIF files
    from PIL import Image

    g = tmp_path / "g"
    im = Image.open(photo(g / "c.png"))
    im.convert("P").save(g / "a.gif")
    im.save(g / "b.jfif", format="JPEG")
    (g / "notes.txt").write_text("not an image")
    im.save(g / "d.psd.bak", format="PNG")
    monkeypatch.chdir(tmp_path)
    assert run_dcp("g", "-o", "out") == 0
    err = capsys.readouterr().err
    assert "3 files written" in err
    assert sorted(q.name for q in (tmp_path / "out").iterdir()) == [
        "a_dehazed.png", "b_dehazed.png", "c_dehazed.png"]
    assert "passed over" in err and "g/notes.txt" in err and "g/d.psd.bak" in err


def test_every_suffix_a_folder_takes_is_read_by_the_readers(tmp_path: Path) -> None:
    # G22's class: one list (io.READ_SUFFIXES + video.VIDEO_SUFFIXES) says what a folder gives, and
    # every image suffix on it is read by io.load_image
    from PIL import Image

    arr = (np.random.default_rng(0).random((16, 20, 3)) * 255).astype(np.uint8)
    fmt = Image.registered_extensions()
    for suffix in io.READ_SUFFIXES:
        im = Image.fromarray(arr)
        im = im.convert("1") if suffix == ".pbm" else im.convert("L") if suffix == ".pgm" else im
        im.save(tmp_path / f"x{suffix}", format=fmt[suffix])
    found, problems, excluded, passed = collect_inputs([tmp_path])
    assert sorted(f.suffix for f in found) == sorted(io.READ_SUFFIXES)
    assert not (problems or excluded or passed)
    for f in found:
        assert io.read_image(f).shape[:2] == (16, 20), f
    assert set(io.READ_SUFFIXES) < set(INPUT_SUFFIXES)
