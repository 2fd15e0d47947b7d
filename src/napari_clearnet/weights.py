"""Model weights: the registry of known models, safetensors files with their config, checksums.

A weights file is a safetensors file whose metadata carries the ClearNet config as JSON
(key ``clearnet_config``), so the network and its settings can never be separated. The
registry (``weights/registry.json``) lists the bundled default and the models on the Hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .io import _umask_mode
from .model import ClearNet, ClearNetConfig

__all__ = [
    "DEFAULT_MODEL",
    "ModelEntry",
    "WeightsError",
    "bundled_dir",
    "build_model",
    "get_entry",
    "read_weights",
    "registry",
    "save_weights",
    "sha256_file",
]

DEFAULT_MODEL = "clearnet-default"
CONFIG_KEY = "clearnet_config"


class WeightsError(ValueError):
    """A weights file that cannot be used: missing, corrupt, wrong format or wrong architecture."""


@dataclass(frozen=True)
class ModelEntry:
    """One known model: where it lives on the Hub and what its file must be."""

    name: str
    repo_id: str
    filename: str
    sha256: str
    size: int
    revision: str = "main"
    bundled: bool = False
    license: str = ""
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bundled_dir() -> Path:
    """Folder of the weights shipped with the package.

    In a wheel it is ``napari_clearnet/weights``; in a source checkout it is the repository's
    top-level ``weights/`` (the same files: the wheel is built from that folder).
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "weights", here.parents[1] / "weights"):
        if (candidate / "registry.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"bundled weights not found next to {here}; reinstall napari-clearnet"
    )


def registry() -> list[ModelEntry]:
    """All models in the shipped registry, bundled default first."""
    data = json.loads((bundled_dir() / "registry.json").read_text(encoding="utf-8"))
    return [ModelEntry(**m) for m in data["models"]]


def get_entry(name: str) -> ModelEntry:
    entries = registry()
    for e in entries:
        if e.name == name:
            return e
    raise KeyError(f"unknown model {name!r}; known models: {', '.join(e.name for e in entries)}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_weights(
    model: ClearNet, path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> str:
    """Write ``model`` with its config as safetensors, atomically; returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {CONFIG_KEY: json.dumps(model.config.to_dict(), sort_keys=True)}
    meta.update(metadata or {})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    _umask_mode(tmp)
    try:
        save_file(state, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha256_file(path)


def _read_metadata(path: Path) -> dict[str, str]:
    """Metadata of a safetensors file, with a clear error for anything else (pickles included)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path}: not a safetensors file (only {len(head)} bytes)")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > 100_000_000:
            hint = " (it looks like a pickle/torch .pt file, which is refused for safety)" if (
                head[:2] == b"\x80\x02" or head[:2] == b"PK"
            ) else ""
            raise WeightsError(f"{path}: not a safetensors file{hint}; export weights as .safetensors")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: corrupt safetensors header")
    return dict(header.get("__metadata__") or {})


