"""Issue 12, ``clearnet dehaze`` and ``batch``: the review's command-line reproductions run as a
user would (a subprocess), and the planning rules behind them. Findings: F1-F8, F12, F15, F20,
F26, F29-F32, F34 (CLI side), with a property test of the output plan.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_clearnet import _png16, batch, io
from napari_clearnet.cli import main

_SCRIPT = Path(sys.executable).with_name("clearnet")
CLEARNET = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "napari_clearnet.cli"]


def cli(
    *args: str | Path, cwd: Path, limit_as: int | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``clearnet ARGS`` in a fresh process, as a user runs it (DCP unless the test says otherwise)."""
    argv = [*CLEARNET, *map(str, args)]
    if "--method" not in argv and argv[len(CLEARNET)] == "dehaze":
        argv += ["--method", "dcp"]

    def limits() -> None:
        if limit_as:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=limits)


def photo(path: Path, seed: int = 0, size: tuple[int, int] = (48, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((*size, 3)) * 180 + 40).astype(np.uint8)).save(path)
    return path


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return struct.pack(">I", len(body)) + kind + body + crc


def run(*args: str | Path) -> int:
    return main(["dehaze", *map(str, args), "--method", "dcp", "--no-progress"])


# ------------------------------------------------------------------------- F1, F2: one bad file
def test_hostile_headers_and_a_zlib_bomb_do_not_stop_the_batch(tmp_path: Path) -> None:  # F1, F2
    src = tmp_path / "in"
    photo(src / "b.png")
    head = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    (src / "a.png").write_bytes(_png16.SIGNATURE + _chunk(b"IHDR", head) + _chunk(b"IEND", b""))
    n = 15000  # 16-bit RGB zeros: 1.3 MB of file, 1.35 GB of pixels
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + n * 6)
    data = b"".join(comp.compress(row) for _ in range(n)) + comp.flush()
    head16 = struct.pack(">IIBBBBB", n, n, 16, 2, 0, 0, 0)
    (src / "a16.png").write_bytes(_png16.SIGNATURE + _chunk(b"IHDR", head16) + _chunk(b"IDAT", data)
                                  + _chunk(b"IEND", b""))
    p = cli("dehaze", "in", "-o", "out", cwd=tmp_path, limit_as=3_000_000_000)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert "error: in/a.png: image too large" in p.stderr
    assert "error: in/a16.png: image too large" in p.stderr
    assert "1 files written to out, 2 inputs failed" in p.stderr
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

    monkeypatch.setattr(batch, "process_file", flaky)
    assert run(tmp_path / "in", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "a.png: not enough memory" in err and "b.png: unexpected TypeError: a bug somewhere" in err
    assert [q.name for q in (tmp_path / "out").iterdir()] == ["c_dehazed.png"]


# ------------------------------------------------------------------------- F3: link loops
def test_recursive_glob_over_symlink_loops_finishes(tmp_path: Path) -> None:  # F3
    d = tmp_path / "d"
    photo(d / "a.png")
    photo(d / "sub" / "b.png", 1)
    (d / "sub" / "up").symlink_to("..")
    (d / "self").symlink_to("../d")
    for pattern in ("d/**/*.png", "d/**"):
        out = f"out{len(pattern)}"
        start = time.monotonic()
        p = cli("dehaze", pattern, "-o", out, cwd=tmp_path, timeout=60)
        assert p.returncode == 0, p.stderr
        assert time.monotonic() - start < 30
        assert sorted(q.name for q in (tmp_path / out).iterdir()) == ["a_dehazed.png", "b_dehazed.png"]


def test_glob_walker_matches_glob_without_following_folder_links(tmp_path: Path) -> None:  # F3
    photo(tmp_path / "x" / "a.png")
    photo(tmp_path / "x" / "y" / "b.png")
    (tmp_path / "x" / ".hidden").mkdir()
    photo(tmp_path / "x" / ".hidden" / "c.png")
    (tmp_path / "x" / "link").symlink_to("y")
    import glob as std

    pattern = str(tmp_path / "x" / "**" / "*.png")
    ours = sorted(str(p) for p in batch._glob(pattern))
    theirs = sorted(p for p in std.glob(pattern, recursive=True) if "/link/" not in p)
    assert ours == theirs and len(ours) == 2
    top = sorted(str(p) for p in batch._glob(str(tmp_path / "x" / "*.png")))
    assert top == [str(tmp_path / "x" / "a.png")]


# ------------------------------------------------------------------------- F4: long names
def test_names_too_long_for_the_file_system_are_per_file_errors(tmp_path: Path) -> None:  # F4
    src = tmp_path / "longn"
    photo(src / ("a" * 246 + ".png"))
    photo(src / "zz.png")
    photo(src / ("霧" * 81 + ".png"))  # the output name fits; the temporary name used not to
    for extra in ([], ["--save-transmission"]):
        out = f"out{len(extra)}"
        p = cli("dehaze", "longn", "-o", out, *extra, cwd=tmp_path)
        assert p.returncode == 1, p.stderr
        assert "Traceback" not in p.stderr and "longer than the 255" in p.stderr
        names = sorted(q.name for q in (tmp_path / out).iterdir())
        assert "zz_dehazed.png" in names
        assert ("霧" * 81 + "_dehazed.png" in names) == (not extra)  # with a transmission it is too long
        assert not [n for n in names if ".part" in n]


# ------------------------------------------------------------------------- F5, F6, F7: the plan
def _tags_match(out: Path, sources: dict[str, Path]) -> None:
    """Each output records the fingerprint of the input it was made from."""
    for name, src in sources.items():
        assert io.read_tag(out / name) == io.fingerprint(src), name


def test_renamed_outputs_never_take_another_inputs_name(tmp_path: Path) -> None:  # F5
    a, b = photo(tmp_path / "a" / "x.png", 1), photo(tmp_path / "b" / "x.png", 2)
    c = photo(tmp_path / "c" / "a_x.png", 3)
    p = cli("dehaze", "a", "b", "c", "-o", "out", "--overwrite", cwd=tmp_path)
    assert p.returncode == 0 and "3 files written" in p.stderr, p.stderr
    out = tmp_path / "out"
    names = sorted(q.name for q in out.iterdir())
    assert len(names) == 3
    _tags_match(out, {"a_x_dehazed.png": c, "b_x_dehazed.png": b})
    [renamed] = [n for n in names if n not in ("a_x_dehazed.png", "b_x_dehazed.png")]
    _tags_match(out, {renamed: a})
    assert "taken by c/a_x.png" in p.stderr
    p = cli("dehaze", "a", "b", "c", "-o", "out2", "--skip-existing", cwd=tmp_path)
    assert "3 files written" in p.stderr and "skipped" not in p.stderr
    p = cli("dehaze", "a", "b", "c", "-o", "out3", cwd=tmp_path)
    assert p.returncode == 0 and "exists" not in p.stderr


def test_transmission_and_image_names_never_collide(tmp_path: Path) -> None:  # F6
    x = photo(tmp_path / "in" / "x.png", 1)
    xt = photo(tmp_path / "in" / "x_transmission.png", 2)
    p = cli("dehaze", "in", "-o", "out", "--suffix", "", "--save-transmission", "--overwrite", cwd=tmp_path)
    assert p.returncode == 0 and "4 files written" in p.stderr, p.stderr
    out = tmp_path / "out"
    assert len(list(out.iterdir())) == 4
    t = io.read_image(out / "x_transmission.png")
    assert t.ndim == 2 and t.dtype == np.uint16  # x.png's transmission map, not an RGB image
    _tags_match(out, {"x_transmission.png": x, "x.png": x})
    assert sum(io.read_tag(q) == io.fingerprint(xt) for q in out.iterdir()) == 2
    photo(tmp_path / "in2" / "y.png")
    for extra in ([], ["--overwrite"]):
        p = cli("dehaze", "in2", "-o", "out2", "--suffix", "_transmission", "--save-transmission", *extra,
                cwd=tmp_path)
        assert p.returncode == 2 and "transmission map has too; choose another --suffix" in p.stderr
        assert not (tmp_path / "out2").exists() or not list((tmp_path / "out2").iterdir())


def test_adding_inputs_never_makes_skip_existing_skip_an_unprocessed_one(tmp_path: Path) -> None:  # F7
    srcs = {k: photo(tmp_path / k / "x" / "p.png", i) for i, k in enumerate(("a", "b", "0"))}
    p = cli("dehaze", "a/x", "b/x", "-o", "out", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = cli("dehaze", "0/x", "a/x", "b/x", "-o", "out", "--skip-existing", cwd=tmp_path)
    assert p.returncode == 0 and "1 files written to out, 2 inputs skipped" in p.stderr, p.stderr
    _tags_match(tmp_path / "out", {f"{k}_x_p_dehazed.png": s for k, s in srcs.items()})


def test_skip_existing_checks_which_input_an_output_was_made_from(tmp_path: Path) -> None:  # F7, F5
    first, second = photo(tmp_path / "a" / "x.png", 1), photo(tmp_path / "b" / "x.png", 2)
    assert run(tmp_path / "a", "-o", tmp_path / "out") == 0
    before = (tmp_path / "out" / "x_dehazed.png").read_bytes()
    assert run(second, "-o", tmp_path / "out", "--skip-existing") == 1  # same name, another photo
    assert (tmp_path / "out" / "x_dehazed.png").read_bytes() == before
    assert run(first, "-o", tmp_path / "out", "--skip-existing") == 0  # its own output: skipped


# ------------------------------------------------------------------------- F8: signals
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
    for name in ("a.png", "b.png", "c.png"):
        photo(tmp_path / "in" / name)
    real = io.os.replace
    calls = []

    def replace_then_signal(a, b):
        calls.append(b)
        if len(calls) == 2:  # the second file is complete under its temporary name
            os.kill(os.getpid(), getattr(signal, sig))
        return real(a, b)

    monkeypatch.setattr(io.os, "replace", replace_then_signal)
    code = run(tmp_path / "in", "-o", tmp_path / "out")
    assert code == 128 + getattr(signal, sig)
    assert f"terminated by {sig}" in capsys.readouterr().err
    names = sorted(q.name for q in (tmp_path / "out").iterdir())
    assert names in (["a_dehazed.png"], ["a_dehazed.png", "b_dehazed.png"])  # F8: no .part file
    assert signal.getsignal(getattr(signal, sig)) is signal.SIG_DFL  # handlers put back


# ------------------------------------------------------------------------- F12, F26, F9, F30
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
    assert run(tmp_path / "f.tif", "-o", tmp_path / "o2", "--value-range", "1,0") == 2



def test_sixteen_bits_with_an_eight_bit_format_is_refused_up_front(tmp_path: Path) -> None:  # F30
    photo(tmp_path / "a.png")
    Image.open(tmp_path / "a.png").save(tmp_path / "a.jpg")
    p = cli("dehaze", "a.jpg", "-o", "out", "--bit-depth", "16", cwd=tmp_path)
    assert p.returncode == 2 and "a.jpg would be written as .jpg, which holds 8 bits only" in p.stderr
    assert not (tmp_path / "out" / "a_dehazed.jpg").exists()


# ------------------------------------------------------------------------- F15, F31, F32
def test_glob_rerun_into_the_input_folder_skips_own_outputs(tmp_path: Path) -> None:  # F15
    for g, extra in (("g", []), ("h", ["--save-transmission"])):
        photo(tmp_path / g / "photo.png")
        assert cli("dehaze", f"{g}/*.png", "-o", g, *extra, cwd=tmp_path).returncode == 0
        p = cli("dehaze", f"{g}/*.png", "-o", g, "--skip-existing", *extra, cwd=tmp_path)
        assert p.returncode == 0 and "1 inputs skipped" in p.stderr, p.stderr
        assert "note: not taken" not in p.stderr  # our own outputs are left out silently


def test_user_files_that_look_like_outputs_are_reported(tmp_path: Path) -> None:  # F31
    same = tmp_path / "same"
    photo(same / "photo.png")
    photo(same / "sky_transmission.png", 1)
    photo(same / "holiday_dehazed.png", 2)
    p = cli("dehaze", "same", "-o", "same", cwd=tmp_path)
    assert p.returncode == 0 and "1 files written" in p.stderr
    assert "not taken as inputs" in p.stderr
    assert "same/holiday_dehazed.png" in p.stderr and "same/sky_transmission.png" in p.stderr
    assert "photo_dehazed" not in p.stderr.split("not taken", 1)[1].split("\n")[0]


def test_finished_stack_with_transmission_counts_as_done(tmp_path: Path, capsys) -> None:  # F32
    stack = (np.random.default_rng(0).random((3, 20, 24, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "st.tif", stack)
    assert run(tmp_path / "st.tif", "-o", tmp_path / "out", "--save-transmission") == 0
    assert sorted(q.name for q in (tmp_path / "out").iterdir()) == ["st_dehazed.tif", "st_transmission.tif"]
    capsys.readouterr()
    assert run(tmp_path / "st.tif", "-o", tmp_path / "out", "--save-transmission", "--skip-existing") == 0
    assert "0 files written to" in (err := capsys.readouterr().err) and "1 inputs skipped" in err


# ------------------------------------------------------------------------- F20, F29, F34
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
    assert run(tmp_path / "photo.png", "-o", tmp_path / "o", "--quality", "101") == 2


def test_palette_transparency_and_icc_reach_the_output(tmp_path: Path) -> None:  # F29
    from PIL import ImageCms

    rgb = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(rgb).convert("P")
    im.save(tmp_path / "pal.png", transparency=int(np.asarray(im)[0, 0]))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(tmp_path / "icc.jpg", icc_profile=icc, quality=95)
    assert run(tmp_path / "pal.png", tmp_path / "icc.jpg", "-o", tmp_path / "out") == 0
    out = Image.open(tmp_path / "out" / "pal_dehazed.png")
    assert out.mode == "RGBA" and np.asarray(out)[0, 0, 3] == 0
    jpg = Image.open(tmp_path / "out" / "icc_dehazed.jpg")
    assert jpg.info.get("icc_profile") == icc and list(jpg.quantization[0][:4]) == [2, 1, 1, 2]


# ------------------------------------------------------------------------- the plan, as a property
_NAMES = ["x.png", "x.jpg", "X.png", "a_x.png", "x_transmission.png", "x_dehazed.png", "y.tif", "p.png"]
_DIRS = ["a", "b", "a/x", "b/x", "0/x", "c", "."]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.sampled_from(_DIRS), st.sampled_from(_NAMES)), min_size=1, max_size=8,
                      unique=True),
       extra=st.tuples(st.sampled_from(_DIRS), st.sampled_from(_NAMES)),
       suffix=st.sampled_from(["_dehazed", "", "_t"]), fmt=st.sampled_from(["same", "png"]),
       out_is_input=st.booleans())
def test_property_the_plan_is_one_consistent_set(
    tmp_path_factory, picks, extra, suffix, fmt, out_is_input
) -> None:
    """Random input trees (collisions by folder, extension, case, and names that look like other
    inputs' renamed or transmission names): every output name is unique (case-insensitively) and
    never an input's; an input whose natural name collides with nothing keeps it when inputs are
    added."""
    root = tmp_path_factory.mktemp("plan")
    files = []
    for d, n in picks:
        f = root / d / n
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
        files.append(f)
    files = sorted({f.resolve(): f for f in files}.values(), key=str)
    out = root / "." if out_is_input else root / "out"
    opts = batch.BatchOptions(method="dcp", suffix=suffix, format=fmt, save_transmission=True,
                              save_airlight=True)
    try:
        plans, _ = batch.plan_outputs(files, out, opts)
    except batch.BatchError as exc:  # the options themselves make a clash: said up front
        assert "--suffix" in str(exc)
        return
    names = [o.name.casefold() for p in plans for o in p.outputs()]
    assert len(names) == len(set(names))
    inputs = {str(f.resolve()).casefold() for f in files}
    assert not any(str(o.resolve()).casefold() in inputs for p in plans for o in p.outputs())
    more = root / extra[0] / extra[1]
    if more.resolve() in {f.resolve() for f in files}:
        return
    more.parent.mkdir(parents=True, exist_ok=True)
    more.write_bytes(b"x")
    try:
        plans2, _ = batch.plan_outputs(sorted([*files, more], key=str), out, opts)
    except batch.BatchError:
        return
    def natural(f: Path) -> set[str]:
        return {n.casefold() for n in batch._names(f.stem, f, opts).values()}

    first = {p.source: {o.name.casefold() for o in p.outputs()} for p in plans}
    claims = natural(more) | ({more.name.casefold()} if more.resolve().parent == out.resolve() else set())
    for p in plans2:
        kept = p.source in first and first[p.source] == natural(p.source)  # it had its own names
        if kept and {o.name.casefold() for o in p.outputs()} != natural(p.source):
            assert claims & natural(p.source), (p.source, more)  # only the newcomer can move it
    shutil.rmtree(root, ignore_errors=True)


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
    assert run(odd / "empty.png", odd / "dir.png", odd / "gone.png", odd / "-dash ☕.png",
               "-o", tmp_path / "o2") == 1
    err = capsys.readouterr().err
    assert "empty.png" in err and "gone.png: no such file or folder" in err
    assert [q.name for q in (tmp_path / "o2").iterdir()] == ["-dash ☕_dehazed.png"]
