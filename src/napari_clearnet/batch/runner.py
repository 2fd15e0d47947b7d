"""Dehaze many image files into an output folder: the engine behind ``clearnet dehaze``.

Plain scripts can call :func:`dehaze_files` directly. The rules protect user data:

* an existing output is never replaced unless asked (``overwrite``), and every file is written
  atomically (a temporary ``.part`` name, then a rename); partial files that a killed run left
  behind are removed by the next run, except a clip's partial clip, which an interrupted run
  keeps and ``skip_existing`` carries on from its last complete keyframe (:mod:`..video.resume`);
* the outputs are planned as one set before any work: every output name (image, transmission,
  airlight) is checked against every other output and every input, names that would collide are
  made unique from each input's own path (so adding inputs does not move the others' names), and
  every output records a fingerprint of its input, so ``skip_existing`` never takes another
  input's output for this one's;
* one bad input (unreadable, too large, a name the file system cannot hold, an unexpected error)
  is reported by name and the others are still processed.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .._util import files
from .._util.validate import json_text, option
from ..choices import BIT_DEPTHS, FORMATS
from ..core.arrays import channels_last, describe_layout, pixel_range, to_float01
from ..core.engine import Dehazer
from ..errors import OutputFolderError
from ..io import images as io
from ..io.load import load_image
from ..video.partial import Partial, remove_useless
from ..video.reader import is_video
from ..video.writer import Encoding
from .inputs import read_tag
from .options import BatchOptions
from .plan import (
    SIXTEEN_BIT_SUFFIXES,
    BatchError,
    Planned,
    check_output_folder,
    collect_inputs,
    looks_like_output,
    plan_outputs,
)

__all__ = [
    "BIT_DEPTHS",
    "FORMATS",
    "BatchError",
    "BatchOptions",
    "BatchReport",
    "Outcome",
    "OutputFolderError",
    "attempt",
    "collect_inputs",
    "plan_outputs",
]

#: errno values that mean "this folder cannot take files", not "this input is bad"
_FOLDER_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", -1)}


@dataclass
class BatchReport:
    """What happened to every input; :attr:`exit_code` is what the CLI returns."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    fatal: str | None = None
    #: every planned output's state before the run (see :meth:`files_made`)
    before: dict[Path, tuple[int, int, int] | None] = field(default_factory=dict, repr=False)

    @property
    def exit_code(self) -> int:
        return 1 if (self.failed or self.existing or self.fatal) else 0

    def record_outputs(self, plans: Iterable[Planned]) -> None:
        """Note the state of every planned output, so :meth:`files_made` can count files however a
        run ends (an input half done, tasks on a cluster whose outcomes never came back)."""
        self.before = {p: _stamp(p) for plan in plans for p in plan.outputs()}

    def files_made(self) -> list[Path]:
        """The planned outputs written (or replaced) since :meth:`record_outputs`: what a stopped
        run counts, file by file, not input by input."""
        return [p for p, was in self.before.items() if (now := _stamp(p)) is not None and now != was]

    def summary(self, out: str | os.PathLike) -> str:
        """The closing line: files written, inputs skipped, failed and not replaced."""
        return (f"{count(len(self.written), 'file')} written to {out}"
                + (f", {count(len(self.skipped), 'input')} skipped (outputs exist)" if self.skipped else "")
                + (f", {count(len(self.failed), 'input')} failed" if self.failed else "")
                + (f", {len(self.existing)} not replaced (outputs exist)" if self.existing else ""))

    def add(self, plan: Planned, outcome: Outcome, say: Callable[[str], None]) -> None:
        """Record what happened to one input and say what the user must know."""
        for note in outcome.notes:
            say(f"note: {plan.source}: {note}")
        if outcome.kind == "written":
            self.written.extend(outcome.written)
        elif outcome.kind == "skipped":
            self.skipped.append(plan.source)
        elif outcome.kind == "existing":
            self.existing.append(plan.source)
            say(outcome.message)
        elif outcome.kind == "fatal":
            self.fatal = outcome.message
            say(f"error: {outcome.message}")
        else:
            msg = outcome.message.replace(f"cannot read {plan.source}: ", "").replace(
                f"cannot dehaze {plan.source}: ", "")
            self.failed.append((str(plan.source), msg))
            say(f"error: {plan.source}: {msg}")


