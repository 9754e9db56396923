"""ObsClient against the emulator: the object calls, URLs, errors as fgsync errors, retries, and large packages
going through OBS into UpdateFunctionCode (code_type obs) and CreateDependencyVersion (depend_type obs)."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import AK, SK, TOKEN
from test_emulator import BASE, HELLO, FakeClock, make_emulator

from fgsync.auth.obs_signer import ObsSigner
from fgsync.emulator import Emulator, EmulatorServer, serve
from fgsync.errors import EXIT_CREDENTIALS, EXIT_FAILED, ApiError, AuthApiError, TransientApiError
from fgsync.remote.client import RetryPolicy
from fgsync.remote.obs import (
    ObsAuthError,
    ObsClient,
    ObsError,
    ObsPermissionError,
    default_obs_endpoint,
    package_object_key,
)

BUCKET = "fgsync-test"
SHA256 = "ab" * 32


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = make_emulator(clock=FakeClock(), buckets=[BUCKET])
    yield emulator
    emulator.close()


def client_for(emu: Emulator, *, sk: str = SK, bucket: str = BUCKET, **kwargs: Any) -> ObsClient:
    return ObsClient(
        "http://127.0.0.1:8808",
        bucket,
        auth=ObsSigner(AK, sk, clock=emu.clock),
        transport=httpx.WSGITransport(app=emu.wsgi_app),
        sleep=lambda _s: None,
        **kwargs,
    )


def test_put_head_get_list_delete(emu: Emulator) -> None:
    key = package_object_key("fgsync/", "default", "hello", SHA256)
    assert key == f"fgsync/default/hello/{SHA256}.zip"
    data = b"PK" + os.urandom(700_000)
    seen: list[tuple[int, int]] = []
    with client_for(emu) as client:
        assert client.head(key) is None
        stored = client.put(key, data, progress=lambda sent, total: seen.append((sent, total)))
        assert stored.etag == hashlib.md5(data).hexdigest() and stored.size == len(data)
        assert seen[-1] == (len(data), len(data)) and len(seen) > 1
        info = client.head(key)
        assert info is not None and (info.key, info.size, info.etag) == (key, len(data), stored.etag)
        assert client.get(key) == data
        listed = client.list("fgsync/default/")
        assert [(o.key, o.size, o.etag) for o in listed] == [(key, len(data), stored.etag)]
        assert listed[0].last_modified.endswith("Z")
        client.delete(key)
        assert client.head(key) is None and client.list("fgsync/") == []
        client.delete(key)  # deleting what is not there is fine, as on OBS
    assert emu.calls("obs_put") == 1


def test_list_follows_the_pages(emu: Emulator) -> None:
    keys = [f"p/{i:02d} file.zip" for i in range(7)]
    for key in keys:
        emu.put_object(BUCKET, key, key.encode())
    emu.put_object(BUCKET, "q/other.zip", b"x")
    with client_for(emu) as client:
        assert [o.key for o in client.list("p/", page_size=3)] == keys
        assert [o.key for o in client.list()] == [*keys, "q/other.zip"]
    assert emu.calls("obs_list") == 3 + 1


def test_object_urls_are_virtual_host_for_real_endpoints_and_path_style_for_addresses() -> None:
    auth = ObsSigner(AK, SK)
    real = ObsClient(default_obs_endpoint("cn-north-4"), BUCKET, auth=auth)
    assert (
        real.object_url("fgsync/a b+c.zip") == f"https://{BUCKET}.obs.cn-north-4.myhuaweicloud.com/fgsync/a%20b%2Bc.zip"
    )
    assert not real.path_style
    local = ObsClient("http://127.0.0.1:8808/", BUCKET, auth=auth)
    assert local.object_url("k/ü.zip") == f"http://127.0.0.1:8808/{BUCKET}/k/%C3%BC.zip" and local.path_style
    assert ObsClient("http://localhost:9000", BUCKET, auth=auth).object_url("k") == f"http://localhost:9000/{BUCKET}/k"
    assert ObsClient("https://obs.example.com", BUCKET, auth=auth, path_style=True).object_url("k") == (
        f"https://obs.example.com/{BUCKET}/k"
    )
    assert default_obs_endpoint("eu-west-101") == "https://obs.eu-west-101.myhuaweicloud.eu"
    for client in (real, local):
        client.close()
    with pytest.raises(ValueError):
        ObsClient("http://127.0.0.1", "Bad_Bucket", auth=auth)
    with pytest.raises(ValueError):
        package_object_key("fgsync/", "default", "hello", "not-a-hash")


def test_a_wrong_sk_is_a_credentials_error_saying_to_check_the_ak_sk(emu: Emulator) -> None:
    with client_for(emu, sk="not-the-secret") as client, pytest.raises(ObsAuthError) as caught:
        client.put("k.zip", b"PK")
    error = caught.value
    assert isinstance(error, AuthApiError) and error.exit_code == EXIT_CREDENTIALS
    assert (error.status, error.code) == (403, "SignatureDoesNotMatch")
    assert "check the AK/SK" in error.message
    assert "the secret key does not belong to this access key" in error.message  # OBS signed the same text
    assert error.request_id
    assert "not-the-secret" not in str(error) + error.message


def test_permission_and_bucket_errors_name_what_is_missing(emu: Emulator) -> None:
    emu.inject("obs_put", status=403, code="AccessDenied", message="Access Denied")
    with client_for(emu) as client, pytest.raises(ObsPermissionError) as denied:
        client.put("k.zip", b"PK")
    assert denied.value.exit_code == EXIT_FAILED and "obs:object:PutObject" in denied.value.message
    emu.inject("obs_list", status=403, code="AccessDenied")
    with client_for(emu) as client, pytest.raises(ObsPermissionError, match="obs:bucket:ListBucket"):
        client.list()
    with client_for(emu, bucket="no-such-bucket") as client:
        with pytest.raises(ObsError) as missing:
            client.put("k.zip", b"PK")
        assert missing.value.code == "NoSuchBucket" and "'no-such-bucket' does not exist" in missing.value.message
        with pytest.raises(ObsError) as listing:
            client.list()
        assert listing.value.code == "NoSuchBucket"
    with client_for(emu) as client, pytest.raises(ObsError) as nokey:
        client.get("nothing.zip")
    assert nokey.value.code == "NoSuchKey" and nokey.value.status == 404


def test_a_bodyless_403_names_both_likely_causes() -> None:
    """Real OBS answers a HEAD with no body, and may name no code either."""
    transport = httpx.MockTransport(lambda request: httpx.Response(403, headers={"x-obs-request-id": "r1"}))
    client = ObsClient(default_obs_endpoint("cn-north-4"), BUCKET, auth=ObsSigner(AK, SK), transport=transport)
    with client, pytest.raises(ObsError) as caught:
        client.head("k.zip")
    assert caught.value.request_id == "r1" and caught.value.exit_code == EXIT_FAILED
    assert "check the AK/SK" in caught.value.message and "obs:object:GetObject" in caught.value.message


def test_a_non_obs_error_body_is_read_as_the_function_graph_client_reads_it() -> None:
    body = {"error_code": "APIGW.0101", "error_msg": "The API does not exist"}
    transport = httpx.MockTransport(lambda request: httpx.Response(404, json=body))
    client = ObsClient("https://obs.example.com", BUCKET, auth=ObsSigner(AK, SK), transport=transport)
    with client, pytest.raises(ApiError) as caught:
        client.get("k.zip")
    assert (caught.value.code, caught.value.error_msg) == ("APIGW.0101", "The API does not exist")


def test_the_clock_being_off_is_said_as_such(emu: Emulator) -> None:
    signer = ObsSigner(AK, SK, clock=lambda: emu.clock() - 3600)
    transport = httpx.WSGITransport(app=emu.wsgi_app)
    client = ObsClient("http://127.0.0.1", BUCKET, auth=signer, transport=transport)
    with client, pytest.raises(ObsError, match="clock") as caught:
        client.head("k")
    assert caught.value.code == "RequestTimeTooSkewed"


def test_transient_failures_are_retried_and_the_body_is_sent_again(emu: Emulator) -> None:
    emu.inject("obs_put", status=503, times=2)
    emu.inject("obs_head", status=500)
    sent: list[int] = []
    with client_for(emu, retry=RetryPolicy(attempts=3)) as client:
        client.put("k.zip", b"PK" + b"x" * 600_000, progress=lambda s, _t: sent.append(s))
        assert client.head("k.zip") is not None
    assert emu.calls("obs_put") == 3 and emu.object(BUCKET, "k.zip").size == 600_002
    assert sent.count(600_002) == 3  # the progress starts over on each attempt
    emu.inject("obs_get", status=503, times=-1)
    with client_for(emu, retry=RetryPolicy(attempts=2)) as client, pytest.raises(TransientApiError) as caught:
        client.get("k.zip")
    assert caught.value.retryable and caught.value.code == "ServiceUnavailable"
    assert emu.calls("obs_get") == 3


def test_a_dropped_connection_is_a_retryable_network_error() -> None:
    emulator = make_emulator(buckets=[BUCKET])
    with serve(emulator) as server:
        emulator.inject("obs_head", drop=True)
        with ObsClient(server.url, BUCKET, auth=ObsSigner(AK, SK), sleep=lambda _s: None) as client:
            assert client.head("k") is None  # retried after the drop
    assert emulator.calls("obs_head") == 2
    emulator.close()


# ------------------------------------------------------------------ large packages through OBS


def big_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


@pytest.fixture
def served() -> Iterator[EmulatorServer]:
    emulator = make_emulator(buckets=[BUCKET])
    with serve(emulator) as server:
        yield server
    emulator.close()


@pytest.mark.slow
def test_a_60_mb_package_through_obs_becomes_the_functions_code(served: EmulatorServer) -> None:
    emulator = served.emulator
    emulator.create_function("hello")
    package = big_zip({"index.py": HELLO.encode(), "blob.bin": os.urandom(60 * 1024 * 1024)})
    assert len(package) > 60 * 1024 * 1024
    key = package_object_key("fgsync/", "default", "hello", hashlib.sha256(package).hexdigest())
    progress: list[int] = []
    with ObsClient(served.url, BUCKET, auth=ObsSigner(AK, SK)) as obs:
        assert obs.head(key) is None
        obs.put(key, package, progress=lambda sent, _total: progress.append(sent))
        url = obs.object_url(key)
        head = obs.head(key)
        assert head is not None and (head.size, head.etag) == (len(package), hashlib.md5(package).hexdigest())
    assert progress[-1] == len(package)
    body = {"code_type": "obs", "code_url": url, "code_filename": "index.zip", "func_code": {}}
    with httpx.Client(base_url=served.url, headers={"X-Auth-Token": TOKEN}, timeout=60) as fg:
        answer = fg.put(f"{BASE}/hello/code", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["digest"] == hashlib.sha512(package).hexdigest()
        shown = fg.get(f"{BASE}/hello/code").json()
    assert (shown["code_type"], shown["code_url"], shown["code_size"]) == ("obs", url, len(package))
    assert emulator.function("hello").digest == hashlib.sha512(package).hexdigest()


@pytest.mark.slow
def test_a_45_mb_dependency_through_obs(served: EmulatorServer) -> None:
    package = big_zip({"lib/big.bin": os.urandom(45 * 1024 * 1024), "lib/__init__.py": b""})
    with ObsClient(served.url, BUCKET, auth=ObsSigner(AK, SK)) as obs:
        obs.put("fgsync/deps/libs.zip", package)
        link = obs.object_url("fgsync/deps/libs.zip")
    body = {"depend_type": "obs", "depend_link": link, "runtime": "Python3.9", "name": "fgsync-default-hello"}
    with httpx.Client(base_url=served.url, headers={"X-Auth-Token": TOKEN}, timeout=60) as fg:
        answer = fg.post(f"/v2/{served.emulator.project_id}/fgs/dependencies/version", json=body)
        assert answer.status_code == 200, answer.text
        missing = fg.post(
            f"/v2/{served.emulator.project_id}/fgs/dependencies/version",
            json={**body, "depend_link": link.replace("libs.zip", "none.zip")},
        )
    assert answer.json()["size"] == len(package)
    assert served.emulator.dependency_version(answer.json()["id"]).data == package
    assert missing.status_code == 404 and missing.json()["error_code"] == "FSS.1054"


def test_an_aksk_signed_20_mb_upload_is_not_held_to_the_gateways_12_mb(served: EmulatorServer) -> None:
    """AK/SK-signed FunctionGraph bodies stop at 12 MB; OBS has no such limit, which is why big packages go there."""
    data = b"PK" + os.urandom(20 * 1024 * 1024)
    with ObsClient(served.url, BUCKET, auth=ObsSigner(AK, SK)) as obs:
        obs.put("fgsync/default/hello/big.zip", data)
    assert served.emulator.object(BUCKET, "fgsync/default/hello/big.zip").data == data


def test_a_missing_object_in_code_url_is_the_service_error(served: EmulatorServer) -> None:
    served.emulator.create_function("hello")
    with ObsClient(served.url, BUCKET, auth=ObsSigner(AK, SK)) as obs:
        url = obs.object_url("fgsync/default/hello/never-uploaded.zip")
    body = {"code_type": "obs", "code_url": url, "code_filename": "index.zip", "func_code": {}}
    with httpx.Client(base_url=served.url, headers={"X-Auth-Token": TOKEN}) as fg:
        answer = fg.put(f"{BASE}/hello/code", json=body)
    assert answer.status_code == 404 and answer.json()["error_code"] == "FSS.1054"
    assert "never-uploaded.zip" in answer.json()["error_msg"]


def test_no_secret_in_logs_reprs_or_errors(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client_for(emu) as client:
        client.put("a.zip", b"PK")
        client.list()
    with client_for(emu, sk="wrong-secret-value") as bad, pytest.raises(ObsAuthError) as caught:
        bad.get("a.zip")
    shown = caplog.text + repr(caught.value) + str(caught.value) + caught.value.message + repr(client)
    assert SK not in shown and "wrong-secret-value" not in shown