def read_weights(
    path: str | os.PathLike, config: ClearNetConfig | dict | None = None
) -> tuple[dict[str, torch.Tensor], ClearNetConfig, dict[str, str]]:
    """Read a safetensors weights file: (state dict, config, metadata).

    The config comes from the file's metadata unless ``config`` is given (for files made by
    other tools). Never unpickles anything.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    meta = _read_metadata(path)
    if config is None:
        if CONFIG_KEY not in meta:
            raise WeightsError(
                f"{path}: no '{CONFIG_KEY}' in the safetensors metadata; pass the config "
                "(a JSON file) that the weights were trained with"
            )
        try:
            config = ClearNetConfig.from_dict(json.loads(meta[CONFIG_KEY]))
        except (ValueError, TypeError) as exc:
            raise WeightsError(f"{path}: invalid ClearNet config in metadata: {exc}") from None
    elif isinstance(config, dict):
        config = ClearNetConfig.from_dict(config)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise WeightsError(f"{path}: cannot read tensors ({exc}); the file may be truncated") from None
    return state, config, meta


def build_model(state: dict[str, torch.Tensor], config: ClearNetConfig, source: str = "") -> ClearNet:
    """Build ClearNet from ``config`` and load ``state`` strictly, naming what does not fit."""
    model = ClearNet(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:5]}")
        raise WeightsError(
            f"{source or 'weights'} do not fit the ClearNet architecture {config.widths}: "
            + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def verify_file(path: str | os.PathLike, entry: ModelEntry) -> None:
    """Check a file against its registry entry's size and sha256; raise :class:`WeightsError`."""
    path = Path(path)
    size = path.stat().st_size
    if entry.size and size != entry.size:
        raise WeightsError(
            f"size mismatch for {entry.name}: expected {entry.size} bytes, got {size} ({path})"
        )
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise WeightsError(
            f"checksum mismatch for {entry.name}: expected {entry.sha256}, got {digest} ({path})"
        )


def download(entry: ModelEntry, *, force: bool = False) -> Path:
    """Fetch ``entry`` from the Hugging Face Hub into the standard HF cache and verify it.

    Respects ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN``.
    A file that fails verification is removed from the cache, never loaded.
    """
    from huggingface_hub import hf_hub_download

    try:
        local = hf_hub_download(
            entry.repo_id, entry.filename, revision=entry.revision, force_download=force
        )
    except Exception as exc:  # huggingface_hub raises many network/HTTP error types
        raise WeightsError(
            f"could not download {entry.name} from the Hugging Face Hub "
            f"({entry.repo_id}@{entry.revision}/{entry.filename}): {type(exc).__name__}: {exc}. "
            f"Check the network or proxy (HF_ENDPOINT), or use the bundled model {DEFAULT_MODEL!r}"
        ) from None
    try:
        verify_file(local, entry)
    except WeightsError:
        _remove_cached(Path(local))
        raise
    return Path(local)


def _remove_cached(path: Path) -> None:
    """Remove a cached file and, in the HF cache layout, the blob its snapshot link points to."""
    try:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        if blob != path:
            blob.unlink(missing_ok=True)
    except OSError:
        pass


def cached_path(entry: ModelEntry) -> Path | None:
    """The verified local file of ``entry`` if it needs no download (bundled or in the HF cache)."""
    if entry.bundled:
        p = bundled_dir() / entry.filename
        if p.is_file():
            return p
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(entry.repo_id, entry.filename, revision=entry.revision)
    return Path(hit) if isinstance(hit, str) else None


def resolve(model: str | os.PathLike) -> tuple[Path, str]:
    """Find the file for a model name, a local path or ``hf://org/repo[@rev]/file``.

    Returns ``(path, display name)``. Registry models are verified against their checksum.
    """
    text = str(model)
    if text.startswith("hf://"):
        rest = text[len("hf://") :]
        parts = rest.split("/")
        if len(parts) < 3:
            raise WeightsError(f"expected hf://ORG/REPO[@REVISION]/FILE.safetensors, got {text!r}")
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        revision = "main"
        if "@" in repo:
            repo, revision = repo.split("@", 1)
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo, filename, revision=revision)), text
        except Exception as exc:
            raise WeightsError(f"could not download {text}: {type(exc).__name__}: {exc}") from None
    path = Path(text).expanduser()
    if path.suffix or os.sep in text or path.exists():
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path, path.name
    try:
        entry = get_entry(text)
    except KeyError as exc:
        raise WeightsError(str(exc.args[0])) from None
    if entry.bundled:
        p = bundled_dir() / entry.filename
        verify_file(p, entry)
        return p, entry.name
    hit = cached_path(entry)
    if hit is not None:
        try:
            verify_file(hit, entry)
            return hit, entry.name
        except WeightsError:
            _remove_cached(hit)
    return download(entry), entry.name
