"""An interrupted clip carries on from its last complete keyframe (issue 21): Ctrl-C, SIGTERM and
SIGHUP keep the partial clip with its journal, and a rerun with ``--skip-existing`` copies the
frames before the keyframe (the same packets), dehazes the rest from the recorded smoothing state
and ends with every frame and timestamp an uninterrupted run has; a partial clip that does not
match starts again from frame 0, and finished outputs are skipped as before."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import av
import numpy as np
import pytest
from _common import clip_facts, dehazer, hazy_rgb, write_clip

import napari_clearnet as nc
from napari_clearnet.cli import main
from napari_clearnet.core.run import Carry, drive, run
from napari_clearnet.video import encoder
from napari_clearnet.video.partial import Partial

#: the issue's clip: 30 s of 640×360, at 4 fps (120 frames) so that its three runs (uninterrupted,
#: interrupted, carried on) stay near 15 s on two busy cores
LONG, RATE, SIZE = 120, 4, (360, 640)


def dehaze_cli(*args: str | Path) -> int:
    return main(["dehaze", *map(str, args), "--no-progress"])


def stop_at(monkeypatch: pytest.MonkeyPatch, frame: int, how: str = "SIGTERM") -> None:
    """Stop the run when frame ``frame`` is handed to the encoder, once the encoder has taken every
    frame before it (a signal to this process, handled as the CLI handles it)."""
    real = encoder.VideoWriter.write

    def write(self, i, parts):
        if i == frame:
            while self.frames < i:
                time.sleep(0.005)
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), getattr(signal, how))
            time.sleep(5)  # the handler raises here
        real(self, i, parts)

    monkeypatch.setattr(encoder.VideoWriter, "write", write)


def count_frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The frames the run hands to its encoders (dehazed in this run)."""
    real, seen = encoder.VideoWriter.write, []

    def write(self, i, parts):
        seen.append(i)
        real(self, i, parts)

    monkeypatch.setattr(encoder.VideoWriter, "write", write)
    return seen


def video_packets(path: Path) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(c.streams.video[0]) if p.size]


