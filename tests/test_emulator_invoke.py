"""Sync invocation runs the function's current Python code for real, in a subprocess per call."""

from __future__ import annotations

import base64
import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import AK, PASSWORD, SK, TOKEN
from test_emulator import BASE, code_body, make_emulator, zip_bytes

from fgsync.emulator import Emulator, serve

TAIL = {"X-Cff-Log-Type": "tail"}


def handler_zip(source: str, module: str = "index") -> bytes:
    return zip_bytes({f"{module}.py": textwrap.dedent(source)})


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = make_emulator()
    yield emulator
    emulator.close()


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    """Over a real loopback socket: invocations are what `fgsync invoke` and `watch --invoke` do end to end."""
    with serve(emu) as server, httpx.Client(base_url=server.url, headers={"X-Auth-Token": TOKEN}, timeout=30) as c:
        yield c


def invoke(client: httpx.Client, name: str, event: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(f"{BASE}/{name}/invocations", json=event, headers=headers or TAIL)


def test_success_returns_the_v1_answer_with_summary_and_log_tail(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function(
        "hello",
        code=handler_zip(
            """
            import os

            def handler(event, context):
                print("hello from the handler")
                context.getLogger().info("via the logger")
                return {
                    "name": event["name"],
                    "request_id": context.getRequestID(),
                    "function": context.getFunctionName(),
                    "greeting": context.getUserData("GREETING"),
                    "missing": context.getUserData("NOPE", "default"),
                    "env": os.environ.get("GREETING"),
                    "remaining_ok": 0 < context.getRemainingTimeInMilliSeconds() <= 3000,
                    "keys": [context.getAccessKey(), context.getSecretKey(), context.getToken()],
                }
            """
        ),
        user_data={"GREETING": "hi"},
        memory_size=256,
    )
    response = invoke(client, "hello", {"name": "ada"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"request_id", "result", "log", "status"}
    assert body["status"] == 200
    result = json.loads(body["result"])
    assert result == {
        "name": "ada",
        "request_id": body["request_id"],
        "function": "hello",
        "greeting": "hi",
        "missing": "default",
        "env": "hi",
        "remaining_ok": True,
        "keys": ["", "", ""],
    }
    assert response.headers["X-Cff-Request-Id"] == body["request_id"]
    assert response.headers["X-Func-Err-Code"] == "0" and response.headers["X-Is-Func-Err"] == "false"
    summary = json.loads(response.headers["X-Cff-Invoke-Summary"])
    assert summary["memorySize"] == 256 and summary["duration"] > 0
    assert summary["billingDuration"] >= summary["duration"] and summary["memoryUsed"] > 0
    assert "hello from the handler" in body["log"]
    assert f"{body['request_id']} INFO via the logger" in body["log"]
    assert "invoke Success" in body["log"]
    assert base64.b64decode(response.headers["X-Cff-Function-Log"]).decode() == body["log"]


def test_without_tail_the_log_is_not_returned(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function("hello", code=handler_zip("def handler(event, context):\n    print('x')\n    return 1\n"))
    response = invoke(client, "hello", {}, headers={"X-Cff-Log-Type": "None"})
    assert response.json()["log"] == "" and "X-Cff-Function-Log" not in response.headers
    raw = invoke(client, "hello", {}, headers={"X-CFF-Request-Version": "v0"})
    assert raw.content == b"1"


def test_handler_exception_is_readable(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function(
        "boom",
        code=handler_zip(
            """
            def handler(event, context):
                print("about to fail")
                raise ValueError("bad input: " + event["x"])
            """
        ),
    )
    response = invoke(client, "boom", {"x": "42"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == 500
    assert response.headers["X-Is-Func-Err"] == "true" and response.headers["X-Func-Err-Code"] == "500"
    error = json.loads(body["result"])
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "bad input: 42"
    assert "about to fail" in body["log"] and "Traceback" in body["log"] and "invoke Failed" in body["log"]


def test_missing_handler_is_a_function_error(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function("nohandler", handler="main.run", code=handler_zip("x = 1\n", module="main"))
    body = invoke(client, "nohandler", {}).json()
    assert body["status"] == 500 and "cannot load handler 'main.run'" in json.loads(body["result"])["errorMessage"]


def test_timeout_kills_the_handler(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function(
        "slow",
        timeout=1,
        code=handler_zip("import time\n\ndef handler(event, context):\n    print('sleeping')\n    time.sleep(60)\n"),
    )
    started = time.monotonic()
    response = invoke(client, "slow", {})
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 10
    body = response.json()
    assert body["status"] == 408 and response.headers["X-Is-Func-Err"] == "true"
    assert "timeout" in json.loads(body["result"])["errorMessage"]
    assert "sleeping" in body["log"]


def test_print_heavy_handler_gets_a_4_kb_tail(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function(
        "chatty",
        code=handler_zip(
            """
            def handler(event, context):
                for i in range(20000):
                    print("line %05d " % i + "." * 40)
                return "done"
            """
        ),
    )
    response = invoke(client, "chatty", {})
    body = response.json()
    assert body["status"] == 200 and json.loads(body["result"]) == "done"
    assert 4000 < len(body["log"].encode()) <= 4096
    assert "line 19999" in body["log"] and "line 00000" not in body["log"]
    assert body["log"].rstrip().split("\n")[-1].count("invoke Success") == 1
    assert len(base64.b64decode(response.headers["X-Cff-Function-Log"])) <= 4096


def test_updated_code_is_what_runs_next(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function("hello", code=handler_zip("def handler(event, context):\n    return 'v1'\n"))
    assert json.loads(invoke(client, "hello", {}).json()["result"]) == "v1"
    new = handler_zip("def handler(event, context):\n    return 'v2'\n")
    assert client.put(f"{BASE}/hello/code", json=code_body(new)).status_code == 200
    assert json.loads(invoke(client, "hello", {}).json()["result"]) == "v2"
    emu.set_code("hello", handler_zip("def handler(event, context):\n    return 'v3'\n"))
    assert json.loads(invoke(client, "hello", {}).json()["result"]) == "v3"
    assert emu.calls("invoke") == 3


def test_a_runtime_it_cannot_run_is_a_clear_error(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function("java", runtime="Java8")
    response = invoke(client, "java", {})
    assert response.status_code == 400 and response.json()["error_code"] == "FSS.0400"
    assert response.json()["error_msg"] == (
        "The emulator runs Python and Node.js handlers only; Java8 functions cannot be invoked"
    )
    emu.create_function("future", runtime="Node.js99.1")
    response = invoke(client, "future", {})
    assert response.status_code == 400 and "Unknown Node.js runtime 'Node.js99.1'" in response.json()["error_msg"]
    assert "Node.js20.15" in response.json()["error_msg"]
    assert emu.calls("invoke") == 2


def test_a_node_runtime_without_node_on_path_says_how_to_install_it(
    emu: Emulator, client: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    emu.create_function("js", runtime="Node.js18.15")
    response = invoke(client, "js", {})
    assert response.status_code == 400 and response.json()["error_code"] == "FSS.0400"
    message = response.json()["error_msg"]
    assert message.startswith("Node.js18.15 functions need Node.js: the emulator runs them with the node on PATH")
    assert "apt-get install nodejs" in message and "brew install node" in message and "https://nodejs.org" in message
    # Python functions still run (with the emulator's own interpreter, not one found on PATH).
    emu.create_function("py", code=handler_zip("def handler(event, context):\n    return 'still fine'\n"))
    assert json.loads(invoke(client, "py", {}).json()["result"]) == "still fine"


def test_event_must_be_json_and_at_most_6_mb(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function("hello")
    bad = client.post(f"{BASE}/hello/invocations", content=b"{oops")
    assert bad.status_code == 400 and "JSON" in bad.json()["error_msg"]
    big = client.post(f"{BASE}/hello/invocations", json={"x": "a" * (6 * 1024 * 1024)})
    assert big.status_code == 413
    assert emu.calls("invoke") == 2


def test_the_handler_never_sees_the_emulators_secrets(
    emu: Emulator, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUD_SDK_AK", AK)
    monkeypatch.setenv("CLOUD_SDK_SK", SK)
    emu.create_function(
        "snoop",
        code=handler_zip("import os\n\ndef handler(event, context):\n    return dict(os.environ)\n"),
    )
    body = invoke(client, "snoop", {}).json()
    env = json.loads(body["result"])
    assert "CLOUD_SDK_SK" not in env and env["RUNTIME_FUNC_NAME"] == "snoop"
    for secret in (SK, TOKEN, PASSWORD):
        assert secret not in body["result"]


def test_user_modules_win_over_the_emulators_own(emu: Emulator, client: httpx.Client) -> None:
    # The runner lives next to store.py/auth.py; a function's own "store" module must be the one imported.
    code = zip_bytes(
        {
            "index.py": "import store\n\ndef handler(event, context):\n    return store.WHO\n",
            "store.py": "WHO = 'user code'\n",
        }
    )
    emu.create_function("shadow", code=code)
    assert json.loads(invoke(client, "shadow", {}).json()["result"]) == "user code"


def test_a_damaged_package_fails_at_invocation(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function("broken", code=b"PK" + bytes(100))
    response = invoke(client, "broken", {})
    body = response.json()
    assert body["status"] == 500 and response.headers["X-Is-Func-Err"] == "true"
    assert "cannot unpack the function's code" in json.loads(body["result"])["errorMessage"]


def test_inline_code_runs_as_the_handlers_module(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function("inline", handler="main.entry")
    source = b"def entry(event, context):\n    return 'inline ' + event['v']\n"
    body = {"code_type": "inline", "func_code": {"file": base64.b64encode(source).decode()}}
    updated = client.put(f"{BASE}/inline/code", json=body)
    assert updated.status_code == 200 and updated.json()["code_type"] == "inline"
    assert json.loads(invoke(client, "inline", {"v": "ok"}).json()["result"]) == "inline ok"
