"""Video files out: a clip dehazed into a new clip, streamed, with its sound and timing kept.

:func:`dehaze_video` streams a clip through the one run loop (:func:`napari_clearnet.run.run`
with a sink): a decoder thread reads ahead into a bounded queue (:class:`~napari_clearnet.video.
VideoReader`), the engine dehazes, and :class:`VideoWriter`'s thread (:mod:`.encoder`) converts
and encodes from another bounded queue, so decoding and encoding overlap the computation and only
a few frames are ever in memory. The output keeps every frame's timestamp (so the frame rate,
constant or not) and the frame size; audio streams are copied packet by packet, not re-encoded.
Video is H.264 (CRF 18, preset veryfast: visually lossless, not lossy by surprise), BT.709, in the
input's container (MP4, MOV, MKV, AVI; other containers become Matroska, which holds any audio).
The file appears under its name only when complete; until then it is a partial clip
(:mod:`.partial`) that Ctrl-C, SIGTERM and SIGHUP keep, and that a rerun with ``resume``
carries on from its last complete keyframe (:mod:`.resume`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._util.validate import option
from ..core.options import VIDEO_NETWORK_EVERY, VIDEO_TEMPORAL_SMOOTHING, DehazeOptions
from .encoder import (
    DEFAULT_CRF,
    DEFAULT_PRESET,
    H264_MAX_SIDE,
    PRESETS,
    QUEUE_FRAMES,
    Encoding,
    VideoWriter,
    check_encodable,
    encoder_threads,
    frame_stamps,
    time_base,
)
from .reader import VideoReader, lazy

__all__ = ["DEFAULT_CRF", "DEFAULT_PRESET", "DEFAULT_TEMPORAL_SMOOTHING", "H264_MAX_SIDE", "PRESETS",
           "Encoding", "VideoWriter", "check_encodable", "dehaze_video", "encoder_threads", "output_suffix"]

#: temporal smoothing of A and the haze amount for clips unless told otherwise (about 5 frames)
DEFAULT_TEMPORAL_SMOOTHING = VIDEO_TEMPORAL_SMOOTHING
#: containers a dehazed clip keeps; other inputs are written as Matroska (it holds any audio codec)
SAME_CONTAINER = (".mp4", ".m4v", ".mov", ".avi", ".mkv")


def output_suffix(source: str | os.PathLike) -> str:
    """The container a dehazed clip of ``source`` is written in."""
    s = Path(source).suffix.lower()
    return s if s in SAME_CONTAINER else ".mkv"



# ------------------------------------------------------------------------------------ dehazing
def dehaze_video(
    source: str | os.PathLike,
    target: str | os.PathLike | None,
    *,
    model: Any = None,
    method: str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    temporal_smoothing: float = DEFAULT_TEMPORAL_SMOOTHING,
    network_every: int = VIDEO_NETWORK_EVERY,
    side_by_side: bool = False,
    encoding: Encoding | None = None,
    transmission: str | os.PathLike | None = None,
    source_fingerprint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    damaged: str = "repeat",
    options: DehazeOptions | None = None,
    resume: bool = False,
    **changes: Any,
) -> Any:
    """Dehaze a clip into a video file, streamed frame by frame (any length in the memory of a few
    frames).

    Parameters
    ----------
    source : str or path
        The clip to read.
    target : str or path or None
        The dehazed clip to write (None: write no dehazed clip, e.g. only the transmission). It
        appears only when complete and is never replaced unless ``overwrite``; until then it is
        written to ``.<name>.partial<ext>`` beside it, which Ctrl-C keeps (see ``resume``).
    model, method, device
        As for :func:`napari_clearnet.dehaze` (a loaded :class:`~napari_clearnet.Dehazer` is reused).
    overwrite : bool, default False
        Replace existing outputs.
    temporal_smoothing : float, default 0.8
        Steadies A and the haze amount along the clip (0 = off); ``options`` replaces it.
    network_every : int, default 4
        Run the network on every k-th frame and reuse its haze amount and airlight correction on
        the frames between (1 = every frame); ``options`` replaces it.
    side_by_side : bool, default False
        Write hazy | dehazed in one frame (twice the width).
    encoding : Encoding, optional
        H.264 quality (crf) and x264 preset.
    transmission : str or path, optional
        Also write the transmission map as a grey clip.
    source_fingerprint : str, optional
        The input's fingerprint, recorded in the outputs.
    progress : callable, optional
        ``progress(done, total)`` after every frame.
    damaged : {"repeat", "stop"}, default "repeat"
        A frame that cannot be decoded: shown as the one before it, or the clip fails.
    options : DehazeOptions, optional
        The run options; keyword ``changes`` go on top (``sky_protection``, ``strength``, ``t0``...).
    resume : bool, default False
        Carry on the partial clip an interrupted run left (made from this input with the same
        settings) from its last complete keyframe: the frames before it are copied, not dehazed
        again. One that does not match is replaced, with a note; without ``resume`` (or
        ``overwrite``) a partial clip is not replaced (``FileExistsError``).
    **changes
        Fields of :class:`~napari_clearnet.DehazeOptions`.

    Returns
    -------
    DehazeResult
        A per frame and the provenance (no frames); ``provenance["notes"]`` says what was
        repaired and what the output leaves out; ``provenance["carried_on_from"]``: the frame a
        resumed clip was dehazed from.
    """
    from .._util.files import fingerprint, tag_text
    from ..api import resolve_dehazer
    from . import partial
    from . import resume as carry_on

    base = options if options is not None else DehazeOptions(temporal_smoothing=temporal_smoothing,
                                                             network_every=network_every)
    # a clip's frames are 8-bit RGB and are written as 8-bit: the 8-bit path, t only where it is written
    opts = DehazeOptions.of(base, changes).replace(channel_axis=-1, output_dtype="uint8",
                                                   with_transmission=transmission is not None)
    dehazer = resolve_dehazer(method, model, device)
    encoding = encoding or Encoding()
    comment = tag_text(source_fingerprint) if source_fingerprint else None
    targets = {role: Path(p) for role, p in (("image", target), ("transmission", transmission))
               if p is not None}
    # on a GPU the clip is decoded there too (NVDEC, where FFmpeg can; software otherwise)
    hwaccel = "cuda" if dehazer.device.type == "cuda" else None
    with VideoReader(source, readahead=QUEUE_FRAMES, damaged=damaged, warn=False, hwaccel=hwaccel) as reader:
        info = reader.info
        width = info.width * (2 if side_by_side else 1)
        check_encodable(source, width, info.height, side_by_side)
        for p in targets.values():
            if p.exists() and not overwrite:
                raise FileExistsError(f"{p} exists; pass {option('overwrite')} to replace it")
        batch = dehazer.batch_frames(info.height, info.width, opts.batch_size)
        # keyframes fall on batch bounds and on the network's schedule: a run carried on there
        # computes what an uninterrupted run computes
        every = partial.keyframe_interval(info.rate, math.lcm(batch, opts.network_every))
        fp = source_fingerprint or fingerprint(source)
        headers = {role: partial.header(
            p, fp, dehazer, opts, role=role, size=[width if role == "image" else info.width, info.height],
            frames=info.n_frames, time_base=str(time_base(info)), keyframes=every, crf=encoding.crf,
            preset=encoding.preset, side_by_side=bool(side_by_side), damaged=damaged)
            for role, p in targets.items()}
        partials = {role: partial.Partial.of(p) for role, p in targets.items()}
        stamps, _ = frame_stamps(info)
        begin = carry_on.start(partials, headers, stamps, time_base(info), resume=resume, overwrite=overwrite)
        record = {"source": str(source), "video": info.describe(), "crf": encoding.crf,
                  "preset": encoding.preset, "side_by_side": bool(side_by_side)}
        clip = _Clip(reader, dehazer, opts, encoding, comment, side_by_side, every, source, overwrite)
        try:
            result = clip.run(partials, headers, begin, record, progress)
        except carry_on.CannotCarryOn as exc:  # found when copying: the encoder is not the same
            for p in partials.values():
                p.discard()
            begin = carry_on.Start(notes=[f"its partial clip is not carried on: {exc}; starting from "
                                          "frame 0"])
            result = clip.run(partials, headers, begin, record, progress)
        result.provenance["notes"] = [*begin.notes, *reader.notes, *clip.notes]
    return result


@dataclass
class _Clip:
    """One clip's run into its outputs, from the frame a :class:`~.resume.Start` names."""

    reader: VideoReader
    dehazer: Any
    opts: DehazeOptions
    encoding: Encoding
    comment: str | None
    side_by_side: bool
    every: int
    source: str | os.PathLike
    overwrite: bool
    notes: list[str] = field(default_factory=list)

    def run(self, partials: dict[str, Any], headers: dict[str, Any], begin: Any, record: dict[str, Any],
            progress: Callable[[int, int], None] | None) -> Any:
        import dask

        from ..core.run import drive, run
        from .partial import outputs

        info, reader = self.reader.info, self.reader
        if begin.frame:
            record = {**record, "carried_on_from": begin.frame}
        with outputs(partials, headers, begin.checkpoints, overwrite=self.overwrite,
                     sources=(self.source,)) as files, contextlib.ExitStack() as stack:
            writers: dict[str, VideoWriter] = {}
            for role, path in files.paths.items():
                image = role == "image"
                copy = begin.copy_from.get(role)
                writers[role] = stack.enter_context(VideoWriter(
                    path, info, width=info.width * (2 if image and self.side_by_side else 1),
                    encoding=self.encoding, comment=self.comment, keyframes=self.every,
                    audio_from=self.source if image and info.audio_streams else None,
                    copy_from=None if copy is None else (copy, begin.frame)))
                files.copied(role)

            def sink(i: int, res: Any) -> None:
                files.frame(i, res, self.every)
                if "image" in writers:
                    parts = (reader.frame(i), res.image) if self.side_by_side else (res.image,)
                    writers["image"].write(i, parts)
                if "transmission" in writers:
                    writers["transmission"].write(i, (res.transmission,))

            from ..core import threads  # here: it loads torch, which `clearnet --help` must not

            # one chunk per frame (no thread pool per frame); the engine leaves the encoder its cores
            cap = (os.cpu_count() or 1) - encoder_threads()
            with dask.config.set(scheduler="synchronous"), threads.capped(cap):
                result = drive(run(self.dehazer, lazy(reader), self.opts, sink=sink, provenance=record,
                                   carry=begin.carry), progress)
            for w in writers.values():
                w.close()
                if w.frames != info.n_frames:
                    raise RuntimeError(f"{w.frames} of {info.n_frames} frames were written")
            self.notes = [n for w in writers.values() for n in w.notes]
        if begin.frame:
            result.airlight[:begin.frame] = begin.airlight
        return result
