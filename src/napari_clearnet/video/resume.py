"""Interrupted clips carried on (issue 21): where a rerun starts, and the frames it copies.

A rerun that carries on (``--skip-existing``, ``resume=True``) reads a partial clip's journal
(:mod:`.partial`), checks that it was made from this input with these settings, and finds the
last keyframe K that both the journal recorded and the partial clip holds with every frame
before it (:func:`complete_groups`: a clip cut mid-packet is trusted only up to there). The
first K frames are copied packet by packet into the new output (:func:`copy_frames`: no
re-encoding, the same bytes), frame K on is dehazed from the recorded smoothing state (the
frames an uninterrupted run makes, bit for bit) and encoded with the same settings, from a
keyframe. Anything that does not match (another input, other options, a damaged or unreadable
partial clip, no complete keyframe, another encoder) is said in a note, and the clip starts
from frame 0. Matroska and MP4/MOV are carried on; an MP4 or MOV cut by a kill has no index
yet and starts again, and AVI (no timestamps of its own) always does.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .._util import files
from .._util.validate import option
from ..core.run import Carry
from ..errors import ClearNetError
from .partial import RESUMABLE, Checkpoint, Partial, read_journal

__all__ = ["CannotCarryOn", "Start", "complete_groups", "copy_frames", "parameter_sets", "start"]



class CannotCarryOn(ClearNetError, ValueError):
    """A partial clip cannot be continued (the caller starts from frame 0)."""


# ------------------------------------------------------------------------------- the clip itself
def complete_groups(path: Path, stamps: np.ndarray, time_base: Fraction) -> tuple[list[int], bytes]:
    """The frames K > 0 at which ``path``'s video has a keyframe with every frame before it
    complete (its first K packets, in decoding order, are frames 0 to K-1 at their timestamps
    ``stamps`` in ``time_base``, and nothing before it is shown after it); and the stream's
    parameter sets. A file cut mid-packet counts up to where it can be read."""
    import av

    pts: list[int] = []
    keys: list[int] = []
    try:
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            scale = float(time_base / v.time_base)
            extradata = bytes(v.codec_context.extradata or b"")
            try:
                for p in c.demux(v):
                    if not p.size or p.pts is None:
                        continue
                    if p.is_keyframe:
                        keys.append(len(pts))
                    pts.append(int(p.pts))
            except (av.FFmpegError, OSError):
                pass  # cut: what came before counts
    except (av.FFmpegError, OSError, IndexError, ZeroDivisionError) as exc:
        raise CannotCarryOn(f"it cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    expected = np.asarray(stamps, np.float64) * scale
    found: list[int] = []
    seen: set[int] = set()  # the frames the packets so far are (each once)
    latest = -math.inf
    keyset = set(keys)
    for m, p in enumerate(pts):
        if m in keyset and 0 < m < len(expected) and len(seen) == m and max(seen) == m - 1 \
                and latest < p and abs(p - expected[m]) <= 1:
            found.append(m)  # frames 0 to m-1 before it, none shown after it
        k = int(np.searchsorted(expected, p - 1))
        while k < len(expected) and expected[k] <= p + 1 and (k in seen or abs(expected[k] - p) > 1):
            k += 1
        if k >= len(expected) or abs(expected[k] - p) > 1:
            break  # a frame the clip does not have: nothing after it is trusted
        seen.add(k)
        latest = max(latest, p)
    return found, extradata


def parameter_sets(extradata: bytes) -> frozenset[bytes]:
    """The H.264 SPS and PPS in ``extradata`` (an avcC record or Annex B start codes)."""
    nals: list[bytes] = []
    if extradata[:1] == b"\x01" and len(extradata) > 6:  # avcC
        i, count = 6, extradata[5] & 0x1F
        for kind in range(2):
            for _ in range(count):
                n = int.from_bytes(extradata[i:i + 2], "big")
                nals.append(extradata[i + 2:i + 2 + n])
                i += 2 + n
            if kind == 0 and i < len(extradata):
                count, i = extradata[i], i + 1
    else:
        nals = [n.rstrip(b"\x00") for n in extradata.split(b"\x00\x00\x01")]
    return frozenset(n for n in nals if n and n[0] & 0x1F in (7, 8))


def _annex_b(packet: Any, size: int) -> Any:
    """An avcC packet (NAL units after their length) as Annex B, what the encoder's packets are
    (the muxer turns both back into the same bytes)."""
    import av

    data, out, i = bytes(packet), bytearray(), 0
    while i + size <= len(data):
        n = int.from_bytes(data[i:i + size], "big")
        out += b"\x00\x00\x00\x01" + data[i + size:i + size + n]
        i += size + n
    if i != len(data):
        raise CannotCarryOn("a packet of it is damaged")
    q = av.Packet(bytes(out))
    q.pts, q.dts, q.duration, q.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
    q.is_keyframe = packet.is_keyframe
    return q


def copy_frames(out: Any, stream: Any, source: str | os.PathLike, frames: int,
                until: Callable[[float | None], None]) -> Fraction | None:
    """Copy the first ``frames`` frames (packets in decoding order) of partial clip ``source``'s
    video into ``stream`` of ``out``, calling ``until(seconds)`` before each (the audio); returns
    the last one's decoding time in seconds. Raises :class:`CannotCarryOn` when
    the encoder's parameter sets differ from the clip's or frames are missing."""
    import av

    out.start_encoding()  # opens the encoder: its parameter sets are known
    with av.open(str(source)) as c:
        v = c.streams.video[0]
        extradata = bytes(v.codec_context.extradata or b"")
        if parameter_sets(extradata) != parameter_sets(bytes(stream.codec_context.extradata or b"")):
            raise CannotCarryOn("the encoder's settings differ from the ones it was made with")
        size = (extradata[4] & 3) + 1 if extradata[:1] == b"\x01" else None
        n, last = 0, None
        try:
            for p in c.demux(v):
                if n == frames:
                    break
                if not p.size or p.pts is None:
                    continue
                q = p if size is None else _annex_b(p, size)
                until(float(q.pts * q.time_base))
                q.stream = stream
                out.mux(q)
                last = None if q.dts is None else q.dts * q.time_base
                n += 1
                if n == frames:
                    break
        except av.FFmpegError as exc:
            raise CannotCarryOn(f"it cannot be read past frame {n} ({exc.strerror or exc})") from None
    if n < frames:
        raise CannotCarryOn(f"it holds {n} of the {frames} frames its journal promised")
    return last


# ----------------------------------------------------------------------------------- deciding
@dataclass
class Start:
    """Where a clip's run starts: ``frame`` (0: from the beginning), the smoothing state there,
    the airlight of the frames before it, the partial clip each output copies them from, and what
    the user should know."""

    frame: int = 0
    carry: Carry | None = None
    airlight: np.ndarray | None = None
    copy_from: dict[str, Path] = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for k in keys:
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{k}.")
        elif json.dumps(x, sort_keys=True) != json.dumps(y, sort_keys=True):
            out.append(prefix + k)
    return out


def _usable(partial: Partial, header: dict[str, Any], stamps: np.ndarray,
            time_base: Fraction) -> tuple[dict[Path, set[int]], list[Checkpoint]]:
    """The frames each of ``partial``'s clips can be carried on from (checked against
    ``header``), and the journal's checkpoints; :class:`CannotCarryOn` says why there are none."""
    if partial.target.suffix.lower() not in RESUMABLE:
        raise CannotCarryOn(f"{partial.target.suffix} clips are not carried on (no timestamps of their own)")
    if not partial.journal.exists():
        raise CannotCarryOn("its journal is missing")
    try:
        theirs, checkpoints = read_journal(partial.journal)
    except (OSError, ValueError) as exc:
        raise CannotCarryOn(str(exc)) from None
    if theirs.get("output") != header["output"]:
        raise CannotCarryOn(f"it belongs to another output ({theirs.get('output')})")
    if theirs.get("source_fingerprint") != header["source_fingerprint"]:
        raise CannotCarryOn("it was made from another input (or the input has changed since)")
    changed = _differences(theirs.get("settings", {}), header["settings"])
    if changed:
        raise CannotCarryOn(f"it was made with other settings ({', '.join(changed)})")
    recorded = {c.frame for c in checkpoints}
    usable: dict[Path, set[int]] = {}
    problems = []
    for clip in (partial.path, partial.base):
        if not clip.exists():
            continue
        try:
            groups, _ = complete_groups(clip, stamps, time_base)
        except CannotCarryOn as exc:
            problems.append(str(exc))
            continue
        if recorded.intersection(groups):
            usable[clip] = recorded.intersection(groups)
    if not usable:
        raise CannotCarryOn(problems[0] if problems else
                            "it holds no complete group of frames to carry on from")
    return usable, checkpoints


