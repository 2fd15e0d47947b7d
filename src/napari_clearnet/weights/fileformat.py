"""The weights file: safetensors whose metadata carries the ClearNet config.

A weights file is a safetensors file whose metadata holds the ClearNet config as JSON (key
``clearnet_config``), so the network and its settings can never be separated. This module
writes such files (atomically, never with NaN or infinite values), reads them (never unpickling
anything: a pickle is refused by its first bytes), checks a config field by field before any
network is built, and builds the network only when every tensor's shape fits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._util.files import atomic_path
from .._util.validate import MODEL_RANGES, check_config
from ..core.model import FORMAT_VERSION, ClearNet, ClearNetConfig
from ..errors import WeightsError

__all__ = [
    "CONFIG_KEY",
    "WeightsError",
    "build_model",
    "check_finite",
    "read_metadata",
    "read_weights",
    "save_weights",
    "sha256_file",
]

CONFIG_KEY = "clearnet_config"


#: sha256 per (path, inode, size, mtime, ctime): a file is hashed once while it stays the same file
#: (loading verifies a registry file, then records its checksum: one read, not two)
_DIGESTS: dict[tuple, str] = {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks (weights files can be large)."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key in _DIGESTS:
            return _DIGESTS[key]
        h = hashlib.sha256()
        while block := f.read(chunk):
            h.update(block)
    if len(_DIGESTS) > 64:
        _DIGESTS.clear()
    _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def save_weights(
    model: ClearNet, path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> str:
    """Write ``model`` with its config as safetensors, atomically; returns the file's sha256."""
    path = Path(path)
    meta = {CONFIG_KEY: json.dumps(model.config.to_dict(), sort_keys=True)}
    meta.update(metadata or {})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_finite(state, f"refusing to write {path}")
    with atomic_path(path, overwrite=True) as tmp:
        save_file(state, tmp, metadata=meta)
    return sha256_file(path)


def check_finite(state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse weights with NaN or infinite values (a diverged training run): they would give
    black images and invalid JSON. ``where`` starts the message (the file, or what is written)."""
    bad = []
    for k, v in state.items():
        if v.is_floating_point() or v.is_complex():
            n = int((~torch.isfinite(v)).sum())
            if n:
                bad.append(f"{k} ({n} of {v.numel()})")
    if bad:
        raise WeightsError(
            f"{where}: NaN or infinite values in " + ", ".join(bad[:5]) + (" …" if len(bad) > 5 else "")
            + "; these weights come from a diverged training run and would give black images; retrain "
            "with a lower optim.lr or optim.grad_clip"
        )


def _looks_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: an 8-byte little-endian header length that fits the file, then '{'.
    Checked first, since its length's low byte is 0x80 (a pickle's first byte) in 1 file of 256."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= size - 8 and head[8:9] == b"{"


def _looks_pickled(head: bytes) -> bool:
    """Pickle protocol 2+ starts with 0x80; torch.save's zip format with 'PK'."""
    return head[:1] == b"\x80" or head[:2] == b"PK"


def read_metadata(path: Path) -> dict[str, str]:
    """Metadata of a safetensors file, with a clear error for anything else (pickles included)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
        if not _looks_safetensors(head, size) and _looks_pickled(head):
            raise WeightsError(
                f"{path}: this is a pickle / torch.save checkpoint, which is refused because loading "
                "it can run arbitrary code; convert it with weights.save_weights() to .safetensors"
            )
        if len(head) < 8:
            raise WeightsError(f"{path}: not a safetensors file (only {len(head)} bytes)")
        n = int.from_bytes(head[:8], "little")
        if n <= 1 or n > min(100_000_000, size - 8):
            raise WeightsError(
                f"{path}: not a safetensors file (or truncated); export weights as .safetensors"
            )
        try:
            f.seek(8)
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: corrupt safetensors header")
    meta = header.get("__metadata__") or {}
    return dict(meta) if isinstance(meta, dict) else {}


def sidecar_config(path: Path) -> dict[str, Any] | None:
    """A ``config.json`` next to the weights (a Hub folder made by ``training/export.py``), if any."""
    for candidate in (path.with_suffix(".json"), path.parent / "config.json"):
        if not candidate.is_file():
            continue
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get(CONFIG_KEY), dict):
            return data[CONFIG_KEY]
    return None


def read_weights(
    path: str | os.PathLike, config: ClearNetConfig | dict | None = None
) -> tuple[dict[str, torch.Tensor], ClearNetConfig, dict[str, str]]:
    """Read a safetensors weights file: (state dict, config, metadata).

    The config comes from ``config`` if given (for files made by other tools), else the file's
    metadata, else a ``config.json`` beside it holding a ``clearnet_config`` object. Never
    unpickles anything.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    meta = read_metadata(path)
    if config is None:
        raw: Any = None
        if CONFIG_KEY in meta:
            try:
                raw = json.loads(meta[CONFIG_KEY])
            except json.JSONDecodeError as exc:
                raise WeightsError(f"{path}: invalid ClearNet config in metadata: {exc}") from None
        else:
            raw = sidecar_config(path)
        if raw is None:
            raise WeightsError(
                f"{path}: no '{CONFIG_KEY}' in the safetensors metadata and no config.json beside "
                "it; pass the config (a JSON file) that the weights were trained with"
            )
        config = _config(raw, f"{path}: invalid ClearNet config")
    elif isinstance(config, dict):
        config = _config(config, f"invalid ClearNet config for {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise WeightsError(f"{path}: cannot read tensors ({exc}); the file may be truncated") from None
    check_finite(state, str(path))
    return state, config, meta


def _config(raw: Any, where: str) -> ClearNetConfig:
    """A ClearNet config from a mapping, with every field's type and range checked first, so a
    file cannot ask for a network of absurd size (the shapes are compared before any build)."""
    try:
        return ClearNetConfig.from_dict(check_config(ClearNetConfig, raw, "ClearNet config", MODEL_RANGES))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{where}: {exc}") from None


def build_model(state: dict[str, torch.Tensor], config: ClearNetConfig, source: str = "") -> ClearNet:
    """Build ClearNet from ``config`` and load ``state`` strictly, naming what does not fit."""
    if config.format_version != FORMAT_VERSION:
        raise WeightsError(
            f"{source or 'weights'} use ClearNet weight format {config.format_version}; this version of "
            f"napari-clearnet reads format {FORMAT_VERSION}. Use the registry's models "
            "(`clearnet weights list`), the napari-clearnet version that wrote the file, or retrain "
            "with `python -m training train` (older checkpoints do not fit the current network)."
        )
    default_in = ClearNetConfig.__dataclass_fields__["in_channels"].default
    if config.in_channels != default_in:
        raise WeightsError(
            f"{source or 'weights'}: in_channels {config.in_channels}, but the network is fed "
            f"{default_in} channels (RGB + the prior's transmission); these weights are not a ClearNet"
        )
    with torch.device("meta"):  # shapes only: a config asking for huge layers allocates nothing
        expected = ClearNet(config).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    # load_state_dict would cast boolean or integer tensors of the right shape to float silently
    wrong += sorted(f"{k} is {state[k].dtype}, not floating point" for k, v in expected.items()
                    if k in state and v.is_floating_point() and not state[k].is_floating_point())
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"wrong shapes or types {wrong[:5]}{' …' if len(wrong) > 5 else ''}")
        raise WeightsError(
            f"{source or 'weights'} do not fit the ClearNet architecture {config.widths}: "
            + "; ".join(parts)
        )
    model = ClearNet(config)
    model.load_state_dict(state, strict=True)
    return model.eval()
