"""files: every file is written under a temporary name and renamed when complete, never over an
existing file unless asked; partial files a killed run left are removed, files being written are
not (issue 12: F4, F8); outputs record which input they were made from (F5, F7)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_clearnet import io
from napari_clearnet._util import files
from napari_clearnet.batch.inputs import read_tag


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_write_image_is_atomic_and_never_overwrites(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "x.png"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        io.write_image(target, np.zeros((4, 4, 3)))
    assert target.read_bytes() == b"precious"

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        io.write_image(tmp_path / "y.png", np.zeros((4, 4, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no y.png, no .part file


def test_temporary_name_is_short_even_when_the_output_name_is_long(tmp_path: Path) -> None:  # F4
    stem = "霧" * 81  # 243 bytes: the name fits in 255 bytes, ".<stem>.<random>.part.png" would not
    out = io.write_image(tmp_path / f"{stem}_dehazed.png", _rgb() / 255.0)
    assert len(os.fsencode(out.name)) == 255 and io.read_image(out).shape == (24, 32, 3)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_stale_partial_files_are_removed_but_not_files_being_written(tmp_path: Path) -> None:  # F8
    import fcntl

    old = tmp_path / ".s1_transmission.ulmuyr_x.part.png"  # left by a killed run (old version too)
    old.write_bytes(b"partial")
    busy = tmp_path / ".s2_dehazed.abcd1234.part.png"  # another run is writing it right now
    busy.write_bytes(b"partial")
    keep = [tmp_path / ".holiday.part.png", tmp_path / "s1.part.png", tmp_path / ".notes.abcd1234.part"]
    for k in keep:
        k.write_bytes(b"user data")
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        removed = files.remove_stale_parts(tmp_path)
    finally:
        os.close(fd)
    assert removed == [old]
    assert busy.exists() and all(k.exists() for k in keep)


@pytest.mark.parametrize("name", ["o.png", "o16.png", "o.jpg", "o.webp", "o.tif", "o.bmp"])
def test_outputs_record_the_fingerprint_of_their_input(tmp_path: Path, name: str) -> None:  # F5, F7
    src = tmp_path / "src.png"
    Image.fromarray(_rgb()).save(src)
    fp = files.fingerprint(src)
    depth = 16 if name == "o16.png" else 8
    out = io.write_image(tmp_path / name, _rgb() / 255.0, bit_depth=depth, source_fingerprint=fp)
    assert read_tag(out) == (None if name.endswith(".bmp") else fp)  # BMP holds no metadata
    assert io.read_image(out).shape == (24, 32, 3)
