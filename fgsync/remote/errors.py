"""What went wrong on the wire, as the error a user reads: answers that are not a success, and requests that
got no complete answer.

Every network error names the host and port fgsync was talking to; a redirect shows its ``Location`` and says
that fgsync does not follow it; an HTML page (a proxy's 502) is summarised by its title, never pasted; a TLS
verification failure is not retried and points at ``ca_bundle``; a 401 for a signed request whose time is
outside the gateway's window says to fix the clock, not to log in. The config key to check is a parameter
(``endpoint`` for FunctionGraph, ``iam_endpoint`` for IAM): this module, like the client, never reads the config.
"""

from __future__ import annotations

import calendar
import contextlib
import email.utils
import html
import re
import ssl
import time
from collections.abc import Iterator
from typing import Any, Optional

import httpx

from fgsync.errors import (
    ApiError,
    AuthApiError,
    ClockSkewError,
    DependencyInUseError,
    DependencyNotFoundError,
    NetworkError,
    TransientApiError,
)
from fgsync.remote.deadline import Deadline

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The API gateway refuses a signed request whose X-Sdk-Date is further than this from its clock.
SIGNATURE_WINDOW_S = 15 * 60
# The patterns below are compiled on first use (re keeps them): most only ever serve a failure.
# Words a gateway uses when it refuses a signature for its time (Huawei's APIG: "x-sdk-date", "signature
# expired"; the emulator: "...away from the server's clock").
_SKEW_WORDS = r"(?i)x-sdk-date|clock|signature (?:has )?expired|request (?:has )?expired|time ?skew"
_ERRNO_PREFIX = r"^\[Errno -?\d+\]\s*"
_SSL_SUFFIX = r"\s*\(_ssl\.c:\d+\)$"
_TLS_NOT_SPOKEN = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL"})
# FunctionGraph's codes come as FSS.xxxx, and in one doc page as FGS.xxxx: the classes and hints go by the number.
_SERVICE_CODE = r"(?i)^(?:FSS|FGS)\.(\d{4})$"
#: Codes with an error class of their own (the caller acts on them: keeps an in-use version, republishes).
_CODE_CLASSES: dict[str, type[ApiError]] = {"1033": DependencyInUseError, "1056": DependencyNotFoundError}
#: What to do about a code, when the service's message does not say it (a call may replace it with its own).
CODE_HINTS = {
    "1024": "FunctionGraph refused the dependency package: a zip of at most 40 MB (300 MB through OBS) and "
    "30,000 files, no file name ending in `~`, no path leaving the zip",
    "1032": "depend_type is `zip` (the package in the request) or `obs` (its OBS address in depend_link)",
    "1033": "a function, or a published version of one, still lists it in depend_version_list: detach it first",
    "1045": "a function takes at most 20 dependencies (its depend_version_list, fgsync's own dependency included)",
    "1056": "it was deleted, or belongs to another project or region: depend_version_list takes the version ids of "
    "existing dependency versions",
}


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
    if isinstance(error, httpx.LocalProtocolError):
        # Its text quotes the offending header, which may be the credential itself: never show it.
        return NetworkError(
            f"fgsync could not build a valid request for {where} (a header value is malformed)", retryable=False
        )
    detail = _detail(error, causes)
    if isinstance(error, httpx.ConnectTimeout):
        return NetworkError(f"cannot connect to {where} (timed out)", sent=False)
    if isinstance(error, httpx.ConnectError):
        return NetworkError(f"cannot connect to {where} ({detail})", sent=False)
    if isinstance(error, httpx.ProxyError):
        return NetworkError(f"the proxy refused the connection to {where} ({detail})", sent=False)
    if isinstance(error, httpx.ReadTimeout):
        return NetworkError(f"no answer from {where} (timed out waiting for it)")
    if isinstance(error, httpx.WriteTimeout):
        return NetworkError(f"cannot send the request to {where} (timed out)")
    if isinstance(error, httpx.PoolTimeout):
        return NetworkError(f"no free connection to {where} (timed out)", sent=False)
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
    text = re.sub(_ERRNO_PREFIX, "", str(error)).strip()
    return re.sub(_SSL_SUFFIX, "", text) or type(error).__name__


def _ssl_words(error: ssl.SSLError) -> str:
    return re.sub(_SSL_SUFFIX, "", str(getattr(error, "verify_message", None) or error.reason or error))


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


def error_from_response(response: httpx.Response, *, endpoint_key: str = "endpoint") -> ApiError:
    """Turn an answer that is not a success into the matching ApiError subclass.

    FunctionGraph answers ``{"error_code", "error_msg"}``; some gateways (and IAM) ``{"error": {"code",
    "message"}}``; codes are not always ``FSS.`` (``APIGW.``, ``FGS.``), so none is hard-coded.
    """
    status = response.status_code
    request_id = response.headers.get("X-Request-Id") or response.headers.get("X-Openstack-Request-Id")
    if 300 <= status < 400:
        message = redirect_message(response, endpoint_key)
        return ApiError(message, status=status, code=f"HTTP.{status}", request_id=request_id)
    code, message = parse_error_body(response)
    kwargs: dict[str, Any] = {"status": status, "code": code or f"HTTP.{status}", "request_id": request_id}
    if status == 401:
        skewed, offset = clock_skew(response, message)
        if skewed:
            return ClockSkewError(message, offset_s=offset, **kwargs)
        return AuthApiError(message, **kwargs)
    if status in TRANSIENT_STATUSES:
        error = TransientApiError(message, retryable=True, **kwargs)
        error.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return error
    number = service_code_number(code)
    refused = _CODE_CLASSES.get(number, ApiError)(message, **kwargs)
    refused.hint = CODE_HINTS.get(number)
    return refused