def decoded(path: Path) -> tuple[list[int], list[np.ndarray], list[str]]:
    """Every frame a player shows (timestamps, RGB) and what FFmpeg said while decoding."""
    with av.logging.Capture() as logs, av.open(str(path)) as c:
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    said = [m for level, _, m in logs if level <= av.logging.WARNING]
    return [p for p, _ in frames], [f for _, f in frames], said


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def carried_from(err: str) -> int:
    found = re.search(r"carrying on from frame (\d+)", err)
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The 30 s clip (with sound) and its uninterrupted output."""
    d = tmp_path_factory.mktemp("long")
    src = write_clip(d / "in" / "clip.mp4", n=LONG, size=SIZE, rate=RATE, audio=True, preset="ultrafast")
    assert dehaze_cli(src, "-o", d / "whole", "--save-airlight") == 0
    return src, d / "whole"


def test_sigterm_halfway_then_skip_existing_carries_on_and_matches_an_uninterrupted_run(
        long_clip, tmp_path: Path, monkeypatch, capsys) -> None:
    src, whole = long_clip
    out = tmp_path / "out"
    stop_at(monkeypatch, LONG // 2)  # half way (issue 21): the encoder is a few frames behind
    assert dehaze_cli(src, "-o", out, "--save-airlight") == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert (f"terminated by SIGTERM: 0 files written to {out}; rerun with --skip-existing to carry on (the "
            "partial clip of clip_dehazed.mp4 is kept and carried on from its last keyframe)") in err
    # the partial clip keeps a name of its own, with its journal: never taken for a finished output
    assert sorted(p.name for p in out.iterdir()) == [".clip_dehazed.partial.json",
                                                     ".clip_dehazed.partial.mp4"]
    partial = video_packets(out / ".clip_dehazed.partial.mp4")

    monkeypatch.undo()
    seen = count_frames(monkeypatch)
    assert dehaze_cli(src, "-o", out, "--save-airlight", "--skip-existing") == 0
    err = capsys.readouterr().err
    k = carried_from(err)
    # (a) only the rest is dehazed and encoded: every 24 frames (6 s: 5 s rounded up to the engine's
    # batch of 8) is a keyframe; 48 is the last one x264 (about 13 frames behind here) can have
    # written when frame 60 came, 24 where its frame threads (half the cores) keep it further behind
    assert k in (24, 48) and seen == list(range(k, LONG)), err
    assert sorted(p.name for p in out.iterdir()) == ["clip_airlight.json", "clip_dehazed.mp4"]
    got, want = out / "clip_dehazed.mp4", whole / "clip_dehazed.mp4"
    # the frames before the keyframe are the partial clip's packets, copied, not encoded again
    packets = video_packets(got)
    assert packets[:k] == partial[:k]
    # (b) every frame and every timestamp, the sound too
    stamps, frames, said = decoded(got)
    want_stamps, want_frames, _ = decoded(want)
    assert len(frames) == LONG and stamps == want_stamps
    assert sorted(p for p, _ in packets) == sorted(p for p, _ in video_packets(want))
    facts, want_facts = clip_facts(got), clip_facts(want)
    assert facts["audio"] == ["aac"] and facts["audio_packets"] == want_facts["audio_packets"]
    assert facts["comment"] == want_facts["comment"]  # the input's fingerprint
    # (c) the same pixels within the encoder's tolerance: the dehazed frames are the same bit for
    # bit (the airlight of every frame, the copied ones' from the journal, is), only x264's
    # decisions after the keyframe where it starts again differ
    a_got = json.loads((out / "clip_airlight.json").read_text())
    a_want = json.loads((whole / "clip_airlight.json").read_text())
    assert a_got["airlight"] == a_want["airlight"] and a_got["provenance"]["carried_on_from"] == k
    scores = [psnr(x, y) for x, y in zip(frames, want_frames, strict=True)]
    worst = max(int(np.abs(x.astype(int) - y).max()) for x, y in zip(frames, want_frames, strict=True))
    off = max(float((np.abs(x.astype(int) - y) > 8).mean()) for x, y in zip(frames, want_frames, strict=True))
    print(f"carried on from {k}: PSNR min {min(scores):.1f} dB, max difference {worst}, pixels off by more "
          f"than 8: {off:.1e}")
    # measured: 48 dB at worst (the first frames after the keyframe), single pixels up to 34 levels
    # apart at the moving bright bar, 2e-4 of a frame's pixels more than 8 apart; frames from about
    # 30 after the keyframe on are the same again
    assert min(scores) >= 40 and off <= 1e-3
    # (d) it plays through: FFmpeg decodes every frame without a complaint
    assert said == []


def test_a_run_carried_on_at_a_batch_boundary_gives_the_same_frames_bit_for_bit() -> None:
    stack = np.stack([hazy_rgb(40, 56, seed=i) * (0.8 + 0.02 * i) for i in range(10)]).astype(np.float32)
    kw = {"temporal_smoothing": 0.8, "batch_size": 3, "value_range": (0, 1)}

    def frames(model, carry=None):
        kept: dict[int, tuple] = {}
        res = drive(run(model, stack, carry=carry, **kw,
                        sink=lambda i, r: kept.setdefault(i, (r.image.copy(), r.airlight, r.scale))))
        return res, kept

    for method in ("clearnet", "dcp"):
        model = dehazer(method)
        full, whole = frames(model)
        for k in (3, 6, 4):
            res, got = frames(model, Carry(k, whole[k - 1][1], whole[k - 1][2]))
            assert sorted(got) == list(range(k, 10)) and np.isnan(res.airlight[:k]).all()
            np.testing.assert_array_equal(res.airlight[k:], full.airlight[k:])
            gap = max(float(np.abs(got[i][0] - whole[i][0]).max()) for i in got)
            assert gap == 0 if k % 3 == 0 else gap < 1e-5  # mid-batch: s rounded to float32 once
        _, fresh = frames(model, Carry(6))  # the frame without its state
        assert max(float(np.abs(fresh[i][0] - whole[i][0]).max()) for i in fresh) > 0.01
    with pytest.raises(ValueError, match="needs a sink"):
        drive(run(dehazer("dcp"), stack, carry=Carry(3), **kw))


# ------------------------------------------------------------------------------- small clips
N_SMALL = 120  # 12 s at 10 fps: a keyframe every 56 frames (5 s rounded up to the batch of 8)


def interrupted(tmp_path: Path, monkeypatch, capsys, ext: str = "mp4", *extra: str,
                how: str = "ctrl-c") -> tuple[Path, Path]:
    """A small clip (with sound) stopped at frame 100 (Ctrl-C, or a signal): its partial clip is
    kept in out/."""
    src = tmp_path / "in" / f"clip.{ext}"
    if not src.exists():
        write_clip(src, n=N_SMALL, size=(96, 160), rate=10, audio=True, preset="ultrafast")
    stop_at(monkeypatch, 100, how)
    # a signal needs its default disposition whatever the suite was launched under (nohup ignores
    # SIGHUP, and the CLI keeps an ignored signal ignored by design); put back afterwards
    signum = None if how == "ctrl-c" else getattr(signal, how)
    launched_with = None if signum is None else signal.signal(signum, signal.SIG_DFL)
    try:
        status = dehaze_cli(src, "-o", tmp_path / "out", *extra)
    finally:
        if signum is not None:
            signal.signal(signum, launched_with)
    assert status == (130 if how == "ctrl-c" else 128 + getattr(signal, how))
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert re.search(r"partial clips? of .* kept and carried on", err) or ext == "avi", err
    return src, tmp_path / "out"


def test_a_partial_clip_of_other_settings_or_another_input_starts_again_from_frame_0(
        tmp_path: Path, monkeypatch, capsys) -> None:
    src, out = interrupted(tmp_path, monkeypatch, capsys)
    seen = count_frames(monkeypatch)
    assert dehaze_cli(src, "-o", out, "--skip-existing", "--crf", "20") == 0
    err = capsys.readouterr().err
    assert (f"note: {src}: its partial clip .clip_dehazed.partial.mp4 is not carried on: it was made with "
            "other settings (crf); starting from frame 0") in err
    assert seen == list(range(N_SMALL)) and sorted(p.name for p in out.iterdir()) == ["clip_dehazed.mp4"]

    (out / "clip_dehazed.mp4").unlink()
    monkeypatch.undo()
    interrupted(tmp_path, monkeypatch, capsys, "mp4", "--strength", "0.7")
    seen = count_frames(monkeypatch)
    assert dehaze_cli(src, "-o", out, "--skip-existing") == 0
    assert "other settings (options.strength)" in capsys.readouterr().err and len(seen) == N_SMALL

    (out / "clip_dehazed.mp4").unlink()
    monkeypatch.undo()
    interrupted(tmp_path, monkeypatch, capsys)
    write_clip(src, n=N_SMALL, size=(96, 160), rate=10, audio=True, crf=20, preset="ultrafast")  # changed
    seen = count_frames(monkeypatch)
    assert dehaze_cli(src, "-o", out, "--skip-existing") == 0
    assert "it was made from another input (or the input has changed since)" in capsys.readouterr().err
    assert len(seen) == N_SMALL and clip_facts(out / "clip_dehazed.mp4")["frames"] == N_SMALL

    (out / "clip_dehazed.mp4").unlink()
    monkeypatch.undo()
    interrupted(tmp_path, monkeypatch, capsys)
    seen = count_frames(monkeypatch)  # a transmission clip asked for now: it needs every frame
    assert dehaze_cli(src, "-o", out, "--skip-existing", "--save-transmission") == 0
    assert ("its partial clip .clip_dehazed.partial.mp4 is not carried on: clip_transmission.mp4 has no "
            "partial clip to carry on with it; starting from frame 0") in capsys.readouterr().err
    assert len(seen) == 2 * N_SMALL


def test_partial_and_finished_clips_are_kept_unless_asked_and_skip_existing_skips_finished_ones(
        tmp_path: Path, monkeypatch, capsys) -> None:
    src, out = interrupted(tmp_path, monkeypatch, capsys, "mkv", "--save-transmission")
    kept = sorted(p.name for p in out.iterdir())
    assert kept == [".clip_dehazed.partial.json", ".clip_dehazed.partial.mkv",
                    ".clip_transmission.partial.json", ".clip_transmission.partial.mkv"]
    # a plain rerun replaces nothing: the partial clip is named, with the two ways on
    assert dehaze_cli(src, "-o", out, "--save-transmission") == 1
    assert (f"exists: {out / '.clip_transmission.partial.mkv'} is a partial clip an interrupted run left; "
            "not replaced, pass --skip-existing to carry on from it or --overwrite to start over"
            ) in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == kept
    with pytest.raises(FileExistsError, match="pass resume=True to carry on from it or overwrite=True"):
        nc.dehaze_video(src, out / "clip_dehazed.mkv", model=dehazer("clearnet"))
    # both outputs carry on from the same keyframe
    seen = count_frames(monkeypatch)
    assert dehaze_cli(src, "-o", out, "--save-transmission", "--skip-existing") == 0
    k = carried_from(capsys.readouterr().err)
    assert k == 56 and seen == [i for i in range(k, N_SMALL) for _ in range(2)]
    assert sorted(p.name for p in out.iterdir()) == ["clip_dehazed.mkv", "clip_transmission.mkv"]
    for name in ("clip_dehazed.mkv", "clip_transmission.mkv"):
        assert clip_facts(out / name)["frames"] == N_SMALL and decoded(out / name)[2] == []
    # finished outputs: --skip-existing skips them as before, --overwrite makes them again
    made = (out / "clip_dehazed.mkv").stat().st_mtime_ns
    seen.clear()
    assert dehaze_cli(src, "-o", out, "--save-transmission", "--skip-existing") == 0
    assert "1 input skipped (outputs exist)" in capsys.readouterr().err
    assert seen == [] and (out / "clip_dehazed.mkv").stat().st_mtime_ns == made
    assert dehaze_cli(src, "-o", out, "--save-transmission", "--overwrite") == 0
    assert len(seen) == 2 * N_SMALL and (out / "clip_dehazed.mkv").stat().st_mtime_ns != made


def test_overwrite_starts_a_partial_clip_again(tmp_path: Path, monkeypatch, capsys) -> None:
    src, out = interrupted(tmp_path, monkeypatch, capsys, how="SIGHUP")  # a closed terminal
    kept = Partial.of(out / "clip_dehazed.mp4")
    assert sorted(out.iterdir()) == [kept.journal, kept.path]
    seen = count_frames(monkeypatch)
    assert dehaze_cli(src, "-o", out, "--overwrite") == 0
    assert "carrying on" not in capsys.readouterr().err and seen == list(range(N_SMALL))
    assert sorted(p.name for p in out.iterdir()) == ["clip_dehazed.mp4"]


def test_avi_clips_are_not_kept_they_have_no_timestamps_to_carry_on_from(
        tmp_path: Path, monkeypatch, capsys) -> None:
    interrupted(tmp_path, monkeypatch, capsys, "avi")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_a_partial_clip_cut_by_a_kill_is_trusted_up_to_its_last_complete_keyframe(
        tmp_path: Path, monkeypatch, capsys, ext: str) -> None:
    src, out = interrupted(tmp_path, monkeypatch, capsys, ext)
    clip = out / f".clip_dehazed.partial.{ext}"
    with av.open(str(clip)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = packets[70]  # what a kill -9 leaves: the file ends inside a packet after keyframe 56
    with open(clip, "r+b") as f:
        f.truncate(pos + size // 2)
    seen = count_frames(monkeypatch)
    assert dehaze_cli(src, "-o", out, "--skip-existing") == 0
    err = capsys.readouterr().err
    got = out / f"clip_dehazed.{ext}"
    if ext == "mkv":  # Matroska is read up to the cut: keyframe 56 and every frame before it are whole
        assert carried_from(err) == 56 and seen == list(range(56, N_SMALL))
    else:  # an MP4 has its index at the end: one cut short cannot be read, so it starts again
        assert "its partial clip .clip_dehazed.partial.mp4 is not carried on: it cannot be read" in err
        assert seen == list(range(N_SMALL))
    stamps, frames, said = decoded(got)
    assert len(frames) == N_SMALL and len(set(stamps)) == N_SMALL and said == []
    assert sorted(p.name for p in out.iterdir()) == [f"clip_dehazed.{ext}"]


def test_api_and_batch_carry_on_the_same_way(tmp_path: Path, monkeypatch, capsys) -> None:
    src, out = interrupted(tmp_path, monkeypatch, capsys)
    partial = Partial.of(out / "clip_dehazed.mp4")
    shutil.copy(partial.path, tmp_path / "p.mp4")
    shutil.copy(partial.journal, tmp_path / "p.json")
    result = nc.dehaze_video(src, out / "clip_dehazed.mp4", model=dehazer("clearnet"), resume=True,
                             source_fingerprint=None)
    assert result.provenance["carried_on_from"] == 56 and result.airlight.shape == (N_SMALL, 3)
    assert not np.isnan(result.airlight).any()
    assert result.provenance["notes"][0].startswith("carrying on from frame 56")
    (out / "clip_dehazed.mp4").unlink()
    shutil.copy(tmp_path / "p.mp4", partial.path)
    shutil.copy(tmp_path / "p.json", partial.journal)
    with open(os.devnull, "w") as quiet:
        report = nc.batch.dehaze_files([src], out, skip_existing=True, stderr=quiet)
    assert report.exit_code == 0 and clip_facts(out / "clip_dehazed.mp4")["frames"] == N_SMALL


def test_a_partial_clip_killed_before_its_first_keyframe_is_removed_by_the_next_run(
        tmp_path: Path, capsys) -> None:
    src = write_clip(tmp_path / "in" / "clip.mp4", n=12, size=(48, 64))
    out = tmp_path / "out"
    out.mkdir()
    partial = Partial.of(out / "clip_dehazed.mp4")
    partial.path.write_bytes(b"\x00\x00\x00\x18ftypisom")  # a kill: no index, no keyframe in the journal
    partial.journal.write_text(json.dumps({"clearnet_partial": 1, "output": "clip_dehazed.mp4"}) + "\n")
    assert dehaze_cli(src, "-o", out) == 0
    err = capsys.readouterr().err
    assert f"note: removed 2 partial file(s) an interrupted run left in {out}" in err
    assert sorted(p.name for p in out.iterdir()) == ["clip_dehazed.mp4"]


def test_kill_9_mid_clip_then_skip_existing_carries_on_a_matroska_clip(tmp_path: Path, capsys) -> None:
    import subprocess

    from _common import CLEARNET

    src = write_clip(tmp_path / "in" / "clip.mkv", n=300, size=(180, 320), rate=10, preset="ultrafast")
    out = tmp_path / "out"
    proc = subprocess.Popen([*CLEARNET, "dehaze", str(src), "-o", str(out), "--no-progress"],
                            stderr=subprocess.PIPE, text=True)
    journal = Partial.of(out / "clip_dehazed.mkv").journal
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (
            journal.exists() and journal.read_text().count("\n") >= 4):  # keyframes 56, 112, 168 passed
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no clean-up at all, the muxer's buffers are lost
    proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the kill")
    assert proc.returncode == -signal.SIGKILL
    assert dehaze_cli(src, "-o", out, "--skip-existing") == 0
    k = carried_from(capsys.readouterr().err)
    print("carried on from", k)
    assert k >= 56 and k % 56 == 0
    stamps, frames, said = decoded(out / "clip_dehazed.mkv")
    assert len(frames) == 300 and stamps == sorted(set(stamps)) and said == []
    assert sorted(p.name for p in out.iterdir()) == ["clip_dehazed.mkv"]


def test_a_partial_clip_from_another_encoder_is_found_out_when_copying_and_starts_again(
        tmp_path: Path, monkeypatch, capsys) -> None:
    src, out = interrupted(tmp_path, monkeypatch, capsys, "mp4", "--preset", "ultrafast")
    journal = Partial.of(out / "clip_dehazed.mp4").journal
    lines = journal.read_text().splitlines()
    header = json.loads(lines[0])
    header["settings"]["preset"] = "veryfast"  # as if x264 had changed under the same settings
    journal.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    seen = count_frames(monkeypatch)
    assert dehaze_cli(src, "-o", out, "--skip-existing") == 0
    assert ("its partial clip is not carried on: the encoder's settings differ from the ones it was made "
            "with; starting from frame 0") in capsys.readouterr().err
    assert seen == list(range(N_SMALL)) and sorted(p.name for p in out.iterdir()) == ["clip_dehazed.mp4"]
    assert decoded(out / "clip_dehazed.mp4")[2] == []
