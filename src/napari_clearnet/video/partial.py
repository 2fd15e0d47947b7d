"""The files of a clip's partial output: the clip written under a fixed name, and its journal.

A clip is written under a fixed partial name beside its output, ``.<name>.partial<ext>``, with
a journal ``.<name>.partial.json``: a header (:func:`header`: the input's fingerprint, every
setting that changes the pixels or the encoding) and a line at every keyframe the dehazing
passes (every :func:`keyframe_interval` frames) with the airlight of the frames since the one
before and temporal smoothing's state there. :func:`outputs` holds them through one run: a
complete run renames the clip to its output, Ctrl-C, SIGTERM and SIGHUP keep it (closed
properly, its index written) with its journal once it passed a keyframe (AVI clips are not
kept), and a kill leaves what reached the disk. :mod:`.resume` decides whether a rerun
carries it on; :func:`remove_useless` removes what holds nothing to carry on from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._util import files

__all__ = ["KEYFRAME_SECONDS", "PARTIAL_PATTERN", "RESUMABLE", "Checkpoint", "Journal", "Partial", "Run",
           "header", "keyframe_interval", "outputs", "read_journal", "remove_useless"]

#: seconds between the keyframes an interrupted clip carries on from (rounded up to whole batches)
KEYFRAME_SECONDS = 5.0
#: the journal's layout
VERSION = 1
#: containers whose partial clips are kept and carried on (AVI has no timestamps of its own)
RESUMABLE = (".mp4", ".m4v", ".mov", ".mkv")
#: the names of partial clips (and of the partial clips a carrying-on run copies from) and journals
PARTIAL_PATTERN = re.compile(r"^\..+\.partial(-base)?\.[A-Za-z0-9]{1,5}$")
_NAME = re.compile(r"^\.(.+)\.partial(-base)?(\.[A-Za-z0-9]{1,5})$")


def keyframe_interval(rate: Any, batch: int) -> int:
    """Frames between keyframes: about :data:`KEYFRAME_SECONDS` at ``rate``, a multiple of the
    engine's ``batch`` (so a run carried on there has the batches an uninterrupted run has)."""
    try:
        frames = math.ceil(float(rate) * KEYFRAME_SECONDS)
    except (TypeError, ValueError, OverflowError):  # no rate: every 125 frames (5 s at 25 fps)
        frames = 125
    frames = frames if frames > 0 else 125
    return -(-frames // batch) * batch


@dataclass(frozen=True)
class Partial:
    """The files of one output's partial clip: the clip, the one a carrying-on run copies from
    (``base``, gone when the run ends unless killed) and the journal."""

    target: Path
    path: Path
    base: Path
    journal: Path

    @classmethod
    def of(cls, target: str | os.PathLike) -> Partial:
        t = Path(target)
        stem = files.short_stem(t.stem, 200)
        return cls(t, t.with_name(f".{stem}.partial{t.suffix}"),
                   t.with_name(f".{stem}.partial-base{t.suffix}"), t.with_name(f".{stem}.partial.json"))

    def present(self) -> list[Path]:
        return [p for p in (self.path, self.base, self.journal) if p.exists()]

    def discard(self) -> None:
        for p in (self.path, self.base, self.journal):
            p.unlink(missing_ok=True)


@dataclass
class Checkpoint:
    """Keyframe ``frame``: the airlight of the frames since the checkpoint before it, and temporal
    smoothing's state after frame ``frame - 1``."""

    frame: int
    airlight: list[list[float]]
    carry: list[float] | None
    scale: float | None

    def line(self) -> str:
        return json.dumps({"frame": self.frame, "airlight": self.airlight, "carry": self.carry,
                           "scale": self.scale}) + "\n"


class Journal:
    """The journal of a partial clip being written: ``header`` and ``checkpoints`` are written
    at once (replacing an older journal), and :meth:`frame` appends a line per keyframe."""

    def __init__(self, path: Path, header: dict[str, Any], checkpoints: Iterable[Checkpoint] = ()) -> None:
        self.path = path
        self.checkpoints = list(checkpoints)
        files.write_text(path, json.dumps(header) + "\n" + "".join(c.line() for c in self.checkpoints))
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115  # closed by close()
        self._since: list[list[float]] = []

    def frame(self, i: int, airlight: np.ndarray, scale: float | None, every: int) -> None:
        """Frame ``i`` was dehazed; after the frame before a keyframe, a checkpoint is written."""
        self._since.append([float(v) for v in airlight])
        if (i + 1) % every == 0:
            cp = Checkpoint(i + 1, self._since, [float(v) for v in airlight],
                            None if scale is None else float(scale))
            self._file.write(cp.line())
            self._file.flush()
            self.checkpoints.append(cp)
            self._since = []

    @property
    def last(self) -> int:
        return self.checkpoints[-1].frame if self.checkpoints else 0

    def close(self) -> None:
        self._file.close()


def read_journal(path: Path) -> tuple[dict[str, Any], list[Checkpoint]]:
    """A journal's header and its checkpoints, up to the first line a kill cut or that does not
    follow from the ones before it. Raises ``ValueError`` when the header cannot be read."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = json.loads(lines[0]) if lines else None
    if not isinstance(header, dict) or header.get("clearnet_partial") != VERSION:
        raise ValueError("its journal cannot be read")
    found: list[Checkpoint] = []
    done = 0
    for line in lines[1:]:
        try:
            d = json.loads(line)
            cp = Checkpoint(int(d["frame"]), [[float(v) for v in a] for a in d["airlight"]],
                            None if d["carry"] is None else [float(v) for v in d["carry"]],
                            None if d["scale"] is None else float(d["scale"]))
        except (ValueError, KeyError, TypeError):
            break
        if cp.frame != done + len(cp.airlight) or cp.frame <= done or any(len(a) != 3 for a in cp.airlight):
            break
        found.append(cp)
        done = cp.frame
    return header, found


def header(target: Path, source_fingerprint: str, dehazer: Any, opts: Any, **settings: Any) -> dict[str, Any]:
    """What a partial clip of ``target`` records about how it is made: the input's fingerprint,
    the method and its weights, every run option that changes the pixels, and ``settings`` (the
    output's size, encoding, keyframes); a rerun carries it on only when all are the same."""
    import av

    from .._version import __version__

    made = dehazer.provenance()
    # what does not change a clip's pixels: which outputs there are is checked output by output
    skip = ("channel_axis", "with_raw", "with_sources", "with_transmission")
    options = {k: v for k, v in dataclasses.asdict(opts).items() if k not in skip}
    options["sky_protection"] = dehazer.resolve_sky(opts.sky_protection)
    return {"clearnet_partial": VERSION, "output": target.name, "source_fingerprint": source_fingerprint,
            "settings": {**settings, "options": options, "napari_clearnet": __version__, "av": av.__version__,
                         **{k: made.get(k) for k in ("method", "model", "sha256", "precision")}}}


@dataclass
class Run:
    """The outputs of one run: the partial file each is written to (by role), their journals, and
    the roles whose copied frames are all in their new partial clip (:meth:`copied`)."""

    paths: dict[str, str] = field(default_factory=dict)
    journals: dict[str, Journal] = field(default_factory=dict)
    done_copying: set[str] = field(default_factory=set)

    def frame(self, i: int, result: Any, every: int) -> None:
        for j in self.journals.values():
            j.frame(i, result.airlight, result.scale, every)

    def copied(self, role: str) -> None:
        self.done_copying.add(role)


@contextlib.contextmanager
def outputs(partials: dict[str, Partial], headers: dict[str, dict[str, Any]],
            checkpoints: list[Checkpoint], *, overwrite: bool,
            sources: Iterable[str | os.PathLike]) -> Iterator[Run]:
    """The partial files of a clip's outputs for one run (:func:`files.kept_path`, with a journal
    each). A complete run renames them to their outputs and removes the rest; Ctrl-C and
    terminating signals keep every partial clip that passed a keyframe (named on the exception's
    ``partial_clips``); any other error leaves the partial files as the run found them."""
    run = Run()
    try:
        with contextlib.ExitStack() as stack:
            for role, p in partials.items():
                run.paths[role] = stack.enter_context(files.kept_path(p.target, p.path, overwrite, sources))
                run.journals[role] = Journal(p.journal, headers[role], checkpoints)
                stack.callback(run.journals[role].close)
            yield run
    except KeyboardInterrupt as exc:
        kept = []
        for role, p in partials.items():
            if role in run.done_copying or not p.base.exists():
                p.base.unlink(missing_ok=True)  # the new partial clip holds what it held
            else:
                p.path.unlink(missing_ok=True)  # stopped while copying: the one before stays
            journal = run.journals.get(role)
            if journal is None or journal.last == 0 or p.target.suffix.lower() not in RESUMABLE:
                p.discard()  # not one keyframe passed (or an AVI): nothing to carry on from
            else:
                kept.append(p)
        exc.partial_clips = kept  # type: ignore[attr-defined]
        raise
    except BaseException:
        for p in partials.values():
            p.path.unlink(missing_ok=True)
            if p.base.exists():
                os.replace(p.base, p.path)
            else:
                p.journal.unlink(missing_ok=True)
        raise
    for p in partials.values():
        p.base.unlink(missing_ok=True)
        p.journal.unlink(missing_ok=True)


def remove_useless(folder: str | os.PathLike) -> list[Path]:
    """Remove the partial clips in ``folder`` that hold nothing to carry on from (their journal
    has no keyframe, or is missing) and that no run is writing: what a run killed before its first
    keyframe leaves (a kill, a stopped cluster worker). Returns the files removed."""
    removed: list[Path] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return removed
    seen: set[Path] = set()
    for name in names:
        found = _NAME.match(name)
        if not found or not PARTIAL_PATTERN.match(name):
            continue
        stem, ext = found.group(1), found.group(3)
        if ext.lower() == ".json":  # a journal: its header names the clip it belongs to
            try:
                first = Path(folder, name).read_text("utf-8").splitlines()[0]
                target = Path(folder, Path(str(json.loads(first)["output"])).name)
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                target = Path(folder, stem)
        else:
            target = Path(folder, stem + ext)
        p = Partial.of(target)
        if name not in (p.path.name, p.base.name, p.journal.name):
            continue  # a name cut short (a long one) or a journal of something else: left alone
        if p.journal in seen or files.held(p.path) or files.held(p.base):
            continue
        seen.add(p.journal)
        try:
            _, checkpoints = read_journal(p.journal)
        except (OSError, ValueError):
            checkpoints = []
        if not checkpoints or not (p.path.exists() or p.base.exists()):
            removed += p.present()
            p.discard()
    return removed
