"""Progress in napari's activity dock for work that runs off the GUI thread.

napari's progress bars become Qt widgets, which may only be made and changed on the GUI thread.
Frames are counted there already (from a worker's yields). Download bytes arrive in the download's
own thread, so :class:`DownloadProgress`, the tqdm class huggingface_hub is given, hands every
change to a :class:`_Twin` on the GUI thread, which keeps the napari progress bar.
"""

from __future__ import annotations

from typing import Any

from superqt.utils import ensure_main_thread
from tqdm.auto import tqdm

__all__ = ["DownloadProgress"]


class _Twin:
    """The GUI-thread side of one download bar. Making a napari bar can process queued events,
    so updates and the close may arrive before the bar exists: they are kept and applied."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.pending = 0
        self.closed = False

    def open(self, total: int | None, initial: int, desc: str) -> None:
        from napari.utils import progress

        bar = progress(total=total, initial=initial, desc=desc, unit="B", unit_scale=True)
        if self.pending:
            bar.update(self.pending)
        self.bar = bar
        if self.closed:
            bar.close()

    def update(self, n: int) -> None:
        if self.bar is None:
            self.pending += n
        else:
            self.bar.update(n)

    def close(self) -> None:
        self.closed = True
        if self.bar is not None:
            self.bar.close()


@ensure_main_thread
def _call(twin: _Twin, method: str, *args: Any) -> None:
    getattr(twin, method)(*args)


class DownloadProgress(tqdm):
    """A silent tqdm whose changes show on a napari progress bar kept on the GUI thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "disable": True})
        self._twin = _Twin()
        self._closed = False
        total = kwargs.get("total")
        _call(self._twin, "open", None if total is None else int(total), int(kwargs.get("initial") or 0),
              kwargs.get("desc") or "download")

    def update(self, n: float | None = 1) -> bool | None:
        _call(self._twin, "update", int(n or 0))  # Qt's bars count in integers
        return super().update(n)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _call(self._twin, "close")
        super().close()
