"""The emulated OBS: object calls path style under the emulator's own address, answered as OBS answers them.

A request is an OBS call when its first path segment is not one of the emulator's API roots (``v2``, ``v3``,
``v3.0``, ``_emulator``): that segment is the bucket and the rest of the path the key. A request whose ``Host``
starts with ``<bucket>.`` for a bucket the emulator has (``my-bucket.localhost:8808``) is a virtual-host style call
for that bucket instead, the whole path being the key.

=====================================  ==========  =============================================================
call                                   route       answer
=====================================  ==========  =============================================================
``PUT /{bucket}/{key}``                obs_put     200, ``ETag: "<md5>"`` (Content-MD5 checked: 400 BadDigest)
``HEAD /{bucket}/{key}``               obs_head    200 with Content-Length, ETag, Last-Modified; 404 no body
``GET /{bucket}/{key}``                obs_get     200, the bytes
``DELETE /{bucket}/{key}``             obs_delete  204 (also for a key that does not exist)
``GET /{bucket}?prefix=&marker=&…``    obs_list    200, ``<ListBucketResult>`` (``max-keys`` ≤ 1000, ``delimiter``)
``HEAD /{bucket}``                     obs_head    200, or 404 NoSuchBucket
=====================================  ==========  =============================================================

Every call is authenticated (:mod:`fgsync.emulator.obs_auth`). Errors are OBS's XML (``<Error><Code>…``) with
``x-obs-request-id``; a HEAD error has no body and says ``x-obs-error-code`` / ``x-obs-error-message`` instead.
"""

from __future__ import annotations

import email.utils
import io
import ipaddress
import logging
import time
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from fgsync.emulator.faults import DroppedConnection
from fgsync.emulator.obs_auth import ObsError, check_content_md5, request_headers, verify
from fgsync.emulator.obs_store import RESERVED_SEGMENTS, ObsObject
from fgsync.emulator.store import EmulatorError
from fgsync.emulator.wsgi import Answer, read_body

if TYPE_CHECKING:
    from fgsync.emulator.app import Emulator

log = logging.getLogger(__name__)

ROUTES = ("obs_put", "obs_head", "obs_get", "obs_delete", "obs_list")
#: One PutObject takes at most 5 GB (larger objects need a multipart upload, which the emulator does not serve).
MAX_OBJECT_BYTES = 5 * 1024**3
#: A function's code through OBS: 300 MB zipped, 1.5 GB unzipped.
MAX_OBS_CODE_BYTES = 300 * 1024 * 1024
MAX_UNZIPPED_CODE_BYTES = 1536 * 1024 * 1024
_XMLNS = "http://obs.myhwclouds.com/doc/2015-06-30/"
_FAULT_CODES = {400: "InvalidArgument", 403: "AccessDenied", 404: "NoSuchKey", 408: "RequestTimeout",
                429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}  # fmt: skip


def fault_code(status: int) -> str:
    """The OBS error code an injected fault of this status answers when it names none."""
    return _FAULT_CODES.get(status, "InternalError" if status >= 500 else "InvalidRequest")


def _host_name(environ: Mapping[str, Any]) -> str:
    host = str(environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or "")
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def locate(emu: Emulator, environ: Mapping[str, Any], path: str) -> Optional[tuple[str, str, bool]]:
    """(bucket, key, virtual_host) when the request is an OBS call, else None (a FunctionGraph or IAM call)."""
    host = _host_name(environ)
    label = host.split(".", 1)[0]
    if "." in host and not _is_ip(host) and emu.obs.has_bucket(label):
        return label, _utf8(path[1:]), True
    segment, _, rest = path[1:].partition("/")
    if not segment or segment in RESERVED_SEGMENTS:
        return None
    return _utf8(segment), _utf8(rest), False


