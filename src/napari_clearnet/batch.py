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
import fnmatch
import glob
import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import io
from ._validate import check_number, json_text
from .engine import METHODS, Dehazer, check_sky_protection, check_strength, load_model, pick_device

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
TRANSMISSION = "_transmission"


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
    #: None: the method's default (engine.DEFAULT_SKY_PROTECTION)
    sky_protection: float | None = None
    #: JPEG/WebP quality 1-100 (None: JPEG 95, WebP lossless)
    quality: int | None = None
    #: how to read each image's array (see :func:`io.describe_layout`)
    channel_axis: int | str | None = "auto"
    #: (low, high) pixel values that map to black and white (None: decided per image)
    value_range: tuple[float, float] | None = None
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BatchError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        try:
            if self.sky_protection is not None:
                check_sky_protection(self.sky_protection, "--sky-protection")
            pick_device(self.device)
            if self.quality is not None:
                self.quality = check_number(self.quality, "--quality", "[1, 100]", integer=True)
            if self.value_range is not None:
                self.value_range = io.check_value_range(self.value_range, "--value-range")
            check_strength(self.strength, "--strength")
        except ValueError as exc:
            raise BatchError(str(exc)) from None
        ca = self.channel_axis
        if not (ca is None or ca == "auto" or (isinstance(ca, int) and not isinstance(ca, bool))):
            raise BatchError(f"--channel-axis must be an axis number, 'none' or 'auto', got {ca!r}")
        if self.format not in FORMATS:
            raise BatchError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        self.bit_depth = str(self.bit_depth)
        if self.bit_depth not in BIT_DEPTHS:
            raise BatchError(f"--bit-depth must be one of {', '.join(BIT_DEPTHS)}, got {self.bit_depth!r}")
        if self.bit_depth == "16" and self.format == "jpg":
            raise BatchError("--bit-depth 16 needs --format png, tif or same (JPEG is 8-bit only)")
        if os.sep in self.suffix or "/" in self.suffix or "\0" in self.suffix:
            raise BatchError(f"--suffix must not contain a path separator, got {self.suffix!r}")


@dataclass
class Planned:
    """One input and the files it will produce; ``error`` says why it cannot be processed."""

    source: Path
    image: Path
    transmission: Path | None = None
    airlight: Path | None = None
    error: str | None = None

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
) -> tuple[list[Path], list[tuple[str, str]], list[Path]]:
    """Expand files, folders (their image files, not recursive) and globs into a sorted list.

    Returns ``(files, problems, excluded)``: a problem is ``(input, message)`` for an input that
    matched nothing or is not a regular file. In ``exclude_dir`` (the output folder) files found
    through a folder or a glob whose names look like our outputs are left out (``excluded``), so a
    rerun into the input folder does not dehaze its own results; files named explicitly are always
    taken. Recursive globs (``**``) never follow links to folders, so link loops cannot hang it,
    and every file is taken once however many paths lead to it.
    """
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    excluded: list[Path] = []
    for raw in inputs:
        text = os.fspath(raw)
        p = Path(text).expanduser()
        kind = _kind(p)
        if kind == "dir":
            found.extend(_folder_images(p, exclude_dir, suffix, excluded))
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
                    if _looks_like_output(hit, exclude_dir, suffix):
                        excluded.append(hit)
                    else:
                        files.append(hit)
                elif hk == "dir":
                    files.extend(_folder_images(hit, exclude_dir, suffix, excluded))
            if not files and not excluded:
                problems.append((text, "no files match this pattern"))
            found.extend(files)
        else:
            problems.append((text, "no such file or folder"))
    unique: dict[Path, Path] = {}
    for f in found:
        unique.setdefault(f.resolve(), f)
    return sorted(unique.values(), key=lambda q: str(q)), problems, sorted(set(excluded), key=str)


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


def _looks_like_output(f: Path, exclude_dir: Path | None, suffix: str) -> bool:
    """In the output folder, a name like ``<stem>_transmission.*`` or ``<stem><suffix>.*``."""
    if exclude_dir is None:
        return False
    try:
        if f.parent.resolve() != exclude_dir.resolve():
            return False
    except OSError:
        return False
    return f.stem.endswith(TRANSMISSION) or bool(suffix and f.stem.endswith(suffix))


