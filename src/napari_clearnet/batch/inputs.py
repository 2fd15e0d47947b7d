"""Which files a batch reads: files, folders and globs expanded into inputs.

Recursive globs never follow links to folders, so link loops cannot hang it; every file is taken
once; our own outputs, recognised by the fingerprint they record whatever their name, are never
inputs; a folder gives exactly the files the readers read (:data:`INPUT_SUFFIXES`, from
``io.READ_SUFFIXES`` and ``video.VIDEO_SUFFIXES``) and the files it passes over are named.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..io.images import READ_SUFFIXES
from ..video.probe import VIDEO_SUFFIXES, container_comment

__all__ = ["INPUT_SUFFIXES", "TRANSMISSION", "collect_inputs", "looks_like_output", "read_tag"]

TRANSMISSION = "_transmission"
#: what a folder gives: the images and clips the readers read (one list each: io, video)
INPUT_SUFFIXES = READ_SUFFIXES + VIDEO_SUFFIXES

_TAG_RE = re.compile(rb"napari-clearnet[\x00 ]source=([0-9a-f]{16})")


def read_tag(path: str | os.PathLike) -> str | None:
    """The input fingerprint an output of ours records (None: none, or not readable)."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:  # in the container's metadata, read by PyAV
        m = _TAG_RE.search((container_comment(path) or "").encode())
        return m.group(1).decode() if m else None
    try:
        if path.suffix.lower() == ".json":
            value = json.loads(path.read_text(encoding="utf-8")).get("source_fingerprint")
            return value if isinstance(value, str) else None
        with open(path, "rb") as f:  # we write it near the start (WebP: at the end): 16 KiB to read
            head = f.read(1 << 13)
            f.seek(max(len(head), os.fstat(f.fileno()).st_size - (1 << 13)))
            head += f.read(1 << 13)
    except (OSError, ValueError, AttributeError):
        return None
    m = _TAG_RE.search(head)
    return m.group(1).decode() if m else None



def collect_inputs(
    inputs: Iterable[str | os.PathLike], exclude_dir: Path | None = None, suffix: str = ""
) -> tuple[list[Path], list[tuple[str, str]], list[Path], list[Path]]:
    """Expand files, folders (their image and video files, not recursive) and globs into a sorted list.

    Returns ``(files, problems, excluded, passed_over)``: a problem is ``(input, message)`` for an
    input that matched nothing or is not a regular file. Files found through a folder or a glob
    that are our own outputs are left out (``excluded``): anywhere, those that record the input
    they were made from (:func:`read_tag`), whatever their name (an earlier run's other
    ``suffix``); in ``exclude_dir`` (the output folder) also those whose names look like our
    outputs. Files named explicitly are always taken. ``passed_over`` lists the files in the
    folders that are neither images nor clips the readers take (:data:`INPUT_SUFFIXES`). Recursive
    globs (``**``) never follow links to folders, so link loops cannot hang it, and every file is
    taken once however many paths lead to it.
    """
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    excluded: list[Path] = []
    passed: list[Path] = []
    for raw in inputs:
        text = os.fspath(raw)
        p = Path(text).expanduser()
        kind = _kind(p)
        if kind == "dir":
            found.extend(_folder_images(p, exclude_dir, suffix, excluded, passed))
        elif kind == "file":
            found.append(p)
        elif kind == "other":
            problems.append((text, "not a regular file (a FIFO, socket or device); save the image to a "
                                   "file first"))
        elif glob.has_magic(text):
            files: list[Path] = []
            for hit in _glob(os.path.expanduser(text)):
                hk = _kind(hit)
                if hk == "file" and not hit.name.startswith("."):
                    if _is_output(hit, exclude_dir, suffix):
                        excluded.append(hit)
                    else:
                        files.append(hit)
                elif hk == "dir":
                    files.extend(_folder_images(hit, exclude_dir, suffix, excluded, passed))
            if not files and not excluded:
                problems.append((text, "no files match this pattern"))
            found.extend(files)
        else:
            problems.append((text, "no such file or folder"))
    unique: dict[Path, Path] = {}
    for f in found:
        unique.setdefault(f.resolve(), f)
    taken = set(unique)
    passed = [f for f in passed if f.resolve() not in taken]
    return (sorted(unique.values(), key=lambda q: str(q)), problems, sorted(set(excluded), key=str),
            sorted(set(passed), key=str))


def _kind(p: Path) -> str:
    """'file', 'dir', 'other' (FIFO, socket, device: never opened) or 'missing'."""
    try:
        mode = p.stat().st_mode
    except (OSError, ValueError):
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "other"


def _glob(pattern: str) -> Iterator[Path]:
    """Like ``glob.glob(pattern, recursive=True)``, but ``**`` does not descend through links
    to folders (two link loops made the standard one run for hours), and hidden names are only
    matched by patterns that start with a dot."""
    parts = Path(pattern).parts
    i = 0
    while i < len(parts) and not glob.has_magic(parts[i]):
        i += 1
    base = Path(*parts[:i]) if i else Path(".")
    yield from _walk(base, list(parts[i:]), bool(i))


def _walk(base: Path, comps: list[str], anchored: bool) -> Iterator[Path]:
    def entries() -> list[os.DirEntry]:
        try:
            return sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            return []

    def child(name: str) -> Path:
        return base / name if anchored else Path(name)

    if not comps:
        yield base
        return
    c, rest = comps[0], comps[1:]
    if c == "**":
        yield from _walk(base, rest, anchored)
        for e in entries():
            if not e.name.startswith(".") and e.is_dir(follow_symlinks=False):
                yield from _walk(child(e.name), comps, True)
        return
    if not glob.has_magic(c):
        nxt = child(c)
        if rest:
            if nxt.is_dir():
                yield from _walk(nxt, rest, True)
        elif os.path.lexists(nxt):
            yield nxt
        return
    for e in entries():
        if e.name.startswith(".") and not c.startswith("."):
            continue
        if fnmatch.fnmatch(e.name, c):
            if rest:
                if e.is_dir():
                    yield from _walk(child(e.name), rest, True)
            else:
                yield child(e.name)


def looks_like_output(f: Path, exclude_dir: Path | None, suffix: str) -> bool:
    """In the output folder, a name like ``<stem>_transmission.*`` or ``<stem><suffix>.*``."""
    if exclude_dir is None:
        return False
    try:
        if f.parent.resolve() != exclude_dir.resolve():
            return False
    except OSError:
        return False
    return f.stem.endswith(TRANSMISSION) or bool(suffix and f.stem.endswith(suffix))


def _is_output(f: Path, exclude_dir: Path | None, suffix: str) -> bool:
    """One of our outputs: it records the input it was made from (any name, any folder), or it is
    named like one in the output folder (BMP and older outputs record nothing)."""
    return looks_like_output(f, exclude_dir, suffix) or read_tag(f) is not None


def _folder_images(folder: Path, exclude_dir: Path | None, suffix: str, excluded: list[Path],
                   passed: list[Path]) -> list[Path]:
    out: list[Path] = []
    try:
        listing = sorted(folder.iterdir())
    except OSError:
        return out
    for f in listing:
        if f.name.startswith(".") or _kind(f) != "file":
            continue
        if f.suffix.lower() not in INPUT_SUFFIXES:
            if not (f.name.endswith("_airlight.json") and read_tag(f) is not None):  # ours: no news
                passed.append(f)
            continue
        if _is_output(f, exclude_dir, suffix):
            excluded.append(f)
            continue
        out.append(f)
    return out
