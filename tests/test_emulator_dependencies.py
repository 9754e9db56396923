"""The emulator's dependency packages: the five calls over real loopback HTTP, their limits and errors, the
function side (depend_version_list, dependencies[]), the merge into the code folder at invocation, persistence
with data_dir, faults and call counts, and the official SDK driving it all with AK/SK."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import AK, PROJECT_ID, SK, TOKEN
from test_emulator import BASE, HELLO, FakeClock, code_body, error_of, make_emulator, zip_bytes
from test_emulator_sdk import REAL_HOME_SDK_DIR, sdk_signed

from fgsync.emulator import ROUTES, Emulator, EmulatorServer, serve

DEPS = f"/v2/{PROJECT_ID}/fgs/dependencies"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VERSION_FIELDS = {
    "id",
    "owner",
    "link",
    "runtime",
    "etag",
    "size",
    "name",
    "description",
    "file_name",
    "version",
    "dep_id",
    "last_modified",
}
IMPORTING_HANDLER = (
    "import greeting\n\n\n"
    "def handler(event, context):\n"
    "    with open('shared.txt') as handle:\n"
    "        shared = handle.read()\n"
    "    return {'greeting': greeting.TEXT, 'shared': shared}\n"
)


def dep_body(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "depend_type": "zip",
        "depend_file": base64.b64encode(data).decode("ascii"),
        "runtime": "Python3.9",
        "name": name,
    }
    body.update(extra)
    return body


@pytest.fixture
def served() -> Iterator[tuple[EmulatorServer, httpx.Client]]:
    emu = make_emulator()
    emu.create_function("hello", code=zip_bytes({"index.py": HELLO}))
    with serve(emu) as server, httpx.Client(base_url=server.url, headers={"X-Auth-Token": TOKEN}, timeout=30) as c:
        yield server, c
    emu.close()


def publish(client: httpx.Client, name: str, files: dict[str, str], **extra: Any) -> dict[str, Any]:
    answer = client.post(f"{DEPS}/version", json=dep_body(name, zip_bytes(files), **extra))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


# ----------------------------------------------------------------------------- the five calls


def test_create_makes_version_1_for_a_new_name_and_the_next_for_an_existing_one() -> None:
    clock = FakeClock(1_700_000_000.7)
    emu = make_emulator(clock=clock)
    with serve(emu) as server, httpx.Client(base_url=server.url, headers={"X-Auth-Token": TOKEN}) as client:
        data = zip_bytes({"requests/__init__.py": "X = 1\n"})
        first = client.post(f"{DEPS}/version", json=dep_body("py-libs", data, description="fgsync sha256=ab"))
        assert first.status_code == 200
        body = first.json()
        assert set(body) == VERSION_FIELDS
        assert UUID.match(body["id"]) and UUID.match(body["dep_id"]) and body["id"] != body["dep_id"]
        assert body["version"] == 1 and body["name"] == "py-libs" and body["runtime"] == "Python3.9"
        assert body["description"] == "fgsync sha256=ab" and body["size"] == len(data)
        assert body["etag"] == hashlib.md5(data).hexdigest() and body["file_name"] == "py-libs.zip"
        assert body["last_modified"] == 1_700_000_000 and body["owner"] == emu.domain_id
        assert body["link"].endswith(f"/{body['id']}.zip")
        clock.advance(5)
        second = publish(client, "py-libs", {"requests/__init__.py": "X = 2\n"})
        other = publish(client, "node-libs", {"node_modules/a/index.js": ""}, runtime="Node.js18.15")
        assert second["version"] == 2 and second["dep_id"] == body["dep_id"] and second["id"] != body["id"]
        assert second["description"] == "" and second["last_modified"] == 1_700_000_005
        assert other["version"] == 1 and other["dep_id"] != body["dep_id"]
    assert [v.version for v in emu.dependency_versions("py-libs")] == [1, 2]
    assert emu.dependency_versions("py-libs")[0].data == data and emu.dependency_versions("nothing") == []
    kept = emu.dependency_version(second["id"])
    assert kept.sha256 == hashlib.sha256(kept.data).hexdigest() and kept.version == 2
    with pytest.raises(KeyError):
        emu.dependency_version("no-such-id")


def test_list_dependencies_pages_with_marker_next_marker_and_count(served: tuple[EmulatorServer, httpx.Client]) -> None:
    _server, client = served
    for i in range(5):
        publish(client, f"dep-{i}", {f"m{i}.py": ""}, runtime="Node.js18.15" if i == 4 else "Python3.9")
    publish(client, "dep-0", {"m0.py": "# v2"})  # a second version: still one dependency
    names: list[str] = []
    marker = 0
    while True:
        page = client.get(DEPS, params={"marker": marker, "maxitems": 2}).json()
        assert set(page) == {"dependencies", "next_marker", "count"} and page["count"] == 5
        names += [d["name"] for d in page["dependencies"]]
        assert page["next_marker"] == marker + len(page["dependencies"])
        marker = page["next_marker"]
        if marker >= page["count"]:
            break
    assert names == [f"dep-{i}" for i in range(5)]
    everything = client.get(DEPS).json()
    first = everything["dependencies"][0]
    assert set(first) == VERSION_FIELDS - {"dep_id"}  # id is the dependency id; the rest is its newest version
    assert first["version"] == 2 and first["id"] == client.get(DEPS).json()["dependencies"][0]["id"]
    assert everything["next_marker"] == 5 == everything["count"]
    assert client.get(DEPS, params={"dependency_type": "public"}).json() == {
        "dependencies": [],
        "next_marker": 0,
        "count": 0,
    }
    assert client.get(DEPS, params={"dependency_type": "private"}).json()["count"] == 5
    assert [d["name"] for d in client.get(DEPS, params={"runtime": "Node.js18.15"}).json()["dependencies"]] == ["dep-4"]
    assert client.get(DEPS, params={"name": "dep-1"}).json()["count"] == 1
    assert client.get(DEPS, params={"name": "dep"}).json()["count"] == 5  # not exact: clients compare names
    assert client.get(DEPS, params={"marker": 9}).json() == {"dependencies": [], "next_marker": 5, "count": 5}
    for bad in ({"marker": "-1"}, {"marker": "x"}, {"maxitems": "0"}, {"dependency_type": "mine"}):
        assert error_of(client.get(DEPS, params=bad)) == (400, "FSS.1001"), bad


def test_list_versions_and_show_one_with_its_download_link(served: tuple[EmulatorServer, httpx.Client]) -> None:
    server, client = served
    made = [publish(client, "libs", {"lib.py": f"V = {i}\n"}) for i in range(3)]
    dep_id = made[0]["dep_id"]
    first = client.get(f"{DEPS}/{dep_id}/version", params={"maxitems": 2}).json()
    assert [v["version"] for v in first["dependencies"]] == [1, 2] and first["next_marker"] == 2
    assert first["count"] == 3 and set(first["dependencies"][0]) == VERSION_FIELDS | {"is_shared"}
    rest = client.get(f"{DEPS}/{dep_id}/version", params={"marker": 2, "maxitems": 2}).json()
    assert [v["id"] for v in rest["dependencies"]] == [made[2]["id"]] and rest["next_marker"] == 3

    shown = client.get(f"{DEPS}/{dep_id}/version/2")
    assert shown.status_code == 200
    body = shown.json()
    assert body["id"] == made[1]["id"] and set(body) == VERSION_FIELDS | {"download_link", "is_shared"}
    assert body["download_link"].startswith(server.url)
    downloaded = httpx.get(body["download_link"])
    assert downloaded.status_code == 200 and downloaded.content == zip_bytes({"lib.py": "V = 1\n"})

    assert error_of(client.get(f"{DEPS}/no-such-dep/version")) == (404, "FSS.1056")
    assert error_of(client.get(f"{DEPS}/{dep_id}/version/4")) == (404, "FSS.1056")
    assert error_of(client.get(f"{DEPS}/{dep_id}/version/two")) == (400, "FSS.0400")
    assert httpx.get(f"{server.url}/_emulator/dependency-files/nothing.zip").status_code == 404


def test_delete_is_204_refused_with_fss_1033_while_attached_and_numbers_are_never_reused(
    served: tuple[EmulatorServer, httpx.Client],
) -> None:
    server, client = served
    v1, v2, v3 = (publish(client, "libs", {"lib.py": f"V = {i}\n"}) for i in range(3))
    dep_id = v1["dep_id"]
    attach = code_body(zip_bytes({"index.py": HELLO}), depend_version_list=[v2["id"]])
    assert client.put(f"{BASE}/hello/code", json=attach).status_code == 200
    in_use = client.delete(f"{DEPS}/{dep_id}/version/2")
    assert error_of(in_use) == (412, "FSS.1033") and "default:hello" in in_use.json()["error_msg"]

    deleted = client.delete(f"{DEPS}/{dep_id}/version/3")
    assert deleted.status_code == 204 and deleted.content == b""
    assert error_of(client.get(f"{DEPS}/{dep_id}/version/3")) == (404, "FSS.1056")
    assert error_of(client.delete(f"{DEPS}/{dep_id}/version/3")) == (404, "FSS.1056")
    assert publish(client, "libs", {"lib.py": "V = 4\n"})["version"] == 4  # 3 is not reused

    # UpdateFunctionCode replaces the list: once detached, version 2 can go too.
    client.put(f"{BASE}/hello/code", json=code_body(zip_bytes({"index.py": HELLO}), depend_version_list=[]))
    for number in (1, 2, 4):
        assert client.delete(f"{DEPS}/{dep_id}/version/{number}").status_code == 204
    assert client.get(DEPS).json()["count"] == 0  # its last version gone, the dependency is gone
    again = publish(client, "libs", {"lib.py": ""})
    assert again["version"] == 1 and again["dep_id"] != dep_id
    assert v3["id"] not in {v.id for v in server.emulator.dependency_versions("libs")}
    assert server.connections_accepted == 1  # 204 answers keep the connection too


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"depend_type": "tar"}, 400, "FSS.1032"),
        ({"depend_type": None}, 400, "FSS.1032"),
        ({"depend_type": "obs", "depend_link": "https://nob.obs.cn-north-4.myhuaweicloud.com/d.zip"}, 404, "FSS.1054"),
        ({"depend_type": "obs", "depend_link": "ftp://example.com/d.zip"}, 400, "FSS.1010"),
        ({"name": "1abc"}, 400, "FSS.0400"),
        ({"name": "abc-"}, 400, "FSS.0400"),
        ({"name": "a b"}, 400, "FSS.0400"),
        ({"name": "a" * 97}, 400, "FSS.0400"),
        ({"name": None}, 400, "FSS.0400"),
        ({"runtime": None}, 400, "FSS.1005"),
        ({"runtime": "Python9"}, 400, "FSS.1005"),
        ({"description": "d" * 513}, 400, "FSS.1019"),
        ({"depend_file": "%%%"}, 400, "FSS.1024"),
        ({"depend_file": ""}, 400, "FSS.1024"),
        ({"depend_file": base64.b64encode(b"not a zip").decode()}, 400, "FSS.1024"),
        ({"depend_file": base64.b64encode(zip_bytes({"lib.py~": ""})).decode()}, 400, "FSS.1024"),
        ({"depend_file": base64.b64encode(zip_bytes({"../escape.py": ""})).decode()}, 400, "FSS.1024"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_create_refuses_what_the_service_refuses(
    served: tuple[EmulatorServer, httpx.Client], change: dict[str, Any], status: int, code: str
) -> None:
    server, client = served
    body = {k: v for k, v in {**dep_body("good-name", zip_bytes({"lib.py": ""})), **change}.items() if v is not None}
    assert error_of(client.post(f"{DEPS}/version", json=body)) == (status, code)
    assert server.emulator.dependency_versions("good-name") == []


def test_name_and_description_edges_are_accepted(served: tuple[EmulatorServer, httpx.Client]) -> None:
    _server, client = served
    for name in ("a", "A.b_c-9", "x" * 96):
        assert publish(client, name, {"lib.py": ""}, description="d" * 512)["name"] == name


def test_file_count_and_size_limits() -> None:
    emu = make_emulator()
    client = httpx.Client(
        transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://x", headers={"X-Auth-Token": TOKEN}
    )

    def many(count: int) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("pkg/", "")  # folders do not count
            for i in range(count):
                archive.writestr(f"pkg/f{i}.py", "")
        return buffer.getvalue()

    assert client.post(f"{DEPS}/version", json=dep_body("ok", many(30_000))).status_code == 200
    over = client.post(f"{DEPS}/version", json=dep_body("over", many(30_001)))
    assert error_of(over) == (400, "FSS.1024") and "30,000" in over.json()["error_msg"]
    big = b"PK" + bytes(40 * 1024 * 1024 - 2)
    too_big = client.post(f"{DEPS}/version", json=dep_body("big", big + b"\0"))
    assert error_of(too_big) == (400, "FSS.1024") and "40 MB" in too_big.json()["error_msg"]
    # Exactly 40 MB passes the size check (and then fails as the non-zip it is).
    assert "not a valid zip" in client.post(f"{DEPS}/version", json=dep_body("big", big)).json()["error_msg"]


# ----------------------------------------------------------------------------- the function side


def test_functions_answer_their_dependencies_and_unknown_or_too_many_are_refused(
    served: tuple[EmulatorServer, httpx.Client],
) -> None:
    server, client = served
    emu = server.emulator
    a = publish(client, "dep-a", {"a.py": ""})
    b = publish(client, "dep-b", {"b.py": ""})
    created = client.post(
        f"/v2/{PROJECT_ID}/fgs/functions",
        json={
            "func_name": "withdeps",
            "runtime": "Python3.9",
            "handler": "index.handler",
            "memory_size": 128,
            "timeout": 3,
            "code_type": "zip",
            "code_filename": "index.zip",
            "depend_version_list": [a["id"], b["id"]],
        },
    ).json()
    assert created["depend_version_list"] == [a["id"], b["id"]]
    assert created["depend_list"] == [a["dep_id"], b["dep_id"]]
    assert created["dependencies"] == [a, b]
    for path in ("code", "config"):
        shown = client.get(f"{BASE}/withdeps/{path}").json()
        assert shown["dependencies"] == [a, b] and shown["depend_version_list"] == [a["id"], b["id"]]

    before = emu.function("withdeps")
    new_code = zip_bytes({"index.py": HELLO + "# new\n"})
    unknown = client.put(f"{BASE}/withdeps/code", json=code_body(new_code, depend_version_list=[a["id"], "nope"]))
    assert error_of(unknown) == (404, "FSS.1056") and "nope" in unknown.json()["error_msg"]
    many = [publish(client, f"many-{i}", {"m.py": ""})["id"] for i in range(21)]
    too_many = client.put(f"{BASE}/withdeps/code", json=code_body(new_code, depend_version_list=many))
    assert error_of(too_many) == (403, "FSS.1045")
    after = emu.function("withdeps")
    assert (after.digest, after.depend_version_list, after.uploads) == (before.digest, before.depend_version_list, 0)

    twenty = client.put(
        f"{BASE}/withdeps/code", json=code_body(zip_bytes({"index.py": HELLO}), depend_version_list=many[:20])
    )
    assert twenty.status_code == 200 and twenty.json()["depend_version_list"] == many[:20]
    assert len(twenty.json()["dependencies"]) == 20
    replaced = client.put(f"{BASE}/withdeps/code", json=code_body(new_code, depend_version_list=[b["id"]]))
    assert replaced.json()["depend_version_list"] == [b["id"]] and replaced.json()["depend_list"] == [b["dep_id"]]

    refused = client.post(
        f"/v2/{PROJECT_ID}/fgs/functions",
        json={**{k: created[k] for k in ("runtime", "handler", "memory_size", "timeout", "code_type")},
              "func_name": "ghostdeps", "code_filename": "index.zip", "depend_version_list": ["nope"]},
    )  # fmt: skip
    assert error_of(refused) == (404, "FSS.1056")
    with pytest.raises(KeyError):
        emu.function("ghostdeps")


# ----------------------------------------------------------------------------- invocation


def test_invocation_merges_the_attached_dependencies_into_the_code_folder(
    served: tuple[EmulatorServer, httpx.Client],
) -> None:
    server, client = served
    code = zip_bytes({"index.py": IMPORTING_HANDLER, "shared.txt": "from the code"})
    v1 = publish(client, "greeting", {"greeting.py": "TEXT = 'hello from v1'\n", "shared.txt": "from the dependency"})
    assert client.put(f"{BASE}/hello/code", json=code_body(code, depend_version_list=[v1["id"]])).status_code == 200
    ran = client.post(f"{BASE}/hello/invocations", json={})
    assert ran.json()["status"] == 200, ran.json()
    assert ran.json()["result"] == '{"greeting": "hello from v1", "shared": "from the dependency"}'

    # A new version attached: the same code digest, another code folder.
    v2 = publish(client, "greeting", {"greeting.py": "TEXT = 'hello from v2'\n", "shared.txt": "v2"})
    client.put(f"{BASE}/hello/code", json=code_body(code, depend_version_list=[v2["id"]]))
    assert client.post(f"{BASE}/hello/invocations", json={}).json()["result"] == (
        '{"greeting": "hello from v2", "shared": "v2"}'
    )

    # Two attached: the later one in the list wins a path both hold.
    other = publish(client, "other", {"shared.txt": "from other"})
    client.put(f"{BASE}/hello/code", json=code_body(code, depend_version_list=[v2["id"], other["id"]]))
    assert '"shared": "from other"' in client.post(f"{BASE}/hello/invocations", json={}).json()["result"]

    client.put(f"{BASE}/hello/code", json=code_body(code, depend_version_list=[]))
    detached = client.post(f"{BASE}/hello/invocations", json={}, headers={"X-Cff-Log-Type": "tail"}).json()
    assert detached["status"] == 500 and "ModuleNotFoundError" in detached["result"]
    assert server.emulator.function("hello").digest == hashlib.sha512(code).hexdigest()


def test_a_version_attached_through_python_that_does_not_exist_fails_the_invocation_clearly() -> None:
    emu = make_emulator()
    emu.create_function("hello", code=zip_bytes({"index.py": HELLO}), depend_version_list=["never-published"])
    client = httpx.Client(
        transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://x", headers={"X-Auth-Token": TOKEN}
    )
    answer = client.post(f"{BASE}/hello/invocations", json={}).json()
    assert answer["status"] == 500 and "never-published does not exist" in answer["result"]
    assert client.get(f"{BASE}/hello/config").json()["dependencies"] == []
    emu.close()


# ----------------------------------------------------------------------------- persistence, faults, auth


def test_dependencies_survive_a_restart_with_data_dir(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    first = make_emulator(data_dir=data)
    first.create_function("hello")
    with serve(first) as server, httpx.Client(base_url=server.url, headers={"X-Auth-Token": TOKEN}) as client:
        v1 = publish(client, "greeting", {"greeting.py": "TEXT = 'kept'\n", "shared.txt": "dep"})
        v2 = publish(client, "greeting", {"greeting.py": "TEXT = 'two'\n", "shared.txt": "dep"})
        gone = publish(client, "temporary", {"t.py": ""})
        assert client.delete(f"{DEPS}/{v2['dep_id']}/version/2").status_code == 204
        assert client.delete(f"{DEPS}/{gone['dep_id']}/version/1").status_code == 204
        code = zip_bytes({"index.py": IMPORTING_HANDLER, "shared.txt": "code"})
        assert client.put(f"{BASE}/hello/code", json=code_body(code, depend_version_list=[v1["id"]])).status_code == 200
    first.close()

    second = make_emulator(data_dir=data)
    with serve(second) as server, httpx.Client(base_url=server.url, headers={"X-Auth-Token": TOKEN}) as client:
        listed = client.get(DEPS).json()
        assert [d["name"] for d in listed["dependencies"]] == ["greeting"]
        versions = client.get(f"{DEPS}/{v1['dep_id']}/version").json()["dependencies"]
        assert [v["id"] for v in versions] == [v1["id"]]
        assert {k: versions[0][k] for k in VERSION_FIELDS} == v1
        assert client.get(f"{BASE}/hello/config").json()["dependencies"] == [v1]
        assert client.post(f"{BASE}/hello/invocations", json={}).json()["result"] == (
            '{"greeting": "kept", "shared": "dep"}'
        )
        assert publish(client, "greeting", {"g.py": ""})["version"] == 3  # 2 stays used up across the restart
        assert error_of(client.delete(f"{DEPS}/{v1['dep_id']}/version/1")) == (412, "FSS.1033")
    second.close()
    assert not list((data / "dependencies").glob(f"{gone['id']}*"))
    assert not [p for p in data.rglob(".*") if p.is_file()], "temp files left behind"

    (data / "dependencies" / f"{v1['id']}.zip").write_bytes(b"PK damaged")
    caplog.set_level(logging.WARNING, logger="fgsync.emulator")
    third = make_emulator(data_dir=data)
    assert [v.version for v in third.dependency_versions("greeting")] == [3]
    assert "does not match its etag" in caplog.text


def test_dependency_routes_are_counted_faulted_and_authenticated(served: tuple[EmulatorServer, httpx.Client]) -> None:
    server, client = served
    emu = server.emulator
    for route in ("create_dependency_version", "list_dependencies", "list_dependency_versions",
                  "show_dependency_version", "delete_dependency_version"):  # fmt: skip
        assert route in ROUTES and emu.calls(route) == 0
    emu.inject("create_dependency_version", status=503, code="FSS.0503", times=1)
    assert error_of(client.post(f"{DEPS}/version", json=dep_body("libs", zip_bytes({"a.py": ""})))) == (503, "FSS.0503")
    made = publish(client, "libs", {"a.py": ""})
    emu.inject("list_dependencies", drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(DEPS)
    emu.inject("show_dependency_version", delay=0.2)
    started = time.monotonic()
    assert client.get(f"{DEPS}/{made['dep_id']}/version/1").status_code == 200
    assert time.monotonic() - started >= 0.2
    client.get(f"{DEPS}/{made['dep_id']}/version")
    client.delete(f"{DEPS}/{made['dep_id']}/version/1")
    counts = {r: emu.calls(r) for r in ROUTES if "dependenc" in r}
    assert counts == {
        "create_dependency_version": 2,
        "list_dependencies": 1,
        "list_dependency_versions": 1,
        "show_dependency_version": 1,
        "delete_dependency_version": 1,
    }
    assert client.get("/_emulator/stats").json()["calls"]["create_dependency_version"] == 2

    no_auth = httpx.get(f"{server.url}{DEPS}")
    assert error_of(no_auth) == (401, "APIGW.0301")
    assert error_of(client.get(f"/v2/{'f' * 32}/fgs/dependencies")) == (403, "FSS.0403")
    url, headers = sdk_signed(f"{server.url}{DEPS}", "GET", query=[("maxitems", "5")])
    assert httpx.get(url, headers=headers).json()["count"] == 0
    raw = httpx.Request("POST", "http://x", json=dep_body("signed", zip_bytes({"s.py": ""}))).read()
    url, headers = sdk_signed(f"{server.url}{DEPS}/version", "POST", body=raw)
    assert httpx.post(url, content=raw, headers=headers).json()["version"] == 1
    assert httpx.post(url, content=raw.replace(b"signed", b"sighed"), headers=headers).status_code == 401


def test_stats_list_dependencies(served: tuple[EmulatorServer, httpx.Client]) -> None:
    server, client = served
    made = publish(client, "libs", {"a.py": ""})
    stats = client.get("/_emulator/stats").json()
    versions = [{"id": made["id"], "version": 1}]
    assert stats["dependencies"] == [{"name": "libs", "dep_id": made["dep_id"], "versions": versions}]
    assert server.emulator.stats()["dependencies"] == stats["dependencies"]


# ----------------------------------------------------------------------------- the official SDK


# python-dateutil is not installed: the SDK warns and keeps last_modified as the value the emulator sent.
@pytest.mark.filterwarnings("ignore::ImportWarning")
def test_the_official_sdk_creates_lists_shows_attaches_and_deletes_dependency_versions(
    served: tuple[EmulatorServer, httpx.Client],
) -> None:
    server, _client = served
    existed = REAL_HOME_SDK_DIR.exists()
    assert Path.home() != REAL_HOME_SDK_DIR.parent  # the SDK writes ~/.huaweicloud when imported
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
    from huaweicloudsdkfunctiongraph.v2 import FunctionGraphClient
    from huaweicloudsdkfunctiongraph.v2 import model as m

    sdk = (
        FunctionGraphClient.new_builder()
        .with_credentials(BasicCredentials(AK, SK, PROJECT_ID))
        .with_endpoints([server.url])
        .build()
    )
    data = zip_bytes({"greeting.py": "TEXT = 'from the sdk'\n", "shared.txt": "sdk"})
    versions = []
    for description in ("fgsync sha256=1", "fgsync sha256=2"):
        versions.append(
            sdk.create_dependency_version(
                m.CreateDependencyVersionRequest(
                    body=m.CreateDependencyRequestBody(
                        depend_type="zip",
                        depend_file=base64.b64encode(data).decode(),
                        runtime="Python3.9",
                        name="fgsync-default-hello",
                        description=description,
                    )
                )
            )
        )
    first, second = versions
    assert (first.version, second.version) == (1, 2) and first.dep_id == second.dep_id
    assert first.size == len(data) and first.file_name == "fgsync-default-hello.zip" and UUID.match(first.id)

    listed = sdk.list_dependencies(m.ListDependenciesRequest(marker="0", maxitems="10", dependency_type="private"))
    assert listed.count == 1 and listed.next_marker == 1
    assert listed.dependencies[0].id == first.dep_id and listed.dependencies[0].version == 2
    page = sdk.list_dependency_version(m.ListDependencyVersionRequest(depend_id=first.dep_id, maxitems="1"))
    assert page.count == 2 and page.next_marker == 1 and [v.id for v in page.dependencies] == [first.id]
    shown = sdk.show_dependency_version(m.ShowDependencyVersionRequest(depend_id=first.dep_id, version="2"))
    assert shown.id == second.id and shown.description == "fgsync sha256=2"
    assert httpx.get(shown.download_link).content == data

    urn = f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"
    code = zip_bytes({"index.py": IMPORTING_HANDLER, "shared.txt": "code"})
    updated = sdk.update_function_code(
        m.UpdateFunctionCodeRequest(
            function_urn=urn,
            body=m.UpdateFunctionCodeRequestBody(
                code_type="zip",
                code_filename="index.zip",
                func_code=m.FuncCode(file=base64.b64encode(code).decode()),
                depend_version_list=[second.id],
            ),
        )
    )
    assert updated.depend_version_list == [second.id] and updated.dependencies[0].dep_id == second.dep_id
    config = sdk.show_function_config(m.ShowFunctionConfigRequest(function_urn=urn))
    assert config.depend_version_list == [second.id] and config.dependencies[0].version == 2
    invoked = sdk.invoke_function(m.InvokeFunctionRequest(function_urn=urn, body={}))
    assert invoked.result == '{"greeting": "from the sdk", "shared": "sdk"}'

    with pytest.raises(ClientRequestException) as in_use:
        sdk.delete_dependency_version(m.DeleteDependencyVersionRequest(depend_id=first.dep_id, version="2"))
    assert in_use.value.status_code == 412 and in_use.value.error_code == "FSS.1033"
    deleted = sdk.delete_dependency_version(m.DeleteDependencyVersionRequest(depend_id=first.dep_id, version="1"))
    assert deleted.status_code == 204
    with pytest.raises(ClientRequestException) as missing:
        sdk.show_dependency_version(m.ShowDependencyVersionRequest(depend_id=first.dep_id, version="1"))
    assert missing.value.status_code == 404 and missing.value.error_code == "FSS.1056"
    with pytest.raises(ClientRequestException) as unknown:
        sdk.update_function_code(
            m.UpdateFunctionCodeRequest(
                function_urn=urn,
                body=m.UpdateFunctionCodeRequestBody(
                    code_type="zip",
                    code_filename="index.zip",
                    func_code=m.FuncCode(file=base64.b64encode(code).decode()),
                    depend_version_list=[first.id],
                ),
            )
        )
    assert unknown.value.status_code == 404 and unknown.value.error_code == "FSS.1056"
    assert [v.version for v in server.emulator.dependency_versions("fgsync-default-hello")] == [2]
    assert server.connections_accepted <= 2  # the SDK's pool (requests) keeps its connection alive
    assert REAL_HOME_SDK_DIR.exists() == existed


def test_python_api_publishes_without_validation() -> None:
    emu: Emulator = make_emulator()
    version = emu.create_dependency_version("anything goes~", b"not even a zip", runtime="Whatever", description="d")
    assert version.version == 1 and version.file_name == "anything goes~.zip" and version.size == 14
    assert emu.dependency_version(version.id) == version
