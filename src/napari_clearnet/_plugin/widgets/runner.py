"""Running a job from a widget: :class:`JobRunner` owns Run and Cancel, the progress bar, the
status line, napari's activity-dock bar and the worker behind them.

A job is a generator of the run loop's progress ``(done, total)`` that returns its result; it runs
in a napari generator worker, Cancel quits it between frames (nothing partial is added), and the
result goes to the widget's ``on_done`` on the GUI thread. Closing the viewer quits a running
worker, and its late signals then touch no deleted widget.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton, Widget
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_error

from ...core.run import Progress
from ...errors import ClearNetError
from ..layers import show_progress

__all__ = ["JobRunner", "RunError"]

Job = Callable[..., Generator[Progress, None, Any]]


class RunError(ClearNetError):
    """A RuntimeError raised by a run, re-raised as this: superqt's worker takes a RuntimeError
    for 'the worker was deleted' and then never emits 'finished' (Run would stay disabled)."""


class JobRunner:
    """Run/Cancel buttons, a progress bar and a status line, and the one worker they drive."""

    def __init__(self, run_text: str = "Run") -> None:
        self.worker: GeneratorWorker | None = None
        self.activity: Any = None  # the run's bar in napari's activity dock
        self.closed = False  # the Qt widget is gone (viewer closed): touch no widget, add nothing
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0, visible=False)
        self.status = Label(label="", value="")
        self.cancel_button.changed.connect(self.cancel)
        #: called on the GUI thread after every run, finished or not
        self.finished: list[Callable[[], None]] = []
        self._on_done: Callable[[Any], None] | None = None

    @property
    def widgets(self) -> list[Widget]:
        """What a panel adds below its own controls."""
        return [Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
                self.progress, self.status]

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, job: Job, args: tuple, on_done: Callable[[Any], None], *, total: int, desc: str,
              message: str = "starting…") -> GeneratorWorker:
        """Run ``job(*args)`` in a worker; its result goes to ``on_done`` (GUI thread)."""
        # connecting 'errored' here stops the worker from re-raising into the Qt event loop
        connect = {"yielded": self._on_progress, "returned": self._on_returned, "errored": self._on_error,
                   "aborted": self._on_aborted, "finished": self._on_finished}
        worker = create_worker(job, *args, _connect=connect, _start_thread=False)
        self.worker, self._on_done = worker, on_done
        self.activity = progress(total=total, desc=desc)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.visible = True
        self.progress.max, self.progress.value = 0, 0  # busy until the first frame count arrives
        self.status.value = message
        worker.start()
        return worker

    def cancel(self, *_: Any) -> None:
        """Stop after the current frame; the results so far are dropped."""
        if self.worker is not None:
            self.status.value = "cancelling…"
            self.worker.quit()

    def teardown(self) -> None:
        """The widget is being destroyed (viewer closed): stop the job at its next frame."""
        self.closed = True
        if self.worker is not None:
            self.worker.quit()

    def _on_progress(self, value: tuple[int, int]) -> None:
        done, total = value
        if not self.closed:
            self.progress.max = total
            self.progress.value = done
            self.status.value = f"frame {done}/{total}" if total > 1 else ("done" if done else "working…")
        if self.activity is not None:  # last: napari's bar processes events, later frames may arrive
            show_progress(self.activity, done, total)

    def _on_returned(self, result: Any) -> None:
        if not self.closed and self._on_done is not None:  # a closed viewer gets no layers
            self._on_done(result)

    def _on_aborted(self) -> None:
        if not self.closed:
            self.status.value = "cancelled"

    def _on_error(self, exc: BaseException) -> None:
        if self.closed:
            return
        self.status.value = "failed"
        if isinstance(exc, RunError) and exc.__cause__ is not None:
            exc = exc.__cause__
        show_error(f"napari-clearnet: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self.worker, self._on_done = None, None
        if self.activity is not None:
            self.activity.close()
            self.activity = None
        if self.closed:
            return
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        self.progress.visible = False
        for hook in self.finished:
            hook()
