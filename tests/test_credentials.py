"""Credentials: the keyring store (timeouts, chunks, no plaintext fallback), resolution order, IAM login, renewal."""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any, Callable, Optional

import httpx
import keyring
import keyring.backend
import keyring.backends.chainer
import keyring.backends.fail
import pytest

from fgsync.auth.credentials import Credentials, credential_stamp, resolve_credentials
from fgsync.auth.iam import IssuedToken, format_remaining, login_with_password, parse_expires
from fgsync.auth.keyring_store import (
    CHUNK_CHARS,
    SERVICE,
    KeyringStore,
    forget_credentials,
    keyring_timeout,
    load_record,
    save_aksk,
    save_token,
)
from fgsync.auth.signer import SdkHmacSigner, SignedRequestTooLargeError
from fgsync.errors import (
    EXIT_CREDENTIALS,
    CredentialsError,
    KeyringError,
    NetworkError,
    TransientApiError,
    UsageError,
)
from fgsync.remote import FunctionGraphClient
from tests.conftest import AK, DOMAIN, PASSWORD, PROJECT_ID, SECRETS, SK, TOKEN, USER, MemoryKeyring

IAM = "https://iam.cn-north-4.myhuaweicloud.com"
FG = f"https://functiongraph.cn-north-4.myhuaweicloud.com/v2/{PROJECT_ID}/fgs/functions/hello/code"
NOW = _dt.datetime(2026, 11, 28, 12, 0, tzinfo=_dt.timezone.utc).timestamp()
LONG_TOKEN = "MII" + "L" * 4997
NEW_TOKEN = "MII" + "N" * 2497


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (*SECRETS, LONG_TOKEN, NEW_TOKEN):
            assert secret not in text


class FakeIam:
    """A fake IAM over httpx.MockTransport: checks the login body, issues NEW_TOKEN, counts calls."""

    def __init__(self, *, status: int = 201, password: str = PASSWORD) -> None:
        self.status = status
        self.password = password
        self.bodies: list[dict[str, Any]] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.url.path == "/v3/auth/tokens"
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.status != 201:
            return httpx.Response(self.status, json={"error": {"code": self.status, "message": "nope"}})
        if body["auth"]["identity"]["password"]["user"]["password"] != self.password:
            return httpx.Response(401, json={"error": {"code": 401, "message": "The username or password is wrong."}})
        return httpx.Response(
            201, headers={"X-Subject-Token": NEW_TOKEN}, json={"token": {"expires_at": _iso(NOW + 86400)}}
        )


def _store() -> KeyringStore:
    return KeyringStore(IAM, PROJECT_ID)


# -- keyring store -------------------------------------------------------------------------------------


def test_long_values_are_split_and_joined(memory_keyring: MemoryKeyring) -> None:
    store = _store()
    store.put("token", LONG_TOKEN)
    entries = {user: value for (service, user), value in memory_keyring.entries.items() if service == SERVICE}
    assert len(entries) == 1 + 5
    assert all(len(value) <= CHUNK_CHARS for value in entries.values())
    assert all(user.startswith(f"{IAM} {PROJECT_ID} token") for user in entries)
    assert store.get("token") == LONG_TOKEN
    header = store.header("token")
    assert header is not None and LONG_TOKEN[:100] not in header


@pytest.mark.parametrize("damage", ["missing-part", "altered-part", "extra-count", "bad-header"])
def test_inconsistent_chunks_read_as_absent(
    memory_keyring: MemoryKeyring, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store()
    store.put("token", LONG_TOKEN)
    part3 = (SERVICE, f"{IAM} {PROJECT_ID} token #3")
    header = (SERVICE, f"{IAM} {PROJECT_ID} token")
    if damage == "missing-part":
        del memory_keyring.entries[part3]
    elif damage == "altered-part":
        memory_keyring.entries[part3] = "X" * CHUNK_CHARS
    elif damage == "extra-count":
        fields = memory_keyring.entries[header].split(" ")
        memory_keyring.entries[header] = " ".join([fields[0], "4", *fields[2:]])
    else:
        memory_keyring.entries[header] = "garbage"
    assert store.get("token") is None
    with pytest.raises(CredentialsError, match="no credentials"):
        resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, env={})
    assert "ignoring the keyring entry for token" in caplog.text
    _no_secret(caplog.text)


