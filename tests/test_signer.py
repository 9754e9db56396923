"""SDK-HMAC-SHA256: the documented test vector, and byte-identical signatures to the official SDK's signer."""

from __future__ import annotations

import datetime as _dt
import logging
from types import SimpleNamespace
from typing import Any, Optional

import httpx
import pytest

from fgsync.auth.signer import (
    MAX_SIGNED_BODY_BYTES,
    SdkHmacSigner,
    SignedRequestTooLargeError,
    canonical_uri,
    mask_ak,
)
from fgsync.errors import EXIT_FAILED, FgsyncError
from tests.conftest import AK, PROJECT_ID, SK

VECTOR_URL = (
    "https://functiongraph.cn-north-4.myhuaweicloud.com/v2/0123456789abcdef0123456789abcdef/fgs/functions/"
    "urn%3Afss%3Acn-north-4%3A0123456789abcdef0123456789abcdef%3Afunction%3Adefault%3Ademo%3Alatest/code"
)
VECTOR_BODY = (
    b'{"code_type": "zip", "code_filename": "index.zip", "func_code": {"file": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}'
)
VECTOR_SIGNATURE = "674a91fe9c582c4ec421ce85fed4f09da1da2335d078dbc588ec0da93a2f18e9"
JAN_1_2024 = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc).timestamp()


def _fixed(ts: float = JAN_1_2024) -> Any:
    return lambda: ts


def test_documented_test_vector() -> None:
    signer = SdkHmacSigner("AKEXAMPLE", "SKEXAMPLE", PROJECT_ID, clock=_fixed())
    request = httpx.Request("PUT", VECTOR_URL, headers={"Content-Type": "application/json"}, content=VECTOR_BODY)
    signer.sign(request)
    assert request.headers["X-Sdk-Date"] == "20240101T000000Z"
    assert request.headers["X-Project-Id"] == PROJECT_ID
    assert request.headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=AKEXAMPLE, SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
        f"Signature={VECTOR_SIGNATURE}"
    )


def test_test_vector_through_a_client_with_default_headers() -> None:
    """httpx's own headers (User-Agent, Accept, Content-Length …) stay out of the signature."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    signer = SdkHmacSigner("AKEXAMPLE", "SKEXAMPLE", PROJECT_ID, clock=_fixed())
    with httpx.Client(transport=httpx.MockTransport(handler), auth=signer) as client:
        client.put(VECTOR_URL, headers={"Content-Type": "application/json"}, content=VECTOR_BODY)
    assert seen[0].headers["Authorization"].endswith(f"Signature={VECTOR_SIGNATURE}")


def _sdk_authorization(
    method: str,
    url: str,
    headers: dict[str, str],
    query: list[tuple[str, str]],
    body: bytes,
    date: str,
) -> tuple[str, str]:
    """Sign with huaweicloudsdkcore's own Signer; returns (Authorization, the query string it sends)."""
    # Imported here, not at module level: the SDK writes into ~/.huaweicloud on import, and only the
    # autouse fixture has pointed HOME at a temp folder by now.
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    parsed = httpx.URL(url)
    host = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    request = SdkRequest(
        method=method,
        schema=parsed.scheme,
        host=host,
        resource_path=parsed.raw_path.decode("ascii").split("?")[0],
        query_params=list(query),
        header_params={**headers, "X-Project-Id": PROJECT_ID, "X-Sdk-Date": date},
        body=body,
    )
    Signer(SimpleNamespace(ak=AK, sk=SK)).sign(request)
    uri = request.uri
    return request.header_params["Authorization"], uri.split("?", 1)[1] if "?" in uri else ""


URN_RAW = f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"
URN_QUOTED = URN_RAW.replace(":", "%3A")
BASE = f"https://functiongraph.cn-north-4.myhuaweicloud.com/v2/{PROJECT_ID}/fgs/functions"

CASES = [
    pytest.param(
        "PUT", f"{BASE}/{URN_QUOTED}/code", {"Content-Type": "application/json"}, [], VECTOR_BODY, id="put-code"
    ),
    pytest.param("GET", f"{BASE}/{URN_RAW}/code", {}, [], b"", id="raw-colons-get"),
    pytest.param("GET", f"{BASE}/{URN_QUOTED}/config", {"Content-Type": "application/json"}, [], b"", id="get-json"),
    pytest.param(
        "GET",
        BASE,
        {"Content-Type": "application/json"},
        [("maxitems", "400"), ("marker", "0"), ("package_name", "a b/c~d+é"), ("a", "2"), ("a", "1")],
        b"",
        id="query",
    ),
    pytest.param(
        "POST",
        f"{BASE}/{URN_QUOTED}/invocations",
        {
            "Content-Type": "application/json",
            "X-Cff-Log-Type": "tail",
            "X-CFF-Request-Version": "v1",
            "X_Trace_Id": "skipped-because-of-the-underscore",
        },
        [],
        b'{"name": "world"}',
        id="invoke-custom-headers",
    ),
    pytest.param(
        "POST", f"{BASE}/{URN_QUOTED}/invocations", {"Content-Type": "application/json"}, [], b"", id="empty-body"
    ),
    pytest.param(
        "PUT",
        f"{BASE}/{URN_QUOTED}/code",
        {"Content-Type": "application/json;charset=UTF-8"},
        [],
        b'{"func_code": {"file": "' + b"A" * 6_000_000 + b'"}}',
        id="large-body",
    ),
    pytest.param(
        "PUT",
        f"{BASE}/{URN_QUOTED}/code",
        {"Content-Type": "application/zip"},
        [],
        b"PK\x05\x06" + b"\0" * 18,
        id="unsigned-payload",
    ),
    pytest.param(
        "GET", f"http://127.0.0.1:8808/v2/{PROJECT_ID}/fgs/functions/{URN_QUOTED}/code", {}, [], b"", id="loopback-port"
    ),
]


