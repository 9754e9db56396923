"""From what went wrong on the wire to the error the user reads: answers that are not a success become the
matching :class:`~fgsync.errors.ApiError`, transport failures a description for a NetworkError."""

from __future__ import annotations

from typing import Any, Optional

import httpx

from fgsync.errors import ApiError, AuthApiError, TransientApiError

_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


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


def describe_transport_error(error: httpx.TransportError) -> str:
    kind = {
        httpx.ConnectError: "cannot connect",
        httpx.ConnectTimeout: "connection timed out",
        httpx.ReadTimeout: "timed out waiting for the answer",
        httpx.WriteTimeout: "timed out sending the request",
        httpx.RemoteProtocolError: "the connection was dropped",
        httpx.ReadError: "the connection broke while reading the answer",
        httpx.WriteError: "the connection broke while sending",
    }
    for cls, text in kind.items():
        if isinstance(error, cls):
            detail = str(error)
            return f"{text} ({detail})" if detail else text
    return str(error) or type(error).__name__
