"""Terminating signals handled like Ctrl-C: SIGTERM and SIGHUP raise :class:`Terminated`, so every
``finally`` removes its partial files; :func:`run_command` turns the outcome into an exit status.
``python -m training`` runs through :func:`run_command` too."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["BROKEN_PIPE_STATUS", "Terminated", "broken_pipe", "run_command", "terminating_signals"]


class Terminated(KeyboardInterrupt):
    """A terminating signal (SIGTERM from ``timeout``, systemd, Docker, Slurm; SIGHUP from a closed
    terminal), raised like Ctrl-C so every ``finally`` cleans up the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.reason = f"terminated by {signal.Signals(signum).name}"


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def terminating_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (a KeyboardInterrupt), so
    partial files are removed as on Ctrl-C. Signals a parent set to be ignored (``nohup``) stay
    ignored; the previous handlers come back afterwards. Only the main thread can do this."""
    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue
            old[sig] = signal.signal(sig, _raise_terminated)
        except (ValueError, OSError):  # not the main thread
            continue
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run_command(func: Callable[[], int | None]) -> int:
    """Run a command's work with terminating signals cleaned up like Ctrl-C; returns the exit
    status (128+N after signal N, 130 after Ctrl-C). ``python -m training`` runs through it too."""
    try:
        with terminating_signals():
            return int(func() or 0)
    except Terminated as exc:
        if not getattr(exc, "reported", False):  # a batch has said it, with what was done
            print(exc.reason, file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt as exc:
        if not getattr(exc, "reported", False):
            print("interrupted", file=sys.stderr)
        return 130


#: the exit status of a command whose reader went away (128 + SIGPIPE), as Unix tools report it
BROKEN_PIPE_STATUS = 128 + 13


def broken_pipe() -> int:
    """The reader of stdout went away (``clearnet … | head``): stop quietly, as Unix tools do.
    Files are written before anything is printed, so nothing is lost; stdout is pointed at the
    null device so the interpreter's own final flush does not complain again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or closed
        pass
    return BROKEN_PIPE_STATUS
