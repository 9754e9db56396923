"""The emulator's state: the control API (faults, stats, drift, token expiry), persistence across restarts with
``data_dir``, and concurrent uploads."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import httpx
from conftest import DOMAIN, PASSWORD, PROJECT_ID, REGION, USER
from test_emulator import BASE, HELLO, code_body, error_of, login_body, make_emulator, zip_bytes
from test_emulator import pair as pair

from fgsync.emulator import Emulator

# ----------------------------------------------------------------------------- control API


def test_control_api(pair: tuple[Emulator, httpx.Client]) -> None:
    emu, client = pair
    assert client.post("/_emulator/faults", json={"route": "show_code", "status": 500, "times": 1}).status_code == 201
    assert error_of(client.get(f"{BASE}/hello/code")) == (500, "FSS.0500")
    client.post("/_emulator/faults", json={"route": "show_code", "status": 429, "code": "APIGW.0308"})
    assert client.delete("/_emulator/faults").status_code == 200
    assert client.get(f"{BASE}/hello/code").status_code == 200
    assert client.post("/_emulator/faults", json={"route": "nope", "status": 500}).status_code == 400
    assert client.post("/_emulator/faults", json={"route": "show_code", "delay_ms": "x"}).status_code == 400

    drifted = zip_bytes({"index.py": "# edited in the console\n"})
    put = client.put("/_emulator/functions/hello/code", content=drifted)
    assert put.json()["digest"] == hashlib.sha512(drifted).hexdigest()
    assert emu.function("hello").code == drifted and emu.uploads("hello") == 0
    assert client.put("/_emulator/functions/ghost/code", content=drifted).status_code == 404

    stats = client.get("/_emulator/stats").json()
    assert stats["calls"]["show_code"] == 2 and stats["calls"]["update_code"] == 0
    urn = f"urn:fss:{REGION}:{PROJECT_ID}:function:default:hello:latest"
    assert stats["uploads"] == {urn: 0}
    assert stats["functions"][0]["digest"] == hashlib.sha512(drifted).hexdigest()

    assert client.post("/_emulator/expire-tokens").status_code == 200
    assert error_of(client.get(f"{BASE}/hello/code")) == (401, "FSS.0401")


# ----------------------------------------------------------------------------- persistence


def test_functions_and_tokens_survive_a_restart_with_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = make_emulator(project_id=None, token=None, data_dir=data)
    project = first.project_id
    assert len(project) == 32
    first.create_function("hello", code=zip_bytes({"index.py": HELLO}), depend_version_list=["d1"])
    client = httpx.Client(transport=httpx.WSGITransport(app=first.wsgi_app), base_url="http://x")
    token = client.post("/v3/auth/tokens", json=login_body(USER, PASSWORD, DOMAIN, project)).headers["X-Subject-Token"]
    new = zip_bytes({"index.py": HELLO + "# v2\n"})
    response = client.put(
        f"/v2/{project}/fgs/functions/hello/code", json=code_body(new), headers={"X-Auth-Token": token}
    )
    assert response.status_code == 200

    second = make_emulator(project_id=None, token=None, data_dir=data)
    assert second.project_id == project
    record = second.function("hello")
    assert record.code == new and record.digest == hashlib.sha512(new).hexdigest()
    assert record.depend_version_list == ["d1"] and record.uploads == 1
    client2 = httpx.Client(transport=httpx.WSGITransport(app=second.wsgi_app), base_url="http://x")
    again = client2.get(f"/v2/{project}/fgs/functions/hello/config", headers={"X-Auth-Token": token})
    assert again.status_code == 200 and again.json()["digest"] == record.digest
    stored = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert token.encode() not in stored and PASSWORD.encode() not in stored
    assert not [p for p in data.rglob(".*") if p.is_file()], "temp files left behind"


def test_concurrent_uploads_are_all_counted(pair: tuple[Emulator, httpx.Client]) -> None:
    emu, client = pair
    payloads = [zip_bytes({"index.py": f"# {i}\n"}) for i in range(6)]
    errors: list[BaseException] = []

    def push(data: bytes) -> None:
        try:
            assert client.put(f"{BASE}/hello/code", json=code_body(data)).status_code == 200
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert emu.uploads("hello") == 6 and emu.function("hello").code in payloads
    assert client.get("/_emulator/stats").json()["calls"]["update_code"] == 6
