"""SDK-HMAC-SHA256, the AK/SK request signature of Huawei Cloud's official SDKs, as an ``httpx.Auth``.

The algorithm follows ``huaweicloudsdkcore/signer/signer.py`` step for step (FUNCTIONGRAPH.md, "AK/SK
signature"), so a request signed here carries the very signature the SDK would compute for the same
method, path, query, signed headers and body. tests/test_signer.py checks that against the SDK itself.

The SK never leaves this module: it is not in ``repr``, in any error text or in a log line.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import time
from collections.abc import Generator
from typing import Callable
from urllib.parse import quote, unquote

import httpx

from fgsync.errors import FgsyncError
from fgsync.upload import UploadBody

__all__ = [
    "ALGORITHM",
    "MAX_SIGNED_BODY_BYTES",
    "SdkHmacSigner",
    "SignedRequestTooLargeError",
    "mask_ak",
]

logger = logging.getLogger(__name__)

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: API Gateway refuses AK/SK-signed request bodies over 12 MB; token-authenticated requests may be larger.
MAX_SIGNED_BODY_BYTES = 12 * 1024 * 1024

# Headers httpx (or a proxy) adds or rewrites for transport: signing them would tie the signature to details
# the caller never chose, and the SDK does not sign them either (requests adds them after signing).
_UNSIGNED_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "authorization",
        "connection",
        "content-length",
        "expect",
        "keep-alive",
        "proxy-authorization",
        "te",
        "transfer-encoding",
        "upgrade",
        "user-agent",
    }
)


class SignedRequestTooLargeError(FgsyncError):
    """An AK/SK-signed request body is over the gateway's 12 MB limit; only a token can send it."""

    code = "auth"


def mask_ak(ak: str) -> str:
    """Show an access key the way consoles do: first four and last four characters, e.g. ``AKTE…0000``.

    Args:
        ak: the access key id (not a secret, but there is no reason to print it whole).

    Returns:
        The masked form; keys of eight characters or fewer are fully masked.
    """
    if len(ak) <= 8:
        return "****"
    return f"{ak[:4]}…{ak[-4:]}"


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(raw_path: str) -> str:
    """The signed form of a path: each segment decoded then re-quoted, always ending in ``/``.

    The SDK signs ``.../code`` as ``.../code/`` and a URN's colons as ``%3A`` whether the path was sent
    raw or percent-encoded.
    """
    path = "/".join(_encode(segment) for segment in unquote(raw_path).split("/"))
    if not path.endswith("/"):
        path += "/"
    return path


def canonical_query(url: httpx.URL) -> str:
    """Parameters sorted by key (then value), each key and value quoted with only ``~`` safe."""
    pairs = sorted(url.params.multi_items())
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in pairs)


def _payload_hash(request: httpx.Request, size: int) -> str:
    """The hex SHA-256 of the body (of a streamed one, chunk by chunk: it is never joined)."""
    if not size:
        return EMPTY_SHA256
    declared: str | None = request.headers.get("X-Sdk-Content-Sha256")
    if declared:
        return declared
    stream = request.stream
    if isinstance(stream, UploadBody):
        hasher = hashlib.sha256()
        for chunk in stream.chunks():
            hasher.update(chunk)
        return hasher.hexdigest()
    return hashlib.sha256(request.content).hexdigest()


def _body_size(request: httpx.Request) -> int:
    stream = request.stream
    return stream.length if isinstance(stream, UploadBody) else len(request.content)


