"""weights.sources: a model string is a registry name, an hf:// address or a file path, told
apart by its form; what is not one of them is refused with a message (issue 12: F34)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _hub import registry_entry

from napari_clearnet import weights
from napari_clearnet.core.model import ClearNet, ClearNetConfig


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


def test_sources_are_told_apart_by_their_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parse = weights.parse_source
    assert parse("clearnet-default").kind == "registry"
    assert parse("hf://org/repo/m.safetensors").kind == "hub"
    for text in ("m.safetensors", "old.pt", "./m", "dir/m", "~/m.safetensors"):
        assert parse(text).kind == "file", text
    assert parse(tmp_path / "anything").kind == "file"  # a Path is always a file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel").write_bytes(b"x")
    with pytest.raises(weights.WeightsError, match=r"unknown model 'mymodel'.*for the file mymodel in this "
                                                   r"folder, write \./mymodel"):
        weights.resolve("mymodel")  # a bare word never silently loads a stray file
    (tmp_path / weights.DEFAULT_MODEL).write_bytes(b"not weights")
    path, name = weights.resolve(weights.DEFAULT_MODEL)  # a registry name stays the registry model
    assert name == weights.DEFAULT_MODEL and path == weights.get_entry(weights.DEFAULT_MODEL).bundled_path
    with pytest.raises(weights.WeightsError, match="not a safetensors file"):
        weights.read_weights(weights.resolve(f"./{weights.DEFAULT_MODEL}")[0])  # ./ says "the file"


def test_an_hf_address_of_a_registry_model_is_checked_like_the_model(hub, tiny: bytes) -> None:
    """The registry vouches for its repository's file: asked for by address, the bundled or
    cached copy is used and verified, and a file on the Hub that differs is refused."""
    from _hub import HUB_FILE, HUB_REPO

    path, name = weights.resolve(f"hf://{HUB_REPO}/{HUB_FILE}")
    assert name == f"hf://{HUB_REPO}/{HUB_FILE}" and path.read_bytes() == tiny
    assert weights.resolve("tiny")[0] == path and hub.count("GET") == 1  # one file, one download
    hub.add(HUB_REPO, "other.safetensors", tiny)  # same repository, another file: not vouched for
    assert weights.resolve(f"hf://{HUB_REPO}/other.safetensors")[0].read_bytes() == tiny
    bad = bytearray(tiny)
    bad[-5] ^= 0xFF
    reg = Path(weights.registry_file())
    models = json.loads(reg.read_text())["models"]
    models.append(registry_entry("pinned", "clearnet-tests/pinned", HUB_FILE, tiny))
    reg.write_text(json.dumps({"models": models}))
    hub.add("clearnet-tests/pinned", HUB_FILE, bytes(bad))  # the Hub's file no longer matches
    with pytest.raises(weights.WeightsError, match="checksum mismatch for pinned"):
        weights.resolve(f"hf://clearnet-tests/pinned/{HUB_FILE}")
