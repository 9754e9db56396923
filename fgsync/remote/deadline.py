"""An overall deadline per HTTP request: connect, send, wait and read the whole answer within a budget.

httpx's timeouts bound each socket operation, not the request: a server that sends one byte a second keeps
every read short and the request alive forever. fgsync gives each request a budget (``request_timeout_s``
plus the time its body needs at :data:`UPLOAD_BYTES_PER_S`) and enforces it below httpx, where the sockets
are: a network backend whose streams bound every connect, TLS handshake, send and receive by the time left.
No operation can then outlast the deadline, and no thread has to interrupt a blocked read from outside
(closing a socket from another thread does not wake a ``recv`` on every platform; a timeout on the call does).

The deadline of the request in progress lives in a :class:`~contextvars.ContextVar`: httpx's sync client does
all of a request's I/O in the calling thread, so several threads sharing one client and one connection pool
each see their own request's deadline. Outside :func:`request_deadline` the streams behave exactly as httpcore's.

Installing the backend reaches into httpx (``Client._transport``, ``Client._mounts``,
``HTTPTransport._pool``) and httpcore (``ConnectionPool._network_backend``), stable since httpx 0.18 and
httpcore 0.17; :func:`install_deadlines` returns how many pools it fitted, and the tests (a server that
trickles bytes) fail if a new httpx moves them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import httpcore
import httpx

log = logging.getLogger(__name__)

#: The slowest upload a request's budget allows for: 100 KB/s (KB = 1,024 bytes, as the SPEC's MB are).
UPLOAD_BYTES_PER_S = 100 * 1024
# Sends are cut into pieces this big so that each piece, not the whole body, gets its own bound.
_SEND_PIECE = 64 * 1024

SocketOption = Union[tuple[int, int, int], tuple[int, int, Union[bytes, bytearray]], tuple[int, int, None, int]]


def request_budget(request_timeout: float, body_bytes: int = 0) -> float:
    """Seconds one request may take: ``request_timeout`` plus ``body_bytes`` at :data:`UPLOAD_BYTES_PER_S`."""
    return request_timeout + body_bytes / UPLOAD_BYTES_PER_S


@dataclass
class Deadline:
    """When the request in progress must be over (``at``, on ``clock``), and its budget in seconds."""

    seconds: float
    at: float
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    #: The last bound given to a socket operation was the time left (not the operation's own timeout), so a
    #: timeout of that operation is this deadline expiring.
    bound_by_deadline: bool = False

    def remaining(self) -> float:
        return self.at - self.clock()

    def expired(self) -> bool:
        return self.bound_by_deadline or self.remaining() <= 0

    def bound(self, timeout: Optional[float], timeout_error: type[Exception]) -> float:
        """The timeout for one socket operation: its own, or the time left when that is shorter.

        Raises:
            timeout_error: the deadline has passed already (httpcore's ReadTimeout, WriteTimeout, ...).
        """
        left = self.remaining()
        if left <= 0:
            self.bound_by_deadline = True
            raise timeout_error(f"no complete answer within {self.seconds:g} s")
        self.bound_by_deadline = timeout is None or left <= timeout
        return left if timeout is None else min(timeout, left)


_CURRENT: contextvars.ContextVar[Optional[Deadline]] = contextvars.ContextVar("fgsync_request_deadline", default=None)


@contextlib.contextmanager
def request_deadline(seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Iterator[Deadline]:
    """Every socket operation in this block, in this thread, ends by ``seconds`` from now."""
    current = Deadline(seconds=seconds, at=clock() + seconds, clock=clock)
    token = _CURRENT.set(current)
    try:
        yield current
    finally:
        _CURRENT.reset(token)


def _bound(timeout: Optional[float], timeout_error: type[Exception]) -> Optional[float]:
    current = _CURRENT.get()
    return timeout if current is None else current.bound(timeout, timeout_error)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation is bounded by the current request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        return self._inner.read(max_bytes, _bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        # httpcore sends a buffer in a loop of send() calls, each with the same timeout; a reader that takes
        # a byte at a time would stretch that loop far past the deadline, so each piece gets a fresh bound.
        for start in range(0, len(buffer), _SEND_PIECE):
            self._inner.write(buffer[start : start + _SEND_PIECE], _bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> httpcore.NetworkStream:
        bounded = _bound(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend, with deadline-bounded connections."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable[SocketOption]] = None,
    ) -> httpcore.NetworkStream:
        bounded = _bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: Optional[float] = None,
        socket_options: Optional[Iterable[SocketOption]] = None,
    ) -> httpcore.NetworkStream:
        bounded = _bound(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install_deadlines(client: httpx.Client) -> int:
    """Fit the deadline backend into every connection pool of ``client``; returns how many were fitted.

    Transports without a pool (``MockTransport``, ``WSGITransport`` in tests) are left alone: they have no
    sockets to bound.
    """
    transports: list[Any] = [getattr(client, "_transport", None)]
    transports += list(getattr(client, "_mounts", {}).values())
    fitted = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, _DeadlineBackend):
            fitted += 1
        elif isinstance(backend, httpcore.NetworkBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
            fitted += 1
        elif isinstance(transport, httpx.HTTPTransport):
            log.warning("cannot fit request deadlines into %r (httpx changed?): only per-read timeouts", transport)
    return fitted
