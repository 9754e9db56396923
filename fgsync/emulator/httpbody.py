"""Request body framing for the emulator's HTTP/1.1 server: ``Content-Length`` and ``Transfer-Encoding: chunked``.

Both are the ``wsgi.input`` of one request: reads end where the body ends (EOF), never in the next request
on the connection, and ``done`` says whether the whole body was read (so the server knows whether the
connection can carry another request).
"""

from __future__ import annotations

import io
from typing import Any, Optional

_MAX_CHUNK_LINE = 4096


class BadBody(ValueError):
    """A malformed chunked body (the app answers 400; the connection is closed)."""


class LengthBody(io.RawIOBase):
    """``wsgi.input`` for a ``Content-Length`` body: reads end at the body's end."""

    def __init__(self, rfile: io.BufferedIOBase, length: int) -> None:
        super().__init__()
        self._rfile = rfile
        self.remaining = length

    def readable(self) -> bool:
        return True

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.remaining)
        if wanted == 0:
            return 0
        data = self._rfile.read(wanted)
        if not data:
            raise ConnectionResetError("the client closed the connection before the body was complete")
        view[: len(data)] = data
        self.remaining -= len(data)
        return len(data)

    def read(self, size: Optional[int] = -1) -> bytes:
        if size is None or size < 0:
            size = self.remaining
        out = bytearray()
        while len(out) < size and self.remaining:
            chunk = bytearray(min(size - len(out), 1024 * 1024))
            got = self.readinto(chunk)
            out += chunk[:got]
        return bytes(out)


class ChunkedBody(io.RawIOBase):
    """``wsgi.input`` for ``Transfer-Encoding: chunked``: decoded data, then EOF after the last chunk."""

    def __init__(self, rfile: io.BufferedIOBase) -> None:
        super().__init__()
        self._rfile = rfile
        self._left = 0  # data bytes left in the current chunk
        self.done = False
        self._broken = False

    def readable(self) -> bool:
        return True

    def _line(self) -> bytes:
        line = self._rfile.readline(_MAX_CHUNK_LINE + 1)
        if not line:
            raise ConnectionResetError("the client closed the connection inside a chunked body")
        if len(line) > _MAX_CHUNK_LINE or not line.endswith(b"\n"):
            raise BadBody("a chunk-size line is too long")
        return line

    def _next_chunk(self) -> bool:
        """Read the next chunk's size line; True after the last chunk (and the trailer) was read."""
        size_text = self._line().split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise BadBody(f"invalid chunk size {size_text[:20]!r}")
        self._left = int(size_text, 16)
        if self._left == 0:
            while self._line() not in (b"\r\n", b"\n"):  # trailer fields, ignored
                pass
            self.done = True
        return self.done

    def readinto(self, buffer: Any) -> int:
        if self._broken:
            raise BadBody("the chunked body is malformed")
        try:
            return self._readinto(buffer)
        except BadBody:
            self._broken = True
            raise

    def _readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.done or not len(view):
            return 0
        if self._left == 0 and self._next_chunk():
            return 0
        data = self._rfile.read(min(len(view), self._left))
        if not data:
            raise ConnectionResetError("the client closed the connection inside a chunked body")
        view[: len(data)] = data
        self._left -= len(data)
        if self._left == 0 and self._rfile.read(2) not in (b"\r\n",):
            raise BadBody("a chunk does not end with CRLF")
        return len(data)

    def read(self, size: Optional[int] = -1) -> bytes:
        out = bytearray()
        while size is None or size < 0 or len(out) < size:
            want = 1024 * 1024 if size is None or size < 0 else min(size - len(out), 1024 * 1024)
            chunk = bytearray(want)
            got = self.readinto(chunk)
            if not got:
                break
            out += chunk[:got]
        return bytes(out)
