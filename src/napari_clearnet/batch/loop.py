"""The batch loop: :func:`dehaze_files`, every input in turn (or spread over a Dask cluster),
with progress bars and a report. Per-input work is :func:`.runner.attempt`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from ..api import load_model
from ..core.engine import Dehazer
from ..errors import BatchError
from .cluster import run_plans
from .options import BatchOptions
from .runner import BatchReport, _isatty, attempt, interrupted, prepare

__all__ = ["dehaze_files"]

def dehaze_files(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    options: BatchOptions | None = None,
    *,
    dehazer: Dehazer | None = None,
    client: Any = None,
    progress: bool | None = None,
    stderr: TextIO | None = None,
    **kwargs: Any,
) -> BatchReport:
    """Dehaze every input (images and clips) into ``out_dir``; problems are printed to ``stderr``
    and collected.

    Parameters
    ----------
    inputs : iterable of str or path
        Image and video files, folders (their images and clips) or glob patterns.
    out_dir : str or path
        The output folder (created if needed); an input is never replaced.
    options : BatchOptions, optional
        How; or give its fields as keyword arguments.
    dehazer : Dehazer, optional
        A loaded model to reuse (otherwise weights load once here).
    client : dask.distributed.Client, optional
        Spread the inputs over its cluster's workers (see :mod:`napari_clearnet.batch.cluster`).
    progress : bool, optional
        tqdm bars (files; a clip's frames); None: only on a terminal.
    stderr : text stream, optional
        Where problems and notes go (default ``sys.stderr``).
    **kwargs
        Fields of :class:`BatchOptions`.

    Returns
    -------
    BatchReport
        What was written, skipped and failed; ``exit_code`` as the CLI's.

    Raises
    ------
    BatchError
        Nothing can start (options, inputs, output folder, weights).
    KeyboardInterrupt
        Passes through after finished files are complete and no ``.part`` file is left; a clip
        stopped part way keeps its partial clip, which ``skip_existing`` carries on (its outputs
        are named on the exception's ``partial_clips``).
    """
    opts = options or BatchOptions(**kwargs)
    err = stderr or sys.stderr
    out = Path(out_dir).expanduser()
    if client is not None:  # a worker would resolve a relative path against its own folder
        inputs = [os.path.abspath(os.path.expanduser(os.fspath(i))) for i in inputs]
        out = Path(os.path.abspath(out))
    report = BatchReport()
    plans = prepare(inputs, out, opts, report, err)
    show = _isatty(err) if progress is None else progress
    if client is not None:
        run_plans(client, plans, opts, report, err, show, out)
        return report
    if dehazer is None:
        try:
            dehazer = load_model(opts.model, method=opts.method, device=opts.device)
        except (ValueError, OSError) as exc:  # WeightsError is a ValueError
            raise BatchError(f"cannot load the model: {exc}") from None
    from tqdm.auto import tqdm

    bar = tqdm(plans, desc="dehazing", unit="file", file=err, disable=not show)

    def say(msg: str) -> None:
        bar.write(msg, file=err)

    def frames_bar(name: str, total: int) -> Callable[[int, int], None]:
        inner = tqdm(total=total or None, desc=name, unit="frame", file=err, disable=not show, leave=False)

        def update(done: int, n: int) -> None:
            inner.total = n
            inner.update(done - inner.n)
            if done >= n:
                inner.close()
        return update

    try:
        for plan in bar:
            outcome = attempt(dehazer, plan, opts, frames_bar)
            report.add(plan, outcome, say)
            if outcome.kind == "fatal":
                break
    except KeyboardInterrupt as exc:
        bar.close()
        interrupted(exc, report, out, err)
        raise
    bar.close()
    return report
