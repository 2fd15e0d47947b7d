"""weights.hub: downloads through the real huggingface_hub code against a Hub served on
127.0.0.1: the cache is used without a request, bad copies are removed through the cache API,
errors say what to do, and a stalled download gives up in the time it says (issue 12: F34)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from _hub import COMMIT, FakeHub, registry_entry
from _hub import HUB_FILE as FILE
from _hub import HUB_REPO as REPO
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file
from tqdm.auto import tqdm

from napari_clearnet import cli, load_model, weights
from napari_clearnet.core.model import ClearNet, ClearNetConfig
from napari_clearnet.weights import hub as hub_module


def _add_entry(hub: FakeHub, name: str, repo: str, filename: str, data: bytes, mode: str = "ok") -> None:
    """Serve ``data`` (in ``mode``) and register it under ``name``."""
    if mode != "absent":
        hub.add(repo, filename, data, mode)
    reg = Path(os.environ[weights.REGISTRY_ENV])
    models = json.loads(reg.read_text())["models"]
    models.append(registry_entry(name, repo, filename, data))
    reg.write_text(json.dumps({"models": models}))


def _cache_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "hf" / "hub"
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts)


def test_download_then_cached_without_requests(hub: FakeHub, tmp_path: Path, tiny: bytes) -> None:
    entry = weights.get_entry("tiny")
    assert weights.cached_path(entry) is None
    seen: list[int] = []

    class Progress(tqdm):  # how the napari widget passes napari.utils.progress
        def close(self) -> None:
            seen.append(self.n)
            super().close()

    path, name = weights.resolve("tiny", tqdm_class=Progress)
    assert name == "tiny" and path.read_bytes() == tiny
    assert seen and seen[-1] == len(tiny)
    assert path.is_relative_to(tmp_path / "hf" / "hub")
    assert COMMIT in path.parts  # the standard snapshots/<commit>/ layout
    assert hub.count("GET") == 1, hub.requests
    dehazer = load_model("tiny", device="cpu")  # what dehaze() and the widget go through
    assert dehazer.provenance()["model"] == "tiny"
    assert dehazer.provenance()["sha256"] == weights.get_entry("tiny").sha256

    before = hub.count()
    assert weights.resolve("tiny")[0] == path
    assert weights.cached_path(entry) == path
    assert weights.download(entry) == path
    assert hub.count() == before, "a cached model must not touch the network"


def test_offline_mode(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tiny: bytes) -> None:
    _add_entry(hub, "other", "clearnet-tests/other", FILE, tiny[:-1] + b" ")
    path, _ = weights.resolve("tiny")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 at start
    before = len(hub.requests)
    assert weights.resolve("tiny")[0] == path
    with pytest.raises(weights.WeightsError, match=r"other is not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        weights.resolve("other")
    assert len(hub.requests) == before  # offline: not even huggingface_hub's own /api calls


def test_missing_repo_and_file(hub: FakeHub, tiny: bytes) -> None:
    _add_entry(hub, "ghost", "clearnet-tests/ghost", FILE, tiny, mode="absent")
    with pytest.raises(weights.WeightsError, match=r"repository 'clearnet-tests/ghost' not found .*HF_TOKEN"):
        weights.resolve("ghost")
    with pytest.raises(weights.WeightsError, match=r"file 'nope.safetensors' not found in clearnet-tests/"):
        weights.resolve(f"hf://{REPO}/nope.safetensors")


def test_corrupted_bytes_are_refused_and_removed(hub: FakeHub, tmp_path: Path, tiny: bytes) -> None:
    _add_entry(hub, "bad", "clearnet-tests/bad", FILE, tiny, mode="corrupt")
    entry = weights.get_entry("bad")
    with pytest.raises(weights.WeightsError) as err:
        weights.resolve("bad")
    msg = str(err.value)
    assert msg.startswith(f"checksum mismatch for bad: expected {entry.sha256}, got ")
    assert "removed from the cache" in msg
    assert not [p for p in _cache_files(tmp_path) if "models--clearnet-tests--bad" in str(p)
                and ("blobs" in p.parts or "snapshots" in p.parts)]
    assert weights.cached_path(entry) is None


def test_dropped_transfer_is_retried_and_verified(hub: FakeHub, tiny: bytes) -> None:
    """The connection drops a third of the way in; huggingface_hub retries (with a Range
    header when it had kept part of the body), and the result still passes the sha256 check."""
    _add_entry(hub, "flaky", "clearnet-tests/flaky", FILE, tiny, mode="drop_once")
    path, _ = weights.resolve("flaky")
    assert path.read_bytes() == tiny
    assert hub.count("GET") == 2


def test_short_transfer_is_refused(hub: FakeHub, tmp_path: Path, tiny: bytes) -> None:
    _add_entry(hub, "short", "clearnet-tests/short", FILE, tiny, mode="short")
    with pytest.raises(weights.WeightsError, match=r"short.*(did not complete|size mismatch)"):
        weights.resolve("short")
    assert not [p for p in _cache_files(tmp_path) if "short" in str(p) and "snapshots" in p.parts]
    assert weights.cached_path(weights.get_entry("short")) is None


def test_hanging_server_gives_bounded_wait(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tiny: bytes):
    _add_entry(hub, "slow", "clearnet-tests/slow", FILE, tiny, mode="hang")
    monkeypatch.setenv(weights.TIMEOUT_ENV, "0.5")
    start = time.monotonic()
    hint = r"did not answer within 0.5 s.*CLEARNET_HUB_TIMEOUT.*HF_HUB_OFFLINE"
    with pytest.raises(weights.WeightsError, match=hint):
        weights.resolve("slow")
    assert time.monotonic() - start < 5


def test_stalled_body_is_reported_within_the_timeout(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                     tiny: bytes) -> None:
    """Issue 12, F34: the Hub answers the HEAD and the GET's headers, then sends no byte.
    huggingface_hub retries that for minutes; "did not answer within N s" must be true."""
    _add_entry(hub, "stalled", "clearnet-tests/stalled", FILE, tiny, mode="stall")
    monkeypatch.setenv(weights.TIMEOUT_ENV, "1")
    start = time.monotonic()
    with pytest.raises(weights.WeightsError, match=r"did not answer within 1 s"):
        weights.resolve("stalled")
    assert time.monotonic() - start < 6
    assert weights.cached_path(weights.get_entry("stalled")) is None


def test_slow_but_moving_download_is_not_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stall guard only fires when nothing arrives for the timeout (issue 12, F34)."""

    def slow(progress):
        bar = progress(total=10, disable=True)
        for _ in range(10):
            time.sleep(0.1)
            bar.update(1)
        return "done"

    assert hub_module._stall_guard(slow, 0.3, None) == "done"  # 1 s in all, never 0.3 s without data


