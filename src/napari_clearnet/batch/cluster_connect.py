"""Reaching a Dask cluster: ``--cluster ADDRESS`` and ``--workers N``, each failure one line, fast.

``distributed.Client`` alone bounds only the TCP connect: a peer that accepts and never speaks
Dask's protocol (an HTTP server, the dashboard port) blocks it for ever, and a refused connection
is retried for its whole timeout. So the address is checked first (scheme, port, TLS settings),
then a plain socket says at once whether anything listens, then Dask's own handshake asks the
peer who it is, all within :data:`PROBE_S` seconds; only a scheduler gets a ``Client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from .plan import BatchError

__all__ = ["PROBE_S", "connect", "distributed_module"]

#: seconds a scheduler has to answer (connect, handshake, identity) before it is given up
PROBE_S = 5.0
_SCHEMES = ("tcp", "tls", "ws", "wss")
_ADDRESS_HELP = "give the scheduler's address, such as tcp://HOST:8786"


def distributed_module() -> Any:
    """Dask's ``distributed``, or a :class:`BatchError` that says how to install it."""
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
    them, where Dask would give every worker process one thread). Any failure to reach a scheduler
    is a :class:`BatchError` of one line within about :data:`PROBE_S` seconds."""
    distributed = distributed_module()
    if (address is None) == (workers is None):
        raise BatchError("give a scheduler address or a number of local workers, not both")
    if address is not None:
        client = _client(distributed, address)
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
        # silence_logs: every failure of a task or a worker is reported by us, per input, in one
        # line; Dask's own log lines (tracebacks of a worker's plugin) would only repeat it
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, env=env,
                                      dashboard_address=None, silence_logs=logging.CRITICAL) as cluster:
            _restore_environ(saved)
            with distributed.Client(cluster) as client:
                yield client
    finally:
        _restore_environ(saved)


def _restore_environ(saved: dict[str, str]) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


def _client(distributed: Any, address: str) -> Any:
    """Check ``address``, make sure a Dask scheduler answers there, then connect."""
    scheme, host, port = _parse(distributed, address)
    security = _security(distributed, scheme, address)
    args = security.get_connection_args("client")
    if scheme in ("tcp", "tls", "ws", "wss"):
        _listens(address, host, port)
    _identify(distributed, address, args)
    try:
        return distributed.Client(address, timeout=PROBE_S * 2, security=security)
    except Exception as exc:  # anything else on the way: one line, never a traceback
        raise BatchError(f"cannot connect to the Dask scheduler at {address}: {_why(exc)}") from None


def _parse(distributed: Any, address: str) -> tuple[str, str, int]:
    text = str(address).strip()
    if text.startswith("inproc://"):
        raise BatchError(f"{address} names a scheduler inside one Python process, which another "
                         f"process cannot reach; {_ADDRESS_HELP}")
    if "://" not in text:
        text = "tcp://" + text
    scheme = text.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise BatchError(f"cannot use {address!r} as a scheduler address: the scheme must be one of "
                         f"{', '.join(s + '://' for s in _SCHEMES)}; {_ADDRESS_HELP}")
    try:
        _, loc = distributed.comm.parse_address(text)
        host, port = distributed.comm.parse_host_port(loc)
    except (ValueError, TypeError) as exc:
        raise BatchError(f"cannot use {address!r} as a scheduler address ({_why(exc)}); "
                         f"{_ADDRESS_HELP}") from None
    if not host or not isinstance(port, int) or not 1 <= port <= 65535:
        raise BatchError(f"cannot use {address!r} as a scheduler address: it needs a host and a port "
                         f"from 1 to 65535; {_ADDRESS_HELP}")
    return scheme, host, port


def _security(distributed: Any, scheme: str, address: str) -> Any:
    """Dask's TLS settings from its config; ``tls://`` without them is refused up front."""
    try:
        security = distributed.Security()
    except Exception as exc:
        raise BatchError(f"Dask's TLS settings cannot be used: {_why(exc)}") from None
    if scheme in ("tls", "wss") and security.get_connection_args("client").get("ssl_context") is None:
        raise BatchError(
            f"{address} needs TLS certificates, and Dask's config names none: set "
            "distributed.comm.tls.ca-file, distributed.comm.tls.client.cert and .key (or the "
            "DASK_DISTRIBUTED__COMM__TLS__... variables), as the cluster's own setup says")
    return security


def _listens(address: str, host: str, port: int) -> None:
    """A refused or unreachable address is said at once, not after Dask's retries."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=PROBE_S):
            return
    except ConnectionRefusedError:
        raise BatchError(f"nothing listens at {address} (connection refused): is the Dask scheduler "
                         "running, and is this its address and port?") from None
    except TimeoutError:
        raise BatchError(f"no answer from {address} within {PROBE_S:g} s (a firewall, or the wrong "
                         "host?)") from None
    except OSError as exc:
        raise BatchError(f"cannot reach {address}: {exc.strerror or exc}") from None


def _identify(distributed: Any, address: str, args: dict[str, Any]) -> None:
    """Ask the peer who it is through Dask's own protocol, bounded: only a scheduler will do."""

    async def ask() -> Any:
        comm = await distributed.comm.connect(address, timeout=PROBE_S, **args)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            with contextlib.suppress(Exception):
                await comm.close()

    not_dask = (f"{address} is not a Dask scheduler (it did not answer Dask's handshake within "
                f"{PROBE_S:g} s): is it the dashboard's port? The scheduler's is usually 8786")
    try:
        identity = asyncio.run(asyncio.wait_for(ask(), PROBE_S))
    except (TimeoutError, asyncio.TimeoutError):
        raise BatchError(not_dask) from None
    except Exception as exc:
        if "ssl" in type(exc).__name__.lower() or "certificate" in str(exc).lower():
            raise BatchError(f"TLS handshake with {address} failed: {_why(exc)}") from None
        raise BatchError(f"{not_dask.split(' (')[0]} ({_why(exc)}): is it the dashboard's port? The "
                         "scheduler's is usually 8786") from None
    kind = identity.get("type") if isinstance(identity, dict) else None
    if kind != "Scheduler":
        what = f"a Dask {kind}" if isinstance(kind, str) else "something else"
        raise BatchError(f"{address} is {what}, not a Dask scheduler; {_ADDRESS_HELP} (the address "
                         "`dask scheduler` prints)")


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
