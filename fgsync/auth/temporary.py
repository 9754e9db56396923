"""Keys for OBS: a permanent AK/SK pair as it is, or temporary AK/SK + security token from IAM for a token.

OBS takes no IAM token, only its own signature. A user who logged in with a token gets temporary keys from
``POST {iam}/v3.0/OS-CREDENTIAL/securitytokens`` (FUNCTIONGRAPH.md "OBS"): X-Auth-Token, body
``{"auth": {"identity": {"methods": ["token"], "token": {"duration_seconds": 900}}}}``, answer 201
``{"credential": {"access", "secret", "securitytoken", "expires_at"}}``. :class:`TemporaryKeys` asks once per
expiry window and renews ``renew_before_s`` ahead of the expiry, from any number of threads; the keys live in
memory only. :class:`ObsAuth` signs each request with the keys current at that moment and, when OBS says the
temporary keys are no longer valid (403 InvalidAccessKeyId: expired, or an emulator restarted), gets new ones
and re-sends once.

Typical use::

    keys = credentials.obs_keys()        # StaticKeys for AK/SK credentials, TemporaryKeys for a token
    client = ObsClient(endpoint, bucket, auth=ObsAuth(keys), verify=...)

Secrets (SK, security token, the IAM token) never reach ``repr``, an error or a log line.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import threading
import time
from collections.abc import Generator
from typing import Callable, Optional, Protocol, Union

import httpx

from fgsync.auth.credentials import replayable
from fgsync.auth.iam import iam_error_fields
from fgsync.auth.obs_signer import ObsSigner
from fgsync.auth.signer import mask_ak
from fgsync.auth.tokens import parse_expires, ssl_verify
from fgsync.errors import ApiError, AuthApiError, CredentialsError, FgsyncError, NetworkError, TransientApiError

__all__ = [
    "DEFAULT_DURATION_S",
    "KeySource",
    "ObsAuth",
    "ObsKeys",
    "StaticKeys",
    "TemporaryKeys",
]

logger = logging.getLogger(__name__)

#: IAM issues temporary keys for 900 s (15 min) to 86,400 s (24 h).
DEFAULT_DURATION_S = 900
MIN_DURATION_S = 900
MAX_DURATION_S = 86_400
#: New keys are fetched when the current ones expire within this many seconds.
DEFAULT_RENEW_BEFORE_S = 300.0

Verify = Union[bool, str, ssl.SSLContext]


@dataclasses.dataclass(frozen=True, repr=False)
class ObsKeys:
    """An AK/SK pair for OBS, with the security token of temporary keys and when they expire.

    Attributes:
        ak: access key id.
        sk: secret key (never shown).
        security_token: temporary keys only (never shown).
        expires_at: epoch seconds when temporary keys stop working (on fgsync's clock); None: permanent.
    """

    ak: str
    sk: str
    security_token: Optional[str] = None
    expires_at: Optional[float] = None

    def __repr__(self) -> str:
        token = "<hidden>" if self.security_token else None
        return f"ObsKeys(ak={mask_ak(self.ak)!r}, sk=<hidden>, security_token={token}, expires_at={self.expires_at})"

    __str__ = __repr__

    @property
    def temporary(self) -> bool:
        return self.security_token is not None

    def signer(self, *, bucket: Optional[str] = None, clock: Callable[[], float] = time.time) -> ObsSigner:
        """An :class:`ObsSigner` for these keys."""
        return ObsSigner(self.ak, self.sk, security_token=self.security_token, bucket=bucket, clock=clock)


class KeySource(Protocol):
    """Where :class:`ObsAuth` gets keys: :class:`StaticKeys` or :class:`TemporaryKeys`."""

    def current(self) -> ObsKeys:
        """The keys to sign with now (fetched or renewed first when needed)."""
        ...

    def invalidate(self, keys: ObsKeys) -> None:
        """OBS refused ``keys``: forget them, so the next :meth:`current` gets new ones (if it can)."""
        ...


class StaticKeys:
    """A permanent AK/SK pair (the user's own): no IAM call, nothing to renew."""

    def __init__(self, ak: str, sk: str) -> None:
        if not ak or not sk:
            raise ValueError("an access key and a secret key are both required")
        self._keys = ObsKeys(ak, sk)

    def __repr__(self) -> str:
        return f"StaticKeys(ak={mask_ak(self._keys.ak)!r}, sk=<hidden>)"

    def current(self) -> ObsKeys:
        return self._keys

    def invalidate(self, keys: ObsKeys) -> None:
        """Nothing to do: permanent keys that OBS refuses stay refused (the error says to check them)."""


class TemporaryKeys:
    """Temporary AK/SK and security token from IAM, fetched once per expiry window and renewed ahead of it.

    Thread-safe: concurrent callers share one fetch. The keys are kept in memory only.

    Args:
        iam_endpoint: e.g. ``https://iam.cn-north-4.myhuaweicloud.com``.
        token: the IAM token to ask with (called for each fetch, so a renewed token is used).
        verify: TLS verification for IAM (True, a CA file or an ``ssl.SSLContext``; never off).
        transport: an httpx transport (tests: the emulator's WSGI app).
        clock: epoch seconds; drives expiry and renewal.
        duration_s: how long the keys are asked for (900 to 86,400 s).
        renew_before_s: fetch new keys when the current ones expire within this many seconds.
        renew_token: after IAM answers 401 for ``token()``'s token, called with it; a different token it returns
            is tried once (``Credentials.replacement_after_401``).
        timeout: seconds for the IAM request.
    """

    def __init__(
        self,
        iam_endpoint: str,
        token: Callable[[], str],
        *,
        verify: Verify = True,
        transport: Optional[httpx.BaseTransport] = None,
        clock: Callable[[], float] = time.time,
        duration_s: int = DEFAULT_DURATION_S,
        renew_before_s: float = DEFAULT_RENEW_BEFORE_S,
        renew_token: Optional[Callable[[str], Optional[str]]] = None,
        timeout: float = 30.0,
    ) -> None:
        if not MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration_s must be from {MIN_DURATION_S} to {MAX_DURATION_S} seconds")
        if not 0 <= renew_before_s < duration_s:
            raise ValueError("renew_before_s must be at least 0 and less than duration_s")
        self.iam_endpoint = iam_endpoint.rstrip("/")
        self._token = token
        self._verify = ssl_verify(verify)
        self._transport = transport
        self._clock = clock
        self._duration = duration_s
        self._renew_before = renew_before_s
        self._renew_token = renew_token
        self._timeout = timeout
        self._lock = threading.Lock()
        self._keys: Optional[ObsKeys] = None
        self.fetches = 0

    def __repr__(self) -> str:
        held = "none" if self._keys is None else mask_ak(self._keys.ak)
        return f"TemporaryKeys(iam_endpoint={self.iam_endpoint!r}, keys={held}, expires_at={self.expires_at})"

    @property
    def expires_at(self) -> Optional[float]:
        """When the keys held now expire (epoch seconds), or None when none are held."""
        keys = self._keys
        return None if keys is None else keys.expires_at

    def current(self) -> ObsKeys:
        """The keys to sign with now: fetched from IAM when none are held or they expire soon.

        Raises:
            AuthApiError: IAM refused the token (401): expired or revoked; run `fgsync login`.
            CredentialsError: IAM refused to issue temporary keys (403) or answered something unusable.
            TransientApiError: IAM answered 429 or 5xx (retryable).
            NetworkError: IAM could not be reached (retryable).
        """
        with self._lock:
            keys = self._keys
            if keys is None or keys.expires_at is None or self._clock() >= keys.expires_at - self._renew_before:
                self._keys = keys = self._fetch()
            return keys

    def invalidate(self, keys: ObsKeys) -> None:
        """Forget ``keys`` if they are still the current ones (OBS refused them)."""
        with self._lock:
            if self._keys is keys:
                logger.info("OBS refused the temporary keys %s; getting new ones", mask_ak(keys.ak))
                self._keys = None

    def _fetch(self) -> ObsKeys:
        token = self._token()
        try:
            return self._ask(token)
        except AuthApiError:
            replacement = self._renew_token(token) if self._renew_token is not None else None
            if not replacement or replacement == token:
                raise
            logger.info("asking IAM for temporary OBS keys again with a renewed token")
            return self._ask(replacement)

    def _ask(self, token: str) -> ObsKeys:
        url = self.iam_endpoint + "/v3.0/OS-CREDENTIAL/securitytokens"
        body = {"auth": {"identity": {"methods": ["token"], "token": {"duration_seconds": self._duration}}}}
        started = self._clock()
        try:
            with httpx.Client(transport=self._transport, verify=self._verify, timeout=self._timeout) as client:
                response = client.post(url, json=body, headers={"X-Auth-Token": token})
        except httpx.HTTPError as error:
            raise NetworkError(f"cannot reach IAM at {self.iam_endpoint} for temporary OBS keys: {error}") from None
        self.fetches += 1
        if response.status_code in (200, 201):
            return self._parse(response, started)
        raise _iam_error(response, self.iam_endpoint)

    def _parse(self, response: httpx.Response, started: float) -> ObsKeys:
        try:
            credential = response.json()["credential"]
            ak, sk, security_token = (str(credential[k]) for k in ("access", "secret", "securitytoken"))
            expires_text = credential.get("expires_at")
        except (ValueError, KeyError, TypeError):
            raise CredentialsError(
                f"IAM at {self.iam_endpoint} answered the request for temporary OBS keys without "
                "credential.access, .secret and .securitytoken"
            ) from None
        if not (ak and sk and security_token):
            raise CredentialsError(f"IAM at {self.iam_endpoint} answered empty temporary OBS keys")
        # IAM's expiry is on IAM's clock; never trust it past the duration asked for on ours.
        expires = started + self._duration
        parsed = parse_expires(expires_text) if isinstance(expires_text, str) else None
        if parsed is not None:
            expires = min(expires, parsed.timestamp())
        logger.info("IAM issued temporary OBS keys %s, valid until %s", mask_ak(ak), expires_text)
        return ObsKeys(ak, sk, security_token, expires)


def _iam_error(response: httpx.Response, iam_endpoint: str) -> FgsyncError:
    status = response.status_code
    code, message = iam_error_fields(response)
    message = message or response.reason_phrase
    request_id = response.headers.get("X-Request-Id") or response.headers.get("X-Openstack-Request-Id")
    what = f"IAM at {iam_endpoint} refused temporary OBS keys"
    kwargs = {"status": status, "code": code or f"IAM.{status}", "request_id": request_id}
    if status == 401:
        return AuthApiError(f"{what}: the token is not valid or has expired ({message})", **kwargs)
    if status == 403:
        return CredentialsError(
            f"{what}: the user may not create temporary access keys (HTTP 403 {kwargs['code']}: {message}); log in "
            'as a user who may, or use an AK/SK pair (auth.method = "aksk")'
        )
    if status == 429 or status >= 500:
        return TransientApiError(f"{what}: {message}", retryable=True, **kwargs)
    return ApiError(f"{what}: {message}", **kwargs)


class ObsAuth(httpx.Auth):
    """Signs each OBS request with the keys a :class:`KeySource` holds at that moment.

    When OBS answers 403 ``InvalidAccessKeyId`` to temporary keys (they expired, or were revoked), the keys are
    dropped, new ones fetched, and the request re-sent once if its body can be sent again.

    Args:
        keys: :class:`StaticKeys` or :class:`TemporaryKeys`.
        bucket: passed to :class:`ObsSigner` (optional; see there).
        clock: epoch seconds for the ``Date`` header.
    """

    requires_request_body = False
    requires_response_body = True  # the error code is in the XML body

    def __init__(self, keys: KeySource, *, bucket: Optional[str] = None, clock: Callable[[], float] = time.time):
        self._keys = keys
        self._bucket = bucket
        self._clock = clock

    def __repr__(self) -> str:
        return f"ObsAuth({self._keys!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        keys = self._keys.current()
        keys.signer(bucket=self._bucket, clock=self._clock).sign(request)
        response = yield request
        if not (keys.temporary and response.status_code == 403 and _keys_refused(request, response)):
            return
        self._keys.invalidate(keys)
        if not replayable(request):
            logger.info("not resending %s %s: its streamed body was already sent", request.method, request.url.path)
            return
        fresh = self._keys.current()
        if fresh is keys:
            return
        fresh.signer(bucket=self._bucket, clock=self._clock).sign(request)
        yield request


def _keys_refused(request: httpx.Request, response: httpx.Response) -> bool:
    """Whether a 403 says the keys are no longer valid (InvalidAccessKeyId: expired, revoked, unknown).

    A HEAD answer has no body: unless OBS names the code in ``x-obs-error-code``, a 403 to a HEAD counts too (one
    more IAM call at worst).
    """
    code: Optional[str] = response.headers.get("x-obs-error-code")
    if code is not None:
        return code == "InvalidAccessKeyId"
    if request.method == "HEAD" and not response.content:
        return True
    return b"<Code>InvalidAccessKeyId</Code>" in response.content