def test_state_dict_that_does_not_fit(hub: FakeHub, tmp_path: Path) -> None:
    """A file whose config says (4, 8) but whose tensors are from (4, 16)."""
    net = ClearNet(ClearNetConfig(widths=(4, 16)))
    wrong = tmp_path / "wrong.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(wrong),
              metadata={weights.CONFIG_KEY: json.dumps(ClearNetConfig(widths=(4, 8)).to_dict())})
    hub.add("clearnet-tests/wrong", "wrong.safetensors", wrong.read_bytes())
    path, _ = weights.resolve("hf://clearnet-tests/wrong/wrong.safetensors")
    state, config, _ = weights.read_weights(path)
    with pytest.raises(weights.WeightsError, match=r"do not fit the ClearNet architecture \(4, 8\)"):
        weights.build_model(state, config, source="wrong.safetensors")


def test_pickle_offered_as_weights_is_refused(hub: FakeHub, tmp_path: Path, capsys) -> None:
    pickled = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    hub.add("clearnet-tests/evil", "evil.safetensors", pickled.read_bytes())
    with pytest.raises(weights.WeightsError, match=r"pickle.*refused"):
        weights.resolve("hf://clearnet-tests/evil/evil.safetensors")
    assert not [p for p in _cache_files(tmp_path) if "evil" in str(p) and "refs" not in p.parts]
    with pytest.raises(weights.WeightsError, match=r"pickle.*refused"):
        weights.read_weights(pickled)
    assert cli.main(["weights", "download", "hf://clearnet-tests/evil/evil.safetensors"]) == 1
    assert "pickle" in capsys.readouterr().err
    with pytest.raises(weights.WeightsError, match=r"only \.safetensors"):
        weights.resolve("hf://clearnet-tests/evil/model.pt")


def test_parse_hf_address() -> None:
    parse = weights.parse_hf_address
    assert parse("hf://org/repo/sub/m.safetensors") == ("org/repo", "main", "sub/m.safetensors")
    assert weights.parse_hf_address("hf://org/repo@v1/m.safetensors") == ("org/repo", "v1", "m.safetensors")
    with pytest.raises(weights.WeightsError, match="expected hf://ORG/REPO"):
        weights.parse_hf_address("hf://org/m.safetensors")
    with pytest.raises(weights.WeightsError, match=r"only \.safetensors"):
        weights.parse_hf_address("hf://org/repo/pytorch_model.bin")


def test_offline_uncached_registry_model_says_what_to_do(offline: None, tmp_path: Path, tiny_file: Path):
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"models": [registry_entry("hubonly", "o/hubonly", "h.safetensors",
                                                         tiny_file.read_bytes())]}))
    entry = weights.get_entry("hubonly", reg)
    assert weights.cached_path(entry) is None
    hint = r"hubonly is not in the Hugging Face cache .*hf.hub.*HF_HUB_OFFLINE"
    with pytest.raises(weights.WeightsError, match=hint):
        weights.resolve("hubonly", registry_path=reg)
    assert [(r.name, r.status) for r in weights.verify(registry_path=reg)] == [("hubonly", "missing")]


def test_timeout_setting_and_the_settings_huggingface_hub_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_* settings are huggingface_hub's own (read when it is imported: see test_weights_cli.py
    for a fresh process); the stall timeout is ours: $CLEARNET_HUB_TIMEOUT, else the Hub's ETag
    timeout."""
    monkeypatch.delenv(weights.TIMEOUT_ENV, raising=False)
    assert hub_module.timeout() == float(hf_constants.HF_HUB_ETAG_TIMEOUT)
    monkeypatch.setenv(weights.TIMEOUT_ENV, "2.5")
    assert hub_module.timeout() == 2.5
    for bad, match in (("soon", "is not a number of seconds"), ("0", "positive"), ("-3", "positive")):
        monkeypatch.setenv(weights.TIMEOUT_ENV, bad)
        with pytest.raises(weights.WeightsError, match=f"CLEARNET_HUB_TIMEOUT='{bad}' .*{match}"):
            hub_module.timeout()


def test_offline_force_download_says_offline(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    weights.resolve("tiny")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(weights.WeightsError, match=r"offline mode is on \(HF_HUB_OFFLINE\)"):
        weights.resolve("tiny", force=True)
