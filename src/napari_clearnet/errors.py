"""The package's exceptions: one root, :class:`ClearNetError`, so a caller can catch everything
napari-clearnet refuses with one ``except ClearNetError``.

Each class also derives from the built-in exception callers caught before this root existed
(``ValueError``, ``OSError``, ``RuntimeError``, ``TimeoutError``), so ``except ValueError`` keeps
working. The messages name options as the caller wrote them (``sky_protection`` from Python,
``--sky-protection`` from the shell).

=====================  ===================  ====================================================
class                  also a               raised when
=====================  ===================  ====================================================
``WeightsError``       ``ValueError``       a weights file cannot be used (missing, corrupt,
                                            pickled, wrong architecture, fails the test image)
``HubStalled``         ``TimeoutError``     a download stopped sending bytes
``ImageTooLarge``      ``ValueError``       a file's header declares more pixels or bytes than
                                            the limits allow
``ReplacesInputError`` ``ValueError``       an output would replace one of its own inputs
``MemoryLimitError``   ``ValueError``       work would need more memory or processes than exist
``ResultError``        ``RuntimeError``     a result cannot be right (non-finite, flat)
``BatchError``         ``ValueError``       a batch cannot start (options, inputs, weights)
``OutputFolderError``  ``OSError``          the output folder stopped taking files
=====================  ===================  ====================================================
"""

from __future__ import annotations

__all__ = [
    "BatchError",
    "ClearNetError",
    "HubStalled",
    "ImageTooLarge",
    "MemoryLimitError",
    "OutputFolderError",
    "ReplacesInputError",
    "ResultError",
    "WeightsError",
]


class ClearNetError(Exception):
    """The root of every exception napari-clearnet raises on purpose."""


class WeightsError(ClearNetError, ValueError):
    """A weights file that cannot be used: missing, corrupt, wrong format or wrong architecture."""


class HubStalled(ClearNetError, TimeoutError):
    """No byte of a download arrived for the timeout (huggingface_hub would retry for minutes)."""


class ImageTooLarge(ClearNetError, ValueError):
    """The header declares more pixels or bytes than the limits allow."""


class ReplacesInputError(ClearNetError, ValueError):
    """An output would replace one of its own inputs: refused whatever ``overwrite`` says, since
    ``overwrite=True`` is what a script passes to re-run, not consent to destroy the source."""


class MemoryLimitError(ClearNetError, ValueError):
    """Work that would need more memory (or processes) than this machine has."""


class ResultError(ClearNetError, RuntimeError):
    """A result that cannot be right: non-finite values, or a flat image from a varied input."""


class BatchError(ClearNetError, ValueError):
    """The batch cannot start: bad options, no inputs, unusable output folder or weights."""


class OutputFolderError(ClearNetError, OSError):
    """The output folder stopped taking files (full disk, read-only, no permission)."""
