"""AK/SK signatures: the FUNCTIONGRAPH.md test vector, requests signed by the official SDK's signer, and the
official SDK (huaweicloudsdkfunctiongraph) driving the emulator over loopback."""

from __future__ import annotations

import base64
import hashlib
import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import AK, PROJECT_ID, SK, TOKEN
from test_emulator import BASE, HELLO, FakeClock, code_body, make_emulator, zip_bytes

from fgsync.emulator import Emulator, EmulatorServer, serve
from fgsync.emulator.auth import MAX_SIGNED_BODY, sign, string_to_sign, verify_signature

VECTOR_PROJECT = "0123456789abcdef0123456789abcdef"
VECTOR_URN = f"urn%3Afss%3Acn-north-4%3A{VECTOR_PROJECT}%3Afunction%3Adefault%3Ademo%3Alatest"
VECTOR_PATH = f"/v2/{VECTOR_PROJECT}/fgs/functions/{VECTOR_URN}/code"
VECTOR_BODY = (
    b'{"code_type": "zip", "code_filename": "index.zip", "func_code": {"file": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}'
)
VECTOR_SIGNATURE = "674a91fe9c582c4ec421ce85fed4f09da1da2335d078dbc588ec0da93a2f18e9"
#: The home folder at collection time, before the autouse fixture points HOME at a temp folder.
REAL_HOME_SDK_DIR = Path.home() / ".huaweicloud"


def test_the_documented_test_vector_signs_and_verifies() -> None:
    headers = {
        "content-type": "application/json",
        "host": "functiongraph.cn-north-4.myhuaweicloud.com",
        "x-project-id": VECTOR_PROJECT,
        "x-sdk-date": "20240101T000000Z",
    }
    text = string_to_sign(
        method="PUT",
        path=VECTOR_PATH,
        query="",
        headers=headers,
        signed_headers=sorted(headers),
        body_hash=hashlib.sha256(VECTOR_BODY).hexdigest(),
        sdk_date="20240101T000000Z",
    )
    assert sign("SKEXAMPLE", text) == VECTOR_SIGNATURE

    # The same request as a WSGI server hands it over (path unquoted), verified end to end.
    environ = {
        "REQUEST_METHOD": "PUT",
        "PATH_INFO": VECTOR_PATH.replace("%3A", ":"),
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "HTTP_HOST": headers["host"],
        "HTTP_X_PROJECT_ID": VECTOR_PROJECT,
        "HTTP_X_SDK_DATE": "20240101T000000Z",
        "HTTP_AUTHORIZATION": "SDK-HMAC-SHA256 Access=AKEXAMPLE, "
        f"SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature={VECTOR_SIGNATURE}",
    }
    now = 1704067200.0  # 2024-01-01T00:00:00Z
    assert verify_signature(environ, VECTOR_BODY, ak="AKEXAMPLE", sk="SKEXAMPLE", now=now) is None
    assert verify_signature(environ, VECTOR_BODY + b" ", ak="AKEXAMPLE", sk="SKEXAMPLE", now=now) is not None
    assert "15 minutes" in str(verify_signature(environ, VECTOR_BODY, ak="AKEXAMPLE", sk="SKEXAMPLE", now=now + 901))
    assert verify_signature(environ, VECTOR_BODY, ak="AKEXAMPLE", sk="SKEXAMPLE", now=now - 899) is None
    assert "access key" in str(verify_signature(environ, VECTOR_BODY, ak="AKOTHER", sk="SKEXAMPLE", now=now))
    assert verify_signature(environ, VECTOR_BODY, ak="AKEXAMPLE", sk="SKOTHER", now=now) is not None