@pytest.mark.parametrize(("method", "url", "headers", "query", "body"), CASES)
def test_signature_is_byte_identical_to_the_sdk(
    method: str, url: str, headers: dict[str, str], query: list[tuple[str, str]], body: bytes
) -> None:
    when = JAN_1_2024 + 12345
    signer = SdkHmacSigner(AK, SK, PROJECT_ID, clock=_fixed(when))
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(handler), auth=signer) as client:
        client.request(method, url, headers=headers, params=query or None, content=body or None)
    request = sent[0]
    expected, sdk_query = _sdk_authorization(method, url, headers, query, body, request.headers["X-Sdk-Date"])
    assert request.headers["Authorization"] == expected
    # The query goes out in the canonical form the SDK sends, so the server verifies what was signed.
    assert request.url.query.decode("ascii") == sdk_query
    if "X_Trace_Id" in headers:
        assert "x_trace_id" not in expected


def test_date_is_fresh_on_every_signature() -> None:
    now = [JAN_1_2024]
    signer = SdkHmacSigner(AK, SK, PROJECT_ID, clock=lambda: now[0])
    request = httpx.Request("GET", f"{BASE}/{URN_QUOTED}/code")
    signer.sign(request)
    first = request.headers["Authorization"]
    now[0] += 61
    signer.sign(request)
    assert request.headers["X-Sdk-Date"] == "20240101T000101Z"
    assert request.headers["Authorization"] != first
    assert request.headers.get_list("Authorization") == [request.headers["Authorization"]]


def test_canonical_uri_always_ends_with_a_slash_and_quotes_colons() -> None:
    assert canonical_uri("/v2/p/fgs/functions/urn:fss:x/code") == "/v2/p/fgs/functions/urn%3Afss%3Ax/code/"
    assert canonical_uri("/v2/p/fgs/functions/urn%3Afss%3Ax/code") == "/v2/p/fgs/functions/urn%3Afss%3Ax/code/"
    assert canonical_uri("/a%21b/") == "/a%21b/"


def test_bodies_over_12_mb_are_refused_before_sending() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    signer = SdkHmacSigner(AK, SK, PROJECT_ID)
    with httpx.Client(transport=httpx.MockTransport(handler), auth=signer) as client:
        with pytest.raises(SignedRequestTooLargeError) as caught:
            client.put(f"{BASE}/{URN_QUOTED}/code", content=b"x" * (MAX_SIGNED_BODY_BYTES + 1))
        assert sent == []
        client.put(f"{BASE}/{URN_QUOTED}/code", content=b"x" * MAX_SIGNED_BODY_BYTES)
    assert len(sent) == 1
    error = caught.value
    assert isinstance(error, FgsyncError)
    assert error.exit_code == EXIT_FAILED
    assert "12,582,913 bytes" in error.message
    assert "fgsync login" in error.message
    assert SK not in error.message


def test_signer_is_a_body_reading_httpx_auth_and_hides_the_sk(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    signer = SdkHmacSigner(AK, SK, PROJECT_ID)
    assert isinstance(signer, httpx.Auth)
    assert signer.requires_request_body is True
    request = httpx.Request("GET", f"{BASE}/{URN_QUOTED}/code")
    signer.sign(request)
    assert SK not in repr(signer)
    assert AK not in repr(signer)
    assert "AKTE…0000" in repr(signer)
    assert SK not in caplog.text
    assert SK not in str(request.headers)


def test_streamed_body_is_read_then_signed() -> None:
    """A generator body: requires_request_body makes httpx read it first, so the hash covers the bytes."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    def chunks() -> Any:
        yield b'{"a": '
        yield b"1}"

    signer = SdkHmacSigner(AK, SK, PROJECT_ID, clock=_fixed())
    with httpx.Client(transport=httpx.MockTransport(handler), auth=signer) as client:
        client.post(f"{BASE}/{URN_QUOTED}/invocations", content=chunks(), headers={"Content-Type": "application/json"})
    assert sent[0].headers["Transfer-Encoding"] == "chunked"
    assert sent[0].content == b'{"a": 1}'
    # Transfer-Encoding is a transport header: unsigned, so the SDK's signature without it must match.
    expected, _ = _sdk_authorization(
        "POST",
        f"{BASE}/{URN_QUOTED}/invocations",
        {"Content-Type": "application/json"},
        [],
        b'{"a": 1}',
        "20240101T000000Z",
    )
    assert sent[0].headers["Authorization"] == expected


@pytest.mark.parametrize(("ak", "shown"), [(AK, "AKTE…0000"), ("SHORT", "****"), ("", "****")])
def test_mask_ak(ak: str, shown: Optional[str]) -> None:
    assert mask_ak(ak) == shown


def test_empty_keys_are_rejected() -> None:
    with pytest.raises(ValueError):
        SdkHmacSigner("", SK, PROJECT_ID)
    with pytest.raises(ValueError):
        SdkHmacSigner(AK, "", PROJECT_ID)
