"""weights.fileformat: safetensors with the config inside; pickles are refused without being
unpickled, non-finite weights never load or get written, a config is bounded and the shapes are
compared before any network is built (issue 12: F10, F19, F33)."""

from __future__ import annotations

import json
import os
import pickle
import resource
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _common import CLEARNET, hazy
from PIL import Image
from safetensors.torch import save_file

import napari_clearnet
import napari_clearnet as nc
from napari_clearnet import weights
from napari_clearnet.cli import main
from napari_clearnet.core.model import ClearNet, ClearNetConfig


def _bundled() -> Path:
    return weights.bundled_dir() / weights.get_entry(weights.DEFAULT_MODEL).filename


def _default_still_works() -> None:
    res = napari_clearnet.dehaze(hazy(), device="cpu")
    assert res.model == weights.DEFAULT_MODEL and np.isfinite(res.image).all()


def _cli_model(tmp_path: Path, model: Path, capsys) -> str:
    Image.fromarray((hazy() * 255).astype(np.uint8)).save(tmp_path / "in.png")
    code = main(["dehaze", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", str(model),
                 "--no-progress", "--device", "cpu"])
    assert code == 2
    assert not (tmp_path / "out" / "in_dehazed.png").exists()
    return capsys.readouterr().err


class _Trap:
    """Unpickling this creates a marker file: proof that nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_truncated_and_missing_files_are_refused(tmp_path: Path, tiny_file: Path) -> None:
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(tiny_file.read_bytes()[:50])
    with pytest.raises(weights.WeightsError, match=r"not a safetensors file \(or truncated\)"):
        weights.read_weights(truncated)
    body_cut = tmp_path / "body.safetensors"
    body_cut.write_bytes(tiny_file.read_bytes()[:-100])
    with pytest.raises(weights.WeightsError, match="cannot read tensors"):
        weights.read_weights(body_cut)
    with pytest.raises(weights.WeightsError, match="weights file not found"):
        weights.resolve(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", ["evil.safetensors", "old.pt"])
@pytest.mark.parametrize("protocol", ["torch", 2, 5])
def test_pickle_offered_as_weights_is_refused(tmp_path: Path, protocol, name: str, capsys) -> None:
    """The one place pickles are refused: by their first bytes, before anything is unpickled,
    whatever the file is called; the API and the CLI go through it."""
    marker = tmp_path / "unpickled"
    p = tmp_path / name
    if protocol == "torch":
        torch.save({"trap": _Trap(marker)}, p)
    else:
        p.write_bytes(pickle.dumps({"trap": _Trap(marker)}, protocol=protocol))
    with pytest.raises(weights.WeightsError, match=r"pickle / torch\.save checkpoint, which is refused"):
        weights.read_weights(p)
    with pytest.raises(weights.WeightsError, match=r"pickle|not a safetensors file") as exc:
        napari_clearnet.dehaze(hazy(), model=p, device="cpu")
    assert name in str(exc.value)
    assert name in _cli_model(tmp_path, p, capsys)
    assert not marker.exists()
    _default_still_works()


def test_missing_weights(tmp_path: Path, capsys) -> None:
    p = tmp_path / "nope.safetensors"
    with pytest.raises(weights.WeightsError, match="not found"):
        napari_clearnet.dehaze(hazy(), model=p, device="cpu")
    assert "weights file not found" in _cli_model(tmp_path, p, capsys)
    _default_still_works()


def test_truncated_weights(tmp_path: Path, capsys) -> None:
    p = tmp_path / "cut.safetensors"
    p.write_bytes(_bundled().read_bytes()[:100_000])
    with pytest.raises(weights.WeightsError, match="truncated"):
        napari_clearnet.dehaze(hazy(), model=p, device="cpu")
    assert "cut.safetensors" in _cli_model(tmp_path, p, capsys)
    p.write_bytes(_bundled().read_bytes()[:5])
    with pytest.raises(weights.WeightsError, match="not a safetensors file"):
        napari_clearnet.load_model(p)
    _default_still_works()


def test_state_dict_of_another_architecture(tmp_path: Path, capsys) -> None:
    small = ClearNet(ClearNetConfig(widths=(8, 16)))
    meta = {weights.CONFIG_KEY: json.dumps(ClearNetConfig().to_dict())}
    p = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(p), metadata=meta)
    with pytest.raises(weights.WeightsError, match="do not fit the ClearNet architecture"):
        napari_clearnet.dehaze(hazy(), model=p, device="cpu")
    q = tmp_path / "resnet.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(q), metadata=meta)
    with pytest.raises(weights.WeightsError, match="missing"):
        napari_clearnet.load_model(q)
    r = tmp_path / "noconfig.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(r))
    with pytest.raises(weights.WeightsError, match="clearnet_config"):
        napari_clearnet.load_model(r)
    assert "do not fit" in _cli_model(tmp_path, p, capsys)
    _default_still_works()


def test_config_from_argument_or_sidecar(tmp_path: Path) -> None:
    """Files made by other tools carry no config: take it from the caller or config.json."""
    net = ClearNet(ClearNetConfig(widths=(4, 8)))
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(bare))
    with pytest.raises(weights.WeightsError, match=r"no 'clearnet_config' .* pass the config"):
        weights.read_weights(bare)
    _, cfg, _ = weights.read_weights(bare, {"widths": [4, 8]})
    assert cfg.widths == (4, 8)
    with pytest.raises(weights.WeightsError, match="unknown ClearNet config keys"):
        weights.read_weights(bare, {"widths": [4, 8], "depth": 3})
    (tmp_path / "config.json").write_text(json.dumps({"clearnet_config": {"widths": [4, 8]}}))
    state, cfg, _ = weights.read_weights(bare)
    assert weights.build_model(state, cfg).config.widths == (4, 8)
    with pytest.raises(weights.WeightsError, match=r"do not fit the ClearNet architecture \(4, 16\): wrong"):
        weights.build_model(state, ClearNetConfig(widths=(4, 16)), source="bare")
    # a file of the older layout (per-image head without image statistics) is named as such
    old = ClearNetConfig(widths=(4, 8), format_version=1)
    message = r"old\.safetensors use ClearNet weight format 1; .* reads format 2"
    with pytest.raises(weights.WeightsError, match=message):
        weights.build_model(state, old, source="old.safetensors")


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


def test_written_weights_get_normal_permissions(tmp_path: Path) -> None:  # F33
    old = os.umask(0o022)
    try:
        weights.save_weights(ClearNet(ClearNetConfig(widths=(4, 8))), tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary file left


def test_a_safetensors_file_whose_header_length_starts_like_a_pickle_loads(tmp_path: Path) -> None:
    """The header length is little-endian: in 1 file of 256 its first byte is 0x80, a pickle's
    first byte. Such a file is still safetensors and loads (an export once hit it)."""
    from safetensors.torch import save_file

    from napari_clearnet.weights.fileformat import WeightsError, read_metadata

    for pad in range(256):
        path = tmp_path / "w.safetensors"
        save_file({"x": torch.zeros(2)}, str(path), metadata={"pad": "p" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        raise AssertionError("no padding gave a header length ending in 0x80")
    assert read_metadata(path)["pad"] == "p" * pad
    pickled = tmp_path / "p.safetensors"
    torch.save({"x": torch.zeros(2)}, pickled)
    with pytest.raises(WeightsError, match="pickle"):
        read_metadata(pickled)