class SdkHmacSigner(httpx.Auth):
    """Signs each request with an access key (AK) and secret key (SK), as the official SDK does.

    Adds ``X-Sdk-Date``, ``X-Project-Id`` and ``Authorization``; rewrites the query string into its
    canonical order so the server sees exactly what was signed. Bodies over 12 MB are refused before
    sending (:class:`SignedRequestTooLargeError`), because the gateway would refuse them after the upload.

    The signer needs the body (``requires_request_body``), but an
    :class:`~fgsync.upload.UploadBody` is hashed chunk by chunk instead of being read into memory whole
    (:meth:`sync_auth_flow`), and then sent as the stream it is; any other body is read first, as httpx does.

    Args:
        ak: access key id.
        sk: secret access key.
        project_id: sent as ``X-Project-Id`` (the SDK's project-scoped credentials do the same).
        clock: seconds since the epoch; the signature's timestamp comes from it.
    """

    requires_request_body = True

    def __init__(self, ak: str, sk: str, project_id: str, *, clock: Callable[[], float] = time.time) -> None:
        if not ak or not sk:
            raise ValueError("an access key and a secret key are both required")
        self._ak = ak
        self._sk = sk.encode("utf-8")
        self._project_id = project_id
        self._clock = clock

    def __repr__(self) -> str:
        return f"SdkHmacSigner(ak={mask_ak(self._ak)!r}, sk=<hidden>, project_id={self._project_id!r})"

    @property
    def ak(self) -> str:
        """The access key id (not secret; shown masked by fgsync)."""
        return self._ak

    def sign(self, request: httpx.Request) -> None:
        """Sign ``request`` in place; its body must already be read.

        Raises:
            SignedRequestTooLargeError: the body is over :data:`MAX_SIGNED_BODY_BYTES`.
        """
        size = _body_size(request)
        if size > MAX_SIGNED_BODY_BYTES:
            raise SignedRequestTooLargeError(
                f"the request body is {size:,} bytes, over the {MAX_SIGNED_BODY_BYTES:,}-byte limit "
                "that Huawei Cloud puts on AK/SK-signed requests: use token authentication instead "
                '(set auth.method = "token" in fgsync.toml and run `fgsync login`, or set FGSYNC_TOKEN)'
            )
        headers = request.headers
        content_type = headers.get("Content-Type")
        if content_type and not content_type.startswith(("application/json", "application/bson")):
            # The SDK leaves non-JSON payloads unsigned and says so in a signed header.
            headers["X-Sdk-Content-Sha256"] = "UNSIGNED-PAYLOAD"
        when = _dt.datetime.fromtimestamp(self._clock(), _dt.timezone.utc)
        # Always a fresh date: a request re-sent by a retry must not carry a stale signature time.
        headers["X-Sdk-Date"] = when.strftime(DATE_FORMAT)
        if "X-Project-Id" not in headers:
            headers["X-Project-Id"] = self._project_id
        headers.pop("Authorization", None)

        query = canonical_query(request.url)
        # Send the query in canonical form too, so the server re-derives the same string we signed.
        request.url = request.url.copy_with(query=query.encode("ascii") if query else None)

        values: dict[str, str] = {}
        for raw_name, raw_value in headers.raw:
            name = raw_name.decode("latin-1").lower()
            if "_" in name or name in _UNSIGNED_HEADERS:
                continue
            value = raw_value.decode("utf-8", errors="surrogateescape").strip()
            values[name] = f"{values[name]},{value}" if name in values else value
        signed = sorted(values)
        signed_list = ";".join(signed)
        raw_path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
        canonical = "\n".join(
            [
                request.method.upper(),
                canonical_uri(raw_path),
                query,
                "".join(f"{name}:{values[name]}\n" for name in signed),
                signed_list,
                _payload_hash(request, size),
            ]
        )
        string_to_sign = "\n".join(
            [
                ALGORITHM,
                headers["X-Sdk-Date"],
                hashlib.sha256(canonical.encode("utf-8", errors="surrogateescape")).hexdigest(),
            ]
        )
        signature = hmac.new(self._sk, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        headers["Authorization"] = f"{ALGORITHM} Access={self._ak}, SignedHeaders={signed_list}, Signature={signature}"
        logger.debug("signed %s %s with AK %s", request.method, request.url.path, mask_ak(self._ak))

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx hook (sync clients): as httpx's own, but an upload body is not read into memory first."""
        if not isinstance(request.stream, UploadBody):
            request.read()
        yield from self.auth_flow(request)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx hook: sign, send."""
        self.sign(request)
        yield request
