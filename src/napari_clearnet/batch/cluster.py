"""Batches on a Dask cluster: the inputs of one ``clearnet dehaze`` run spread over its workers.

Dask's ``distributed`` does the scheduling; nothing here is a scheduler. The client plans the
outputs exactly as a local run does (:func:`napari_clearnet.batch.prepare`), with every path made
absolute on the client (a worker would resolve a relative one against its own folder), then each
input is one task that runs :func:`napari_clearnet.batch.attempt` on a worker: the same checks,
the same atomic writes, the same outcome per input. Before any task, the run waits (bounded, and
says so) for a worker, checks on every worker that the output folder is the one this machine sees
and takes files, and that the model loads; the model is checked here first, so a typo costs no
cluster. Each failure is one line. A failed input is reported by name and the rest go on; a rerun
with ``skip_existing`` resumes. Stopping a run asks the workers to stop between frames and removes
the partial files they leave (:mod:`napari_clearnet.cluster_workers`).

A clip is one task, whole: its temporal smoothing is a running average over every frame before
it, so frames split over workers would come out different from a single run (and their H.264
pieces would have to be re-joined); a folder of clips spreads over the cluster clip by clip.
Inputs and the output folder must be at the same paths on every worker (a shared file system).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from .._util import files
from .._util.validate import _CLI, option
from ..video.partial import PARTIAL_PATTERN, remove_useless
from .cluster_connect import connect, distributed_module
from .cluster_workers import ModelOnWorker, check_worker, request_stop, work
from .options import BatchOptions
from .plan import BatchError, Planned
from .runner import BatchReport, Outcome, interrupted

__all__ = ["ModelOnWorker", "check_model", "connect", "run_plans"]

#: seconds between looks at the cluster while waiting for outcomes
POLL_S = 1.0
#: seconds a stopped run waits for its workers to remove their partial files
STOP_WAIT_S = 10.0
#: seconds the workers have to answer the checks before any work
CHECK_S = 60.0


def check_model(opts: BatchOptions) -> None:
    """Load the batch's weights here, as the workers will: a missing or bad model is one line
    before any cluster starts or any worker tries it."""
    if opts.method == "dcp":
        return
    from ..weights import DEFAULT_MODEL, read_weights, resolve

    try:
        path, _ = resolve(opts.model or DEFAULT_MODEL)
        read_weights(path)
    except (ValueError, OSError) as exc:  # WeightsError is a ValueError
        raise BatchError(f"cannot load the model: {exc}") from None


def _plugin_class() -> type:
    """:class:`ModelOnWorker` as a ``distributed.WorkerPlugin`` (distributed is imported only here)."""
    distributed = distributed_module()
    return type("ModelOnWorkerPlugin", (ModelOnWorker, distributed.WorkerPlugin), {})


def _workers(client: Any) -> list[str]:
    try:
        return list(client.nthreads())
    except Exception:  # the scheduler itself is gone
        return []


def _wait_for_workers(client: Any, wait_s: float, err: TextIO) -> None:
    """At least one worker, within ``wait_s`` seconds (a queued batch job, workers still starting)."""
    if _workers(client):
        return
    where = getattr(client.scheduler, "address", "the scheduler")
    print(f"waiting up to {wait_s:g} s for a Dask worker to join the scheduler at {where} ...", file=err)
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except Exception:
        raise BatchError(f"no Dask worker joined the scheduler at {where} within {wait_s:g} s; start "
                         f"workers (dask worker {where}) or wait longer with "
                         f"{option('worker_wait')}") from None


def _check_workers(client: Any, plans: list[Planned], out: Path, opts: BatchOptions) -> None:
    """On every worker: the output folder is this machine's (a marker written here is seen there)
    and takes files, the first input is readable, the model loads. One line for the first problem."""
    distributed = distributed_module()
    plugin = _plugin_class()(opts.method, None if opts.model is None else str(opts.model), opts.device)
    try:
        client.register_plugin(plugin)  # failures are kept by the plugin, and reported below
    except Exception as exc:
        raise BatchError(f"cannot set the workers up: {type(exc).__name__}: {exc}") from None
    token = secrets.token_hex(8)
    marker = out / f".clearnet-probe.{token}"
    marker.write_text(token)
    try:
        futures = [client.submit(check_worker, str(out), marker.name, token, str(plans[0].source),
                                 pure=False, workers=[w], allow_other_workers=False,
                                 key=f"clearnet-check-{token}-{i}")
                   for i, w in enumerate(_workers(client))]
        try:
            distributed.wait(futures, timeout=CHECK_S)
        except Exception:
            raise BatchError(f"the Dask workers did not answer within {CHECK_S:g} s") from None
        for future in futures:
            try:
                problem = future.result()
            except Exception as exc:
                problem = (f"the workers cannot run napari-clearnet ({type(exc).__name__}: {exc}); "
                           "install napari-clearnet[cluster] on every worker")
            if problem:
                raise BatchError(problem)
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()


def _failure(exc: BaseException) -> str:
    if type(exc).__name__ == "KilledWorker":
        return "the worker processing it died (killed, out of memory or crashed), on every try"
    return f"its task failed on the cluster: {type(exc).__name__}: {' '.join(str(exc).split())}"


def run_plans(client: Any, plans: list[Planned], opts: BatchOptions, report: BatchReport, err: TextIO,
              show: bool, out: Path) -> None:
    """Run every planned input as a task on ``client``'s cluster and collect the outcomes in
    ``report`` as they come (progress bar of files on ``err`` when ``show``)."""
    distributed = distributed_module()
    from tqdm.auto import tqdm

    check_model(opts)
    _wait_for_workers(client, opts.worker_wait, err)
    _check_workers(client, plans, out, opts)
    cli = _CLI.get()
    run_id = secrets.token_hex(6)
    futures = {client.submit(work, plan, opts, cli, run_id, pure=False,
                             key=f"clearnet-{run_id}-{i}-{plan.source.name}"): plan
               for i, plan in enumerate(plans)}
    bar = tqdm(total=len(futures), desc="dehazing on the cluster", unit="file", file=err, disable=not show)

    def say(msg: str) -> None:
        bar.write(msg, file=err)

    pending = set(futures)
    alone_since: float | None = None
    try:
        while pending:
            try:
                done, _ = distributed.wait(list(pending), timeout=POLL_S, return_when="FIRST_COMPLETED")
            except (TimeoutError, distributed.TimeoutError):
                done = set()
            if not done:
                alone_since = _still_workers(client, alone_since, opts.worker_wait, len(pending))
                continue
            alone_since = None
            for future in done:
                pending.discard(future)
                plan = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # the worker died or the task could not run: this input's error
                    outcome = Outcome("failed", message=_failure(exc))
                report.add(plan, outcome, say)
                bar.update()
                if outcome.kind == "fatal":
                    pending.clear()
            if report.fatal:
                client.cancel(list(futures))
    except BatchError as exc:
        client.cancel(list(futures))
        bar.close()
        report.fatal = str(exc)
        print(f"error: {exc}", file=err)
        return
    except KeyboardInterrupt as exc:
        bar.close()
        stop(client, list(futures), run_id, out)
        interrupted(exc, report, out, err)
        raise
    bar.close()


def _still_workers(client: Any, since: float | None, wait_s: float, left: int) -> float | None:
    """While outcomes are awaited: when no worker is left for ``wait_s`` seconds, the run stops."""
    if _workers(client):
        return None
    now = time.monotonic()
    if since is None:
        return now
    if now - since > wait_s:
        raise BatchError(f"no Dask worker has been left at the scheduler for {wait_s:g} s, with "
                         f"{left} input(s) not done; rerun with {option('skip_existing')} when workers "
                         "are back")
    return since


def stop(client: Any, futures: list[Any], run_id: str, out: Path) -> None:
    """Stop a run: cancel what has not started, ask the workers to stop what has (between frames,
    removing their partial files), then remove what stopped workers left, within :data:`STOP_WAIT_S`."""
    with contextlib.suppress(Exception):
        client.cancel(futures)

    def ask() -> None:
        with contextlib.suppress(Exception):
            client.run(request_stop, run_id)  # (wait=False would drop it)

    asking = threading.Thread(target=ask, daemon=True)  # a hung worker must not hang the stop
    asking.start()
    asking.join(STOP_WAIT_S / 2)
    deadline = time.monotonic() + STOP_WAIT_S
    while True:
        files.remove_stale_parts(out)  # those whose writer has stopped or died (unlocked)
        remove_useless(out)  # partial clips a dead worker left before their first keyframe
        if not any(files.PART_PATTERN.match(p.name) or (PARTIAL_PATTERN.match(p.name) and files.held(p))
                   for p in _listing(out)) or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []
