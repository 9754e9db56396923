"""Temporary OBS keys from IAM: once per expiry window, renewed ahead of it, shared by threads, kept secret; and
ObsAuth signing with whatever keys are current, getting new ones when OBS refuses them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import AK, PROJECT_ID, SK, TOKEN
from test_emulator import FakeClock, make_emulator

from fgsync.auth.credentials import Credentials, resolve_credentials
from fgsync.auth.temporary import ObsAuth, ObsKeys, StaticKeys, TemporaryKeys
from fgsync.emulator import Emulator, serve
from fgsync.errors import EXIT_CREDENTIALS, AuthApiError, CredentialsError, NetworkError, TransientApiError
from fgsync.remote.obs import ObsAuthError, ObsClient

BUCKET = "fgsync-test"
IAM = "http://127.0.0.1:8808"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = make_emulator(clock=FakeClock(), buckets=[BUCKET])
    yield emulator
    emulator.close()


def temporary(emu: Emulator, token: str = TOKEN, **kwargs: Any) -> TemporaryKeys:
    return TemporaryKeys(IAM, lambda: token, transport=httpx.WSGITransport(app=emu.wsgi_app), clock=emu.clock, **kwargs)


def obs_client(emu: Emulator, keys: Any) -> ObsClient:
    transport = httpx.WSGITransport(app=emu.wsgi_app)
    auth = ObsAuth(keys, clock=emu.clock)
    return ObsClient(IAM, BUCKET, auth=auth, transport=transport, sleep=lambda _s: None)


def test_keys_are_fetched_once_per_expiry_window_and_renewed_before_it_ends(emu: Emulator) -> None:
    clock = emu.clock
    assert isinstance(clock, FakeClock)
    keys = temporary(emu, renew_before_s=300)
    first = keys.current()
    assert first.temporary and first.expires_at == pytest.approx(clock.now + 900)
    for _ in range(5):
        assert keys.current() is first
    clock.advance(599)
    assert keys.current() is first
    assert emu.calls("iam_securitytokens") == 1 and keys.fetches == 1
    clock.advance(1)  # 300 s before the expiry: renew
    second = keys.current()
    assert second is not first and second.ak != first.ak
    assert emu.calls("iam_securitytokens") == 2
    clock.advance(600)
    keys.current()
    assert emu.calls("iam_securitytokens") == 3


def test_the_duration_asked_for_is_sent_and_checked(emu: Emulator) -> None:
    clock = emu.clock
    assert isinstance(clock, FakeClock)
    keys = temporary(emu, duration_s=3600, renew_before_s=60)
    assert keys.current().expires_at == pytest.approx(clock.now + 3600)
    with pytest.raises(ValueError):
        temporary(emu, duration_s=899)
    with pytest.raises(ValueError):
        temporary(emu, duration_s=900, renew_before_s=900)


def test_threads_share_one_fetch(emu: Emulator) -> None:
    keys = temporary(emu)
    seen: list[ObsKeys] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        seen.append(keys.current())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(seen) == 8 and len({id(k) for k in seen}) == 1
    assert emu.calls("iam_securitytokens") == 1


def test_obs_calls_with_temporary_keys_and_new_keys_when_obs_refuses_them(emu: Emulator) -> None:
    keys = temporary(emu)
    with obs_client(emu, keys) as client:
        client.put("a.zip", b"PK-a")
        assert client.get("a.zip") == b"PK-a"
        assert emu.calls("iam_securitytokens") == 1
        emu.expire_temporary_keys()  # revoked behind fgsync's back (or an emulator restart)
        client.put("b.zip", b"PK-b")  # 403 InvalidAccessKeyId, new keys, the same request again
        assert emu.calls("iam_securitytokens") == 2 and emu.calls("obs_put") == 3
        assert [o.key for o in client.list()] == ["a.zip", "b.zip"]
    assert emu.calls("iam_securitytokens") == 2


def test_a_head_refused_for_expired_keys_is_asked_again_with_new_ones(emu: Emulator) -> None:
    emu.put_object(BUCKET, "h.zip", b"PK")
    keys = temporary(emu)
    with obs_client(emu, keys) as client:
        assert client.head("h.zip") is not None
        emu.expire_temporary_keys()
        info = client.head("h.zip")  # a HEAD answer has no body: the code is in x-obs-error-code
    assert info is not None and info.size == 2
    assert emu.calls("iam_securitytokens") == 2 and emu.calls("obs_head") == 3


def test_a_progress_body_is_sent_again_with_the_new_keys(emu: Emulator) -> None:
    sent: list[int] = []
    with serve(emu) as server:  # over a socket: in-process, httpx keeps the body it read the first time
        keys = TemporaryKeys(server.url, lambda: TOKEN, clock=emu.clock)
        with ObsClient(server.url, BUCKET, auth=ObsAuth(keys, clock=emu.clock)) as client:
            client.head("x")
            emu.expire_temporary_keys()
            client.put("big.zip", b"PK" * 300_000, progress=lambda done, _total: sent.append(done))
    assert sent.count(600_000) == 2  # the whole body twice: refused, then accepted
    assert emu.object(BUCKET, "big.zip").size == 600_000 and emu.calls("iam_securitytokens") == 2


def test_static_keys_make_no_iam_call(emu: Emulator) -> None:
    with obs_client(emu, StaticKeys(AK, SK)) as client:
        client.put("s.zip", b"PK")
    assert emu.calls("iam_securitytokens") == 0
    with obs_client(emu, StaticKeys(AK, "wrong")) as client, pytest.raises(ObsAuthError):
        client.head("s.zip")


def test_iam_errors_become_fgsync_errors(emu: Emulator) -> None:
    with pytest.raises(AuthApiError) as refused:
        temporary(emu, token="MIInot-a-valid-token").current()
    assert refused.value.exit_code == EXIT_CREDENTIALS and refused.value.status == 401
    emu.inject("iam_securitytokens", status=503)
    with pytest.raises(TransientApiError) as busy:
        temporary(emu).current()
    assert busy.value.retryable
    emu.inject("iam_securitytokens", status=403, message="no permission")
    with pytest.raises(CredentialsError, match="may not create temporary access keys") as forbidden:
        temporary(emu).current()
    assert forbidden.value.exit_code == EXIT_CREDENTIALS
    down = TemporaryKeys("http://127.0.0.1:9", lambda: TOKEN)  # nothing listens on the discard port
    with pytest.raises(NetworkError):
        down.current()


def test_after_a_401_a_renewed_token_is_tried_once(emu: Emulator) -> None:
    asked: list[str] = []

    def renew(used: str) -> str:
        asked.append(used)
        return TOKEN

    keys = temporary(emu, token="MIIexpired", renew_token=renew)
    assert keys.current().temporary
    assert asked == ["MIIexpired"] and emu.calls("iam_securitytokens") == 2


def test_credentials_give_static_keys_for_aksk_and_temporary_keys_for_a_token(emu: Emulator) -> None:
    transport = httpx.WSGITransport(app=emu.wsgi_app)
    aksk = resolve_credentials(
        iam_endpoint=IAM, project_id=PROJECT_ID, env={"CLOUD_SDK_AK": AK, "CLOUD_SDK_SK": SK}, transport=transport
    )
    assert isinstance(aksk.obs_keys(), StaticKeys) and aksk.obs_keys().current() == ObsKeys(AK, SK)
    token = resolve_credentials(
        iam_endpoint=IAM, project_id=PROJECT_ID, env={"FGSYNC_TOKEN": TOKEN}, transport=transport, clock=emu.clock
    )
    keys = token.obs_keys()
    assert isinstance(keys, TemporaryKeys) and isinstance(token, Credentials)
    with obs_client(emu, keys) as client:
        client.put("c.zip", b"PK")
    assert emu.calls("iam_securitytokens") == 1


def test_temporary_keys_over_a_real_socket_with_the_default_clock() -> None:
    emulator = make_emulator(buckets=[BUCKET])
    with serve(emulator) as server:
        keys = TemporaryKeys(server.url, lambda: TOKEN)
        with ObsClient(server.url, BUCKET, auth=ObsAuth(keys)) as client:
            client.put("real.zip", b"PK-real")
            assert client.get("real.zip") == b"PK-real"
    assert emulator.calls("iam_securitytokens") == 1
    emulator.close()


def test_no_secret_in_reprs_logs_or_errors(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keys = temporary(emu)
    errors: list[BaseException] = []
    with obs_client(emu, keys) as client:
        client.put("a.zip", b"PK")
        emu.expire_temporary_keys()
        client.put("b.zip", b"PK")
        current = keys.current()
        wrong = ObsKeys(current.ak, "a-wrong-secret", current.security_token, current.expires_at)
    with obs_client(emu, StaticKeys(wrong.ak, wrong.sk)) as bad:
        try:
            bad.head("a.zip")
        except ObsAuthError as error:
            errors.append(error)
    fixed = type("Fixed", (), {"current": lambda self: wrong, "invalidate": lambda self, k: None})()
    forged = ObsAuth(fixed, clock=emu.clock)
    transport = httpx.WSGITransport(app=emu.wsgi_app)
    with ObsClient(IAM, BUCKET, auth=forged, transport=transport) as forged_client:
        try:
            forged_client.put("c.zip", b"PK")  # the emulator echoes a StringToSign that holds the token
        except ObsAuthError as error:
            errors.append(error)
    assert len(errors) == 2
    shown = caplog.text + repr(keys) + repr(current) + str(current) + repr(StaticKeys(AK, SK)) + repr(forged)
    shown += "".join(f"{e!s}{e!r}{getattr(e, 'message', '')}" for e in errors)
    secrets_ = [SK, TOKEN, current.sk, wrong.sk]
    assert current.security_token is not None
    secrets_.append(current.security_token)
    for secret in secrets_:
        assert secret not in shown
    assert "<hidden>" in repr(current)
