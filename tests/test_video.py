"""Video files in and out (issue 14): clips made here with PyAV go through the CLI, the API and
the lazy reader; the batch's rules (planning, fingerprints, atomic files, per-file errors) hold."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from _common import clip_facts, photo, write_clip

import napari_clearnet as nc
from napari_clearnet.batch.inputs import read_tag
from napari_clearnet.cli import main
from napari_clearnet.core.run import drive, run
from napari_clearnet.video import VideoReader, probe
from napari_clearnet.video import writer as video_out


def dehaze_cli(*args: str | Path) -> int:
    return main(["dehaze", *map(str, args), "--no-progress"])


@pytest.mark.parametrize(("ext", "audio"), [("mp4", True), ("mkv", True), ("mov", False), ("avi", False)])
def test_clip_round_trips_through_the_cli(tmp_path: Path, ext: str, audio: bool) -> None:
    src = write_clip(tmp_path / "in" / f"clip.{ext}", audio=audio)
    assert dehaze_cli(src, "-o", tmp_path / "out", "--save-airlight") == 0
    out = tmp_path / "out" / f"clip_dehazed.{ext}"
    got, want = clip_facts(out), clip_facts(src)
    assert got["frames"] == want["frames"] == 24
    assert got["rate"] == want["rate"] == Fraction(25, 2) and got["size"] == want["size"] == (64, 48)
    assert got["audio"] == want["audio"] == (["aac"] if audio else [])
    assert got["audio_packets"] == want["audio_packets"]  # copied packet by packet, none lost
    assert read_tag(out) is not None  # the input's fingerprint, for --skip-existing
    record = json.loads((tmp_path / "out" / "clip_airlight.json").read_text())
    assert len(record["airlight"]) == 24 and record["provenance"]["temporal_smoothing"] == 0.8
    assert record["provenance"]["crf"] == 18
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["clip_airlight.json", f"clip_dehazed.{ext}"]


def test_truncated_clips_are_named_and_the_other_inputs_go_on(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for ext in ("mp4", "mkv"):
        data = write_clip(tmp_path / f"whole.{ext}", audio=True).read_bytes()
        (src / f"cut.{ext}").write_bytes(data[: len(data) // 2])
    write_clip(src / "good.mov")
    photo(src / "photo.png")
    assert dehaze_cli(src, "-o", tmp_path / "out", "--method", "dcp") == 1
    err = capsys.readouterr().err
    assert f"error: {src / 'cut.mp4'}: not a readable video" in err and "truncated" in err
    assert f"error: {src / 'cut.mkv'}: truncated or damaged: its header declares" in err
    assert "2 files written" in err and "2 inputs failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_dehazed.mov", "photo_dehazed.png"]


def test_side_by_side_is_twice_as_wide_for_clips_and_images(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_clip(src / "clip.mp4", n=6)
    photo(src / "photo.png")
    assert dehaze_cli(src, "-o", tmp_path / "out", "--side-by-side", "--method", "dcp", "--crf", "0") == 0
    facts = clip_facts(tmp_path / "out" / "clip_dehazed.mp4")
    assert facts["size"] == (128, 48) and facts["frames"] == 6
    pair = nc.io.read_image(tmp_path / "out" / "photo_dehazed.png")
    np.testing.assert_array_equal(pair[:, :64], nc.io.read_image(src / "photo.png"))  # hazy | dehazed
    first = VideoReader(tmp_path / "out" / "clip_dehazed.mp4").frame(0)
    hazy = VideoReader(src / "clip.mp4").frame(0)
    assert np.abs(first[:, :64].astype(int) - hazy).mean() < 1.5  # the left half is the input (4:2:0)


@pytest.mark.parametrize("ext", ["mp4", "mkv", "avi"])
def test_lazy_reader_returns_the_right_frame_at_random_indices(tmp_path: Path, ext: str) -> None:
    src = write_clip(tmp_path / f"g.{ext}", n=40, gop=7, crf=0)
    info = probe(src)
    assert info.n_frames == 40 and len(info.seek_points) > 4  # several keyframes: real seeks
    in_order = [f.copy() for f in VideoReader(src)]
    reds = np.array([np.median(f[..., 0]) for f in in_order])
    assert np.abs(reds - (60 + (6 * np.arange(40)) % 160)).max() <= 2  # display order, each frame once
    for readahead in (0, 4):
        reader = VideoReader(src, readahead=readahead)
        for i in np.random.default_rng(readahead).integers(0, 40, 50):
            np.testing.assert_array_equal(reader.frame(int(i)), in_order[i])
        reader.close()
    clip = nc.read_video(src)
    assert clip.shape == (40, 48, 64, 3) and clip.dtype == np.uint8 and clip.chunks[0] == (1,) * 40
    np.testing.assert_array_equal(np.asarray(clip[[33, 2, 17]]), np.stack([in_order[i] for i in (33, 2, 17)]))
    np.testing.assert_array_equal(np.asarray(clip[-1, :5]), in_order[-1][:5])


def test_rotated_phone_clip_is_read_as_a_player_shows_it(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "phone.mp4", n=3, rotation=-90)  # stored landscape, shown portrait
    stored = write_clip(tmp_path / "plain.mp4", n=3)
    info = probe(src)
    assert (info.height, info.width) == (64, 48) and nc.read_video(src).shape == (3, 64, 48, 3)
    np.testing.assert_array_equal(VideoReader(src).frame(1), np.rot90(VideoReader(stored).frame(1), -1))


def test_api_streams_a_clip_through_the_one_run_loop(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "clip.mkv", n=10, audio=True)
    model = nc.load_model(method="dcp", device="cpu")
    frames = np.asarray(nc.read_video(src))
    whole = nc.dehaze(frames, model=model, temporal_smoothing=0.8)
    kept: dict[int, np.ndarray] = {}
    streamed = drive(run(model, nc.read_video(src), sink=lambda i, r: kept.setdefault(i, r.image),
                         temporal_smoothing=0.8))
    assert streamed.image is None and streamed.transmission is None  # nothing held but A
    np.testing.assert_array_equal(np.stack([kept[i] for i in range(10)]), whole.image)
    np.testing.assert_array_equal(streamed.airlight, whole.airlight)
    result = nc.dehaze_video(src, tmp_path / "out.mkv", model=model, transmission=tmp_path / "t.mkv")
    assert result.airlight.shape == (10, 3) and result.provenance["video"]["frames"] == 10
    assert clip_facts(tmp_path / "out.mkv")["audio"] == ["aac"]
    assert clip_facts(tmp_path / "t.mkv")["audio"] == []  # the transmission clip has no sound
    with pytest.raises(FileExistsError, match="overwrite=True"):
        nc.dehaze_video(src, tmp_path / "out.mkv", model=model)


def test_existing_clip_outputs_are_kept_and_resumed(tmp_path: Path, capsys) -> None:
    src = write_clip(tmp_path / "in" / "clip.mp4", n=4)
    out = tmp_path / "out"
    assert dehaze_cli(src, "-o", out, "--method", "dcp") == 0
    made = (out / "clip_dehazed.mp4").stat().st_mtime_ns
    assert dehaze_cli(src, "-o", out, "--method", "dcp") == 1
    assert "exists:" in capsys.readouterr().err
    assert dehaze_cli(src, "-o", out, "--method", "dcp", "--skip-existing") == 0
    assert (out / "clip_dehazed.mp4").stat().st_mtime_ns == made
    write_clip(src, n=5)  # another clip under the same name: its output is not taken as done
    assert dehaze_cli(src, "-o", out, "--method", "dcp", "--skip-existing") == 1
    assert "was made from another input" in capsys.readouterr().err


def test_interrupted_clip_leaves_no_partial_file(tmp_path: Path, monkeypatch, capsys) -> None:
    src = write_clip(tmp_path / "in" / "clip.mp4", n=12)
    real = video_out.VideoWriter.write

    def interrupt(self, i, parts):
        if i == 5:
            raise KeyboardInterrupt
        real(self, i, parts)

    monkeypatch.setattr(video_out.VideoWriter, "write", interrupt)
    assert dehaze_cli(src, "-o", tmp_path / "out", "--method", "dcp", "--save-transmission") == 130
    assert "--skip-existing" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []  # no .part file, no half clip


def test_video_options_are_checked_by_their_flags(tmp_path: Path, capsys) -> None:
    src = write_clip(tmp_path / "clip.mp4", n=2)
    for args, msg in ((["--crf", "52"], "--crf must be in [0, 51]"),
                      (["--temporal-smoothing", "1"], "--temporal-smoothing must be in [0, 1)"),
                      (["--workers", "0"], "local workers must be an integer >= 1")):
        assert dehaze_cli(src, "-o", tmp_path / "out", *args) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(ValueError, match="preset must be one of"):
        video_out.Encoding(preset="quick")


def test_napari_reader_opens_a_clip_as_a_lazy_layer(make_napari_viewer, tmp_path: Path) -> None:
    pytest.importorskip("napari")
    from napari_clearnet._plugin.layers import dehaze_layer

    src = write_clip(tmp_path / "clip.avi", n=9, gop=4)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(src), plugin="napari-clearnet")
    assert type(layer.data).__module__.startswith("dask") and layer.data.shape == (9, 48, 64, 3) and layer.rgb
    assert layer.metadata["video"]["frames"] == 9
    np.testing.assert_array_equal(np.asarray(layer.data[6]), VideoReader(src).frame(6))
    (out,) = dehaze_layer(viewer, layer.name, method="dcp", device="cpu", outputs=["dehazed"])
    assert out.data.shape == (9, 48, 64, 3)


def test_sigterm_mid_clip_cleans_up_and_a_rerun_removes_stale_parts(tmp_path: Path) -> None:  # F8
    import os
    import signal
    import subprocess
    import time

    from _common import CLEARNET

    write_clip(tmp_path / "in" / "long.mp4", n=150, size=(240, 320))
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".long_dehazed.k3j9x0qa.part.mp4"  # what a killed run left
    stale.write_bytes(b"partial")
    proc = subprocess.Popen([*CLEARNET, "dehaze", "in", "-o", "out", "--method", "dcp"], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and not any(
            q.name == ".long_dehazed.partial.mp4" for q in out.iterdir()):
        time.sleep(0.02)
    time.sleep(0.3)  # some frames into the clip
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated by SIGTERM" in err and "Traceback" not in err
    # the stale part removed at the start; the clip's partial file removed at the signal too, unless it
    # passed a keyframe to carry on from (then kept, with its journal, under a name of its own)
    left = sorted(q.name for q in out.iterdir())
    kept = "partial clip of long_dehazed.mp4 is kept" in err
    assert left == ([".long_dehazed.partial.json", ".long_dehazed.partial.mp4"] if kept else []), err
