"""Which files a batch reads and which it writes, planned as one set before any work.

:func:`collect_inputs` (in :mod:`napari_clearnet.batch_inputs`) finds the inputs;
:func:`plan_outputs` gives every input its output names:
every name (image, transmission, airlight) is checked against every other output and every input,
case-insensitively; names that would collide are made unique from each input's own path, so
adding inputs does not move the others' names. Options that make an input's outputs collide with
each other or replace the input are refused up front; an existing output that is an input under
another name (a link) is that input's error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._util.validate import option
from ..errors import BatchError
from ..io.images import IMAGE_SUFFIXES
from ..video.reader import is_video
from .inputs import INPUT_SUFFIXES, TRANSMISSION, collect_inputs, looks_like_output

if TYPE_CHECKING:
    from .options import BatchOptions

__all__ = ["INPUT_SUFFIXES", "TRANSMISSION", "BatchError", "Planned", "check_output_folder", "collect_inputs",
           "looks_like_output", "plan_outputs"]

SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")


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


# ---------------------------------------------------------------------------------- outputs
def _out_suffix(src: Path, fmt: str) -> str:
    if is_video(src):  # a clip becomes a clip, whatever --format says for images
        from ..video.writer import output_suffix

        return output_suffix(src)
    if fmt == "same":
        s = src.suffix.lower()
        return s if s in IMAGE_SUFFIXES else ".png"
    return "." + fmt


def _names(stem: str, src: Path, opts: BatchOptions) -> dict[str, str]:
    """The output file names of one input, by role. The transmission map is a TIFF beside a TIFF
    image (stacks need one), a grey clip beside a clip and a 16-bit PNG otherwise, so the name is
    known before reading."""
    ext = _out_suffix(src, opts.format)
    names = {"image": f"{stem}{opts.suffix}{ext}"}
    if opts.save_transmission:
        t_ext = ext if is_video(src) else ".tif" if ext in (".tif", ".tiff") else ".png"
        names["transmission"] = f"{stem}{TRANSMISSION}{t_ext}"
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
                          f"{name_max} this file system allows; rename the input or use a shorter "
                          f"{option('suffix')}")
        if f in unresolved and not plan.error:
            plan.error = "its output names clash with other inputs' even after renaming; rename the input"
        plans.append(plan)
    _refuse_links_to_inputs(plans, files)
    if opts.bit_depth == "16":
        eight = [p for p in plans
                 if p.image.suffix.lower() not in SIXTEEN_BIT_SUFFIXES and not is_video(p.source)]
        if eight:
            raise BatchError(
                f"{option('bit_depth', '16')}: {eight[0].source} would be written as "
                f"{eight[0].image.suffix}, which holds 8 bits only; add {option('format', 'png')} or "
                f"{option('format', 'tif')}"
            )
    return plans, notes


def _refuse_links_to_inputs(plans: list[Planned], files: Sequence[Path]) -> None:
    """An existing output that is an input under another name (a hard link, a symbolic link, a link
    to its folder) makes that plan's error: no output replaces an input, even with overwrite."""
    inputs: dict[tuple[int, int], Path] = {}
    for f in files:
        with contextlib.suppress(OSError):
            st = f.stat()
            inputs[(st.st_dev, st.st_ino)] = f
    for plan in plans:
        for out in plan.outputs() if not plan.error else ():
            try:
                st = out.stat()
            except OSError:
                continue
            src = inputs.get((st.st_dev, st.st_ino))
            if src is not None:
                plan.error = (f"output {out} is the input {src} under another name (a link to it); an "
                              f"output never replaces an input, even with {option('overwrite')}: remove "
                              f"the link or choose another {option('out_dir')} folder")
                break


def _refuse_own_clash(own: list[tuple[tuple[int, int, str], Path, str]], path: Path) -> None:
    """One input's outputs would collide with each other or with the input: the options say so."""
    roles = {c[2] for c in own}
    f = own[0][1]
    if "input" in roles:
        raise BatchError(
            f"output {path} would replace the input file itself; choose another {option('out_dir')} "
            f"folder or a non-empty {option('suffix')}"
        )
    raise BatchError(
        f"the dehazed image of {f} would get the name {path.name}, which its "
        f"{'transmission map' if 'transmission' in roles else 'airlight file'} has too; "
        f"choose another {option('suffix')}"
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
            f"output folder {out_dir} is not writable ({exc.strerror}); choose another with "
            f"{option('out_dir')}"
        ) from None
