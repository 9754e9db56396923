"""What went wrong on the wire, as the error a user reads: answers that are not a success, and requests that
got no complete answer.

Every network error names the host and port fgsync was talking to (and a request that outlived its deadline,
the budget it had); a TLS verification failure is not retried
and points at ``ca_bundle``. The config key to check is a parameter (``endpoint`` for FunctionGraph,
``iam_endpoint`` for IAM): this module, like the client, never reads the config.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from typing import Any, Optional

import httpx

from fgsync.errors import ApiError, AuthApiError, NetworkError, TransientApiError
from fgsync.remote.deadline import Deadline

_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_ERRNO_PREFIX = re.compile(r"^\[Errno -?\d+\]\s*")
_SSL_SUFFIX = re.compile(r"\s*\(_ssl\.c:\d+\)$")
_TLS_NOT_SPOKEN = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL"})


def host_port(url: httpx.URL) -> str:
    """``host:port`` of a URL, the default port filled in (``[::1]:8808`` for IPv6)."""
    host = url.host or "?"
    if ":" in host:
        host = f"[{host}]"
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{host}:{port}"


# -- no complete answer ----------------------------------------------------------------------------------------


def network_error(
    error: httpx.TransportError,
    url: httpx.URL,
    *,
    budget: Optional[Deadline] = None,
    request_timeout: Optional[float] = None,
    endpoint_key: str = "endpoint",
) -> NetworkError:
    """The NetworkError for a request that got no complete answer; retryable unless retrying cannot help.

    Args:
        error: what httpx raised.
        url: the request's URL (its host and port are named).
        budget: the request's deadline, when it had one: a timeout at the deadline says so.
        request_timeout: ``request_timeout_s``, to explain the budget.
        endpoint_key: the config key that names this host.
    """
    where = host_port(url)
    if isinstance(error, httpx.TimeoutException) and budget is not None and budget.expired():
        within = f"{_seconds(budget.seconds)} s{_budget_note(budget, request_timeout)}"
        return NetworkError(f"no complete answer from {where} within {within}")
    causes = list(_causes(error))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return NetworkError(_verify_failed(where, cause, endpoint_key), retryable=False)
        if isinstance(cause, ssl.SSLError) and getattr(cause, "reason", None) in _TLS_NOT_SPOKEN:
            return NetworkError(
                f"{where} does not speak TLS ({_ssl_words(cause)}); check `{endpoint_key}` in fgsync.toml "
                "(https:// needs a TLS server; a local emulator is http://)",
                retryable=False,
            )
    detail = _detail(error, causes)
    if isinstance(error, httpx.ConnectTimeout):
        return NetworkError(f"cannot connect to {where} (timed out)")
    if isinstance(error, httpx.ConnectError):
        return NetworkError(f"cannot connect to {where} ({detail})")
    if isinstance(error, httpx.ProxyError):
        return NetworkError(f"the proxy refused the connection to {where} ({detail})")
    if isinstance(error, httpx.ReadTimeout):
        return NetworkError(f"no answer from {where} (timed out waiting for it)")
    if isinstance(error, httpx.WriteTimeout):
        return NetworkError(f"cannot send the request to {where} (timed out)")
    if isinstance(error, httpx.PoolTimeout):
        return NetworkError(f"no free connection to {where} (timed out)")
    if isinstance(error, httpx.RemoteProtocolError):
        return NetworkError(f"the connection to {where} was dropped before a complete answer ({detail})")
    if isinstance(error, httpx.ReadError):
        return NetworkError(f"the connection to {where} broke while reading the answer ({detail})")
    if isinstance(error, httpx.WriteError):
        return NetworkError(f"the connection to {where} broke while sending the request ({detail})")
    return NetworkError(f"{type(error).__name__} talking to {where} ({detail})")


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it, outermost first (httpx -> httpcore -> ssl / socket)."""
    seen: set[int] = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _detail(error: BaseException, causes: list[BaseException]) -> str:
    """``Connection refused``: the operating system's words when there are some, else httpx's."""
    for cause in reversed(causes):
        if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError) and cause.strerror:
            return str(cause.strerror)
    text = _ERRNO_PREFIX.sub("", str(error)).strip()
    return _SSL_SUFFIX.sub("", text) or type(error).__name__


def _ssl_words(error: ssl.SSLError) -> str:
    return _SSL_SUFFIX.sub("", str(getattr(error, "verify_message", None) or error.reason or error))


def _verify_failed(where: str, error: ssl.SSLCertVerificationError, endpoint_key: str) -> str:
    words = _ssl_words(error)
    fix = (
        "if your company's proxy or a private CA issues it, set `ca_bundle` in fgsync.toml to a PEM file of that "
        "CA (fgsync never turns TLS verification off)"
    )
    if getattr(error, "verify_code", None) == 62 or "mismatch" in words.lower():  # X509_V_ERR_HOSTNAME_MISMATCH
        return (
            f"the TLS certificate of {where} is for another host ({words}); check `{endpoint_key}` in fgsync.toml, "
            f"or {fix}"
        )
    return f"cannot verify the TLS certificate of {where} ({words}); {fix}"


def _seconds(value: float) -> str:
    """``0.5``, ``60``, ``161.2``: one decimal at most."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _budget_note(budget: Deadline, request_timeout: Optional[float]) -> str:
    if request_timeout is None:
        return ""
    extra = budget.seconds - request_timeout
    if extra < 0.05:
        return " (request_timeout_s in fgsync.toml)"
    return f" (request_timeout_s = {request_timeout:g}, plus {_seconds(extra)} s for the request body at 100 KB/s)"


# -- an answer that is not a success ---------------------------------------------------------------------------


def error_from_response(response: httpx.Response) -> ApiError:
    """Turn an error answer into the matching ApiError subclass.

    FunctionGraph answers ``{"error_code", "error_msg"}``; some gateways (and IAM) ``{"error": {"code",
    "message"}}``; codes are not always ``FSS.`` (``APIGW.``, ``FGS.``), so none is hard-coded.
    """
    status = response.status_code
    code, message = _parse_error_body(response)
    request_id = response.headers.get("X-Request-Id") or response.headers.get("X-Openstack-Request-Id")
    kwargs: dict[str, Any] = {"status": status, "code": code or f"HTTP.{status}", "request_id": request_id}
    if status == 401:
        return AuthApiError(message, **kwargs)
    if status in _TRANSIENT_STATUSES:
        error = TransientApiError(message, retryable=True, **kwargs)
        error.retry_after = _retry_after(response.headers.get("Retry-After"))
        return error
    return ApiError(message, **kwargs)


def _parse_error_body(response: httpx.Response) -> tuple[str, str]:
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        if "error_code" in data or "error_msg" in data:
            return str(data.get("error_code") or ""), str(data.get("error_msg") or response.reason_phrase)
        inner = data.get("error")
        if isinstance(inner, dict):
            return str(inner.get("code") or ""), str(inner.get("message") or response.reason_phrase)
    text = response.text.strip().replace("\n", " ")
    return "", (text[:200] if text else response.reason_phrase or "no message")


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
