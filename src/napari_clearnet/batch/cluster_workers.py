"""What runs on a Dask worker for a batch: the model plugin, the checks before any work, one input's
task, and the stop request. Plain functions of plain data, so Dask can send them anywhere.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._util.validate import cli_spelling
from ..errors import ClearNetError
from .options import BatchOptions
from .plan import Planned
from .runner import Outcome, attempt

__all__ = ["ModelOnWorker", "Stopped", "check_worker", "request_stop", "work"]

#: runs whose client asked this worker process to stop (see :func:`request_stop`)
_STOPPED: set[str] = set()


class Stopped(ClearNetError, RuntimeError):
    """The run this task belongs to was stopped (Ctrl-C, a terminating signal) on the client."""


class ModelOnWorker:
    """A Dask worker plugin: when a worker starts (or joins later), load the batch's model into
    that process's cache, so every task there reuses one loaded model. A failure is kept (no
    traceback in the worker's log) and said in one line by :func:`check_worker` or the task."""

    name = "napari-clearnet-model"

    def __init__(self, method: str, model: str | None, device: str) -> None:
        self.method, self.model, self.device = method, model, device
        self.error: str | None = None

    def setup(self, worker: Any = None) -> None:
        self.error = _load(self.method, self.model, self.device)


def _load(method: str, model: str | os.PathLike | None, device: str) -> str | None:
    """None when the model is loaded in this process, otherwise why not."""
    from ..api import cached_model

    try:
        cached_model(model, method=method, device=device)
    except Exception as exc:  # WeightsError, a device this worker lacks, a missing file
        return f"{type(exc).__name__}: {exc}"
    return None


def check_worker(out: str, marker: str, token: str, first_input: str) -> str | None:
    """On a worker before any work: None when it sees the client's output folder (the marker file
    the client wrote, with its token), can write there and read the first input; otherwise the
    problem, in one line naming this worker."""
    from distributed import get_worker

    worker = get_worker()
    me = f"the Dask worker {worker.address}"
    shared = "inputs and the output folder must be on a file system every worker shares, at the same path"
    folder = Path(out)
    if not folder.is_dir():
        return f"{me} has no folder {out}: {shared}"
    try:
        seen = (folder / marker).read_text()
    except OSError:
        seen = None
    if seen != token:
        return (f"{me} sees another folder at {out} (a file written there from this machine is not "
                f"there): {shared}")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".clearnet-probe."):
            pass
    except OSError as exc:
        return f"{me} cannot write to {out} ({exc.strerror}): give the workers' user write access"
    if not os.access(first_input, os.R_OK):
        return f"{me} cannot read {first_input}: {shared}"
    plugin = worker.plugins.get(ModelOnWorker.name)
    error = getattr(plugin, "error", None)
    if error:
        return f"cannot load the model on {me}: {error}"
    return None


def request_stop(run_id: str) -> None:
    """Asked on every worker by a stopped client: its run's tasks stop at their next frame."""
    _STOPPED.add(run_id)


def _stop_check(run_id: str) -> Callable[[str, int], Callable[[int, int], None]]:
    """A frame-progress factory for :func:`attempt` that stops a clip between frames once its run
    is stopped (the clip's partial file is removed on the way out, as on Ctrl-C)."""

    def factory(name: str, total: int) -> Callable[[int, int], None]:
        def update(done: int, n: int) -> None:
            if run_id in _STOPPED:
                raise Stopped(f"stopped at frame {done}: the run was stopped")
        return update

    return factory


def work(plan: Planned, opts: BatchOptions, cli: bool, run_id: str) -> Outcome:
    """One input on a worker: the model this process loaded, the batch's own per-input code."""
    from ..api import cached_model

    if run_id in _STOPPED:
        return Outcome("failed", message="not started: the run was stopped")
    with cli_spelling() if cli else contextlib.nullcontext():
        try:
            dehazer = cached_model(opts.model, method=opts.method, device=opts.device)
        except (ValueError, OSError, RuntimeError) as exc:
            return Outcome("failed", message=f"cannot load the model on this worker: {exc}")
        return attempt(dehazer, plan, opts, _stop_check(run_id))
