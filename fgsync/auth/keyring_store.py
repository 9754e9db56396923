"""What fgsync keeps in the OS keyring, and how: timed calls, chunked values, no plaintext fallback.

Every entry lives under the keyring service ``fgsync``; its user name is scoped to the IAM endpoint and the
project (``<iam_endpoint> <project_id> <item>``), so two configs for two accounts never collide.

A value is stored as a small *header* entry plus one or more *part* entries of at most
:data:`CHUNK_CHARS` characters each: Windows Credential Manager caps an entry near 1,280 characters and IAM
tokens are longer. The header holds the part count, a random salt and a salted checksum of the whole value;
a missing, extra or altered part makes the value read as absent, never as a wrong token.

Every call into ``keyring`` runs in a daemon thread and is waited for with a timeout (``FGSYNC_KEYRING_TIMEOUT``
seconds, default 5): a locked Secret Service that waits for an unlock prompt, or a dead D-Bus, becomes a
:class:`~fgsync.errors.KeyringError` within seconds instead of a hang.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar

import keyring
import keyring.backends.chainer
import keyring.backends.fail
import keyring.backends.null
import keyring.errors

from fgsync.auth.iam import IssuedToken
from fgsync.errors import KeyringError, UsageError

__all__ = [
    "CHUNK_CHARS",
    "DEFAULT_TIMEOUT",
    "ITEMS",
    "SERVICE",
    "KeyringStore",
    "forget_credentials",
    "keyring_timeout",
    "load_record",
    "save_aksk",
    "save_token",
]

logger = logging.getLogger(__name__)

SERVICE = "fgsync"
DEFAULT_TIMEOUT = 5.0
#: Characters per part; below Windows Credential Manager's ~1,280-character cap with room to spare.
CHUNK_CHARS = 1000
#: Every item fgsync may store; `logout` removes all of them.
ITEMS = ("token", "password", "aksk")
# Parts are numbered from 1; logout also sweeps parts a broken header no longer points to, up to this many.
_MAX_PARTS = 64
_HEADER_PREFIX = "fgsync-chunks/1"

_T = TypeVar("_T")

# Neither a login nor a retry helps without a keyring: only a keyring, or credentials from the environment.
_WHAT_TO_DO = (
    "unlock or install an OS keyring (a Secret Service such as GNOME Keyring or KWallet on Linux, Keychain on "
    "macOS, Credential Manager on Windows), or set FGSYNC_TOKEN (or CLOUD_SDK_AK and CLOUD_SDK_SK) instead"
)


def keyring_timeout(env: Mapping[str, str]) -> float:
    """Seconds to wait for one keyring call: ``FGSYNC_KEYRING_TIMEOUT`` or :data:`DEFAULT_TIMEOUT`.

    Raises:
        UsageError: the variable is not a positive number.
    """
    raw = env.get("FGSYNC_KEYRING_TIMEOUT")
    if raw is None or raw.strip() == "":
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"FGSYNC_KEYRING_TIMEOUT must be a positive number of seconds, not {raw!r}")
    return value


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _unusable_reason(backend: Any) -> Optional[str]:
    """Why ``backend`` must not hold fgsync's secrets, or None when it may."""
    if isinstance(backend, (keyring.backends.fail.Keyring, keyring.backends.null.Keyring)):
        return "no OS keyring is available"
    if type(backend).__module__.startswith("keyrings.alt"):
        # keyrings.alt keeps secrets in files (plaintext or weakly encrypted): never fall back to it silently.
        return f"the only keyring backend is {_backend_name(backend)}, which stores secrets in a file"
    # Listing the chain probes every backend (D-Bus for the Secret Service): callers run this timed.
    if isinstance(backend, keyring.backends.chainer.ChainerBackend) and not [
        b for b in backend.backends if _unusable_reason(b) is None
    ]:
        return "no OS keyring is available (the keyring chain is empty)"
    return None


def _part_count(header: str) -> int:
    fields = header.split(" ")
    if len(fields) == 4 and fields[1].isdigit():
        return min(int(fields[1]), _MAX_PARTS)
    return 0


