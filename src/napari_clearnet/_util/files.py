"""Safe files: every file is written under a temporary name and renamed when complete.

:func:`atomic_path` is the one way the package writes a file (images, JSON, weights, model
cards, benchmark reports): an interrupted write never leaves a half-written file under the final
name, and an existing file is replaced only when asked. Partial files a killed run left behind
are recognised by their name and removed by :func:`remove_stale_parts`; a clip, which an
interrupted run carries on, is written under a fixed partial name instead (:func:`kept_path`).
Outputs record a
:func:`fingerprint` of their input so a rerun can tell which input an output was made from. No
output ever replaces its own input (:func:`refuse_input`), whatever ``overwrite`` says.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import ReplacesInputError
from .validate import option

__all__ = [
    "ReplacesInputError",
    "atomic_path",
    "fingerprint",
    "held",
    "kept_path",
    "refuse_input",
    "remove_stale_parts",
    "sha256_file",
    "write_text",
]

#: key under which outputs record the input they were made from (see :func:`fingerprint`)
TAG_KEY = "napari-clearnet"
#: how the partial files of :func:`atomic_path` are named: ``.<stem>.<random>.part.<ext>``
PART_PATTERN = re.compile(r"^\..+\.[a-z0-9_]{8}\.part\.[A-Za-z0-9]{1,5}$")


def fingerprint(path: str | os.PathLike) -> str:
    """A short digest of a file's size and first and last 64 KiB: outputs carry their input's, so
    a rerun can tell an output made from this input from one made from another of the same name."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(str(size).encode())
        h.update(f.read(1 << 16))
        if size > 1 << 17:
            f.seek(-(1 << 16), os.SEEK_END)
        h.update(f.read(1 << 16))
    return h.hexdigest()[:16]


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's whole content, in hex: what provenance records to identify an input
    (:func:`fingerprint` is the quick key that ``--skip-existing`` compares)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tag_text(source_fingerprint: str) -> str:
    """What an output records about its input (see :func:`read_tag`)."""
    return f"{TAG_KEY} source={source_fingerprint}"


# ------------------------------------------------------------------------------------- writing
def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths lead to one file: the same name however spelled, a symbolic link to it, or
    a hard link (same device and inode); for paths that do not exist, the same resolved name."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        try:
            return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))
        except (OSError, ValueError):
            return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def refuse_input(target: str | os.PathLike, sources: Iterable[str | os.PathLike | None]) -> None:
    """Raise :class:`ReplacesInputError` when ``target`` is one of ``sources`` (see
    :func:`same_file`): no output may replace its input, through any name or link."""
    for source in sources:
        if source is None or not same_file(target, source):
            continue
        how = ("" if os.path.abspath(target) == os.path.abspath(source)
               else ", through a link or another spelling of its name")
        raise ReplacesInputError(
            f"output {target} would replace the input {source} itself (the same file{how}); an output "
            "never replaces its input, even when asked to overwrite: choose another output name or folder"
        )


def short_stem(stem: str, limit: int = 96) -> str:
    """The stem cut to ``limit`` bytes for a temporary name (never the part that is too long)."""
    while len(os.fsencode(stem)) > limit:
        stem = stem[: max(1, len(stem) * limit // len(os.fsencode(stem)) - 1)]
    return stem or "x"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool,
                sources: Iterable[str | os.PathLike | None] = ()) -> Iterator[str]:
    """A temporary name beside ``path`` to write to; renamed to ``path`` when the block ends
    without an error, removed otherwise (Ctrl-C and terminating signals included). The file gets
    the permissions a normal new file would have, whatever the writer did to the temporary one.
    ``path`` is refused when it is one of ``sources`` (the inputs it is made from), checked before
    and again just before the rename, whatever ``overwrite`` says.

    The temporary file is locked while it lives, so :func:`remove_stale_parts` in another run
    never removes a file that is being written.
    """
    path = Path(path)
    sources = [s for s in sources if s is not None]
    refuse_input(path, sources)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {option('overwrite')} to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{short_stem(path.stem)}.", suffix=f".part{path.suffix}",
                               dir=path.parent)
    try:
        _lock(fd)
        yield tmp
        if not overwrite and path.exists():
            raise FileExistsError(f"{path} appeared while writing; not replaced")
        refuse_input(path, sources)
        _umask_mode(tmp)  # mkstemp makes 0600, and some writers create the file anew
        os.replace(tmp, path)
    finally:
        os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def kept_path(path: str | os.PathLike, partial: str | os.PathLike, overwrite: bool,
              sources: Iterable[str | os.PathLike | None] = ()) -> Iterator[str]:
    """:func:`atomic_path` for a file that an interrupted run carries on: it is written under the
    fixed name ``partial`` and renamed to ``path`` when the block ends without an error; Ctrl-C and
    terminating signals (KeyboardInterrupt) keep it for the next run, any other error removes it.
    It is locked while it lives; one that another run holds is refused."""
    path, partial = Path(path), Path(partial)
    sources = [s for s in sources if s is not None]
    refuse_input(path, sources)
    refuse_input(partial, sources)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {option('overwrite')} to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o600)
    if not _lock(fd) and _can_lock():
        os.close(fd)
        raise FileExistsError(f"{path} is being written by another run (its partial file {partial.name} is "
                              "in use)")
    keep = False
    try:
        yield str(partial)
        if not overwrite and path.exists():
            raise FileExistsError(f"{path} appeared while writing; not replaced")
        refuse_input(path, sources)
        _umask_mode(str(partial))
        os.replace(partial, path)
    except KeyboardInterrupt:
        keep = True
        raise
    finally:
        os.close(fd)
        if not keep and os.path.exists(partial):
            os.unlink(partial)


def held(path: str | os.PathLike) -> bool:
    """Whether another run holds ``path`` (a file being written through :func:`kept_path`)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return _can_lock() and not _lock(fd)
    finally:
        os.close(fd)


def _can_lock() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:  # Windows
        return False
    return True


def _lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: stale files are recognised by age instead
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale_parts(folder: str | os.PathLike, max_age_s: float = 3600.0) -> list[Path]:
    """Remove partial files ``.<stem>.<random>.part.<ext>`` that an interrupted or killed run left
    in ``folder``; files another run is still writing (locked, or younger than ``max_age_s``
    where locks are not available) are left alone. Returns the files removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not PART_PATTERN.match(e.name) or not e.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(e.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                import fcntl  # noqa: F401
            except ImportError:
                if time.time() - os.fstat(fd).st_mtime < max_age_s:
                    continue
            else:
                if not _lock(fd):
                    continue  # being written right now
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True,
               sources: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Write a text file (UTF-8) atomically; replaces an existing file unless ``overwrite`` is False
    (never one of ``sources``, the inputs it is made from)."""
    path = Path(path)
    with atomic_path(path, overwrite, sources) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _umask_mode(path: str) -> None:
    """Give a new file the permissions a normal new file would have (mkstemp uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
