"""Long runs behave like Unix tools: a reader that goes away (``| head``) ends the command quietly
with 141 after files are written, ``clearnet bench`` says on stderr that it is alive, and
provenance names the input by the SHA-256 of its whole content."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from _common import CLEARNET, photo, run_dcp


def _closed_reader(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``clearnet ARGS | head -0``: stdout is a pipe whose reader has already gone."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([*CLEARNET, *args], stdout=w, stderr=subprocess.PIPE, text=True, cwd=cwd,
                              timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        os.close(w)


def test_weights_list_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    res = _closed_reader("weights", "list", "--json", cwd=tmp_path)
    assert res.returncode == 141, res.stderr
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr and not res.stderr.strip()


def test_bench_writes_its_file_first_and_shows_progress_on_stderr(tmp_path: Path) -> None:
    res = _closed_reader("bench", "--sizes", "0.02", "--methods", "dcp", "--video", "none", "--clip", "none",
                         "--repeats", "1", "--json", "--output", "f.json", cwd=tmp_path)
    assert res.returncode == 141, res.stderr
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr
    assert "bench: [1/1] dcp 0.02 MP" in res.stderr
    assert json.loads((tmp_path / "f.json").read_text())["results"][0]["method"] == "dcp"


def test_provenance_names_the_input_by_its_full_sha256(tmp_path: Path) -> None:
    src = photo(tmp_path / "in" / "p.jpg")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "out"
    assert run_dcp(src, "-o", out, "--save-airlight") == 0
    record = json.loads((out / "p_airlight.json").read_text())
    assert record["provenance"]["source_sha256"] == digest
    assert len(record["source_fingerprint"]) == 16  # the quick key --skip-existing compares, as before
    from PIL import Image

    with Image.open(out / "p_dehazed.jpg") as im:
        assert digest.encode() in im.getexif().get_ifd(0x8769)[0x9286]
    # --skip-existing still recognises the outputs (and those of the previous version, same key)
    assert run_dcp(src, "-o", out, "--save-airlight", "--skip-existing") == 0


def test_depth_records_the_full_sha256_too(tmp_path: Path, capsys) -> None:
    from napari_clearnet.cli import main

    src = photo(tmp_path / "p.png", size=(48, 64))
    assert main(["depth", str(src), "-o", str(tmp_path / "d"), "--method", "dcp"]) == 0
    capsys.readouterr()
    record = json.loads(next((tmp_path / "d").glob("*.json")).read_text())
    assert record["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