def start(partials: dict[str, Partial], headers: dict[str, dict[str, Any]], stamps: np.ndarray,
          time_base: Fraction, *, resume: bool, overwrite: bool) -> Start:
    """Decide where the outputs ``partials`` (by role) start, and make their files ready: a
    partial clip to carry on from is moved to its ``base`` name, other partial files are removed.
    Without ``resume`` or ``overwrite`` a partial clip is not replaced (``FileExistsError``)."""
    for p in partials.values():
        for f in (p.path, p.base):
            if files.held(f):
                raise FileExistsError(f"{p.target} is being written by another run ({f.name} is in use)")
    present = [p for p in partials.values() if p.present()]
    if present and not resume and not overwrite:
        p = present[0]
        raise FileExistsError(
            f"an interrupted run left a partial clip of {p.target} ({p.present()[0].name}); pass "
            f"{option('resume')} to carry on from it or {option('overwrite')} to start over")
    begin = Start()
    if present and resume and not overwrite:
        found: dict[str, tuple[dict[Path, set[int]], list[Checkpoint]]] = {}
        for role, p in partials.items():
            try:
                found[role] = _usable(p, headers[role], stamps, time_base)
            except CannotCarryOn as exc:
                if p.present():
                    begin.notes.append(f"its partial clip {p.path.name} is not carried on: {exc}; starting "
                                       "from frame 0")
        common = set.intersection(*(set().union(*f[0].values()) for f in found.values())) \
            if len(found) == len(partials) else set()
        if common:
            frame = max(common)
            checkpoints = [c for c in next(iter(found.values()))[1] if c.frame <= frame]
            last = checkpoints[-1]
            begin = Start(frame, Carry(frame, last.carry, last.scale),
                          np.array([a for c in checkpoints for a in c.airlight], np.float32),
                          {r: next(c for c, ks in f[0].items() if frame in ks) for r, f in found.items()},
                          checkpoints, [f"carrying on from frame {frame} (its partial clip holds the frames "
                                        "before it; they are copied, not encoded again)"])
        elif found:  # carried on together or not at all: they share one dehazing
            many, names = len(found) > 1, ", ".join(partials[r].path.name for r in found)
            said = f"its partial clip{'s' if many else ''} {names} {'are' if many else 'is'} not carried on"
            bare = [partials[r].target.name for r in partials if r not in found and not partials[r].present()]
            if bare:
                said += f": {', '.join(bare)} has no partial clip to carry on with it; starting from frame 0"
            elif len(found) == len(partials):
                said += ": they hold no keyframe in common; starting from frame 0"
            else:
                said += " either"
            begin.notes.append(said)
    for role, p in partials.items():
        keep = begin.copy_from.get(role)
        for f in (p.path, p.base):
            if f.exists() and f != keep:
                f.unlink()
        if keep is not None and keep != p.base:
            os.replace(keep, p.base)
            begin.copy_from[role] = p.base
        if keep is None:
            p.journal.unlink(missing_ok=True)
    return begin


