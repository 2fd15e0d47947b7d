"""``clearnet bench``: speed and memory measured in fresh processes; its output path and sizes
are checked before it runs, and its JSON is valid JSON (issue 12: F28)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch
from _common import CLEARNET

from napari_clearnet.cli import main as cli_main


@pytest.mark.parametrize(
    ("args", "match"),
    [(["--output", "/nonexistent/x.json"], "folder /nonexistent does not exist"),
     (["--output", "."], "is a folder"),
     (["--sizes", "inf"], "--sizes takes megapixels"),
     (["--sizes", "nan"], "--sizes takes megapixels"),
     (["--sizes", "-1"], "--sizes takes megapixels")],
)
def test_bad_output_and_sizes_are_refused_before_the_run(tmp_path: Path, args: list[str], match: str) -> None:
    start = time.monotonic()  # F28
    p = subprocess.run([*CLEARNET, "bench", "--sizes", "0.01", "--repeats", "1", "--methods", "dcp",
                        "--video", "none", "--clip", "none", *args], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and match in p.stderr, p.stderr
    assert "dcp" not in p.stdout  # nothing was measured
    assert time.monotonic() - start < 30


def test_a_short_bench_writes_valid_json(tmp_path: Path, capsys) -> None:  # F28
    out = tmp_path / "b.json"
    from napari_clearnet.cli import main

    assert main(["bench", "--sizes", "0.01", "--repeats", "1", "--methods", "dcp", "--video", "none",
                 "--clip", "none", "--output", str(out)]) == 0
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["results"][0]["method"] == "dcp"
    assert not list(tmp_path.glob(".*.tmp"))


def test_bench_cases_that_already_worked_still_do(capsys) -> None:
    """Review row 86: an empty clip is a skipped row; a device this machine lacks (now) stops
    before anything runs."""
    from napari_clearnet.cli import main

    assert main(["bench", "--sizes", "0.01", "--repeats", "1", "--methods", "dcp", "--video", "0x64x48",
                 "--clip", "none"]) == 0
    assert "skipped" in capsys.readouterr().out
    import torch

    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        args = ["bench", "--sizes", "0.01", "--methods", "dcp", "--video", "none", "--clip", "none",
                "--device", "mps"]
        assert main(args) == 2
        assert "not available" in capsys.readouterr().err


def test_bench_cli_json_reports_speed_and_memory(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    rc = cli_main(["bench", "--sizes", "0.02", "--methods", "clearnet,dcp", "--repeats", "1",
                   "--video", "2x64x48", "--clip", "none", "--json", "--output", str(out)])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == report
    assert report["machine"]["torch_threads"] >= 1 and report["machine"]["torch"] == torch.__version__
    rows = {(r["method"], r["label"]): r for r in report["results"]}
    assert set(rows) == {(m, lab) for m in ("clearnet", "dcp") for lab in ("0.02 MP", "video 2x64x48")}
    for r in rows.values():
        assert r["seconds"] > 0 and r["mp_per_s"] == pytest.approx(r["megapixels"] / r["seconds"])
        assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0
        assert r["output_shape"] == r["input_shape"]
    assert "vs_dcp" in report["speedups"]["0.02 MP"]


def test_bench_cli_rejects_bad_options(capsys) -> None:
    assert cli_main(["bench", "--sizes", "big"]) == 2
    assert "--sizes" in capsys.readouterr().err
    assert cli_main(["bench", "--methods", "magic", "--sizes", "0.01"]) == 2
    assert "magic" in capsys.readouterr().err


def test_bench_clip_row_reports_end_to_end_beside_dehaze_only(capsys) -> None:
    """Issue 14: an H.264 clip decoded, dehazed and encoded, beside dehazing decoded frames."""
    assert cli_main(["bench", "--sizes", "0.01", "--methods", "dcp", "--repeats", "1", "--video", "none",
                     "--clip", "4x64x48", "--json"]) == 0
    clip = json.loads(capsys.readouterr().out)["clip"]
    assert (clip["frames"], clip["width"], clip["height"]) == (4, 64, 48) and "skipped" not in clip
    assert clip["end_to_end_fps"] > 0 and clip["dehaze_fps"] > 0
    assert clip["ratio"] == pytest.approx(clip["end_to_end_fps"] / clip["dehaze_fps"])
    # issue 22: re-encoding alone beside it, the CPU time of each stage, the schedule's quality cost
    assert clip["reencode_fps"] > 0
    assert clip["vs_reencode"] == pytest.approx(clip["reencode_fps"] / clip["end_to_end_fps"])
    assert set(clip["cpu_ms_per_frame"]) == {"decode", "network", "full_resolution", "encode"}
    assert all(v > 0 for v in clip["cpu_ms_per_frame"].values())
    q = clip["quality"]
    assert q["every_1_psnr"] > q["hazy_psnr"] and q[f"every_{clip['network_every']}_psnr"] > q["hazy_psnr"]
    assert cli_main(["bench", "--clip", "0x64x48", "--video", "none"]) == 2


def _spinners() -> list[int]:
    """PIDs of busy processes bench_load started that are still alive."""
    from napari_clearnet.bench import load as bench_load

    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if bench_load._SPIN.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_bench_load_measures_idle_and_busy_cores_side_by_side(capsys) -> None:
    """Issue 15: --load 0,1 gives every row idle and with one core kept busy by another process,
    the loaded/idle ratio, page faults and system time; no busy process outlives the run."""
    rc = cli_main(["bench", "--sizes", "0.02", "--methods", "clearnet,dcp", "--repeats", "1",
                   "--video", "none", "--clip", "none", "--load", "0,1", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["loads"] == [0, 1]
    assert sorted((r["method"], r["load"]) for r in report["results"]) == [
        ("clearnet", 0), ("clearnet", 1), ("dcp", 0), ("dcp", 1)]
    for r in report["results"]:
        assert r["seconds"] > 0 and r["minor_faults"] >= 0 and r["system_seconds"] >= 0
    loaded = report["speedups"]["0.02 MP, 1 core busy"]
    assert loaded["loaded_vs_idle"] > 0 and "vs_dcp" in loaded
    assert not _spinners()


def test_bench_load_is_checked_before_the_run(capsys) -> None:
    for bad in ("-1", "two", ""):
        assert cli_main(["bench", "--sizes", "0.01", "--load", bad, "--video", "none", "--clip", "none"]) == 2
        assert "--load" in capsys.readouterr().err
    from napari_clearnet.bench.load import busy_cores

    with pytest.raises(ValueError, match="busy cores"), busy_cores(-1):
        pass