def sdk_signed(
    url: str,
    method: str,
    *,
    body: bytes = b"",
    query: Optional[list[tuple[str, Any]]] = None,
    sk: str = SK,
    sdk_date: Optional[str] = None,
    content_type: str = "application/json",
) -> tuple[str, dict[str, str]]:
    """Sign a request with the official SDK's Signer; returns (url with query, headers to send)."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    parts = urlsplit(url)
    headers = {
        "Content-Type": content_type,
        "X-Project-Id": PROJECT_ID,
        "User-Agent": "huaweicloud-usdk-python/3.0",
    }
    if sdk_date:
        headers["X-Sdk-Date"] = sdk_date
    request = SdkRequest(
        method=method,
        schema=parts.scheme,
        host=parts.netloc,
        resource_path=parts.path,
        query_params=list(query or []),
        header_params=headers,
        body=body,
    )
    signed = Signer(BasicCredentials(AK, sk, PROJECT_ID)).sign(request)
    return f"{parts.scheme}://{parts.netloc}{signed.uri}", dict(signed.header_params)


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emu = make_emulator()
    emu.create_function("hello", code=zip_bytes({"index.py": HELLO}))
    with serve(emu) as running:
        yield running
    emu.close()


def test_requests_signed_by_the_sdk_signer_verify_and_tampering_fails(server: EmulatorServer) -> None:
    urn = f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"
    body = code_body(zip_bytes({"index.py": HELLO + "# signed\n"}))
    raw = httpx.Request("PUT", "http://x", json=body).read()
    url, headers = sdk_signed(f"{server.url}{BASE}/{urn.replace(':', '%3A')}/code", "PUT", body=raw)
    with httpx.Client() as client:
        assert client.put(url, content=raw, headers=headers).status_code == 200
        assert b"index.zip" in raw
        tampered = client.put(url, content=raw.replace(b"index.zip", b"other.zip"), headers=headers)
        assert tampered.status_code == 401 and tampered.json()["error_code"] == "APIGW.0301"
        assert "signature" in tampered.json()["error_msg"]
        moved = client.put(url.replace("hello", "other"), content=raw, headers=headers)
        assert moved.status_code == 401

        url, headers = sdk_signed(f"{server.url}{BASE}/hello/config", "GET", query=[("b", "2"), ("a", "x y~")])
        assert client.get(url, headers=headers).status_code == 200
        assert client.get(url.replace("a=x", "a=z"), headers=headers).status_code == 401

        url, headers = sdk_signed(f"{server.url}{BASE}/hello/config", "GET", sk="not-the-sk")
        wrong = client.get(url, headers=headers)
        assert wrong.status_code == 401 and SK not in wrong.text and "not-the-sk" not in wrong.text

        stale = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 16 * 60))
        url, headers = sdk_signed(f"{server.url}{BASE}/hello/config", "GET", sdk_date=stale)
        late = client.get(url, headers=headers)
        assert late.status_code == 401 and "15 minutes" in late.json()["error_msg"]
    assert server.emulator.uploads("hello") == 1


def test_unsigned_payload_for_non_json_bodies(server: EmulatorServer) -> None:
    # For other content types the SDK signs "UNSIGNED-PAYLOAD" (X-Sdk-Content-Sha256) instead of the body hash.
    event = b'{"from": "octet-stream"}'
    url, headers = sdk_signed(
        f"{server.url}{BASE}/hello/invocations", "POST", body=event, content_type="application/octet-stream"
    )
    assert headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    with httpx.Client(timeout=30) as client:
        answer = client.post(url, content=event, headers=headers)
    assert answer.status_code == 200 and answer.json()["result"] == '{"hello": "world"}'


def test_signed_bodies_over_12_mb_are_413_but_token_uploads_are_not(server: EmulatorServer) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("index.py", HELLO)
        archive.writestr("data.bin", b"\0" * (10 * 1024 * 1024))
    big = buffer.getvalue()  # ~13.4 MB once base64 in JSON
    raw = httpx.Request("PUT", "http://x", json=code_body(big)).read()
    assert len(raw) > MAX_SIGNED_BODY
    url, headers = sdk_signed(f"{server.url}{BASE}/hello/code", "PUT", body=raw)
    with httpx.Client(timeout=60) as client:
        refused = client.put(url, content=raw, headers=headers)
        assert refused.status_code == 413 and "12 MB" in refused.json()["error_msg"]
        by_token = client.put(f"{server.url}{BASE}/hello/code", content=raw, headers={"X-Auth-Token": TOKEN})
        assert by_token.status_code == 200 and by_token.json()["code_size"] == len(big)


def test_clock_skew_is_judged_by_the_emulators_clock() -> None:
    clock = FakeClock(time.time() + 3600)
    emu = make_emulator(clock=clock)
    emu.create_function("hello")
    with serve(emu) as running, httpx.Client() as client:
        url, headers = sdk_signed(f"{running.url}{BASE}/hello/config", "GET")
        assert client.get(url, headers=headers).status_code == 401
        clock.now = time.time()
        assert client.get(url, headers=headers).status_code == 200


# python-dateutil is not installed: the SDK warns and keeps last_modified as the string the emulator sent.
@pytest.mark.filterwarnings("ignore::ImportWarning")
def test_the_official_sdk_creates_updates_reads_and_invokes(server: EmulatorServer) -> None:
    # The SDK writes ~/.huaweicloud/application_id when it is imported; the autouse fixture points HOME at a
    # temp folder, so the real home must stay untouched.
    existed = REAL_HOME_SDK_DIR.exists()
    assert Path.home() != REAL_HOME_SDK_DIR.parent
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
    from huaweicloudsdkfunctiongraph.v2 import FunctionGraphClient
    from huaweicloudsdkfunctiongraph.v2 import model as m

    client = (
        FunctionGraphClient.new_builder()
        .with_credentials(BasicCredentials(AK, SK, PROJECT_ID))
        .with_endpoints([server.url])  # http:// is kept as given; the SDK's real signer still signs
        .build()
    )
    first = zip_bytes({"index.py": HELLO})
    created = client.create_function(
        m.CreateFunctionRequest(
            body=m.CreateFunctionRequestBody(
                func_name="from_sdk",
                package="default",
                runtime="Python3.9",
                handler="index.handler",
                memory_size=128,
                timeout=3,
                code_type="zip",
                code_filename="index.zip",
                func_code=m.FuncCode(file=base64.b64encode(first).decode()),
            )
        )
    )
    assert created.func_urn.endswith(":function:default:from_sdk:latest")
    assert created.digest == hashlib.sha512(first).hexdigest()

    dep_a = server.emulator.create_dependency_version("dep-a", zip_bytes({"dep_a.py": "A = 1\n"})).id
    second = zip_bytes({"index.py": "def handler(event, context):\n    return {'v': 2, 'got': event}\n"})
    updated = client.update_function_code(
        m.UpdateFunctionCodeRequest(
            function_urn=created.func_urn,
            body=m.UpdateFunctionCodeRequestBody(
                code_type="zip",
                code_filename="index.zip",
                func_code=m.FuncCode(file=base64.b64encode(second).decode()),
                depend_version_list=[dep_a],
            ),
        )
    )
    assert updated.digest == hashlib.sha512(second).hexdigest() and updated.code_size == len(second)
    code = client.show_function_code(m.ShowFunctionCodeRequest(function_urn=created.func_urn))
    config = client.show_function_config(m.ShowFunctionConfigRequest(function_urn=created.func_urn))
    assert code.digest == updated.digest == config.digest
    assert config.depend_version_list == [dep_a] and config.runtime == "Python3.9"
    assert server.emulator.function("from_sdk").code == second
    assert server.emulator.uploads("from_sdk") == 1

    invoked = client.invoke_function(
        m.InvokeFunctionRequest(function_urn=created.func_urn, body={"k": 1}, x_cff_log_type="tail")
    )
    assert invoked.status == 200 and invoked.result == '{"v": 2, "got": {"k": 1}}'

    with pytest.raises(ClientRequestException) as missing:
        client.show_function_config(m.ShowFunctionConfigRequest(function_urn="nobody"))
    assert missing.value.status_code == 404 and missing.value.error_code == "FSS.1051"

    wrong = (
        FunctionGraphClient.new_builder()
        .with_credentials(BasicCredentials(AK, "not-the-secret", PROJECT_ID))
        .with_endpoints([server.url])
        .build()
    )
    with pytest.raises(ClientRequestException) as refused:
        wrong.show_function_code(m.ShowFunctionCodeRequest(function_urn=created.func_urn))
    assert refused.value.status_code == 401 and refused.value.error_code == "APIGW.0301"
    assert REAL_HOME_SDK_DIR.exists() == existed


@pytest.mark.filterwarnings("ignore::ImportWarning")
@pytest.mark.usefixtures("node")
def test_the_official_sdk_creates_and_invokes_a_nodejs_function(server: EmulatorServer) -> None:
    existed = REAL_HOME_SDK_DIR.exists()
    assert Path.home() != REAL_HOME_SDK_DIR.parent
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkfunctiongraph.v2 import FunctionGraphClient
    from huaweicloudsdkfunctiongraph.v2 import model as m

    client = (
        FunctionGraphClient.new_builder()
        .with_credentials(BasicCredentials(AK, SK, PROJECT_ID))
        .with_endpoints([server.url])
        .build()
    )
    source = (
        "exports.handler = async (event, context) => {\n"
        '  context.getLogger().info("from node");\n'
        "  return { got: event, fn: context.getFunctionName() };\n"
        "};\n"
    )
    code = zip_bytes({"index.js": source})
    created = client.create_function(
        m.CreateFunctionRequest(
            body=m.CreateFunctionRequestBody(
                func_name="node_sdk",
                package="default",
                runtime="Node.js18.15",
                handler="index.handler",
                memory_size=128,
                timeout=3,
                code_type="zip",
                code_filename="index.zip",
                func_code=m.FuncCode(file=base64.b64encode(code).decode()),
            )
        )
    )
    assert created.runtime == "Node.js18.15"
    invoked = client.invoke_function(
        m.InvokeFunctionRequest(function_urn=created.func_urn, body={"k": 1}, x_cff_log_type="tail")
    )
    assert invoked.status == 200 and invoked.result == '{"got":{"k":1},"fn":"node_sdk"}'
    assert "INFO from node" in invoked.log and "invoke Success" in invoked.log

    failing = zip_bytes({"index.js": 'exports.handler = async () => { throw new Error("nope"); };\n'})
    client.update_function_code(
        m.UpdateFunctionCodeRequest(
            function_urn=created.func_urn,
            body=m.UpdateFunctionCodeRequestBody(
                code_type="zip",
                code_filename="index.zip",
                func_code=m.FuncCode(file=base64.b64encode(failing).decode()),
            ),
        )
    )
    failed = client.invoke_function(m.InvokeFunctionRequest(function_urn=created.func_urn, body={}))
    assert failed.status == 500 and '"errorMessage": "nope"' in failed.result
    assert REAL_HOME_SDK_DIR.exists() == existed


def test_signature_is_refused_when_the_emulator_has_no_aksk() -> None:
    emu = Emulator(project_id=PROJECT_ID, token=TOKEN)
    emu.create_function("hello")
    with serve(emu) as running, httpx.Client() as client:
        url, headers = sdk_signed(f"{running.url}{BASE}/hello/config", "GET")
        answer = client.get(url, headers=headers)
        assert answer.status_code == 401 and answer.json()["error_code"] == "APIGW.0301"