def _checksum(salt: str, value: str) -> str:
    return hmac.new(salt.encode("ascii"), value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


class KeyringStore:
    """The fgsync entries of one IAM endpoint + project in the OS keyring.

    Args:
        iam_endpoint: the IAM endpoint the credentials are for (normalised: no trailing slash).
        project_id: the project the credentials are for.
        timeout: seconds to wait for each keyring call.
    """

    def __init__(self, iam_endpoint: str, project_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.iam_endpoint = iam_endpoint.rstrip("/")
        self.project_id = project_id
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"KeyringStore({self.iam_endpoint!r}, {self.project_id!r}, timeout={self.timeout:g})"

    # -- low level: one timed keyring call ------------------------------------------------------------

    def _timed(self, what: str, func: Callable[[], _T], *, hide: tuple[str, ...] = ()) -> _T:
        """Run ``func`` (one keyring call) in a daemon thread; a call that does not return in time is abandoned."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = func()
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=run, name="fgsync-keyring", daemon=True)
        thread.start()
        if not done.wait(self.timeout):
            raise KeyringError(
                f"the OS keyring did not answer within {self.timeout:g} s ({what}): it may be locked and waiting "
                f"for an unlock prompt; {_WHAT_TO_DO} (FGSYNC_KEYRING_TIMEOUT sets the wait)"
            )
        error = box.get("error")
        if error is not None:
            if isinstance(error, KeyringError):
                raise error
            text = str(error)
            for secret in hide:
                if secret:
                    text = text.replace(secret, "<hidden>")
            raise KeyringError(
                f"the OS keyring failed ({what}): {type(error).__name__}: {text}; {_WHAT_TO_DO}"
            ) from None
        value: _T = box["value"]
        return value

    def _backend(self) -> Any:
        # Finding the backend may itself talk to D-Bus (the Secret Service viability check), so it is timed too.
        def find() -> tuple[Any, Optional[str]]:
            backend = keyring.get_keyring()
            return backend, _unusable_reason(backend)

        backend, reason = self._timed("finding the keyring backend", find)
        if reason is not None:
            raise KeyringError(
                f"{reason}: fgsync never stores credentials in a plain file; {_WHAT_TO_DO}", absent=True
            )
        return backend

    def _user(self, item: str, part: int | None = None) -> str:
        base = f"{self.iam_endpoint} {self.project_id} {item}"
        return base if part is None else f"{base} #{part}"

    def _get(self, backend: Any, user: str) -> Optional[str]:
        value: Optional[str] = self._timed("reading", lambda: backend.get_password(SERVICE, user))
        return value

    def _set(self, backend: Any, user: str, value: str, *, secret: str) -> None:
        self._timed("writing", lambda: backend.set_password(SERVICE, user, value), hide=(secret, value))

    def _delete(self, backend: Any, user: str) -> bool:
        def call() -> bool:
            try:
                backend.delete_password(SERVICE, user)
            except keyring.errors.PasswordDeleteError:
                return False
            return True

        return self._timed("deleting", call)

    # -- chunked values -------------------------------------------------------------------------------

    def get(self, item: str) -> Optional[str]:
        """The value of ``item``, or None when it is absent, incomplete or inconsistent.

        Raises:
            KeyringError: no usable keyring, or it failed or timed out.
        """
        backend = self._backend()
        header = self._get(backend, self._user(item))
        if header is None:
            return None
        fields = header.split(" ")
        if len(fields) != 4 or fields[0] != _HEADER_PREFIX or not fields[1].isdigit():
            logger.warning("ignoring the keyring entry for %s: its header is not fgsync's", item)
            return None
        count, salt, checksum = int(fields[1]), fields[2], fields[3]
        if not 1 <= count <= _MAX_PARTS:
            logger.warning("ignoring the keyring entry for %s: bad part count", item)
            return None
        parts: list[str] = []
        for index in range(1, count + 1):
            part = self._get(backend, self._user(item, index))
            if part is None:
                logger.warning("ignoring the keyring entry for %s: part %d of %d is missing", item, index, count)
                return None
            parts.append(part)
        value = "".join(parts)
        if not hmac.compare_digest(_checksum(salt, value), checksum):
            logger.warning("ignoring the keyring entry for %s: its parts do not match its checksum", item)
            return None
        return value

    def header(self, item: str) -> Optional[str]:
        """The header entry of ``item`` (part count, salt, salted checksum: nothing secret), or None."""
        return self._get(self._backend(), self._user(item))

    def put(self, item: str, value: str) -> None:
        """Store ``value`` as ``item``, split into parts; parts left over from a longer old value are removed.

        Raises:
            KeyringError: no usable keyring, or it failed or timed out.
        """
        if not value:
            raise ValueError("refusing to store an empty value")
        backend = self._backend()
        old = self._get(backend, self._user(item))
        old_count = _part_count(old) if old is not None else 0
        chunks = [value[i : i + CHUNK_CHARS] for i in range(0, len(value), CHUNK_CHARS)]
        if len(chunks) > _MAX_PARTS:
            raise ValueError(f"value too long for the keyring ({len(value)} characters)")
        salt = secrets.token_hex(8)
        # Parts first, header last: a reader racing this write sees a checksum mismatch (= absent), never
        # a mix of old and new parts accepted as a value.
        for index, chunk in enumerate(chunks, start=1):
            self._set(backend, self._user(item, index), chunk, secret=value)
        header = f"{_HEADER_PREFIX} {len(chunks)} {salt} {_checksum(salt, value)}"
        self._set(backend, self._user(item), header, secret=value)
        for index in range(len(chunks) + 1, old_count + 1):
            self._delete(backend, self._user(item, index))

    def delete(self, item: str) -> int:
        """Remove ``item``: its header and every part, even parts a lost header no longer counts.

        Returns:
            How many keyring entries were removed.
        """
        backend = self._backend()
        header = self._get(backend, self._user(item))
        counted = _part_count(header) if header is not None else 0
        removed = int(self._delete(backend, self._user(item)))
        for index in range(1, _MAX_PARTS + 1):
            # Past the counted parts, stop at the first gap: those were all a write could have left.
            if not self._delete(backend, self._user(item, index)):
                if index > counted:
                    break
                continue
            removed += 1
        return removed

    def clear(self) -> int:
        """Remove every item fgsync stores for this endpoint and project; returns the number of entries removed."""
        return sum(self.delete(item) for item in ITEMS)


# -- fgsync's records -------------------------------------------------------------------------------------


def save_token(
    store: KeyringStore,
    issued: IssuedToken,
    *,
    user: Optional[str],
    domain: Optional[str],
    password: Optional[str] = None,
) -> None:
    """Store a token (with its expiry, user and domain) and, when given, the password that renews it.

    Without ``password`` a previously remembered password is removed: a login without
    ``--remember-password`` means the user no longer wants it kept.
    """
    record = {"token": issued.token, "expires_at": issued.expires_at, "user": user, "domain": domain}
    store.put("token", json.dumps(record, sort_keys=True))
    if password:
        store.put("password", password)
    else:
        store.delete("password")


def save_aksk(store: KeyringStore, ak: str, sk: str) -> None:
    """Store an access key and its secret key (one keyring value, so they can never be half updated)."""
    store.put("aksk", json.dumps({"ak": ak, "sk": sk}, sort_keys=True))


def forget_credentials(store: KeyringStore) -> int:
    """Remove everything fgsync stored for the store's endpoint and project; returns the entries removed."""
    return store.clear()


def load_record(store: KeyringStore, item: str, required: tuple[str, ...]) -> Optional[dict[str, Any]]:
    """A JSON item (``token``, ``aksk``) whose ``required`` fields are non-empty strings, else None."""
    raw = store.get(item)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) and record[k] for k in required):
        logger.warning("ignoring the keyring entry for %s: it is not in fgsync's format", item)
        return None
    return record
