"""The emulator's FunctionGraph and IAM calls, over a real loopback socket and in-process (WSGITransport).

The helpers at the top (zip_bytes, code_body, login_body, FakeClock) are shared with the other
test_emulator_* modules.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import AK, DOMAIN, PASSWORD, PROJECT_ID, REGION, SK, TOKEN, USER

from fgsync.emulator import MAX_PACKAGE_BYTES, DroppedConnection, Emulator, serve

OTHER_PROJECT = "fedcba9876543210fedcba9876543210"
BASE = f"/v2/{PROJECT_ID}/fgs/functions"
HELLO = "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n"


def zip_bytes(files: Mapping[str, str]) -> bytes:
    """A zip holding ``files`` ({name: text})."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


def code_body(data: bytes, **extra: Any) -> dict[str, Any]:
    """An UpdateFunctionCode body for a zip package."""
    body: dict[str, Any] = {
        "code_type": "zip",
        "code_filename": "index.zip",
        "func_code": {"file": base64.b64encode(data).decode("ascii")},
    }
    body.update(extra)
    return body


def login_body(user: str, password: str, domain: str, project_id: str = PROJECT_ID) -> dict[str, Any]:
    """An IAM password login scoped to a project."""
    identity = {
        "methods": ["password"],
        "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}},
    }
    return {"auth": {"identity": identity, "scope": {"project": {"id": project_id}}}}


class FakeClock:
    """A wall clock tests move by hand."""

    def __init__(self, now: float = 1_700_000_000.5) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_emulator(**overrides: Any) -> Emulator:
    """The conftest credentials, overridable."""
    kwargs: dict[str, Any] = {
        "project_id": PROJECT_ID,
        "region": REGION,
        "token": TOKEN,
        "ak": AK,
        "sk": SK,
        "user": USER,
        "password": PASSWORD,
        "domain": DOMAIN,
    }
    kwargs.update(overrides)
    return Emulator(**kwargs)


@pytest.fixture(params=["socket", "wsgi"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Emulator, httpx.Client]]:
    """(emulator, client authenticated with the static token): over loopback, then in-process."""
    emu = make_emulator()
    emu.create_function("hello", code=zip_bytes({"index.py": HELLO}), user_data={"GREETING": "hi"})
    headers = {"X-Auth-Token": TOKEN}
    if request.param == "socket":
        with serve(emu) as server, httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            yield emu, client
    else:
        transport = httpx.WSGITransport(app=emu.wsgi_app)
        with httpx.Client(base_url="http://emulator", transport=transport, headers=headers) as client:
            yield emu, client
    emu.close()


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error_code", "error_msg"}
    assert response.headers["X-Request-Id"]
    return response.status_code, body["error_code"]


# ----------------------------------------------------------------------------- IAM


def test_password_login_issues_a_long_token_valid_for_24_hours() -> None:
    clock = FakeClock()
    emu = make_emulator(clock=clock, token=None)
    client = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://iam")
    response = client.post("/v3/auth/tokens", json=login_body(USER, PASSWORD, DOMAIN))
    assert response.status_code == 201
    token = response.headers["X-Subject-Token"]
    assert token.startswith("MII") and len(token) > 2500
    body = response.json()["token"]
    assert body["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%S.500000Z", time.gmtime(clock.now + 86400))
    assert body["issued_at"].endswith(".500000Z")
    assert body["user"]["name"] == USER and body["user"]["domain"]["name"] == DOMAIN
    assert body["project"]["id"] == PROJECT_ID
    assert token not in response.text
    assert client.get(f"{BASE}/hello/config", headers={"X-Auth-Token": token}).status_code == 404
    emu.create_function("hello")
    assert client.get(f"{BASE}/hello/config", headers={"X-Auth-Token": token}).status_code == 200
    clock.advance(86400)
    expired = client.get(f"{BASE}/hello/config", headers={"X-Auth-Token": token})
    assert error_of(expired) == (401, "FSS.0401")
    assert "expired" in expired.json()["error_msg"]


@pytest.mark.parametrize(
    ("user", "password", "domain"),
    [(USER, "wrong", DOMAIN), ("someone", PASSWORD, DOMAIN), (USER, PASSWORD, "other-account")],
)
def test_wrong_login_is_401_with_an_iam_error(user: str, password: str, domain: str) -> None:
    emu = make_emulator()
    client = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://iam")
    response = client.post("/v3/auth/tokens", json=login_body(user, password, domain))
    assert response.status_code == 401
    assert "X-Subject-Token" not in response.headers
    assert response.json()["error"]["code"] == 401
    assert "username or password" in response.json()["error"]["message"]
    assert response.headers["X-Request-Id"]


def test_login_for_another_project_or_malformed_is_400() -> None:
    emu = make_emulator()
    client = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://iam")
    other = client.post("/v3/auth/tokens", json=login_body(USER, PASSWORD, DOMAIN, OTHER_PROJECT))
    assert other.status_code == 400 and "project" in other.json()["error"]["message"]
    assert client.post("/v3/auth/tokens", content=b"not json").status_code == 400
    no_scope = login_body(USER, PASSWORD, DOMAIN)
    del no_scope["auth"]["scope"]
    assert client.post("/v3/auth/tokens", json=no_scope).status_code == 400


def test_expire_tokens_revokes_issued_and_static_tokens_but_not_new_logins(pair: tuple[Emulator, httpx.Client]) -> None:
    emu, client = pair
    issued = client.post("/v3/auth/tokens", json=login_body(USER, PASSWORD, DOMAIN)).headers["X-Subject-Token"]
    assert client.get(f"{BASE}/hello/code", headers={"X-Auth-Token": issued}).status_code == 200
    emu.expire_tokens()
    for token in (issued, TOKEN):
        assert error_of(client.get(f"{BASE}/hello/code", headers={"X-Auth-Token": token})) == (401, "FSS.0401")
    fresh = client.post("/v3/auth/tokens", json=login_body(USER, PASSWORD, DOMAIN)).headers["X-Subject-Token"]
    assert client.get(f"{BASE}/hello/code", headers={"X-Auth-Token": fresh}).status_code == 200


# ----------------------------------------------------------------------------- auth and project


def test_missing_or_wrong_credentials_are_401_saying_which(pair: tuple[Emulator, httpx.Client]) -> None:
    _emu, client = pair
    client.headers.pop("X-Auth-Token")
    missing = client.get(f"{BASE}/hello/config")
    assert error_of(missing) == (401, "APIGW.0301")
    assert "X-Auth-Token" in missing.json()["error_msg"]
    wrong = client.get(f"{BASE}/hello/config", headers={"X-Auth-Token": "MIIwrong"})
    assert error_of(wrong) == (401, "FSS.0401")
    assert "MIIwrong" not in wrong.text
    bad_sig = client.get(
        f"{BASE}/hello/config",
        headers={"Authorization": f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-sdk-date, Signature=00ff"},
    )
    assert error_of(bad_sig) == (401, "APIGW.0301")


def test_another_projects_path_is_refused(pair: tuple[Emulator, httpx.Client]) -> None:
    _emu, client = pair
    assert error_of(client.get(f"/v2/{OTHER_PROJECT}/fgs/functions/hello/config")) == (403, "FSS.0403")


def test_unknown_api_is_404(pair: tuple[Emulator, httpx.Client]) -> None:
    _emu, client = pair
    assert error_of(client.get(f"{BASE}/hello/versions")) == (404, "APIGW.0101")
    assert error_of(client.delete(f"{BASE}/hello/code"))[0] == 405


# ----------------------------------------------------------------------------- functions


def test_create_show_update_and_read_back(pair: tuple[Emulator, httpx.Client]) -> None:
    emu, client = pair
    dep1 = emu.create_dependency_version("dep-1", zip_bytes({"lib1.py": ""})).id
    dep2 = emu.create_dependency_version("dep-2", zip_bytes({"lib2.py": ""})).id
    created = client.post(
        BASE,
        json={
            "func_name": "made",
            "package": "default",
            "runtime": "Python3.9",
            "handler": "index.handler",
            "memory_size": 256,
            "timeout": 30,
            "code_type": "zip",
            "code_filename": "index.zip",
            "func_code": {"file": base64.b64encode(zip_bytes({"index.py": HELLO})).decode()},
            "depend_version_list": [dep1],
        },
    )
    assert created.status_code == 200
    urn = created.json()["func_urn"]
    assert urn == f"urn:fss:{REGION}:{PROJECT_ID}:function:default:made:latest"
    assert created.json()["memory_size"] == 256 and created.json()["timeout"] == 30
    config = client.get(f"{BASE}/{urn}/config").json()
    for key in (
        "runtime",
        "handler",
        "memory_size",
        "timeout",
        "code_type",
        "code_filename",
        "code_size",
        "digest",
        "version",
        "last_modified",
        "depend_version_list",
        "strategy_config",
    ):
        assert key in config
    assert config["version"] == "latest" and config["depend_version_list"] == [dep1]

    new = zip_bytes({"index.py": HELLO + "# v2\n"})
    updated = client.put(f"{BASE}/{urn}/code", json=code_body(new))
    assert updated.status_code == 200
    body = updated.json()
    assert body["digest"] == hashlib.sha512(new).hexdigest()
    assert body["code_size"] == len(new)
    assert body["depend_version_list"] == [dep1]  # left out of the body: kept
    assert emu.function("made").code == new and emu.uploads("made") == 1
    code = client.get(f"{BASE}/{urn}/code").json()
    assert code["digest"] == body["digest"] and code["func_code"] == {"file": "", "link": ""}

    replaced = client.put(f"{BASE}/{urn}/code", json=code_body(new, depend_version_list=[dep2]))
    assert replaced.json()["depend_version_list"] == [dep2]
    assert emu.function(urn).depend_version_list == [dep2] and emu.uploads(urn) == 2


def test_last_modified_follows_the_clock_in_utc_plus_8() -> None:
    clock = FakeClock(1_700_000_000)
    emu = make_emulator(clock=clock)
    emu.create_function("hello")
    client = httpx.Client(
        transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://x", headers={"X-Auth-Token": TOKEN}
    )
    assert client.get(f"{BASE}/hello/config").json()["last_modified"] == "2023-11-15T06:13:20+08:00"
    clock.advance(60)
    assert (
        client.put(f"{BASE}/hello/code", json=code_body(zip_bytes({"index.py": HELLO}))).json()["last_modified"]
        == "2023-11-15T06:14:20+08:00"
    )


def test_create_errors(pair: tuple[Emulator, httpx.Client]) -> None:
    _emu, client = pair
    good = {
        "func_name": "x1",
        "runtime": "Python3.9",
        "handler": "index.handler",
        "memory_size": 128,
        "timeout": 3,
        "code_type": "zip",
        "code_filename": "index.zip",
    }
    assert client.post(BASE, json=good).status_code == 200  # no code: the service's template code
    assert error_of(client.post(BASE, json=good)) == (409, "FSS.0409")
    for broken in ({"func_name": "1bad"}, {"memory_size": 64}, {"timeout": "3"}, {"code_type": "tar"}, {"runtime": ""}):
        assert error_of(client.post(BASE, json={**good, "func_name": "x2", **broken}))[0] == 400, broken
    assert error_of(client.post(BASE, content=b"{not json"))[0] == 400


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (code_body(b""), "FSS.1011"),
        ({"code_type": "zip", "code_filename": "index.zip", "func_code": {"file": "%%%not-base64"}}, "FSS.1011"),
        ({"code_type": "zip", "code_filename": "index.zip", "func_code": {"file": "UEsF\nBgAA"}}, "FSS.1011"),
        (code_body(b"plain text, not a zip"), "FSS.1013"),
        ({"code_filename": "index.zip", "func_code": {"file": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}, "FSS.0400"),
        ({"code_type": "zip", "func_code": {"file": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}, "FSS.0400"),
        (code_body(zip_bytes({"index.py": HELLO}), depend_version_list="dep"), "FSS.0400"),
    ],
    ids=["empty", "not-base64", "line-break", "not-zip", "no-code-type", "no-code-filename", "bad-depends"],
)
def test_update_code_refuses_bad_bodies(pair: tuple[Emulator, httpx.Client], body: dict[str, Any], code: str) -> None:
    emu, client = pair
    before = emu.function("hello").digest
    assert error_of(client.put(f"{BASE}/hello/code", json=body)) == (400, code)
    assert emu.function("hello").digest == before and emu.uploads("hello") == 0


def test_update_code_over_50_mb_is_413_fss_1071() -> None:
    emu = make_emulator()
    emu.create_function("hello")
    client = httpx.Client(
        transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://x", headers={"X-Auth-Token": TOKEN}
    )
    response = client.put(f"{BASE}/hello/code", json=code_body(b"\0" * (MAX_PACKAGE_BYTES + 1)))
    assert error_of(response) == (413, "FSS.1071")
    assert str(MAX_PACKAGE_BYTES) in response.json()["error_msg"]


def test_urn_forms_raw_encoded_and_short(pair: tuple[Emulator, httpx.Client]) -> None:
    _emu, client = pair
    full = f"urn:fss:{REGION}:{PROJECT_ID}:function:default:hello:latest"
    for ref in (full, quote(full, safe=""), "hello", "default:hello", full.rsplit(":", 1)[0]):
        response = client.get(f"{BASE}/{ref}/config")
        assert response.status_code == 200, ref
        assert response.json()["func_urn"] == full
    assert error_of(client.get(f"{BASE}/nobody/code")) == (404, "FSS.1051")
    assert error_of(client.get(f"{BASE}/{full.replace('hello', 'nobody')}/code")) == (404, "FSS.1051")
    assert error_of(client.get(f"{BASE}/{full.replace(PROJECT_ID, OTHER_PROJECT)}/code")) == (404, "FSS.1051")
    assert error_of(client.get(f"{BASE}/{full[:-6]}v1/code")) == (404, "FSS.1052")
    assert error_of(client.get(f"{BASE}/{quote(full[:-6] + '!prod', safe='')}/code")) == (404, "FSS.1052")
    assert error_of(client.get(f"{BASE}/urn:fss:bad/code")) == (400, "FSS.1309")


# ----------------------------------------------------------------------------- faults


def test_injected_error_applies_to_the_next_n_calls_and_is_counted(pair: tuple[Emulator, httpx.Client]) -> None:
    emu, client = pair
    emu.inject("show_config", status=503, code="FSS.0503", message="busy", times=2)
    for _ in range(2):
        response = client.get(f"{BASE}/hello/config")
        assert response.status_code == 503 and response.json() == {"error_code": "FSS.0503", "error_msg": "busy"}
    assert client.get(f"{BASE}/hello/config").status_code == 200
    assert emu.calls("show_config") == 3 and emu.calls("show_code") == 0
    emu.inject("update_code", status=409, times=-1)
    for _ in range(3):
        assert error_of(client.put(f"{BASE}/hello/code", json=code_body(zip_bytes({"a.py": ""})))) == (409, "FSS.0409")
    emu.clear_faults()
    assert client.put(f"{BASE}/hello/code", json=code_body(zip_bytes({"a.py": ""}))).status_code == 200
    assert emu.uploads("hello") == 1 and emu.calls("update_code") == 4


def test_injected_delay_then_normal_answer(pair: tuple[Emulator, httpx.Client]) -> None:
    emu, client = pair
    emu.inject("show_code", delay=0.3)
    started = time.monotonic()
    assert client.get(f"{BASE}/hello/code").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert client.get(f"{BASE}/hello/code").status_code == 200
    assert time.monotonic() - started < 0.3


def test_dropped_connection_gets_no_answer() -> None:
    emu = make_emulator()
    emu.create_function("hello")
    emu.inject("show_code", drop=True)
    with serve(emu) as server, httpx.Client(base_url=server.url, headers={"X-Auth-Token": TOKEN}) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{BASE}/hello/code")
        assert client.get(f"{BASE}/hello/code").status_code == 200
    emu.inject("iam_token", drop=True)
    inproc = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://x")
    with pytest.raises(DroppedConnection):
        inproc.post("/v3/auth/tokens", json=login_body(USER, PASSWORD, DOMAIN))
    assert emu.calls("show_code") == 2 and emu.calls("iam_token") == 1


def test_drop_after_applies_the_update_and_then_drops_the_answer() -> None:
    emu = make_emulator()
    emu.create_function("hello")
    data = zip_bytes({"index.py": HELLO})
    emu.inject("update_code", drop_after=True)
    with serve(emu) as server, httpx.Client(base_url=server.url, headers={"X-Auth-Token": TOKEN}) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.put(f"{BASE}/hello/code", json=code_body(data))
        # The service applied it: the client just never heard.
        assert emu.uploads("hello") == 1 and emu.function("hello").digest == hashlib.sha512(data).hexdigest()
        assert client.get(f"{BASE}/hello/code").json()["digest"] == hashlib.sha512(data).hexdigest()
        # Over the control API too, for tests that run `fgsync emulator` as a subprocess.
        answer = client.post("/_emulator/faults", json={"route": "update_code", "drop_after": True, "times": 1})
        assert answer.status_code == 201 and answer.json()["faults"]["update_code"] == 1
        other = zip_bytes({"index.py": HELLO + "# v2\n"})
        with pytest.raises(httpx.RemoteProtocolError):
            client.put(f"{BASE}/hello/code", json=code_body(other))
        assert emu.uploads("hello") == 2 and emu.function("hello").digest == hashlib.sha512(other).hexdigest()
        assert client.put(f"{BASE}/hello/code", json=code_body(data)).status_code == 200
    emu.inject("update_code", drop_after=True)
    inproc = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://x")
    with pytest.raises(DroppedConnection):
        inproc.put(f"{BASE}/hello/code", json=code_body(other), headers={"X-Auth-Token": TOKEN})
    assert emu.uploads("hello") == 4
    with pytest.raises(ValueError, match="drop_after"):
        emu.inject("update_code", drop_after=True, status=503)


def test_inject_rejects_nonsense() -> None:
    emu = make_emulator()
    with pytest.raises(ValueError, match="unknown route"):
        emu.inject("delete_function", status=500)
    with pytest.raises(ValueError, match="does nothing"):
        emu.inject("show_code")
    with pytest.raises(ValueError, match="400-599"):
        emu.inject("show_code", status=200)


def test_an_injected_throttle_says_how_long_to_wait(emulator: Any) -> None:
    emu = emulator.emulator
    emu.create_function("hello")
    emu.inject("show_code", status=429, code="FSS.0429", retry_after=2, times=1)
    urn = f"urn:fss:cn-north-4:{emu.project_id}:function:default:hello:latest"
    with httpx.Client(base_url=emulator.url, headers={"X-Auth-Token": TOKEN}) as client:
        answer = client.get(f"/v2/{emu.project_id}/fgs/functions/{urn}/code")
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "2"
        assert answer.json()["error_code"] == "FSS.0429"
        created = client.post(
            "/_emulator/faults", json={"route": "show_code", "status": 429, "retry_after": 1.5, "times": 1}
        )
        assert created.status_code == 201
        assert client.get(f"/v2/{emu.project_id}/fgs/functions/{urn}/code").headers["Retry-After"] == "1.5"
        assert client.get(f"/v2/{emu.project_id}/fgs/functions/{urn}/code").status_code == 200
    with pytest.raises(ValueError, match="retry_after goes with an error answer"):
        emu.inject("show_code", delay=1, retry_after=1)


def test_a_fault_aimed_at_one_function_lets_the_others_by(pair: tuple[Emulator, httpx.Client]) -> None:
    emu, client = pair
    emu.create_function("world")
    emu.inject("show_code", status=503, function="world", times=2)
    assert client.get(f"{BASE}/hello/code").status_code == 200  # not world's: goes by, the fault stays
    assert emu.faults.pending()["show_code"] == 1
    assert error_of(client.get(f"{BASE}/world/code")) == (503, "FSS.0503")
    urn = emu.function("world").urn(REGION, PROJECT_ID)
    assert error_of(client.get(f"{BASE}/{quote(urn, safe='')}/code")) == (503, "FSS.0503")  # a URN names it too
    assert client.get(f"{BASE}/world/code").status_code == 200
    assert emu.faults.pending()["show_code"] == 0
    with pytest.raises(ValueError):
        emu.inject("show_code", status=503, function="")


def test_requests_in_flight_are_counted_with_their_peak(emulator: Any) -> None:
    """Three held requests: in flight together, counted once each; the control API's own requests are not."""
    import threading

    emu = emulator.emulator
    emu.create_function("hello")
    emu.inject("show_code", delay=1.0, times=3)
    headers = {"X-Auth-Token": TOKEN}
    url = f"{emulator.url}{BASE}/hello/code"
    threads = [threading.Thread(target=httpx.get, args=(url,), kwargs={"headers": headers}) for _ in range(3)]
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=emulator.url) as control:
        deadline = time.monotonic() + 30
        while control.get("/_emulator/stats").json()["requests"]["in_flight"] < 3:
            assert time.monotonic() < deadline, "the three requests never were in flight together"
            time.sleep(0.02)
        for thread in threads:
            thread.join()
        # The answers are read; each server thread leaves the count just after writing the last byte of its own.
        while control.get("/_emulator/stats").json()["requests"]["in_flight"]:
            assert time.monotonic() < deadline, "a request stayed counted after its answer"
            time.sleep(0.02)
        assert control.get("/_emulator/stats").json()["requests"] == {"in_flight": 0, "peak": 3}
        assert control.post("/_emulator/requests/reset").json() == {"in_flight": 0, "peak": 0}
        assert emu.requests.describe() == {"in_flight": 0, "peak": 0}