def _utf8(text: str) -> str:
    """PATH_INFO as WSGI hands it over (latin-1 decoded bytes) back to the UTF-8 the client meant."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def route_for(method: str, key: str) -> Optional[str]:
    """The route name of an OBS call, or None for a method the emulated OBS does not serve there."""
    if key:
        return {"PUT": "obs_put", "HEAD": "obs_head", "GET": "obs_get", "DELETE": "obs_delete"}.get(method)
    return {"GET": "obs_list", "HEAD": "obs_head"}.get(method)


def _headers(request_id: str) -> list[tuple[str, str]]:
    return [("x-obs-request-id", request_id), ("x-obs-id-2", request_id[::-1]), ("Server", "OBS")]


def error_answer(error: EmulatorError, *, method: str, resource: str, request_id: str) -> Answer:
    """OBS's error answer: XML with Code, Message, RequestId, HostId, Resource (and, for a bad signature, the
    StringToSign OBS computed); for HEAD no body but ``x-obs-error-code`` and ``x-obs-error-message``."""
    headers = _headers(request_id)
    if method == "HEAD":
        headers += [("x-obs-error-code", error.code), ("x-obs-error-message", error.message)]
        return Answer(error.status, b"", headers, content_type="application/xml")
    extra = error.extra if isinstance(error, ObsError) else {}
    fields = {"Code": error.code, "Message": error.message, "RequestId": request_id, "HostId": request_id[::-1],
              "Resource": resource, **extra}  # fmt: skip
    body = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    xml = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Error>{body}</Error>'
    return Answer(error.status, xml.encode("utf-8"), headers, content_type="application/xml")


def _http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def read_object_body(environ: Mapping[str, Any]) -> bytes:
    """The request body of an OBS call (up to 5 GB).

    Raises:
        ObsError: 400 EntityTooLarge.
    """
    try:
        return read_body(environ, limit=MAX_OBJECT_BYTES)
    except EmulatorError as exc:
        if exc.status == 413:
            message = "Your proposed upload exceeds the maximum allowed object size."
            raise ObsError(400, "EntityTooLarge", message) from None
        raise ObsError(400, "IncompleteBody", exc.message) from None


def serve_call(
    emu: Emulator, method: str, bucket: str, key: str, virtual_host: bool, *, environ: Mapping[str, Any],
    request_id: str,
) -> Answer:  # fmt: skip
    """One OBS call: route → count → body → injected fault → signature → bucket → handle; errors as OBS's XML."""
    resource = f"/{bucket}/{key}"
    route = route_for(method, key)
    if route is None:
        refused = ObsError(405, "MethodNotAllowed", f"The emulated OBS does not serve {method} here")
        return error_answer(refused, method=method, resource=resource, request_id=request_id)
    emu.count_call(route)
    try:
        body = read_object_body(environ)
        fault = emu.faults.take(route)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                raise DroppedConnection(f"injected fault: connection dropped on {route}")
            error = fault.error()
            if error is not None:
                status, _, message = error
                raise ObsError(status, fault.code or fault_code(status), message)
        verify(environ, bucket=bucket, key=key, virtual_host=virtual_host, keys=emu.obs_keys, now=emu.clock())
        answer = handle(emu, route, bucket, key, environ, body, request_id)
    except EmulatorError as exc:
        answer = error_answer(exc, method=method, resource=resource, request_id=request_id)
    log.debug("OBS %s %s -> %d", method, resource, answer.status)
    return answer


