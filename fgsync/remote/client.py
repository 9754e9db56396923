"""FunctionGraph client over httpx: the calls fgsync uses, and the retry policy.

The client takes plain values (endpoint, project id, an ``httpx.Auth``) and never reads the config. Every answer
that is not a success becomes an :class:`~fgsync.errors.ApiError` carrying the HTTP status, the service's code and
message, and the request id; a redirect, a proxy's HTML page or a clock-skew 401 each say what to check
(:mod:`fgsync.remote.errors`). Every request has an overall deadline (:mod:`fgsync.remote.deadline`). Network
failures (but not TLS verification), 408, 429 and 5xx are retried with capped exponential backoff and full
jitter; other 4xx are not.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import quote

import httpx

from fgsync.errors import ApiError
from fgsync.remote.dependencies import DependencyCalls
from fgsync.remote.errors import host_port, json_object
from fgsync.remote.http import HttpService, ProgressHook, RetryPolicy, Verify
from fgsync.upload import UploadBody

if TYPE_CHECKING:
    from fgsync.remote.invocation import Invocation  # imported where used: only `fgsync invoke` needs it
    from fgsync.remote.models import DependencyVersion  # imported where used: see _attached

log = logging.getLogger(__name__)

__all__ = ["FunctionGraphClient", "ProgressHook", "RemoteCode", "RemoteConfig", "RetryPolicy", "Verify"]


@dataclass(frozen=True)
class RemoteCode:
    """What ShowFunctionCode / UpdateFunctionCode answer about a function's code.

    ``depend_version_list`` holds the attached dependency version ids, ``dependencies`` the service's
    description of each (its ``dep_id``, ``name`` and ``version`` number).
    """

    urn: str
    name: str
    runtime: str
    code_type: str
    code_filename: str
    code_size: int
    digest: str
    last_modified: str
    depend_version_list: tuple[str, ...]
    dependencies: tuple[DependencyVersion, ...] = ()
    #: Where the code came from with ``code_type = "obs"``: the object's URL ("" otherwise).
    code_url: str = ""
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class RemoteConfig:
    """What ShowFunctionConfig answers (the fields fgsync shows; dependencies as in :class:`RemoteCode`)."""

    urn: str
    name: str
    runtime: str
    handler: str
    memory_size: int
    timeout: int
    code_size: int
    digest: str
    last_modified: str
    depend_version_list: tuple[str, ...] = ()
    dependencies: tuple[DependencyVersion, ...] = ()
    code_type: str = ""
    #: Where the code came from with ``code_type = "obs"``: the object's URL ("" otherwise).
    code_url: str = ""
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)


class FunctionGraphClient(DependencyCalls, HttpService):
    """The FunctionGraph calls fgsync needs (the dependency calls come from :class:`DependencyCalls`).

    Args:
        endpoint: base URL, e.g. ``https://functiongraph.cn-north-4.myhuaweicloud.com``.
        project_id: the 32-character project id.
        auth: adds credentials to each request (token header or AK/SK signature).
        verify: TLS verification (an SSLContext; False only for tests over plain http).
        transport: an httpx transport, e.g. ``httpx.WSGITransport(app=...)`` in tests.
        retry: the retry policy for transient failures.
        sleep: how to wait between retries (tests pass a fake).
        timeout: ``request_timeout_s``: the longest one request may take, connect to the last byte of the
            answer, plus the time its body needs at 100 KB/s; then it fails as a retryable NetworkError.
    """

    def __init__(
        self,
        endpoint: str,
        project_id: str,
        *,
        auth: httpx.Auth,
        verify: Verify = True,
        transport: Optional[httpx.BaseTransport] = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(
            auth=auth, verify=verify, transport=transport, retry=retry, sleep=sleep, timeout=timeout, rng=rng
        )
        self.endpoint = endpoint.rstrip("/")
        self.project_id = project_id

    def __enter__(self) -> FunctionGraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _function_url(self, urn: str, suffix: str) -> str:
        # The SDK percent-encodes the URN (":" -> "%3A"); FunctionGraph accepts both forms.
        return f"{self.endpoint}/v2/{self.project_id}/fgs/functions/{quote(urn, safe='')}/{suffix}"

    def show_code(self, urn: str) -> RemoteCode:
        """ShowFunctionCode: the function's current code fingerprint (``digest``) and dependencies.

        Raises:
            ApiError: the answer has no digest (see :func:`_with_digest`).
        """
        response = self._call("ShowFunctionCode", "GET", self._function_url(urn, "code"))
        return _remote_code(_with_digest(response, "ShowFunctionCode"))

    def show_config(self, urn: str) -> RemoteConfig:
        """ShowFunctionConfig: runtime, handler, memory, timeout, code size and digest."""
        response = self._call("ShowFunctionConfig", "GET", self._function_url(urn, "config"))
        data = _with_digest(response, "ShowFunctionConfig")
        return RemoteConfig(
            urn=str(data.get("func_urn") or urn),
            name=str(data.get("func_name") or ""),
            runtime=str(data.get("runtime") or ""),
            handler=str(data.get("handler") or ""),
            memory_size=_int(data.get("memory_size")),
            timeout=_int(data.get("timeout")),
            code_size=_int(data.get("code_size")),
            digest=str(data.get("digest") or ""),
            last_modified=str(data.get("last_modified") or ""),
            depend_version_list=_version_ids(data.get("depend_version_list")),
            dependencies=_attached(data.get("dependencies")),
            code_type=str(data.get("code_type") or ""),
            code_url=str(data.get("code_url") or ""),
            raw=data,
        )

    def update_code(
        self,
        urn: str,
        *,
        code_type: str,
        code_filename: str,
        data: bytes,
        depend_version_list: Sequence[str],
        kms_key_id: Optional[str] = None,
        progress: Optional[ProgressHook] = None,
    ) -> RemoteCode:
        """UpdateFunctionCode: replace the function's code with ``data`` (a zip or jar).

        Raises:
            ValueError: ``data`` is empty — an empty ``func_code.file`` resets the function to template code,
                so the client refuses to send one whatever the caller did.
        """
        if not data:
            raise ValueError("refusing to send an empty package: it would reset the function to template code")
        fields: dict[str, Any] = {
            "code_type": code_type,
            "code_filename": code_filename,
            "func_code": {"file": "", "link": ""},
            # Re-sent on every update: leaving it out may detach the function's dependencies.
            "depend_version_list": list(depend_version_list),
        }
        if kms_key_id:
            fields["code_encrypt_kms_key_id"] = kms_key_id
        url = self._function_url(urn, "code")
        response = self._call("UpdateFunctionCode", "PUT", url, body=code_body(fields, data), progress=progress)
        return _remote_code(json_object(response, "UpdateFunctionCode"))

    def update_code_from_obs(
        self,
        urn: str,
        *,
        code_url: str,
        code_filename: str,
        depend_version_list: Sequence[str],
        kms_key_id: Optional[str] = None,
    ) -> RemoteCode:
        """UpdateFunctionCode with ``code_type = "obs"``: the function's code is the zip at ``code_url`` (an object
        in a bucket of the function's region), read by the service; nothing but the address is sent."""
        body: dict[str, Any] = {
            "code_type": "obs",
            "code_url": code_url,
            "code_filename": code_filename,
            "func_code": {},
            "depend_version_list": list(depend_version_list),
        }
        if kms_key_id:
            body["code_encrypt_kms_key_id"] = kms_key_id
        payload = json.dumps(body, separators=(",", ":")).encode("ascii")
        response = self._call("UpdateFunctionCode", "PUT", self._function_url(urn, "code"), body=payload)
        return _remote_code(json_object(response, "UpdateFunctionCode"))

    def invoke(self, urn: str, event: bytes) -> Invocation:
        """Sync InvokeFunction with the v1 answer and the log tail. Not retried: a handler may have effects."""
        from fgsync.remote.invocation import Invocation  # here: see the TYPE_CHECKING import

        started = time.monotonic()
        headers = {"X-Cff-Log-Type": "tail", "X-CFF-Request-Version": "v1"}
        url = self._function_url(urn, "invocations")
        response = self._call("InvokeFunction", "POST", url, body=event, headers=headers, retries=0)
        ms = int((time.monotonic() - started) * 1000)
        data = json_object(response, "InvokeFunction")
        try:
            summary = json.loads(response.headers.get("X-Cff-Invoke-Summary") or "{}")
        except ValueError:
            summary = {}
        result = data.get("result")
        return Invocation(
            request_id=str(data.get("request_id") or response.headers.get("X-Cff-Request-Id") or ""),
            status=_int(data.get("status")),
            result=result if isinstance(result, str) else json.dumps(result),
            log=str(data.get("log") or ""),
            ms=ms,
            function_error=response.headers.get("X-Is-Func-Err", "").lower() == "true"
            or response.headers.get("X-Func-Err-Code", "0") not in ("0", ""),
            summary=summary if isinstance(summary, dict) else {},
        )

    def _call(
        self,
        call: str,
        method: str,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        **options: Any,
    ) -> httpx.Response:
        """:meth:`HttpService._call` with FunctionGraph's JSON content type."""
        json_headers = {"Content-Type": "application/json", **(headers or {})}
        return super()._call(call, method, url, headers=json_headers, **options)