def _folder_images(folder: Path, exclude_dir: Path | None, suffix: str, excluded: list[Path]) -> list[Path]:
    out = []
    try:
        listing = sorted(folder.iterdir())
    except OSError:
        return out
    for f in listing:
        if f.name.startswith(".") or f.suffix.lower() not in io.IMAGE_SUFFIXES or _kind(f) != "file":
            continue
        if _looks_like_output(f, exclude_dir, suffix):
            excluded.append(f)
            continue
        out.append(f)
    return out


# ---------------------------------------------------------------------------------- outputs
def _out_suffix(src: Path, fmt: str) -> str:
    if fmt == "same":
        s = src.suffix.lower()
        return s if s in io.IMAGE_SUFFIXES else ".png"
    return "." + fmt


def _names(stem: str, src: Path, opts: BatchOptions) -> dict[str, str]:
    """The output file names of one input, by role. The transmission map is a TIFF beside a TIFF
    image (stacks need one) and a 16-bit PNG otherwise, so the name is known before reading."""
    ext = _out_suffix(src, opts.format)
    names = {"image": f"{stem}{opts.suffix}{ext}"}
    if opts.save_transmission:
        names["transmission"] = f"{stem}{TRANSMISSION}{'.tif' if ext in ('.tif', '.tiff') else '.png'}"
    if opts.save_airlight:
        names["airlight"] = f"{stem}_airlight.json"
    return names


def _path_hash(f: Path, n: int = 8) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(f))).hexdigest()[:n]


def _dir_parts(f: Path) -> tuple[str, ...]:
    parts = Path(os.path.abspath(f.parent)).parts
    return tuple("root" if p == Path(p).anchor else p for p in parts) or ("root",)


def _disambiguated(group: list[Path]) -> dict[Path, str]:
    """New stems for inputs whose outputs would share a name, each made from the input's own
    path: the source extension when they sit in one folder (``y_png``, ``y_jpg``), and as few
    trailing folder names as tell its folder from the others (``a_x``, ``b_x``; ``a_x_p`` for
    ``a/x/p.png`` beside ``b/x/p.png``), so a third input rarely moves the first two's names."""
    dirs = {f: _dir_parts(f) for f in group}
    out = {}
    for f in group:
        stem = f.stem
        mates = [g for g in group if dirs[g] == dirs[f]]
        if len(mates) > 1:
            ext = f.suffix.lower()
            unique_ext = ext and [m.suffix.lower() for m in mates].count(ext) == 1
            stem = f"{stem}_{ext.lstrip('.')}" if unique_ext else f"{stem}-{_path_hash(f)}"
        others = {dirs[g] for g in group} - {dirs[f]}
        if others:
            mine = dirs[f]
            k = len(mine)
            for depth in range(1, len(mine) + 1):
                tail = tuple(p.casefold() for p in mine[-depth:])
                if all(tuple(p.casefold() for p in o[-depth:]) != tail for o in others):
                    k = depth
                    break
            stem = "_".join(mine[-k:]) + "_" + stem
        out[f] = stem
    return out


