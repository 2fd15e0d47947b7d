"""batch: every file read, dehazed and written on its own (one bad file never stops the batch;
existing outputs are never replaced unless asked; a stopped run leaves complete files only and
resumes), with errors named as the caller spells options (issue 12: F1, F2, F7, F8, F12, F29, F32)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _common import CLEARNET, cli, photo, png_bytes, run_dcp, write_png
from PIL import Image

from napari_clearnet import api, batch, io
from napari_clearnet.batch import loop, runner
from napari_clearnet.cli import main


def test_folder_with_corrupt_file_and_existing_output(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_dehazed.png").write_bytes(b"user data")
    assert run_dcp(folder, "-o", out) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err  # the corrupt one is named
    assert "b_dehazed.png" in err and "--overwrite" in err
    assert (out / "b_dehazed.png").read_bytes() == b"user data"  # untouched
    for name in ("a_dehazed.png", "c_dehazed.jpg"):
        assert io.read_image(out / name).shape == (24, 32, 3)
    assert not (out / "notes_dehazed.png").exists()  # non-image files in folders are ignored

    assert run_dcp(folder / "a.png", folder / "b.png", "-o", out, "--overwrite") == 0
    assert io.read_image(out / "b_dehazed.png").shape == (24, 32, 3)
    assert not list(out.glob("*.part*")) and not list(out.glob(".*"))


def test_skip_existing_carries_on_silently(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run_dcp(folder / "a.png", "-o", out) == 0
    before = (out / "a_dehazed.png").stat().st_mtime_ns
    capsys.readouterr()
    assert run_dcp(folder / "a.png", folder / "b.png", "-o", out, "--skip-existing") == 0
    err = capsys.readouterr().err
    assert "exists" not in err and "1 input skipped" in err
    assert (out / "a_dehazed.png").stat().st_mtime_ns == before
    assert (out / "b_dehazed.png").is_file()


def test_transmission_and_airlight_outputs(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_dcp(folder / "a.png", "-o", out, "--save-transmission", "--save-airlight") == 0
    t = io.read_image(out / "a_transmission.png")
    assert t.shape == (24, 32) and t.dtype == np.uint16 and t.min() > 0
    data = json.loads((out / "a_airlight.json").read_text())
    assert len(data["airlight"]) == 3 and all(0 < v <= 1 for v in data["airlight"])
    assert data["provenance"]["method"] == "dcp" and data["source"].endswith("a.png")


def test_globs_suffix_and_format(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # 1: broken.png
    assert run_dcp(str(folder / "*.png"), "-o", out, "--suffix", "_clear", "--format", "tif") == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_clear.tif", "b_clear.tif"]
    assert tifffile.imread(out / "a_clear.tif").dtype == np.uint8
    assert run_dcp(str(folder / "*.nothing"), "-o", out) == 2


def test_sixteen_bit_in_sixteen_bit_out(tmp_path: Path) -> None:
    src = write_png(tmp_path / "deep.png", dtype=np.uint16)
    assert src.dtype == np.uint16
    out = tmp_path / "out"
    assert run_dcp(tmp_path / "deep.png", "-o", out) == 0
    assert io.read_image(out / "deep_dehazed.png").dtype == np.uint16  # --bit-depth same
    assert run_dcp(tmp_path / "deep.png", "-o", out, "--bit-depth", "8", "--suffix", "_8") == 0
    assert io.read_image(out / "deep_8.png").dtype == np.uint8
    # 16-bit JPEG does not exist: refused up front with exit 2
    assert run_dcp(tmp_path / "deep.png", "-o", out, "--bit-depth", "16", "--format", "jpg") == 2


def test_multi_page_tiff_stack(tmp_path: Path) -> None:
    stack = (np.random.default_rng(0).random((3, 20, 24, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", stack)
    out = tmp_path / "out"
    assert run_dcp(tmp_path / "s.tif", "-o", out, "--save-transmission") == 0
    assert tifffile.imread(out / "s_dehazed.tif").shape == stack.shape
    assert tifffile.imread(out / "s_transmission.tif").shape == (3, 20, 24)
    assert run_dcp(tmp_path / "s.tif", "-o", out, "--format", "png", "--suffix", "_p") == 1  # needs tif


def test_hostile_headers_and_a_zlib_bomb_do_not_stop_the_batch(tmp_path: Path) -> None:  # F1, F2
    src = tmp_path / "in"
    photo(src / "b.png")
    (src / "a.png").write_bytes(png_bytes(50000, 50000, 8, 2, None))
    n = 15000  # 16-bit RGB zeros: 1.3 MB of file, 1.35 GB of pixels
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + n * 6)
    data = b"".join(comp.compress(row) for _ in range(n)) + comp.flush()
    (src / "a16.png").write_bytes(png_bytes(n, n, 16, 2, data))
    p = cli("dehaze", "in", "-o", "out", cwd=tmp_path, limit_as=3_000_000_000)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert "error: in/a.png: image too large" in p.stderr
    assert "error: in/a16.png: image too large" in p.stderr
    assert "1 file written to out, 2 inputs failed" in p.stderr
    assert [q.name for q in (tmp_path / "out").iterdir()] == ["b_dehazed.png"]


def test_unexpected_errors_and_memory_errors_are_per_file(tmp_path: Path, monkeypatch, capsys) -> None:  # F1
    for name in ("a.png", "b.png", "c.png"):
        photo(tmp_path / "in" / name)
    real = batch.process_file

    def flaky(dehazer, plan, opts):
        if plan.source.name == "a.png":
            raise MemoryError
        if plan.source.name == "b.png":
            raise TypeError("a bug somewhere")
        return real(dehazer, plan, opts)

    monkeypatch.setattr(runner, "process_file", flaky)
    assert run_dcp(tmp_path / "in", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "a.png: not enough memory" in err and "b.png: unexpected TypeError: a bug somewhere" in err
    assert [q.name for q in (tmp_path / "out").iterdir()] == ["c_dehazed.png"]


def test_skip_existing_checks_which_input_an_output_was_made_from(tmp_path: Path) -> None:  # F7, F5
    first, second = photo(tmp_path / "a" / "x.png", 1), photo(tmp_path / "b" / "x.png", 2)
    assert run_dcp(tmp_path / "a", "-o", tmp_path / "out") == 0
    before = (tmp_path / "out" / "x_dehazed.png").read_bytes()
    assert run_dcp(second, "-o", tmp_path / "out", "--skip-existing") == 1  # same name, another photo
    assert (tmp_path / "out" / "x_dehazed.png").read_bytes() == before
    assert run_dcp(first, "-o", tmp_path / "out", "--skip-existing") == 0  # its own output: skipped


def test_finished_stack_with_transmission_counts_as_done(tmp_path: Path, capsys) -> None:  # F32
    stack = (np.random.default_rng(0).random((3, 20, 24, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "st.tif", stack)
    assert run_dcp(tmp_path / "st.tif", "-o", tmp_path / "out", "--save-transmission") == 0
    assert sorted(q.name for q in (tmp_path / "out").iterdir()) == ["st_dehazed.tif", "st_transmission.tif"]
    capsys.readouterr()
    assert run_dcp(tmp_path / "st.tif", "-o", tmp_path / "out", "--save-transmission", "--skip-existing") == 0
    assert "0 files written to" in (err := capsys.readouterr().err) and "1 input skipped" in err


def test_animations_and_multi_series_tiffs_via_the_cli(tmp_path: Path) -> None:  # F12
    rng = np.random.default_rng(0)
    frames = [Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    for shape in ((64, 80), (32, 40), (48, 60)):
        tifffile.imwrite(tmp_path / "two_series.tif", np.zeros(shape, np.uint8), append=True)
    p = cli("dehaze", "anim.gif", "anim.webp", "two_series.tif", "-o", "out", cwd=tmp_path)
    assert p.returncode == 1 and "0 files written" in p.stderr, p.stderr
    assert "anim.gif: 3 frames" in p.stderr and "--format tif" in p.stderr
    assert "two_series.tif: holds 3 images of different sizes" in p.stderr
    p = cli("dehaze", "anim.gif", "anim.webp", "-o", "out", "--format", "tif", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for q in (tmp_path / "out").iterdir():
        assert tifffile.imread(q).shape == (3, 48, 64, 3)


def test_palette_transparency_and_icc_reach_the_output(tmp_path: Path) -> None:  # F29
    from PIL import ImageCms

    rgb = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(rgb).convert("P")
    im.save(tmp_path / "pal.png", transparency=int(np.asarray(im)[0, 0]))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(tmp_path / "icc.jpg", icc_profile=icc, quality=95)
    assert run_dcp(tmp_path / "pal.png", tmp_path / "icc.jpg", "-o", tmp_path / "out") == 0
    out = Image.open(tmp_path / "out" / "pal_dehazed.png")
    assert out.mode == "RGBA" and np.asarray(out)[0, 0, 3] == 0
    jpg = Image.open(tmp_path / "out" / "icc_dehazed.jpg")
    assert jpg.info.get("icc_profile") == icc and list(jpg.quantization[0][:4]) == [2, 1, 1, 2]


def _os_error(code: int, text: str):
    """A stand-in for a file-system call that always fails with ``OSError(code, text)``."""

    def fail(*a, **k):
        raise OSError(code, text)

    return fail


def test_full_disk_stops_with_the_folder_named(folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(os, "replace", _os_error(errno.ENOSPC, "No space left on device"))
    out = tmp_path / "out"
    assert run_dcp(folder, "-o", out) == 1
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
            monkeypatch.setattr(os, "replace", _raise_keyboard_interrupt)
        done.append(plan.source)
        return real(dehazer, plan, opts)

    monkeypatch.setattr(runner, "process_file", interrupt_after_two)
    assert run_dcp(folder, "-o", out) == 130
    assert "--skip-existing" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a_dehazed.png", "b_dehazed.png"]  # no .part
    for p in out.iterdir():
        assert io.read_image(p).shape == (24, 32, 3)  # complete files
    monkeypatch.undo()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert run_dcp(folder, "-o", out, "--skip-existing") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_dehazed.png", "b_dehazed.png", "c_dehazed.jpg"]
    assert all((out / n).stat().st_mtime_ns == m for n, m in mtimes.items())


def _raise_keyboard_interrupt(*a, **k):
    raise KeyboardInterrupt


def test_sigterm_cleans_up_like_ctrl_c_and_a_rerun_removes_stale_parts(tmp_path: Path) -> None:  # F8
    src = tmp_path / "in"
    for i in range(6):
        photo(src / f"s{i}.png", i, size=(900, 1200))
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".s9_transmission.ulmuyr_x.part.png"  # what a killed run of an older version left
    stale.write_bytes(b"partial")
    proc = subprocess.Popen(
        [*CLEARNET, "dehaze", "in", "-o", "out", "--save-transmission", "--method", "dcp"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 90
    while not (out / "s0_dehazed.png").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # in the middle of the second image's files
    err = proc.communicate(timeout=60)[1]
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated by SIGTERM" in err and "--skip-existing" in err and "Traceback" not in err
    assert not [q for q in out.iterdir() if ".part" in q.name and q != stale]
    assert not stale.exists()  # removed at the start of the run
    for q in out.iterdir():
        assert io.read_image(q).shape[:2] == (900, 1200)  # complete files only
    stale.write_bytes(b"partial")
    p = cli("dehaze", "in", "-o", "out", "--save-transmission", "--skip-existing", cwd=tmp_path)
    assert p.returncode == 0 and "removed 1 partial file" in p.stderr, p.stderr
    assert sorted(q.name for q in out.iterdir()) == sorted(f"s{i}_{k}.png" for i in range(6)
                                                           for k in ("dehazed", "transmission"))


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_terminating_signal_mid_write_leaves_no_partial_file(tmp_path, monkeypatch, capsys, sig) -> None:
    # the disposition this test needs, whatever the suite was launched under (nohup ignores SIGHUP,
    # and an ignored signal stays ignored by design): the default, put back afterwards
    signum = getattr(signal, sig)
    launched_with = signal.signal(signum, signal.SIG_DFL)
    try:
        _signal_mid_write(tmp_path, monkeypatch, capsys, sig)
    finally:
        signal.signal(signum, launched_with)


def _signal_mid_write(tmp_path, monkeypatch, capsys, sig) -> None:
    for name in ("a.png", "b.png", "c.png"):
        photo(tmp_path / "in" / name)
    real = os.replace
    calls = []

    def replace_then_signal(a, b):
        calls.append(b)
        if len(calls) == 2:  # the second file is complete under its temporary name
            os.kill(os.getpid(), getattr(signal, sig))
        return real(a, b)

    monkeypatch.setattr(os, "replace", replace_then_signal)
    code = run_dcp(tmp_path / "in", "-o", tmp_path / "out")
    assert code == 128 + getattr(signal, sig)
    assert f"terminated by {sig}" in capsys.readouterr().err
    names = sorted(q.name for q in (tmp_path / "out").iterdir())
    assert names in (["a_dehazed.png"], ["a_dehazed.png", "b_dehazed.png"])  # F8: no .part file
    assert signal.getsignal(getattr(signal, sig)) is signal.SIG_DFL  # handlers put back


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_the_sighup_test_passes_under_nohup(tmp_path) -> None:
    """Launched with SIGHUP ignored (``nohup``), the SIGHUP test still passes, and an ignored
    SIGHUP stays ignored for the run itself."""
    test = f"{__file__}::test_terminating_signal_mid_write_leaves_no_partial_file[SIGHUP]"

    def ignore_sighup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xvfb",
                           test], capture_output=True, text=True, timeout=300, check=False,
                          preexec_fn=ignore_sighup, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


def test_weights_load_once_per_run(folder: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = api.load_model
    monkeypatch.setattr(loop, "load_model", lambda *a, **k: calls.append(k) or real(*a, **k))
    assert main(["dehaze", str(folder), "-o", str(tmp_path / "o"), "--no-progress", "--device", "cpu"]) == 1
    assert len(calls) == 1 and calls[0]["method"] == "clearnet"
    assert len(list((tmp_path / "o").iterdir())) == 3


def test_dehaze_files_from_a_script(folder: Path, tmp_path: Path) -> None:
    dehazer = api.load_model(method="dcp", device="cpu")
    report = batch.dehaze_files([folder / "a.png"], tmp_path / "o", dehazer=dehazer, format="png")
    assert report.exit_code == 0 and [p.name for p in report.written] == ["a_dehazed.png"]
    with pytest.raises(batch.BatchError, match=r"^format must be one of"):  # Python: argument names
        batch.BatchOptions(format="gif")


def test_progress_bar_goes_to_the_given_stream(folder: Path, tmp_path: Path) -> None:
    import io as pyio

    err = pyio.StringIO()
    report = batch.dehaze_files([folder / "a.png", folder / "b.png"], tmp_path / "o", method="dcp",
                                progress=True, stderr=err)
    assert report.exit_code == 0
    text = err.getvalue()
    assert "dehazing" in text and "2/2" in text


def test_cases_that_already_worked_still_do(tmp_path: Path, capsys) -> None:
    """Review rows 22 (two runs into one folder at once), 101 (0-byte file, folder named like an
    image, dangling link), 102 (odd names)."""
    src = tmp_path / "in"
    for i in range(4):
        photo(src / f"p{i}.png", i, size=(300, 400))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*CLEARNET, "dehaze", "in", "-o", "out", "--method", "dcp"], cwd=tmp_path,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert all("Traceback" not in e for e in errs), errs
    out = tmp_path / "out"
    assert sorted(q.name for q in out.iterdir()) == [f"p{i}_dehazed.png" for i in range(4)]
    for q in out.iterdir():
        assert io.read_image(q).shape == (300, 400, 3)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "empty.png").write_bytes(b"")
    (odd / "dir.png").mkdir()
    (odd / "gone.png").symlink_to(odd / "nowhere.png")
    photo(odd / "-dash ☕.png")
    assert run_dcp(odd / "empty.png", odd / "dir.png", odd / "gone.png", odd / "-dash ☕.png",
               "-o", tmp_path / "o2") == 1
    err = capsys.readouterr().err
    assert "empty.png" in err and "gone.png: no such file or folder" in err
    assert [q.name for q in (tmp_path / "o2").iterdir()] == ["-dash ☕_dehazed.png"]


def test_a_stopped_batch_counts_the_files_it_wrote_and_says_so_once(tmp_path, monkeypatch, capsys) -> None:
    # G25: after SIGTERM with --save-transmission the summary said "0 files written" although a
    # transmission map was written, then "terminated by SIGTERM" a second time
    for name in ("s0.png", "s1.png"):
        photo(tmp_path / "in" / name)
    real = os.replace
    calls = []

    def replace_then_signal(a, b):
        calls.append(b)
        done = real(a, b)
        if len(calls) == 1:  # s0_transmission.png is complete; s0's image is not begun
            os.kill(os.getpid(), signal.SIGTERM)
        return done

    monkeypatch.setattr(os, "replace", replace_then_signal)
    code = run_dcp(tmp_path / "in", "-o", tmp_path / "out", "--save-transmission")
    assert code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert f"terminated by SIGTERM: 1 file written to {tmp_path / 'out'}; rerun with --skip-existing" in err
    assert err.count("terminated by SIGTERM") == 1
    # variant: Ctrl-C after three files (one input and a half), and plurals in the closing line
    calls.clear()
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(b), real(a, b),
                                                     len(calls) == 3 and os.kill(os.getpid(), signal.SIGINT)))
    assert run_dcp(tmp_path / "in", "-o", tmp_path / "o2", "--save-transmission") == 130
    err = capsys.readouterr().err
    assert "interrupted: 3 files written" in err and err.count("interrupted") == 1
    monkeypatch.setattr(os, "replace", real)
    assert run_dcp(tmp_path / "in", "-o", tmp_path / "o2", "--save-transmission", "--skip-existing") == 0
    assert "1 file written to" in capsys.readouterr().err  # s1's image: the one still missing
