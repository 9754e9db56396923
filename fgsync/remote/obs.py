"""OBS client over httpx: the object calls fgsync uses for large packages (PUT, HEAD, GET, DELETE, ListObjects).

Like the FunctionGraph client it takes plain values (endpoint, bucket, an ``httpx.Auth``: :class:`ObsSigner` or
:class:`~fgsync.auth.temporary.ObsAuth`) and never reads the config. OBS answers errors as XML
(``<Error><Code>SignatureDoesNotMatch</Code><Message>…</Message><RequestId>…</RequestId></Error>``; a HEAD
answer has no body, only ``x-obs-error-code`` / ``x-obs-error-message`` headers where OBS sends them); they become
fgsync errors with the code and message shown:

- 403 SignatureDoesNotMatch / InvalidAccessKeyId → :class:`ObsAuthError` (exit 3, "check the AK/SK");
- 403 AccessDenied (and the other permission codes) → :class:`ObsPermissionError` (exit 1) naming the IAM
  permission the call needs (``obs:object:PutObject`` …);
- 404 NoSuchBucket → :class:`ObsError` naming the bucket and the endpoint;
- 408, 429, 5xx → :class:`~fgsync.errors.TransientApiError`; connect/read failures → NetworkError; both retried
  like every fgsync client (:class:`~fgsync.remote.http.HttpService`: capped backoff, full jitter, one overall
  deadline per request).

URLs (what goes into ``code_url`` / ``depend_link``): virtual-host style ``https://{bucket}.obs.{region}.
myhuaweicloud.com/{key}`` for an endpoint with a host name, path style ``http://127.0.0.1:PORT/{bucket}/{key}`` for
an IP address or ``localhost`` (the emulator), as esdk-obs-python decides.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import quote, urlsplit

import httpx

from fgsync.auth.obs_signer import STRING_TO_SIGN_EXTENSION, is_ip_or_localhost, quote_key
from fgsync.errors import ApiError, AuthApiError, TransientApiError
from fgsync.remote.errors import error_from_response, retry_after_seconds
from fgsync.remote.http import HttpService, ProgressHook, RetryPolicy, Verify

__all__ = [
    "MAX_LIST_KEYS",
    "MAX_OBS_PACKAGE_BYTES",
    "ObjectInfo",
    "ObsAuthError",
    "ObsClient",
    "ObsError",
    "ObsPermissionError",
    "default_obs_endpoint",
    "package_object_key",
]

log = logging.getLogger(__name__)

MAX_LIST_KEYS = 1000
#: The largest code package (zipped) FunctionGraph takes through OBS; the same for a dependency through OBS.
MAX_OBS_PACKAGE_BYTES = 314_572_800
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_AUTH_CODES = frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId"})
_PERMISSION_CODES = frozenset({"AccessDenied", "AccessForbidden", "AllAccessDisabled", "InvalidSecurity"})
#: The IAM permission each call needs (OBS's fine-grained policy actions).
_PERMISSIONS = {
    "put": "obs:object:PutObject",
    "head": "obs:object:GetObject",
    "get": "obs:object:GetObject",
    "delete": "obs:object:DeleteObject",
    "list": "obs:bucket:ListBucket",
}


class ObsError(ApiError):
    """An error answered by OBS (the code is OBS's: ``NoSuchBucket``, ``EntityTooLarge`` …)."""


class ObsAuthError(ObsError, AuthApiError):
    """OBS refused the signature or the access key (403 SignatureDoesNotMatch / InvalidAccessKeyId): exit 3."""

    @property
    def message(self) -> str:
        return (
            f"{super(AuthApiError, self).message}; check the AK/SK (CLOUD_SDK_AK and CLOUD_SDK_SK, or the pair "
            "`fgsync login --ak` stored); with token credentials, run `fgsync login`"
        )


class ObsPermissionError(ObsError):
    """OBS refused the call for want of permission (403 AccessDenied): exit 1, naming the permission."""


@dataclass(frozen=True)
class ObjectInfo:
    """An object as HEAD or ListObjects describe it.

    Attributes:
        key: the object key.
        size: bytes.
        etag: the ETag without quotes (the MD5 hex for a single PUT).
        last_modified: as OBS wrote it (HTTP date for HEAD, ISO 8601 in listings).
    """

    key: str
    size: int
    etag: str
    last_modified: str


def default_obs_endpoint(region: str) -> str:
    """``https://obs.{region}.myhuaweicloud.com`` (eu-west-101: ``.myhuaweicloud.eu``, as IAM there)."""
    suffix = "myhuaweicloud.eu" if region == "eu-west-101" else "myhuaweicloud.com"
    return f"https://obs.{region}.{suffix}"


def package_object_key(prefix: str, package: str, function: str, sha256: str) -> str:
    """The content-addressed key of a package: ``<prefix><package>/<function name>/<sha256>.zip``.

    Raises:
        ValueError: ``sha256`` is not 64 lowercase hex digits.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    return f"{prefix}{package}/{function}/{sha256}.zip"


class ObsClient(HttpService):
    """The OBS object calls fgsync needs, on one bucket.

    Args:
        endpoint: OBS endpoint without the bucket, e.g. ``https://obs.cn-north-4.myhuaweicloud.com`` or the
            emulator's ``http://127.0.0.1:8808``.
        bucket: the bucket (3 to 63 lowercase letters, digits, ``-`` and ``.``).
        auth: signs each request (:class:`~fgsync.auth.obs_signer.ObsSigner`, :class:`~fgsync.auth.temporary.ObsAuth`).
        verify: TLS verification (an SSLContext; False only for tests over plain http).
        transport: an httpx transport, e.g. ``httpx.WSGITransport(app=...)`` in tests.
        retry: the retry policy for transient failures.
        sleep: how to wait between retries (tests pass a fake).
        timeout: seconds for one request's connect, read and write steps.
        path_style: force path style (True) or virtual-host style (False); None: path style for IP addresses and
            ``localhost`` only.
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        auth: httpx.Auth,
        verify: Verify = True,
        transport: Optional[httpx.BaseTransport] = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
        rng: Callable[[], float] = random.random,
        path_style: Optional[bool] = None,
    ) -> None:
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise ValueError(f"{bucket!r} is not a valid OBS bucket name")
        parts = urlsplit(endpoint.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{endpoint!r} is not an http(s) URL")
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.bucket = bucket
        if path_style is None:
            path_style = is_ip_or_localhost(parts.hostname)
        self.path_style = path_style
        self._base = f"{self.endpoint}/{bucket}" if path_style else f"{parts.scheme}://{bucket}.{parts.netloc}"
        super().__init__(
            auth=auth,
            verify=verify,
            transport=transport,
            retry=retry,
            sleep=sleep,
            timeout=timeout,
            rng=rng,
            endpoint_key="[obs] endpoint",
        )

    def __enter__(self) -> ObsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def object_url(self, key: str) -> str:
        """The object's URL: what UpdateFunctionCode's ``code_url`` and a dependency's ``depend_link`` take."""
        if not key:
            raise ValueError("an object key is required")
        return f"{self._base}/{quote_key(key)}"

    def head(self, key: str) -> Optional[ObjectInfo]:
        """HEAD: the object's size, ETag and last-modified, or None when there is no such object."""
        response = self._obs("HEAD", self.object_url(key), action="head", key=key, missing_ok=True)
        if response.status_code == 404:
            return None
        return ObjectInfo(
            key=key,
            size=_int(response.headers.get("Content-Length")),
            etag=response.headers.get("ETag", "").strip('"'),
            last_modified=response.headers.get("Last-Modified", ""),
        )

    def get(self, key: str) -> bytes:
        """GET: the object's bytes (ObsError 404 NoSuchKey when there is none)."""
        return self._obs("GET", self.object_url(key), action="get", key=key).content

    def put(
        self,
        key: str,
        data: bytes,
        *,
        progress: Optional[ProgressHook] = None,
        content_md5: bool = True,
        content_type: str = "application/zip",
    ) -> ObjectInfo:
        """PutObject in one request (OBS takes up to 5 GB so), streamed from memory in chunks.

        Args:
            key: the object key.
            data: the object's bytes.
            progress: called ``(bytes sent, total)`` as the body goes out (again from 0 on a retry).
            content_md5: send ``Content-MD5`` so that OBS refuses a body damaged on the way (400 BadDigest).
            content_type: the object's ``Content-Type``.

        Returns:
            The object as stored (``etag`` from OBS's answer).
        """
        headers = {"Content-Type": content_type}
        if content_md5:
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        url = self.object_url(key)
        response = self._obs("PUT", url, action="put", key=key, body=data, headers=headers, progress=progress)
        etag = response.headers.get("ETag", "").strip('"')
        return ObjectInfo(key=key, size=len(data), etag=etag, last_modified=response.headers.get("Date", ""))

    def delete(self, key: str) -> None:
        """DeleteObject (OBS answers 204 whether or not the object existed)."""
        self._obs("DELETE", self.object_url(key), action="delete", key=key, missing_ok=True)

    def list(self, prefix: str = "", *, page_size: int = MAX_LIST_KEYS) -> list[ObjectInfo]:
        """ListObjects: every object whose key starts with ``prefix``, in key order, following the pages.

        Raises:
            ObsError: the bucket does not exist, or the answer is not ListObjects' XML.
        """
        if not 1 <= page_size <= MAX_LIST_KEYS:
            raise ValueError(f"page_size must be from 1 to {MAX_LIST_KEYS}")
        objects: list[ObjectInfo] = []
        marker = ""
        url = self._base if self.path_style else self._base + "/"
        while True:
            params = {"prefix": prefix, "max-keys": str(page_size)}
            if marker:
                params["marker"] = marker
            # Quoted as esdk-obs-python quotes them (a space is %20, "/" stays), not as a form (+).
            query = "&".join(f"{name}={quote(value, safe='/')}" for name, value in params.items())
            response = self._obs("GET", f"{url}?{query}", action="list")
            page, truncated, next_marker = _parse_listing(response)
            objects.extend(page)
            if not truncated:
                return objects
            marker = next_marker or (page[-1].key if page else "")
            if not marker:
                raise ObsError("OBS said the listing goes on but gave no marker", status=response.status_code)

    # ------------------------------------------------------------------ plumbing

    def _obs(
        self,
        method: str,
        url: str,
        *,
        action: str,
        key: Optional[str] = None,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        progress: Optional[ProgressHook] = None,
        missing_ok: bool = False,
    ) -> httpx.Response:
        """One OBS call; ``missing_ok``: a 404 for the object (not the bucket) is returned, not raised."""

        def missing(response: httpx.Response) -> bool:
            # No such object (a HEAD answer has no body to say more); a missing bucket is still an error.
            return missing_ok and response.status_code == 404 and _error_fields(response)[0] != "NoSuchBucket"

        return self._call(
            f"OBS {action}",
            method,
            url,
            body=body,
            headers=headers,
            progress=progress,
            accept=missing,
            error=lambda response: self._obs_error(response, action=action, key=key),
        )

    def _obs_error(self, response: httpx.Response, *, action: str, key: Optional[str]) -> ApiError:
        code, message, request_id, server_sts = _error_fields(response)
        status = response.status_code
        what = f"{key!r} in bucket {self.bucket!r}" if key else f"bucket {self.bucket!r}"
        permission = _PERMISSIONS.get(action, "obs:object:*")
        if not code and status == 403 and not response.content:
            # A HEAD answer has no body, and OBS need not name the code in a header: say both likely causes.
            text = (
                f"OBS refused to {action} {what} without saying why (403, no error body); check the AK/SK, and that "
                f"they have the permission {permission}"
            )
            return ObsError(text, status=status, code="HTTP.403", request_id=request_id)
        if not code:
            return error_from_response(response)  # not OBS's XML: a gateway or proxy answered
        kwargs: dict[str, Any] = {"status": status, "code": code, "request_id": request_id}
        if code in _AUTH_CODES or status == 401:
            if code == "SignatureDoesNotMatch":
                message = _signature_diagnosis(message, response, server_sts)
            return ObsAuthError(message, **kwargs)
        if code in _PERMISSION_CODES:
            text = f"{message}: the credentials may not {action} {what} (they need the permission {permission})"
            return ObsPermissionError(text, **kwargs)
        if code == "NoSuchBucket":
            text = (
                f"the bucket {self.bucket!r} does not exist at {self.endpoint} ({message}); create it, or fix "
                "[obs] bucket / endpoint (the bucket must be in the functions' region)"
            )
            return ObsError(text, **kwargs)
        if code == "RequestTimeTooSkewed":
            return ObsError(f"{message}: this computer's clock is more than 15 minutes off; set it right", **kwargs)
        if status in _TRANSIENT_STATUSES:
            error = TransientApiError(message, retryable=True, **kwargs)
            error.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            return error
        return ObsError(f"{message} ({action} {what})", **kwargs)


def _signature_diagnosis(message: str, response: httpx.Response, server_sts: Optional[str]) -> str:
    """Say whether OBS signed the same text (then the SK is wrong) or another one (a header changed on the way)."""
    ours = response.request.extensions.get(STRING_TO_SIGN_EXTENSION)
    if not server_sts or not isinstance(ours, str):
        return message
    if server_sts == ours:
        return f"{message} (OBS signed the same request text: the secret key does not belong to this access key)"
    log.debug("OBS's StringToSign differs from fgsync's: %s", _diff_lines(ours, server_sts))
    return f"{message} (OBS signed a different request text than fgsync: something changed the request on the way)"


def _diff_lines(ours: str, theirs: str) -> str:
    """Which StringToSign lines differ, by number (values left out: one of them may be the security token)."""
    a, b = ours.split("\n"), theirs.split("\n")
    differ = [str(i + 1) for i in range(max(len(a), len(b))) if (a[i : i + 1] != b[i : i + 1])]
    return "lines " + ", ".join(differ) if differ else "none"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element) -> dict[str, str]:
    return {_local(child.tag): (child.text or "") for child in element}


