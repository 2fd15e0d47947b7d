"""Issue 12, weights files (``weights.read_weights``/``build_model``/``save_weights``/``resolve``):
non-finite weights never load or get written, a config is bounded before anything is allocated,
written files get normal permissions, and odd ``--model`` values get messages that say what is
wrong. Findings: F10, F19, F33, F34 (the stalled Hub is in test_hub.py).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import napari_clearnet as nc
from napari_clearnet import weights
from napari_clearnet.cli import main
from napari_clearnet.model import ClearNet, ClearNetConfig

_SCRIPT = Path(sys.executable).with_name("clearnet")
CLEARNET = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "napari_clearnet.cli"]


def _photo(path: Path) -> Path:
    Image.fromarray((np.random.default_rng(0).random((24, 32, 3)) * 200).astype(np.uint8)).save(path)
    return path


def _nan_file(path: Path) -> Path:
    """What a diverged training run produced: a valid file whose tensors hold NaN."""
    net = ClearNet(ClearNetConfig(widths=(4, 8)))
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    first = next(iter(state))
    state[first].fill_(float("nan"))
    save_file(state, str(path), metadata={weights.CONFIG_KEY: json.dumps(net.config.to_dict())})
    return path


# ------------------------------------------------------------------------------- F10
def test_nan_weights_are_refused_when_read_naming_the_file(tmp_path: Path, capsys) -> None:  # F10
    p = _nan_file(tmp_path / "nan.safetensors")
    with pytest.raises(weights.WeightsError, match=r"nan\.safetensors: NaN or infinite values in stem"):
        weights.read_weights(p)
    with pytest.raises(weights.WeightsError, match="diverged"):
        nc.dehaze(np.zeros((8, 8, 3)), model=p, device="cpu")
    _photo(tmp_path / "photo.png")
    code = main(["dehaze", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--model", str(p),
                 "--save-transmission", "--save-airlight", "--no-progress"])
    assert code == 2 and "NaN or infinite" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_nan_weights_are_never_written(tmp_path: Path) -> None:  # F10
    net = ClearNet(ClearNetConfig(widths=(4, 8)))
    with torch.no_grad():
        next(net.parameters()).fill_(float("inf"))
    with pytest.raises(weights.WeightsError, match="refusing to write"):
        weights.save_weights(net, tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- F19
def _config_only(path: Path, config: dict) -> Path:
    """A 132-byte kind of file: one tiny tensor and a config asking for a huge network."""
    save_file({"x": torch.zeros(1)}, str(path), metadata={weights.CONFIG_KEY: json.dumps(config)})
    return path


def test_a_tiny_file_cannot_make_the_loader_allocate(tmp_path: Path) -> None:  # F19
    huge = _config_only(tmp_path / "huge.safetensors", {"widths": [30000, 30000]})
    assert huge.stat().st_size < 200
    start = time.monotonic()
    with pytest.raises(weights.WeightsError, match=r"widths\[0\] must be in \[1, 4096\]"):
        nc.load_model(huge, device="cpu")
    wide = _config_only(tmp_path / "wide.safetensors", {"widths": [4000, 4000]})  # in range, tensors differ
    with pytest.raises(weights.WeightsError, match="do not fit"):
        nc.load_model(wide, device="cpu")  # compared on the meta device: nothing allocated
    assert time.monotonic() - start < 10


def test_a_tiny_file_under_a_memory_limit_via_the_cli(tmp_path: Path) -> None:  # F19
    _config_only(tmp_path / "huge.safetensors", {"widths": [30000, 30000]})
    _photo(tmp_path / "photo.png")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4_000_000_000, 4_000_000_000))

    p = subprocess.run([*CLEARNET, "dehaze", "photo.png", "-o", "out", "--model", "huge.safetensors"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "huge.safetensors" in p.stderr, p.stderr


def test_in_channels_other_than_the_networks_are_refused_up_front(tmp_path: Path) -> None:  # F19
    cfg = ClearNetConfig(widths=(4, 8)).to_dict()
    cfg["in_channels"] = 5
    p = _config_only(tmp_path / "in5.safetensors", cfg)
    with pytest.raises(weights.WeightsError, match="in_channels must be 4"):
        weights.read_weights(p)


# ------------------------------------------------------------------------------- F33
def test_written_weights_get_normal_permissions(tmp_path: Path) -> None:  # F33
    old = os.umask(0o022)
    try:
        weights.save_weights(ClearNet(ClearNetConfig(widths=(4, 8))), tmp_path / "w.safetensors")
        folder = weights.export_hub_folder(tmp_path / "w.safetensors", tmp_path / "hub", name="w")
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
    for f in folder.iterdir():
        assert f.stat().st_mode & 0o777 == 0o644, f.name


# ------------------------------------------------------------------------------- F34
@pytest.mark.parametrize(
    ("model", "match"),
    [("http://example.com/x.safetensors", r"http://example\.com/x\.safetensors: URLs are not supported.*hf://"),
     ("https://huggingface.co/o/r/resolve/main/x.safetensors", "URLs are not supported"),
     ("s3://bucket/x.safetensors", "URLs are not supported")],
)
def test_urls_are_named_as_unsupported(model: str, match: str) -> None:  # F34
    with pytest.raises(weights.WeightsError, match=match):
        weights.resolve(model)


def test_a_folder_as_model_is_named_as_a_folder(tmp_path: Path) -> None:  # F34
    d = tmp_path / "mdl" / "dir.safetensors"
    d.mkdir(parents=True)
    with pytest.raises(weights.WeightsError, match=r"dir\.safetensors is a folder"):
        weights.resolve(d)
    weights.save_weights(ClearNet(ClearNetConfig(widths=(4, 8))), tmp_path / "mdl" / "inside.safetensors")
    with pytest.raises(weights.WeightsError, match=r"holds inside\.safetensors"):
        weights.resolve(tmp_path / "mdl")
