"""Dehaze many image files into an output folder: the engine behind ``clearnet dehaze``.

Plain scripts can call :func:`dehaze_files` directly. The rules protect user data:

* an existing output is never replaced unless asked (``overwrite``), and every file is written
  atomically (a temporary ``.part`` name, then a rename); partial files that a killed run left
  behind are removed by the next run;
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
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import files, io
from ._validate import check_number, check_sky_protection, check_strength, json_text, option
from .arrays import check_value_range, describe_layout
from .batch_plan import (
    SIXTEEN_BIT_SUFFIXES,
    BatchError,
    Planned,
    check_output_folder,
    collect_inputs,
    plan_outputs,
)
from .choices import BIT_DEPTHS, FORMATS, METHODS
from .devices import pick_device
from .engine import Dehazer, load_model

__all__ = [
    "BIT_DEPTHS",
    "FORMATS",
    "BatchError",
    "BatchOptions",
    "BatchReport",
    "OutputFolderError",
    "collect_inputs",
    "dehaze_files",
    "plan_outputs",
]

#: errno values that mean "this folder cannot take files", not "this input is bad"
_FOLDER_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", -1)}


class OutputFolderError(OSError):
    """The output folder stopped taking files (full disk, read-only, no permission)."""


def _one_of(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BatchError(f"{option(name)} must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class BatchOptions:
    """What to do with every file; mirrors the ``clearnet dehaze`` options. Errors name the
    Python arguments, or the command-line flags inside :func:`cli_spelling` (as the CLI does)."""

    method: str = "clearnet"
    model: str | os.PathLike | None = None
    device: str = "auto"
    suffix: str = "_dehazed"
    format: str = "same"
    bit_depth: str = "same"
    overwrite: bool = False
    skip_existing: bool = False
    save_transmission: bool = False
    save_airlight: bool = False
    #: None: the method's default (engine.DEFAULT_SKY_PROTECTION)
    sky_protection: float | None = None
    #: JPEG/WebP quality 1-100 (None: JPEG 95, WebP lossless)
    quality: int | None = None
    #: how to read each image's array (see :func:`arrays.describe_layout`)
    channel_axis: int | str | None = "auto"
    #: (low, high) pixel values that map to black and white (None: decided per image)
    value_range: tuple[float, float] | None = None
    strength: float = 1.0

    def __post_init__(self) -> None:
        _one_of("method", self.method, METHODS)
        try:
            if self.sky_protection is not None:
                check_sky_protection(self.sky_protection)
            pick_device(self.device)
            if self.quality is not None:
                self.quality = check_number(self.quality, option("quality"), "[1, 100]", integer=True)
            if self.value_range is not None:
                self.value_range = check_value_range(self.value_range)
            check_strength(self.strength)
        except ValueError as exc:
            raise BatchError(str(exc)) from None
        ca = self.channel_axis
        if not (ca is None or ca == "auto" or (isinstance(ca, int) and not isinstance(ca, bool))):
            raise BatchError(f"{option('channel_axis')} must be an axis number, None or 'auto', got {ca!r}")
        _one_of("format", self.format, FORMATS)
        self.bit_depth = str(self.bit_depth)
        _one_of("bit_depth", self.bit_depth, BIT_DEPTHS)
        if self.bit_depth == "16" and self.format == "jpg":
            raise BatchError(f"{option('bit_depth', '16')} needs {option('format')} png, tif or same (JPEG "
                             "is 8-bit only)")
        if os.sep in self.suffix or "/" in self.suffix or "\0" in self.suffix:
            raise BatchError(f"{option('suffix')} must not contain a path separator, got {self.suffix!r}")


@dataclass
class BatchReport:
    """What happened to every input; :attr:`exit_code` is what the CLI returns."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    fatal: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if (self.failed or self.existing or self.fatal) else 0


# ---------------------------------------------------------------------------------- one file
def _bit_depth(source: np.ndarray, out_path: Path, opts: BatchOptions) -> int:
    if opts.bit_depth == "16":
        return 16 if out_path.suffix.lower() in SIXTEEN_BIT_SUFFIXES else 8
    if opts.bit_depth == "8":
        return 8
    wide = source.dtype.itemsize > 1 and source.dtype != bool
    return 16 if wide and out_path.suffix.lower() in SIXTEEN_BIT_SUFFIXES else 8


def process_file(dehazer: Dehazer, plan: Planned, opts: BatchOptions) -> list[Path]:
    """Read, dehaze and write one input; returns the files written (existing ones are kept)."""
    src = io.load_image(plan.source)
    arr = src.array
    layout = describe_layout(arr.shape, opts.channel_axis)
    tif_out = plan.image.suffix.lower() in (".tif", ".tiff")
    if layout.n_frames > 1 and not tif_out:
        raise ValueError(
            f"{layout.n_frames} frames (shape {arr.shape}); a stack is written as one TIFF: add "
            f"{option('format', 'tif')}"
        )
    result = dehazer.dehaze(arr, channel_axis=layout.channel_axis, value_range=opts.value_range,
                            sky_protection=opts.sky_protection, strength=opts.strength)
    image = result.image
    if layout.channel_axis is not None and layout.channel_axis != arr.ndim - 1:
        image = np.moveaxis(image, layout.channel_axis, -1)  # files hold channels last
    if layout.channels == 4 and plan.image.suffix.lower() in (".jpg", ".jpeg"):
        image = image[..., :3]  # JPEG has no alpha channel
    depth = _bit_depth(arr, plan.image, opts)
    fp = files.fingerprint(plan.source)
    keep = opts.skip_existing and not opts.overwrite
    written: list[Path] = []

    def wanted(p: Path) -> bool:
        return opts.overwrite or not (keep and p.exists())

    with _folder_errors(plan.image.parent):
        if plan.transmission is not None:
            t = result.transmission.reshape(-1, layout.height, layout.width)
            t = t[0] if layout.n_frames == 1 else t
            if wanted(plan.transmission):
                written.append(io.write_image(plan.transmission, t, bit_depth=16, overwrite=opts.overwrite,
                                              source_fingerprint=fp))
        if plan.airlight is not None and wanted(plan.airlight):
            data = {
                "source": str(plan.source),
                "source_fingerprint": fp,
                "output": str(plan.image),
                "airlight": np.asarray(result.airlight, dtype=float).round(6).tolist(),
                "provenance": result.provenance,
            }
            files.write_text(plan.airlight, json_text(data, indent=2, ensure_ascii=False) + "\n",
                             overwrite=opts.overwrite)
            written.append(plan.airlight)
        if wanted(plan.image):
            written.append(io.write_image(
                plan.image, image, bit_depth=depth, overwrite=opts.overwrite, quality=opts.quality,
                icc_profile=src.icc_profile, source_fingerprint=fp,
            ))
    return written


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
    tag = files.read_tag(path)
    return tag is not None and tag != fingerprint


