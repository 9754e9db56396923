"""Authentication as FunctionGraph's gateway does it: IAM tokens and SDK-HMAC-SHA256 signatures.

Tokens are kept only as SHA-256 fingerprints, so neither memory dumps of the store nor the state file
under ``--data`` hold a usable token. The signature check rebuilds the canonical request exactly as
``huaweicloudsdkcore/signer/signer.py`` does (FUNCTIONGRAPH.md, "AK/SK signature").
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Callable, Optional
from urllib.parse import parse_qsl, quote, unquote

from fgsync.emulator.store import EmulatorError

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
#: The gateway refuses requests whose X-Sdk-Date is further than this from its clock.
MAX_CLOCK_SKEW = 15 * 60
#: The gateway limits AK/SK-signed request bodies to 12 MB; larger uploads need token auth.
MAX_SIGNED_BODY = 12 * 1024 * 1024
_AUTH_RE = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=(?P<ak>[^,\s]+),\s*SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<sig>[0-9a-fA-F]+)$"
)


def new_token() -> str:
    """A token shaped like IAM's: ``MII`` then a long base64 blob (~2,600 characters)."""
    blob = base64.b64encode(secrets.token_bytes(1950)).decode("ascii")
    return "MII" + blob.replace("/", "-").rstrip("=")


def fingerprint(token: str) -> str:
    """SHA-256 hex of a token: what the emulator keeps instead of the token itself."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenBook:
    """Issued tokens (by fingerprint) with their expiry, plus the token the emulator was started with."""

    def __init__(self, *, static_token: Optional[str], ttl: float, clock: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._static = fingerprint(static_token) if static_token else None
        self._static_expired = False
        self._ttl = ttl
        self._clock = clock
        self._issued: dict[str, float] = {}

    def issue(self) -> tuple[str, float, float]:
        """A new token: (token, issued_at, expires_at) as epoch seconds."""
        token = new_token()
        now = self._clock()
        expires = now + self._ttl
        with self._lock:
            self._issued[fingerprint(token)] = expires
        return token, now, expires

    def check(self, token: str) -> Optional[str]:
        """None when the token is valid, else why not (for the 401 message; never echoes the token)."""
        key = fingerprint(token)
        with self._lock:
            if self._static is not None and hmac.compare_digest(key, self._static):
                return "the token has expired" if self._static_expired else None
            expires = self._issued.get(key)
        if expires is None:
            return "the token is not valid"
        if self._clock() >= expires:
            return "the token has expired"
        return None

    def expire_all(self, *, include_static: bool = True) -> None:
        """Make every issued token (and, by default, the start-up token) answer 401 from now on."""
        now = self._clock()
        with self._lock:
            for key in self._issued:
                self._issued[key] = min(self._issued[key], now)
            if include_static:
                self._static_expired = True

    def export(self) -> dict[str, float]:
        """Fingerprints and expiry times, for persisting across restarts."""
        with self._lock:
            return dict(self._issued)

    def restore(self, issued: Mapping[str, float]) -> None:
        """Take back what :meth:`export` gave."""
        with self._lock:
            self._issued.update({str(k): float(v) for k, v in issued.items()})


def _header(environ: Mapping[str, object], name: str) -> Optional[str]:
    """A request header from the WSGI environ, decoded as the client sent it (UTF-8 over latin-1)."""
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    value = environ.get(key)
    if value is None:
        return None
    text = str(value)
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def canonical_uri(path: str) -> str:
    """The signer's canonical URI: unquote, quote each segment with ``safe='~'``, end with ``/``."""
    uri = "/".join(quote(segment, safe="~") for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(query: str) -> str:
    """Parameters sorted by key (then value), key and value quoted with ``safe='~'``."""
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)


def _request_path(environ: Mapping[str, object]) -> str:
    """The path as the client meant it: WSGI servers hand it over unquoted and latin-1 decoded."""
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path


