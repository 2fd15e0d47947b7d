"""Model weights: the registry of known models, safetensors files with their config, checksums.

A weights file is a safetensors file whose metadata carries the ClearNet config as JSON
(key ``clearnet_config``), so the network and its settings can never be separated. The
registry (``weights/registry.json``) lists the bundled default and the models on the Hub; set
``CLEARNET_REGISTRY`` (or pass ``registry_path``) to use another registry file.

Downloads go through ``huggingface_hub.hf_hub_download`` into the standard Hugging Face cache.
The ``HF_*`` variables are read when a function is called, not when a module is imported, so
``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` set by a
napari session or a test take effect at once. Every registry file is checked for size and
sha256 before use; pickles are never loaded.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._validate import MODEL_RANGES, check_config, json_text
from .io import _umask_mode
from .model import FORMAT_VERSION, ClearNet, ClearNetConfig

__all__ = [
    "DEFAULT_MODEL",
    "REGISTRY_ENV",
    "TIMEOUT_ENV",
    "HubSettings",
    "ModelEntry",
    "VerifyReport",
    "WeightsError",
    "build_model",
    "bundled_dir",
    "cached_path",
    "check_finite",
    "download",
    "export_hub_folder",
    "get_entry",
    "hub_settings",
    "parse_hf_address",
    "read_weights",
    "registry",
    "registry_file",
    "resolve",
    "save_weights",
    "sha256_file",
    "verify",
    "verify_file",
]

DEFAULT_MODEL = "clearnet-default"
CONFIG_KEY = "clearnet_config"
REGISTRY_ENV = "CLEARNET_REGISTRY"
TIMEOUT_ENV = "CLEARNET_HUB_TIMEOUT"
DEFAULT_TIMEOUT_S = 10.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Suffixes that mean "a file", not a registry name (pickles too, so they get the refusal message).
_FILE_SUFFIXES = frozenset({".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".pkl"})


class WeightsError(ValueError):
    """A weights file that cannot be used: missing, corrupt, wrong format or wrong architecture."""


@dataclass(frozen=True)
class ModelEntry:
    """One known model: where it lives on the Hub and what its file must be.

    ``home`` is the folder of the registry file the entry came from; bundled files live there.
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
    config: dict[str, Any] = field(default_factory=dict)
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


# --------------------------------------------------------------------------------------------
# registry


def bundled_dir() -> Path:
    """Folder of the weights shipped with the package.

    In a wheel it is ``napari_clearnet/weights``; in a source checkout it is the repository's
    top-level ``weights/`` (the same files: the wheel is built from that folder).
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "weights", here.parents[1] / "weights"):
        if (candidate / "registry.json").is_file():
            return candidate
    raise FileNotFoundError(f"bundled weights not found next to {here}; reinstall napari-clearnet")


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
    known = {f.name for f in fields(ModelEntry)} - {"home"}
    unknown = sorted(set(data) - known)
    required = ("name", "repo_id", "filename", "sha256", "size")
    missing = [k for k in required if k not in data]
    if unknown or missing:
        raise WeightsError(
            f"{where}: model {data.get('name', '?')!r} has "
            + "; ".join(
                p for p in (f"unknown keys {unknown}" if unknown else "",
                            f"missing keys {missing}" if missing else "") if p
            )
            + f" (accepted keys: {sorted(known)})"
        )
    entry = ModelEntry(**data, home=home)
    if not isinstance(entry.sha256, str) or not _SHA256.fullmatch(entry.sha256):
        raise WeightsError(f"{where}: model {entry.name!r}: sha256 must be 64 lowercase hex digits")
    if not isinstance(entry.size, int) or entry.size <= 0:
        raise WeightsError(f"{where}: model {entry.name!r}: size must be a positive number of bytes")
    if not entry.filename.endswith(".safetensors"):
        raise WeightsError(f"{where}: model {entry.name!r}: only .safetensors files are accepted")
    return entry


def registry(registry_path: str | os.PathLike | None = None) -> list[ModelEntry]:
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
    entries = registry(registry_path)
    for e in entries:
        if e.name == name:
            return e
    raise KeyError(f"unknown model {name!r}; known models: {', '.join(e.name for e in entries)}")


# --------------------------------------------------------------------------------------------
# files


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
    check_finite(state, f"refusing to write {path}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        _umask_mode(tmp)  # after save_file, which creates the file anew (with mode 0600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def _looks_pickled(head: bytes) -> bool:
    """Pickle protocol 2+ starts with 0x80; torch.save's zip format with 'PK'."""
    return head[:1] == b"\x80" or head[:2] == b"PK"


