"""Video input read exactly or refused by name (review 2026-12-07: G1, G5-G8, G15, G19, G20, G23)
and a fuzz test of the reader. Clips come from ``_clips`` (frame i shows seed i, so ``which``
tells frames apart)."""

from __future__ import annotations

import json
import re
import threading
import time
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from _clips import avi, clip, damage, decoded_in_order, frame_img, remux, sizechange, which

import napari_clearnet as nc
from napari_clearnet.cli import main
from napari_clearnet.video import VideoReader, VideoWarning, probe


def dehaze_cli(*args: str | Path) -> int:
    return main(["dehaze", *map(str, args), "--method", "dcp", "--no-progress"])


def frames_of(path: Path) -> list[int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoWarning)
        return [which(f) for f in VideoReader(path)]


def pts_of(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)


# G1: random access into AVI with MPEG-4 B-frames returned frame i+2, silently.
@pytest.mark.parametrize("make", [
    lambda d: avi(d / "xvid.avi", 40, "mpeg4", gop=7, bframes=2),  # the review's repro
    lambda d: avi(d / "h264b.avi", 24, "libx264", gop=7, bframes=2),  # its times are guesses
    lambda d: clip(d / "b.mkv", 30, codec="mpeg4", gop=7, bframes=2),
])
def test_random_access_gives_the_frame_asked_for_in_avi_with_b_frames(tmp_path: Path, make) -> None:
    src = make(tmp_path)
    truth = decoded_in_order(src)
    n = len(truth)
    assert truth == list(range(n))
    reader = VideoReader(src)
    for i in [*np.random.default_rng(1).permutation(n)[:12], n - 1, n - 2, 0]:
        assert which(reader.frame(int(i))) == i
    lazy = nc.read_video(src)
    assert [which(f) for f in lazy[10:14].compute()] == [10, 11, 12, 13]
    assert [which(f) for f in np.asarray(lazy)] == truth  # dask's threads read chunks out of order
    assert reader.notes == []


# G5: one damaged packet threw the whole clip away after the work.
def test_a_damaged_packet_repeats_a_frame_with_a_note_and_the_clip_is_written(tmp_path: Path, capsys) -> None:
    src = damage(clip(tmp_path / "late.mp4", 40), tmp_path / "late_damaged.mp4", 33)
    assert dehaze_cli(src, "-o", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "could not be decoded (damaged data: frame" in err and "each shows the frame before it" in err
    with av.open(str(tmp_path / "out" / "late_damaged_dehazed.mp4")) as c:
        assert c.streams.video[0].frames == 40  # timing kept: one frame per input frame
    # the option to stop instead: the clip fails by name and frame, nothing is left
    assert dehaze_cli(src, "-o", tmp_path / "stop", "--damaged-frames", "stop") == 1
    err = capsys.readouterr().err
    assert "late_damaged.mp4" in err and "cannot be decoded (damaged data)" in err
    assert not list((tmp_path / "stop").glob("*.mp4"))


def test_a_damaged_frame_read_at_random_is_the_frame_before_it_and_warns(tmp_path: Path) -> None:  # G5
    src = damage(clip(tmp_path / "g.mkv", 30, gop=7, codec="mjpeg", pix="yuvj420p"), tmp_path / "d.mkv", 12)
    reader = VideoReader(src)
    with pytest.warns(VideoWarning, match="frame 12 cannot be decoded"):
        bad = reader.frame(12)
    np.testing.assert_array_equal(bad, reader.frame(11))
    assert which(reader.frame(13)) == 13 and "1 of 30 frames" in reader.notes[0]


# G6: a clip that starts between keyframes: "frame 0 is missing from the decoded stream".
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_clip_that_starts_between_keyframes_is_dehazed_with_a_note(tmp_path: Path, ext: str,
                                                                     capsys) -> None:
    src = remux(clip(tmp_path / f"gop.{ext}", 30, gop=7), tmp_path / f"cut.{ext}", skip=3)
    info = probe(src)
    assert "could not be decoded: the clip starts between keyframes" in info.notes[0]
    reader = VideoReader(src)
    shown = frames_of(src)
    assert shown == decoded_in_order(src) and len(shown) == info.n_frames
    assert [which(reader.frame(i)) for i in (15, 2, info.n_frames - 1)] == [shown[15], shown[2], shown[-1]]
    assert dehaze_cli(src, "-o", tmp_path / "out") == 0
    assert "starts between keyframes" in capsys.readouterr().err


# G7: complete clips called "truncated or damaged", and AVI gaps lost.
def test_complete_clips_are_not_called_truncated_and_avi_gaps_are_kept(tmp_path: Path) -> None:
    seg = remux(clip(tmp_path / "gop.mkv", 30, gop=7), tmp_path / "seg.mkv", skip=7)  # starts at 0.28 s
    assert probe(seg).n_frames == 23
    drops = avi(tmp_path / "drops.avi", 40, "mjpeg", "yuvj420p", drop=tuple(range(5, 40, 3)))
    assert frames_of(drops) == [i for i in range(40) if i not in range(5, 40, 3)]
    ms = clip(tmp_path / "ms.avi", 10, codec="mpeg4")  # a 1 ms time base: 390 of 400 slots empty
    assert frames_of(ms) == list(range(10))
    long_last = remux(clip(tmp_path / "c.mkv", 10), tmp_path / "long_last.mkv", last_seconds=3)
    assert probe(long_last).n_frames == 10
    # (c) one dropped frame: the output keeps the gap, so later frames are not early
    drop1 = avi(tmp_path / "drop1.avi", 20, "mjpeg", "yuvj420p", drop=(5,))
    assert dehaze_cli(drop1, "-o", tmp_path / "out") == 0
    stamps = pts_of(tmp_path / "out" / "drop1_dehazed.avi")
    assert np.diff(stamps).tolist().count(2) == 1 and stamps[-1] - stamps[0] == 19


def test_clips_cut_short_are_still_refused(tmp_path: Path) -> None:  # G7: the check still bites
    src = clip(tmp_path / "whole.mkv", 30)
    data = src.read_bytes()
    (tmp_path / "half.mkv").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"half.mkv: (truncated or damaged|not a readable video|its video "
                                         r"stream holds no frames)"):
        probe(tmp_path / "half.mkv")


