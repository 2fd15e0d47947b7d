"""``clearnet dehaze`` on files: inputs, planned outputs, options, the batch loop and its report,
and batches on a Dask cluster."""

from __future__ import annotations

from typing import Any

from ..errors import BatchError, OutputFolderError
from .loop import dehaze_files
from .options import BatchOptions
from .runner import BatchReport, Outcome, attempt

__all__ = ["BatchError", "BatchOptions", "BatchReport", "Outcome", "OutputFolderError", "attempt",
           "dehaze_files"]


def __getattr__(name: str) -> Any:  # the rest of the old flat module napari_clearnet.batch
    from .._moved import forward

    return forward(__name__, name, ("batch.runner", "batch.loop"))