def plan_outputs(files: Sequence[Path], out_dir: Path, opts: BatchOptions) -> tuple[list[Planned], list[str]]:
    """Give every input its own output names; returns ``(plans, notes about renamed outputs)``.

    All names are planned as one set and compared without regard to case: no output may take
    another output's name or an input's name. Inputs whose images would share a name get names
    made from their own paths (see :func:`_disambiguated`); an output that would still take a
    name already claimed (another input file in the output folder, another input's natural
    output name) gets ``<stem>-<hash of its path>``. Raises :class:`BatchError` when the options
    themselves make an input's outputs collide with each other or replace the input; a name longer
    than the file system allows is that input's own error.
    """
    out_dir = Path(out_dir)
    stems = {f: f.stem for f in files}
    rank = dict.fromkeys(files, 1)  # 0: an input file itself, 1: natural name, 2: renamed, 3+: hashed
    hashed = dict.fromkeys(files, 0)
    base: dict[Path, str] = {}
    moved: list[str] = []
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(_names(f.stem, f, opts)["image"].casefold(), []).append(f)
    collided = [g for g in groups.values() if len(g) > 1]
    for group in collided:
        stems.update(_disambiguated(group))
        rank.update(dict.fromkeys(group, 2))
    try:
        out_real = out_dir.resolve()
    except OSError:
        out_real = out_dir
    input_names = {}
    for f in files:
        with contextlib.suppress(OSError):
            if f.resolve().parent == out_real:
                input_names[f.name.casefold()] = f
    unresolved: set[Path] = set()
    for attempt in range(4):
        claims: dict[str, list[tuple[tuple[int, int, str], Path, str]]] = {}
        for name, f in input_names.items():
            claims.setdefault(name, []).append(((0, 0, str(f)), f, "input"))
        for f in files:
            for role, name in _names(stems[f], f, opts).items():
                key = (rank[f], 1 if role == "image" else 0, str(f))
                claims.setdefault(name.casefold(), []).append((key, f, role))
        losers: dict[Path, tuple[str, str]] = {}
        for name, cl in claims.items():
            if len(cl) < 2:
                continue
            cl.sort(key=lambda c: c[0])
            for f in {c[1] for c in cl}:
                own = [c for c in cl if c[1] == f]
                if len(own) > 1:
                    _refuse_own_clash(own, out_dir / name)
            holder = f"the input {cl[0][1]}" if cl[0][2] == "input" else f"{cl[0][1]}'s {cl[0][2]}"
            for _, f, role in cl[1:]:
                if role != "input":  # an input file keeps its name; outputs move
                    losers.setdefault(f, (name, holder))
        if not losers:
            break
        if attempt == 3:
            unresolved = set(losers)
            break
        for f, (name, holder) in losers.items():
            rank[f] += 2
            hashed[f] += 1
            base.setdefault(f, stems[f])
            stems[f] = f"{base[f]}-{_path_hash(f, 8 * hashed[f])}"
            moved.append(f"{f}: its output name {name} is taken by {holder}; written as "
                         f"{stems[f]}{opts.suffix}")
    notes = [
        "same output name for " + ", ".join(str(f) for f in group)
        + "; written as " + ", ".join(stems[f] + opts.suffix for f in group)
        for group in collided
    ] + moved
    name_max = _name_max(out_dir)
    plans = []
    for f in files:
        names = _names(stems[f], f, opts)
        plan = Planned(f, out_dir / names["image"],
                       out_dir / names["transmission"] if "transmission" in names else None,
                       out_dir / names["airlight"] if "airlight" in names else None)
        too_long = [n for n in names.values() if len(os.fsencode(n)) > name_max]
        if too_long:
            n = too_long[0]
            plan.error = (f"output name {n[:24]}…{n[-16:]} is {len(os.fsencode(n))} bytes, longer than the "
                          f"{name_max} this file system allows; rename the input or use a shorter --suffix")
        if f in unresolved and not plan.error:
            plan.error = "its output names clash with other inputs' even after renaming; rename the input"
        plans.append(plan)
    if opts.bit_depth == "16":
        eight = [p for p in plans if p.image.suffix.lower() not in _SIXTEEN_BIT_SUFFIXES]
        if eight:
            raise BatchError(
                f"--bit-depth 16: {eight[0].source} would be written as {eight[0].image.suffix}, which "
                "holds 8 bits only; add --format png or --format tif"
            )
    return plans, notes


