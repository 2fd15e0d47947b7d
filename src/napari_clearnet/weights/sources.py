"""Which file a model string means: a registry name, an ``hf://`` address or a file path.

The three sources are told apart by their form alone, never by what happens to exist on disk:

* ``hf://ORG/REPO[@REVISION]/FILE.safetensors`` is a file on the Hugging Face Hub;
* a string with a folder separator, a leading ``~`` or a file suffix (``.safetensors``, and the
  pickle suffixes, so that those get the refusal message), or any ``os.PathLike``, is a file path;
* anything else is a registry name.

A bare word that is not a registry name is refused, and if a file of that name exists the message
says to write ``./NAME`` for it, so a typo never silently loads a stray file. Other URL schemes
are refused. An ``hf://`` address that names a registry model's repository and file is that model:
its file is checked against the entry's size and sha256 like the registry name's.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..core.model import ClearNet
from . import hub
from .fileformat import (
    CONFIG_KEY,
    WeightsError,
    build_model,
    read_metadata,
    read_weights,
    sha256_file,
    sidecar_config,
)
from .registry import DEFAULT_MODEL, ModelEntry, get_entry, list_models, verify_file

__all__ = ["LoadedWeights", "ModelSource", "load", "parse_source", "resolve"]

#: suffixes that mark a file path (pickles too, so they get the refusal message, not "unknown model")
FILE_SUFFIXES = frozenset({".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".pkl"})
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class ModelSource:
    """A parsed model string: ``kind`` is ``"registry"``, ``"hub"`` or ``"file"``."""

    kind: str
    text: str

    @property
    def path(self) -> Path:
        return Path(self.text).expanduser()


def parse_source(model: str | os.PathLike) -> ModelSource:
    """Tell a registry name, an ``hf://`` address and a file path apart by their form (see the
    module docstring); other URLs are refused."""
    if isinstance(model, os.PathLike):
        return ModelSource("file", os.fspath(model))
    text = str(model)
    if text.startswith("hf://"):
        return ModelSource("hub", text)
    if _SCHEME.match(text):
        raise WeightsError(
            f"{text}: URLs are not supported; download the file and pass its path, or give a "
            "Hugging Face Hub file as hf://ORG/REPO/FILE.safetensors"
        )
    looks_like_path = ("/" in text or os.sep in text or text.startswith("~")
                       or Path(text).suffix.lower() in FILE_SUFFIXES)
    return ModelSource("file" if looks_like_path else "registry", text)


def resolve(
    model: str | os.PathLike,
    *,
    registry_path: str | os.PathLike | None = None,
    force: bool = False,
    tqdm_class: type | None = None,
) -> tuple[Path, str]:
    """The local file of a model string, and the name to show for it.

    Registry models (by name, or by an ``hf://`` address of their repository and file) are
    verified against their size and sha256, downloading them if needed with ``tqdm_class`` as
    progress bar; other files are checked when they are read. Blocks while downloading: call it
    from a worker thread in a GUI.
    """
    source = parse_source(model)
    if source.kind == "file":
        return _local_file(source.path), source.path.name
    entries = list_models(registry_path)
    if source.kind == "hub":
        repo, revision, filename = hub.parse_hf_address(source.text)
        entry = next((e for e in entries if (e.repo_id, e.filename) == (repo, filename)
                      and revision in ("main", e.revision)), None)
        if entry is None:
            return _hub_file(source.text, repo, revision, filename, force, tqdm_class), source.text
        return _registry_file(entry, force, tqdm_class), source.text
    try:
        entry = get_entry(source.text, registry_path)
    except KeyError as exc:
        here = Path(source.text)
        hint = f"; for the file {here} in this folder, write ./{here}" if here.exists() else ""
        raise WeightsError(
            f"{exc.args[0]}{hint}; or give a .safetensors path or hf://ORG/REPO/FILE.safetensors"
        ) from None
    return _registry_file(entry, force, tqdm_class), entry.name


def _local_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors") if p.is_file())
        hint = f" (it holds {', '.join(found[:3])})" if found else ""
        raise WeightsError(f"{path} is a folder; pass the .safetensors file inside it{hint}")
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    return path


def _registry_file(entry: ModelEntry, force: bool, tqdm_class: type | None) -> Path:
    """The bundled copy (verified; a damaged install is reported, never deleted), a verified
    cached copy, or a download."""
    if entry.bundled_path is not None and entry.bundled_path.is_file():
        verify_file(entry.bundled_path, entry)
        return entry.bundled_path
    damage = None
    if not force:
        hit, damage = hub.verified_cached_path(entry)
        if hit is not None:
            return hit
    try:
        path = hub.download(entry, force=force, tqdm_class=tqdm_class)
    except WeightsError as exc:
        if damage is None:
            raise
        raise WeightsError(f"{damage}; downloading it again failed: {exc}") from None
    if damage is not None:  # said, not silent: a damaged copy means a disk or copy to check
        warnings.warn(f"{damage}; downloaded again and verified", UserWarning, stacklevel=3)
    return path


def _hub_file(text: str, repo: str, revision: str, filename: str, force: bool,
              tqdm_class: type | None) -> Path:
    """A Hub file no registry entry vouches for: fetched, and refused (and removed from the
    cache) unless it is a safetensors file; an exported Hub folder's config.json comes along."""
    path = hub.fetch(repo, filename, revision, label=text, force=force, tqdm_class=tqdm_class)
    try:
        meta = read_metadata(path)
    except WeightsError as exc:  # not safetensors (a pickle?): never keep it around
        hub.remove_cached(path)
        raise WeightsError(f"{text}: {exc}; the file was removed from the cache") from None
    if CONFIG_KEY not in meta and sidecar_config(path) is None:
        folder = filename.rsplit("/", 1)[0] + "/" if "/" in filename else ""
        with contextlib.suppress(WeightsError):  # reading the weights then names the missing config
            hub.fetch(repo, f"{folder}config.json", revision, label=f"{text} (config.json)")
    return path


@dataclass(frozen=True)
class LoadedWeights:
    """What :func:`load` returns: the network, the name to show, its file and the file's sha256."""

    net: ClearNet
    name: str
    path: Path
    sha256: str


def load(model: str | os.PathLike | None = None, *, tqdm_class: type | None = None) -> LoadedWeights:
    """A model string as a built network, in one call.

    Which file (:func:`resolve`, downloading and verifying if needed), read and checked
    (:func:`~.fileformat.read_weights`), built (:func:`~.fileformat.build_model`), and its checksum
    (hashed once).

    Parameters
    ----------
    model : str or path, optional
        A registry name, an ``hf://`` address or a path (None: the bundled default).
    tqdm_class : type, optional
        A tqdm-like bar for a download's bytes.

    Returns
    -------
    LoadedWeights
        ``net``, ``name``, ``path`` and ``sha256``.

    Raises
    ------
    WeightsError
        A file that is missing, corrupt, pickled or of another architecture.
    """
    path, name = resolve(model or DEFAULT_MODEL, tqdm_class=tqdm_class)
    state, config, _ = read_weights(path)
    net = build_model(state, config, source=str(path))
    return LoadedWeights(net, name, path, sha256_file(path))
