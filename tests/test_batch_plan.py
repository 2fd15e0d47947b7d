"""batch_plan: which files a batch reads (folders, globs that never follow folder links, our own
outputs left out) and the names it writes, planned as one set: no output takes another's name or an
input's, and adding inputs never moves the others' names (issue 12: F3-F7, F15, F30, F31)."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from _common import cli, photo, run_dcp, write_png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_clearnet import io
from napari_clearnet._util import files
from napari_clearnet.batch import inputs as batch_inputs
from napari_clearnet.batch import plan as batch_plan
from napari_clearnet.batch import runner as batch
from napari_clearnet.batch.inputs import read_tag


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
    ours = sorted(str(p) for p in batch_inputs._glob(pattern))
    theirs = sorted(p for p in std.glob(pattern, recursive=True) if "/link/" not in p)
    assert ours == theirs and len(ours) == 2
    top = sorted(str(p) for p in batch_inputs._glob(str(tmp_path / "x" / "*.png")))
    assert top == [str(tmp_path / "x" / "a.png")]


def test_glob_rerun_into_the_input_folder_skips_own_outputs(tmp_path: Path) -> None:  # F15
    for g, extra in (("g", []), ("h", ["--save-transmission"])):
        photo(tmp_path / g / "photo.png")
        assert cli("dehaze", f"{g}/*.png", "-o", g, *extra, cwd=tmp_path).returncode == 0
        p = cli("dehaze", f"{g}/*.png", "-o", g, "--skip-existing", *extra, cwd=tmp_path)
        assert p.returncode == 0 and "1 input skipped" in p.stderr, p.stderr
        assert "note: not taken" not in p.stderr  # our own outputs are left out silently


def test_user_files_that_look_like_outputs_are_reported(tmp_path: Path) -> None:  # F31
    same = tmp_path / "same"
    photo(same / "photo.png")
    photo(same / "sky_transmission.png", 1)
    photo(same / "holiday_dehazed.png", 2)
    p = cli("dehaze", "same", "-o", "same", cwd=tmp_path)
    assert p.returncode == 0 and "1 file written" in p.stderr
    assert "not taken as inputs" in p.stderr
    assert "same/holiday_dehazed.png" in p.stderr and "same/sky_transmission.png" in p.stderr
    assert "photo_dehazed" not in p.stderr.split("not taken", 1)[1].split("\n")[0]


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


def _tags_match(out: Path, sources: dict[str, Path]) -> None:
    """Each output records the fingerprint of the input it was made from."""
    for name, src in sources.items():
        assert read_tag(out / name) == files.fingerprint(src), name


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
    assert sum(read_tag(q) == files.fingerprint(xt) for q in out.iterdir()) == 2
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
    assert p.returncode == 0 and "1 file written to out, 2 inputs skipped" in p.stderr, p.stderr
    _tags_match(tmp_path / "out", {f"{k}_x_p_dehazed.png": s for k, s in srcs.items()})



def test_collisions_never_overwrite_each_other(tmp_path: Path, capsys) -> None:
    a = write_png(tmp_path / "a" / "x.png", 1)
    b = write_png(tmp_path / "b" / "x.png", 2)
    write_png(tmp_path / "a" / "y.png", 3)
    Image.fromarray(a).save(tmp_path / "a" / "y.jpg")
    out = tmp_path / "out"
    assert run_dcp(tmp_path / "a", tmp_path / "b", "-o", out, "--format", "png") == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_x_dehazed.png", "b_x_dehazed.png", "y_jpg_dehazed.png", "y_png_dehazed.png"]
    assert "same output name" in capsys.readouterr().err
    assert not np.array_equal(io.read_image(out / "a_x_dehazed.png"), io.read_image(out / "b_x_dehazed.png"))
    del b
    # the same inputs map to the same names on the next run, so --skip-existing finds them
    assert run_dcp(tmp_path / "a", tmp_path / "b", "-o", out, "--format", "png", "--skip-existing") == 0
    assert len(list(out.iterdir())) == 4


def test_output_never_replaces_its_input(tmp_path: Path, capsys) -> None:
    write_png(tmp_path / "x.png")
    before = (tmp_path / "x.png").read_bytes()
    assert run_dcp(tmp_path / "x.png", "-o", tmp_path, "--suffix", "", "--overwrite") == 2
    assert "replace the input" in capsys.readouterr().err
    assert (tmp_path / "x.png").read_bytes() == before


def test_rerun_into_the_input_folder_skips_own_outputs(tmp_path: Path) -> None:
    write_png(tmp_path / "x.png")
    assert run_dcp(tmp_path, "-o", tmp_path, "--save-transmission") == 0
    assert run_dcp(tmp_path, "-o", tmp_path, "--save-transmission", "--skip-existing") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "x_dehazed.png", "x_transmission.png"]


def test_sixteen_bits_with_an_eight_bit_format_is_refused_up_front(tmp_path: Path) -> None:  # F30
    photo(tmp_path / "a.png")
    Image.open(tmp_path / "a.png").save(tmp_path / "a.jpg")
    p = cli("dehaze", "a.jpg", "-o", "out", "--bit-depth", "16", cwd=tmp_path)
    assert p.returncode == 2 and "a.jpg would be written as .jpg, which holds 8 bits only" in p.stderr
    assert not (tmp_path / "out" / "a_dehazed.jpg").exists()


def test_output_folder_under_a_file_is_named(folder: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_dcp(folder / "a.png", "-o", blocker / "out") == 2
    assert str(blocker / "out") in capsys.readouterr().err


def test_read_only_output_folder_is_named(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: chmod does not make a folder read-only")
        assert run_dcp(folder / "a.png", "-o", out) == 2
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
    monkeypatch.setattr(batch_plan.tempfile, "TemporaryFile", _os_error(errno.EROFS, "Read-only file system"))
    out = tmp_path / "out"
    assert run_dcp(folder, "-o", out) == 2
    err = capsys.readouterr().err
    assert f"output folder {out} is not writable (Read-only file system)" in err


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
        assert "suffix" in str(exc) and "--" not in str(exc)  # named as Python spells it
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
        return {n.casefold() for n in batch_plan._names(f.stem, f, opts).values()}

    first = {p.source: {o.name.casefold() for o in p.outputs()} for p in plans}
    claims = natural(more) | ({more.name.casefold()} if more.resolve().parent == out.resolve() else set())
    for p in plans2:
        kept = p.source in first and first[p.source] == natural(p.source)  # it had its own names
        if kept and {o.name.casefold() for o in p.outputs()} != natural(p.source):
            assert claims & natural(p.source), (p.source, more)  # only the newcomer can move it
    shutil.rmtree(root, ignore_errors=True)
