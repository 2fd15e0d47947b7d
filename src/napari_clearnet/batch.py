"""Dehaze many image files into an output folder: the engine behind ``clearnet dehaze``.

Plain scripts can call :func:`dehaze_files` directly. The rules protect user data: an existing
output is never replaced unless asked (``overwrite``), every file is written atomically (a
temporary ``.part`` name, then a rename), two inputs never write to the same output name, and
one bad input is reported by name without stopping the others.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import io
from .engine import METHODS, Dehazer, check_sky_protection, load_model

__all__ = [
    "FORMATS",
    "BatchError",
    "BatchOptions",
    "BatchReport",
    "OutputFolderError",
    "collect_inputs",
    "dehaze_files",
    "plan_outputs",
]

#: output formats; ``same`` keeps each input's own format
FORMATS = ("png", "jpg", "tif", "same")
BIT_DEPTHS = ("8", "16", "same")
_SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
#: errno values that mean "this folder cannot take files", not "this input is bad"
_FOLDER_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", -1)}


class BatchError(ValueError):
    """The batch cannot start: bad options, no inputs, unusable output folder or weights."""


class OutputFolderError(OSError):
    """The output folder stopped taking files (full disk, read-only, no permission)."""


@dataclass
class BatchOptions:
    """What to do with every file; mirrors the ``clearnet dehaze`` options."""

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
    sky_protection: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BatchError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        try:
            check_sky_protection(self.sky_protection, "--sky-protection")
        except ValueError as exc:
            raise BatchError(str(exc)) from None
        if self.format not in FORMATS:
            raise BatchError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        self.bit_depth = str(self.bit_depth)
        if self.bit_depth not in BIT_DEPTHS:
            raise BatchError(f"--bit-depth must be one of {', '.join(BIT_DEPTHS)}, got {self.bit_depth!r}")
        if self.bit_depth == "16" and self.format == "jpg":
            raise BatchError("--bit-depth 16 needs --format png, tif or same (JPEG is 8-bit only)")
        if os.sep in self.suffix or "/" in self.suffix:
            raise BatchError(f"--suffix must not contain a path separator, got {self.suffix!r}")


@dataclass
class Planned:
    """One input and the files it will produce."""

    source: Path
    image: Path
    transmission: Path | None = None
    airlight: Path | None = None

    def outputs(self) -> list[Path]:
        # the image is written last, so its presence means the whole set is complete
        return [p for p in (self.transmission, self.airlight, self.image) if p is not None]


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


# ---------------------------------------------------------------------------------- inputs
def collect_inputs(
    inputs: Iterable[str | os.PathLike], exclude_dir: Path | None = None, suffix: str = ""
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (their image files, not recursive) and globs into a sorted list.

    Returns ``(files, problems)``; a problem is ``(input, message)`` for an input that matched
    nothing. In ``exclude_dir`` (the output folder) files that look like our own outputs are left
    out, so a rerun into the input folder does not dehaze its own results.
    """
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for raw in inputs:
        text = os.fspath(raw)
        p = Path(text).expanduser()
        if p.is_dir():
            found.extend(_folder_images(p, exclude_dir, suffix))
        elif p.is_file():
            found.append(p)
        elif glob.has_magic(text):
            hits = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            files = [Path(h) for h in hits if Path(h).is_file() and not Path(h).name.startswith(".")]
            for d in (Path(h) for h in hits if Path(h).is_dir()):
                files.extend(_folder_images(d, exclude_dir, suffix))
            if not files:
                problems.append((text, "no files match this pattern"))
            found.extend(files)
        else:
            problems.append((text, "no such file or folder"))
    unique: dict[Path, Path] = {}
    for f in found:
        unique.setdefault(f.resolve(), f)
    return sorted(unique.values(), key=lambda q: str(q)), problems


def _folder_images(folder: Path, exclude_dir: Path | None, suffix: str) -> list[Path]:
    same = exclude_dir is not None and folder.resolve() == exclude_dir.resolve()
    out = []
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in io.IMAGE_SUFFIXES:
            continue
        if same and (f.stem.endswith("_transmission") or (suffix and f.stem.endswith(suffix))):
            continue
        out.append(f)
    return out


# ---------------------------------------------------------------------------------- outputs
def _out_suffix(src: Path, fmt: str) -> str:
    if fmt == "same":
        s = src.suffix.lower()
        return s if s in io.IMAGE_SUFFIXES else ".png"
    return "." + fmt


def plan_outputs(files: Sequence[Path], out_dir: Path, opts: BatchOptions) -> tuple[list[Planned], list[str]]:
    """Give every input its own output names; returns ``(plans, notes about renamed outputs)``.

    Inputs that would land on the same name (``a/x.png`` and ``b/x.png``, or ``x.png`` and
    ``x.jpg`` with ``--format png``) get the parent folder name, the source extension or a number
    added, chosen the same way on every run so ``--skip-existing`` finds them again.
    """
    stems: dict[Path, str] = {}
    groups: dict[str, list[Path]] = {}
    for f in files:
        key = (f.stem + opts.suffix + _out_suffix(f, opts.format)).casefold()
        groups.setdefault(key, []).append(f)
    notes = []
    for group in groups.values():
        if len(group) == 1:
            stems[group[0]] = group[0].stem
            continue
        parents = [f.parent.name or "root" for f in group]
        exts = [f.suffix.lstrip(".").lower() for f in group]
        if len({p.casefold() for p in parents}) == len(group):
            names = [f"{p}_{f.stem}" for p, f in zip(parents, group, strict=True)]
        elif len(set(exts)) == len(group):
            names = [f"{f.stem}_{e}" for e, f in zip(exts, group, strict=True)]
        else:
            names = [f"{f.stem}-{k}" for k, f in enumerate(group, 1)]
        for f, n in zip(group, names, strict=True):
            stems[f] = n
        notes.append(
            "same output name for " + ", ".join(str(f) for f in group)
            + "; written as " + ", ".join(n + opts.suffix for n in names)
        )
    sources = {f.resolve() for f in files}
    plans = []
    for f in files:
        stem = stems[f]
        plan = Planned(
            f,
            out_dir / f"{stem}{opts.suffix}{_out_suffix(f, opts.format)}",
            out_dir / f"{stem}_transmission.png" if opts.save_transmission else None,
            out_dir / f"{stem}_airlight.json" if opts.save_airlight else None,
        )
        for o in plan.outputs():
            if o.resolve() in sources:
                raise BatchError(
                    f"output {o} would replace the input file itself; choose another -o folder "
                    "or a non-empty --suffix"
                )
        plans.append(plan)
    return plans, notes


