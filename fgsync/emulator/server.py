"""The loopback server for the Emulator: HTTP/1.1 with keep-alive, threaded, started at once, a context manager."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Optional

from fgsync.emulator.app import Emulator
from fgsync.emulator.httpserver import ThreadingWsgiServer, ThreadingWsgiServer6
from fgsync.emulator.link import Link

log = logging.getLogger(__name__)


class EmulatorServer:
    """A running emulator: ``.url``, ``.emulator``, ``.link``, ``.close()``; a context manager.

    ``link`` is the emulated network link every connection shares: the emulator's own (``Emulator.link``)
    unless :func:`serve` was given a latency or bandwidth of its own.
    """

    def __init__(self, emulator: Emulator, host: str, port: int, *, link: Optional[Link] = None) -> None:
        server_class = ThreadingWsgiServer6 if ":" in host else ThreadingWsgiServer
        self.emulator = emulator
        self.link = link if link is not None else emulator.link
        self._httpd = server_class((host, port), emulator.wsgi_app, self.link, emulator.requests)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        # A short poll interval: close() (shutdown) waits for the serve loop to notice, up to one interval.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fgsync-emulator", daemon=True
        )
        self._thread.start()
        self._closed = False
        log.info("emulator listening on %s (project %s)", self.url, emulator.project_id)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (keep-alive clients reuse one for many requests)."""
        return self._httpd.connections.accepted

    @property
    def connections_open(self) -> int:
        """Connections open now, idle or busy."""
        return self._httpd.connections.open_count()

    def close(self) -> None:
        """Stop serving and release the port (idempotent); idle keep-alive connections are closed at once."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.connections.close_idle()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


def serve(
    emulator: Emulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_ms: Optional[float] = None,
    bandwidth_kbit: Optional[float] = None,
) -> EmulatorServer:
    """Serve an emulator on ``host:port`` (0: a free port) in a background thread, starting at once.

    Args:
        emulator: the app to serve.
        host: address to listen on.
        port: port (0: any free one).
        latency_ms: with ``bandwidth_kbit``, give this server a link of its own instead of the emulator's
            (``Emulator(latency_ms=..., bandwidth_kbit=...)``): milliseconds each way per request.
        bandwidth_kbit: kilobits (1,000 bits) per second in each direction, shared by every connection.

    Raises:
        OSError: the address cannot be bound.
        ValueError: a negative latency or a bandwidth that is not positive.
    """
    link = None
    if latency_ms is not None or bandwidth_kbit is not None:
        link = Link(latency_ms=latency_ms or 0.0, bandwidth_kbit=bandwidth_kbit)
    return EmulatorServer(emulator, host, port, link=link)
