"""Audio streams copied into a dehazed clip packet by packet (remux: no re-encoding)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["AudioCopy"]


class AudioCopy:
    """Copies a source's audio packets into ``out`` as the video's time passes (remux: no
    re-encoding); an audio codec the container cannot hold is left out, with a note."""

    def __init__(self, out: Any, source: str | os.PathLike | None, notes: list[str]) -> None:
        self._src = None
        self._packets: Any = iter(())
        self._pending: Any = None
        self._map: dict[int, Any] = {}
        self._out = out
        if source is None:
            return
        import av

        self._src = av.open(str(source))
        streams = []
        for a in self._src.streams.audio:
            name = a.codec_context.name
            if name not in out.supported_codecs:
                notes.append(f"its audio ({name}) cannot be copied into {Path(out.name).suffix}; left out")
                continue
            self._map[a.index] = out.add_stream_from_template(a)
            streams.append(a)
        if streams:
            self._packets = self._src.demux(*streams)
            self._pending = self._advance()

    def _advance(self) -> Any:
        for p in self._packets:
            if p.size and (p.pts is not None or p.dts is not None):
                return p
        return None

    def until(self, seconds: float | None) -> None:
        """Copy the packets up to ``seconds`` (None: all that are left)."""
        while self._pending is not None:
            p = self._pending
            stamp = p.pts if p.pts is not None else p.dts
            if seconds is not None and float(stamp * p.time_base) > seconds:
                return
            p.stream = self._map[p.stream_index]
            self._out.mux(p)
            self._pending = self._advance()

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
