"""The registry of known models: names, where each lives, what its file must be, licence.

``registry.json`` (shipped beside the bundled weights; ``$CLEARNET_REGISTRY`` or a
``registry_path`` argument names another) lists every model a user can ask for by name: its Hub
repository, file and revision, the file's size and sha256, whether a copy is bundled with the
package, its licence and a description. The config is not repeated here: it travels inside the
weights file (see :mod:`.fileformat`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .._util.validate import check_config
from .fileformat import WeightsError, sha256_file

__all__ = [
    "DEFAULT_MODEL",
    "REGISTRY_ENV",
    "ModelEntry",
    "bundled_dir",
    "get_entry",
    "list_models",
    "registry_file",
    "verify_file",
]

DEFAULT_MODEL = "clearnet-default"
REGISTRY_ENV = "CLEARNET_REGISTRY"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: keys older registry files (and registry-entry.json of older exports) carry; read and dropped
_LEGACY_KEYS = frozenset({"config"})


@dataclass(frozen=True)
class ModelEntry:
    """One known model: where it lives on the Hub and what its file must be.

    ``revision`` is what downloads ask for (a commit hash pins it; a branch follows the Hub, and
    the sha256 check still refuses a file that changed). ``home`` is the folder of the registry
    file the entry came from; bundled files live there.
    """

    name: str
    repo_id: str
    filename: str
    sha256: str
    size: int
    revision: str = "main"
    bundled: bool = False
    license: str = ""
    description: str = ""
    home: Path | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The entry as it is written in registry.json (``home`` is not part of it)."""
        d = asdict(self)
        d.pop("home")
        return d

    @property
    def bundled_path(self) -> Path | None:
        """Where the shipped copy of a bundled model is, or None for Hub-only models."""
        if not self.bundled:
            return None
        return (self.home or bundled_dir()) / self.filename


def bundled_dir() -> Path:
    """Folder of the weights shipped with the package: ``napari_clearnet/_bundled`` (in a source
    checkout a link to the repository's top-level ``weights/``, which the wheel copies there)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_bundled", package.parents[1] / "weights"):
        if (candidate / "registry.json").is_file():
            return candidate
    raise FileNotFoundError(f"bundled weights not found in {package}; reinstall napari-clearnet")


def registry_file(registry_path: str | os.PathLike | None = None) -> Path:
    """The registry in use: ``registry_path``, else ``$CLEARNET_REGISTRY``, else the shipped one."""
    chosen = registry_path or os.environ.get(REGISTRY_ENV)
    if not chosen:
        return bundled_dir() / "registry.json"
    path = Path(chosen).expanduser()
    if path.is_dir():
        path = path / "registry.json"
    if not path.is_file():
        src = "registry_path" if registry_path else REGISTRY_ENV
        raise WeightsError(f"model registry not found: {path} (from {src}); point it at a registry.json")
    return path


def _entry_from_dict(data: Any, home: Path, where: str) -> ModelEntry:
    """Validate one registry record so a typo fails here, naming the file and the field."""
    if not isinstance(data, dict):
        raise WeightsError(f"{where}: each model must be a JSON object, got {type(data).__name__}")
    data = {k: v for k, v in data.items() if k not in _LEGACY_KEYS}
    known = {f.name for f in fields(ModelEntry)} - {"home"}
    unknown = sorted(set(data) - known)
    missing = [k for k in ("name", "repo_id", "filename", "sha256", "size") if k not in data]
    if unknown or missing:
        problems = [f"unknown keys {unknown}"] * bool(unknown) + [f"missing keys {missing}"] * bool(missing)
        raise WeightsError(
            f"{where}: model {data.get('name', '?')!r} has {'; '.join(problems)} "
            f"(accepted keys: {sorted(known)})"
        )
    try:  # types and ranges by the one config mechanism (True is not a size, null not a revision)
        checked = check_config(ModelEntry, data, "", {"size": "[1, inf)"})
    except ValueError as exc:  # "size must be in [1, inf), got 0" (a positive number of bytes)
        raise WeightsError(f"{where}: model {data['name']!r}: {str(exc).lstrip('.')}") from None
    entry = ModelEntry(**checked, home=home)
    if not _SHA256.fullmatch(entry.sha256):
        raise WeightsError(f"{where}: model {entry.name!r}: sha256 must be 64 lowercase hex digits")
    if not _NAME.fullmatch(entry.name):
        raise WeightsError(f"{where}: model {entry.name!r}: a name is letters, digits, '.', '_' and '-' "
                           "(a name with '/' or a suffix would be read as a file path)")
    problem = file_path_problem(entry.filename)
    if problem:
        raise WeightsError(f"{where}: model {entry.name!r}: filename {entry.filename!r} {problem}")
    return entry


def file_path_problem(filename: str) -> str | None:
    """Why ``filename`` cannot be a file inside a Hub repository (None if it can): relative,
    '/'-separated, no empty, '.' or '..' parts, ending in .safetensors."""
    parts = filename.split("/")
    if filename.startswith("/") or "\\" in filename or any(p in ("", ".", "..") for p in parts):
        return ("must be a relative path inside the repository (no leading '/', '\\', empty, '.' or "
                "'..' parts), e.g. weights/model.safetensors")
    if not filename.endswith(".safetensors"):
        return "is not a .safetensors file (only .safetensors files are accepted)"
    return None


def list_models(registry_path: str | os.PathLike | None = None) -> list[ModelEntry]:
    """All models in the registry (see :func:`registry_file`), in file order."""
    path = registry_file(registry_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read the model registry {path}: {exc}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise WeightsError(f"{path}: expected {{\"models\": [...]}} at the top level")
    entries = [_entry_from_dict(m, path.parent, str(path)) for m in models]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise WeightsError(f"{path}: duplicate model names {dupes}")
    return entries


def get_entry(name: str, registry_path: str | os.PathLike | None = None) -> ModelEntry:
    """The registry entry called ``name``; :class:`KeyError` lists the known names."""
    entries = list_models(registry_path)
    for e in entries:
        if e.name == name:
            return e
    raise KeyError(f"unknown model {name!r}; known models: {', '.join(e.name for e in entries)}")


def verify_file(path: str | os.PathLike, entry: ModelEntry) -> None:
    """Check a file against its registry entry's size and sha256; raise :class:`WeightsError`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file of {entry.name} not found: {path}")
    size = path.stat().st_size
    if size != entry.size:
        raise WeightsError(
            f"size mismatch for {entry.name}: expected {entry.size} bytes, got {size} ({path})"
        )
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise WeightsError(
            f"checksum mismatch for {entry.name}: expected {entry.sha256}, got {digest} ({path})"
        )
