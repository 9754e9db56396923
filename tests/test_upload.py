"""Upload bodies streamed in chunks: the very bytes the whole-body code sent, re-iterable, signed without a join."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import zipfile
from typing import Any, Optional

import httpx
import pytest
from conftest import AK, PROJECT_ID, SK, TOKEN

from fgsync.auth.credentials import replayable
from fgsync.auth.signer import MAX_SIGNED_BODY_BYTES, SdkHmacSigner, SignedRequestTooLargeError
from fgsync.remote import FunctionGraphClient, RetryPolicy
from fgsync.remote.client import code_body
from fgsync.upload import UPLOAD_CHUNK, Base64, UploadBody
from tests.test_signer import _sdk_authorization

URN = f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"
URL = f"https://functiongraph.example/v2/{PROJECT_ID}/fgs/functions/{URN.replace(':', '%3A')}/code"
ANSWER = {"func_urn": URN, "digest": "ab" * 64, "code_type": "zip", "code_filename": "index.zip"}

# Sizes around the base64 piece (196,608 input bytes) and the upload chunk, and a few ordinary packages.
SIZES = [1, 2, 3, 4, 196_607, 196_608, 196_609, 393_216, 1_000_001, 3 * 1024 * 1024 + 7]


def _package(size: int, seed: int = 0) -> bytes:
    return b"PK" + random.Random(seed).randbytes(max(0, size - 2))[: size - 2] if size >= 2 else b"P"


def _old_code_body(data: bytes, depends: list[str], kms: Optional[str], filename: str = "index.zip") -> bytes:
    """What UpdateFunctionCode's body was before streaming: b64encode -> decode -> json.dumps -> encode."""
    body: dict[str, Any] = {
        "code_type": "zip",
        "code_filename": filename,
        "func_code": {"file": base64.b64encode(data).decode("ascii"), "link": ""},
        "depend_version_list": depends,
    }
    if kms:
        body["code_encrypt_kms_key_id"] = kms
    return json.dumps(body, separators=(",", ":")).encode("ascii")


def _old_dependency_body(data: bytes, fields: dict[str, Any]) -> bytes:
    rest = json.dumps(fields, separators=(",", ":")).encode("ascii")
    return b"".join((b'{"depend_file":"', base64.b64encode(data), b'",', rest[1:]))


class StreamsSeen(httpx.MockTransport):
    """A MockTransport that notes each request's stream as the transport gets it (before reading it)."""

    def __init__(self, handler: Any) -> None:
        super().__init__(handler)
        self.streams: list[Any] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.streams.append(request.stream)
        return super().handle_request(request)


def _client(handler: Any, auth: httpx.Auth, transport: Optional[httpx.BaseTransport] = None, **kwargs: Any) -> Any:
    return FunctionGraphClient(
        "https://functiongraph.example",
        PROJECT_ID,
        auth=auth,
        transport=transport or httpx.MockTransport(handler),
        sleep=lambda _s: None,
        rng=lambda: 1.0,
        **kwargs,
    )


class Token(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["X-Auth-Token"] = TOKEN
        yield request


@pytest.mark.parametrize("size", SIZES)
def test_the_code_body_is_byte_for_byte_what_json_dumps_made(size: int) -> None:
    data = _package(size, seed=size)
    for depends, kms, filename in (([], None, "index.zip"), (["v-1", "v-2"], "kms-key", 'odd "name".zip')):
        fields: dict[str, Any] = {
            "code_type": "zip",
            "code_filename": filename,
            "func_code": {"file": "", "link": ""},
            "depend_version_list": depends,
        }
        if kms:
            fields["code_encrypt_kms_key_id"] = kms
        body = code_body(fields, data)
        joined = b"".join(body.chunks())
        assert joined == _old_code_body(data, depends, kms, filename)
        assert body.length == len(joined)
        assert b"".join(body) == joined  # iterated again: the same bytes


def test_a_file_name_that_spells_the_key_does_not_move_the_cut() -> None:
    data = _package(1000)
    tricky = 'x","func_code":{"file":"y'
    fields = {"code_type": "zip", "code_filename": tricky, "func_code": {"file": "", "link": ""}}
    body = b"".join(code_body(fields, data).chunks())
    assert json.loads(body)["func_code"]["file"] == base64.b64encode(data).decode()
    assert json.loads(body)["code_filename"] == tricky


@pytest.mark.parametrize("size", [1, 3, 196_609, 2_000_000])
def test_the_dependency_body_is_what_the_splice_made(size: int) -> None:
    data = _package(size, seed=7)
    fields = {"depend_type": "zip", "name": "deps", "runtime": "Python3.9", "description": "fgsync sha256=" + "a" * 64}
    rest = json.dumps(fields, separators=(",", ":")).encode("ascii")
    body = UploadBody.json_around(b'{"depend_file":"', data, b'",' + rest[1:])
    assert b"".join(body.chunks()) == _old_dependency_body(data, fields)


def test_chunks_are_bounded_and_base64_pieces_take_whole_groups_of_three() -> None:
    data = os.urandom(5 * UPLOAD_CHUNK + 11)
    body = UploadBody([b"{", Base64(data), b"x" * (UPLOAD_CHUNK * 2 + 1), b"}"])
    chunks = list(body.chunks())
    assert all(0 < len(chunk) <= UPLOAD_CHUNK for chunk in chunks)
    assert b"".join(chunks) == b"{" + base64.b64encode(data) + b"x" * (UPLOAD_CHUNK * 2 + 1) + b"}"
    assert b"=" not in b"".join(chunks[1:-5])  # padding only in the last base64 piece
    assert len(Base64(b"")) == 0 and list(UploadBody([b"", Base64(b"")]).chunks()) == []


def test_progress_counts_the_bytes_sent_and_starts_over_on_each_pass() -> None:
    seen: list[tuple[int, int]] = []
    body = UploadBody([b"{", Base64(os.urandom(700_000)), b"}"], progress=lambda s, t: seen.append((s, t)))
    list(body.chunks())
    assert seen == []  # chunks() is the quiet pass
    assert replayable(httpx.Request("PUT", URL, stream=body))
    list(body)
    list(body)
    sent = [s for s, _ in seen]
    total = body.length
    assert sent[-1] == total and sent.count(total) == 2
    first = sent[: sent.index(total) + 1]
    assert first == sorted(first) and all(t == total for _, t in seen)


def test_update_code_streams_the_body_and_a_retry_sends_it_whole_again() -> None:
    data = _package(1_500_000, seed=3)
    received: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request.read())
        if len(received) == 1:
            return httpx.Response(503, json={"error_code": "FSS.0503", "error_msg": "busy"})
        return httpx.Response(200, json=ANSWER)

    seen: list[int] = []
    transport = StreamsSeen(handler)
    client = _client(handler, Token(), transport, retry=RetryPolicy(attempts=2))
    client.update_code(
        URN, code_type="zip", code_filename="index.zip", data=data, depend_version_list=(),
        progress=lambda s, _t: seen.append(s),
    )  # fmt: skip
    expected = _old_code_body(data, [], None)
    assert received == [expected, expected]
    assert [type(s) for s in transport.streams] == [UploadBody, UploadBody]  # sent as a stream, never joined
    assert seen.count(len(expected)) == 2