_FILE_VALUE = b'"func_code":{"file":"'


def code_body(fields: Mapping[str, Any], data: bytes) -> UploadBody:
    """UpdateFunctionCode's body: ``fields`` as compact JSON, with the base64 of ``data`` as ``func_code.file``.

    The bytes are exactly ``json.dumps`` of the fields with the base64 filled in, but the base64 is made in
    pieces as the body is sent (:class:`~fgsync.upload.UploadBody`). The frame is cut at the first
    ``"func_code":{"file":"``: JSON escapes every quote inside a string, so that text can only be the key itself.
    """
    frame = json.dumps(fields, separators=(",", ":")).encode("ascii")
    cut = frame.index(_FILE_VALUE) + len(_FILE_VALUE)
    return UploadBody.json_around(frame[:cut], data, frame[cut:])


def _with_digest(response: httpx.Response, call: str) -> dict[str, Any]:
    """The answer's JSON object, which must carry the code's ``digest``.

    Without it fgsync cannot tell what code the function runs: an empty digest would match no record, skip the
    drift check and upload blindly (or call an in-sync function drifted). Not retryable: a complete 200 answer
    is what that server means to send, so asking again asks the same question; `watch` reports it and the next
    change tries again.

    Raises:
        ApiError: the body is empty, not a JSON object, or has no non-empty ``digest`` string.
    """
    data = json_object(response, call)
    digest = data.get("digest")
    if isinstance(digest, str) and digest.strip():
        return data
    if not response.content:
        what = "an empty body"
    elif digest is None:
        what = "without a digest"
    else:
        what = f"an unusable digest ({json.dumps(digest)[:40]})"
    raise ApiError(
        f"{call} at {host_port(response.url)} answered {what}: fgsync cannot tell what code the function runs, so "
        "it neither skips nor uploads; is `endpoint` in fgsync.toml the FunctionGraph API?",
        status=response.status_code,
        request_id=response.headers.get("X-Request-Id"),
    )


def _remote_code(data: Mapping[str, Any]) -> RemoteCode:
    return RemoteCode(
        urn=str(data.get("func_urn") or ""),
        name=str(data.get("func_name") or ""),
        runtime=str(data.get("runtime") or ""),
        code_type=str(data.get("code_type") or ""),
        code_filename=str(data.get("code_filename") or ""),
        code_size=_int(data.get("code_size")),
        digest=str(data.get("digest") or "").lower(),
        last_modified=str(data.get("last_modified") or ""),
        depend_version_list=_version_ids(data.get("depend_version_list")),
        dependencies=_attached(data.get("dependencies")),
        code_url=str(data.get("code_url") or ""),
        raw=dict(data),
    )


def _attached(value: Any) -> tuple[DependencyVersion, ...]:
    """A function's ``dependencies[]``; with none (null, or an empty list) the wire models are never loaded."""
    if not value:
        return ()
    from fgsync.remote.models import parse_attached  # here: only a function with dependencies needs them

    return parse_attached(value)


def _version_ids(value: Any) -> tuple[str, ...]:
    """``depend_version_list`` as a tuple of ids (null, or not a list: none)."""
    return tuple(str(d) for d in value) if isinstance(value, list) else ()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