# ---------------------------------------------------------------------------------- the batch
def dehaze_files(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    options: BatchOptions | None = None,
    *,
    dehazer: Dehazer | None = None,
    progress: bool | None = None,
    stderr: TextIO | None = None,
    **kwargs: Any,
) -> BatchReport:
    """Dehaze every input into ``out_dir``; problems are printed to ``stderr`` and collected.

    ``options`` (or keyword arguments of :class:`BatchOptions`) say how; ``dehazer`` reuses a
    loaded model (otherwise weights load once here). ``progress=None`` shows a tqdm bar only
    on a terminal. Raises :class:`BatchError` when nothing can start; ``KeyboardInterrupt``
    passes through after finished files are complete and no ``.part`` file is left.
    """
    opts = options or BatchOptions(**kwargs)
    err = stderr or sys.stderr
    out = Path(out_dir).expanduser()
    found, problems, excluded = collect_inputs(inputs, out, opts.suffix)
    report = BatchReport()
    for name, msg in problems:
        report.failed.append((name, msg))
        print(f"error: {name}: {msg}", file=err)
    foreign = [f for f in excluded if files.read_tag(f) is None]
    if foreign:
        shown = ", ".join(str(f) for f in foreign[:5])
        shown += f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        print(f"note: not taken as inputs, as their names look like outputs in the output folder "
              f"(name them explicitly to dehaze them): {shown}", file=err)
    if not found:
        first = f" ({problems[0][0]}: {problems[0][1]})" if problems else ""
        raise BatchError("no input images found" + first)
    check_output_folder(out)
    stale = files.remove_stale_parts(out)
    if stale:
        print(f"note: removed {len(stale)} partial file(s) an interrupted run left in {out}: "
              + ", ".join(p.name for p in stale[:3]) + (" …" if len(stale) > 3 else ""), file=err)
    plans, notes = plan_outputs(found, out, opts)
    for n in notes:
        print(f"note: {n}", file=err)
    if dehazer is None:
        try:
            dehazer = load_model(opts.model, method=opts.method, device=opts.device)
        except (ValueError, OSError) as exc:  # WeightsError is a ValueError
            raise BatchError(f"cannot load the model: {exc}") from None
    from tqdm.auto import tqdm

    bar = tqdm(plans, desc="dehazing", unit="image", file=err, disable=(not _isatty(err)) if progress is None
               else not progress)

    def say(msg: str) -> None:
        bar.write(msg, file=err)

    def fail(plan: Planned, msg: str) -> None:
        msg = msg.replace(f"cannot read {plan.source}: ", "")
        report.failed.append((str(plan.source), msg))
        say(f"error: {plan.source}: {msg}")

    try:
        for plan in bar:
            if plan.error:
                fail(plan, plan.error)
                continue
            try:
                if _already_there(plan, opts, report, say):
                    continue
                report.written.extend(process_file(dehazer, plan, opts))
            except OutputFolderError as exc:
                report.fatal = str(exc.strerror)
                say(f"error: {exc.strerror}")
                break
            except (ValueError, OSError, RuntimeError) as exc:
                fail(plan, str(exc))
            except MemoryError:
                fail(plan, "not enough memory to process it")
            except Exception as exc:  # an unexpected error in one file never stops the batch
                fail(plan, f"unexpected {type(exc).__name__}: {exc} (please report this)")
    except KeyboardInterrupt as exc:
        bar.close()
        why = getattr(exc, "reason", "interrupted")
        print(
            f"{why}: {len(report.written)} files written to {out}; rerun with "
            f"{option('skip_existing')} to carry on", file=err,
        )
        raise
    bar.close()
    return report


def _already_there(plan: Planned, opts: BatchOptions, report: BatchReport, say: Any) -> bool:
    """Decide about outputs that exist: True when this input is done (skipped or reported)."""
    present = [p for p in plan.outputs() if p.exists()]
    if not present or opts.overwrite:
        return False
    fp = files.fingerprint(plan.source)
    other = [p for p in present if _made_from_other(p, fp)]
    if other:
        report.existing.append(plan.source)
        say(f"exists: {other[-1]} was made from another input, not from {plan.source}; not replaced, "
            f"pass {option('overwrite')} to replace it or choose another {option('out_dir')} folder")
        return True
    if opts.skip_existing:
        if len(present) == len(plan.outputs()):
            report.skipped.append(plan.source)
            return True
        return False  # finish the missing ones
    report.existing.append(plan.source)
    say(f"exists: {present[-1]} (from {plan.source}); not replaced, "
        f"pass {option('overwrite')} to replace or {option('skip_existing')} to carry on")
    return True


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