def test_the_signer_hashes_the_stream_and_signs_as_the_sdk_does() -> None:
    """AK/SK: the signature of a streamed body equals the SDK's over the joined bytes; progress is the send only."""
    data = _package(800_000, seed=5)
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=ANSWER)

    seen: list[int] = []
    transport = StreamsSeen(handler)
    client = _client(handler, SdkHmacSigner(AK, SK, PROJECT_ID), transport)
    client.update_code(
        URN, code_type="zip", code_filename="index.zip", data=data, depend_version_list=(),
        progress=lambda s, _t: seen.append(s),
    )  # fmt: skip
    request = sent[0]
    assert [type(s) for s in transport.streams] == [UploadBody]
    body = _old_code_body(data, [], None)
    assert request.content == body
    headers = {"Content-Type": "application/json"}
    expected, _ = _sdk_authorization("PUT", URL, headers, [], body, request.headers["X-Sdk-Date"])
    assert request.headers["Authorization"] == expected
    assert seen == sorted(seen) and seen[-1] == len(body)  # one pass: hashing reported nothing


def test_a_signed_stream_over_12_mb_is_refused_before_a_byte_is_made() -> None:
    sent: list[httpx.Request] = []
    big = b"PK" + b"\0" * (MAX_SIGNED_BODY_BYTES // 4 * 3)  # its base64 alone is over the limit
    client = _client(lambda r: sent.append(r) or httpx.Response(200, json=ANSWER), SdkHmacSigner(AK, SK, PROJECT_ID))
    seen: list[int] = []
    with pytest.raises(SignedRequestTooLargeError):
        client.update_code(
            URN, code_type="zip", code_filename="index.zip", data=big, depend_version_list=(),
            progress=lambda s, _t: seen.append(s),
        )  # fmt: skip
    assert sent == [] and seen == []


def test_a_streamed_upload_is_resent_whole_after_a_token_renewal(emulator: Any) -> None:
    """Token auth over a real socket: a 401 renews the login, and the same body is sent again from the start."""
    from conftest import DOMAIN, PASSWORD, USER

    from fgsync.auth.credentials import resolve_credentials
    from fgsync.auth.iam import login_with_password
    from fgsync.auth.keyring_store import KeyringStore, save_token

    iam = emulator.url
    issued = login_with_password(iam_endpoint=iam, project_id=PROJECT_ID, user=USER, domain=DOMAIN, password=PASSWORD)
    save_token(KeyringStore(iam, PROJECT_ID), issued, user=USER, domain=DOMAIN, password=PASSWORD)
    creds = resolve_credentials(iam_endpoint=iam, project_id=PROJECT_ID, env={})
    urn = emulator.emulator.create_function("streamed")
    emulator.emulator.expire_tokens()
    data = _package(600_000, seed=9)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return 1\n")
        archive.writestr("blob.bin", data)
    package = buffer.getvalue()
    with FunctionGraphClient(iam, PROJECT_ID, auth=creds.auth()) as client:
        answer = client.update_code(
            urn, code_type="zip", code_filename="index.zip", data=package, depend_version_list=()
        )
    assert answer.digest == hashlib.sha512(package).hexdigest()
    assert emulator.emulator.uploads("streamed") == 1
    assert emulator.emulator.calls("update_code") == 2  # the 401, then the resend