def service_code_number(code: Optional[str]) -> str:
    """``1033`` for ``FSS.1033`` or ``FGS.1033``; ``""`` for other codes (``APIGW.0301``, ``HTTP.400``)."""
    match = re.match(_SERVICE_CODE, code or "")
    return match.group(1) if match else ""


def json_object(response: httpx.Response, call: str) -> dict[str, Any]:
    """The JSON object of a successful answer ({} for an empty body).

    Raises:
        ApiError: the body is not a JSON object (an HTML page from a proxy, a truncated document).
    """
    if not response.content:
        return {}
    request_id = response.headers.get("X-Request-Id")
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        what = html_summary(response) or "something that is not JSON"
        raise ApiError(f"{call} answered with {what}", status=response.status_code, request_id=request_id) from None
    if not isinstance(data, dict):
        raise ApiError(
            f"{call} answered with a JSON {type(data).__name__}, not an object",
            status=response.status_code,
            request_id=request_id,
        )
    return data


def redirect_message(response: httpx.Response, endpoint_key: str) -> str:
    """``127.0.0.1:8443 redirected the request to https://...; fgsync does not follow redirects; ...``."""
    where = host_port(response.url) if _has_request(response) else "the service"
    location = response.headers.get("Location", "").strip()
    if not location:
        target = "elsewhere (no Location given)"
    else:
        if _has_request(response):
            with contextlib.suppress(httpx.InvalidURL):
                location = str(response.url.join(location))
        target = location if len(location) <= 300 else location[:297] + "..."
    return (
        f"{where} redirected the request to {target}; fgsync does not follow redirects; check `{endpoint_key}` "
        "in fgsync.toml"
    )


def parse_error_body(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from an error answer: the service's JSON, an HTML page's title, or the text cut short."""
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
    page = html_summary(response)
    if page is not None:
        return "", page
    text = _one_line(response.text)
    return "", (text[:200] if text else response.reason_phrase or "no message")


def html_summary(response: httpx.Response) -> Optional[str]:
    """``an HTML page ("502 Bad Gateway") ...`` for an answer that is a web page, else None.

    A proxy's or gateway's error page is kilobytes of markup; its title (else its first heading, else its
    text) says all a user needs, and the page itself never goes into a message or a log line.
    """
    type_ = response.headers.get("Content-Type", "").lower()
    head = response.content[:1024].lstrip().lower()
    if "html" not in type_ and not head.startswith((b"<!doctype html", b"<html")):
        return None
    text = response.text
    found = None
    for pattern in (r"<title[^>]*>(.*?)</title>", r"<h1[^>]*>(.*?)</h1>"):
        match = re.search(pattern, text, re.IGNORECASE | re.DOTALL)
        if match and _one_line(_strip_tags(match.group(1))):
            found = _one_line(_strip_tags(match.group(1)))
            break
    if found is None:
        body = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.IGNORECASE | re.DOTALL)
        found = _one_line(_strip_tags(body))
    where = host_port(response.url) if _has_request(response) else "the service"
    shown = (found[:97] + "...") if len(found) > 100 else found
    title = f' ("{shown}")' if shown else ""
    return f"an HTML page{title} instead of a FunctionGraph answer: a proxy or gateway answered for {where}"


def _strip_tags(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", " ", text))


def _one_line(text: str) -> str:
    """Runs of white space (line breaks, tabs) folded to one space; control characters dropped."""
    return " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).split())


def _has_request(response: httpx.Response) -> bool:
    try:
        response.request  # noqa: B018 - raises RuntimeError for an answer built without a request
    except RuntimeError:
        return False
    return True


def clock_skew(response: httpx.Response, message: str) -> tuple[bool, Optional[float]]:
    """Whether a 401 refused a signed request for its time, and by how much the local clock is off.

    Returns:
        (skewed, offset): ``offset`` is seconds this machine's clock is ahead of the service's (negative:
        behind), from the request's ``X-Sdk-Date`` and the answer's ``Date``; None when unknown or under a minute.
    """
    if not _has_request(response):
        return False, None
    signed = response.request.headers.get("X-Sdk-Date")
    if not signed:
        return False, None  # a token request: its 401 is about the token
    offset: Optional[float] = None
    try:
        sent = calendar.timegm(time.strptime(signed.strip(), "%Y%m%dT%H%M%SZ"))
        served = email.utils.parsedate_to_datetime(response.headers.get("Date", "")).timestamp()
        offset = sent - served
    except (ValueError, TypeError, IndexError, OverflowError):
        offset = None
    skewed = bool(re.search(_SKEW_WORDS, message)) or (offset is not None and abs(offset) > SIGNATURE_WINDOW_S)
    return skewed, offset if offset is not None and abs(offset) >= 60 else None


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
