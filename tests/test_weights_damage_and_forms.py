"""A hand-edited registry.json, a malformed hf:// address and a damaged cached model give one
line that names the file or address, what is wrong and what is accepted (review 2026-12-07: G13,
G18). Registry fields are checked by the one config mechanism (``_validate.check_config``), Hub
addresses by ``weights.hub.parse_hf_address``; a damaged cached copy is reported, never just
deleted."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from _common import cli
from _hub import FakeHub

from napari_clearnet import weights
from napari_clearnet.cli import main

_BAD_ENTRIES = [  # G13: each was a traceback or silently accepted
    ({"filename": 5}, r"filename must be a string, got 5"),
    ({"name": 5}, r"name must be a string, got 5"),
    ({"filename": "../../../../etc/x.safetensors"}, r"must be a relative path inside the repository"),
    ({"size": True}, r"size must be an integer, got True"),
    ({"bundled": "no"}, r"bundled must be true or false, got 'no'"),
    ({"revision": None}, r"revision must be a string, got None"),
    ({"filename": "/abs/x.safetensors"}, r"relative path"),  # variants
    ({"name": "org/x"}, r"would be read as a file path"),
    ({"size": 12.5}, r"size must be an integer"),
]


def _registry(tmp_path: Path, change: dict) -> Path:
    e = json.loads((weights.bundled_dir() / "registry.json").read_text())["models"][0]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"models": [dict(e, **change)]}))
    return path


@pytest.mark.parametrize(("change", "message"), _BAD_ENTRIES)
def test_every_registry_field_is_type_checked_and_named_with_the_file(tmp_path: Path, change: dict,
                                                                      message: str) -> None:
    # G13: registry fields are checked like config fields (types, ranges), naming file and field
    reg = _registry(tmp_path, change)
    with pytest.raises(weights.WeightsError, match=message) as err:
        weights.list_models(reg)
    assert str(reg) in str(err.value)


def test_a_bad_registry_is_one_line_from_every_command(tmp_path: Path, capsys,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # G13: `weights list` and `dehaze` (through $CLEARNET_REGISTRY) printed tracebacks
    reg = _registry(tmp_path, {"filename": 5})
    assert main(["weights", "--registry", str(reg), "list"]) == 1
    err = capsys.readouterr().err
    assert "r.json: model" in err and "filename must be a string" in err and "Traceback" not in err
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 200, 200)).save(tmp_path / "photo.png")
    env_reg = _registry(tmp_path, {"name": 5})
    monkeypatch.setenv(weights.REGISTRY_ENV, str(env_reg))  # the subprocess inherits it
    r = cli("dehaze", "photo.png", "-o", "o", "--method", "clearnet", cwd=tmp_path)
    assert r.returncode == 2 and "name must be a string, got 5" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("address", "message"),
    [("hf://a/b/../../c.safetensors", r"file path '\.\./\.\./c\.safetensors' must be a relative path"),
     ("hf://a/b/./c.safetensors", r"must be a relative path"),  # variants
     ("hf://a--b/c/x.safetensors", r"repository 'a--b/c' is not a Hub name"),
     ("hf://org/re po/x.safetensors", r"repository 'org/re po' is not a Hub name"),
     ("hf://a/b@/x.safetensors", r"revision '' is not a Hub name")],
)
def test_malformed_hf_addresses_are_one_line_naming_the_address_and_the_form(address: str, message: str,
                                                                              offline: None, capsys) -> None:
    # G13: huggingface_hub's ValueError reached `weights download` as a traceback
    assert main(["weights", "download", address]) == 1
    err = capsys.readouterr().err
    assert address in err and "hf://ORG/REPO[@REVISION]/PATH/FILE.safetensors" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(weights.WeightsError, match=message):
        weights.resolve(address)


def _damage_cached_copy(hub: FakeHub) -> Path:
    path, _ = weights.resolve("tiny")  # downloaded into the private cache
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, wrong sha256
    real = Path(os.path.realpath(path))
    real.chmod(0o644)
    real.write_bytes(bytes(data))
    return path


def test_a_damaged_cached_model_offline_says_it_was_damaged_and_removed(
        hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # G18: offline, the copy was deleted without a word and the message said it was never cached
    path = _damage_cached_copy(hub)
    assert main(["weights", "path", "tiny"]) == 1  # `weights path` no longer prints it as good
    err = capsys.readouterr().err
    assert "cached copy of tiny" in err and "damaged" in err and "checksum mismatch" in err
    assert "--force" in err and path.exists()  # reported, not deleted, by a read-only command
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(weights.WeightsError) as err_info:
        weights.resolve("tiny")
    msg = str(err_info.value)
    assert "the cached copy of tiny was damaged" in msg and "checksum mismatch" in msg
    assert "removed from the cache" in msg and "downloading it again failed" in msg
    assert "offline mode is on" in msg and not path.exists()


def test_a_damaged_cached_model_online_is_replaced_with_a_note(hub: FakeHub) -> None:
    # G18 (variant): online the copy is downloaded again and verified, and a warning says why
    _damage_cached_copy(hub)
    with pytest.warns(UserWarning, match="cached copy of tiny was damaged.*downloaded again and verified"):
        path, _ = weights.resolve("tiny")
    entry = weights.get_entry("tiny")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