def _refuse_own_clash(own: list[tuple[tuple[int, int, str], Path, str]], path: Path) -> None:
    """One input's outputs would collide with each other or with the input: the options say so."""
    roles = {c[2] for c in own}
    f = own[0][1]
    if "input" in roles:
        raise BatchError(
            f"output {path} would replace the input file itself; choose another -o folder or a "
            "non-empty --suffix"
        )
    raise BatchError(
        f"the dehazed image of {f} would get the name {path.name}, which its "
        f"{'transmission map' if 'transmission' in roles else 'airlight file'} has too; "
        "choose another --suffix"
    )


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


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
    """Write valid JSON atomically, like :func:`io.write_image`."""
    with io.atomic_path(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(json_text(data, indent=2, ensure_ascii=False) + "\n")


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
    src = io.load_image(plan.source)
    arr = src.array
    layout = io.describe_layout(arr.shape, opts.channel_axis)
    tif_out = plan.image.suffix.lower() in (".tif", ".tiff")
    if layout.n_frames > 1 and not tif_out:
        raise ValueError(
            f"{layout.n_frames} frames (shape {arr.shape}); a stack is written as one TIFF: add --format tif"
        )
    result = dehazer.dehaze(arr, channel_axis=layout.channel_axis, value_range=opts.value_range,
                            sky_protection=opts.sky_protection, strength=opts.strength)
    image = result.image
    if layout.channel_axis is not None and layout.channel_axis != arr.ndim - 1:
        image = np.moveaxis(image, layout.channel_axis, -1)  # files hold channels last
    if layout.channels == 4 and plan.image.suffix.lower() in (".jpg", ".jpeg"):
        image = image[..., :3]  # JPEG has no alpha channel
    depth = _bit_depth(arr, plan.image, opts)
    fp = io.fingerprint(plan.source)
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
            _write_json(plan.airlight, data, opts.overwrite)
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
            "free some space or choose another folder with -o"
        ) from None


def _made_from_other(path: Path, fingerprint: str) -> bool:
    """True when an existing output records another input than the one with ``fingerprint``
    (outputs without a record, from older versions or BMP files, are taken at their name)."""
    tag = io.read_tag(path)
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
    files, problems, excluded = collect_inputs(inputs, out, opts.suffix)
    report = BatchReport()
    for name, msg in problems:
        report.failed.append((name, msg))
        print(f"error: {name}: {msg}", file=err)
    foreign = [f for f in excluded if io.read_tag(f) is None]
    if foreign:
        shown = ", ".join(str(f) for f in foreign[:5])
        shown += f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        print(f"note: not taken as inputs, as their names look like outputs in the output folder "
              f"(name them explicitly to dehaze them): {shown}", file=err)
    if not files:
        first = f" ({problems[0][0]}: {problems[0][1]})" if problems else ""
        raise BatchError("no input images found" + first)
    check_output_folder(out)
    stale = io.remove_stale_parts(out)
    if stale:
        print(f"note: removed {len(stale)} partial file(s) an interrupted run left in {out}: "
              + ", ".join(p.name for p in stale[:3]) + (" …" if len(stale) > 3 else ""), file=err)
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

    def fail(plan: Planned, msg: str) -> None:
        msg = msg.replace(f"cannot read {plan.source}: ", "")
        report.failed.append((str(plan.source), msg))
        say(f"error: {plan.source}: {msg}")

    try:
        with io.cli_spelling():
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
            "--skip-existing to carry on", file=err,
        )
        raise
    bar.close()
    return report


def _already_there(plan: Planned, opts: BatchOptions, report: BatchReport, say: Any) -> bool:
    """Decide about outputs that exist: True when this input is done (skipped or reported)."""
    present = [p for p in plan.outputs() if p.exists()]
    if not present or opts.overwrite:
        return False
    fp = io.fingerprint(plan.source)
    other = [p for p in present if _made_from_other(p, fp)]
    if other:
        report.existing.append(plan.source)
        say(f"exists: {other[-1]} was made from another input, not from {plan.source}; not replaced, "
            "pass --overwrite to replace it or choose another -o folder")
        return True
    if opts.skip_existing:
        if len(present) == len(plan.outputs()):
            report.skipped.append(plan.source)
            return True
        return False  # finish the missing ones
    report.existing.append(plan.source)
    say(f"exists: {present[-1]} (from {plan.source}); not replaced, "
        "pass --overwrite to replace or --skip-existing to carry on")
    return True


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
