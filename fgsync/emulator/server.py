"""A threaded loopback HTTP server for the Emulator, started at once and closed as a context manager."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from types import TracebackType
from typing import Any, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from fgsync.emulator.app import Emulator

log = logging.getLogger(__name__)


class _Handler(WSGIRequestHandler):
    """Logs through ``logging`` instead of writing every request line to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def address_string(self) -> str:
        return str(self.client_address[0])


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # Requests held by an injected delay must not keep close() waiting.
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("emulator request from %s failed", client_address)


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class EmulatorServer:
    """A running emulator: ``.url``, ``.emulator``, ``.close()``; a context manager."""

    def __init__(self, emulator: Emulator, host: str, port: int) -> None:
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self.emulator = emulator
        self._httpd = server_class((host, port), _Handler)
        self._httpd.set_app(emulator.wsgi_app)
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

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
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


def serve(emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
    """Serve an emulator on ``host:port`` (0: a free port) in a background thread, starting at once.

    Raises:
        OSError: the address cannot be bound.
    """
    return EmulatorServer(emulator, host, port)