def _read_metadata(path: Path) -> dict[str, str]:
    """Metadata of a safetensors file, with a clear error for anything else (pickles included)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if _looks_pickled(head):
            raise WeightsError(
                f"{path}: this is a pickle / torch.save checkpoint, which is refused because loading "
                "it can run arbitrary code; convert it with weights.save_weights() to .safetensors"
            )
        if len(head) < 8:
            raise WeightsError(f"{path}: not a safetensors file (only {len(head)} bytes)")
        n = int.from_bytes(head, "little")
        if n <= 1 or n > min(100_000_000, size - 8):
            raise WeightsError(
                f"{path}: not a safetensors file (or truncated); export weights as .safetensors"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: corrupt safetensors header")
    meta = header.get("__metadata__") or {}
    return dict(meta) if isinstance(meta, dict) else {}


def _sidecar_config(path: Path) -> dict[str, Any] | None:
    """A ``config.json`` next to the weights (a Hub folder made by export_hub_folder), if any."""
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
    meta = _read_metadata(path)
    if config is None:
        raw: Any = None
        if CONFIG_KEY in meta:
            try:
                raw = json.loads(meta[CONFIG_KEY])
            except json.JSONDecodeError as exc:
                raise WeightsError(f"{path}: invalid ClearNet config in metadata: {exc}") from None
        else:
            raw = _sidecar_config(path)
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
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:5]}{' …' if len(wrong) > 5 else ''}")
        raise WeightsError(
            f"{source or 'weights'} do not fit the ClearNet architecture {config.widths}: "
            + "; ".join(parts)
        )
    model = ClearNet(config)
    model.load_state_dict(state, strict=True)
    return model.eval()


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


# --------------------------------------------------------------------------------------------
# the Hub


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubSettings:
    """Where and how to reach the Hub, read from the environment at call time."""

    endpoint: str
    cache_dir: Path
    offline: bool
    timeout: float


def hub_settings() -> HubSettings:
    """The effective ``HF_*`` settings now (huggingface_hub itself freezes them at import).

    ``timeout`` bounds the wait for the server's first answer: ``$CLEARNET_HUB_TIMEOUT``, else
    ``$HF_HUB_ETAG_TIMEOUT``, else 10 s.
    """
    from huggingface_hub import constants

    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    if os.environ.get("HF_HUB_CACHE"):
        cache = Path(os.environ["HF_HUB_CACHE"])
    elif os.environ.get("HF_HOME"):
        cache = Path(os.environ["HF_HOME"]) / "hub"
    else:
        cache = Path(constants.HF_HUB_CACHE)
    offline = _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or constants.HF_HUB_OFFLINE
    timeout = DEFAULT_TIMEOUT_S
    for var in (TIMEOUT_ENV, "HF_HUB_ETAG_TIMEOUT"):
        text = os.environ.get(var)
        if text:
            try:
                timeout = float(text)
            except ValueError:
                raise WeightsError(f"{var}={text!r} is not a number of seconds") from None
            if timeout <= 0:
                raise WeightsError(f"{var}={text!r} must be a positive number of seconds")
            break
    return HubSettings(endpoint, Path(os.path.expandvars(cache)).expanduser(), offline, timeout)


def _kind(exc: BaseException) -> str:
    """Classify an error from huggingface_hub or its HTTP client without importing the client."""
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"RepositoryNotFoundError", "GatedRepoError"}:
        return "repo"
    if "RevisionNotFoundError" in names:
        return "revision"
    if names & {"RemoteEntryNotFoundError", "EntryNotFoundError"} and "LocalEntryNotFoundError" not in names:
        return "entry"
    if names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError"}:
        return "offline"
    if any("Timeout" in n for n in names):
        return "timeout"
    if names & {"ConnectError", "ConnectionError", "NetworkError", "ProxyError"}:
        return "connect"
    if "RemoteProtocolError" in names or (isinstance(exc, OSError) and "onsistency" in str(exc)):
        return "incomplete"
    return "other"


def _hub_error(exc: BaseException | None, label: str, repo_id: str, revision: str, filename: str,
               s: HubSettings) -> WeightsError:
    """Turn a Hub failure (None: offline and not cached) into a message that says what to do."""
    where = f"{repo_id}@{revision}/{filename} on {s.endpoint}"
    kind = "offline" if exc is None else _kind(exc)
    if kind == "repo":
        msg = (f"repository {repo_id!r} not found on {s.endpoint} (for {label}); check the name, "
               "or set HF_TOKEN if it is private or gated")
    elif kind == "revision":
        msg = f"revision {revision!r} not found in {repo_id} on {s.endpoint} (for {label})"
    elif kind == "entry":
        msg = f"file {filename!r} not found in {repo_id}@{revision} on {s.endpoint} (for {label})"
    elif kind == "timeout":
        msg = (f"the Hub at {s.endpoint} did not answer within {s.timeout:g} s while fetching {label} "
               f"({where}); check the network or proxy (HF_ENDPOINT), allow longer with "
               f"{TIMEOUT_ENV}=SECONDS, or set HF_HUB_OFFLINE=1 to use cached models only")
    elif kind == "connect":
        msg = (f"cannot reach the Hub at {s.endpoint} to fetch {label} ({where}): {exc}; check the "
               "network or proxy (HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to use cached models only")
    elif kind == "offline":
        msg = (f"{label} is not in the Hugging Face cache ({s.cache_dir}) and offline mode is on "
               "(HF_HUB_OFFLINE); download it once with network access "
               "(`clearnet weights download NAME`) or unset HF_HUB_OFFLINE")
    elif kind == "incomplete":
        msg = f"download of {label} ({where}) was incomplete: {exc}; run the command again"
    else:
        msg = f"could not download {label} ({where}): {type(exc).__name__}: {exc}"
    return WeightsError(msg)


def _cache_lookup(repo_id: str, filename: str, revision: str, s: HubSettings) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename, cache_dir=s.cache_dir, revision=revision)
    return Path(hit) if isinstance(hit, str) and os.path.isfile(hit) else None


def _hub_fetch(
    repo_id: str, filename: str, revision: str, *, label: str, force: bool = False,
    tqdm_class: type | None = None,
) -> Path:
    """Cached file, or one download with a bounded first wait; errors say what to do.

    A cached file is returned without any request (registry files are pinned by sha256).
    Before downloading, one HEAD request with ``timeout`` checks the server: huggingface_hub
    would otherwise retry a silent server for minutes.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    s = hub_settings()
    if not force:
        hit = _cache_lookup(repo_id, filename, revision, s)
        if hit is not None:
            return hit
    if s.offline:
        raise _hub_error(None, label, repo_id, revision, filename, s)
    try:
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=s.endpoint)
        get_hf_file_metadata(url, timeout=s.timeout, endpoint=s.endpoint)
        local = _stall_guard(
            lambda bar: hf_hub_download(
                repo_id, filename, revision=revision, cache_dir=s.cache_dir, endpoint=s.endpoint,
                etag_timeout=s.timeout, force_download=force, tqdm_class=bar,
            ),
            s.timeout, tqdm_class,
        )
    except Exception as exc:  # huggingface_hub and its HTTP client raise many types
        raise _hub_error(exc, label, repo_id, revision, filename, s) from None
    return Path(local)