def check_output_folder(out_dir: Path) -> None:
    """Create the output folder and prove it takes files, with a message naming it if not."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BatchError(f"output folder {out_dir} cannot be created: a file is in the way") from None
    except OSError as exc:
        raise BatchError(f"output folder {out_dir} cannot be created: {exc.strerror}") from None
    if not out_dir.is_dir():
        raise BatchError(f"output path {out_dir} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=out_dir, prefix=".clearnet-probe."):
            pass
    except OSError as exc:
        raise BatchError(
            f"output folder {out_dir} is not writable ({exc.strerror}); choose another with -o"
        ) from None


def _write_json(path: Path, data: dict[str, Any], overwrite: bool) -> None:
    """Write JSON atomically, like :func:`io.write_image`."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part.json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
        io._umask_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------- one file
def _bit_depth(source: np.ndarray, out_path: Path, opts: BatchOptions) -> int:
    if opts.bit_depth == "16":
        return 16 if out_path.suffix.lower() in _SIXTEEN_BIT_SUFFIXES else 8
    if opts.bit_depth == "8":
        return 8
    wide = source.dtype.itemsize > 1 and source.dtype != bool
    return 16 if wide and out_path.suffix.lower() in _SIXTEEN_BIT_SUFFIXES else 8


def process_file(dehazer: Dehazer, plan: Planned, opts: BatchOptions) -> list[Path]:
    """Read, dehaze and write one input; returns the files written (existing ones are kept)."""
    arr = io.read_image(plan.source)
    layout = io.describe_layout(arr.shape)
    result = dehazer.dehaze(arr, sky_protection=opts.sky_protection)
    image = result.image
    tif_out = plan.image.suffix.lower() in (".tif", ".tiff")
    if layout.n_frames > 1 and not tif_out:
        raise ValueError(
            f"{layout.n_frames} frames (shape {arr.shape}); write stacks with --format tif or same"
        )
    if layout.channels == 4 and plan.image.suffix.lower() in (".jpg", ".jpeg"):
        image = image[..., :3]  # JPEG has no alpha channel
    depth = _bit_depth(arr, plan.image, opts)
    keep = opts.skip_existing and not opts.overwrite
    written: list[Path] = []

    def wanted(p: Path) -> bool:
        return opts.overwrite or not (keep and p.exists())

    with _folder_errors(plan.image.parent):
        if plan.transmission is not None:
            t = result.transmission.reshape(-1, layout.height, layout.width)
            t = t[0] if layout.n_frames == 1 else t
            # a stack's transmission is a stack too, which only TIFF holds
            t_path = plan.transmission if layout.n_frames == 1 else plan.transmission.with_suffix(".tif")
            if wanted(t_path):
                written.append(io.write_image(t_path, t, bit_depth=16, overwrite=opts.overwrite))
        if plan.airlight is not None and wanted(plan.airlight):
            data = {
                "source": str(plan.source),
                "output": str(plan.image),
                "airlight": np.asarray(result.airlight, dtype=float).round(6).tolist(),
                "provenance": result.provenance,
            }
            _write_json(plan.airlight, data, opts.overwrite)
            written.append(plan.airlight)
        if wanted(plan.image):
            written.append(io.write_image(plan.image, image, bit_depth=depth, overwrite=opts.overwrite))
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
            "free some space or choose another folder with -o"
        ) from None


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
    files, problems = collect_inputs(inputs, out, opts.suffix)
    report = BatchReport()
    for name, msg in problems:
        report.failed.append((name, msg))
        print(f"error: {name}: {msg}", file=err)
    if not files:
        first = f" ({problems[0][0]}: {problems[0][1]})" if problems else ""
        raise BatchError("no input images found" + first)
    check_output_folder(out)
    plans, notes = plan_outputs(files, out, opts)
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

    try:
        for plan in bar:
            present = [p for p in plan.outputs() if p.exists()]
            if present and not opts.overwrite:
                if opts.skip_existing:
                    if len(present) == len(plan.outputs()):
                        report.skipped.append(plan.source)
                        continue
                else:
                    report.existing.append(plan.source)
                    say(f"exists: {present[-1]} (from {plan.source}); not replaced, "
                        "pass --overwrite to replace or --skip-existing to carry on")
                    continue
            try:
                report.written.extend(process_file(dehazer, plan, opts))
            except OutputFolderError as exc:
                report.fatal = str(exc.strerror)
                say(f"error: {exc.strerror}")
                break
            except (ValueError, OSError, RuntimeError) as exc:
                msg = str(exc).replace(f"cannot read {plan.source}: ", "")
                report.failed.append((str(plan.source), msg))
                say(f"error: {plan.source}: {msg}")
    except KeyboardInterrupt:
        bar.close()
        print(
            f"interrupted: {len(report.written)} files written to {out}; rerun with "
            "--skip-existing to carry on", file=err,
        )
        raise
    bar.close()
    return report


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
