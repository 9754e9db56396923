"""IAM password login: ``POST {iam}/v3/auth/tokens`` for a project-scoped token (FUNCTIONGRAPH.md).

The token comes back in the ``X-Subject-Token`` header and lives 24 hours; the body carries
``token.expires_at``. The password is sent once, in the body, and never appears in an error or a log line.
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass, field
from typing import Optional, Union

import httpx

# A token's text and expiry, whatever its source, are fgsync.auth.tokens' (re-exported here, where they were first).
from fgsync.auth.tokens import format_remaining, parse_expires, require_usable_token, ssl_verify, token_problem
from fgsync.errors import ApiError, CredentialsError, NetworkError, TransientApiError
from fgsync.remote.deadline import Deadline, install_deadlines, request_budget, request_deadline
from fgsync.remote.errors import html_summary, network_error, redirect_message

__all__ = [
    "IssuedToken",
    "format_remaining",
    "iam_error_fields",
    "login_with_password",
    "parse_expires",
    "require_usable_token",
    "ssl_verify",
    "token_problem",
]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class IssuedToken:
    """A token and its expiry (``expires_at`` as IAM wrote it, or None when unknown, e.g. a pasted token)."""

    token: str = field(repr=False)
    expires_at: Optional[str] = None


# Compiled on first use (re keeps it): only a login's trace carries an issued token.
_SUBJECT_TOKEN_RE = r"(?i)(b?['\"]x-subject-token['\"],\s*b?['\"])[^'\"]*"


class _RedactSubjectToken(logging.Filter):
    """Hides the token in httpcore's DEBUG trace of response headers (``X-Subject-Token`` is one of them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "subject-token" in text.lower():
            record.msg = re.sub(_SUBJECT_TOKEN_RE, r"\1<hidden>", text)
            record.args = ()
        return True


def _redact_http_traces() -> None:
    """Make sure httpcore's header traces never carry an issued token, at any log level (idempotent)."""
    for name in ("httpcore.http11", "httpcore.http2"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _RedactSubjectToken) for f in target.filters):
            target.addFilter(_RedactSubjectToken())


def iam_error_fields(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from an IAM error body, which comes in several shapes; "" for what it does not say."""
    code, message = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            code = str(inner.get("code") or "")
            message = str(inner.get("message") or inner.get("title") or "")
        code = str(body.get("error_code") or code)
        message = str(body.get("error_msg") or message)
    return code, message


def _iam_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of a failed login; a proxy's HTML error page is summarised by its title, never pasted."""
    code, message = iam_error_fields(response)
    return code, message or html_summary(response) or response.reason_phrase


def login_with_password(
    *,
    iam_endpoint: str,
    project_id: str,
    user: str,
    domain: str,
    password: str,
    transport: Optional[httpx.BaseTransport] = None,
    verify: Union[bool, str, ssl.SSLContext] = True,
    timeout: float = 60.0,
) -> IssuedToken:
    """Get a project-scoped IAM token with a user name, account (domain) name and password.

    ``timeout`` is ``request_timeout_s``: the login must be answered, to the last byte, within it (the same
    overall deadline as every FunctionGraph request).

    Raises:
        CredentialsError: IAM refused the login (wrong user, account or password; no access to the project).
        TransientApiError: IAM answered 429 or 5xx (retryable).
        NetworkError: IAM could not be reached, or gave no complete answer in time (retryable unless TLS
            verification failed).
        ApiError: IAM answered a redirect (fgsync does not follow it: ``iam_endpoint`` is wrong).
    """
    url = iam_endpoint.rstrip("/") + "/v3/auth/tokens"
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}},
            },
            "scope": {"project": {"id": project_id}},
        }
    }
    who = f"user {user!r} of account {domain!r}"
    _redact_http_traces()
    budget = request_budget(timeout, 512)  # the body is a few hundred bytes
    limit: Optional[Deadline] = None
    try:
        settings = httpx.Timeout(budget, connect=min(10.0, budget))
        with httpx.Client(transport=transport, verify=ssl_verify(verify), timeout=settings) as client:
            install_deadlines(client)
            with request_deadline(budget) as limit:
                response = client.post(url, json=body)
    except httpx.TransportError as error:
        failure = network_error(
            error, httpx.URL(url), budget=limit, request_timeout=timeout, endpoint_key="iam_endpoint"
        )
        raise NetworkError(f"IAM login: {failure.error_msg}", retryable=failure.retryable) from None
    except httpx.HTTPError as error:  # not a transport failure (a bad URL): nothing secret in it
        raise NetworkError(f"IAM login at {iam_endpoint}: {type(error).__name__}: {error}") from None
    if 300 <= response.status_code < 400:
        raise ApiError(
            f"IAM login: {redirect_message(response, 'iam_endpoint')}",
            status=response.status_code,
            code=f"HTTP.{response.status_code}",
        )
    if response.status_code in (200, 201):
        token = response.headers.get("X-Subject-Token", "").strip()
        if not token:
            raise CredentialsError(f"IAM at {iam_endpoint} answered the login without an X-Subject-Token header")
        problem = token_problem(token)
        if problem is not None:
            raise CredentialsError(
                f"IAM at {iam_endpoint} answered the login with a token fgsync cannot send: {problem}"
            )
        expires_at: Optional[str] = None
        try:
            payload = response.json()
            value = payload["token"]["expires_at"]
            expires_at = value if isinstance(value, str) else None
        except (ValueError, KeyError, TypeError):
            logger.warning("IAM did not say when the token expires")
        logger.info("IAM issued a token for %s, expires at %s", who, expires_at)
        return IssuedToken(token=token, expires_at=expires_at)

    code, message = _iam_error(response)
    # An error body has never been seen to echo the password, but the message is shown to the user: be sure.
    message = message.replace(password, "<hidden>") if password else message
    detail = f"HTTP {response.status_code}" + (f" {code}" if code and code != str(response.status_code) else "")
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientApiError(
            f"IAM could not log in {who}: {message}",
            status=response.status_code,
            code=code or "error",
            retryable=True,
        )
    if response.status_code == 401:
        raise CredentialsError(
            f"IAM at {iam_endpoint} refused the login of {who}: wrong user name, account name or password "
            f"({detail}: {message})"
        )
    if response.status_code == 403:
        raise CredentialsError(
            f"IAM at {iam_endpoint} refused a token for {who} in project {project_id}: the user has no access "
            f"to it, or the login needs a step fgsync cannot do (MFA, password change) ({detail}: {message})"
        )
    raise CredentialsError(f"IAM at {iam_endpoint} refused the login of {who} ({detail}: {message})")
