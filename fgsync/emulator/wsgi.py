"""WSGI plumbing for the emulator: reading bodies within the gateway's limits, routing and JSON answers."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, Callable, Optional

from fgsync.emulator.store import EmulatorError

StartResponse = Callable[..., Any]
WsgiEnviron = dict[str, Any]

#: The largest body the emulator reads at all: a 50 MB package is about 70 MB of base64 in JSON.
MAX_BODY = 100 * 1024 * 1024
_CHUNK = 1024 * 1024

_FGS = r"^/v2/(?P<project>[^/]+)/fgs/functions"
_DEPS = r"^/v2/(?P<project>[^/]+)/fgs/dependencies"
ROUTE_TABLE: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("POST", "iam_token", re.compile(r"^/v3/auth/tokens/?$")),
    ("POST", "iam_securitytokens", re.compile(r"^/v3\.0/OS-CREDENTIAL/securitytokens/?$")),
    ("POST", "create_function", re.compile(_FGS + r"/?$")),
    ("GET", "show_code", re.compile(_FGS + r"/(?P<urn>[^/]+)/code/?$")),
    ("PUT", "update_code", re.compile(_FGS + r"/(?P<urn>[^/]+)/code/?$")),
    ("GET", "show_config", re.compile(_FGS + r"/(?P<urn>[^/]+)/config/?$")),
    ("POST", "invoke", re.compile(_FGS + r"/(?P<urn>[^/]+)/invocations/?$")),
    ("POST", "create_dependency_version", re.compile(_DEPS + r"/version/?$")),
    ("GET", "list_dependencies", re.compile(_DEPS + r"/?$")),
    ("GET", "list_dependency_versions", re.compile(_DEPS + r"/(?P<depend_id>[^/]+)/version/?$")),
    ("GET", "show_dependency_version", re.compile(_DEPS + r"/(?P<depend_id>[^/]+)/version/(?P<version>[^/]+)/?$")),
    ("DELETE", "delete_dependency_version", re.compile(_DEPS + r"/(?P<depend_id>[^/]+)/version/(?P<version>[^/]+)/?$")),
)


@dataclasses.dataclass
class Answer:
    """An HTTP answer: status, JSON (or raw) body and extra headers.

    ``content_length`` overrides ``len(body)`` for a HEAD answer, which has the length of a body it does not send.
    """

    status: int
    body: bytes
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    content_type: str = "application/json"
    content_length: Optional[int] = None


def json_answer(status: int, payload: Any, headers: Optional[list[tuple[str, str]]] = None) -> Answer:
    """A JSON answer."""
    return Answer(status, json.dumps(payload).encode("utf-8"), list(headers or []))


def error_answer(error: EmulatorError) -> Answer:
    """The service's error body: ``{"error_code": ..., "error_msg": ...}`` (and ``Retry-After`` when it says)."""
    headers = [("Retry-After", f"{error.retry_after:g}")] if error.retry_after is not None else []
    return json_answer(error.status, {"error_code": error.code, "error_msg": error.message}, headers)


class IamError(EmulatorError):
    """An error of IAM's token call, answered Keystone-style instead of FunctionGraph's body."""


def iam_error(status: int, message: str) -> IamError:
    """An IAM error (see :func:`iam_error_answer`)."""
    return IamError(status, f"IAM.{status}", message)


def iam_error_answer(error: EmulatorError) -> Answer:
    """``{"error": {"code": 401, "message": ..., "title": "Unauthorized"}}`` as IAM writes it."""
    try:
        title = HTTPStatus(error.status).phrase
    except ValueError:
        title = "Error"
    return json_answer(error.status, {"error": {"code": error.status, "message": error.message, "title": title}})


def new_request_id() -> str:
    """A request id like the gateway's: 32 hex digits."""
    return uuid.uuid4().hex


def match_route(method: str, path: str) -> tuple[Optional[str], dict[str, str], bool]:
    """(route, path parameters, path known) for a request; route is None when nothing matches."""
    known = False
    for route_method, route, pattern in ROUTE_TABLE:
        found = pattern.match(path)
        if found:
            known = True
            if route_method == method:
                return route, found.groupdict(), True
    return None, {}, known


def header(environ: Mapping[str, Any], name: str) -> Optional[str]:
    """A request header by its HTTP name."""
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    value = environ.get(key)
    return None if value is None else str(value)


def content_length(environ: Mapping[str, Any]) -> int:
    """The declared body length (0 when absent or unreadable)."""
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def _read_to_end(stream: Any, *, limit: int) -> bytes:
    """A body without a declared length (chunked): read to its end, refusing more than ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                return b"".join(parts)
            total += len(chunk)
            if total > limit:
                while total <= MAX_BODY and chunk:  # drained, so the client reads the 413 (see read_body)
                    chunk = stream.read(_CHUNK)
                    total += len(chunk)
                raise EmulatorError(413, "FSS.0413", f"Request body too large: the limit is {limit} bytes")
            parts.append(chunk)
    except ValueError as exc:  # the server's chunked decoder found a malformed body
        raise EmulatorError(400, "FSS.0400", f"Malformed chunked request body: {exc}") from None


def read_body(environ: Mapping[str, Any], *, limit: int) -> bytes:
    """Read the request body, or drain it and answer 413 when it is over ``limit`` bytes.

    A ``Content-Length`` body is read to that length; a chunked one (no length, ``wsgi.input_terminated``
    or ``Transfer-Encoding: chunked``) to its end. Draining matters: a server that answers without reading
    makes the client see a reset connection instead of the 413.

    Raises:
        EmulatorError: 413 FSS.0413 when the body is too large; 400 FSS.0400 for a malformed chunked body.
    """
    stream = environ["wsgi.input"]
    if not environ.get("CONTENT_LENGTH"):
        chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
        if chunked or environ.get("wsgi.input_terminated"):
            return _read_to_end(stream, limit=limit)
    length = content_length(environ)
    if length > limit:
        if length <= MAX_BODY:
            remaining = length
            while remaining > 0:
                chunk = stream.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
        raise EmulatorError(413, "FSS.0413", f"Request body too large: {length} bytes, the limit is {limit} bytes")
    if length == 0:
        return b""
    parts = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(_CHUNK, remaining))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def parse_json_object(body: bytes, *, what: str = "request body") -> dict[str, Any]:
    """A JSON object from a body.

    Raises:
        EmulatorError: 400 FSS.0400 when the body is not a JSON object.
    """
    try:
        value = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        raise EmulatorError(400, "FSS.0400", f"The {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise EmulatorError(400, "FSS.0400", f"The {what} must be a JSON object")
    return value


def respond(start_response: StartResponse, answer: Answer, request_id: str) -> Iterable[bytes]:
    """Send an answer; every answer carries ``X-Request-Id``."""
    phrase = HTTPStatus(answer.status).phrase if answer.status in HTTPStatus._value2member_map_ else "Error"
    headers = [("Content-Type", answer.content_type)]
    if answer.status != 204:  # a 204 has no body and no Content-Length (RFC 9110 8.6)
        length = answer.content_length if answer.content_length is not None else len(answer.body)
        headers.append(("Content-Length", str(length)))
    headers += [("X-Request-Id", request_id), *answer.headers]
    start_response(f"{answer.status} {phrase}", headers)
    return [answer.body]