# G8: equal timestamps ("frame 2 is missing") and a size change mid-stream (torch error / stretched).
def test_equal_timestamps_are_read_in_the_files_order(tmp_path: Path, capsys) -> None:
    src = clip(tmp_path / "hs.mkv", 12, codec="ffv1", pix="yuv444p", tb=2000, step=1)  # ms: 0,1,1,2,2,…
    assert len(set(pts_of(src))) < 12
    assert frames_of(src) == list(range(12))
    reader = VideoReader(src)
    assert [which(reader.frame(i)) for i in (7, 2, 11, 1)] == [7, 2, 11, 1]
    assert dehaze_cli(src, "-o", tmp_path / "out") == 0
    assert "one tick apart" in capsys.readouterr().err


def test_a_frame_size_change_is_scaled_with_a_note_or_refused_by_name(tmp_path: Path) -> None:
    src = sizechange(tmp_path / "sc.mkv")
    with pytest.warns(VideoWarning, match="frame 5 is 48×32: scaled to the clip's 80×64"):
        out = nc.dehaze(nc.read_video(src), method="dcp").image
    assert out.shape == (10, 64, 80, 3) and (out[7] > 0).all(-1).mean() > 0.99  # no black part
    reader = VideoReader(src, warn=False)
    np.testing.assert_array_equal(reader.frame(7), VideoReader(src, warn=False)[:][7])  # sought = in order
    reader[:]
    assert "5 frames (5–9) are 48×32" in " ".join(reader.notes)
    with pytest.raises(ValueError, match=r"sc.mkv: frame 5 is 48×32, the clip is 80×64"):
        VideoReader(src, damaged="stop")[:]


