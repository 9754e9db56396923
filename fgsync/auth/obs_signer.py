"""The OBS native signature (``Authorization: OBS AK:signature``) as an ``httpx.Auth``.

OBS (Huawei Cloud's object storage) does not take FunctionGraph's SDK-HMAC-SHA256: it wants

    Authorization: OBS {AK}:{base64(HMAC-SHA1(SK, StringToSign))}
    StringToSign = VERB \\n Content-MD5 \\n Content-Type \\n Date \\n CanonicalizedHeaders CanonicalizedResource

(FUNCTIONGRAPH.md "OBS"; Huawei's API reference "Authentication of Signature in a Header"). The details follow
``esdk-obs-python``'s ``obs/auth.py`` (``Authentication.__make_canonical_string``), which tests/test_obs_signer.py
checks byte for byte:

- ``CanonicalizedHeaders``: every ``x-obs-*`` header, lower-cased, sorted, ``name:value\\n``; several values of one
  name are joined with ``,``. With an ``x-obs-date`` header the ``Date`` line is empty.
- ``CanonicalizedResource``: ``/{bucket}/{key}`` with the key quoted as the SDK quotes it
  (``urllib.parse.quote(key, safe="/~")``: a space is ``%20``, ``+`` is ``%2B``, non-ASCII is UTF-8 escaped),
  then the signed sub-resources of the query (``?acl``, ``?uploads``, ``versionId=…``: the SDK's list, sorted).
  Ordinary query parameters (ListObjects' ``prefix``, ``marker``, ``max-keys``) are not signed.
- Virtual-host style (``https://{bucket}.obs.{region}.myhuaweicloud.com/{key}``): the bucket comes from the host
  and the resource is ``/{bucket}`` + the path. Path style (``http://127.0.0.1:PORT/{bucket}/{key}``, and every IP
  address or ``localhost``): the path already starts with the bucket and is the resource, as the SDK signs it
  (a bucket-level path style request is signed ``/{bucket}``, a virtual-host one ``/{bucket}/``).

The signer sends the path in that canonical quoting too, so OBS sees exactly the key that was signed. It sets
``Date`` itself (RFC 1123, from ``clock``; a retried request gets a fresh one) and, for temporary credentials,
adds and signs ``x-obs-security-token``. It never reads the body: Content-MD5 is the caller's to set, and a
streamed upload stays streamed.

The SK and the security token never leave this module: not in ``repr``, an error or a log line.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import ipaddress
import logging
import re
import time
from collections.abc import Generator, Iterable, Mapping
from typing import Callable, Optional
from urllib.parse import quote, unquote

import httpx

from fgsync.auth.signer import mask_ak

__all__ = [
    "SECURITY_TOKEN_HEADER",
    "STRING_TO_SIGN_EXTENSION",
    "SUB_RESOURCES",
    "ObsSigner",
    "canonical_headers",
    "canonicalize_path",
    "format_date",
    "is_ip_or_localhost",
    "quote_key",
    "request_string_to_sign",
    "sign_string",
    "string_to_sign",
    "virtual_host_bucket",
]

logger = logging.getLogger(__name__)

SECURITY_TOKEN_HEADER = "x-obs-security-token"
#: ``request.extensions`` key under which the signer leaves the StringToSign it signed (for diagnosing a
#: SignatureDoesNotMatch: OBS echoes its own). It holds the security token, so it is never logged as is.
STRING_TO_SIGN_EXTENSION = "fgsync.obs.string_to_sign"

_PREFIX = "x-obs-"
#: Query parameters that are part of the canonical resource: esdk-obs-python's
#: ``const.ALLOWED_RESOURCE_PARAMTER_NAMES`` (compared lower-cased), plus any ``x-obs-*`` parameter.
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
_VIRTUAL_HOST_RE = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]*?)\.obs\.", re.IGNORECASE)


def quote_key(key: str) -> str:
    """An object key as OBS requests carry and sign it (esdk-obs-python's ``util.encode_object_key``)."""
    return quote(key, safe="/~")


def format_date(epoch: float) -> str:
    """RFC 1123 in GMT, as the ``Date`` header wants it: ``Tue, 15 Oct 2015 07:20:09 GMT``."""
    return email.utils.formatdate(epoch, usegmt=True)


def canonical_headers(headers: Iterable[tuple[str, str]], *, prefix: str = _PREFIX) -> dict[str, str]:
    """The ``x-obs-*`` headers (lower-cased names, values stripped, repeated names joined with ``,``)."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.strip().lower()
        if lower.startswith(prefix):
            merged.setdefault(lower, []).append(value.strip())
    return {name: ",".join(values) for name, values in merged.items()}


def string_to_sign(
    method: str,
    *,
    content_md5: str = "",
    content_type: str = "",
    date: str = "",
    obs_headers: Mapping[str, str],
    resource: str,
    prefix: str = _PREFIX,
) -> str:
    """OBS's StringToSign from the parts of a request.

    Args:
        method: the HTTP verb.
        content_md5: the ``Content-MD5`` header, or "".
        content_type: the ``Content-Type`` header, or "".
        date: the ``Date`` header; ignored (an empty line) when ``obs_headers`` has ``x-obs-date``.
        obs_headers: the canonical ``x-obs-*`` headers (:func:`canonical_headers`).
        resource: the canonical resource, ``/{bucket}/{quoted key}[?sub-resources]``.
        prefix: ``x-obs-`` (``x-amz-`` for the AWS V2 form of the same signature).
    """
    if prefix + "date" in obs_headers:
        date = ""
    lines = "".join(f"{name}:{obs_headers[name]}\n" for name in sorted(obs_headers))
    return f"{method.upper()}\n{content_md5}\n{content_type}\n{date}\n{lines}{resource}"


def sign_string(sk: str, text: str) -> str:
    """base64(HMAC-SHA1(SK, UTF-8 of the StringToSign))."""
    digest = hmac.new(sk.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def is_ip_or_localhost(host: str) -> bool:
    """True for an IP address or ``localhost``: hosts that are always addressed path style."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def virtual_host_bucket(host: str, bucket: Optional[str] = None) -> Optional[str]:
    """The bucket a virtual-host style host names, or None for path style.

    With ``bucket`` given, the host is virtual-host style when it starts with ``{bucket}.``; without it, when it
    looks like ``{bucket}.obs.…``. IP addresses and ``localhost`` are always path style (as in the SDK).
    """
    if is_ip_or_localhost(host):
        return None
    if bucket is not None:
        return bucket if host.lower().startswith(bucket.lower() + ".") else None
    found = _VIRTUAL_HOST_RE.match(host)
    return found.group("bucket").lower() if found else None


def _sub_resources(raw_query: str, *, prefix: str = _PREFIX) -> str:
    """``?acl&versionId=x``: the signed query parameters, as the SDK appends them (sorted, values unquoted)."""
    items: list[tuple[str, Optional[str]]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, equals, value = part.partition("=")
        name = unquote(name)
        if name.lower() in SUB_RESOURCES or name.lower().startswith(prefix):
            items.append((name, unquote(value) if equals else None))
    if not items:
        return ""
    items.sort(key=lambda item: item[0])
    parts = [quote(name, safe="/") if value is None else f"{quote(name, safe='/')}={value}" for name, value in items]
    return "?" + "&".join(parts)


def canonicalize_path(request: httpx.Request) -> None:
    """Re-quote the request's path as OBS signs it (:func:`quote_key` of the unquoted path), query unchanged."""
    raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
    target = (quote_key(unquote(raw_path)) or "/") + ("?" + raw_query if raw_query else "")
    if target.encode("ascii") != request.url.raw_path:
        request.url = request.url.copy_with(raw_path=target.encode("ascii"))


def request_string_to_sign(request: httpx.Request, bucket: Optional[str] = None) -> str:
    """The StringToSign of ``request`` as it stands (its Date, headers, path and query).

    Args:
        request: the request, its path already in canonical quoting (:func:`canonicalize_path`).
        bucket: see :func:`virtual_host_bucket`.
    """
    headers = request.headers
    raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
    vhost_bucket = virtual_host_bucket(request.url.host, bucket)
    resource = ("/" + vhost_bucket + raw_path if vhost_bucket else raw_path) + _sub_resources(raw_query)
    return string_to_sign(
        request.method,
        content_md5=headers.get("Content-MD5", "").strip(),
        content_type=headers.get("Content-Type", "").strip(),
        date=headers.get("Date", "").strip(),
        obs_headers=canonical_headers(headers.multi_items()),
        resource=resource,
    )


class ObsSigner(httpx.Auth):
    """Signs each request with OBS's native signature.

    Args:
        ak: access key id (permanent, or temporary from IAM).
        sk: its secret key.
        security_token: for temporary keys: sent and signed as ``x-obs-security-token``.
        bucket: the bucket the requests go to. Optional: without it the bucket of a virtual-host style URL comes
            from the host (``{bucket}.obs.…``), and a path style URL carries it in its path.
        clock: seconds since the epoch, for the ``Date`` header.
    """

    requires_request_body = False  # Content-MD5 is the caller's: a streamed upload must stay streamed

    def __init__(
        self,
        ak: str,
        sk: str,
        *,
        security_token: Optional[str] = None,
        bucket: Optional[str] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not ak or not sk:
            raise ValueError("an access key and a secret key are both required")
        self._ak = ak
        self._sk = sk
        self._token = security_token or None
        self._bucket = bucket
        self._clock = clock

    def __repr__(self) -> str:
        token = "<hidden>" if self._token else None
        return f"ObsSigner(ak={mask_ak(self._ak)!r}, sk=<hidden>, security_token={token}, bucket={self._bucket!r})"

    @property
    def ak(self) -> str:
        """The access key id (not secret; shown masked by fgsync)."""
        return self._ak

    def sign(self, request: httpx.Request) -> None:
        """Sign ``request`` in place: ``Date``, ``x-obs-security-token`` (temporary keys), ``Authorization``.

        The path is re-sent in the canonical quoting of its key, so the server sees what was signed; the
        StringToSign is left in ``request.extensions[STRING_TO_SIGN_EXTENSION]``.
        """
        headers = request.headers
        headers.pop("Authorization", None)
        if "x-obs-date" not in headers:
            headers["Date"] = format_date(self._clock())  # fresh on every send: a retry must not sign a stale time
        if self._token:
            headers[SECURITY_TOKEN_HEADER] = self._token

        canonicalize_path(request)
        text = request_string_to_sign(request, self._bucket)
        headers["Authorization"] = f"OBS {self._ak}:{sign_string(self._sk, text)}"
        request.extensions = {**request.extensions, STRING_TO_SIGN_EXTENSION: text}
        logger.debug("signed %s %s (OBS signature, AK %s)", request.method, request.url.path, mask_ak(self._ak))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx hook: sign, send."""
        self.sign(request)
        yield request