def handle(emu: Emulator, route: str, bucket: str, key: str, environ: Mapping[str, Any], body: bytes,
           request_id: str) -> Answer:  # fmt: skip
    """Answer one OBS call (already authenticated: :func:`fgsync.emulator.obs_auth.verify`).

    Raises:
        ObsError: the call's error (answered with :func:`error_answer`).
    """
    if not emu.obs.has_bucket(bucket):
        raise ObsError(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
    headers = _headers(request_id)
    if route == "obs_put":
        check_content_md5(request_headers(environ), body)
        content_type = (request_headers(environ).get("content-type") or ["binary/octet-stream"])[0]
        obj = emu.obs.put(bucket, key, body, content_type=content_type)
        return Answer(200, b"", [*headers, ("ETag", f'"{obj.etag}"')], content_type="application/xml")
    if route == "obs_list":
        return _list(emu, bucket, str(environ.get("QUERY_STRING", "")), headers)
    if route == "obs_head" and not key:
        return Answer(200, b"", headers, content_type="application/xml")
    if route == "obs_delete":
        emu.obs.delete(bucket, key)
        return Answer(204, b"", headers)
    found = emu.obs.get(bucket, key)
    if found is None:
        raise ObsError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
    headers += [("ETag", f'"{found.etag}"'), ("Last-Modified", _http_date(found.last_modified))]
    content_type = found.content_type or "binary/octet-stream"
    if route == "obs_head":
        return Answer(200, b"", headers, content_type=content_type, content_length=found.size)
    return Answer(200, found.data, headers, content_type=content_type)


def _list(emu: Emulator, bucket: str, query_string: str, headers: list[tuple[str, str]]) -> Answer:
    query = parse_qs(query_string, keep_blank_values=True)

    def one(name: str) -> str:
        return (query.get(name) or [""])[-1]

    prefix, marker, delimiter = one("prefix"), one("marker"), one("delimiter")
    max_text = one("max-keys") or "1000"
    if not max_text.isdigit():
        raise ObsError(400, "InvalidArgument", f"Invalid max-keys {max_text!r}: an integer from 0 to 1000")
    max_keys = min(int(max_text), 1000)
    contents: list[ObsObject] = []
    prefixes: list[str] = []
    truncated, next_marker = False, ""
    for obj in emu.obs.objects(bucket, prefix):
        if obj.key <= marker or (delimiter and marker.endswith(delimiter) and obj.key.startswith(marker)):
            continue  # a marker that is a common prefix skips the keys it stands for
        entry = obj.key
        if delimiter and delimiter in obj.key[len(prefix) :]:
            entry = obj.key[: obj.key.index(delimiter, len(prefix)) + len(delimiter)]
            if prefixes and prefixes[-1] == entry:
                continue
        if len(contents) + len(prefixes) >= max_keys:
            truncated = True
            break
        if entry == obj.key:
            contents.append(obj)
        else:
            prefixes.append(entry)
        next_marker = entry
    parts = [f"<Name>{escape(bucket)}</Name>", f"<Prefix>{escape(prefix)}</Prefix>"]
    parts.append(f"<Marker>{escape(marker)}</Marker>")
    if truncated:
        parts.append(f"<NextMarker>{escape(next_marker)}</NextMarker>")
    parts += [f"<MaxKeys>{max_keys}</MaxKeys>", f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
    if delimiter:
        parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
    for obj in contents:
        parts.append(
            f"<Contents><Key>{escape(obj.key)}</Key><LastModified>{_iso(obj.last_modified)}</LastModified>"
            f'<ETag>"{obj.etag}"</ETag><Size>{obj.size}</Size><Owner><ID>{emu.domain_id}</ID></Owner>'
            "<Type>NORMAL</Type><StorageClass>STANDARD</StorageClass></Contents>"
        )
    parts += [f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes]
    xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<ListBucketResult xmlns="{_XMLNS}">{"".join(parts)}</ListBucketResult>'
    )
    return Answer(200, xml.encode("utf-8"), headers, content_type="application/xml")


# ---------------------------------------------------------------------- code_url / depend_link


def resolve_url(emu: Emulator, url: str) -> ObsObject:
    """The object an OBS URL names: path style to the emulator itself, or virtual-host style naming one of its
    buckets (``https://{bucket}.obs.{region}.myhuaweicloud.com/{key}``).

    Raises:
        EmulatorError: 400 FSS.1010 for a URL that is not an http(s) URL of an object, or names a bucket in another
            region; 404 FSS.1054 when the bucket or the object does not exist.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or not parts.path.strip("/"):
        raise EmulatorError(400, "FSS.1010", f"Invalid URL: {url!r} is not the URL of an OBS object")
    label, _, rest = host.partition(".")
    if rest and not _is_ip(host) and rest.startswith("obs.") and emu.obs.has_bucket(label):
        region = rest.split(".")[1] if rest.count(".") >= 2 else ""
        if region and region != emu.region:
            raise EmulatorError(
                400, "FSS.1010", f"Invalid URL: the bucket is in {region}; the function is in {emu.region}"
            )
        bucket, key = label, unquote(parts.path[1:])
    else:
        bucket, _, key = parts.path[1:].partition("/")
        bucket, key = unquote(bucket), unquote(key)
    found = emu.obs.get(bucket, key) if key else None
    if found is None:
        where = f"object {key!r} in bucket {bucket!r}" if emu.obs.has_bucket(bucket) else f"bucket {bucket!r}"
        raise EmulatorError(404, "FSS.1054", f"The function app does not exist in OBS: no {where} ({url})")
    return found


def code_from_obs(emu: Emulator, url: str) -> tuple[bytes, str]:
    """A function's code from ``code_url``: (the bytes, the object's file name), within the service's limits.

    Raises:
        EmulatorError: the URL's (see :func:`resolve_url`); 413 FSS.1071 over 300 MB; 400 FSS.1011 when it unzips
            to more than 1.5 GB; 400 FSS.1013 when it is not a zip or jar.
    """
    obj = resolve_url(emu, url)
    if obj.size > MAX_OBS_CODE_BYTES:
        raise EmulatorError(
            413, "FSS.1071", f"The code package is {obj.size} bytes; through OBS the limit is {MAX_OBS_CODE_BYTES} "
            "bytes (300 MB)",
        )  # fmt: skip
    if not obj.data.startswith(b"PK"):
        raise EmulatorError(400, "FSS.1013", "Invalid file type: the OBS object is not a zip or jar archive")
    try:
        with zipfile.ZipFile(io.BytesIO(obj.data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        unzipped = 0  # a damaged archive is found when the function runs, as for an uploaded zip
    if unzipped > MAX_UNZIPPED_CODE_BYTES:
        raise EmulatorError(
            400, "FSS.1011", f"Invalid function code: the package unzips to {unzipped} bytes; the limit is "
            f"{MAX_UNZIPPED_CODE_BYTES} bytes (1.5 GB)",
        )  # fmt: skip
    return obj.data, obj.key.rsplit("/", 1)[-1]
