"""The Hugging Face Hub: a thin layer over ``hf_hub_download`` and the HF cache's own API.

huggingface_hub does the work: its settings (``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_TOKEN``, read when it is imported), its cache layout, its typed errors
and its cache API (``try_to_load_from_cache``, ``scan_cache_dir``). This layer adds what a
dehazing plugin needs on top: registry files are verified by size and sha256 and a bad copy is
removed through the cache API; a cached registry file is used without any request; a download
that stops sending bytes is given up after ``$CLEARNET_HUB_TIMEOUT`` seconds instead of being
retried for minutes; every failure is a :class:`WeightsError` that says what to do.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HubStalled
from .fileformat import WeightsError
from .registry import ModelEntry, list_models, verify_file

__all__ = [
    "TIMEOUT_ENV",
    "HubStalled",
    "VerifyReport",
    "cached_path",
    "download",
    "fetch",
    "parse_hf_address",
    "remove_cached",
    "timeout",
    "verified_cached_path",
    "verify",
]

TIMEOUT_ENV = "CLEARNET_HUB_TIMEOUT"


def timeout() -> float:
    """Seconds without a byte before a download is given up: ``$CLEARNET_HUB_TIMEOUT``, else
    huggingface_hub's own ETag timeout (``HF_HUB_ETAG_TIMEOUT``, 10 s by default)."""
    from huggingface_hub import constants

    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return float(constants.HF_HUB_ETAG_TIMEOUT)
    try:
        value = float(text)
    except ValueError:
        raise WeightsError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise WeightsError(f"{TIMEOUT_ENV}={text!r} must be a positive number of seconds")
    return value


_FORM = "hf://ORG/REPO[@REVISION]/PATH/FILE.safetensors"
#: a Hub repository id's two parts: what huggingface_hub's own validation accepts
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


def parse_hf_address(text: str) -> tuple[str, str, str]:
    """``hf://ORG/REPO[@REVISION]/PATH/FILE.safetensors`` -> (repo_id, revision, filename); any
    other form is a :class:`WeightsError` naming the address and the accepted form (checked here,
    so huggingface_hub's own validation errors never reach the user as tracebacks)."""
    rest = text[len("hf://"):] if text.startswith("hf://") else text
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise WeightsError(f"expected {_FORM}, got {text!r}")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    revision = "main"
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    bad_repo = [p for p in repo.split("/") if not _REPO_PART.fullmatch(p) or ".." in p or "--" in p]
    if bad_repo or not revision or any(c.isspace() for c in revision):
        raise WeightsError(
            f"{text!r}: {'repository ' + repr(repo) if bad_repo else 'revision ' + repr(revision)} is not "
            f"a Hub name (letters, digits, '.', '_', '-'; no '..' or '--'); expected {_FORM}"
        )
    from .registry import file_path_problem

    problem = file_path_problem(filename)
    if problem and not filename.endswith(".safetensors"):
        raise WeightsError(
            f"{text!r}: only .safetensors weights are accepted (pickle checkpoints can run code)"
        )
    if problem:
        raise WeightsError(f"{text!r}: the file path {filename!r} {problem}; expected {_FORM}")
    return repo, revision, filename


# ------------------------------------------------------------------------------------ the cache
def cached_file(repo_id: str, filename: str, revision: str) -> Path | None:
    """The cached copy of a Hub file, found by huggingface_hub's cache API (no request)."""
    from huggingface_hub import constants, try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename, cache_dir=constants.HF_HUB_CACHE, revision=revision)
    return Path(hit) if isinstance(hit, str) and os.path.isfile(hit) else None