def string_to_sign(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    body_hash: str,
    sdk_date: str,
) -> str:
    """The SDK's string to sign, from the parts of a request."""
    lines = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)
    canonical = "\n".join(
        [method.upper(), canonical_uri(path), canonical_query(query), lines, ";".join(signed_headers), body_hash]
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def sign(sk: str, text: str) -> str:
    """hex(HMAC-SHA256(SK, string to sign)) — the SDK derives no key."""
    return hmac.new(sk.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_declared(environ: Mapping[str, object]) -> bool:
    """True when the request carries an SDK-HMAC-SHA256 Authorization header."""
    value = _header(environ, "Authorization") or ""
    return value.strip().upper().startswith(ALGORITHM)


def verify_signature(
    environ: Mapping[str, object], body: bytes, *, ak: Optional[str], sk: Optional[str], now: float
) -> Optional[str]:
    """Check an AK/SK-signed WSGI request.

    Args:
        environ: the WSGI environ (headers, method, path and query).
        body: the request body as received.
        ak: the access key the emulator accepts (None: signatures are never accepted).
        sk: its secret key.
        now: the emulator's clock (epoch seconds) for the X-Sdk-Date window.

    Returns:
        None when the signature is valid, else the reason (without any secret) for the 401.
    """
    auth = (_header(environ, "Authorization") or "").strip()
    match = _AUTH_RE.match(auth)
    if match is None:
        return "malformed SDK-HMAC-SHA256 Authorization header"
    if not ak or not sk or not hmac.compare_digest(match.group("ak"), ak):
        return "unknown access key (AK)"
    signed = match.group("headers").split(";")
    if signed != sorted(signed) or any(name != name.lower() for name in signed):
        return "SignedHeaders must be lower-case and sorted"
    if "x-sdk-date" not in signed:
        return "X-Sdk-Date must be signed"
    headers: dict[str, str] = {}
    for name in signed:
        value = _header(environ, name)
        if value is None:
            return f"signed header {name!r} is missing from the request"
        headers[name] = value
    sdk_date = headers["x-sdk-date"].strip()
    try:
        stamp = calendar.timegm(time.strptime(sdk_date, DATE_FORMAT))
    except ValueError:
        return "X-Sdk-Date is not in the format YYYYMMDDTHHMMSSZ"
    if abs(stamp - now) > MAX_CLOCK_SKEW:
        return "X-Sdk-Date is more than 15 minutes away from the server's clock"
    content_hash = _header(environ, "X-Sdk-Content-Sha256")
    body_hash = content_hash.strip() if content_hash else hashlib.sha256(body).hexdigest()
    text = string_to_sign(
        method=str(environ.get("REQUEST_METHOD", "GET")),
        path=_request_path(environ),
        query=str(environ.get("QUERY_STRING", "")),
        headers=headers,
        signed_headers=signed,
        body_hash=body_hash,
        sdk_date=sdk_date,
    )
    if not hmac.compare_digest(sign(sk, text), match.group("sig").lower()):
        return "the signature does not match the request"
    return None


def check_request(
    environ: Mapping[str, object],
    body: bytes,
    *,
    tokens: TokenBook,
    ak: Optional[str],
    sk: Optional[str],
    now: float,
) -> None:
    """Authenticate a FunctionGraph call by X-Auth-Token or signature.

    Raises:
        EmulatorError: 401 FSS.0401 for a bad or expired token, 401 APIGW.0301 for a missing or bad signature.
    """
    token = _header(environ, "X-Auth-Token")
    if token:
        problem = tokens.check(token.strip())
        if problem is None:
            return
        raise EmulatorError(401, "FSS.0401", f"Authentication failed: {problem}")
    if signature_declared(environ):
        problem = verify_signature(environ, body, ak=ak, sk=sk, now=now)
        if problem is None:
            return
        raise EmulatorError(401, "APIGW.0301", f"Incorrect IAM authentication information: {problem}")
    raise EmulatorError(
        401, "APIGW.0301", "Incorrect IAM authentication information: no X-Auth-Token and no AK/SK signature"
    )
