"""``clearnet dehaze``: options checked once (messages name the --flags), then the batch runs
locally or on a Dask cluster (``--cluster``, ``--workers``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._util.validate import cli_spelling

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """``clearnet dehaze``: the batch, locally or on a Dask cluster; returns the exit status."""
    from ..batch import BatchError, BatchOptions, dehaze_files

    try:
        if args.method == "dcp" and args.model is not None:  # G24: a --model is never silently ignored
            raise BatchError(f"--model {args.model} is given, but --method dcp uses no weights; leave out "
                             "--model, or use --method clearnet with it")
        with cli_spelling():  # messages name --flags, not Python arguments
            opts = BatchOptions(
                method=args.method, model=args.model, device=args.device, suffix=args.suffix,
                format=args.format, bit_depth=args.bit_depth, overwrite=args.overwrite,
                skip_existing=args.skip_existing, save_transmission=args.save_transmission,
                save_airlight=args.save_airlight, sky_protection=args.sky_protection, quality=args.quality,
                channel_axis=args.channel_axis, value_range=args.value_range, strength=args.strength,
                temporal_smoothing=args.temporal_smoothing, network_every=args.network_every,
                side_by_side=args.side_by_side, crf=args.crf,
                preset=args.preset, damaged_frames=args.damaged_frames, worker_wait=args.worker_wait,
            )
            progress = False if args.no_progress else None  # None: a bar on a terminal only
            if args.cluster is None and args.workers is None:
                report = dehaze_files(args.inputs, args.output, opts, progress=progress)
            else:
                from ..core.limits import WORKER_BYTES, check_processes

                if args.workers is not None and not args.force:
                    try:
                        check_processes(args.workers, "--workers", "--force", WORKER_BYTES)
                    except ValueError as exc:
                        raise BatchError(str(exc)) from None
                report = _on_cluster(args, opts, progress)
    except BatchError as exc:
        print(f"clearnet dehaze: error: {exc}", file=sys.stderr)
        return 2
    print(report.summary(args.output), file=sys.stderr)
    return report.exit_code


def _on_cluster(args: argparse.Namespace, opts: Any, progress: bool | None) -> Any:
    """``--cluster`` / ``--workers``: the model checked before any cluster starts; after a stop, the
    partial files of workers that were killed with the local cluster are removed."""
    from pathlib import Path

    from .._util import files
    from ..batch import dehaze_files
    from ..batch.cluster import check_model, connect

    check_model(opts)
    try:
        with connect(args.cluster, args.workers) as client:
            return dehaze_files(args.inputs, args.output, opts, progress=progress, client=client)
    except KeyboardInterrupt:
        files.remove_stale_parts(Path(args.output).expanduser())  # the workers are gone: unlocked
        raise
