"""Where fgsync's credentials come from, and the ``httpx.Auth`` the rest of fgsync gets from them.

Order (SPEC.md): ``FGSYNC_TOKEN`` (a token) > ``CLOUD_SDK_AK`` + ``CLOUD_SDK_SK`` (signed requests) > the OS
keyring (the token `fgsync login` stored, or the AK/SK when ``auth.method = "aksk"``). The API client only
ever sees the :class:`httpx.Auth` from :meth:`Credentials.auth`.

A keyring token is renewed without the user when `fgsync login --remember-password` kept the password:
before a request when it expires within an hour, and once after a 401. Without a remembered password,
fgsync warns an hour before expiry; after a 401 it re-reads the keyring once (a login in another terminal).

Secrets (token, password, SK) never reach ``repr``, log lines, exception text or :meth:`Credentials.describe`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import httpx

from fgsync.auth.tokens import format_remaining, parse_expires, require_usable_token, ssl_verify
from fgsync.errors import CredentialsError, FgsyncError, KeyringError
from fgsync.upload import UploadBody

if TYPE_CHECKING:  # keyring costs ~80 ms to import: credentials from the environment never load it
    from fgsync.auth.keyring_store import KeyringStore
    from fgsync.auth.temporary import KeySource
# fgsync.auth.signer (SDK-HMAC-SHA256, with hmac) is imported where an AK/SK is used, fgsync.auth.iam (the login)
# where a remembered password renews a token: a token from the environment needs neither.

__all__ = [
    "RENEW_BEFORE_S",
    "Credentials",
    "credential_stamp",
    "replayable",
    "resolve_credentials",
]

logger = logging.getLogger(__name__)

#: Renew (or warn) when the token expires within this many seconds.
RENEW_BEFORE_S = 3600.0
# After a failed renewal, wait this long before trying again on the next request (the 401 path always tries).
_RENEW_BACKOFF_S = 300.0

Verify = Union[bool, str, ssl.SSLContext]


def _masked(ak: str) -> str:
    from fgsync.auth.signer import mask_ak  # here: see the imports

    return mask_ak(ak)


def _store_for(iam_endpoint: str, project_id: str, env: Mapping[str, str]) -> KeyringStore:
    from fgsync.auth.keyring_store import KeyringStore, keyring_timeout

    return KeyringStore(iam_endpoint, project_id, timeout=keyring_timeout(env))


class Credentials:
    """Resolved credentials: where they came from, whose they are, and an ``httpx.Auth`` that uses them.

    Build with :func:`resolve_credentials`. Thread-safe: one instance may serve several clients and threads,
    and a renewal made for one request is used by all.

    Attributes:
        source: ``"env"`` or ``"keyring"``.
        kind: ``"token"`` or ``"aksk"``.
    """

    def __init__(
        self,
        *,
        source: str,
        kind: str,
        iam_endpoint: str,
        project_id: str,
        token: Optional[str] = None,
        expires_at: Optional[str] = None,
        ak: Optional[str] = None,
        sk: Optional[str] = None,
        user: Optional[str] = None,
        domain: Optional[str] = None,
        store: Optional[KeyringStore] = None,
        password_remembered: bool = False,
        env: Mapping[str, str] = os.environ,
        transport: Optional[httpx.BaseTransport] = None,
        verify: Verify = True,
        clock: Callable[[], float] = time.time,
        request_timeout: float = 60.0,
    ) -> None:
        self.source = source
        self.kind = kind
        self.iam_endpoint = iam_endpoint.rstrip("/")
        self.project_id = project_id
        self.user = user
        self.domain = domain
        self.expires_at = expires_at
        self.password_remembered = password_remembered
        self._token = token
        self._ak = ak
        self._sk = sk
        self._store = store
        self._env = env
        self._transport = transport
        self._verify = verify
        self._clock = clock
        self._request_timeout = request_timeout
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._renew_not_before = 0.0

    def __repr__(self) -> str:
        return (
            f"Credentials(source={self.source!r}, kind={self.kind!r}, project={self.project_id!r}, "
            f"user={self.user!r}, expires_at={self.expires_at!r})"
        )

    __str__ = __repr__

    # -- what callers use -----------------------------------------------------------------------------

    def auth(self) -> httpx.Auth:
        """The ``httpx.Auth`` for FunctionGraph requests: ``X-Auth-Token`` (renewing), or the AK/SK signer."""
        if self.kind == "aksk":
            from fgsync.auth.signer import SdkHmacSigner  # here: see the imports

            assert self._ak is not None and self._sk is not None
            return SdkHmacSigner(self._ak, self._sk, self.project_id, clock=self._clock)
        return _TokenAuth(self)

    def obs_keys(self, *, duration_s: int = 900) -> KeySource:
        """Keys for OBS's own signature: the AK/SK pair itself, or temporary keys IAM issues for the token.

        The temporary keys are fetched on first use (once per expiry window, renewed ahead of it), with this
        token (renewed as for any request) and, after a 401 from IAM, the replacement a login offers.
        """
        from fgsync.auth.temporary import StaticKeys, TemporaryKeys

        if self.kind == "aksk":
            assert self._ak is not None and self._sk is not None
            return StaticKeys(self._ak, self._sk)
        return TemporaryKeys(
            self.iam_endpoint,
            self.current_token,
            verify=self._verify,
            transport=self._transport,
            clock=self._clock,
            duration_s=duration_s,
            renew_token=self.replacement_after_401,
        )

    def stamp(self) -> str:
        """A fingerprint of the stored credentials (no secret in it); it changes when a login replaces them."""
        return credential_stamp(iam_endpoint=self.iam_endpoint, project_id=self.project_id, env=self._env)

    def describe(self) -> dict[str, Any]:
        """For `fgsync auth`: source, kind, user, domain, project, expiry; never a secret."""
        remaining = self.seconds_left()
        return {
            "source": self.source,
            "kind": self.kind,
            "user": self.user,
            "domain": self.domain,
            "project": self.project_id,
            "iam_endpoint": self.iam_endpoint,
            "expires_at": self.expires_at,
            "expired": None if remaining is None else remaining <= 0,
            "expires_in_s": None if remaining is None else int(remaining),
            "password_remembered": self.password_remembered
            if self.source == "keyring" and self.kind == "token"
            else None,
            "ak": _masked(self._ak) if self._ak else None,
        }

    def seconds_left(self) -> Optional[float]:
        """Seconds until the token expires (negative once expired), or None when the expiry is unknown."""
        with self._lock:
            expires = parse_expires(self.expires_at) if self.expires_at else None
        if expires is None:
            return None
        return expires.timestamp() - self._clock()

    # -- token life cycle (used by _TokenAuth) ------------------------------------------------------

    def current_token(self) -> str:
        """The token to send now: renewed first when it expires within an hour and a password is remembered."""
        with self._lock:
            remaining = self.seconds_left()
            if self.source == "keyring" and remaining is not None and remaining < RENEW_BEFORE_S:
                if self.password_remembered:
                    self._renew_early(remaining)
                else:
                    self._warn_expiry(remaining)
            assert self._token is not None
            return self._token

    def _renew_early(self, remaining: float) -> None:
        """Renew ahead of expiry; after a failure, wait a while before the next attempt."""
        if self._clock() < self._renew_not_before:
            return
        try:
            renewed = self._renew()
        except FgsyncError as error:
            # Network trouble or a refused password: keep using a token that still works.
            self._renew_not_before = self._clock() + _RENEW_BACKOFF_S
            if remaining <= 0:
                raise
            logger.warning("could not renew the IAM token: %s", error.message)
            return
        if not renewed:  # the password is gone from the keyring (a logout, or a login without it)
            self._warn_expiry(remaining)

    def replacement_after_401(self, used: str) -> Optional[str]:
        """A different token worth one more try after ``used`` got a 401, or None.

        Another thread may have renewed already; another terminal may have run `fgsync login` (re-read the
        keyring); else a remembered password gets a new token.

        Raises:
            CredentialsError: IAM refused the remembered password.
        """
        with self._lock:
            if self._token != used:
                return self._token
            if self.source != "keyring" or self._store is None:
                return None
            from fgsync.auth.keyring_store import load_record

            record = load_record(self._store, "token", ("token",))
            if record is not None and record["token"] != used:
                require_usable_token(record["token"], "the token in the OS keyring", "run `fgsync login`")
                logger.info("using the token a newer `fgsync login` stored")
                self._adopt(record)
                return self._token
            if self.password_remembered and self._renew():
                return self._token
            return None

    def _adopt(self, record: Mapping[str, Any]) -> None:
        self._token = record["token"]
        self.expires_at = record.get("expires_at")
        self.user = record.get("user") or self.user
        self.domain = record.get("domain") or self.domain
        self._warned.clear()

    def _renew(self) -> bool:
        """Get a new token with the remembered password and store it; False when no password is stored."""
        assert self._store is not None
        password = self._store.get("password")
        if password is None:
            self.password_remembered = False
            return False
        if not self.user or not self.domain:
            raise CredentialsError(
                "cannot renew the IAM token: the stored login has no user or account name; run `fgsync login`"
            )
        logger.info("renewing the IAM token of %s in %s", self.user, self.domain)
        from fgsync.auth.iam import login_with_password  # here: see the imports

        issued = login_with_password(
            iam_endpoint=self.iam_endpoint,
            project_id=self.project_id,
            user=self.user,
            domain=self.domain,
            password=password,
            transport=self._transport,
            verify=self._verify,
            timeout=self._request_timeout,
        )
        from fgsync.auth.keyring_store import save_token

        save_token(self._store, issued, user=self.user, domain=self.domain, password=password)
        self._adopt({"token": issued.token, "expires_at": issued.expires_at})
        self._renew_not_before = 0.0
        return True

    def _warn_expiry(self, remaining: float) -> None:
        key = "expired" if remaining <= 0 else "soon"
        if key in self._warned:
            return
        self._warned.add(key)
        if remaining <= 0:
            logger.warning(
                "the IAM token for project %s expired at %s; run `fgsync login`", self.project_id, self.expires_at
            )
        else:
            logger.warning(
                "the IAM token for project %s expires in %s; run `fgsync login` "
                "(with --remember-password fgsync renews it by itself)",
                self.project_id,
                format_remaining(remaining),
            )


class _TokenAuth(httpx.Auth):
    """``X-Auth-Token`` from a :class:`Credentials`; after a 401, one resend with a replacement token."""

    # False on purpose: reading the body first would drain a streamed upload before it is sent and make the
    # caller's progress bar jump to 100 %. A body that cannot be sent twice is simply not resent (below).
    requires_request_body = False

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return f"_TokenAuth({self._credentials!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._credentials.current_token()
        request.headers["X-Auth-Token"] = token
        response = yield request
        if response.status_code != 401:
            return
        replacement = self._credentials.replacement_after_401(token)
        if replacement is None or replacement == token:
            return
        if not replayable(request):
            # The renewed token is stored and in use: the caller's next attempt gets through.
            logger.info("not resending %s %s: its streamed body was already sent", request.method, request.url.path)
            return
        logger.info("retrying %s %s with a renewed token", request.method, request.url.path)
        request.headers["X-Auth-Token"] = replacement
        yield request


def replayable(request: httpx.Request) -> bool:
    """Whether httpx can send this request's body a second time (bytes, an upload body, or an iterable that is no
    generator)."""
    stream = request.stream
    if isinstance(stream, (httpx.ByteStream, UploadBody)):
        return True
    # httpx refuses to iterate a consumed generator (StreamConsumed) and says which streams wrap one; any
    # iterable that is not a generator starts over. Unknown shapes count as not replayable.
    return getattr(stream, "_is_generator", None) is False


def resolve_credentials(
    *,
    iam_endpoint: str,
    project_id: str,
    auth_method: str = "token",
    user: Optional[str] = None,
    domain: Optional[str] = None,
    env: Mapping[str, str] = os.environ,
    transport: Optional[httpx.BaseTransport] = None,
    verify: Verify = True,
    clock: Callable[[], float] = time.time,
    request_timeout: float = 60.0,
) -> Credentials:
    """Find credentials in SPEC order: ``FGSYNC_TOKEN``, ``CLOUD_SDK_AK`` + ``CLOUD_SDK_SK``, the OS keyring.

    Args:
        iam_endpoint: IAM endpoint of the config (keyring entries are scoped to it and to the project).
        project_id: the config's project.
        auth_method: ``"token"`` or ``"aksk"``: which kind the keyring is asked for.
        user: the config's ``auth.user``, shown when the stored login does not name one.
        domain: the config's ``auth.domain``, likewise.
        env: environment to read (tests pass a dict).
        transport: httpx transport for IAM renewals (tests: the emulator or a MockTransport).
        verify: TLS verification for IAM renewals (``True``, a CA file, or an ``ssl.SSLContext``).
        clock: seconds since the epoch, for expiry checks and signatures.
        request_timeout: ``request_timeout_s``: the overall deadline of an IAM renewal.

    Raises:
        CredentialsError: nothing found (the message says how to log in), or only half of an AK/SK pair.
        KeyringError: the keyring is unusable, failed or timed out.
    """
    common: dict[str, Any] = {
        "iam_endpoint": iam_endpoint,
        "project_id": project_id,
        "env": env,
        "transport": transport,
        "verify": ssl_verify(verify),
        "clock": clock,
        "request_timeout": request_timeout,
    }
    token = env.get("FGSYNC_TOKEN", "").strip()
    if token:
        require_usable_token(token, "FGSYNC_TOKEN", "set it to the token alone, on one line")
        logger.debug("credentials: FGSYNC_TOKEN")
        return Credentials(source="env", kind="token", token=token, **common)
    ak = env.get("CLOUD_SDK_AK", "").strip()
    sk = env.get("CLOUD_SDK_SK", "").strip()
    if ak or sk:
        if not (ak and sk):
            missing = "CLOUD_SDK_SK" if ak else "CLOUD_SDK_AK"
            raise CredentialsError(f"{missing} is not set: CLOUD_SDK_AK and CLOUD_SDK_SK go together")
        logger.debug("credentials: CLOUD_SDK_AK %s", _masked(ak))
        return Credentials(source="env", kind="aksk", ak=ak, sk=sk, **common)

    from fgsync.auth.keyring_store import load_record

    store = _store_for(iam_endpoint, project_id, env)
    if auth_method == "aksk":
        pair = load_record(store, "aksk", ("ak", "sk"))
        if pair is not None:
            logger.debug("credentials: keyring AK/SK %s", _masked(pair["ak"]))
            return Credentials(source="keyring", kind="aksk", ak=pair["ak"], sk=pair["sk"], store=store, **common)
    else:
        record = load_record(store, "token", ("token",))
        if record is not None:
            require_usable_token(record["token"], "the token in the OS keyring", "run `fgsync login`")
            logger.debug("credentials: keyring token")
            return Credentials(
                source="keyring",
                kind="token",
                token=record["token"],
                expires_at=record.get("expires_at"),
                user=record.get("user") or user,
                domain=record.get("domain") or domain,
                store=store,
                password_remembered=store.header("password") is not None,
                **common,
            )
    how = "`fgsync login --ak AK`" if auth_method == "aksk" else "`fgsync login`"
    raise CredentialsError(
        f"no credentials for project {project_id} at {iam_endpoint.rstrip('/')}: run {how}, or set FGSYNC_TOKEN "
        "(or CLOUD_SDK_AK and CLOUD_SDK_SK)"
    )


def credential_stamp(*, iam_endpoint: str, project_id: str, env: Mapping[str, str] = os.environ) -> str:
    """A cheap fingerprint of the credentials fgsync would use now; it changes when a login replaces them.

    The daemon polls it while a function is paused after a 401. It holds no secret: environment credentials
    give a constant, keyring credentials a hash of the entries' headers (part count, random salt, salted
    checksum). A keyring that fails gives ``"keyring-unavailable"`` instead of raising.
    """
    if env.get("FGSYNC_TOKEN", "").strip():
        return "env:token"
    if env.get("CLOUD_SDK_AK", "").strip() or env.get("CLOUD_SDK_SK", "").strip():
        return "env:aksk"
    try:
        store = _store_for(iam_endpoint, project_id, env)
        headers = [store.header(item) or "-" for item in ("token", "aksk", "password")]
    except KeyringError:
        return "keyring-unavailable"
    return "keyring:" + hashlib.sha256("|".join(headers).encode("utf-8")).hexdigest()[:16]
