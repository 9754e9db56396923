"""Request bodies streamed in chunks: a JSON frame around a package's base64, without a whole-body copy.

UpdateFunctionCode and CreateDependencyVersion carry the zip as base64 inside JSON. Building that body as one
``bytes`` (``b64encode`` -> ``decode`` -> ``json.dumps`` -> ``encode``) holds up to four copies of a 50 MB
package at once. An :class:`UploadBody` holds the JSON before and after the package, and the package itself,
and produces the base64 in pieces (whole groups of 3 input bytes, so the pieces join into exactly
``b64encode(data)``) as the body is sent. Its length is known up front (for ``Content-Length`` and the request's
deadline), and it can be iterated again and again: a retry, or a re-send after a 401, sends it whole from the
start.

It is an ``httpx.SyncByteStream``, set as the request's ``stream``, so httpx sends it as it is (never joining it)
and auth flows can tell it apart from a one-shot generator: the AK/SK signer hashes it piece by piece through
:meth:`UploadBody.chunks`, which reports no progress (hashing is not sending). A leaf module (httpx and the
standard library only), so both ``remote`` and ``auth`` import it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Callable, Optional, Union

import httpx

__all__ = ["UPLOAD_CHUNK", "Base64", "ProgressHook", "UploadBody"]

ProgressHook = Callable[[int, int], None]

#: The most a body hands to the transport at once (and the step of its progress reports).
UPLOAD_CHUNK = 256 * 1024
# Input bytes per base64 piece: a multiple of 3, so every piece but the last encodes without padding.
_BASE64_IN = UPLOAD_CHUNK // 4 * 3


class Base64:
    """A span of a body that is the standard base64 (no line breaks) of ``data``, encoded as it is sent."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return 4 * ((len(self.data) + 2) // 3)


Part = Union[bytes, Base64]


class UploadBody(httpx.SyncByteStream):
    """A request body made of byte strings and :class:`Base64` spans, sent in chunks of at most 256 KiB.

    Args:
        parts: the body, in order.
        progress: called with ``(bytes sent, total)`` after each chunk the transport takes.
    """

    def __init__(self, parts: Sequence[Part], *, progress: Optional[ProgressHook] = None) -> None:
        self._parts = tuple(parts)
        self._progress = progress
        #: The body's length in bytes.
        self.length = sum(len(part) for part in self._parts)

    @classmethod
    def json_around(cls, head: bytes, data: bytes, tail: bytes) -> UploadBody:
        """``head + base64(data) + tail``: a JSON document whose one string value is the package's base64."""
        return cls([head, Base64(data), tail])

    def with_progress(self, progress: Optional[ProgressHook]) -> UploadBody:
        """The same body, reporting to ``progress``."""
        return UploadBody(self._parts, progress=progress)

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes in order, in chunks of at most :data:`UPLOAD_CHUNK`, without reporting progress."""
        for part in self._parts:
            if isinstance(part, Base64):
                view = memoryview(part.data)
                for start in range(0, len(view), _BASE64_IN):
                    yield base64.b64encode(view[start : start + _BASE64_IN])
            elif len(part) <= UPLOAD_CHUNK:
                if part:
                    yield part
            else:
                for start in range(0, len(part), UPLOAD_CHUNK):
                    yield part[start : start + UPLOAD_CHUNK]

    def __iter__(self) -> Iterator[bytes]:
        total = self.length
        sent = 0
        for chunk in self.chunks():
            yield chunk
            sent += len(chunk)
            if self._progress is not None:
                self._progress(sent, total)

    def __repr__(self) -> str:
        return f"UploadBody({self.length:,} bytes)"
