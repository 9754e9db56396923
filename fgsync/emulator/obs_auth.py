"""OBS request authentication as OBS does it: the OBS native signature, its AWS V2 twin, temporary keys.

``Authorization: OBS AK:base64(HMAC-SHA1(SK, StringToSign))`` (``x-obs-*`` headers), or ``AWS AK:…`` with the
same construction over ``x-amz-*`` headers (what esdk-obs-python signs in path style unless
``client_mode="workflow"``). The StringToSign is ``VERB\\nContent-MD5\\nContent-Type\\nDate\\n`` + the canonical
prefixed headers + the canonical resource (FUNCTIONGRAPH.md "OBS"). ``Date`` (or ``x-obs-date`` /
``x-amz-date``) must be within 15 minutes of the emulator's clock. Temporary keys (issued by IAM's
securitytokens call) need their security token in ``x-obs-security-token`` (``x-amz-security-token``) until they
expire.

Headers are read raw where the server offers them (``environ["fgsync.raw_headers"]``): a WSGI server such as
wsgiref fills in ``CONTENT_TYPE = "text/plain"`` for a request without one, and that would change the
StringToSign. The resource is accepted in each form a client may have signed: the key re-quoted as the SDK
quotes it, the path exactly as sent (``RAW_URI``), and for a bucket-level request both ``/bucket`` and
``/bucket/``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import email.utils
import hashlib
import hmac
import re
import secrets
import string
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional
from urllib.parse import quote, unquote

from fgsync.emulator.store import EmulatorError

MAX_CLOCK_SKEW = 15 * 60
#: The query parameters OBS signs (esdk-obs-python's list), compared lower-cased.
SUB_RESOURCES = frozenset(
    (
        "acl", "backtosource", "policy", "torrent", "logging", "location", "storageinfo", "quota", "storageclass",
        "storagepolicy", "requestpayment", "versions", "versioning", "versionid", "uploads", "uploadid", "partnumber",
        "website", "notification", "dispolicy", "lifecycle", "deletebucket", "delete", "cors", "restore", "tagging",
        "replication", "metadata", "encryption", "publicaccessblock", "bucketstatus", "policystatus",
        "x-obs-accesslabel", "inventory", "obscompresspolicy", "object-lock", "retention", "directcoldaccess", "append",
        "position", "truncate", "modify", "rename", "length", "name", "fileinterface", "response-content-type",
        "response-content-language", "response-expires", "response-cache-control", "response-content-disposition",
        "response-content-encoding", "x-image-save-bucket", "x-image-save-object", "x-image-process", "x-oss-process",
        "x-workflow-prefix", "x-workflow-start", "x-workflow-limit", "x-workflow-template-name",
        "x-workflow-graph-name", "x-workflow-execution-state", "x-workflow-execution-type", "x-workflow-next-marker",
        "obsworkflowtriggerpolicy", "obsbucketalias", "obsalias",
    )
)  # fmt: skip
_AUTH_RE = re.compile(r"^(?P<scheme>OBS|AWS) (?P<ak>[^:\s]+):(?P<signature>\S+)$")
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your key and signing method."
)


class ObsError(EmulatorError):
    """An error OBS answers as ``<Error><Code>…</Code><Message>…</Message>…</Error>`` (extra elements in ``extra``)."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(status, code, message)
        self.extra = extra


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who signed a request: the access key, and whether it is a temporary one."""

    ak: str
    temporary: bool


@dataclasses.dataclass(frozen=True)
class TemporaryKey:
    ak: str
    sk: str = dataclasses.field(repr=False)
    token_fingerprint: str = dataclasses.field(repr=False)
    expires_at: float = 0.0


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ObsKeyBook:
    """The keys OBS accepts: the emulator's permanent AK/SK pair, and temporary keys with their security tokens
    (kept as fingerprints) until they expire. In memory only; thread-safe."""

    def __init__(self, *, ak: Optional[str], sk: Optional[str], clock: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._ak = ak
        self._sk = sk
        self._clock = clock
        self._temporary: dict[str, TemporaryKey] = {}

    def issue(self, duration: float) -> tuple[str, str, str, float]:
        """New temporary keys valid for ``duration`` seconds: (access, secret, security token, expires_at)."""
        alphabet = string.ascii_uppercase + string.digits
        ak = "".join(secrets.choice(alphabet) for _ in range(20))
        sk = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
        token = "gQ" + base64.b64encode(secrets.token_bytes(720)).decode("ascii")
        expires = self._clock() + duration
        with self._lock:
            self._temporary[ak] = TemporaryKey(ak, sk, _fingerprint(token), expires)
        return ak, sk, token, expires

    def expire_all(self) -> None:
        """Every temporary key issued so far answers 403 InvalidAccessKeyId from now on."""
        now = self._clock()
        with self._lock:
            for ak, key in self._temporary.items():
                self._temporary[ak] = dataclasses.replace(key, expires_at=min(key.expires_at, now))

    def count(self) -> int:
        """Temporary keys issued (expired ones included)."""
        with self._lock:
            return len(self._temporary)

    def secret_for(self, ak: str, token: str, now: float) -> tuple[str, bool]:
        """(SK, temporary) for a request's access key and security token ("" when it has none).

        Raises:
            ObsError: 403 InvalidAccessKeyId for an unknown key, or a security token that is missing, wrong,
                expired, or sent with the permanent key.
        """
        if self._ak and self._sk and hmac.compare_digest(ak.encode(), self._ak.encode()):
            if token:
                raise ObsError(403, "InvalidAccessKeyId", "The security token is invalid.")
            return self._sk, False
        with self._lock:
            issued = self._temporary.get(ak)
        if issued is None:
            message = "The OBS Access Key Id you provided does not exist in our records."
            raise ObsError(403, "InvalidAccessKeyId", message)
        valid = bool(token) and hmac.compare_digest(_fingerprint(token), issued.token_fingerprint)
        if not valid or now >= issued.expires_at:
            raise ObsError(403, "InvalidAccessKeyId", "The security token is invalid.")
        return issued.sk, True


def request_headers(environ: Mapping[str, Any]) -> dict[str, list[str]]:
    """Request headers by lower-case name, as the client sent them (raw when the server hands them over)."""
    raw = environ.get("fgsync.raw_headers")
    pairs: Iterable[tuple[str, str]]
    if raw is not None:
        pairs = raw
    else:
        found = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                found.append((key[5:].replace("_", "-"), str(value)))
            elif key == "CONTENT_TYPE":  # httpx's WSGITransport sets it only when the request has one
                found.append(("content-type", str(value)))
        pairs = found
    headers: dict[str, list[str]] = {}
    for name, value in pairs:
        text = str(value)
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            text = text.encode("latin-1").decode("utf-8")
        headers.setdefault(name.lower(), []).append(text.strip())
    return headers


def string_to_sign(method: str, headers: Mapping[str, list[str]], resource: str, *, prefix: str) -> str:
    """The StringToSign of a request whose headers are ``headers`` (see the module docstring)."""

    def first(name: str) -> str:
        values = headers.get(name)
        return values[0] if values else ""

    signed = {name: ",".join(values) for name, values in headers.items() if name.startswith(prefix)}
    date = "" if prefix + "date" in signed else first("date")
    lines = "".join(f"{name}:{signed[name]}\n" for name in sorted(signed))
    return f"{method.upper()}\n{first('content-md5')}\n{first('content-type')}\n{date}\n{lines}{resource}"


def sign(sk: str, text: str) -> str:
    """base64(HMAC-SHA1(SK, StringToSign))."""
    return base64.b64encode(hmac.new(sk.encode(), text.encode("utf-8"), hashlib.sha1).digest()).decode("ascii")


def sub_resources(query: str, *, prefix: str) -> str:
    """The signed part of the query: sub-resources sorted by name, ``name`` or ``name=value`` (value unquoted)."""
    items: list[tuple[str, Optional[str]]] = []
    for part in query.split("&"):
        if not part:
            continue
        name, equals, value = part.partition("=")
        name = unquote(name)
        if name.lower() in SUB_RESOURCES or name.lower().startswith(prefix):
            items.append((name, unquote(value) if equals else None))
    items.sort(key=lambda item: item[0])
    parts = [quote(n, safe="/") if v is None else f"{quote(n, safe='/')}={v}" for n, v in items]
    return "?" + "&".join(parts) if parts else ""


def candidate_resources(bucket: str, key: str, raw_path: Optional[str], *, virtual_host: bool) -> list[str]:
    """The canonical resources a client may have signed for this request, most likely first."""
    if key:
        out = [f"/{bucket}/{quote(key, safe='/~')}"]
        if raw_path:
            sent = f"/{bucket}{raw_path}" if virtual_host else raw_path
            if sent not in out:
                out.append(sent)
        return out
    return [f"/{bucket}/", f"/{bucket}"] if virtual_host else [f"/{bucket}", f"/{bucket}/"]


def _request_time(headers: Mapping[str, list[str]], prefix: str, now: float) -> None:
    values = headers.get(prefix + "date") or headers.get("date")
    if not values or not values[0]:
        raise ObsError(403, "AccessDenied", "The request has no Date header (nor x-obs-date): it cannot be signed")
    try:
        stamp = email.utils.parsedate_to_datetime(values[0]).timestamp()
    except (TypeError, ValueError, IndexError):
        raise ObsError(403, "AccessDenied", f"Invalid date {values[0]!r}: it must be an RFC 1123 date") from None
    if stamp - now > MAX_CLOCK_SKEW:
        raise ObsError(403, "RequestTimeTooSkewed", "Request is not yet valid.")
    if now - stamp > MAX_CLOCK_SKEW:
        raise ObsError(403, "RequestTimeTooSkewed", "Request is no longer valid.")


def verify(
    environ: Mapping[str, Any],
    *,
    bucket: str,
    key: str,
    virtual_host: bool,
    keys: ObsKeyBook,
    now: float,
) -> Principal:
    """Check an OBS request's signature, date and security token.

    Raises:
        ObsError: 403 AccessDenied (no or unusable signature), InvalidAccessKeyId (unknown key, bad or expired
            security token), RequestTimeTooSkewed, SignatureDoesNotMatch (with the StringToSign echoed).
    """
    headers = request_headers(environ)
    authorization = (headers.get("authorization") or [""])[0]
    if not authorization:
        raise ObsError(403, "AccessDenied", "Access Denied: anonymous access is not allowed (no Authorization header)")
    match = _AUTH_RE.match(authorization)
    if match is None:
        raise ObsError(400, "InvalidArgument", "Authorization header is invalid: expected 'OBS AK:signature'")
    prefix = "x-obs-" if match.group("scheme") == "OBS" else "x-amz-"
    request_ak = match.group("ak")
    token = (headers.get(prefix + "security-token") or [""])[0]
    secret, is_temporary = keys.secret_for(request_ak, token, now)
    _request_time(headers, prefix, now)
    raw_uri = environ.get("RAW_URI")
    raw_path = str(raw_uri).split("?", 1)[0] if raw_uri else None
    signed_query = sub_resources(str(environ.get("QUERY_STRING", "")), prefix=prefix)
    method = str(environ.get("REQUEST_METHOD", "GET"))
    provided = match.group("signature")
    first_text = ""
    for resource in candidate_resources(bucket, key, raw_path, virtual_host=virtual_host):
        text = string_to_sign(method, headers, resource + signed_query, prefix=prefix)
        first_text = first_text or text
        if hmac.compare_digest(sign(secret, text).encode(), provided.encode()):
            return Principal(request_ak, is_temporary)
    raise ObsError(
        403,
        "SignatureDoesNotMatch",
        _SIGNATURE_MISMATCH,
        AccessKeyId=request_ak,
        SignatureProvided=provided,
        StringToSign=first_text,
        StringToSignBytes=" ".join(f"{b:02x}" for b in first_text.encode("utf-8")),
    )


def check_content_md5(headers: Mapping[str, list[str]], body: bytes) -> None:
    """OBS refuses a body whose ``Content-MD5`` does not match it (400 BadDigest; 400 InvalidDigest if unreadable)."""
    values = headers.get("content-md5")
    if not values:
        return
    try:
        declared = base64.b64decode(values[0], validate=True)
    except (binascii.Error, ValueError):
        raise ObsError(400, "InvalidDigest", "The Content-MD5 you specified is not valid.") from None
    if len(declared) != 16:
        raise ObsError(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")
    if declared != hashlib.md5(body, usedforsecurity=False).digest():
        raise ObsError(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
