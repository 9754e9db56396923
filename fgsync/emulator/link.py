"""An emulated network link in front of the emulator's sockets: latency per request and a shared bandwidth.

``--latency MS`` holds each request MS before it is read and MS before it is answered, so one request and its
answer cost a round trip of 2 x MS. ``--bandwidth KBIT`` (kilobits, 1,000 bits, per second) paces the bytes
that cross the socket, request bodies and answers alike, headers included.

The link is shared by every connection of a server, as one real uplink would be: concurrent uploads split the
rate between them instead of each getting all of it. Like a real full-duplex link (and ``tc``/netem), each
direction has the whole rate: a big upload does not slow the answers coming down.

Pacing is a reservation on a virtual clock per direction: each chunk of bytes is booked after the chunks
already booked, and the caller sleeps until its chunk's transmission would end. Idle time earns no credit, so
there are no bursts. The socket layer (:mod:`fgsync.emulator.httpserver`) calls :meth:`Link.pace` for every
chunk it reads or writes and :meth:`Link.hold` once before reading and once before answering each request.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from typing import Any, Callable, Optional

UP = "up"
"""Client to emulator: request lines, headers and bodies."""
DOWN = "down"
"""Emulator to client: answers."""

#: Chunks are sized to about this much transmission time, so concurrent connections interleave finely.
_CHUNK_SECONDS = 0.005
_MIN_CHUNK = 1024
_MAX_CHUNK = 64 * 1024


def _check(latency_ms: float, bandwidth_kbit: Optional[float]) -> None:
    if latency_ms < 0:
        raise ValueError(f"latency must be >= 0 ms, not {latency_ms}")
    if bandwidth_kbit is not None and bandwidth_kbit <= 0:
        raise ValueError(f"bandwidth must be a positive number of kbit/s, not {bandwidth_kbit}")


class Link:
    """Latency and bandwidth of the emulated link; thread-safe, changeable while serving.

    Args:
        latency_ms: one-way delay, milliseconds (0: none).
        bandwidth_kbit: rate of each direction in kilobits (1,000 bits) per second; None: unlimited.
        clock: monotonic seconds (for tests).
        sleep: how to wait (for tests).

    Raises:
        ValueError: a negative latency or a bandwidth that is not positive.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        bandwidth_kbit: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check(latency_ms, bandwidth_kbit)
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._latency_ms = float(latency_ms)
        self._bandwidth_kbit = float(bandwidth_kbit) if bandwidth_kbit is not None else None
        self._free = {UP: 0.0, DOWN: 0.0}

    @property
    def latency_ms(self) -> float:
        """One-way delay in milliseconds."""
        return self._latency_ms

    @property
    def bandwidth_kbit(self) -> Optional[float]:
        """Rate of each direction in kbit/s, or None when unlimited."""
        return self._bandwidth_kbit

    @property
    def shaped(self) -> bool:
        """True when the link adds latency or limits bandwidth."""
        return self._latency_ms > 0 or self._bandwidth_kbit is not None

    def configure(self, *, latency_ms: float = 0.0, bandwidth_kbit: Optional[float] = None) -> None:
        """Change both settings at once (0 and None: an ideal link). Requests in flight see the new rate at once.

        Raises:
            ValueError: as the constructor.
        """
        _check(latency_ms, bandwidth_kbit)
        with self._lock:
            self._latency_ms = float(latency_ms)
            self._bandwidth_kbit = float(bandwidth_kbit) if bandwidth_kbit is not None else None
            self._free = {UP: 0.0, DOWN: 0.0}

    def describe(self) -> dict[str, Optional[float]]:
        """``{"latency_ms", "bandwidth_kbit"}`` (for stats and the control API)."""
        return {"latency_ms": self._latency_ms, "bandwidth_kbit": self._bandwidth_kbit}

    def hold(self) -> None:
        """Wait the one-way latency (once before a request is read, once before it is answered)."""
        if self._latency_ms > 0:
            self._sleep(self._latency_ms / 1000.0)

    def chunk_size(self) -> int:
        """How many bytes to move per :meth:`pace` call: ~5 ms of transmission, 1 KB to 64 KB."""
        rate = self._bandwidth_kbit
        if rate is None:
            return _MAX_CHUNK
        return int(min(_MAX_CHUNK, max(_MIN_CHUNK, rate * 1000 / 8 * _CHUNK_SECONDS)))

    def pace(self, direction: str, nbytes: int) -> None:
        """Wait until ``nbytes`` more bytes would have crossed the link in ``direction`` (UP or DOWN)."""
        rate = self._bandwidth_kbit
        if rate is None or nbytes <= 0:
            return
        seconds = nbytes * 8 / (rate * 1000)
        with self._lock:
            now = self._clock()
            end = max(now, self._free[direction]) + seconds
            self._free[direction] = end
        if end > now:
            self._sleep(end - now)


class PacedReader(io.RawIOBase):
    """A socket's receive side, each chunk paced through the link (UP); wrap it in ``io.BufferedReader``."""

    def __init__(self, sock: socket.socket, link: Link) -> None:
        super().__init__()
        self._sock = sock
        self._link = link

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._link.bandwidth_kbit is not None:
            view = view[: self._link.chunk_size()]
        got = self._sock.recv_into(view)
        self._link.pace(UP, got)
        return got


class PacedWriter(io.RawIOBase):
    """A socket's send side, each chunk paced through the link (DOWN)."""

    def __init__(self, sock: socket.socket, link: Link) -> None:
        super().__init__()
        self._sock = sock
        self._link = link

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self._link.bandwidth_kbit is None:
            self._sock.sendall(view)
            return len(view)
        step = self._link.chunk_size()
        for start in range(0, len(view), step):
            piece = view[start : start + step]
            self._link.pace(DOWN, len(piece))
            self._sock.sendall(piece)
        return len(view)
