"""The FunctionGraph client: request shapes, error parsing, retries (MockTransport) and the real emulator."""

from __future__ import annotations

import base64
import json
from typing import Any, Callable

import httpx
import pytest
from conftest import PROJECT_ID, TOKEN

from fgsync.errors import ApiError, AuthApiError, NetworkError, TransientApiError
from fgsync.remote import FunctionGraphClient, RetryPolicy

URN = f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"
DIGEST = "ab" * 64


class TokenAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["X-Auth-Token"] = self.token
        yield request


def code_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "func_urn": URN,
        "func_name": "hello",
        "runtime": "Python3.9",
        "code_type": "zip",
        "code_filename": "index.zip",
        "code_size": 123,
        "digest": DIGEST,
        "last_modified": "2019-10-31 11:37:58",
        "depend_version_list": ["dep-1", "dep-2"],
        "func_code": {"file": "", "link": ""},
    }
    body.update(overrides)
    return body


def make_client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> tuple[FunctionGraphClient, list]:
    sleeps: list[float] = []
    client = FunctionGraphClient(
        "https://functiongraph.example",
        PROJECT_ID,
        auth=TokenAuth(TOKEN),
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        rng=lambda: 1.0,
        **kwargs,
    )
    return client, sleeps


def test_show_code_sends_token_and_percent_encoded_urn() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=code_body())

    client, _ = make_client(handler)
    remote = client.show_code(URN)
    assert remote.digest == DIGEST
    assert remote.depend_version_list == ("dep-1", "dep-2")
    (request,) = seen
    assert request.method == "GET"
    assert request.headers["X-Auth-Token"] == TOKEN
    assert request.url.raw_path.decode() == (
        f"/v2/{PROJECT_ID}/fgs/functions/urn%3Afss%3Acn-north-4%3A{PROJECT_ID}%3Afunction%3Adefault%3Ahello%3Alatest/code"
    )


def test_update_code_body_is_exactly_what_functiongraph_expects() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.headers["Content-Type"] == "application/json"
        return httpx.Response(200, json=code_body(digest="cd" * 64))

    client, _ = make_client(handler)
    answer = client.update_code(
        URN, code_type="zip", code_filename="index.zip", data=b"PK\x05\x06zip", depend_version_list=("d1",)
    )
    assert answer.digest == "cd" * 64
    assert bodies == [
        {
            "code_type": "zip",
            "code_filename": "index.zip",
            "func_code": {"file": base64.b64encode(b"PK\x05\x06zip").decode(), "link": ""},
            "depend_version_list": ["d1"],
        }
    ]
    assert "\n" not in bodies[0]["func_code"]["file"]


def test_update_code_refuses_an_empty_package() -> None:
    client, _ = make_client(lambda r: pytest.fail("must not send"))
    with pytest.raises(ValueError, match="template code"):
        client.update_code(URN, code_type="zip", code_filename="index.zip", data=b"", depend_version_list=())


def test_update_code_reports_upload_progress() -> None:
    client, _ = make_client(lambda r: httpx.Response(200, json=code_body()))
    calls: list[tuple[int, int]] = []
    data = bytes(range(256)) * 4000
    client.update_code(
        URN,
        code_type="zip",
        code_filename="index.zip",
        data=data,
        depend_version_list=(),
        progress=lambda s, t: calls.append((s, t)),
    )
    assert calls, "progress hook was never called"
    assert calls[-1][0] == calls[-1][1]
    assert [s for s, _ in calls] == sorted(s for s, _ in calls)


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "message"),
    [
        (
            404,
            {"error_code": "FSS.1051", "error_msg": "Not found the function"},
            ApiError,
            "FSS.1051",
            "Not found the function",
        ),
        (401, {"error_code": "FSS.0401", "error_msg": "token expired"}, AuthApiError, "FSS.0401", "token expired"),
        (
            401,
            {"error": {"code": "APIGW.0301", "message": "Incorrect IAM authentication information"}},
            AuthApiError,
            "APIGW.0301",
            "Incorrect IAM",
        ),
        (403, {"error_code": "FGS.1121", "error_msg": "no permission"}, ApiError, "FGS.1121", "no permission"),
        (400, "<html>bad gateway page</html>", ApiError, "HTTP.400", "bad gateway page"),
    ],
)
def test_errors_carry_status_code_message_and_request_id(
    status: int, body: Any, cls: type, code: str, message: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"X-Request-Id": "req-42"}
        if isinstance(body, dict):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, text=body, headers=headers)

    client, sleeps = make_client(handler)
    with pytest.raises(cls) as caught:
        client.show_code(URN)
    error = caught.value
    assert type(error) is cls
    assert error.status == status
    assert error.code == code
    assert message in error.error_msg
    assert error.request_id == "req-42"
    assert f"HTTP {status}" in str(error) and "req-42" in str(error)
    assert sleeps == [], "4xx must not be retried"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_to_success(status: int) -> None:
    answers = [httpx.Response(status, json={"error_code": f"FSS.0{status}", "error_msg": "busy"})] * 2
    answers.append(httpx.Response(200, json=code_body()))
    calls = iter(answers)
    client, sleeps = make_client(lambda r: next(calls))
    assert client.show_code(URN).digest == DIGEST
    assert len(sleeps) == 2
    assert sleeps == [0.5, 1.0]  # full jitter with rng=1.0: base * 2**n


def test_backoff_is_capped_and_gives_up_with_a_retryable_error() -> None:
    client, sleeps = make_client(
        lambda r: httpx.Response(503, json={"error_code": "FSS.0503", "error_msg": "down"}),
        retry=RetryPolicy(attempts=6, base=1.0, cap=4.0),
    )
    with pytest.raises(TransientApiError) as caught:
        client.show_code(URN)
    assert caught.value.retryable
    assert sleeps == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_retry_after_is_honoured() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "3"}, json={"error_code": "FSS.0429", "error_msg": "slow"}),
            httpx.Response(200, json=code_body()),
        ]
    )
    client, sleeps = make_client(lambda r: next(answers))
    client.show_code(URN)
    assert sleeps == [3.0]


def test_connection_failures_are_retried_then_reported_as_network_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client, sleeps = make_client(handler, retry=RetryPolicy(attempts=2))
    with pytest.raises(NetworkError) as caught:
        client.show_code(URN)
    assert caught.value.code == "network" and caught.value.retryable
    assert "cannot connect" in str(caught.value)
    assert len(sleeps) == 2


def test_client_against_the_emulator_over_a_socket(emulator: Any) -> None:
    emu = emulator.emulator
    emu.create_function("hello", code=b"PK\x05\x06" + b"\x00" * 18)
    client = FunctionGraphClient(emulator.url, PROJECT_ID, auth=TokenAuth(TOKEN), verify=False)
    with client:
        urn = f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"
        before = client.show_code(urn)
        data = b"PK" + bytes(100)
        after = client.update_code(urn, code_type="zip", code_filename="index.zip", data=data, depend_version_list=())
        import hashlib

        assert after.digest == hashlib.sha512(data).hexdigest() != before.digest
        assert client.show_config(urn).digest == after.digest
        with pytest.raises(ApiError) as caught:
            client.show_code(urn.replace(":hello:", ":nope:"))
        assert caught.value.status == 404 and caught.value.code == "FSS.1051"
        emu.inject("show_code", status=503, code="FSS.0503", times=2)
        assert client.show_code(urn).digest == after.digest
    assert emu.uploads("hello") == 1