def test_rewrite_with_fewer_parts_removes_the_old_ones(memory_keyring: MemoryKeyring) -> None:
    store = _store()
    store.put("token", LONG_TOKEN)
    store.put("token", TOKEN)
    assert store.get("token") == TOKEN
    assert len(memory_keyring.entries) == 2


def test_delete_sweeps_parts_a_lost_header_no_longer_counts(memory_keyring: MemoryKeyring) -> None:
    store = _store()
    store.put("token", LONG_TOKEN)
    del memory_keyring.entries[(SERVICE, f"{IAM} {PROJECT_ID} token")]
    assert store.delete("token") == 5
    assert memory_keyring.entries == {}


def test_entries_are_scoped_to_endpoint_and_project(memory_keyring: MemoryKeyring) -> None:
    other_project = "f" * 32
    KeyringStore(IAM, PROJECT_ID).put("token", "one")
    KeyringStore(IAM, other_project).put("token", "two")
    KeyringStore("https://iam.myhuaweicloud.com/", PROJECT_ID).put("token", "three")
    assert KeyringStore(IAM + "/", PROJECT_ID).get("token") == "one"
    assert KeyringStore(IAM, other_project).get("token") == "two"
    assert KeyringStore("https://iam.myhuaweicloud.com", PROJECT_ID).get("token") == "three"
    KeyringStore(IAM, other_project).clear()
    assert KeyringStore(IAM, PROJECT_ID).get("token") == "one"