def _error_fields(response: httpx.Response) -> tuple[str, str, Optional[str], Optional[str]]:
    """(code, message, request id, OBS's StringToSign) of an error answer; code "" when it is not OBS's."""
    request_id = response.headers.get("x-obs-request-id") or response.headers.get("x-amz-request-id")
    code = response.headers.get("x-obs-error-code", "")
    message = response.headers.get("x-obs-error-message", "")
    sts: Optional[str] = None
    text = response.content.lstrip()
    if text.startswith(b"<"):
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            root = None
        if root is not None and _local(root.tag) == "Error":
            fields = _children(root)
            code = fields.get("Code", code).strip() or code
            message = fields.get("Message", message).strip() or message
            request_id = fields.get("RequestId", "").strip() or request_id
            sts = fields.get("StringToSign")
    if code and not message:
        message = response.reason_phrase or code
    return code, message, request_id, sts


def _parse_listing(response: httpx.Response) -> tuple[list[ObjectInfo], bool, str]:
    try:
        root = ET.fromstring(response.content)
    except ET.ParseError:
        raise ObsError("OBS answered ListObjects with something that is not XML", status=response.status_code) from None
    if _local(root.tag) != "ListBucketResult":
        raise ObsError(f"OBS answered ListObjects with <{_local(root.tag)}>", status=response.status_code)
    fields = _children(root)
    objects = []
    for element in root:
        if _local(element.tag) != "Contents":
            continue
        entry = _children(element)
        objects.append(
            ObjectInfo(
                key=entry.get("Key", ""),
                size=_int(entry.get("Size")),
                etag=entry.get("ETag", "").strip('"'),
                last_modified=entry.get("LastModified", ""),
            )
        )
    truncated = fields.get("IsTruncated", "false").strip().lower() == "true"
    return objects, truncated, fields.get("NextMarker", "").strip()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _path(url: str) -> str:
    return httpx.URL(url).path
