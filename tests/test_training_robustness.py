"""Issue 12, ``python -m training``: bad configs, checkpoints and data give one-line errors; a run
is never silently replaced, never selects an untrained checkpoint for ever, and never lets NaN
weights through; every JSON file it writes is valid JSON. Findings: F10, F13, F14, F27, F36, F37.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_training import TINY, _write_hazy

from napari_clearnet import io
from training.__main__ import main as training_main
from training.config import TrainConfig, load_config
from training.data import find_hazy_images, split_train_val
from training.train import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def strict_json(path: Path):
    """Parse as strict JSON: NaN and Infinity are not JSON."""
    def refuse(name: str):
        raise AssertionError(f"{path.name} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def train(*args: str | Path) -> int:
    return training_main(["train", "--config", str(args[0]), "--data", str(args[1]), "--out", str(args[2]),
                          "--device", "cpu", "--no-progress", *map(str, args[3:])])


@pytest.fixture(scope="module")
def hazy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hazy")
    _write_hazy(root / "hazy", 8)
    return root


def _config(tmp_path: Path, edit: dict | None = None, text: str | None = None) -> Path:
    p = tmp_path / "cfg.yaml"
    if text is not None:
        p.write_text(text)
        return p
    cfg = yaml.safe_load(TINY.read_text())
    for section, values in (edit or {}).items():
        cfg.setdefault(section, {}).update(values)
    p.write_text(yaml.safe_dump(cfg))
    return p


# ------------------------------------------------------------------------------- F10
def test_a_diverging_run_stops_with_a_clear_error(hazy: Path, tmp_path: Path, capsys) -> None:  # F10
    cfg = _config(tmp_path, {"optim": {"lr": 1.0e30, "grad_clip": 1.0e30}})
    assert train(cfg, hazy, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "optim.lr" in err and "Traceback" not in err
    for name in ("last.pt", "best.pt"):  # whatever was saved is finite
        if (tmp_path / "run" / name).exists():
            ck = load_checkpoint(tmp_path / "run" / name)
            assert all(torch.isfinite(v).all() for v in ck["ema"].values())


def test_export_refuses_non_finite_weights(hazy: Path, tmp_path: Path, capsys) -> None:  # F10
    assert train(TINY, hazy, tmp_path / "run", "--max-steps", "2") == 0
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    for v in ck["ema"].values():
        if v.is_floating_point():
            v.fill_(float("nan"))
    torch.save(ck, tmp_path / "nan.pt")
    assert training_main(["export", str(tmp_path / "nan.pt"), "--out", str(tmp_path / "hub")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()


# ------------------------------------------------------------------------------- F13
def test_no_validation_images_selects_the_last_step(tmp_path: Path, capsys) -> None:  # F13
    d1 = tmp_path / "d1"
    d1.mkdir()
    pixels = (np.random.default_rng(0).random((48, 64, 3)) * 200).astype(np.uint8)
    Image.fromarray(pixels).save(d1 / "img1.png")
    train_split, val_split = split_train_val(find_hazy_images([d1]))
    assert len(train_split) == 1 and not val_split  # the review's case: the one image is in train
    with pytest.warns(UserWarning, match="best.pt will be the last step"):
        assert train(TINY, d1, tmp_path / "run") == 0
    assert "best: step 4 by last step" in capsys.readouterr().out
    best = strict_json(tmp_path / "run" / "best.json")
    assert best["step"] == 4 and best["value"] is None
    assert load_checkpoint(tmp_path / "run" / "best.pt")["step"] == 4
    strict_json(tmp_path / "run" / "run.json")


# ------------------------------------------------------------------------------- F14, F36
def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_train_never_silently_replaces_a_run(hazy: Path, tmp_path: Path, capsys) -> None:  # F14
    run = tmp_path / "runA"
    assert train(TINY, hazy, run, "--max-steps", "2") == 0
    before = _digest(run)
    assert train(TINY, hazy, run, "--max-steps", "2") == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--resume" in err and "--overwrite" in err
    assert _digest(run) == before  # untouched
    events = sorted((run / "tensorboard").iterdir())
    assert train(TINY, hazy, run, "--max-steps", "2", "--overwrite") == 0
    assert not set(events) & set((run / "tensorboard").iterdir())  # the old run's logs are gone
    assert train(TINY, hazy, run, "--max-steps", "4", "--resume", run / "last.pt") == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_max_steps_below_one_is_refused(hazy: Path, tmp_path: Path, capsys, steps: str) -> None:  # F36
    assert train(TINY, hazy, tmp_path / "run", "--max-steps", steps) == 2
    assert "--max-steps must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------- F27
@pytest.mark.parametrize(
    ("edit", "text", "match"),
    [(None, "model: [unclosed\n", r"not valid YAML \(line 2"),
     (None, "- a\n- b\n", "expected a mapping of sections"),
     (None, "optim: [1, 2]\n", "optim must be a mapping"),
     ({"optim": {"batch_size": 0}}, None, r"optim\.batch_size must be in \[1, "),
     ({"data": {"val_crops": 0}}, None, r"data\.val_crops must be in \[1, "),
     ({"optim": {"max_steps": "abc"}}, None, r"optim\.max_steps must be an integer, got 'abc'"),
     ({"optim": {"lr": float("nan")}}, None, r"optim\.lr must be a finite number"),
     ({"optim": {"train_residual": "yes"}}, None, r"optim\.train_residual must be true or false"),
     ({"data": {"crop_range": [0.9, 0.5]}}, None, r"data\.crop_range must be \(low, high\)"),
     ({"model": {"widths": [4, 30000]}}, None, r"model\.widths\[1\] must be in"),
     ({"loss": {"tv": -1}}, None, r"loss\.tv must be in"),
     ({"optim": {"bach_size": 4}}, None, r"unknown optim keys \['bach_size'\]")],
)
def test_bad_configs_give_one_line_errors(hazy: Path, tmp_path: Path, capsys, edit, text, match) -> None:
    cfg = _config(tmp_path, edit, text)
    assert train(cfg, hazy, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(cfg) in err
    assert pytest.importorskip("re").search(match, err), err


def test_bad_data_and_checkpoints_give_one_line_errors(hazy: Path, tmp_path: Path, capsys) -> None:  # F27
    bad = tmp_path / "corrupt"
    bad.mkdir()
    for i in range(4):
        (bad / f"img{i}.png").write_text("garbage")
    assert train(TINY, bad, tmp_path / "r1") == 2
    assert "can be read" in capsys.readouterr().err
    shipped = REPO / "weights" / "clearnet-default.safetensors"
    assert train(TINY, hazy, tmp_path / "r2", "--resume", shipped) == 2
    assert "exported weights (safetensors), not a training checkpoint" in capsys.readouterr().err
    assert train(TINY, hazy, tmp_path / "r3", "--max-steps", "2") == 0
    cut = tmp_path / "cut.pt"
    cut.write_bytes((tmp_path / "r3" / "last.pt").read_bytes()[:3000])
    assert train(TINY, hazy, tmp_path / "r4", "--resume", cut) == 2
    assert "cannot read checkpoint" in (err := capsys.readouterr().err) and "truncated" in err
    assert training_main(["export", str(cut), "--out", str(tmp_path / "hub")]) == 2


def test_a_decompression_bomb_among_training_images_is_skipped(hazy: Path, tmp_path: Path) -> None:  # F27
    data = tmp_path / "data"
    for p in sorted((hazy / "hazy").iterdir()):
        (data / "hazy").mkdir(parents=True, exist_ok=True)
        (data / "hazy" / p.name).write_bytes(p.read_bytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    head = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    for name in ("1000_1.png", "1001_1.png", "1002_1.png"):  # some land in train, some in validation
        (data / "hazy" / name).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IEND", b""))
    with pytest.warns(UserWarning, match="image too large"):
        assert train(TINY, data, tmp_path / "run", "--max-steps", "2") == 0


def test_the_cli_prints_no_traceback(hazy: Path, tmp_path: Path) -> None:  # F27
    cfg = _config(tmp_path, text="model: [unclosed\n")
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": path}
    p = subprocess.run([sys.executable, "-m", "training", "train", "--config", str(cfg), "--data", str(hazy),
                        "--out", str(tmp_path / "run")], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "not valid YAML" in p.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(["model", "loss", "pseudo", "data", "optim"]), data=st.data(),
       value=st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                       st.text(max_size=3), st.lists(st.floats(-2, 2), max_size=3), st.dictionaries(
                           st.text(max_size=2), st.integers(), max_size=2)))
def test_property_any_config_value_is_checked(section: str, data, value) -> None:  # F27
    """Any value in any field of any section: the config loads (and every number in it is finite)
    or a ValueError names the field; never another exception."""
    cfg = yaml.safe_load(TINY.read_text()) or {}
    fields = sorted(TrainConfig().to_dict()[section])
    key = data.draw(st.sampled_from(fields))
    cfg.setdefault(section, {})[key] = value
    try:
        TrainConfig.from_dict(cfg)
    except ValueError as exc:
        assert f"{section}." in str(exc) or "unknown" in str(exc), exc


# ------------------------------------------------------------------------------- F37
def test_evaluate_writes_valid_json_for_an_identical_pair(tmp_path: Path) -> None:  # F37
    root = tmp_path / "pairs"
    _write_hazy(root / "hazy", 2, seed=3, gt=root / "gt")
    (root / "gt" / "1000.png").write_bytes((root / "hazy" / "1000_1.png").read_bytes())  # hazy == gt
    rc = training_main(["evaluate", "--pairs", str(root), "--model", "clearnet-default", "--out",
                        str(tmp_path / "ev"), "--device", "cpu"])
    assert rc == 0
    scores = strict_json(tmp_path / "ev" / "scores.json")
    assert scores["mean"]["hazy input"]["psnr"] is None  # infinite PSNR, written as null
    assert "inf" in (tmp_path / "ev" / "scores.csv").read_text()
    assert io.read_image(tmp_path / "ev" / "grid.png").ndim == 3


def test_config_files_in_the_repository_still_load() -> None:
    for p in sorted((REPO / "training" / "configs").glob("*.yaml")):
        load_config(p)


def test_training_cases_that_already_worked_still_do(hazy: Path, tmp_path: Path, capsys) -> None:
    """Review rows 39, 40, 77, 78: one image that lands in the validation split, an empty data
    folder, a resume with another model or optim config."""
    one = tmp_path / "one"
    one.mkdir()
    name = next(f"v{i}.png" for i in range(100)
                if not split_train_val([(one / f"v{i}.png", f"one/v{i}.png")])[0])
    (one / name).write_bytes((hazy / "hazy" / "1000_1.png").read_bytes())
    assert train(TINY, one, tmp_path / "rv") == 2
    assert "train split" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(TINY, empty, tmp_path / "r0") == 2
    assert "no images" in capsys.readouterr().err
    assert train(TINY, hazy, tmp_path / "run", "--max-steps", "2", "--stop-at", "1") == 0
    other = _config(tmp_path, {"model": {"widths": [4, 16]}})
    assert train(other, hazy, tmp_path / "run", "--resume", tmp_path / "run" / "last.pt") == 2
    assert "model config differs" in capsys.readouterr().err
    lr = _config(tmp_path, {"optim": {"lr": 1e-4}})
    last = tmp_path / "run" / "last.pt"
    assert train(lr, hazy, tmp_path / "run", "--max-steps", "2", "--resume", last) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
