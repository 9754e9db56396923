"""fgsync's errors: one base class, each error knows its exit code and its event code.

The tree::

    FgsyncError                      exit 1, code "error"
     ├── UsageError                  exit 2, code "usage"     bad arguments, unknown function name
     │    └── ConfigError            exit 2, code "config"    fgsync.toml problems: file, key, value, what is allowed
     ├── PackageError                exit 1, code "package"   symlink out of source, unreadable file, empty, > 50 MB
     │    └── SourceError            exit 1, code "source"    the source folder is missing (deleted, not back yet)
     ├── BuildError                  exit 1, code "build"     the function's `build` command failed (carries its output)
     ├── HandlerError                exit 1, code "function"  the invoked handler raised, timed out or did not load
     ├── DriftError                  exit 1, code "drift"     --no-overwrite and someone else changed the function
     ├── StateError                  exit 1, code "state"     pushed, but the record of it cannot be written
     ├── LockedError                 exit 1, code "locked"    another `fgsync watch` runs on this config and state
     ├── CredentialsError            exit 3, code "auth"      no credentials, keyring unusable, login failed
     │    └── KeyringError           exit 3, code "auth"      the OS keyring is absent, locked or timed out
     └── ApiError                    exit 1, code = the service code (FSS.1051 …)
          ├── NetworkError           exit 1, code "network"   no complete answer: connect/read failures, the request's
          │                                                   deadline; retryable, except TLS verification failures
          ├── TransientApiError      exit 1                   408, 429, 5xx; retryable
          ├── DependencyInUseError   exit 1                   412 FSS.1033: a function still uses the dependency version
          ├── DependencyNotFoundError exit 1                  404 FSS.1056: no such dependency or dependency version
          └── AuthApiError           exit 3                   401: token missing, wrong or expired, bad signature
               └── ClockSkewError    exit 3                   401 for a signed request whose time is off: the clock

`cli.main` catches FgsyncError only and prints ``Error: <message>``; anything else is a bug and keeps its traceback.
Messages never contain a secret.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CREDENTIALS = 3
EXIT_INTERRUPTED = 130


class FgsyncError(Exception):
    """Base of every error fgsync reports to the user."""

    exit_code: int = EXIT_FAILED
    code: str = "error"
    retryable: bool = False

    @property
    def message(self) -> str:
        return str(self)


class UsageError(FgsyncError):
    """Wrong command-line usage (unknown function name, conflicting flags)."""

    exit_code = EXIT_USAGE
    code = "usage"


class ConfigError(UsageError):
    """A problem in fgsync.toml; the message names the file, the key, the value and what is allowed."""

    code = "config"

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        super().__init__(message)


class PackageError(FgsyncError):
    """The function's tree cannot be packaged (names the offending path)."""

    code = "package"


class SourceError(PackageError):
    """The function's source folder is missing: deleted by a build or a branch switch, and not back yet."""

    code = "source"


class BuildError(FgsyncError):
    """The function's `build` command failed."""

    code = "build"

    def __init__(self, message: str, *, output: str = "", returncode: int | None = None) -> None:
        self.output = output
        self.returncode = returncode
        super().__init__(message)


class HandlerError(FgsyncError):
    """The function ran but failed: it raised, timed out, or could not be loaded."""

    code = "function"


class DriftError(FgsyncError):
    """The remote code changed behind fgsync's back and --no-overwrite forbids replacing it."""

    code = "drift"


class StateError(FgsyncError):
    """The push worked, but fgsync could not record it in its state folder (read-only, full, not a folder).

    Not retryable: the upload must not be repeated. The record is still kept in memory for the rest of the
    process, so a running `fgsync watch` does not take its own push for drift.
    """

    code = "state"

    def __init__(self, message: str, *, folder: str, reason: str) -> None:
        self.folder = folder
        self.reason = reason
        super().__init__(message)


class LockedError(FgsyncError):
    """Another fgsync process holds a lock this one needs (a second `fgsync watch` on one config)."""

    code = "locked"

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        self.pid = pid
        super().__init__(message)


class CredentialsError(FgsyncError):
    """Credentials are missing, invalid or expired, or cannot be stored."""

    exit_code = EXIT_CREDENTIALS
    code = "auth"


class KeyringError(CredentialsError):
    """The OS keyring cannot be used (absent, locked, timed out).

    ``absent`` is True when there is no usable keyring backend at all: the keyring library picks its backend
    once per process, so a keyring installed later (like credentials exported later) reaches a running
    `fgsync watch` only when it starts again, while a locked one that gets unlocked works at once.
    """

    def __init__(self, message: str, *, absent: bool = False) -> None:
        self.absent = absent
        super().__init__(message)