class HangingKeyring(keyring.backend.KeyringBackend):
    """A Secret Service stuck behind an unlock prompt: every call blocks until released."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def get_password(self, service: str, username: str) -> Optional[str]:
        self.release.wait(30)
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self.release.wait(30)

    def delete_password(self, service: str, username: str) -> None:
        self.release.wait(30)


@pytest.fixture
def hanging_keyring() -> Iterator[HangingKeyring]:
    backend = HangingKeyring()
    keyring.set_keyring(backend)
    yield backend
    backend.release.set()


def test_a_hanging_keyring_times_out_fast(hanging_keyring: HangingKeyring) -> None:
    started = time.monotonic()
    with pytest.raises(KeyringError) as caught:
        resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, env={"FGSYNC_KEYRING_TIMEOUT": "0.3"})
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2.0
    message = caught.value.message
    assert "did not answer within 0.3 s" in message
    assert "locked" in message and "FGSYNC_TOKEN" in message and "CLOUD_SDK_AK" in message
    assert caught.value.exit_code == EXIT_CREDENTIALS
    # The daemon's poll never raises for a keyring problem.
    assert credential_stamp(iam_endpoint=IAM, project_id=PROJECT_ID, env={"FGSYNC_KEYRING_TIMEOUT": "0.2"}) == (
        "keyring-unavailable"
    )


class EmptyChainer(keyring.backends.chainer.ChainerBackend):
    """The chainer when discovery found nothing (no D-Bus, no Keychain)."""

    backends: tuple[Any, ...] = ()  # type: ignore[assignment]


class FakePlaintextKeyring(MemoryKeyring):
    """Stands in for keyrings.alt.file.PlaintextKeyring (the module name is what fgsync checks)."""


FakePlaintextKeyring.__module__ = "keyrings.alt.file"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (keyring.backends.fail.Keyring, "no OS keyring is available"),
        (EmptyChainer, "the keyring chain is empty"),
        (FakePlaintextKeyring, "stores secrets in a file"),
    ],
)
def test_no_usable_backend_gives_an_actionable_error(make: Callable[[], Any], reason: str) -> None:
    backend = make()
    keyring.set_keyring(backend)
    with pytest.raises(KeyringError) as caught:
        _store().put("token", TOKEN)
    message = caught.value.message
    assert reason in message
    assert "never stores credentials in a plain file" in message
    assert "unlock or install an OS keyring" in message and "FGSYNC_TOKEN" in message
    if isinstance(backend, MemoryKeyring):
        assert backend.entries == {}


class BrokenKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError(f"(1783, 'CredWrite', 'The stub received bad data') {password}")


def test_backend_errors_become_keyring_errors_without_the_secret() -> None:
    keyring.set_keyring(BrokenKeyring())
    with pytest.raises(KeyringError) as caught:
        _store().put("token", TOKEN)
    assert "PasswordSetError" in caught.value.message and "CredWrite" in caught.value.message
    _no_secret(caught.value.message)


@pytest.mark.parametrize("raw", ["abc", "0", "-1"])
def test_bad_keyring_timeout_is_a_usage_error(raw: str) -> None:
    with pytest.raises(UsageError, match="FGSYNC_KEYRING_TIMEOUT"):
        keyring_timeout({"FGSYNC_KEYRING_TIMEOUT": raw})
    assert keyring_timeout({}) == 5.0
    assert keyring_timeout({"FGSYNC_KEYRING_TIMEOUT": "1.5"}) == 1.5


# -- resolution order ----------------------------------------------------------------------------------


def test_order_env_token_then_env_aksk_then_keyring() -> None:
    save_token(_store(), IssuedToken(LONG_TOKEN, _iso(NOW + 7200)), user=USER, domain=DOMAIN)
    env = {"FGSYNC_TOKEN": TOKEN, "CLOUD_SDK_AK": AK, "CLOUD_SDK_SK": SK}
    first = resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, env=env)
    assert (first.source, first.kind) == ("env", "token")
    del env["FGSYNC_TOKEN"]
    second = resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, env=env)
    assert (second.source, second.kind) == ("env", "aksk")
    assert isinstance(second.auth(), SdkHmacSigner)
    third = resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, env={}, clock=lambda: NOW)
    assert (third.source, third.kind, third.user, third.domain) == ("keyring", "token", USER, DOMAIN)
    assert third.describe()["expires_in_s"] == 7200
    for creds in (first, second, third):
        _no_secret(repr(creds), str(creds), json.dumps(creds.describe()))


def test_half_an_aksk_pair_is_an_error() -> None:
    with pytest.raises(CredentialsError, match="CLOUD_SDK_SK is not set"):
        resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, env={"CLOUD_SDK_AK": AK})


def test_nothing_found_says_how_to_log_in() -> None:
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials(iam_endpoint=IAM + "/", project_id=PROJECT_ID, env={})
    assert caught.value.message == (
        f"no credentials for project {PROJECT_ID} at {IAM}: run `fgsync login`, or set FGSYNC_TOKEN "
        "(or CLOUD_SDK_AK and CLOUD_SDK_SK)"
    )
    assert caught.value.exit_code == EXIT_CREDENTIALS


def test_aksk_method_reads_the_stored_pair() -> None:
    save_aksk(_store(), AK, SK)
    save_token(_store(), IssuedToken(TOKEN), user=USER, domain=DOMAIN)
    creds = resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, auth_method="aksk", env={})
    assert (creds.source, creds.kind) == ("keyring", "aksk")
    assert creds.describe()["ak"] == "AKTE…0000"
    signer = creds.auth()
    assert isinstance(signer, SdkHmacSigner) and signer.ak == AK
    _no_secret(json.dumps(creds.describe()), repr(creds))


# -- the token auth ------------------------------------------------------------------------------------


class FakeFunctionGraph:
    """Answers 200 to a request carrying an accepted token, 401 otherwise."""

    def __init__(self, accepted: set[str]) -> None:
        self.accepted = accepted
        self.tokens: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("X-Auth-Token", "")
        self.tokens.append(token)
        if token in self.accepted:
            return httpx.Response(200, json={"digest": "0" * 128})
        return httpx.Response(401, json={"error_code": "FSS.0401", "error_msg": "token expired"})

    def client(self, creds: Credentials) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle), auth=creds.auth())


def _keyring_creds(
    iam: FakeIam, *, expires: float, remember: bool, clock: Callable[[], float] = lambda: NOW
) -> Credentials:
    save_token(
        _store(),
        IssuedToken(LONG_TOKEN, _iso(expires)),
        user=USER,
        domain=DOMAIN,
        password=PASSWORD if remember else None,
    )
    return resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, env={}, transport=iam.transport, clock=clock)


def test_a_401_rereads_the_keyring_after_a_login_elsewhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    iam = FakeIam()
    creds = _keyring_creds(iam, expires=NOW + 7200, remember=False)
    service = FakeFunctionGraph({NEW_TOKEN})
    before = creds.stamp()
    # Another terminal runs `fgsync login`.
    save_token(_store(), IssuedToken(NEW_TOKEN, _iso(NOW + 86400)), user=USER, domain=DOMAIN)
    assert creds.stamp() != before
    with service.client(creds) as client:
        assert client.get(FG).status_code == 200
    assert service.tokens == [LONG_TOKEN, NEW_TOKEN]
    assert iam.bodies == []
    _no_secret(caplog.text)


def test_a_401_renews_with_the_remembered_password_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    iam = FakeIam()
    creds = _keyring_creds(iam, expires=NOW + 7200, remember=True)
    service = FakeFunctionGraph({NEW_TOKEN})
    with service.client(creds) as client:
        assert client.put(FG, json={"a": 1}).status_code == 200
    assert service.tokens == [LONG_TOKEN, NEW_TOKEN]
    assert len(iam.bodies) == 1
    stored = json.loads(_store().get("token") or "{}")
    assert stored["token"] == NEW_TOKEN and stored["expires_at"] == _iso(NOW + 86400)
    assert creds.expires_at == _iso(NOW + 86400)
    _no_secret(caplog.text)


def test_a_401_without_a_way_to_renew_is_returned_after_one_request() -> None:
    iam = FakeIam()
    creds = _keyring_creds(iam, expires=NOW + 7200, remember=False)
    service = FakeFunctionGraph(set())
    with service.client(creds) as client:
        assert client.get(FG).status_code == 401
    assert service.tokens == [LONG_TOKEN]


def test_a_refused_remembered_password_is_a_credentials_error() -> None:
    iam = FakeIam(password="changed since")
    creds = _keyring_creds(iam, expires=NOW + 7200, remember=True)
    with FakeFunctionGraph(set()).client(creds) as client, pytest.raises(CredentialsError) as caught:
        client.get(FG)
    assert "refused the login of user 'dev-user' of account 'my-account'" in caught.value.message
    _no_secret(caught.value.message)


def test_renews_before_sending_when_the_token_expires_within_an_hour() -> None:
    iam = FakeIam()
    creds = _keyring_creds(iam, expires=NOW + 1800, remember=True)
    service = FakeFunctionGraph({LONG_TOKEN, NEW_TOKEN})
    with service.client(creds) as client:
        client.get(FG)
        client.get(FG)
    assert service.tokens == [NEW_TOKEN, NEW_TOKEN]
    assert len(iam.bodies) == 1


def test_warns_once_an_hour_before_expiry_without_a_password(caplog: pytest.LogCaptureFixture) -> None:
    now = [NOW]
    iam = FakeIam()
    creds = _keyring_creds(iam, expires=NOW + 2700, remember=False, clock=lambda: now[0])
    service = FakeFunctionGraph({LONG_TOKEN})
    with service.client(creds) as client:
        client.get(FG)
        client.get(FG)
        now[0] += 3600
        client.get(FG)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"the IAM token for project {PROJECT_ID} expires in 45 min; run `fgsync login` "
        "(with --remember-password fgsync renews it by itself)",
        f"the IAM token for project {PROJECT_ID} expired at {_iso(NOW + 2700)}; run `fgsync login`",
    ]
    assert iam.bodies == []
    assert creds.describe()["expired"] is True


def test_env_token_is_sent_as_is() -> None:
    creds = resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, env={"FGSYNC_TOKEN": f" {TOKEN}\n"})
    service = FakeFunctionGraph({TOKEN})
    with service.client(creds) as client:
        assert client.get(FG).status_code == 200
    assert creds.describe()["expires_at"] is None
    assert creds.stamp() == "env:token"


# -- storing and forgetting ----------------------------------------------------------------------------


def test_login_without_remember_drops_a_remembered_password(memory_keyring: MemoryKeyring) -> None:
    store = _store()
    save_token(store, IssuedToken(TOKEN), user=USER, domain=DOMAIN, password=PASSWORD)
    assert store.get("password") == PASSWORD
    save_token(store, IssuedToken(TOKEN), user=USER, domain=DOMAIN)
    assert store.get("password") is None
    creds = resolve_credentials(iam_endpoint=IAM, project_id=PROJECT_ID, env={})
    assert creds.describe()["password_remembered"] is False


def test_forget_removes_every_entry(memory_keyring: MemoryKeyring) -> None:
    store = _store()
    save_token(store, IssuedToken(LONG_TOKEN, _iso(NOW)), user=USER, domain=DOMAIN, password=PASSWORD)
    save_aksk(store, AK, SK)
    count = len(memory_keyring.entries)
    assert count > 6 + 2 + 2
    assert forget_credentials(store) == count
    assert memory_keyring.entries == {}
    assert credential_stamp(iam_endpoint=IAM, project_id=PROJECT_ID, env={}).startswith("keyring:")


# -- IAM login -----------------------------------------------------------------------------------------


def test_login_sends_the_documented_body() -> None:
    iam = FakeIam()
    issued = login_with_password(
        iam_endpoint=IAM + "/",
        project_id=PROJECT_ID,
        user=USER,
        domain=DOMAIN,
        password=PASSWORD,
        transport=iam.transport,
    )
    assert issued == IssuedToken(NEW_TOKEN, _iso(NOW + 86400))
    assert NEW_TOKEN not in repr(issued)
    assert iam.bodies == [
        {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": USER, "password": PASSWORD, "domain": {"name": DOMAIN}}},
                },
                "scope": {"project": {"id": PROJECT_ID}},
            }
        }
    ]


@pytest.mark.parametrize(
    ("status", "error"), [(401, CredentialsError), (403, CredentialsError), (503, TransientApiError)]
)
def test_login_failures(status: int, error: type[Exception]) -> None:
    iam = FakeIam(status=status)
    with pytest.raises(error) as caught:
        login_with_password(
            iam_endpoint=IAM,
            project_id=PROJECT_ID,
            user=USER,
            domain=DOMAIN,
            password=PASSWORD,
            transport=iam.transport,
        )
    assert f"HTTP {status}" in str(caught.value)
    _no_secret(str(caught.value))


def test_login_network_failure_and_missing_token_header() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    refused = r"IAM login: cannot connect to iam\.cn-north-4\.myhuaweicloud\.com:443 \(connection refused\)"
    with pytest.raises(NetworkError, match=refused):
        login_with_password(
            iam_endpoint=IAM,
            project_id=PROJECT_ID,
            user=USER,
            domain=DOMAIN,
            password=PASSWORD,
            transport=httpx.MockTransport(refuse),
        )
    headerless = httpx.MockTransport(lambda request: httpx.Response(201, json={"token": {}}))
    with pytest.raises(CredentialsError, match="without an X-Subject-Token"):
        login_with_password(
            iam_endpoint=IAM, project_id=PROJECT_ID, user=USER, domain=DOMAIN, password=PASSWORD, transport=headerless
        )


def test_parse_expires_and_format_remaining() -> None:
    utc = _dt.timezone.utc
    assert parse_expires("2019-02-13T06:52:13.855000Z") == _dt.datetime(2019, 2, 13, 6, 52, 13, 855000, tzinfo=utc)
    assert parse_expires("2019-02-13 06:52:13") == _dt.datetime(2019, 2, 13, 6, 52, 13, tzinfo=utc)
    shifted = parse_expires("2018-03-28T11:30:32+08:00")
    assert shifted is not None and shifted.astimezone(utc).hour == 3
    assert parse_expires("tomorrow") is None
    assert format_remaining(2700) == "45 min"
    assert format_remaining(3 * 3600) == "3 h"
    assert format_remaining(5400) == "1 h 30 min"
    assert format_remaining(10) == "less than a minute"


def test_a_failed_early_renewal_keeps_the_working_token(caplog: pytest.LogCaptureFixture) -> None:
    """IAM unreachable 30 min before expiry: send with the current token, warn, and do not retry at once."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    iam = FakeIam()
    iam.transport = httpx.MockTransport(refuse)
    creds = _keyring_creds(iam, expires=NOW + 1800, remember=True)
    service = FakeFunctionGraph({LONG_TOKEN})
    with service.client(creds) as client:
        assert client.get(FG).status_code == 200
        assert client.get(FG).status_code == 200
    assert service.tokens == [LONG_TOKEN, LONG_TOKEN]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("could not renew the IAM token:") and "IAM login: cannot connect" in warnings[0]
    _no_secret(caplog.text)