class HubStalled(TimeoutError):
    """No byte of a download arrived for the timeout (huggingface_hub would retry for minutes)."""


def _stall_guard(download: Any, timeout: float, tqdm_class: type | None) -> Any:
    """Run ``download(progress_class)`` in a worker thread and give up once ``timeout`` seconds
    pass without a byte arriving, so "did not answer within N s" is what really happened (the
    client's own retries of a stalled body take minutes). A download that keeps moving is never
    cut short. An abandoned worker finishes or fails on its own; it writes only to the cache,
    which keeps partial files under temporary names."""
    import threading
    import time

    if tqdm_class is None:
        from huggingface_hub.utils import tqdm as tqdm_class
    last = [time.monotonic()]

    class Watched(tqdm_class):  # type: ignore[misc, valid-type]
        def update(self, n: float | None = 1) -> bool | None:
            last[0] = time.monotonic()
            return super().update(n)

    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["value"] = download(Watched)
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=work, name="clearnet-hub-download", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
        if worker.is_alive() and time.monotonic() - last[0] > timeout:
            raise HubStalled(f"no data for {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _remove_cached(path: Path) -> None:
    """Remove a cached file and, in the HF cache layout, the blob its snapshot link points to.

    Never touches bundled files: callers only pass paths from the HF cache.
    """
    try:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        if blob != path:
            blob.unlink(missing_ok=True)
    except OSError:
        pass


def download(entry: ModelEntry, *, force: bool = False, tqdm_class: type | None = None) -> Path:
    """Fetch ``entry`` from the Hugging Face Hub into the standard HF cache and verify it.

    A cached copy is reused without any request. A file that fails the size or sha256 check is
    removed from the cache and reported ("checksum mismatch for NAME: expected …, got …").
    ``tqdm_class`` (e.g. ``napari.utils.progress``) shows the transfer.
    """
    local = _hub_fetch(
        entry.repo_id, entry.filename, entry.revision, label=entry.name, force=force,
        tqdm_class=tqdm_class,
    )
    try:
        verify_file(local, entry)
    except WeightsError as exc:
        _remove_cached(local)
        raise WeightsError(f"{exc}; the file was removed from the cache") from None
    return local


def cached_path(entry: ModelEntry, *, verify: bool = False) -> Path | None:
    """The local file of ``entry`` if it needs no download (bundled, or in the HF cache).

    Cheap enough for a widget: it checks presence and size; ``verify=True`` also checks the
    sha256 (and removes a bad cached copy). :func:`resolve` always verifies before use.
    """
    if entry.bundled and entry.bundled_path is not None and entry.bundled_path.is_file():
        p = entry.bundled_path
        bundled = True
    else:
        p = _cache_lookup(entry.repo_id, entry.filename, entry.revision, hub_settings())
        bundled = False
    if p is None or p.stat().st_size != entry.size:
        return None
    if verify:
        try:
            verify_file(p, entry)
        except WeightsError:
            if not bundled:
                _remove_cached(p)
            return None
    return p


def parse_hf_address(text: str) -> tuple[str, str, str]:
    """``hf://ORG/REPO[@REVISION]/PATH/FILE.safetensors`` -> (repo_id, revision, filename)."""
    rest = text[len("hf://"):] if text.startswith("hf://") else text
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise WeightsError(f"expected hf://ORG/REPO[@REVISION]/FILE.safetensors, got {text!r}")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    revision = "main"
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    if not filename.endswith(".safetensors"):
        raise WeightsError(
            f"{text!r}: only .safetensors weights are accepted (pickle checkpoints can run code)"
        )
    return repo, revision, filename


def _resolve_hf(text: str, force: bool, tqdm_class: type | None) -> Path:
    repo, revision, filename = parse_hf_address(text)
    path = _hub_fetch(repo, filename, revision, label=text, force=force, tqdm_class=tqdm_class)
    try:
        meta = _read_metadata(path)
    except WeightsError as exc:  # not safetensors (a pickle?): never keep it around
        _remove_cached(path)
        raise WeightsError(f"{text}: {exc}; the file was removed from the cache") from None
    if CONFIG_KEY not in meta and _sidecar_config(path) is None:
        # An exported Hub folder keeps the config in config.json: fetch it beside the weights.
        folder = filename.rsplit("/", 1)[0] + "/" if "/" in filename else ""
        with contextlib.suppress(WeightsError):  # read_weights then names the missing config
            _hub_fetch(repo, f"{folder}config.json", revision, label=f"{text} (config.json)")
    return path


def resolve(
    model: str | os.PathLike,
    *,
    registry_path: str | os.PathLike | None = None,
    force: bool = False,
    tqdm_class: type | None = None,
) -> tuple[Path, str]:
    """Find the file for a model name, a local path or ``hf://org/repo[@rev]/file``.

    Returns ``(path, display name)``. Registry models are verified against their size and
    sha256 (downloading them if needed, with ``tqdm_class`` as progress bar); other files are
    checked when they are read. Blocks while downloading: call it from a worker thread in a GUI.
    """
    text = os.fspath(model) if isinstance(model, os.PathLike) else str(model)
    if text.startswith("hf://"):
        return _resolve_hf(text, force, tqdm_class), text
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise WeightsError(
            f"{text}: URLs are not supported; download the file and pass its path, or give a "
            "Hugging Face Hub file as hf://ORG/REPO/FILE.safetensors"
        )
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors") if p.is_file())
        hint = f" (it holds {', '.join(found[:3])})" if found else ""
        raise WeightsError(f"{path} is a folder; pass the .safetensors file inside it{hint}")
    looks_like_path = "/" in text or os.sep in text or path.suffix in _FILE_SUFFIXES
    if looks_like_path or (path.is_file() and text not in {e.name for e in registry(registry_path)}):
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path, path.name
    try:
        entry = get_entry(text, registry_path)
    except KeyError as exc:
        raise WeightsError(
            f"{exc.args[0]}; or give a .safetensors path or hf://ORG/REPO/FILE.safetensors"
        ) from None
    if entry.bundled and entry.bundled_path is not None and entry.bundled_path.is_file():
        verify_file(entry.bundled_path, entry)  # a damaged install: reinstall, never delete
        return entry.bundled_path, entry.name
    if not force:
        hit = cached_path(entry, verify=True)
        if hit is not None:
            return hit, entry.name
    return download(entry, force=force, tqdm_class=tqdm_class), entry.name


# --------------------------------------------------------------------------------------------
# checks for the CLI and the widget


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of checking one model: ``ok``, ``missing`` (not downloaded) or ``failed``."""

    name: str
    status: str
    path: Path | None
    message: str


def verify(
    names: Iterable[str] | None = None, *, registry_path: str | os.PathLike | None = None
) -> list[VerifyReport]:
    """Check the local copies of registry models (all of them if ``names`` is empty).

    Makes no network request. A bad cached copy is removed from the HF cache; a bad bundled
    copy is reported only (reinstall), never deleted.
    """
    entries = registry(registry_path)
    by_name = {e.name: e for e in entries}
    wanted = list(names or [])
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise WeightsError(f"unknown model(s) {unknown}; known models: {', '.join(by_name)}")
    reports = []
    s = hub_settings()
    for entry in [by_name[n] for n in wanted] if wanted else entries:
        bundled = entry.bundled_path is not None and entry.bundled_path.is_file()
        path = entry.bundled_path if bundled else _cache_lookup(
            entry.repo_id, entry.filename, entry.revision, s
        )
        if path is None:
            reports.append(VerifyReport(entry.name, "missing", None, "not downloaded"))
            continue
        try:
            verify_file(path, entry)
            reports.append(VerifyReport(entry.name, "ok", path, f"sha256 {entry.sha256[:12]}… ok"))
        except WeightsError as exc:
            if not bundled:
                _remove_cached(path)
            note = "; removed from the cache" if not bundled else "; reinstall napari-clearnet"
            reports.append(VerifyReport(entry.name, "failed", path, f"{exc}{note}"))
    return reports


# --------------------------------------------------------------------------------------------
# publishing


def _yaml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def export_hub_folder(
    weights_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str,
    repo_id: str | None = None,
    license: str = "bsd-3-clause",
    description: str = "",
    training_data: str = "",
    metrics: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
    overwrite: bool = False,
) -> Path:
    """Write a folder ready for ``HfApi().upload_folder``: weights, config.json, README.md.

    The weights are checked first (safetensors, config, architecture). ``README.md`` is a model
    card with YAML front matter (license, tags, library_name) and sections on training data,
    metrics and licence; ``registry-entry.json`` is the record to paste into registry.json.
    An existing non-empty ``out_dir`` is refused unless ``overwrite`` is True.
    """
    src = Path(weights_file)
    state, config, meta = read_weights(src)
    build_model(state, config, source=str(src))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise WeightsError(f"model name {name!r}: use letters, digits, '.', '_' and '-'")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise WeightsError(f"{out} exists and is not empty; choose a new folder or pass overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    filename = f"{name}.safetensors"
    target = out / filename
    if target.resolve() != src.resolve():
        shutil.copyfile(src, target)
    digest, size = sha256_file(target), target.stat().st_size
    repo_id = repo_id or f"napari-clearnet/{name}"
    entry = {
        "name": name, "repo_id": repo_id, "filename": filename, "revision": "main",
        "sha256": digest, "size": size, "bundled": False, "license": license,
        "description": description or f"ClearNet dehazing weights {name}",
        "config": config.to_dict(),
    }
    cfg = {"model_type": "clearnet", "library_name": "napari-clearnet", CONFIG_KEY: config.to_dict(),
           "filename": filename, "sha256": digest, "size": size}
    (out / "config.json").write_text(json_text(cfg, indent=2) + "\n", encoding="utf-8")
    (out / "registry-entry.json").write_text(json_text(entry, indent=2) + "\n", encoding="utf-8")
    all_tags = ["image-dehazing", "image-to-image", "napari", "safetensors", "clearnet", *tags]
    metric_rows = "\n".join(f"| {k} | {v} |" for k, v in (metrics or {}).items())
    extra_meta = {k: v for k, v in meta.items() if k != CONFIG_KEY}
    card = "\n".join([
        "---",
        f"license: {license}",
        "library_name: napari-clearnet",
        "pipeline_tag: image-to-image",
        "tags:",
        *[f"- {_yaml_str(t)}" for t in dict.fromkeys(all_tags)],
        "---",
        "",
        f"# {name}",
        "",
        description or "ClearNet: a small attention U-Net that refines a Dark Channel Prior "
        "estimate of the transmission t(x) and the global airlight A; the clear image is "
        "J = (I − A) / max(t, t0) + A.",
        "",
        "## Usage",
        "",
        "```python",
        "import napari_clearnet",
        f'model = napari_clearnet.load_model("hf://{repo_id}/{filename}")',
        "result = napari_clearnet.dehaze(image, model=model)",
        "```",
        "",
        f"or `clearnet dehaze --model hf://{repo_id}/{filename} …`, or pick it in the napari widget.",
        "",
        "## Architecture",
        "",
        f"Widths {list(config.widths)}, working size {config.working_size} px; the full "
        "config is in `config.json` and in the safetensors metadata (`clearnet_config`).",
        "",
        "## Training data",
        "",
        training_data or "Not stated.",
        "",
        "## Metrics",
        "",
        "| metric | value |\n|---|---|\n" + metric_rows if metric_rows else "Not measured.",
        "",
        "## Licence",
        "",
        f"The weights are released under `{license}`. Check the terms of the training data too.",
        "",
        "## Files",
        "",
        f"- `{filename}`: {size} bytes, sha256 `{digest}`",
        *[f"- metadata `{k}`: {v}" for k, v in sorted(extra_meta.items())],
        f"- exported {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
    ])
    (out / "README.md").write_text(card, encoding="utf-8")
    return out