class ApiError(FgsyncError):
    """An error answered by FunctionGraph (or IAM), or met on the way to it.

    Attributes:
        status: HTTP status, or None when no answer came.
        code: the service's error code (``FSS.1051``, ``APIGW.0301``) or a local one (``network``).
        error_msg: the service's message.
        request_id: the ``X-Request-Id`` of the answer, when there was one.
        retry_after: seconds the service asked to wait (``Retry-After``), when it did.
        hint: what the user can do about it, when fgsync knows more than the service says (``FSS.1045``: a
            function takes at most 20 dependencies); shown after the message, never in ``str()``.
    """

    retry_after: float | None = None
    hint: str | None = None

    def __init__(
        self,
        error_msg: str,
        *,
        status: int | None = None,
        code: str = "error",
        request_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.status = status
        self.code = code
        self.error_msg = error_msg
        self.request_id = request_id
        self.retryable = retryable
        parts = []
        if status is not None:
            parts.append(f"HTTP {status}")
        if code and code != "error":
            parts.append(code)
        head = " ".join(parts)
        text = f"{head}: {error_msg}" if head else error_msg
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text)

    @property
    def message(self) -> str:
        """The service's message with the HTTP status and request id (the code is shown beside it), then the hint."""
        details = [f"HTTP {self.status}"] if self.status is not None else []
        if self.request_id:
            details.append(f"request id {self.request_id}")
        text = f"{self.error_msg} ({', '.join(details)})" if details else self.error_msg
        return f"{text}; {self.hint}" if self.hint else text


class NetworkError(ApiError):
    """No complete answer: connection refused or dropped, the request's deadline passed, TLS failure.

    Retryable, except where another try cannot help (a certificate that does not verify, a server that does
    not speak TLS): those fail at once and say what to fix. ``sent`` is False when the request cannot have
    reached the service (no connection was made), so a call that is not idempotent knows it did not happen.
    """

    def __init__(self, error_msg: str, *, retryable: bool = True, sent: bool = True) -> None:
        self.sent = sent
        super().__init__(error_msg, code="network", retryable=retryable)


class TransientApiError(ApiError):
    """408, 429 or 5xx: worth retrying with backoff."""


class DependencyInUseError(ApiError):
    """412 FSS.1033: a dependency version cannot be deleted while a function (or a published version of one)
    lists it in ``depend_version_list``. A caller replacing its own version keeps the old one and says so."""


class DependencyNotFoundError(ApiError):
    """404 FSS.1056: the dependency, the dependency version, or a version id in ``depend_version_list`` does
    not exist (deleted, or never in this project)."""


class AuthApiError(ApiError):
    """401 from the service: the token is missing, wrong or expired, or the signature is bad."""

    exit_code = EXIT_CREDENTIALS

    @property
    def message(self) -> str:
        return (
            f"{super().message}; run `fgsync login` (or check FGSYNC_TOKEN, CLOUD_SDK_AK and CLOUD_SDK_SK if you "
            "set them)"
        )


class ClockSkewError(AuthApiError):
    """401 for an AK/SK-signed request whose ``X-Sdk-Date`` is outside the gateway's 15-minute window.

    The keys are fine and `fgsync login` cannot help: this machine's clock is off. ``offset_s`` is how far
    ahead of the service's clock it is (negative: behind), when the answer's ``Date`` told.
    """

    def __init__(self, error_msg: str, *, offset_s: float | None = None, **kwargs: Any) -> None:
        self.offset_s = offset_s
        super().__init__(error_msg, **kwargs)

    @property
    def message(self) -> str:
        base = ApiError.message.fget(self)  # type: ignore[attr-defined]
        fix = "set the system clock right (turn on automatic time / NTP), then try again"
        if self.offset_s is not None:
            minutes = abs(self.offset_s) / 60
            amount = f"{minutes:.0f} minutes" if minutes < 120 else f"{minutes / 60:.1f} hours"
            side = "ahead of" if self.offset_s > 0 else "behind"
            return (
                f"{base}; this machine's clock is {amount} {side} the service's, and an AK/SK-signed request must "
                f"be within 15 minutes of it: {fix}"
            )
        return (
            f"{base}; an AK/SK-signed request carries its time (X-Sdk-Date), which must be within 15 minutes of "
            f"the service's clock: check this machine's clock and time zone, {fix}"
        )