def test_an_expired_token_that_cannot_be_renewed_raises_the_renewal_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    iam = FakeIam()
    iam.transport = httpx.MockTransport(refuse)
    creds = _keyring_creds(iam, expires=NOW - 60, remember=True)
    service = FakeFunctionGraph({LONG_TOKEN})
    with service.client(creds) as client, pytest.raises(NetworkError) as caught:
        client.get(FG)
    assert caught.value.retryable is True
    assert service.tokens == []


class ReIterable:
    """An upload body that can be iterated again (as a progress-reporting body should be)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.rounds = 0

    def __iter__(self) -> Iterator[bytes]:
        self.rounds += 1
        yield self.data[:3]
        yield self.data[3:]


def test_a_consumed_generator_body_is_not_resent_over_a_real_socket(emulator: Any) -> None:
    """A generator upload hit by a 401: the renewal happens, the 401 comes back, the next call gets through."""
    iam = emulator.url
    issued = login_with_password(iam_endpoint=iam, project_id=PROJECT_ID, user=USER, domain=DOMAIN, password=PASSWORD)
    save_token(KeyringStore(iam, PROJECT_ID), issued, user=USER, domain=DOMAIN, password=PASSWORD)
    creds = resolve_credentials(iam_endpoint=iam, project_id=PROJECT_ID, env={})
    urn = emulator.emulator.create_function("streamed")
    url = f"{iam}/v2/{PROJECT_ID}/fgs/functions/{urn}/code"
    emulator.emulator.expire_tokens()
    pulled: list[int] = []

    def generator() -> Iterator[bytes]:
        pulled.append(1)
        yield b'{"code_type": "zip"}'

    with httpx.Client(auth=creds.auth()) as client:
        assert client.put(url, content=generator(), headers={"Content-Type": "application/json"}).status_code == 401
        assert pulled == [1]
        assert client.get(url).status_code == 200
    stored = load_record(KeyringStore(iam, PROJECT_ID), "token", ("token",))
    assert stored is not None and stored["token"] != issued.token


def test_a_re_iterable_body_is_resent_after_a_renewal(emulator: Any) -> None:
    """A body that can start over (as a progress-reporting upload body should) is resent once, over a socket."""
    iam = emulator.url
    issued = login_with_password(iam_endpoint=iam, project_id=PROJECT_ID, user=USER, domain=DOMAIN, password=PASSWORD)
    save_token(KeyringStore(iam, PROJECT_ID), issued, user=USER, domain=DOMAIN, password=PASSWORD)
    creds = resolve_credentials(iam_endpoint=iam, project_id=PROJECT_ID, env={})
    urn = emulator.emulator.create_function("again")
    emulator.emulator.expire_tokens()
    body = ReIterable(b'{"name": "again"}')
    with httpx.Client(auth=creds.auth()) as client:
        answer = client.post(
            f"{iam}/v2/{PROJECT_ID}/fgs/functions/{urn}/invocations",
            content=body,
            headers={"Content-Type": "application/json", "Content-Length": str(len(body.data))},
        )
    assert answer.status_code == 200, answer.text
    assert body.rounds == 2


def test_the_api_client_pushes_with_stored_aksk_and_refuses_big_signed_uploads(emulator: Any, tmp_path: Any) -> None:
    """The seam for the rest of fgsync: FunctionGraphClient(auth=creds.auth()) against the emulator."""
    save_aksk(KeyringStore(emulator.url, PROJECT_ID), AK, SK)
    creds = resolve_credentials(iam_endpoint=emulator.url, project_id=PROJECT_ID, auth_method="aksk", env={})
    emu = emulator.emulator
    urn = emu.create_function("signed")
    small = io.BytesIO()
    with zipfile.ZipFile(small, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return 1\n")
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("blob.bin", os.urandom(10 * 1024 * 1024))  # ~13.3 MB once base64-encoded in JSON
    with FunctionGraphClient(emulator.url, PROJECT_ID, auth=creds.auth()) as client:
        pushed = client.update_code(
            urn, code_type="zip", code_filename="index.zip", data=small.getvalue(), depend_version_list=()
        )
        assert pushed.digest
        assert emu.uploads("signed") == 1
        with pytest.raises(SignedRequestTooLargeError) as caught:
            client.update_code(
                urn, code_type="zip", code_filename="index.zip", data=big.getvalue(), depend_version_list=()
            )
    assert emu.uploads("signed") == 1
    assert caught.value.exit_code == 1 and "fgsync login" in caught.value.message
