"""The emulated OBS and IAM's temporary credentials: the object calls, their signatures (OBS native and AWS V2,
permanent and temporary keys), errors as OBS answers them, faults, persistence, and esdk-obs-python driving it."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest
from conftest import AK, SK, TOKEN
from test_emulator import FakeClock, make_emulator

from fgsync.auth.obs_signer import ObsSigner
from fgsync.emulator import Emulator, EmulatorServer, serve
from fgsync.emulator.obs_auth import verify
from fgsync.emulator.obs_store import ObjectStore

BUCKET = "fgsync-test"
#: esdk-obs-python's own code raises DeprecationWarnings on newer Pythons (datetime.utcnow); not ours to fix.
sdk_warnings = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def obs_client(emu: Emulator, *, sk: str = SK, ak: str = AK, token: Optional[str] = None) -> httpx.Client:
    """An httpx client straight into the emulator's WSGI app, signing with fgsync's ObsSigner."""
    signer = ObsSigner(ak, sk, security_token=token, clock=emu.clock)
    return httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://127.0.0.1:8808", auth=signer)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = make_emulator(clock=FakeClock(), buckets=[BUCKET])
    yield emulator
    emulator.close()


def xml_error(response: httpx.Response) -> dict[str, str]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(response.content)
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


def test_put_head_get_list_delete(emu: Emulator) -> None:
    with obs_client(emu) as client:
        data = b"PK\x05\x06" + b"\0" * 18
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        put = client.put(f"/{BUCKET}/fgsync/default/hello/a b+c.zip", content=data, headers={"Content-MD5": md5})
        assert put.status_code == 200, put.text
        assert put.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        assert put.headers["x-obs-request-id"]
        head = client.head(f"/{BUCKET}/fgsync/default/hello/a b+c.zip")
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data)) and head.content == b""
        assert head.headers["ETag"] == put.headers["ETag"] and head.headers["Last-Modified"].endswith("GMT")
        assert client.get(f"/{BUCKET}/fgsync/default/hello/a b+c.zip").content == data
        listing = client.get(f"/{BUCKET}", params={"prefix": "fgsync/"})
        assert listing.status_code == 200
        assert "<Key>fgsync/default/hello/a b+c.zip</Key>" in listing.text
        assert f"<Size>{len(data)}</Size>" in listing.text and "<IsTruncated>false</IsTruncated>" in listing.text
        assert client.delete(f"/{BUCKET}/fgsync/default/hello/a b+c.zip").status_code == 204
        assert client.delete(f"/{BUCKET}/fgsync/default/hello/a b+c.zip").status_code == 204  # as OBS: no error
        missing = client.head(f"/{BUCKET}/fgsync/default/hello/a b+c.zip")
        assert missing.status_code == 404 and missing.content == b""
        assert missing.headers["x-obs-error-code"] == "NoSuchKey"
        assert xml_error(client.get(f"/{BUCKET}/nothing"))["Code"] == "NoSuchKey"
    for route, count in {"obs_put": 1, "obs_head": 2, "obs_get": 2, "obs_list": 1, "obs_delete": 2}.items():
        assert emu.calls(route) == count, route
    assert emu.objects(BUCKET) == []


def test_listing_pages_with_marker_and_groups_with_a_delimiter(emu: Emulator) -> None:
    for key in ("p/a", "p/b", "p/c", "p/d/1", "p/d/2", "q/z"):
        emu.put_object(BUCKET, key, key.encode())
    with obs_client(emu) as client:
        page = client.get(f"/{BUCKET}", params={"prefix": "p/", "max-keys": "2"}).text
        assert "<Key>p/a</Key><" in page and "<Key>p/b</Key>" in page and "p/c" not in page
        assert "<IsTruncated>true</IsTruncated>" in page and "<NextMarker>p/b</NextMarker>" in page
        rest = client.get(f"/{BUCKET}", params={"prefix": "p/", "marker": "p/b"}).text
        assert "p/c" in rest and "p/d/2" in rest and "q/z" not in rest and "<IsTruncated>false" in rest
        grouped = client.get(f"/{BUCKET}/", params={"prefix": "p/", "delimiter": "/"}).text
        assert "<CommonPrefixes><Prefix>p/d/</Prefix></CommonPrefixes>" in grouped and "p/d/1" not in grouped
        after = client.get(f"/{BUCKET}/", params={"prefix": "p/", "delimiter": "/", "marker": "p/d/"}).text
        assert "<CommonPrefixes>" not in after and "<Contents>" not in after  # p/d/ is not listed twice


def test_a_missing_bucket_is_404_no_such_bucket_and_buckets_are_not_made_by_a_put(emu: Emulator) -> None:
    with obs_client(emu) as client:
        answer = client.put("/no-such-bucket/k", content=b"x")
        assert answer.status_code == 404
        error = xml_error(answer)
        assert error["Code"] == "NoSuchBucket" and error["BucketName"] == "no-such-bucket" and error["RequestId"]
        assert client.head("/no-such-bucket").status_code == 404
        assert client.head(f"/{BUCKET}").status_code == 200
    assert emu.buckets() == [BUCKET]
    assert emu.create_bucket("another-one") is True and emu.create_bucket("another-one") is False
    with pytest.raises(ValueError, match="invalid bucket name"):
        emu.create_bucket("v3.0")
    with pytest.raises(ValueError):
        emu.create_bucket("Upper_Case")


def test_a_wrong_sk_is_403_signature_does_not_match_with_the_string_to_sign_echoed(emu: Emulator) -> None:
    with obs_client(emu, sk="not-the-secret") as client:
        answer = client.put(f"/{BUCKET}/k.zip", content=b"x", headers={"Content-Type": "application/zip"})
    error = xml_error(answer)
    assert answer.status_code == 403 and error["Code"] == "SignatureDoesNotMatch"
    assert error["StringToSign"].startswith("PUT\n\napplication/zip\n") and error["StringToSign"].endswith(
        f"\n/{BUCKET}/k.zip"
    )
    assert error["AccessKeyId"] == AK and error["StringToSignBytes"].startswith("50 55 54 0a")
    assert emu.objects(BUCKET) == []


def test_unknown_key_missing_signature_bad_header_and_stale_date(emu: Emulator) -> None:
    with obs_client(emu, ak="AKUNKNOWN00000000000") as client:
        error = xml_error(client.get(f"/{BUCKET}/k"))
        assert error["Code"] == "InvalidAccessKeyId" and "does not exist in our records" in error["Message"]
    raw = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://127.0.0.1")
    assert xml_error(raw.get(f"/{BUCKET}/k"))["Code"] == "AccessDenied"
    assert xml_error(raw.get(f"/{BUCKET}/k", headers={"Authorization": "Bearer x"}))["Code"] == "InvalidArgument"
    signer = ObsSigner(AK, SK, clock=lambda: emu.clock() - 901)
    stale = raw.get(f"/{BUCKET}/k", auth=signer)
    assert stale.status_code == 403 and xml_error(stale) | {"Code": "RequestTimeTooSkewed"} == xml_error(stale)
    assert xml_error(stale)["Message"] == "Request is no longer valid."
    early = raw.get(f"/{BUCKET}/k", auth=ObsSigner(AK, SK, clock=lambda: emu.clock() + 901))
    assert xml_error(early)["Message"] == "Request is not yet valid."
    assert raw.get(f"/{BUCKET}/k", auth=ObsSigner(AK, SK, clock=lambda: emu.clock() - 899)).status_code == 404


def test_content_md5_is_checked(emu: Emulator) -> None:
    with obs_client(emu) as client:
        wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        assert xml_error(client.put(f"/{BUCKET}/k", content=b"x", headers={"Content-MD5": wrong}))["Code"] == (
            "BadDigest"
        )
        assert xml_error(client.put(f"/{BUCKET}/k", content=b"x", headers={"Content-MD5": "nope"}))["Code"] == (
            "InvalidDigest"
        )
    assert emu.objects(BUCKET) == []


def _aws_v2(method: str, resource: str, date: str, headers: dict[str, str], sk: str = SK) -> str:
    lines = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-amz-"))
    text = f"{method}\n\n\n{date}\n{lines}{resource}"
    return base64.b64encode(hmac.new(sk.encode(), text.encode(), hashlib.sha1).digest()).decode()


def test_the_aws_v2_signature_is_accepted_too(emu: Emulator) -> None:
    """esdk-obs-python signs AWS V2 in path style unless client_mode="workflow"; OBS takes both, so does this."""
    date = email.utils.formatdate(emu.clock(), usegmt=True)
    raw = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://127.0.0.1")
    headers = {"Date": date, "x-amz-meta-who": "me"}
    headers["Authorization"] = f"AWS {AK}:{_aws_v2('PUT', f'/{BUCKET}/v2.zip', date, {'x-amz-meta-who': 'me'})}"
    assert raw.put(f"/{BUCKET}/v2.zip", content=b"x", headers=headers).status_code == 200
    headers["Authorization"] = f"AWS {AK}:{_aws_v2('PUT', f'/{BUCKET}/v2.zip', date, {})}"  # a header left unsigned
    assert xml_error(raw.put(f"/{BUCKET}/v2.zip", content=b"x", headers=headers))["Code"] == "SignatureDoesNotMatch"


def test_the_raw_content_type_is_signed_not_what_a_wsgi_server_fills_in(emu: Emulator) -> None:
    """wsgiref sets CONTENT_TYPE = "text/plain" when a request has none; the StringToSign must use the real one."""
    request = httpx.Request("PUT", f"http://127.0.0.1/{BUCKET}/k")
    ObsSigner(AK, SK, clock=emu.clock).sign(request)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "PUT",
        "PATH_INFO": f"/{BUCKET}/k",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "text/plain",  # invented by the server
        "fgsync.raw_headers": list(request.headers.items()),
    }
    principal = verify(environ, bucket=BUCKET, key="k", virtual_host=False, keys=emu.obs_keys, now=emu.clock())
    assert principal.ak == AK and not principal.temporary


def test_virtual_host_style_requests_name_the_bucket_in_the_host(emu: Emulator) -> None:
    signer = ObsSigner(AK, SK, bucket=BUCKET, clock=emu.clock)
    transport = httpx.WSGITransport(app=emu.wsgi_app)
    with httpx.Client(transport=transport, base_url=f"http://{BUCKET}.localhost:8808", auth=signer) as client:
        assert client.put("/v2/not-an-api.zip", content=b"x").status_code == 200
        assert client.get("/v2/not-an-api.zip").content == b"x"
    assert [o.key for o in emu.objects(BUCKET)] == ["v2/not-an-api.zip"]


def test_injected_faults_answer_obs_errors(emu: Emulator) -> None:
    emu.inject("obs_put", status=503)
    emu.inject("obs_head", status=403, code="AccessDenied", message="no permission")
    with obs_client(emu) as client:
        answer = client.put(f"/{BUCKET}/k", content=b"x")
        assert answer.status_code == 503 and xml_error(answer)["Code"] == "ServiceUnavailable"
        assert client.put(f"/{BUCKET}/k", content=b"x").status_code == 200
        head = client.head(f"/{BUCKET}/k")
        assert head.status_code == 403 and head.headers["x-obs-error-code"] == "AccessDenied"
    assert emu.calls("obs_put") == 2


# ------------------------------------------------------------------ IAM temporary credentials


def securitytokens(client: httpx.Client, token: str = TOKEN, duration: Optional[int] = None) -> httpx.Response:
    options = {} if duration is None else {"duration_seconds": duration}
    body = {"auth": {"identity": {"methods": ["token"], "token": options}}}
    return client.post("/v3.0/OS-CREDENTIAL/securitytokens", json=body, headers={"X-Auth-Token": token})


def test_temporary_keys_work_until_they_expire_and_need_their_token(emu: Emulator) -> None:
    clock = emu.clock
    assert isinstance(clock, FakeClock)
    raw = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://127.0.0.1")
    answer = securitytokens(raw)
    assert answer.status_code == 201
    credential = answer.json()["credential"]
    assert set(credential) == {"access", "secret", "securitytoken", "expires_at"}
    assert credential["expires_at"].endswith("Z") and emu.calls("iam_securitytokens") == 1
    ak, sk, token = credential["access"], credential["secret"], credential["securitytoken"]
    with obs_client(emu, ak=ak, sk=sk, token=token) as client:
        assert client.put(f"/{BUCKET}/t", content=b"x").status_code == 200
    with obs_client(emu, ak=ak, sk=sk) as client:  # the token left out
        assert xml_error(client.get(f"/{BUCKET}/t"))["Message"] == "The security token is invalid."
    with obs_client(emu, ak=ak, sk=sk, token=token[:-4] + "AAAA") as client:
        assert xml_error(client.get(f"/{BUCKET}/t"))["Code"] == "InvalidAccessKeyId"
    with obs_client(emu, token=token) as client:  # a token with the permanent key
        assert xml_error(client.get(f"/{BUCKET}/t"))["Code"] == "InvalidAccessKeyId"
    clock.advance(899)
    with obs_client(emu, ak=ak, sk=sk, token=token) as client:
        assert client.get(f"/{BUCKET}/t").status_code == 200
        clock.advance(1)
        assert xml_error(client.get(f"/{BUCKET}/t"))["Message"] == "The security token is invalid."


def test_securitytokens_refuses_bad_tokens_and_bodies(emu: Emulator) -> None:
    raw = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://127.0.0.1")
    assert securitytokens(raw, token="MIIwrong").status_code == 401
    assert securitytokens(raw, duration=899).status_code == 400
    assert securitytokens(raw, duration=86401).status_code == 400
    assert securitytokens(raw, duration=86400).status_code == 201
    password = {"auth": {"identity": {"methods": ["password"]}}}
    answer = raw.post("/v3.0/OS-CREDENTIAL/securitytokens", json=password, headers={"X-Auth-Token": TOKEN})
    assert answer.status_code == 400 and "error" in answer.json()
    emu.expire_tokens()
    assert securitytokens(raw).status_code == 401
    assert emu.stats()["obs"]["temporary_keys"] == 1


# ------------------------------------------------------------------ persistence and control


def test_objects_survive_a_restart_with_data_dir_as_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = make_emulator(data_dir=tmp_path, buckets=[BUCKET, "empty-bucket"])
    first.put_object(BUCKET, "a/b.zip", b"PK-one", content_type="application/zip")
    first.put_object(BUCKET, "c.zip", b"PK-two")
    first.put_object(BUCKET, "gone.zip", b"PK-three")
    with obs_client(first) as client:
        assert client.delete(f"/{BUCKET}/gone.zip").status_code == 204
    files = sorted(p.name for p in (tmp_path / "obs" / BUCKET / "objects").iterdir())
    assert files == sorted(hashlib.sha256(k.encode()).hexdigest() for k in ("a/b.zip", "c.zip"))
    assert (tmp_path / "obs" / BUCKET / "objects" / hashlib.sha256(b"c.zip").hexdigest()).read_bytes() == b"PK-two"
    index = json.loads((tmp_path / "obs" / BUCKET / "index.json").read_text())
    assert sorted(index["objects"]) == ["a/b.zip", "c.zip"]
    (tmp_path / "obs" / BUCKET / "objects" / hashlib.sha256(b"c.zip").hexdigest()).write_bytes(b"damaged")
    with caplog.at_level(logging.WARNING):
        second = make_emulator(data_dir=tmp_path)
    assert second.buckets() == ["empty-bucket", BUCKET]
    assert [(o.key, o.data, o.content_type) for o in second.objects(BUCKET)] == [
        ("a/b.zip", b"PK-one", "application/zip")
    ]
    assert "do not match its ETag" in caplog.text


def test_the_control_api_creates_buckets_and_stats_show_them(emu: Emulator) -> None:
    raw = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://127.0.0.1")
    assert raw.put("/_emulator/buckets/made-by-control").status_code == 201
    assert raw.put("/_emulator/buckets/made-by-control").status_code == 200
    assert raw.put("/_emulator/buckets/Bad_Name").status_code == 400
    emu.put_object("made-by-control", "k", b"1234")
    stats = raw.get("/_emulator/stats").json()
    assert stats["obs"]["buckets"]["made-by-control"] == {"objects": 1, "bytes": 4}
    assert stats["calls"]["obs_put"] == 0  # the Python API is not a call


def test_the_store_refuses_what_obs_refuses(tmp_path: Path) -> None:
    store = ObjectStore(None, clock=lambda: 0.0)
    for bad in ("ab", "-ab", "ab-", "a..b", "192.168.1.1", "_emulator", "x" * 64):
        with pytest.raises(ValueError):
            store.create_bucket(bad)
    with pytest.raises(KeyError):
        store.put("nope", "k", b"")


# ------------------------------------------------------------------ esdk-obs-python against the emulator


@pytest.fixture
def served() -> Iterator[EmulatorServer]:
    emulator = make_emulator(buckets=[BUCKET])
    with serve(emulator) as server:
        yield server
    emulator.close()


def _sdk(server: EmulatorServer, **kwargs: Any) -> Any:
    from obs import ObsClient

    return ObsClient(server=server.url, path_style=True, **kwargs)


@sdk_warnings
@pytest.mark.parametrize("mode", ["workflow", "obs"], ids=["obs-signature", "aws-v2-signature"])
def test_esdk_obs_python_puts_gets_heads_lists_and_deletes(
    served: EmulatorServer, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    client = _sdk(served, access_key_id=AK, secret_access_key=SK, client_mode=mode)
    assert client.signature == ("obs" if mode == "workflow" else "v2")
    key = "fgsync/default/hello/ü b+c.zip"
    data = b"PK" + bytes(range(256)) * 64
    try:
        put = client.putContent(BUCKET, key, data)
        assert put.status == 200, (put.errorCode, put.errorMessage)
        assert put.body.etag.strip('"') == hashlib.md5(data).hexdigest()
        got = client.getObject(BUCKET, key, loadStreamInMemory=True)
        assert got.status == 200 and got.body.buffer == data
        head = client.getObjectMetadata(BUCKET, key)
        assert head.status == 200 and int(head.body.contentLength) == len(data)
        listed = client.listObjects(BUCKET, prefix="fgsync/")
        assert listed.status == 200 and [c.key for c in listed.body.contents] == [key]
        assert client.deleteObject(BUCKET, key).status == 204
        missing = client.getObjectMetadata(BUCKET, key)
        assert missing.status == 404
        nobucket = client.putContent("no-such-bucket", key, data)
        assert (nobucket.status, nobucket.errorCode) == (404, "NoSuchBucket")
    finally:
        client.close()
    assert list(tmp_path.iterdir()) == []  # the SDK wrote nothing into the working folder


@sdk_warnings
def test_esdk_obs_python_with_temporary_keys_and_with_a_wrong_sk(
    served: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with httpx.Client(base_url=served.url) as raw:
        credential = securitytokens(raw).json()["credential"]
    client = _sdk(
        served,
        access_key_id=credential["access"],
        secret_access_key=credential["secret"],
        security_token=credential["securitytoken"],
        client_mode="workflow",
    )
    wrong = _sdk(served, access_key_id=AK, secret_access_key="not-the-secret", client_mode="workflow")
    try:
        assert client.putContent(BUCKET, "temp.zip", b"PK-temp").status == 200
        assert client.getObject(BUCKET, "temp.zip", loadStreamInMemory=True).body.buffer == b"PK-temp"
        assert client.deleteObject(BUCKET, "temp.zip").status == 204
        refused = wrong.putContent(BUCKET, "x.zip", b"PK")
        assert (refused.status, refused.errorCode) == (403, "SignatureDoesNotMatch")
    finally:
        client.close()
        wrong.close()
    assert served.emulator.objects(BUCKET) == []


# ------------------------------------------------------------------ code_type obs, depend_type obs


def fg_client(emu: Emulator) -> httpx.Client:
    transport = httpx.WSGITransport(app=emu.wsgi_app)
    return httpx.Client(transport=transport, base_url="http://127.0.0.1:8808", headers={"X-Auth-Token": TOKEN})


def obs_code_body(url: str, **extra: Any) -> dict[str, Any]:
    return {"code_type": "obs", "code_url": url, "func_code": {}, **extra}


def test_update_code_from_obs_sets_digest_code_type_and_code_url(emu: Emulator) -> None:
    from test_emulator import BASE, HELLO, zip_bytes

    emu.create_function("hello")
    package = zip_bytes({"index.py": HELLO})
    emu.put_object(BUCKET, "fgsync/default/hello/pkg v1.zip", package)
    url = f"http://127.0.0.1:8808/{BUCKET}/fgsync/default/hello/pkg%20v1.zip"
    with fg_client(emu) as client:
        answer = client.put(f"{BASE}/hello/code", json=obs_code_body(url))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["digest"] == hashlib.sha512(package).hexdigest() and body["code_size"] == len(package)
        assert (body["code_type"], body["code_url"], body["code_filename"]) == ("obs", url, "pkg v1.zip")
        shown = client.get(f"{BASE}/hello/code").json()
        assert (shown["code_type"], shown["code_url"], shown["digest"]) == ("obs", url, body["digest"])
        assert client.get(f"{BASE}/hello/config").json()["code_url"] == url
        invoked = client.post(f"{BASE}/hello/invocations", json={"name": "obs"})
        assert json.loads(invoked.json()["result"]) == {"hello": "obs"}
        # virtual-host style, as fgsync sends it for real OBS, resolves against the emulator's buckets too
        vhost = f"https://{BUCKET}.obs.cn-north-4.myhuaweicloud.com/fgsync/default/hello/pkg%20v1.zip"
        assert client.put(f"{BASE}/hello/code", json=obs_code_body(vhost)).json()["code_url"] == vhost
        # a zip upload afterwards is zip again, without a code_url
        zipped = {
            "code_type": "zip",
            "code_filename": "index.zip",
            "func_code": {"file": base64.b64encode(package).decode()},
        }
        assert client.put(f"{BASE}/hello/code", json=zipped).json()["code_url"] == ""
    assert emu.uploads("hello") == 3


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        (f"http://127.0.0.1:8808/{BUCKET}/missing.zip", 404, "FSS.1054"),
        ("http://127.0.0.1:8808/no-such-bucket/missing.zip", 404, "FSS.1054"),
        (f"https://{BUCKET}.obs.cn-north-4.myhuaweicloud.com/missing.zip", 404, "FSS.1054"),
        (f"https://{BUCKET}.obs.eu-west-0.myhuaweicloud.com/ok.zip", 400, "FSS.1010"),
        ("ftp://example.com/ok.zip", 400, "FSS.1010"),
        (f"http://127.0.0.1:8808/{BUCKET}/not-a-zip.bin", 400, "FSS.1013"),
        (None, 400, "FSS.0400"),
    ],
)
def test_update_code_from_obs_refuses_what_the_service_refuses(
    emu: Emulator, url: Optional[str], status: int, code: str
) -> None:
    from test_emulator import BASE, error_of, zip_bytes

    emu.create_function("hello")
    emu.put_object(BUCKET, "ok.zip", zip_bytes({"index.py": ""}))
    emu.put_object(BUCKET, "not-a-zip.bin", b"plain bytes")
    before = emu.function("hello").digest
    body = {"code_type": "obs", "func_code": {}} if url is None else obs_code_body(url)
    with fg_client(emu) as client:
        assert error_of(client.put(f"{BASE}/hello/code", json=body)) == (status, code)
    assert emu.function("hello").digest == before


def test_obs_code_limits_300_mb_zipped_and_1_5_gb_unzipped(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_emulator import BASE, error_of, zip_bytes

    from fgsync.emulator import obs

    assert obs.MAX_OBS_CODE_BYTES == 314_572_800 and obs.MAX_UNZIPPED_CODE_BYTES == 1_610_612_736
    emu.create_function("hello")
    package = zip_bytes({"index.py": "x" * 5000})
    emu.put_object(BUCKET, "p.zip", package)
    url = f"http://127.0.0.1:8808/{BUCKET}/p.zip"
    with fg_client(emu) as client:
        monkeypatch.setattr(obs, "MAX_UNZIPPED_CODE_BYTES", 4999)
        assert error_of(client.put(f"{BASE}/hello/code", json=obs_code_body(url))) == (400, "FSS.1011")
        monkeypatch.setattr(obs, "MAX_OBS_CODE_BYTES", len(package) - 1)
        assert error_of(client.put(f"{BASE}/hello/code", json=obs_code_body(url))) == (413, "FSS.1071")


def test_create_function_and_dependency_versions_from_obs(emu: Emulator) -> None:
    from test_emulator import BASE, HELLO, error_of, zip_bytes

    code = zip_bytes({"index.py": HELLO})
    lib = zip_bytes({"lib.py": "VALUE = 1\n"})
    emu.put_object(BUCKET, "code.zip", code)
    emu.put_object(BUCKET, "deps/lib.zip", lib)
    create = {
        "func_name": "fromobs",
        "package": "default",
        "runtime": "Python3.9",
        "handler": "index.handler",
        "memory_size": 128,
        "timeout": 3,
        "code_type": "obs",
        "code_url": f"http://127.0.0.1/{BUCKET}/code.zip",
    }
    deps = f"/v2/{emu.project_id}/fgs/dependencies/version"
    with fg_client(emu) as client:
        created = client.post(BASE, json=create)
        assert created.status_code == 200, created.text
        assert created.json()["code_type"] == "obs" and created.json()["digest"] == hashlib.sha512(code).hexdigest()
        version = client.post(
            deps,
            json={
                "depend_type": "obs",
                "depend_link": f"http://127.0.0.1/{BUCKET}/deps/lib.zip",
                "runtime": "Python3.9",
                "name": "libs",
            },
        )
        assert version.status_code == 200, version.text
        assert emu.dependency_version(version.json()["id"]).data == lib
        missing = {
            "depend_type": "obs",
            "depend_link": f"http://127.0.0.1/{BUCKET}/none.zip",
            "runtime": "Python3.9",
            "name": "libs",
        }
        assert error_of(client.post(deps, json=missing)) == (404, "FSS.1054")
