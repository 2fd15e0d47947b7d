"""training/train.py: a few steps on tiny generated hazy images, exact resume, frozen heads, a
2-process DDP run; a run is never silently replaced, never selects an untrained checkpoint for ever,
and a diverging one stops (issue 12: F10, F13, F14, F27, F36)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _common import REPO, TINY, strict_json, train_cli, training_config
from PIL import Image

from training.__main__ import main as training_main
from training.checkpoints import load_checkpoint
from training.config import load_config
from training.data import find_hazy_images, split_train_val
from training.train import TrainOptions, train
from training.validation import HAZE_FREE_PENALTY, HAZE_FREE_TARGET


def _train(
    data: Path, out: Path, steps: int, resume: Path | None = None, pairs: Path | None = None,
    stop_at: int | None = None,
) -> dict:
    return train(load_config(TINY), TrainOptions(
        data=[str(data)], out=str(out), max_steps=steps, device="cpu", stop_at=stop_at,
        resume=str(resume) if resume else None, val_pairs=str(pairs) if pairs else None, progress=False,
    ))



def test_train_writes_checkpoints_record_and_tensorboard(full_run: Path) -> None:
    rec = json.loads((full_run / "run.json").read_text())
    assert rec["steps"] == 4 and rec["n_train_images"] + rec["n_val_images"] == 10
    assert [h["step"] for h in rec["history"]] == [0, 2, 4]
    assert all(np.isfinite(h["val/psnr"]) and np.isfinite(h["val/pseudo_total"]) for h in rec["history"])
    best = json.loads((full_run / "best.json").read_text())
    assert best["measure"].startswith("val/psnr")
    # mean PSNR, less HAZE_FREE_PENALTY per dB that clear images dehazed fall short of the target
    assert best["value"] == max(h["val/psnr"] + 1e-3 * h["val/ssim"]
                                - HAZE_FREE_PENALTY * max(0.0, HAZE_FREE_TARGET - h["val/haze_free"])
                                for h in rec["history"])
    assert all(0 < h["val/haze_free"] <= 99 for h in rec["history"])
    assert load_checkpoint(full_run / "best.pt")["step"] == best["step"]
    assert any((full_run / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_continues_exactly(full_run: Path, hazy_dir: Path, pairs_dir: Path, tmp_path: Path) -> None:
    _train(hazy_dir, tmp_path, 4, pairs=pairs_dir, stop_at=2)  # an interrupted 4-step run
    half = load_checkpoint(tmp_path / "last.pt")
    assert half["step"] == 2
    _train(hazy_dir, tmp_path, 4, resume=tmp_path / "last.pt", pairs=pairs_dir)
    resumed, straight = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(full_run / "last.pt")
    assert resumed["step"] == 4
    # optimiser state restored: Adam's step counter continues from 2, not from 0
    assert all(float(s["step"]) == 4 for s in resumed["optimizer"]["state"].values())
    # the per-image head keeps its larger learning rate through the schedule and the resume
    trunk, head = resumed["optimizer"]["param_groups"]
    assert head["lr"] == pytest.approx(10 * trunk["lr"]) and trunk["lr"] > 0
    for key in ("model", "ema"):
        for name, value in straight[key].items():
            assert torch.equal(resumed[key][name], value), f"{key}.{name} differs after resume"


def test_frozen_heads_stay_zero_and_the_haze_amount_learns(hazy_dir: Path, tmp_path: Path) -> None:
    """The shipped recipe trains only the per-image haze amount: the per-pixel correction
    (train_residual: false) and the airlight correction (no term involves A: pseudo_airlight and
    the physics losses at 0) must stay exactly 0."""
    cfg = load_config(TINY)
    cfg.optim.train_residual = False
    for term in ("pseudo_airlight", "dark_channel", "color_constancy", "tv", "exposure"):
        setattr(cfg.loss, term, 0.0)
    opts = TrainOptions(data=[str(hazy_dir)], out=str(tmp_path), max_steps=3, device="cpu", progress=False)
    train(cfg, opts)
    state = load_checkpoint(tmp_path / "last.pt")["model"]
    assert not state["t_head.weight"].any() and not state["t_head.bias"].any()
    last_w, last_b = state["global_head.2.weight"], state["global_head.2.bias"]
    assert not last_w[1:4].any() and not last_b[1:4].any()  # airlight rows
    assert last_w[0].any()  # the haze-amount row learned


def test_ddp_two_processes_on_cpu(hazy_dir: Path, tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training", "train", "--config", str(TINY), "--data", str(hazy_dir),
           "--out", str(tmp_path / "ddp"), "--max-steps", "2", "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert rec["machine"]["world_size"] == 2 and rec["steps"] == 2
    ck = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ck["step"] == 2


def test_a_diverging_run_stops_with_a_clear_error(hazy: Path, tmp_path: Path, capsys) -> None:  # F10
    cfg = training_config(tmp_path, {"optim": {"lr": 1.0e30, "grad_clip": 1.0e30}})
    assert train_cli(cfg, hazy, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "optim.lr" in err and "Traceback" not in err
    for name in ("last.pt", "best.pt"):  # whatever was saved is finite
        if (tmp_path / "run" / name).exists():
            ck = load_checkpoint(tmp_path / "run" / name)
            assert all(torch.isfinite(v).all() for v in ck["ema"].values())


def test_no_validation_images_selects_the_last_step(tmp_path: Path, capsys) -> None:  # F13
    d1 = tmp_path / "d1"
    d1.mkdir()
    pixels = (np.random.default_rng(0).random((48, 64, 3)) * 200).astype(np.uint8)
    Image.fromarray(pixels).save(d1 / "img1.png")
    train_split, val_split = split_train_val(find_hazy_images([d1]))
    assert len(train_split) == 1 and not val_split  # the review's case: the one image is in train
    with pytest.warns(UserWarning, match="best.pt will be the last step"):
        assert train_cli(TINY, d1, tmp_path / "run") == 0
    assert "best: step 4 by last step" in capsys.readouterr().out
    best = strict_json(tmp_path / "run" / "best.json")
    assert best["step"] == 4 and best["value"] is None
    assert load_checkpoint(tmp_path / "run" / "best.pt")["step"] == 4
    strict_json(tmp_path / "run" / "run.json")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_train_never_silently_replaces_a_run(hazy: Path, tmp_path: Path, capsys) -> None:  # F14
    run = tmp_path / "runA"
    assert train_cli(TINY, hazy, run, "--max-steps", "2") == 0
    before = _digest(run)
    assert train_cli(TINY, hazy, run, "--max-steps", "2") == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--resume" in err and "--overwrite" in err
    assert _digest(run) == before  # untouched
    events = sorted((run / "tensorboard").iterdir())
    assert train_cli(TINY, hazy, run, "--max-steps", "2", "--overwrite") == 0
    assert not set(events) & set((run / "tensorboard").iterdir())  # the old run's logs are gone
    assert train_cli(TINY, hazy, run, "--max-steps", "4", "--resume", run / "last.pt") == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_max_steps_below_one_is_refused(hazy: Path, tmp_path: Path, capsys, steps: str) -> None:  # F36
    assert train_cli(TINY, hazy, tmp_path / "run", "--max-steps", steps) == 2
    assert "--max-steps must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_data_and_checkpoints_give_one_line_errors(hazy: Path, tmp_path: Path, capsys) -> None:  # F27
    bad = tmp_path / "corrupt"
    bad.mkdir()
    for i in range(4):
        (bad / f"img{i}.png").write_text("garbage")
    assert train_cli(TINY, bad, tmp_path / "r1") == 2
    assert "can be read" in capsys.readouterr().err
    shipped = REPO / "weights" / "clearnet-default.safetensors"
    assert train_cli(TINY, hazy, tmp_path / "r2", "--resume", shipped) == 2
    assert "exported weights (safetensors), not a training checkpoint" in capsys.readouterr().err
    assert train_cli(TINY, hazy, tmp_path / "r3", "--max-steps", "2") == 0
    cut = tmp_path / "cut.pt"
    cut.write_bytes((tmp_path / "r3" / "last.pt").read_bytes()[:3000])
    assert train_cli(TINY, hazy, tmp_path / "r4", "--resume", cut) == 2
    assert "cannot read checkpoint" in (err := capsys.readouterr().err) and "truncated" in err
    assert training_main(["export", str(cut), "--out", str(tmp_path / "hub")]) == 2


def test_training_cases_that_already_worked_still_do(hazy: Path, tmp_path: Path, capsys) -> None:
    """Review rows 39, 40, 77, 78: one image that lands in the validation split, an empty data
    folder, a resume with another model or optim config."""
    one = tmp_path / "one"
    one.mkdir()
    name = next(f"v{i}.png" for i in range(100)
                if not split_train_val([(one / f"v{i}.png", f"one/v{i}.png")])[0])
    (one / name).write_bytes((hazy / "hazy" / "1000_1.png").read_bytes())
    assert train_cli(TINY, one, tmp_path / "rv") == 2
    assert "train split" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train_cli(TINY, empty, tmp_path / "r0") == 2
    assert "no images" in capsys.readouterr().err
    assert train_cli(TINY, hazy, tmp_path / "run", "--max-steps", "2", "--stop-at", "1") == 0
    other = training_config(tmp_path, {"model": {"widths": [4, 16]}})
    assert train_cli(other, hazy, tmp_path / "run", "--resume", tmp_path / "run" / "last.pt") == 2
    assert "model config differs" in capsys.readouterr().err
    lr = training_config(tmp_path, {"optim": {"lr": 1e-4}})
    last = tmp_path / "run" / "last.pt"
    assert train_cli(lr, hazy, tmp_path / "run", "--max-steps", "2", "--resume", last) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
