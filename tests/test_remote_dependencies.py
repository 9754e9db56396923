"""The client's dependency calls: the service's dependency errors as typed errors with hints; the five calls
against the real emulator over loopback with token and AK/SK auth (paging, exact names, retries, lost answers,
the deadline, the 12 MB signed-body limit); the wire models; and the official SDK reading what fgsync made."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import AK, PROJECT_ID, REGION, SK, TOKEN
from test_api import TokenAuth
from test_emulator import HELLO, zip_bytes
from test_emulator_sdk import REAL_HOME_SDK_DIR

from fgsync.auth.signer import SdkHmacSigner, SignedRequestTooLargeError
from fgsync.emulator import ROUTES
from fgsync.errors import ApiError, DependencyInUseError, DependencyNotFoundError, NetworkError
from fgsync.remote import (
    DependencyVersion,
    FunctionGraphClient,
    RetryPolicy,
    dependency_description,
    description_sha256,
    error_from_response,
    network_error,
)
from fgsync.remote.models import parse_dependency_summary, parse_dependency_version

NAME = "fgsync-default-hello"
URN = f"urn:fss:{REGION}:{PROJECT_ID}:function:default:hello:latest"
DEPS = f"/v2/{PROJECT_ID}/fgs/dependencies"
TOKEN_HEADER = {"X-Auth-Token": TOKEN}


def answer(status: int, code: str, message: str = "refused") -> httpx.Response:
    request = httpx.Request("DELETE", "https://functiongraph.example/v2/p/fgs/dependencies/d/version/1")
    body: dict[str, Any] = {"error_code": code, "error_msg": message}
    return httpx.Response(status, json=body, headers={"X-Request-Id": "req-7"}, request=request)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("code", ["FSS.1033", "FGS.1033", "fss.1033"])
def test_in_use_is_its_own_error_class_whatever_the_prefix(code: str) -> None:
    error = error_from_response(answer(412, code, "The dependency is currently in use"))
    assert type(error) is DependencyInUseError and not error.retryable
    assert (error.status, error.code, error.request_id) == (412, code, "req-7")
    assert error.error_msg == "The dependency is currently in use"
    assert "depend_version_list" in error.message and error.message.startswith("The dependency is currently in use")
    assert "depend_version_list" not in str(error)  # the hint is for users, not for log lines


def test_no_such_dependency_is_its_own_error_class() -> None:
    error = error_from_response(answer(404, "FSS.1056", "The dependency does not exist"))
    assert type(error) is DependencyNotFoundError and error.code == "FSS.1056"
    assert "deleted" in error.message


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (403, "FSS.1045", "a function takes at most 20 dependencies"),
        (400, "FSS.1024", "30,000 files"),
        (400, "FSS.1032", "depend_type is `zip`"),
    ],
)
def test_dependency_codes_carry_a_hint(status: int, code: str, hint: str) -> None:
    error = error_from_response(answer(status, code, "the service's words"))
    assert type(error) is ApiError and error.code == code and error.status == status
    assert error.message == f"the service's words (HTTP {status}, request id req-7); {error.hint}"
    assert error.hint is not None and hint in error.hint


@pytest.mark.parametrize("code", ["FSS.1051", "APIGW.0301X", "HTTP.400", "FSS.10331", ""])
def test_other_codes_have_no_hint_and_no_dependency_class(code: str) -> None:
    error = error_from_response(answer(400, code))
    assert type(error) is ApiError and error.hint is None
    assert error.message == "refused (HTTP 400, request id req-7)"


def test_a_network_error_says_whether_the_request_can_have_reached_the_service() -> None:
    url = httpx.URL("https://functiongraph.example/v2")
    request = httpx.Request("POST", url)
    refused = network_error(httpx.ConnectError("[Errno 111] Connection refused", request=request), url)
    dropped = network_error(httpx.RemoteProtocolError("Server disconnected", request=request), url)
    assert isinstance(refused, NetworkError) and not refused.sent and refused.retryable
    assert isinstance(dropped, NetworkError) and dropped.sent and dropped.retryable


# ----------------------------------------------------------------------------- the five calls, over loopback


@pytest.fixture(params=["token", "aksk"])
def auth(request: pytest.FixtureRequest) -> httpx.Auth:
    return TokenAuth(TOKEN) if request.param == "token" else SdkHmacSigner(AK, SK, PROJECT_ID)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(emulator: Any, auth: httpx.Auth, sleeps: list[float]) -> Iterator[FunctionGraphClient]:
    """A client of the loopback emulator, with token or AK/SK auth; its retry waits are recorded, not slept."""
    with FunctionGraphClient(emulator.url, PROJECT_ID, auth=auth, sleep=sleeps.append, rng=lambda: 1.0) as made:
        yield made


def publish(client: FunctionGraphClient, files: dict[str, str], *, name: str = NAME, **kwargs: Any) -> Any:
    data = zip_bytes(files)
    description = kwargs.pop("description", dependency_description(hashlib.sha256(data).hexdigest()))
    return client.create_dependency_version(
        name=name, runtime=kwargs.pop("runtime", "Python3.9"), data=data, description=description, **kwargs
    )


def test_create_show_list_and_find(client: FunctionGraphClient, emulator: Any) -> None:
    emu = emulator.emulator
    data = zip_bytes({"greeting.py": "TEXT = 'hi'\n"})
    sha = hashlib.sha256(data).hexdigest()
    first = client.create_dependency_version(
        name=NAME, runtime="Python3.9", data=data, description=dependency_description(sha)
    )
    assert (first.version, first.name, first.runtime, first.size) == (1, NAME, "Python3.9", len(data))
    assert first.sha256 == sha and first.description == f"fgsync sha256={sha}"
    assert first.file_name == f"{NAME}.zip" and first.etag and first.link and first.download_link == ""
    assert isinstance(first.last_modified, int) and abs(first.last_modified - time.time()) < 60
    assert emu.dependency_version(first.id).data == data

    second = publish(client, {"greeting.py": "TEXT = 'hello'\n"}, description="made by hand")
    assert second.version == 2 and second.dep_id == first.dep_id and second.id != first.id
    assert second.sha256 is None

    shown = client.show_dependency_version(first.dep_id, 1)
    assert (shown.id, shown.version, shown.sha256) == (first.id, 1, sha)
    assert shown.download_link.startswith(emulator.url) and httpx.get(shown.download_link).content == data

    versions = client.list_dependency_versions(first.dep_id)
    assert versions == [first, second]  # the same fields, whichever call answered them

    found = client.find_dependency(NAME)
    assert found is not None and (found.id, found.name, found.version) == (first.dep_id, NAME, 2)
    assert found.runtime == "Python3.9" and found.description == "made by hand"
    assert client.list_dependencies() == [found]
    assert client.find_dependency("fgsync-default") is None  # a part of the name is not the name


def test_listings_follow_next_marker_to_the_end(client: FunctionGraphClient, emulator: Any) -> None:
    emu = emulator.emulator
    for i in range(5):
        emu.create_dependency_version(f"libs-{i}", zip_bytes({f"m{i}.py": ""}))
    for i in range(5):
        emu.create_dependency_version("many", zip_bytes({"m.py": f"V = {i}\n"}))

    listed = client.list_dependencies(page_size=2)
    assert [d.name for d in listed] == ["libs-0", "libs-1", "libs-2", "libs-3", "libs-4", "many"]
    assert emu.calls("list_dependencies") == 3  # 2 + 2 + 2, and the last page reaches count
    many = listed[-1]
    assert many.version == 5

    versions = client.list_dependency_versions(many.id, page_size=2)
    assert [v.version for v in versions] == [1, 2, 3, 4, 5] and {v.dep_id for v in versions} == {many.id}
    assert emu.calls("list_dependency_versions") == 3
    assert len(client.list_dependency_versions(many.id)) == 5  # one page of 100
    assert emu.calls("list_dependency_versions") == 4
    with pytest.raises(ValueError, match="page_size"):
        client.list_dependencies(page_size=0)


def test_names_are_compared_exactly_though_the_service_matches_parts(
    client: FunctionGraphClient, emulator: Any
) -> None:
    emu = emulator.emulator
    made = {n: emu.create_dependency_version(n, zip_bytes({"a.py": ""})) for n in ("libs", "libs-extra", "my-libs")}
    node = emu.create_dependency_version(
        "node-libs", zip_bytes({"node_modules/a/index.js": ""}), runtime="Node.js18.15"
    )
    assert (
        len(httpx.get(f"{emulator.url}{DEPS}", params={"name": "libs"}, headers=TOKEN_HEADER).json()["dependencies"])
        == 4
    )

    assert [d.name for d in client.list_dependencies(name="libs")] == ["libs"]
    found = client.find_dependency("libs")
    assert found is not None and found.id == made["libs"].dep_id
    assert client.find_dependency("ibs") is None and client.find_dependency("libs-") is None
    assert [d.id for d in client.list_dependencies(runtime="Node.js18.15")] == [node.dep_id]
    assert client.list_dependencies(name="libs", runtime="Node.js18.15") == []
    assert client.list_dependencies(dependency_type="public") == []


def test_an_attached_version_is_kept_with_dependency_in_use_error(
    client: FunctionGraphClient, emulator: Any, sleeps: list[float]
) -> None:
    emu = emulator.emulator
    emu.create_function("hello", code=zip_bytes({"index.py": HELLO}))
    first = publish(client, {"greeting.py": "TEXT = 1\n"})
    second = publish(client, {"greeting.py": "TEXT = 2\n"})
    code = zip_bytes({"index.py": HELLO})
    pushed = client.update_code(
        URN, code_type="zip", code_filename="index.zip", data=code, depend_version_list=[first.id]
    )
    assert pushed.depend_version_list == (first.id,)

    with pytest.raises(DependencyInUseError) as in_use:
        client.delete_dependency_version(first.dep_id, 1)
    assert (in_use.value.status, in_use.value.code) == (412, "FSS.1033")
    assert "version 1 stays" in in_use.value.message and "in use" in in_use.value.error_msg

    client.delete_dependency_version(second.dep_id, 2)  # not attached: 204
    assert [v.version for v in emu.dependency_versions(NAME)] == [1]
    with pytest.raises(DependencyNotFoundError) as gone:
        client.delete_dependency_version(second.dep_id, 2)
    assert (gone.value.status, gone.value.code) == (404, "FSS.1056") and "deleted" in gone.value.message
    with pytest.raises(DependencyNotFoundError):
        client.show_dependency_version(second.dep_id, 2)
    with pytest.raises(DependencyNotFoundError):
        client.list_dependency_versions("no-such-dependency")
    with pytest.raises(DependencyNotFoundError):  # an update naming a version that is gone
        client.update_code(URN, code_type="zip", code_filename="index.zip", data=code, depend_version_list=[second.id])

    client.update_code(URN, code_type="zip", code_filename="index.zip", data=code, depend_version_list=[])
    client.delete_dependency_version(first.dep_id, 1)
    assert client.find_dependency(NAME) is None  # the dependency went with its last version
    assert sleeps == []  # refusals are not retried


def test_more_than_20_dependencies_is_refused_with_the_limit(client: FunctionGraphClient, emulator: Any) -> None:
    emu = emulator.emulator
    emu.create_function("hello")
    ids = [emu.create_dependency_version(f"d{i}", zip_bytes({f"d{i}.py": ""})).id for i in range(21)]
    code = zip_bytes({"index.py": HELLO})
    with pytest.raises(ApiError) as refused:
        client.update_code(URN, code_type="zip", code_filename="index.zip", data=code, depend_version_list=ids)
    assert (refused.value.status, refused.value.code) == (403, "FSS.1045")
    assert "a function takes at most 20 dependencies" in refused.value.message
    assert client.update_code(
        URN, code_type="zip", code_filename="index.zip", data=code, depend_version_list=ids[:20]
    ).depend_version_list == tuple(ids[:20])


def test_what_the_service_refuses_on_create_says_why(client: FunctionGraphClient, emulator: Any) -> None:
    with pytest.raises(ApiError) as not_zip:
        client.create_dependency_version(name=NAME, runtime="Python3.9", data=b"not a zip")
    error = not_zip.value
    assert (error.status, error.code) == (400, "FSS.1024") and "not a valid zip" in error.error_msg
    assert f"refused the package of dependency {NAME} (9 bytes zipped)" in error.message
    assert "30,000 files" in error.message

    with pytest.raises(ApiError) as bad_type:
        client.create_dependency_version(name=NAME, runtime="Python3.9", depend_type="tar", depend_link="x.tar")
    assert bad_type.value.code == "FSS.1032" and "depend_type is `zip`" in bad_type.value.message
    with pytest.raises(ApiError) as bad_name:
        publish(client, {"a.py": ""}, name="-starts-badly")
    assert bad_name.value.code == "FSS.0400" and bad_name.value.hint is None
    assert emulator.emulator.dependency_versions(NAME) == []


def test_requests_that_cannot_be_right_are_never_sent(client: FunctionGraphClient, emulator: Any) -> None:
    with pytest.raises(ValueError, match="empty dependency package"):
        client.create_dependency_version(name=NAME, runtime="Python3.9", data=b"")
    with pytest.raises(ValueError, match="depend_link is for depend_type obs"):
        client.create_dependency_version(name=NAME, runtime="Python3.9", data=b"PK", depend_link="https://x")
    with pytest.raises(ValueError, match="takes depend_link"):
        client.create_dependency_version(name=NAME, runtime="Python3.9", depend_type="obs")
    with pytest.raises(ValueError, match="takes depend_link"):
        client.create_dependency_version(
            name=NAME, runtime="Python3.9", data=b"PK", depend_type="obs", depend_link="https://x"
        )
    for bad in (0, -1, True, "1"):
        with pytest.raises(ValueError, match="integer from 1"):
            client.show_dependency_version("d", bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="integer from 1"):
            client.delete_dependency_version("d", bad)  # type: ignore[arg-type]
    assert all(emulator.emulator.calls(route) == 0 for route in ROUTES if "dependenc" in route)


def test_transient_failures_are_retried(client: FunctionGraphClient, emulator: Any, sleeps: list[float]) -> None:
    emu = emulator.emulator
    emu.inject("create_dependency_version", status=503, times=2)
    made = publish(client, {"a.py": ""})
    assert made.version == 1 and sleeps == [0.5, 1.0] and emu.calls("create_dependency_version") == 3
    assert emu.calls("list_dependencies") == 0  # a 503 says nothing was made: no need to look
    assert [v.version for v in emu.dependency_versions(NAME)] == [1]

    sleeps.clear()
    emu.inject("list_dependencies", status=429, retry_after=2)
    emu.inject("list_dependency_versions", status=502)
    emu.inject("show_dependency_version", drop=True)
    emu.inject("delete_dependency_version", status=504)
    assert client.find_dependency(NAME) is not None
    assert [v.id for v in client.list_dependency_versions(made.dep_id)] == [made.id]
    assert client.show_dependency_version(made.dep_id, 1).id == made.id
    client.delete_dependency_version(made.dep_id, 1)
    assert sleeps == [2.0, 0.5, 0.5, 0.5] and emu.dependency_versions(NAME) == []


def test_a_lost_answer_does_not_publish_the_same_package_twice(
    client: FunctionGraphClient, emulator: Any, sleeps: list[float]
) -> None:
    emu = emulator.emulator
    emu.inject("create_dependency_version", drop_after=True)  # the version is made, then the answer is lost
    made = publish(client, {"a.py": "A = 1\n"})
    assert made.version == 1 and made.sha256 is not None
    assert [v.id for v in emu.dependency_versions(NAME)] == [made.id]
    assert emu.calls("create_dependency_version") == 1 and sleeps == []

    # A 500 that made nothing: the look finds no version with this hash, so the request is sent again.
    emu.inject("create_dependency_version", status=500)
    again = publish(client, {"a.py": "A = 2\n"})
    assert again.version == 2 and sleeps == [0.5] and emu.calls("create_dependency_version") == 3

    # A description without fgsync's hash says nothing about the content: a plain retry, which may double it.
    emu.inject("create_dependency_version", drop_after=True)
    plain = publish(client, {"a.py": "A = 3\n"}, description="by hand")
    assert plain.version == 4 and [v.version for v in emu.dependency_versions(NAME)] == [1, 2, 3, 4]


def test_the_last_try_also_looks_for_what_it_made(emulator: Any) -> None:
    emu = emulator.emulator
    emu.inject("create_dependency_version", drop_after=True)
    with FunctionGraphClient(emulator.url, PROJECT_ID, auth=TokenAuth(TOKEN), retry=RetryPolicy(attempts=0)) as one:
        made = publish(one, {"a.py": ""})
    assert made.version == 1 and emu.calls("create_dependency_version") == 1


def test_every_dependency_call_has_the_request_deadline(emulator: Any) -> None:
    emu = emulator.emulator
    emu.inject("list_dependency_versions", delay=2)
    impatient = FunctionGraphClient(
        emulator.url, PROJECT_ID, auth=TokenAuth(TOKEN), timeout=0.5, retry=RetryPolicy(attempts=0)
    )
    started = time.monotonic()
    with (
        impatient,
        pytest.raises(NetworkError, match=r"no complete answer from 127\.0\.0\.1:\d+ within 0\.5 s") as late,
    ):
        impatient.list_dependency_versions("any")
    assert time.monotonic() - started < 1.8 and late.value.retryable


def test_aksk_refuses_a_dependency_over_the_signed_body_limit_before_sending(emulator: Any) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("blob.bin", os.urandom(9_700_000))  # ~12.9 MB of base64
    data = buffer.getvalue()
    emu = emulator.emulator
    signed = FunctionGraphClient(emulator.url, PROJECT_ID, auth=SdkHmacSigner(AK, SK, PROJECT_ID))
    with signed, pytest.raises(SignedRequestTooLargeError, match="token authentication"):
        signed.create_dependency_version(name=NAME, runtime="Python3.9", data=data)
    assert emu.calls("create_dependency_version") == 0
    with FunctionGraphClient(emulator.url, PROJECT_ID, auth=TokenAuth(TOKEN)) as by_token:
        made = by_token.create_dependency_version(name=NAME, runtime="Python3.9", data=data)
    assert made.size == len(data) and emu.dependency_version(made.id).data == data


def test_create_reports_upload_progress(client: FunctionGraphClient) -> None:
    seen: list[tuple[int, int]] = []
    data = zip_bytes({"big.txt": "x" * 100 + "".join(str(i) for i in range(200_000))})
    client.create_dependency_version(
        name=NAME, runtime="Python3.9", data=data, progress=lambda sent, total: seen.append((sent, total))
    )
    assert len(seen) > 1 and seen[-1][0] == seen[-1][1] > len(data)
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)


# ----------------------------------------------------------------------------- request shapes and paging


def mock_client(handler: Any) -> FunctionGraphClient:
    return FunctionGraphClient(
        "https://functiongraph.example",
        PROJECT_ID,
        auth=TokenAuth(TOKEN),
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )


def version_body(**overrides: Any) -> dict[str, Any]:
    body = {"id": "v-1", "dep_id": "d-1", "version": 1, "name": NAME, "runtime": "Python3.9", "last_modified": 1}
    body.update(overrides)
    return body


def test_create_sends_exactly_the_documented_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=version_body())

    data = b"PK\x05\x06" + bytes(range(256)) * 3
    description = dependency_description("ab" * 32)
    made = mock_client(handler).create_dependency_version(
        name=NAME, runtime="Node.js18.15", data=data, description=description
    )
    assert made.id == "v-1"
    (request,) = seen
    assert request.method == "POST" and request.url.path == f"{DEPS}/version"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "depend_type": "zip",
        "depend_file": base64.b64encode(data).decode(),
        "name": NAME,
        "runtime": "Node.js18.15",
        "description": description,
    }
    assert b"\n" not in request.content

    mock_client(handler).create_dependency_version(
        name=NAME, runtime="Python3.9", depend_type="obs", depend_link="https://b.obs.example/k.zip"
    )
    assert json.loads(seen[-1].content) == {
        "depend_type": "obs",
        "depend_link": "https://b.obs.example/k.zip",
        "name": NAME,
        "runtime": "Python3.9",
        "description": "",
    }


def test_listing_queries_and_paths() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET" and request.url.path.endswith("/version/3"):
            return httpx.Response(200, json=version_body(version=3))
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"dependencies": [], "next_marker": 0, "count": 0})

    client = mock_client(handler)
    client.list_dependencies(name="fgsync-a", runtime="Python3.9", page_size=7)
    assert dict(seen[-1].url.params) == {
        "dependency_type": "private",
        "name": "fgsync-a",
        "runtime": "Python3.9",
        "marker": "0",
        "maxitems": "7",
    }
    client.find_dependency("fgsync-a")
    assert dict(seen[-1].url.params) == {
        "dependency_type": "private",
        "name": "fgsync-a",
        "marker": "0",
        "maxitems": "100",
    }
    client.list_dependency_versions("a/b")
    assert seen[-1].url.raw_path.decode().split("?")[0] == f"{DEPS}/a%2Fb/version"
    assert client.show_dependency_version("d-1", 3).version == 3
    assert seen[-1].url.path == f"{DEPS}/d-1/version/3"
    assert client.delete_dependency_version("d-1", 3) is None
    assert (seen[-1].method, seen[-1].url.path) == ("DELETE", f"{DEPS}/d-1/version/3")


@pytest.mark.parametrize(
    ("pages", "ids", "requests"),
    [
        # terraform's reading of the last page: next_marker 0, no count
        (
            [
                {"dependencies": [{"id": "a"}, {"id": "b"}], "next_marker": 2},
                {"dependencies": [{"id": "c"}], "next_marker": 0},
            ],
            "abc",
            2,
        ),
        # a next_marker that does not move forward ends the listing
        ([{"dependencies": [{"id": "a"}], "next_marker": 0}], "a", 1),
        # no count: an empty page ends it
        (
            [{"dependencies": [{"id": "a"}, {"id": "b"}], "next_marker": 2}, {"dependencies": [], "next_marker": 2}],
            "ab",
            2,
        ),
        # count as a string; entries without an id, or not objects, are skipped
        ([{"dependencies": [{"id": "a"}, {"name": "x"}, "junk", None], "next_marker": "4", "count": "4"}], "a", 1),
        # no dependencies key at all
        ([{}], "", 1),
    ],
)
def test_paging_ends_whatever_shape_the_last_page_has(pages: list[dict[str, Any]], ids: str, requests: int) -> None:
    answers = iter(pages)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=next(answers))

    assert "".join(v.id for v in mock_client(handler).list_dependency_versions("d")) == ids
    assert len(seen) == requests
    assert [r.url.params["marker"] for r in seen] == ["0", "2"][:requests]


def test_answers_without_a_version_id_or_json_are_errors() -> None:
    client = mock_client(lambda r: httpx.Response(200, json={"version": 1}))
    with pytest.raises(ApiError, match="CreateDependencyVersion answered without a version id"):
        client.create_dependency_version(name=NAME, runtime="Python3.9", data=b"PK")
    with pytest.raises(ApiError, match="ShowDependencyVersion answered without a version id"):
        client.show_dependency_version("d", 1)
    page = mock_client(lambda r: httpx.Response(200, text="<html><title>Portal</title></html>"))
    with pytest.raises(ApiError, match='ListDependencies answered with an HTML page \\("Portal"\\)'):
        page.list_dependencies()


# ----------------------------------------------------------------------------- models


def test_versions_parse_leniently() -> None:
    empty = parse_dependency_version({})
    assert empty == DependencyVersion(
        id="", dep_id="", version=0, name="", runtime="", description="", size=0, etag="", link="", file_name="",
        last_modified=0,
    )  # fmt: skip
    odd = parse_dependency_version(
        {"id": ["x"], "version": "3", "size": 12.0, "last_modified": 1_700_000_000_123, "description": None, "name": 5}
    )
    assert (odd.id, odd.version, odd.size, odd.last_modified, odd.description, odd.name) == (
        "", 3, 12, 1_700_000_000, "", "5"
    )  # fmt: skip
    assert parse_dependency_version({"version": True, "size": "big", "last_modified": float("nan")}).size == 0
    summary = parse_dependency_summary({"id": "d", "name": "n", "version": 2, "owner": "me", "last_modified": "17"})
    assert (summary.id, summary.version, summary.owner, summary.last_modified) == ("d", 2, "me", 17)
    assert summary.raw == {"id": "d", "name": "n", "version": 2, "owner": "me", "last_modified": "17"}


def test_the_description_carries_the_sha256() -> None:
    sha = "AB" * 32
    assert dependency_description(sha) == "fgsync sha256=" + "ab" * 32
    assert description_sha256(dependency_description(sha)) == "ab" * 32
    assert description_sha256(f"notes; fgsync sha256={'cd' * 32}\n") == "cd" * 32
    for other in ("", "fgsync sha256=abc", "xfgsync sha256=" + "a" * 64, "fgsync sha256=" + "a" * 65, "made by hand"):
        assert description_sha256(other) is None, other
    with pytest.raises(ValueError, match="SHA-256"):
        dependency_description("xyz")


# ----------------------------------------------------------------------------- functions' dependencies


def test_code_and_config_answer_the_attached_dependencies(client: FunctionGraphClient, emulator: Any) -> None:
    emu = emulator.emulator
    emu.create_function("hello", code=zip_bytes({"index.py": HELLO}))
    theirs = emu.create_dependency_version("users-own", zip_bytes({"own.py": ""}))
    mine = publish(client, {"greeting.py": "TEXT = 1\n"})
    code = zip_bytes({"index.py": HELLO + "# v2\n"})
    pushed = client.update_code(
        URN, code_type="zip", code_filename="index.zip", data=code, depend_version_list=[theirs.id, mine.id]
    )
    config = client.show_config(URN)
    for remote in (pushed, client.show_code(URN), config):
        assert remote.depend_version_list == (theirs.id, mine.id)
        described = [(d.id, d.dep_id, d.name, d.version) for d in remote.dependencies]
        assert described == [(theirs.id, theirs.dep_id, "users-own", 1), (mine.id, mine.dep_id, NAME, 1)]
        assert remote.dependencies[1].sha256 == mine.sha256 is not None
    assert config.runtime == "Python3.9"


def test_missing_or_odd_dependency_fields_of_a_function_are_empty() -> None:
    body = {"func_urn": URN, "runtime": "Python3.9", "digest": "ab" * 64, "depend_version_list": None}
    client = mock_client(lambda r: httpx.Response(200, json={**body, "dependencies": "junk"}))
    for remote in (client.show_code(URN), client.show_config(URN)):
        assert remote.depend_version_list == () and remote.dependencies == ()
    listed = mock_client(lambda r: httpx.Response(200, json={**body, "dependencies": [version_body(), 3]}))
    assert [d.id for d in listed.show_config(URN).dependencies] == ["v-1"]


# ----------------------------------------------------------------------------- the official SDK


# python-dateutil is not installed: the SDK warns and keeps last_modified as the value the emulator sent.
@pytest.mark.filterwarnings("ignore::ImportWarning")
def test_the_official_sdk_reads_the_dependencies_fgsync_made_and_attached(emulator: Any) -> None:
    existed = REAL_HOME_SDK_DIR.exists()
    assert Path.home() != REAL_HOME_SDK_DIR.parent  # the SDK writes ~/.huaweicloud when imported
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkfunctiongraph.v2 import FunctionGraphClient as SdkClient
    from huaweicloudsdkfunctiongraph.v2 import model as m

    emu = emulator.emulator
    emu.create_function("hello", code=zip_bytes({"index.py": HELLO}))
    with FunctionGraphClient(emulator.url, PROJECT_ID, auth=SdkHmacSigner(AK, SK, PROJECT_ID)) as client:
        made = [publish(client, {"greeting.py": f"TEXT = {i}\n"}) for i in range(3)]
        handler = "import greeting\n\n\ndef handler(event, context):\n    return {'text': greeting.TEXT}\n"
        code = zip_bytes({"index.py": handler})
        client.update_code(URN, code_type="zip", code_filename="index.zip", data=code, depend_version_list=[made[2].id])

    sdk = (
        SdkClient.new_builder()
        .with_credentials(BasicCredentials(AK, SK, PROJECT_ID))
        .with_endpoints([emulator.url])
        .build()
    )
    listed = sdk.list_dependencies(m.ListDependenciesRequest(dependency_type="private", name=NAME))
    assert [(d.id, d.name, d.version) for d in listed.dependencies] == [(made[0].dep_id, NAME, 3)]
    versions = sdk.list_dependency_version(m.ListDependencyVersionRequest(depend_id=made[0].dep_id, maxitems="2"))
    assert versions.count == 3 and versions.next_marker == 2
    assert [(v.id, v.version, v.description) for v in versions.dependencies] == [
        (v.id, v.version, v.description) for v in made[:2]
    ]
    shown = sdk.show_dependency_version(m.ShowDependencyVersionRequest(depend_id=made[0].dep_id, version="3"))
    assert (shown.id, shown.size, shown.etag) == (made[2].id, made[2].size, made[2].etag)
    assert description_sha256(shown.description) == made[2].sha256

    config = sdk.show_function_config(m.ShowFunctionConfigRequest(function_urn=URN))
    assert config.depend_version_list == [made[2].id] and config.dependencies[0].version == 3
    code_answer = sdk.show_function_code(m.ShowFunctionCodeRequest(function_urn=URN))
    assert code_answer.depend_version_list == [made[2].id]
    invoked = sdk.invoke_function(m.InvokeFunctionRequest(function_urn=URN, body={}))
    assert invoked.result == '{"text": 2}'  # the attached version's module, merged into the code folder
    assert REAL_HOME_SDK_DIR.exists() == existed
