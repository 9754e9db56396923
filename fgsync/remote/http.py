"""What every fgsync HTTP client shares: the retry policy, the per-request deadline, the progress-reporting body,
and the mapping of transport failures — so the FunctionGraph client and the OBS client behave alike.

A subclass says what its calls are (``_call(name, method, url, ...)``) and how an answer that is not a success
becomes an error (``_error``); everything else is here.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import httpx

from fgsync.errors import ApiError, NetworkError, TransientApiError
from fgsync.remote.deadline import install_deadlines, request_budget, request_deadline
from fgsync.remote.errors import error_from_response, network_error
from fgsync.upload import UPLOAD_CHUNK, ProgressHook, UploadBody

log = logging.getLogger(__name__)

__all__ = ["CONNECT_TIMEOUT", "UPLOAD_CHUNK", "HttpService", "ProgressHook", "RetryPolicy", "UploadBody", "Verify"]

Verify = Union[ssl.SSLContext, bool]

#: The longest wait for a TCP connection, when the request's budget is longer.
CONNECT_TIMEOUT = 10.0


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


def user_agent() -> str:
    """``fgsync/<version>``."""
    from fgsync import __version__

    return f"fgsync/{__version__}"


class HttpService:
    """An httpx client with fgsync's retries, deadline and error mapping.

    Args:
        auth: adds credentials to each request.
        verify: TLS verification (an SSLContext; False only for tests over plain http).
        transport: an httpx transport (tests).
        retry: the retry policy for transient failures.
        sleep: how to wait between retries (tests pass a fake).
        timeout: ``request_timeout_s``: the longest one request may take, connect to the last byte of the answer,
            plus the time its body needs at 100 KB/s; then it fails as a retryable NetworkError.
        rng: [0, 1) for the jitter.
        endpoint_key: the fgsync.toml key that names this service's address (for the messages).
    """

    def __init__(
        self,
        *,
        auth: httpx.Auth,
        verify: Verify = True,
        transport: Optional[httpx.BaseTransport] = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
        rng: Callable[[], float] = random.random,
        endpoint_key: str = "endpoint",
    ) -> None:
        self._retry = retry
        self._sleep = sleep
        self._rng = rng
        self._timeout = timeout
        self._endpoint_key = endpoint_key
        self._http = httpx.Client(
            auth=auth,
            verify=verify,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            headers={"User-Agent": user_agent()},
        )
        install_deadlines(self._http)

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        call: str,
        method: str,
        url: str,
        *,
        body: Any = None,
        size: Optional[int] = None,
        headers: Optional[Mapping[str, str]] = None,
        progress: Optional[ProgressHook] = None,
        retries: Optional[int] = None,
        accept: Optional[Callable[[httpx.Response], bool]] = None,
        error: Optional[Callable[[httpx.Response], ApiError]] = None,
    ) -> httpx.Response:
        """One call, retried on network failures, 408, 429 and 5xx.

        Args:
            call: its name in log lines (``ShowFunctionCode``, ``OBS put``).
            method, url: the request.
            body: bytes, an :class:`UploadBody` (sent as a stream, never joined), or a re-iterable of chunks
                whose length is ``size``.
            size: the body's length when it is neither (for the deadline and Content-Length).
            headers: extra headers.
            progress: reports the upload of the body (bytes sent, total).
            retries: retries instead of the policy's.
            accept: an answer that is not a success but that this predicate accepts is returned, not raised.
            error: what an answer that is not a success means, for this call (default: :meth:`_error`).
        """
        attempts = (self._retry.attempts if retries is None else retries) + 1
        if progress is not None and isinstance(body, (bytes, bytearray)):
            body = UploadBody([bytes(body)])
        if isinstance(body, UploadBody):
            body = body.with_progress(progress)  # every attempt iterates it afresh: a retry sends it whole
        for attempt in range(attempts):
            try:
                response = self._once(method, url, body=body, size=size, headers=headers)
            except (NetworkError, TransientApiError) as failure:
                if not failure.retryable or attempt + 1 >= attempts:
                    raise
                self._wait_to_retry(call, failure, attempt, attempts)
                continue
            if response.is_success or (accept is not None and accept(response)):
                return response
            problem = (error or self._error)(response)
            if not problem.retryable or attempt + 1 >= attempts:
                raise problem
            self._wait_to_retry(call, problem, attempt, attempts)
        raise AssertionError("unreachable")

    def _wait_to_retry(self, call: str, failure: ApiError, attempt: int, attempts: int) -> None:
        wait = failure.retry_after
        delay = min(self._retry.cap, wait) if wait is not None else self._retry.delay(attempt, self._rng)
        # The call's name, not its path: the path is noise, and the message names the host.
        log.info("%s: %s; retry %d of %d in %.1f s", call, failure, attempt + 1, attempts - 1, delay)
        self._sleep(delay)

    def _once(
        self,
        method: str,
        url: str,
        *,
        body: Any,
        size: Optional[int],
        headers: Optional[Mapping[str, str]],
    ) -> httpx.Response:
        """One request under its deadline; a transport failure becomes a NetworkError, an answer is returned."""
        request_headers = dict(headers or {})
        if isinstance(body, UploadBody):
            length = body.length
        elif isinstance(body, (bytes, bytearray)):
            length = len(body)
        else:
            length = size or 0
        if body is not None and not isinstance(body, (bytes, bytearray)):
            request_headers.setdefault("Content-Length", str(length))
        budget = request_budget(self._timeout, length)
        timeout = httpx.Timeout(budget, connect=min(CONNECT_TIMEOUT, budget))
        with request_deadline(budget) as limit:
            try:
                if isinstance(body, UploadBody):
                    # Built without content, then given the body as its stream: httpx sends a SyncByteStream as
                    # it is, where `content=` would wrap it in a stream of its own that auth flows cannot read.
                    bare = self._http.build_request(method, url, headers=request_headers, timeout=timeout)
                    request = httpx.Request(
                        bare.method, bare.url, headers=bare.headers, stream=body, extensions=bare.extensions
                    )
                    response = self._http.send(request)
                else:
                    response = self._http.request(
                        method, url, content=body, headers=request_headers, timeout=timeout
                    )
            except httpx.TransportError as error:
                raise network_error(
                    error, httpx.URL(url), budget=limit, request_timeout=self._timeout, endpoint_key=self._endpoint_key
                ) from None
        return response

    def _error(self, response: httpx.Response) -> ApiError:
        """The error an answer that is not a success means (subclasses know their service's error bodies)."""
        return error_from_response(response, endpoint_key=self._endpoint_key)
