"""FunctionGraph client over httpx: the calls fgsync uses, and the retry policy.

The client takes plain values (endpoint, project id, an ``httpx.Auth``) and never reads the config. Every answer
that is not a success becomes an :class:`~fgsync.errors.ApiError` carrying the HTTP status, the service's code and
message, and the request id; a redirect, a proxy's HTML page or a clock-skew 401 each say what to check
(:mod:`fgsync.remote.errors`). Every request has an overall deadline (:mod:`fgsync.remote.deadline`). Network
failures (but not TLS verification), 408, 429 and 5xx are retried with capped exponential backoff and full
jitter; other 4xx are not.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union
from urllib.parse import quote

import httpx

from fgsync.errors import ApiError, NetworkError, TransientApiError
from fgsync.remote.deadline import install_deadlines, request_budget, request_deadline
from fgsync.remote.dependencies import DependencyCalls
from fgsync.remote.errors import error_from_response, host_port, json_object, network_error
from fgsync.remote.models import DependencyVersion, parse_attached

log = logging.getLogger(__name__)

ProgressHook = Callable[[int, int], None]
Verify = Union[ssl.SSLContext, bool]

_UPLOAD_CHUNK = 256 * 1024
#: The longest wait for a TCP connection, when the request's budget is longer.
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures.

    The n-th retry waits a random time in [0, min(cap, base * 2**n)] ("full jitter"), or the server's
    ``Retry-After`` when it says so (capped too).
    """

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0

    def delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        return float(rng()) * min(self.cap, self.base * (2.0**retry))


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
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class Invocation:
    """A sync invocation's answer (v1 format)."""

    request_id: str
    status: int
    result: str
    log: str
    ms: int
    function_error: bool
    summary: Mapping[str, Any] = field(default_factory=dict)


class FunctionGraphClient(DependencyCalls):
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
        self.endpoint = endpoint.rstrip("/")
        self.project_id = project_id
        self._retry = retry
        self._sleep = sleep
        self._rng = rng
        self._timeout = timeout
        self._http = httpx.Client(
            auth=auth,
            verify=verify,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(_CONNECT_TIMEOUT, timeout)),
            headers={"User-Agent": _user_agent()},
        )
        install_deadlines(self._http)

    def close(self) -> None:
        self._http.close()

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
            dependencies=parse_attached(data.get("dependencies")),
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
        body: dict[str, Any] = {
            "code_type": code_type,
            "code_filename": code_filename,
            "func_code": {"file": base64.b64encode(data).decode("ascii"), "link": ""},
            # Re-sent on every update: leaving it out may detach the function's dependencies.
            "depend_version_list": list(depend_version_list),
        }
        if kms_key_id:
            body["code_encrypt_kms_key_id"] = kms_key_id
        payload = json.dumps(body, separators=(",", ":")).encode("ascii")
        url = self._function_url(urn, "code")
        response = self._call("UpdateFunctionCode", "PUT", url, body=payload, progress=progress)
        return _remote_code(json_object(response, "UpdateFunctionCode"))

    def invoke(self, urn: str, event: bytes) -> Invocation:
        """Sync InvokeFunction with the v1 answer and the log tail. Not retried: a handler may have effects."""
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
        body: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        progress: Optional[ProgressHook] = None,
        retries: Optional[int] = None,
    ) -> httpx.Response:
        attempts = (self._retry.attempts if retries is None else retries) + 1
        for attempt in range(attempts):
            try:
                return self._once(method, url, body=body, headers=headers, progress=progress)
            except (NetworkError, TransientApiError) as error:
                if not error.retryable or attempt + 1 >= attempts:
                    raise
                self._wait_to_retry(call, error, attempt, attempts)
        raise AssertionError("unreachable")

    def _wait_to_retry(self, call: str, error: ApiError, attempt: int, attempts: int) -> None:
        """Sleep before retry ``attempt + 1`` of ``attempts - 1``: the server's Retry-After, else the backoff."""
        wait = error.retry_after
        delay = min(self._retry.cap, wait) if wait is not None else self._retry.delay(attempt, self._rng)
        # The call's name, not its path: the URN-laden path is noise, and the message names the host.
        log.info("%s: %s; retry %d of %d in %.1f s", call, error, attempt + 1, attempts - 1, delay)
        self._sleep(delay)

    def _once(
        self,
        method: str,
        url: str,
        *,
        body: Optional[bytes],
        headers: Optional[Mapping[str, str]],
        progress: Optional[ProgressHook],
    ) -> httpx.Response:
        request_headers = {"Content-Type": "application/json"}
        request_headers.update(headers or {})
        content: Any = body
        if body is not None and progress is not None:
            request_headers["Content-Length"] = str(len(body))
            content = _ProgressBody(body, progress)
        budget = request_budget(self._timeout, len(body or b""))
        timeout = httpx.Timeout(budget, connect=min(_CONNECT_TIMEOUT, budget))
        with request_deadline(budget) as limit:
            try:
                response = self._http.request(method, url, content=content, headers=request_headers, timeout=timeout)
            except httpx.TransportError as error:
                raise network_error(error, httpx.URL(url), budget=limit, request_timeout=self._timeout) from None
        if response.is_success:
            return response
        raise error_from_response(response)


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
        dependencies=parse_attached(data.get("dependencies")),
        raw=dict(data),
    )


def _version_ids(value: Any) -> tuple[str, ...]:
    """``depend_version_list`` as a tuple of ids (null, or not a list: none)."""
    return tuple(str(d) for d in value) if isinstance(value, list) else ()


class _ProgressBody:
    """The request body in chunks, reporting progress; iterable again, so a request can be re-sent after a 401."""

    def __init__(self, body: bytes, progress: ProgressHook) -> None:
        self._body = body
        self._progress = progress

    def __iter__(self) -> Iterator[bytes]:
        total = len(self._body)
        for start in range(0, total, _UPLOAD_CHUNK):
            chunk = self._body[start : start + _UPLOAD_CHUNK]
            yield chunk
            self._progress(min(start + len(chunk), total), total)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _user_agent() -> str:
    from fgsync import __version__

    return f"fgsync/{__version__}"