def count(n: int, noun: str) -> str:
    """``1 file``, ``2 files``: counts as a person writes them."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@dataclass
class Outcome:
    """What became of one input: ``kind`` is written, skipped, existing (not replaced), failed or
    fatal (the output folder takes no more files); plain data, so a cluster worker can return it."""

    kind: str
    written: list[Path] = field(default_factory=list)
    message: str = ""
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------- one file
def _bit_depth(source: np.ndarray, out_path: Path, opts: BatchOptions) -> int:
    if opts.bit_depth == "16":
        return 16 if out_path.suffix.lower() in SIXTEEN_BIT_SUFFIXES else 8
    if opts.bit_depth == "8":
        return 8
    wide = source.dtype.itemsize > 1 and source.dtype != bool
    return 16 if wide and out_path.suffix.lower() in SIXTEEN_BIT_SUFFIXES else 8


#: makes a frame progress bar: (description, total frames) -> a callable taking (done, total)
BarFactory = Callable[[str, int], Any]


def process_file(dehazer: Dehazer, plan: Planned, opts: BatchOptions) -> list[Path]:
    """Read, dehaze and write one image file; returns the files written (existing ones are kept)."""
    src = load_image(plan.source)
    arr = src.array
    layout = describe_layout(arr.shape, opts.channel_axis)
    tif_out = plan.image.suffix.lower() in (".tif", ".tiff")
    if layout.n_frames > 1 and not tif_out:
        raise ValueError(
            f"{layout.n_frames} frames (shape {arr.shape}); a stack is written as one TIFF: add "
            f"{option('format', 'tif')}"
        )
    depth = _bit_depth(arr, plan.image, opts)
    # an 8-bit photo written as 8 bits takes the 8-bit path: the same pixels, a fraction of the time
    eight = (arr.dtype == np.uint8 and depth == 8 and not opts.side_by_side
             and opts.value_range in (None, (0.0, 255.0)))
    result = dehazer.dehaze(arr, opts.dehaze_options(clip=False).replace(
        channel_axis=layout.channel_axis, output_dtype="uint8" if eight else "float32",
        with_transmission=plan.transmission is not None))  # t only where it is written
    image = result.image
    if layout.channel_axis is not None and layout.channel_axis != arr.ndim - 1:
        image = np.moveaxis(image, layout.channel_axis, -1)  # files hold channels last
    if opts.side_by_side:
        hazy = to_float01(channels_last(arr, layout), pixel_range(arr, layout, opts.value_range))
        image = np.concatenate([hazy, image], axis=-2 if layout.channels else -1)
    if layout.channels == 4 and plan.image.suffix.lower() in (".jpg", ".jpeg"):
        image = image[..., :3]  # JPEG has no alpha channel
    fp = files.fingerprint(plan.source)
    result.provenance["source_sha256"] = files.sha256_file(plan.source)  # names the input exactly
    written: list[Path] = []
    wanted = _wanted(opts)
    with _folder_errors(plan.image.parent):
        if plan.transmission is not None:
            t = result.transmission.reshape(-1, layout.height, layout.width)
            t = t[0] if layout.n_frames == 1 else t
            if wanted(plan.transmission):
                written.append(io.write_image(plan.transmission, t, bit_depth=16, overwrite=opts.overwrite,
                                              source_fingerprint=fp, source=plan.source))
        if plan.airlight is not None and wanted(plan.airlight):
            written.append(_write_airlight(plan, fp, result, opts))
        if wanted(plan.image):
            written.append(io.write_image(
                plan.image, image, bit_depth=depth, overwrite=opts.overwrite, quality=opts.quality,
                icc_profile=src.icc_profile, source_fingerprint=fp, source=plan.source,
                exif=src.exif, xmp=src.xmp, provenance=result.provenance,
                value_range=_output_range(opts.value_range, depth, arr.dtype),
            ))
    return written


def _output_range(value_range: tuple[float, float] | None, bit_depth: int,
                  dtype: np.dtype) -> tuple[int, int] | None:
    """``--value-range`` as the output's own range, for integer data written at its own bit depth
    (12-bit data in 0-4095 comes back as 0-4095, not stretched to 0-65535); None: the full range
    (float data, another bit depth, or a range that does not fit the integers)."""
    if value_range is None or np.dtype(dtype).kind != "u" or np.dtype(dtype).itemsize * 8 != bit_depth:
        return None
    lo, hi = value_range
    top = 65535 if bit_depth == 16 else 255
    if lo != int(lo) or hi != int(hi) or not 0 <= lo < hi <= top:
        return None
    return int(lo), int(hi)


def _wanted(opts: BatchOptions) -> Callable[[Path], bool]:
    """Whether an output is to be written: not one that exists when resuming (``skip_existing``)."""
    keep = opts.skip_existing and not opts.overwrite
    return lambda p: opts.overwrite or not (keep and p.exists())


def _write_airlight(plan: Planned, fp: str, result: Any, opts: BatchOptions) -> Path:
    data = {
        "source": str(plan.source),
        "source_fingerprint": fp,
        "output": str(plan.image),
        "airlight": np.asarray(result.airlight, dtype=float).round(6).tolist(),
        "provenance": result.provenance,
    }
    assert plan.airlight is not None
    return files.write_text(plan.airlight, json_text(data, indent=2, ensure_ascii=False) + "\n",
                            overwrite=opts.overwrite, sources=(plan.source,))


def process_clip(dehazer: Dehazer, plan: Planned, opts: BatchOptions, bars: BarFactory | None,
                 notes: list[str]) -> list[Path]:
    """One clip, streamed into a clip (and a grey transmission clip): frames never pile up.
    ``bars`` makes a progress bar for its frames; ``notes`` collects what the user should know."""
    from ..video.writer import dehaze_video

    fp = files.fingerprint(plan.source)
    wanted = _wanted(opts)
    image = plan.image if wanted(plan.image) else None
    trans = plan.transmission if plan.transmission is not None and wanted(plan.transmission) else None
    written: list[Path] = []
    with _folder_errors(plan.image.parent):
        bar = None if bars is None else bars(plan.source.name, 0)
        result = dehaze_video(
            plan.source, image, model=dehazer, overwrite=opts.overwrite,
            options=opts.dehaze_options(clip=True),
            side_by_side=opts.side_by_side, encoding=Encoding(opts.crf, opts.preset), transmission=trans,
            source_fingerprint=fp, progress=bar, damaged=opts.damaged_frames,
            resume=opts.skip_existing and not opts.overwrite,
        )
        notes.extend(result.provenance.get("notes", []))
        notes.extend(_image_only_options(opts))
        result.provenance["source_sha256"] = files.sha256_file(plan.source)
        written += [p for p in (trans, image) if p is not None]
        if plan.airlight is not None and wanted(plan.airlight):
            written.insert(0, _write_airlight(plan, fp, result, opts))
    return written


def _image_only_options(opts: BatchOptions) -> list[str]:
    """Options given that do not apply to clips (always 8-bit RGB H.264), named in a note."""
    unused = [flag for flag, given in ((option("bit_depth"), opts.bit_depth not in ("same", "8")),
                                       (option("quality"), opts.quality is not None),
                                       (option("value_range"), opts.value_range is not None),
                                       (option("channel_axis"), opts.channel_axis not in ("auto", None)))
              if given]
    if not unused:
        return []
    verb = "does" if len(unused) == 1 else "do"
    return [f"{', '.join(unused)} {verb} not apply to clips: they are read as "
            "8-bit RGB and written as 8-bit H.264 (--crf sets their quality)"]


@contextlib.contextmanager
def _folder_errors(folder: Path) -> Iterator[None]:
    """Turn "this folder takes no more files" OS errors into :class:`OutputFolderError`."""
    try:
        yield
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _FOLDER_ERRNOS:
            raise
        raise OutputFolderError(
            exc.errno, f"cannot write to output folder {folder}: {exc.strerror}; "
            f"free some space or choose another folder with {option('out_dir')}"
        ) from None


def _made_from_other(path: Path, fingerprint: str) -> bool:
    """True when an existing output records another input than the one with ``fingerprint``
    (outputs without a record, from older versions or BMP files, are taken at their name)."""
    tag = read_tag(path)
    return tag is not None and tag != fingerprint


# ---------------------------------------------------------------------------------- the batch
def attempt(dehazer: Dehazer, plan: Planned, opts: BatchOptions, bars: BarFactory | None = None) -> Outcome:
    """Everything about one input, as an :class:`Outcome`: its outputs' state, then the work. Any
    failure is this input's own (by name), except a folder that takes no more files (fatal);
    Ctrl-C and terminating signals pass through. The batch loop and cluster workers both call it."""
    if plan.error:
        return Outcome("failed", message=plan.error)
    notes: list[str] = []
    try:
        done = _already_there(plan, opts)
        if done is not None:
            return done
        if is_video(plan.source):
            return Outcome("written", process_clip(dehazer, plan, opts, bars, notes), notes=notes)
        return Outcome("written", process_file(dehazer, plan, opts), notes=notes)
    except OutputFolderError as exc:
        return Outcome("fatal", message=str(exc.strerror))
    except (ValueError, OSError, RuntimeError) as exc:
        return Outcome("failed", message=str(exc), notes=notes)
    except MemoryError:
        return Outcome("failed", message="not enough memory to process it")
    except Exception as exc:  # an unexpected error in one file never stops the batch
        return Outcome("failed", message=f"unexpected {type(exc).__name__}: {exc} (please report this)")


def prepare(inputs: Iterable[str | os.PathLike], out: Path, opts: BatchOptions, report: BatchReport,
            err: TextIO) -> list[Planned]:
    """Inputs found, output folder checked and cleared of stale partial files, outputs planned;
    problems go to ``report`` and notes to ``err``. Raises :class:`BatchError` when nothing can start."""
    found, problems, excluded, passed = collect_inputs(inputs, out, opts.suffix)
    for name, msg in problems:
        report.failed.append((name, msg))
        print(f"error: {name}: {msg}", file=err)
    by_name = [f for f in excluded if looks_like_output(f, out, opts.suffix)]
    ours = [f for f in excluded if f not in by_name]  # by their fingerprint only: another --suffix
    if ours:
        print(f"note: not taken as inputs, as they are outputs of napari-clearnet (they record the "
              f"input they were made from; name them explicitly to dehaze them again): {_listing(ours)}",
              file=err)
    foreign = [f for f in by_name if read_tag(f) is None]
    if foreign:
        print(f"note: not taken as inputs, as their names look like outputs in the output folder "
              f"(name them explicitly to dehaze them): {_listing(foreign)}", file=err)
    if passed:
        print(f"note: passed over, as they are not images or clips this reads (name a file explicitly "
              f"to try it): {_listing(passed)}", file=err)
    if not found:
        first = f" ({problems[0][0]}: {problems[0][1]})" if problems else ""
        raise BatchError("no input images or clips found" + first)
    check_output_folder(out)
    stale = files.remove_stale_parts(out) + remove_useless(out)
    if stale:
        print(f"note: removed {len(stale)} partial file(s) an interrupted run left in {out}: "
              + ", ".join(p.name for p in stale[:3]) + (" …" if len(stale) > 3 else ""), file=err)
    plans, notes = plan_outputs(found, out, opts)
    for n in notes:
        print(f"note: {n}", file=err)
    report.record_outputs(plans)
    return plans


def _listing(paths: list[Path], shown: int = 5) -> str:
    text = ", ".join(str(f) for f in paths[:shown])
    return text + (f" and {len(paths) - shown} more" if len(paths) > shown else "")



def interrupted(exc: BaseException, report: BatchReport, out: Path, err: TextIO) -> None:
    """What the user needs after Ctrl-C or a terminating signal: what is done and how to go on."""
    why = getattr(exc, "reason", "interrupted")
    made = report.files_made()
    kept = getattr(exc, "partial_clips", [])
    names = ", ".join(p.target.name for p in kept)
    partial = ""
    if kept:
        one = len(kept) == 1
        partial = (f" (the partial clip{'' if one else 's'} of {names} {'is' if one else 'are'} kept and "
                   f"carried on from {'its' if one else 'their'} last keyframe)")
    print(f"{why}: {count(len(made), 'file')} written to {out}; rerun with "
          f"{option('skip_existing')} to carry on{partial}", file=err)
    exc.reported = True  # type: ignore[attr-defined]  # the CLI says no more


def _already_there(plan: Planned, opts: BatchOptions) -> Outcome | None:
    """Decide about outputs that exist: an outcome when this input is done (skipped or reported)."""
    present = [p for p in plan.outputs() if p.exists()]
    if opts.overwrite:
        return None
    if is_video(plan.source) and not opts.skip_existing:
        partial = [q for p in plan.outputs() if not p.exists() for q in Partial.of(p).present()]
        if partial:
            return Outcome("existing", message=(
                f"exists: {partial[0]} is a partial clip an interrupted run left; not replaced, pass "
                f"{option('skip_existing')} to carry on from it or {option('overwrite')} to start over"))
    if not present:
        return None
    fp = files.fingerprint(plan.source)
    other = [p for p in present if _made_from_other(p, fp)]
    if other:
        return Outcome("existing", message=(
            f"exists: {other[-1]} was made from another input, not from {plan.source}; not replaced, "
            f"pass {option('overwrite')} to replace it or choose another {option('out_dir')} folder"))
    if opts.skip_existing:
        if len(present) == len(plan.outputs()):
            return Outcome("skipped")
        return None  # finish the missing ones
    return Outcome("existing", message=(
        f"exists: {present[-1]} (from {plan.source}); not replaced, "
        f"pass {option('overwrite')} to replace or {option('skip_existing')} to carry on"))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
