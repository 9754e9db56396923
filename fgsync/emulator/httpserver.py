"""The emulator's HTTP/1.1 server: a threaded WSGI server that keeps connections alive, as the real gateway does.

wsgiref speaks HTTP/1.0 and closes every connection; clients that pool connections (httpx, the official SDK
through requests) then pay a new connection per call. This server:

- keeps a connection open between requests (HTTP/1.1 by default; HTTP/1.0 with ``Connection: keep-alive``)
  and closes it on ``Connection: close``, after an idle minute, or when the server closes;
- reads ``Content-Length`` and ``Transfer-Encoding: chunked`` request bodies (``wsgi.input`` ends with the
  body either way, and ``wsgi.input_terminated`` says so), and drains what the app left unread so the next
  request on the connection starts clean (a large unread rest closes the connection, lingering so the client
  still reads the answer instead of a reset);
- drops the connection without a byte when the app raises ``ConnectionError`` (the emulator's injected
  ``DroppedConnection``);
- moves every byte through the server's :class:`~fgsync.emulator.link.Link` (latency, bandwidth);
- tracks idle connections so ``close()`` ends them at once instead of waiting for their idle timeout;
- counts the API requests in flight (from the request line to the last byte of the answer, the link's delays
  included; the control API under ``/_emulator/`` not counted) and their high-water mark (:class:`RequestGauge`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Optional
from urllib.parse import unquote, urlsplit

from fgsync.emulator.httpbody import ChunkedBody, LengthBody
from fgsync.emulator.link import Link, PacedReader, PacedWriter

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: A keep-alive connection with no request for this long is closed (the socket's timeout).
IDLE_TIMEOUT = 60.0
#: After the answer, up to this much of a body the app did not read is drained to keep the connection.
_DRAIN_LIMIT = 4 * 1024 * 1024
#: Closing with unread request bytes makes the kernel send a reset that can destroy the answer in flight;
#: for up to this long the rest is read and discarded first (what nginx calls a lingering close).
_LINGER_SECONDS = 2.0
_NO_BODY_STATUS = (204, 304)


class RequestGauge:
    """How many requests are in flight now, and the most there were at once; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def enter(self) -> None:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)

    def leave(self) -> None:
        with self._lock:
            self.current -= 1

    def reset_peak(self) -> None:
        """Start the high-water mark again from the requests in flight now."""
        with self._lock:
            self.peak = self.current

    def describe(self) -> dict[str, int]:
        with self._lock:
            return {"in_flight": self.current, "peak": self.peak}


