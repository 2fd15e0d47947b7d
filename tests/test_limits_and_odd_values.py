"""Memory and processes are estimated before work starts, and odd values are refused by the one
validation mechanism, never silently accepted (review 2026-12-07: G9, G24)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from _common import REPO, cli
from _gen import clip, hazy

import napari_clearnet as nc
from napari_clearnet.bench import main as bench_main
from napari_clearnet.cli import main
from napari_clearnet.core import limits


# ------------------------------------------------------------------------------------------- G9
def _tiny(**changes: dict) -> dict:
    cfg = yaml.safe_load((REPO / "training" / "configs" / "tiny.yaml").read_text())
    for section, values in changes.items():
        cfg[section].update(values)
    return cfg


@pytest.mark.parametrize("changes", [{"model": {"widths": [4096, 4096, 4096]}},
                                     {"optim": {"batch_size": 100000}},
                                     {"data": {"crop_size": 8192}, "optim": {"batch_size": 64}}])
def test_training_configs_that_multiply_past_the_memory_are_refused_with_the_number(changes,
                                                                                    monkeypatch) -> None:
    # G9: each value was in range, their product OOM-killed the run after 218 s with no message
    from training.config import TrainConfig

    monkeypatch.setenv(limits.MEMORY_ENV, "16G")  # the review's machine had 23.8 GB
    with pytest.raises(ValueError, match=r"this recipe needs at least [\d.]+ [GT]iB .* more than the 16\.0 "
                                         r"GiB this machine has available; lower optim.batch_size"):
        TrainConfig.from_dict(_tiny(**changes))
    TrainConfig.from_dict(_tiny())  # the shipped recipes fit


def test_the_training_cli_refuses_a_recipe_too_big_in_one_line(tmp_path: Path) -> None:
    # G9: through `python -m training train`, with a memory limit set the way users can
    import os
    import subprocess
    import sys

    (tmp_path / "big.yaml").write_text(yaml.safe_dump(_tiny(optim={"batch_size": 4096})))
    env = {**os.environ, limits.MEMORY_ENV: "100M", "PYTHONPATH": f"{REPO}:{REPO / 'src'}"}
    r = subprocess.run([sys.executable, "-m", "training", "train", "--config", "big.yaml", "--data", "d",
                        "--out", "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "this recipe needs at least" in r.stderr, r.stderr
    assert "100.0 MiB" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_clip_whose_results_do_not_fit_is_refused_before_any_work(tmp_path: Path, monkeypatch) -> None:
    # G9: nc.dehaze(read_video(...)) (what the napari widget runs) allocated J and t for every frame
    # up front: 16 bytes a pixel a frame, about 20 GB for a minute of 1080p
    clip(str(tmp_path / "big2.mp4"), frames=40, w=160, h=96)
    video = nc.read_video(tmp_path / "big2.mp4")
    monkeypatch.setenv(limits.MEMORY_ENV, "8M")  # a machine that holds 8 MiB (40 frames need 9.4 MiB)
    with pytest.raises(limits.MemoryLimitError, match=r"the results \(J and t, float32\) of 40 frame\(s\) "
                                                      r"of 160×96 would need about 9\.4 MiB, more than the "
                                                      r"8\.0 MiB.*dehaze_video"):
        nc.dehaze(video, method="dcp", device="cpu")
    out = tmp_path / "out.mp4"
    nc.dehaze_video(tmp_path / "big2.mp4", out, method="dcp", device="cpu")  # streaming still works
    assert out.is_file()
    monkeypatch.setenv(limits.MEMORY_ENV, "1G")
    assert nc.dehaze(np.stack([hazy()] * 3), method="dcp", device="cpu").image.shape == (3, 64, 80, 3)


def test_bench_clips_loads_and_methods_are_checked_before_the_header(capsys) -> None:
    # G9: --clip 1x20000x20000 grew until the OOM killer; --load 150 started 150 processes on 2 cores
    # G24: --methods '' measured nothing with exit 0; --repeats 0 was refused after the header
    base = ["--sizes", "0.01", "--methods", "dcp", "--video", "none", "--clip", "none"]
    cases = [(["--clip", "1x20000x20000"], "400 MP frames, over the 179 MP limit"),
             (["--video", "100000x4000x3000"], "would need about"),
             (["--load", "150"], "--load 150 is more than this machine's"),
             (["--methods", ""], "--methods names no method"),
             (["--repeats", "0"], "--repeats must be >= 1")]
    for extra, message in cases:
        assert bench_main([*base, *extra]) == 2
        captured = capsys.readouterr()
        assert message in captured.err and captured.out == "", (extra, captured)


def test_local_workers_are_bounded_by_the_machine_unless_forced(tmp_path: Path, capsys, monkeypatch) -> None:
    # G9: --workers N was not limited (about 380 MB per worker process)
    import os

    from napari_clearnet import io

    io.write_image(tmp_path / "a.png", hazy())
    n = (os.cpu_count() or 1) + 1
    args = ["dehaze", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--method", "dcp", "--no-progress"]
    assert main([*args, "--workers", str(n)]) == 2
    assert f"--workers {n} is more than this machine's" in capsys.readouterr().err
    monkeypatch.setenv(limits.MEMORY_ENV, "100M")
    assert main([*args, "--workers", "1"]) == 2  # one worker that does not fit in memory
    assert "--workers 1 (400.0 MiB each) would need about 400.0 MiB" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ G24
def test_a_model_given_with_the_dcp_is_refused_not_ignored(tmp_path: Path, capsys) -> None:
    # G24: `--method dcp --model nope` exited 0 without even looking the model up (dehaze and depth)
    from napari_clearnet import io

    io.write_image(tmp_path / "photo.png", hazy())
    assert main(["dehaze", str(tmp_path / "photo.png"), "-o", str(tmp_path / "o"), "--method", "dcp",
                 "--model", "nope"]) == 2
    assert "--model nope is given, but --method dcp uses no weights" in capsys.readouterr().err
    r = cli("depth", "photo.png", "-o", "d", "--method", "dcp", "--model", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "uses no weights" in r.stderr, r.stderr
    with pytest.raises(ValueError, match="model 'nope' is given, but method 'dcp' uses no weights"):
        nc.dehaze(hazy(), method="dcp", model="nope")


def test_training_seeds_out_of_range_and_empty_configs_are_refused(tmp_path: Path) -> None:
    # G24: --seed 99999999999 was accepted (optim.seed refuses it); an empty config file ran the full
    # default recipe (> 5 min) without a note
    import argparse

    from training.config import load_config, seed_option

    with pytest.raises(argparse.ArgumentTypeError, match=r"--seed must be in \[0, 4.29497e\+09\]"):
        seed_option("99999999999")
    assert seed_option("7") == 7
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(ValueError, match=r"empty\.yaml is empty; .* \{\} to train the default recipe"):
        load_config(tmp_path / "empty.yaml")
    (tmp_path / "defaults.yaml").write_text("{}\n")
    assert load_config(tmp_path / "defaults.yaml").optim.batch_size == 8  # asked for on purpose
