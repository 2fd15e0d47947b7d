"""Fixtures shared by several test files. napari is imported lazily so core tests never need it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def notes():
    """Notifications dispatched during the test (errors shown to the user, not raised)."""
    from napari.utils.notifications import notification_manager

    seen: list = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three good images, one corrupt PNG and a text file that is not an image."""
    from _common import write_png

    src = tmp_path / "in"
    for i, name in enumerate(("a.png", "b.png", "c.jpg")):
        write_png(src / name, i)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (src / "notes.txt").write_text("not an image")
    return src


# ----------------------------------------------------------------------------------------- weights
@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a small real ClearNet weights file."""
    from _hub import HUB_FILE, tiny_weights

    return tiny_weights(tmp_path_factory.mktemp("w") / HUB_FILE)[0]


@pytest.fixture
def tiny_file(tmp_path: Path, tiny: bytes) -> Path:
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(tiny)
    return path


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: bytes):
    """A Hub served on 127.0.0.1 with model ``tiny``, a registry naming it, and a private HF cache
    in ``tmp_path / "hf"``."""
    from _hub import HUB_FILE, HUB_REPO, HubServer, registry_entry, use_hub

    from napari_clearnet import weights

    with HubServer() as server:
        server.add(HUB_REPO, HUB_FILE, tiny)
        reg = tmp_path / "registry.json"
        reg.write_text(json.dumps({"models": [registry_entry("tiny", HUB_REPO, HUB_FILE, tiny)]}))
        use_hub(monkeypatch, server.url, tmp_path / "hf")
        monkeypatch.setenv(weights.REGISTRY_ENV, str(reg))
        monkeypatch.setenv(weights.TIMEOUT_ENV, "3")
        yield server


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A private, empty HF cache and no network: nothing here may download."""
    from huggingface_hub import constants

    from napari_clearnet import weights

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv(weights.REGISTRY_ENV, raising=False)


# ---------------------------------------------------------------------------------------- training
@pytest.fixture(scope="session")
def hazy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten hazy training images."""
    from _common import write_hazy

    root = tmp_path_factory.mktemp("hazy")
    write_hazy(root / "hazy", 10)
    return root


@pytest.fixture(scope="session")
def hazy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight hazy training images (the robustness cases' data)."""
    from _common import write_hazy

    root = tmp_path_factory.mktemp("hazy8")
    write_hazy(root / "hazy", 8)
    return root


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three hazy/clear pairs."""
    from _common import write_hazy

    root = tmp_path_factory.mktemp("pairs")
    write_hazy(root / "hazy", 3, seed=1, gt=root / "gt")
    return root


@pytest.fixture(scope="session")
def full_run(hazy_dir: Path, pairs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-step training run with paired validation."""
    from _common import REPO

    from training.config import load_config
    from training.train import TrainOptions, train

    out = tmp_path_factory.mktemp("run_full")
    train(load_config(REPO / "training" / "configs" / "tiny.yaml"), TrainOptions(
        data=[str(hazy_dir)], out=str(out), max_steps=4, device="cpu", val_pairs=str(pairs_dir),
        progress=False,
    ))
    return out
