"""What a clip reader repairs, counted and named: frames the decoder rejects (damaged packets)
are shown as the frame before them, frames of another size than the clip's are scaled to it;
``damaged="stop"`` refuses either by name instead. Told once as a :class:`VideoWarning` (the API
and napari) and counted in :attr:`~napari_clearnet.video.VideoReader.notes` (the CLI's notes)."""

from __future__ import annotations

import threading
import warnings

from .probe import ClipInfo

__all__ = ["DAMAGED", "VideoWarning"]

#: what a reader does with a frame that cannot be decoded: show the one before it, or stop
DAMAGED = ("repeat", "stop")
#: how the messages name the option (Python argument and command-line flag)
_OPTION = "damaged='repeat' (--damaged-frames repeat)"


class VideoWarning(UserWarning):
    """A clip was read with frames repeated or scaled (damaged packets, a size change)."""


def _error(info: ClipInfo, why: str) -> ValueError:
    return ValueError(f"cannot read {info.path}: {why}")


def _spans(indices: list[int], most: int = 5) -> str:
    """``[3, 4, 5, 9]`` as "3–5, 9" (the first ``most`` runs)."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in runs[:most])
    return text + (", …" if len(runs) > most else "")


class _Damage:
    """What a reader had to repair: frames shown as the one before them (the decoder rejected
    their data) and frames scaled to the clip's size. ``mode`` "stop" refuses instead, by name."""

    def __init__(self, info: ClipInfo, mode: str, warn: bool) -> None:
        self.info, self.mode, self.warn = info, mode, warn
        self.repeated: set[int] = set()
        self.scaled: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def repeat(self, i: int) -> None:
        if self.mode == "stop":
            raise _error(self.info, f"frame {i} of {self.info.n_frames} cannot be decoded (damaged data); "
                                    f"{_OPTION} shows the frame before it")
        with self._lock:
            self.repeated.add(i)
        self._tell("repeat", f"frame {i} cannot be decoded (damaged data): the frame before it is shown")

    def scale(self, i: int, w: int, h: int) -> None:
        info = self.info
        if self.mode == "stop":
            raise _error(info, f"frame {i} is {w}×{h}, the clip is {info.width}×{info.height} (its stream "
                               f"changed size); {_OPTION} scales it")
        with self._lock:
            self.scaled[i] = (w, h)
        self._tell("scale", f"frame {i} is {w}×{h}: scaled to the clip's {info.width}×{info.height}")

    def _tell(self, kind: str, text: str) -> None:
        if self.warn and kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"{self.info.path}: {text} (later ones are counted in VideoReader.notes)",
                          VideoWarning, stacklevel=4)

    def notes(self) -> list[str]:
        n = self.info.n_frames
        out = []
        with self._lock:
            if self.repeated:
                out.append(f"{len(self.repeated)} of {n} frames could not be decoded (damaged data: frame "
                           f"{_spans(list(self.repeated))}); each shows the frame before it")
            if self.scaled:
                sizes = sorted({f"{w}×{h}" for w, h in self.scaled.values()})
                clip = f"{self.info.width}×{self.info.height}"
                out.append(f"{len(self.scaled)} frames ({_spans(list(self.scaled))}) are {', '.join(sizes)}: "
                           f"scaled to the clip's {clip} (the stream changed size)")
        return out
