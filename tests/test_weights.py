"""Registry, checksums, safetensors reading and Hub export: everything that needs no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from _hub import registry_entry, tiny_weights
from safetensors.torch import save_file

from napari_clearnet import cli, weights
from napari_clearnet.model import ClearNet, ClearNetConfig


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    tiny_weights(path)
    return path


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A private, empty HF cache and no network: nothing here may download."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv(weights.REGISTRY_ENV, raising=False)


def _write_registry(path: Path, *models: dict) -> Path:
    path.write_text(json.dumps({"models": list(models)}))
    return path


def test_shipped_registry_matches_bundled_file(offline: None) -> None:
    """The default is bundled, listed first, and its file matches its own registry record."""
    entries = weights.registry()
    default = weights.get_entry(weights.DEFAULT_MODEL)
    assert entries[0] == default and default.bundled
    assert default.filename.endswith(".safetensors") and default.repo_id
    path, name = weights.resolve(weights.DEFAULT_MODEL)
    assert name == weights.DEFAULT_MODEL and path == default.bundled_path
    assert weights.sha256_file(path) == default.sha256
    assert weights.cached_path(default, verify=True) == path
    state, config, _ = weights.read_weights(path)
    assert config.to_dict() == ClearNetConfig.from_dict(default.config).to_dict()
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
    assert [e.name for e in weights.registry(reg)] == ["tiny"]
    monkeypatch.setenv(weights.REGISTRY_ENV, str(home))  # a folder holding registry.json works too
    entry = weights.get_entry("tiny")
    assert entry.bundled_path == home / "tiny.safetensors"
    assert weights.resolve("tiny") == (home / "tiny.safetensors", "tiny")
    with pytest.raises(KeyError, match="unknown model 'clearnet-default'; known models: tiny"):
        weights.get_entry(weights.DEFAULT_MODEL)
    monkeypatch.setenv(weights.REGISTRY_ENV, str(tmp_path / "nowhere.json"))
    with pytest.raises(weights.WeightsError, match=r"registry not found: .*nowhere.json.*CLEARNET_REGISTRY"):
        weights.registry()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha": "x"}, r"unknown keys \['sha'\]"),
        ({"sha256": "ABC"}, "sha256 must be 64 lowercase hex digits"),
        ({"size": 0}, "size must be a positive"),
        ({"filename": "m.pt"}, r"only \.safetensors"),
    ],
)
def test_registry_errors_name_the_file_and_field(tmp_path: Path, change: dict, message: str) -> None:
    record = {**registry_entry("m", "o/m", "m.safetensors", b"123"), **change}
    reg = _write_registry(tmp_path / "registry.json", record)
    with pytest.raises(weights.WeightsError, match=message) as err:
        weights.registry(reg)
    assert str(reg) in str(err.value)


def test_registry_rejects_duplicates_and_bad_json(tmp_path: Path) -> None:
    rec = registry_entry("m", "o/m", "m.safetensors", b"123")
    with pytest.raises(weights.WeightsError, match=r"duplicate model names \['m'\]"):
        weights.registry(_write_registry(tmp_path / "a.json", rec, rec))
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(weights.WeightsError, match="cannot read the model registry"):
        weights.registry(tmp_path / "b.json")


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


def test_pickles_and_garbage_are_refused(tmp_path: Path, tiny_file: Path) -> None:
    for name, obj in (("old.pt", {"w": torch.zeros(2)}), ("new.safetensors", {"w": torch.zeros(2)})):
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(weights.WeightsError, match=r"pickle / torch.save checkpoint, which is refused"):
            weights.read_weights(path)
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


def test_parse_hf_address() -> None:
    parse = weights.parse_hf_address
    assert parse("hf://org/repo/sub/m.safetensors") == ("org/repo", "main", "sub/m.safetensors")
    assert weights.parse_hf_address("hf://org/repo@v1/m.safetensors") == ("org/repo", "v1", "m.safetensors")
    with pytest.raises(weights.WeightsError, match="expected hf://ORG/REPO"):
        weights.parse_hf_address("hf://org/m.safetensors")
    with pytest.raises(weights.WeightsError, match=r"only \.safetensors"):
        weights.parse_hf_address("hf://org/repo/pytorch_model.bin")


def test_offline_uncached_registry_model_says_what_to_do(offline: None, tmp_path: Path, tiny_file: Path):
    reg = _write_registry(tmp_path / "registry.json",
                          registry_entry("hubonly", "o/hubonly", "h.safetensors", tiny_file.read_bytes()))
    entry = weights.get_entry("hubonly", reg)
    assert weights.cached_path(entry) is None
    hint = r"hubonly is not in the Hugging Face cache .*hf.hub.*HF_HUB_OFFLINE"
    with pytest.raises(weights.WeightsError, match=hint):
        weights.resolve("hubonly", registry_path=reg)
    assert [(r.name, r.status) for r in weights.verify(registry_path=reg)] == [("hubonly", "missing")]


def test_hub_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.invalid/")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(weights.TIMEOUT_ENV, "2.5")
    s = weights.hub_settings()
    assert (s.endpoint, s.cache_dir, s.offline) == ("http://mirror.invalid", tmp_path / "cache", True)
    assert s.timeout == 2.5
    monkeypatch.delenv("HF_HUB_CACHE")
    assert weights.hub_settings().cache_dir == tmp_path / "home" / "hub"
    monkeypatch.setenv(weights.TIMEOUT_ENV, "soon")
    with pytest.raises(weights.WeightsError, match="CLEARNET_HUB_TIMEOUT='soon' is not a number of seconds"):
        weights.hub_settings()


def test_export_hub_folder(tmp_path: Path, tiny_file: Path) -> None:
    out = weights.export_hub_folder(
        tiny_file, tmp_path / "hub", name="clearnet-tiny", repo_id="me/clearnet-tiny",
        training_data="64 real hazy photos", metrics={"PSNR (dB)": 20.1, "SSIM": 0.85},
        tags=["dehazing"],
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "clearnet-tiny.safetensors", "config.json", "registry-entry.json"]
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "bsd-3-clause" and front["library_name"] == "napari-clearnet"
    assert {"dehazing", "napari", "image-dehazing"} <= set(front["tags"])
    for section in ("## Training data", "## Metrics", "## Licence", "64 real hazy photos", "| SSIM | 0.85 |",
                    "hf://me/clearnet-tiny/clearnet-tiny.safetensors"):
        assert section in card
    entry = json.loads((out / "registry-entry.json").read_text())
    reg = _write_registry(tmp_path / "registry.json", entry)
    (e,) = weights.registry(reg)
    weights.verify_file(out / "clearnet-tiny.safetensors", e)  # the record matches the file
    assert e.sha256 in card
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["clearnet_config"]["widths"] == [4, 8]
    with pytest.raises(weights.WeightsError, match="exists and is not empty"):
        weights.export_hub_folder(tiny_file, out, name="clearnet-tiny")
    with pytest.raises(weights.WeightsError, match="model name"):
        weights.export_hub_folder(tiny_file, tmp_path / "x", name="bad name")


def test_cli_list_json_and_errors(offline: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    default = weights.get_entry(weights.DEFAULT_MODEL)
    row = next(r for r in rows if r["name"] == default.name)
    assert row == {**{k: getattr(default, k) for k in
                      ("name", "repo_id", "revision", "filename", "sha256", "size", "bundled", "license",
                       "description")}, "cached": True}
    assert cli.main(["weights", "list"]) == 0
    assert default.name in capsys.readouterr().out
    assert cli.main(["weights", "verify", "nope"]) == 1
    assert "unknown model(s) ['nope']" in capsys.readouterr().err
    assert cli.main(["weights", "path", weights.DEFAULT_MODEL]) == 0
    assert Path(capsys.readouterr().out.strip()) == default.bundled_path
