"""Batches on a Dask cluster: the inputs of one ``clearnet dehaze`` run spread over its workers.

Dask's ``distributed`` does the scheduling; nothing here is a scheduler. The client plans the
outputs exactly as a local run does (:func:`napari_clearnet.batch.prepare`), then each input is one
task that runs :func:`napari_clearnet.batch.attempt` on a worker: the same checks, the same atomic
writes (each worker writes its own outputs under a temporary name and renames them when complete),
the same outcome per input. A failed input is reported by name and the rest go on; a rerun with
``skip_existing`` resumes. :class:`ModelOnWorker` loads the model once per worker process when the
worker starts, and every task of that process reuses it (:func:`engine.cached_model`).

A clip is one task, whole: its temporal smoothing is a running average over every frame before
it, so frames split over workers would come out different from a single run (and their H.264
pieces would have to be re-joined); a folder of clips spreads over the cluster clip by clip.
Inputs and the output folder must be at the same paths on every worker (a shared file system).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, TextIO

from ._validate import _CLI, cli_spelling
from .batch import BatchReport, Outcome, attempt, interrupted
from .batch_options import BatchOptions
from .batch_plan import BatchError, Planned

__all__ = ["ModelOnWorker", "connect", "run_plans"]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise BatchError("a cluster needs Dask's distributed: pip install "
                         "'napari-clearnet[cluster]'") from None
    return distributed


@contextlib.contextmanager
def connect(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``Client`` of the scheduler at ``address`` (``tcp://HOST:8786``), or of a local cluster of
    ``workers`` processes (one task at a time each; torch gets this machine's cores shared among
    them, where Dask would give every worker process one thread)."""
    distributed = _distributed()
    if (address is None) == (workers is None):
        raise BatchError("give a scheduler address or a number of local workers, not both")
    if address is not None:
        try:
            client = distributed.Client(address, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise BatchError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        with client:
            yield client
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BatchError(f"the number of local workers must be an integer >= 1, got {workers!r}")
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    # Dask's nannies write their workers' settings (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...)
    # into this process's own environment and leave them there: put ours back once they are up
    saved = dict(os.environ)
    try:
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, env=env,
                                      dashboard_address=None) as cluster:
            _restore_environ(saved)
            with distributed.Client(cluster) as client:
                yield client
    finally:
        _restore_environ(saved)


def _restore_environ(saved: dict[str, str]) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


class ModelOnWorker:
    """A Dask worker plugin: when a worker starts (or joins later), load the batch's model into
    that process's cache, so every task there reuses one loaded model."""

    name = "napari-clearnet-model"

    def __init__(self, method: str, model: str | None, device: str) -> None:
        self.method, self.model, self.device = method, model, device

    def setup(self, worker: Any = None) -> None:
        from .engine import cached_model

        cached_model(self.model, method=self.method, device=self.device)


def _plugin_class() -> type:
    """:class:`ModelOnWorker` as a ``distributed.WorkerPlugin`` (distributed is imported only here)."""
    distributed = _distributed()
    return type("ModelOnWorkerPlugin", (ModelOnWorker, distributed.WorkerPlugin), {})


def _work(plan: Planned, opts: BatchOptions, cli: bool) -> Outcome:
    """One input on a worker: the model this process loaded, the batch's own per-input code."""
    from .engine import cached_model

    with cli_spelling() if cli else contextlib.nullcontext():
        try:
            dehazer = cached_model(opts.model, method=opts.method, device=opts.device)
        except (ValueError, OSError) as exc:
            return Outcome("failed", message=f"cannot load the model on this worker: {exc}")
        return attempt(dehazer, plan, opts)


def run_plans(client: Any, plans: list[Planned], opts: BatchOptions, report: BatchReport, err: TextIO,
              show: bool) -> None:
    """Run every planned input as a task on ``client``'s cluster and collect the outcomes in
    ``report`` as they come (progress bar of files on ``err`` when ``show``)."""
    distributed = _distributed()
    from tqdm.auto import tqdm

    plugin = _plugin_class()(opts.method, None if opts.model is None else str(opts.model), opts.device)
    try:
        client.register_plugin(plugin)
    except Exception as exc:  # the model could not be loaded on a worker
        raise BatchError(f"cannot load the model on the workers: {type(exc).__name__}: {exc}") from None
    cli = _CLI.get()
    futures = {client.submit(_work, plan, opts, cli, pure=False, key=f"clearnet-{i}-{plan.source.name}"): plan
               for i, plan in enumerate(plans)}
    bar = tqdm(total=len(futures), desc="dehazing on the cluster", unit="file", file=err, disable=not show)

    def say(msg: str) -> None:
        bar.write(msg, file=err)

    try:
        for future in distributed.as_completed(futures):
            plan = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # the worker died or the task could not run: this input's error
                outcome = Outcome("failed", message=f"its task failed on the cluster: "
                                                    f"{type(exc).__name__}: {exc}")
            report.add(plan, outcome, say)
            bar.update()
            if outcome.kind == "fatal":
                client.cancel(list(futures))
                break
    except KeyboardInterrupt as exc:
        client.cancel(list(futures))
        bar.close()
        interrupted(exc, report, plans[0].image.parent, err)
        raise
    bar.close()