# G15: `clearnet depth clip.mp4 --frame 10` said "cannot identify image file".
def test_depth_reads_one_frame_of_a_clip(tmp_path: Path, capsys) -> None:
    src = clip(tmp_path / "clip.mp4", 12, gop=5)
    assert main(["depth", str(src), "--frame", "10", "-o", str(tmp_path / "o"), "--method", "dcp"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record and (tmp_path / "o" / "clip_optical_depth.tif").exists()
    assert main(["depth", str(src), "-o", str(tmp_path / "p"), "--method", "dcp"]) == 2
    assert "is a clip of 12 frames; choose one with --frame I (0 to 11)" in capsys.readouterr().err
    assert main(["depth", str(src), "--frame", "12", "-o", str(tmp_path / "p"), "--method", "dcp"]) == 2
    assert "--frame 12 is out of range" in capsys.readouterr().err


# G19: metadata, extra streams, alpha, bit depth and image-only options were dropped silently.
def test_what_a_clip_carries_is_kept_or_named(tmp_path: Path, capsys) -> None:
    meta = {"title": "gate 4", "creation_time": "2026-01-02T03:04:05.000000Z"}
    src = clip(tmp_path / "cam.mkv", 6, metadata=meta, second_video=True)
    assert dehaze_cli(src, "-o", tmp_path / "out", "--bit-depth", "16", "--quality", "5") == 0
    err = capsys.readouterr().err
    assert "1 other video stream" in err and "--bit-depth, --quality do not apply to clips" in err
    with av.open(str(tmp_path / "out" / "cam_dehazed.mkv")) as c:
        kept = {k.lower(): v for k, v in c.metadata.items()}
    assert kept["title"] == "gate 4" and kept["creation_time"].startswith("2026-01-02T03:04:05")
    ten = clip(tmp_path / "ten.mkv", 4, pix="yuv420p10le")
    alpha = clip(tmp_path / "alpha.mkv", 4, codec="ffv1", pix="yuva420p")
    assert any("10-bit samples" in n for n in probe(ten).notes)
    with pytest.warns(VideoWarning, match="alpha channel"):
        nc.read_video(alpha)


# G20: very wide clips failed after the work with "Generic error in an external library".
def test_clips_too_wide_for_h264_are_refused_before_any_work(tmp_path: Path, capsys, monkeypatch) -> None:
    import napari_clearnet.core.run as run_mod

    monkeypatch.setattr(run_mod, "run", lambda *a, **k: pytest.fail("dehazing started"))
    wide = clip(tmp_path / "wide.mkv", 2, w=17000, h=16, codec="ffv1", pix="yuv444p")
    assert dehaze_cli(wide, "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "wide.mkv: the dehazed clip would be 17000×16, and H.264 holds at most 16384" in err
    half = clip(tmp_path / "half.mkv", 2, w=8200, h=16, codec="ffv1", pix="yuv444p")
    with pytest.raises(ValueError, match=r"16400×16 \(side_by_side doubles the width\)"):
        nc.dehaze_video(half, tmp_path / "half_sbs.mkv", method="dcp", side_by_side=True)
    assert not list(tmp_path.glob("*.part*")) and not (tmp_path / "half_sbs.mkv").exists()


# G23: a PNG named .mp4 became a one-frame clip; empty and text files got a truncation hint.
def test_files_are_judged_by_their_content_not_their_suffix(tmp_path: Path, capsys) -> None:
    from PIL import Image

    Image.fromarray(frame_img(0)).save(tmp_path / "still.mp4", format="PNG")
    Image.fromarray(frame_img(0)).save(tmp_path / "photo.mkv", format="JPEG")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("hello\n")
    for name, why in [("still.mp4", "it is a PNG image, not a video"), ("photo.mkv", "it is a JPEG image"),
                      ("empty.mp4", "it is an empty file (0 bytes)"), ("text.mp4", "it is a text file")]:
        with pytest.raises(ValueError, match=f"cannot read .*{name}: {re.escape(why)}"):
            nc.read_video(tmp_path / name)
    assert dehaze_cli(tmp_path / "still.mp4", tmp_path / "empty.mp4", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "still.mp4: it is a PNG image" in err and "truncated" not in err
    assert not (tmp_path / "out" / "still_dehazed.mp4").exists()


# Issue item 7: random byte and packet corruption of small clips: a result or a named ValueError,
# never a traceback of another kind and never a hang.
def _read_everything(path: Path) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VideoWarning)
            reader = VideoReader(path, readahead=2)
            n = len(reader)
            for i in (n - 1, 0, n // 2):
                assert reader.frame(i).shape == reader.shape[1:]
            for f in reader:
                assert f.shape == reader.shape[1:]
            reader.close()
        return "read"
    except ValueError as exc:
        assert path.name in str(exc), str(exc)
        return "refused"


def test_fuzz_corrupted_clips_give_frames_or_a_named_error_in_bounded_time(tmp_path: Path) -> None:
    seeds = [clip(tmp_path / "s.mp4", 12, gop=4, bframes=2), clip(tmp_path / "s.mkv", 12, gop=4),
             avi(tmp_path / "s.avi", 12, "mpeg4", gop=4, bframes=2)]
    rng = np.random.default_rng(2026)
    outcomes: dict[str, int] = {}
    for k in range(36):
        src = seeds[k % 3]
        data = bytearray(src.read_bytes())
        kind = k // 3 % 4
        if kind == 0:  # random bytes anywhere (headers and index included)
            for at in rng.integers(0, len(data), 1 + k % 6):
                data[at] = int(rng.integers(256))
        elif kind == 1:  # a run of noise
            at = int(rng.integers(0, len(data) - 64))
            data[at:at + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        elif kind == 2:  # cut anywhere
            data = data[: int(rng.integers(1, len(data)))]
        path = tmp_path / f"m{k}{src.suffix}"
        path.write_bytes(bytes(data))
        if kind == 3:  # a whole packet of noise
            damage(src, path, int(rng.integers(0, 12)), seed=k)
        box: dict[str, object] = {}

        def work(p: Path = path, box: dict = box) -> None:
            try:
                box["outcome"] = _read_everything(p)
            except BaseException as exc:  # handed to the test thread
                box["error"] = exc

        t0 = time.monotonic()
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), f"{path.name} hangs the reader"
        if "error" in box:
            raise AssertionError(f"{path.name}: {box['error']!r}") from box["error"]  # type: ignore[arg-type]
        assert time.monotonic() - t0 < 20
        outcomes[str(box["outcome"])] = outcomes.get(str(box["outcome"]), 0) + 1
    assert outcomes.get("read", 0) > 5 and outcomes.get("refused", 0) > 5, outcomes
