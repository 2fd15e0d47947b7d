"""weights.registry: the known models, read from registry.json (the shipped one, $CLEARNET_REGISTRY
or an argument), checked field by field, and a file checked against its entry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _common import hazy
from _hub import registry_entry

import napari_clearnet
from napari_clearnet import weights


def _write_registry(path: Path, *models: dict) -> Path:
    path.write_text(json.dumps({"models": list(models)}))
    return path


def test_shipped_registry_matches_bundled_file(offline: None) -> None:
    """The default is bundled, listed first, and its file matches its own registry record."""
    entries = weights.list_models()
    default = weights.get_entry(weights.DEFAULT_MODEL)
    assert entries[0] == default and default.bundled
    assert default.filename.endswith(".safetensors") and default.repo_id
    path, name = weights.resolve(weights.DEFAULT_MODEL)
    assert name == weights.DEFAULT_MODEL and path == default.bundled_path
    assert weights.sha256_file(path) == default.sha256
    assert weights.cached_path(default, verify=True) == path
    assert "config" not in default.to_dict()  # the config travels inside the weights file only
    state, config, _ = weights.read_weights(path)
    weights.build_model(state, config)


def test_registry_override_by_env_and_argument(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_file: Path
) -> None:
    data = tiny_file.read_bytes()
    home = tmp_path / "reg"
    home.mkdir()
    (home / "tiny.safetensors").write_bytes(data)
    reg = _write_registry(home / "registry.json",
                          registry_entry("tiny", "o/tiny", "tiny.safetensors", data, bundled=True))
    assert [e.name for e in weights.list_models(reg)] == ["tiny"]
    monkeypatch.setenv(weights.REGISTRY_ENV, str(home))  # a folder holding registry.json works too
    entry = weights.get_entry("tiny")
    assert entry.bundled_path == home / "tiny.safetensors"
    assert weights.resolve("tiny") == (home / "tiny.safetensors", "tiny")
    with pytest.raises(KeyError, match="unknown model 'clearnet-default'; known models: tiny"):
        weights.get_entry(weights.DEFAULT_MODEL)
    monkeypatch.setenv(weights.REGISTRY_ENV, str(tmp_path / "nowhere.json"))
    with pytest.raises(weights.WeightsError, match=r"registry not found: .*nowhere.json.*CLEARNET_REGISTRY"):
        weights.list_models()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha": "x"}, r"unknown keys \['sha'\]"),
        ({"sha256": "ABC"}, "sha256 must be 64 lowercase hex digits"),
        ({"size": 0}, r"model .m.: size must be in \[1, inf\), got 0"),
        ({"filename": "m.pt"}, r"only \.safetensors"),
    ],
)
def test_registry_errors_name_the_file_and_field(tmp_path: Path, change: dict, message: str) -> None:
    record = {**registry_entry("m", "o/m", "m.safetensors", b"123"), **change}
    reg = _write_registry(tmp_path / "registry.json", record)
    with pytest.raises(weights.WeightsError, match=message) as err:
        weights.list_models(reg)
    assert str(reg) in str(err.value)


def test_registry_rejects_duplicates_and_bad_json(tmp_path: Path) -> None:
    rec = registry_entry("m", "o/m", "m.safetensors", b"123")
    with pytest.raises(weights.WeightsError, match=r"duplicate model names \['m'\]"):
        weights.list_models(_write_registry(tmp_path / "a.json", rec, rec))
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(weights.WeightsError, match="cannot read the model registry"):
        weights.list_models(tmp_path / "b.json")


def test_verify_file_reports_size_and_checksum(tmp_path: Path, tiny_file: Path) -> None:
    data = tiny_file.read_bytes()
    entry = weights.ModelEntry(**registry_entry("tiny", "o/tiny", "tiny.safetensors", data))
    weights.verify_file(tiny_file, entry)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(weights.WeightsError) as err:
        weights.verify_file(damaged, entry)
    digest = weights.sha256_file(damaged)
    assert str(err.value).startswith(f"checksum mismatch for tiny: expected {entry.sha256}, got {digest}")
    damaged.write_bytes(data[:100])
    expected = f"size mismatch for tiny: expected {len(data)} bytes, got 100"
    with pytest.raises(weights.WeightsError, match=expected):
        weights.verify_file(damaged, entry)


def _bundled() -> Path:
    return weights.bundled_dir() / weights.get_entry(weights.DEFAULT_MODEL).filename


def _default_still_works() -> None:
    res = napari_clearnet.dehaze(hazy(), device="cpu")
    assert res.model == weights.DEFAULT_MODEL and np.isfinite(res.image).all()


def test_wrong_checksum_of_a_registry_model(tmp_path: Path, monkeypatch) -> None:
    entry = weights.get_entry(weights.DEFAULT_MODEL)
    tampered = tmp_path / "weights"
    tampered.mkdir()
    shutil.copy(weights.bundled_dir() / "registry.json", tampered / "registry.json")
    blob = bytearray(_bundled().read_bytes())
    blob[-10] ^= 0xFF  # one flipped byte in the tensor data
    (tampered / entry.filename).write_bytes(bytes(blob))
    monkeypatch.setattr(weights.registry, "bundled_dir", lambda: tampered)
    with pytest.raises(weights.WeightsError, match="checksum mismatch"):
        napari_clearnet.load_model(weights.DEFAULT_MODEL, device="cpu")
    with pytest.raises(weights.WeightsError, match="checksum mismatch"):
        weights.verify_file(tampered / entry.filename, entry)
    monkeypatch.undo()
    _default_still_works()


def test_a_config_copy_in_an_older_registry_is_read_and_dropped(tmp_path: Path, tiny: bytes) -> None:
    """registry-entry.json files of older exports carried the config; registries built from them
    still load, and the config is taken from the weights file."""
    record = {**registry_entry("old", "o/old", "old.safetensors", tiny), "config": {"widths": [4, 8]}}
    (entry,) = weights.list_models(_write_registry(tmp_path / "registry.json", record))
    assert entry.name == "old" and "config" not in entry.to_dict()