class ConnectionBook:
    """Open connections, idle or busy, so the server can end idle keep-alive connections when it closes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: set[socket.socket] = set()
        self._busy: set[socket.socket] = set()
        self._closing = False
        self.accepted = 0

    def opened(self) -> None:
        with self._lock:
            self.accepted += 1

    def set_idle(self, sock: socket.socket) -> bool:
        """Mark a connection as waiting for its next request; False when the server is closing."""
        with self._lock:
            self._busy.discard(sock)
            if self._closing:
                return False
            self._idle.add(sock)
            return True

    def set_busy(self, sock: socket.socket) -> None:
        with self._lock:
            self._idle.discard(sock)
            self._busy.add(sock)

    @property
    def closing(self) -> bool:
        return self._closing

    def forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._idle.discard(sock)
            self._busy.discard(sock)

    def open_count(self) -> int:
        with self._lock:
            return len(self._idle) + len(self._busy)

    def close_idle(self) -> None:
        """From now on no connection waits for another request; the idle ones end now."""
        with self._lock:
            self._closing = True
            idle = list(self._idle)
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the handler's blocked read returns EOF


class WsgiHandler(BaseHTTPRequestHandler):
    """One connection: requests in a loop until either side closes it."""

    protocol_version = "HTTP/1.1"
    server_version = "fgsync-emulator"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: ThreadingWsgiServer

    def setup(self) -> None:
        # Not StreamRequestHandler.setup: its makefile() objects would hold the socket open after close().
        self.connection = self.request
        self.connection.settimeout(self.timeout)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = self.server.link
        self.rfile = io.BufferedReader(PacedReader(self.connection, link), 64 * 1024)
        self.wfile = PacedWriter(self.connection, link)  # type: ignore[assignment]
        self._linger = False
        self.server.connections.opened()

    def finish(self) -> None:
        self.server.connections.forget(self.connection)
        if self._linger:
            self._lingering_close()
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        self.close_connection = True
        try:
            self.handle_one_request()
            while not self.close_connection:
                self.handle_one_request()
        except (ConnectionError, socket.timeout) as exc:
            log.debug("connection from %s ended: %s", self.address_string(), exc)
            self.close_connection = True

    def handle_one_request(self) -> None:
        if not self.server.connections.set_idle(self.connection):
            self.close_connection = True
            return
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (socket.timeout, OSError):
            self.close_connection = True  # idle timeout, reset, or the server shut the socket down
            return
        finally:
            self.server.connections.set_busy(self.connection)
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return
        parts = self.raw_requestline.split()
        counted = not (len(parts) > 1 and parts[1].startswith(b"/_emulator/"))
        gauge = self.server.gauge
        if counted:
            gauge.enter()
        try:
            self.server.link.hold()  # the request travels to the emulator
            if not self.parse_request():
                return
            self._run_app()
        finally:
            if counted:
                gauge.leave()
        if self.server.connections.closing:
            self.close_connection = True

    # ------------------------------------------------------------------ one request

    def _body(self) -> Optional[io.RawIOBase]:
        codings = [c.strip().lower() for v in self.headers.get_all("Transfer-Encoding", []) for c in v.split(",")]
        codings = [c for c in codings if c]
        lengths = {part.strip() for v in self.headers.get_all("Content-Length", []) for part in v.split(",")}
        if codings:
            if codings != ["chunked"]:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, "Only the chunked transfer coding is supported")
                return None
            if lengths:
                self.close_connection = True  # both framings: chunked wins (RFC 9112 6.3), never reuse
            return ChunkedBody(self.rfile)
        if not lengths:
            return LengthBody(self.rfile, 0)
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            self.send_error(HTTPStatus.BAD_REQUEST, "Invalid Content-Length")
            return None
        return LengthBody(self.rfile, int(next(iter(lengths))))

    def _environ(self, body: io.RawIOBase) -> dict[str, Any]:
        target = self.path
        if "://" in target.split("?", 1)[0]:  # absolute-form request target
            parts = urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        path, _, query = target.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, "iso-8859-1"),
            "RAW_URI": target,  # as gunicorn names it: the path as sent, still percent-encoded (OBS signs it)
            "QUERY_STRING": query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": str(self.client_address[0]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            # Every header as received: CONTENT_TYPE below is only set when the request has one, but other WSGI
            # servers invent "text/plain", and OBS's signature covers the raw Content-Type.
            "fgsync.raw_headers": list(self.headers.items()),
        }
        if isinstance(body, LengthBody) and "Content-Length" in self.headers:
            environ["CONTENT_LENGTH"] = str(body.remaining)
        for name, value in self.headers.items():
            # Names with "_" are dropped: "X_Auth_Token" must not pass for X-Auth-Token (the signer skips them).
            if "_" in name:
                continue
            key = name.upper().replace("-", "_")
            if key == "CONTENT_LENGTH":
                continue
            if key != "CONTENT_TYPE":
                key = "HTTP_" + key
            value = value.strip()
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _run_app(self) -> None:
        body = self._body()
        if body is None:
            return
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            started[:] = [status, headers]
            return lambda _data: None

        try:
            result = self.server.app(self._environ(body), start_response)
            try:
                payload = b"".join(bytes(part) for part in result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not started:
                raise RuntimeError("the WSGI app returned without calling start_response")
        except ConnectionError as exc:
            # The emulator's injected DroppedConnection (or the client went away mid-body): no answer at all.
            log.debug("dropping the connection from %s: %s", self.address_string(), exc)
            self.close_connection = True
            return
        except Exception:
            log.exception("the emulator failed on %s %s", self.command, self.path)
            message = {"error_code": "FSS.0500", "error_msg": "Internal server error"}
            started[:] = ["500 Internal Server Error", [("Content-Type", "application/json")]]
            payload = json.dumps(message).encode()
            self.close_connection = True
        if not self._body_consumed(body):
            self.close_connection = True
            self._linger = True
        self.server.link.hold()  # the answer travels back
        self._write(started[0], started[1], payload)

    def _body_consumed(self, body: io.RawIOBase) -> bool:
        """Drain a small unread rest of the body; False when the connection cannot be reused."""
        drained = 0
        try:
            while not getattr(body, "done", True) and drained <= _DRAIN_LIMIT:
                chunk = body.read(64 * 1024)
                if not chunk:
                    break
                drained += len(chunk)
        except (ValueError, OSError):
            return False
        return bool(getattr(body, "done", True))

    def _write(self, status: str, headers: list[tuple[str, str]], payload: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        no_body = code in _NO_BODY_STATUS or code < 200
        self.log_request(code)
        lines = [f"HTTP/1.1 {code} {reason}", f"Server: {self.server_version}"]
        if not any(name.lower() == "date" for name, _ in headers):  # the app's own clock wins (a skewed gateway)
            lines.append(f"Date: {self.date_time_string()}")
        has_length = False
        for name, value in headers:
            lower = name.lower()
            if lower in ("connection", "keep-alive", "transfer-encoding"):
                continue  # hop-by-hop: this server decides
            if lower == "content-length":
                if no_body:
                    continue
                has_length = True
            lines.append(f"{name}: {value}")
        if not has_length and not no_body:
            lines.append(f"Content-Length: {len(payload)}")
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        send_body = not no_body and self.command != "HEAD"
        # One write for small answers: headers and body in separate segments meet Nagle and delayed ACKs.
        self.wfile.write(head + payload if send_body else head)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Protocol errors as the service's JSON error body, and the connection closed."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self.log_error("code %d, message %s", code, message or phrase)
        self.close_connection = True
        self._linger = True
        body = json.dumps({"error_code": f"FSS.{int(code):04d}", "error_msg": message or phrase}).encode()
        self._write(f"{int(code)} {phrase}", [("Content-Type", "application/json")], body)

    def _lingering_close(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            self.connection.settimeout(0.2)
            while time.monotonic() < deadline:
                try:
                    if not self.connection.recv(256 * 1024):
                        return
                except socket.timeout:
                    continue
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def address_string(self) -> str:
        return str(self.client_address[0])


class ThreadingWsgiServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A thread per connection; ``app`` is the WSGI callable, ``link`` the emulated link, ``gauge`` counts requests."""

    daemon_threads = True
    # Requests held by an injected delay must not keep close() waiting.
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], app: WsgiApp, link: Link, gauge: Optional[RequestGauge] = None
    ) -> None:
        self.app = app
        self.link = link
        self.gauge = gauge if gauge is not None else RequestGauge()
        self.connections = ConnectionBook()
        super().__init__(address, WsgiHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="fgsync-emulator-connection",
            daemon=True,
        )
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("emulator connection from %s failed", client_address)


class ThreadingWsgiServer6(ThreadingWsgiServer):
    address_family = socket.AF_INET6