def remove_cached(path: Path) -> None:
    """Remove a file from the HF cache through the cache's API: its snapshot entry, and its blob
    when no other cached file refers to it. Callers only pass paths from the HF cache (never a
    bundled file)."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.utils import CacheNotFound

    def key(p: Path) -> tuple[str, str]:
        return os.path.realpath(p.parent), p.name

    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)
        found = [(rev, f) for repo in info.repos for rev in repo.revisions for f in rev.files
                 if key(f.file_path) == key(path)]
        if not found:
            return
        if hasattr(info, "delete_files"):  # huggingface_hub >= 1: this file only
            info.delete_files(*(f for _, f in found)).execute()
        else:  # older: the revision the file belongs to
            info.delete_revisions(*{rev.commit_hash for rev, _ in found}).execute()
    except (OSError, ValueError, CacheNotFound):
        pass


# ------------------------------------------------------------------------------------ downloads
def fetch(
    repo_id: str, filename: str, revision: str, *, label: str, force: bool = False,
    tqdm_class: type | None = None,
) -> Path:
    """The cached file, or one download through ``hf_hub_download``; errors say what to do.

    A cached file is returned without any request (registry files are pinned by their sha256).
    ``tqdm_class`` (e.g. ``napari.utils.progress``) shows the bytes as they arrive.
    """
    from huggingface_hub import hf_hub_download

    if not force and (hit := cached_file(repo_id, filename, revision)) is not None:
        return hit
    wait = timeout()
    try:
        local = _stall_guard(
            lambda bar: hf_hub_download(repo_id, filename, revision=revision, etag_timeout=wait,
                                        force_download=force, tqdm_class=bar),
            wait, tqdm_class,
        )
    except Exception as exc:  # huggingface_hub's typed errors, and what its HTTP client raises
        raise _hub_error(exc, label, f"{repo_id}@{revision}/{filename}", wait) from None
    return Path(local)


def _stall_guard(download: Callable[[type], Any], wait: float, tqdm_class: type | None) -> Any:
    """Run ``download(progress_class)`` in a worker thread and give up once ``wait`` seconds pass
    without a byte arriving, so "did not answer within N s" is what really happened (the client's
    own retries take minutes). A download that keeps moving is never cut short. An abandoned
    worker finishes or fails on its own; it writes only to the cache, under temporary names."""
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
        if worker.is_alive() and time.monotonic() - last[0] > wait:
            raise HubStalled(f"no data for {wait:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _hub_error(exc: BaseException, label: str, where: str, wait: float) -> WeightsError:
    """A Hub failure, by huggingface_hub's error types, as a message that says what to do."""
    from huggingface_hub import constants
    from huggingface_hub.utils import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint, (repo_id, rest) = constants.ENDPOINT, where.split("@", 1)
    revision, filename = rest.split("/", 1)
    if isinstance(exc, RepositoryNotFoundError):  # gated repositories too
        msg = (f"repository {repo_id!r} not found on {endpoint} (for {label}); check the name, or set "
               "HF_TOKEN if it is private or gated")
    elif isinstance(exc, RevisionNotFoundError):
        msg = f"revision {revision!r} not found in {repo_id} on {endpoint} (for {label})"
    elif isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        msg = f"file {filename!r} not found in {repo_id}@{revision} on {endpoint} (for {label})"
    elif constants.HF_HUB_OFFLINE or isinstance(exc, OfflineModeIsEnabled):  # nothing can be fetched
        msg = (f"{label} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and offline mode is "
               "on (HF_HUB_OFFLINE); download it once with network access (`clearnet weights download "
               "NAME`) or unset HF_HUB_OFFLINE")
    elif isinstance(exc, TimeoutError):
        msg = (f"the Hub at {endpoint} did not answer within {wait:g} s while fetching {label} ({where}); "
               f"check the network or proxy (HF_ENDPOINT), allow longer with {TIMEOUT_ENV}=SECONDS, or "
               "set HF_HUB_OFFLINE=1 to use cached models only")
    elif isinstance(exc, LocalEntryNotFoundError):  # the Hub could not be reached, nothing cached
        cause = exc.__cause__ or exc
        msg = (f"cannot reach the Hub at {endpoint} to fetch {label} ({where}): {cause}; check the "
               "network or proxy (HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to use cached models only")
    else:  # a transfer cut short, a full disk, an unexpected answer
        msg = (f"download of {label} ({where}) did not complete: {type(exc).__name__}: {exc}; run the "
               "command again")
    return WeightsError(msg)


def download(entry: ModelEntry, *, force: bool = False, tqdm_class: type | None = None) -> Path:
    """Fetch ``entry`` into the HF cache (a cached copy is reused without any request) and verify
    it; a copy that fails the size or sha256 check is removed from the cache and reported."""
    local = fetch(entry.repo_id, entry.filename, entry.revision, label=entry.name, force=force,
                  tqdm_class=tqdm_class)
    try:
        verify_file(local, entry)
    except WeightsError as exc:
        remove_cached(local)
        raise WeightsError(f"{exc}; the file was removed from the cache") from None
    return local


def local_copy(entry: ModelEntry) -> tuple[Path | None, bool]:
    """(the file that needs no download, whether it is the bundled copy): the bundled file, else
    the cached one, else None."""
    if entry.bundled_path is not None and entry.bundled_path.is_file():
        return entry.bundled_path, True
    return cached_file(entry.repo_id, entry.filename, entry.revision), False


def cached_path(entry: ModelEntry, *, verify: bool = False) -> Path | None:
    """The local file of ``entry`` if it needs no download (bundled, or in the HF cache).

    Cheap enough for a widget: it checks presence and size; ``verify=True`` also checks the
    sha256 (and removes a bad cached copy; :func:`verified_cached_path` says so). Loading a model
    always verifies.
    """
    if verify:
        return verified_cached_path(entry)[0]
    path, _ = local_copy(entry)
    if path is None or path.stat().st_size != entry.size:
        return None
    return path


def verified_cached_path(entry: ModelEntry) -> tuple[Path | None, str | None]:
    """(the local file of ``entry`` that passes its size and sha256 check, or None; what was wrong
    with a local copy that failed, or None). A damaged cached copy is removed; a damaged bundled
    copy is left alone (reinstall)."""
    path, bundled = local_copy(entry)
    if path is None:
        return None, None
    try:
        verify_file(path, entry)
    except WeightsError as exc:
        if bundled:
            return None, f"the bundled copy of {entry.name} is damaged ({exc}); reinstall napari-clearnet"
        remove_cached(path)
        return None, (f"the cached copy of {entry.name} was damaged ({exc}) and has been removed from the "
                      "cache")
    return path, None


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
    by_name = {e.name: e for e in list_models(registry_path)}
    wanted = list(names or [])
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise WeightsError(f"unknown model(s) {unknown}; known models: {', '.join(by_name)}")
    reports = []
    for entry in [by_name[n] for n in wanted] if wanted else by_name.values():
        path, bundled = local_copy(entry)
        if path is None:
            reports.append(VerifyReport(entry.name, "missing", None, "not downloaded"))
            continue
        try:
            verify_file(path, entry)
            reports.append(VerifyReport(entry.name, "ok", path, f"sha256 {entry.sha256[:12]}… ok"))
        except WeightsError as exc:
            if not bundled:
                remove_cached(path)
            note = "; reinstall napari-clearnet" if bundled else "; removed from the cache"
            reports.append(VerifyReport(entry.name, "failed", path, f"{exc}{note}"))
    return reports
