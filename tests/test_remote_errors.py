"""What a user reads when a request fails: `fgsync push` against loopback servers that refuse, drop, redirect,
answer HTML pages or half answers. Every message names the host and port, and says what to check."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import HELLO_PY, PROJECT_ID, SECRETS, TOKEN, make_tree, write_config

from fgsync.cli import main
from fgsync.errors import NetworkError
from fgsync.remote import FunctionGraphClient, RetryPolicy

URN = f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"


class TokenAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["X-Auth-Token"] = TOKEN
        yield request


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    return tmp_path


def fgsync(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for secret in SECRETS:
        assert secret not in out + err
    return code, out, err


def errors(out: str) -> list[dict[str, Any]]:
    return [event for event in map(json.loads, out.splitlines()) if event["event"] == "error"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- network errors name the host and port (item 14 a) ----------------------------------------------------------


def test_connection_refused_names_host_and_port_and_is_retried(
    project: Path, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    write_config(project, endpoint=f"http://127.0.0.1:{port}")
    code, _out, err = fgsync(capsys, "push")
    assert code == 1
    assert re.search(rf"^\d\d:\d\d:\d\d hello  error network: cannot connect to 127\.0\.0\.1:{port} "
                     r"\(Connection refused\)$", err, re.MULTILINE), err  # fmt: skip
    assert len(retry_sleeps) == 4  # retried like every network error, then reported


def test_a_dropped_connection_names_host_and_port(
    project: Path, emulator: Any, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.emulator.create_function("hello")
    emulator.emulator.inject("show_code", drop=True, times=-1)
    write_config(project, endpoint=emulator.url)
    code, out, _err = fgsync(capsys, "push", "--json")
    assert code == 1
    (error,) = errors(out)
    assert error["message"] == (
        f"the connection to 127.0.0.1:{emulator.port} was dropped before a complete answer "
        "(Server disconnected without sending a response.)"
    )
    assert error["retryable"] is True and len(retry_sleeps) == 4


def test_a_name_that_does_not_resolve_is_named_with_its_port() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as error:
            raise httpx.ConnectError("[Errno -2] Name or service not known", request=request) from error

    client = FunctionGraphClient(
        "https://functiongraph.nowhere.example", PROJECT_ID, auth=TokenAuth(), transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=0),
    )  # fmt: skip
    with pytest.raises(NetworkError) as caught:
        client.show_code(URN)
    assert caught.value.message == "cannot connect to functiongraph.nowhere.example:443 (Name or service not known)"


# -- -v: one clean line per retry (item 15 b) -------------------------------------------------------------------


def test_verbose_retry_lines_name_the_call_once(
    project: Path, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    write_config(project, endpoint=f"http://127.0.0.1:{port}")
    code, _out, err = fgsync(capsys, "-v", "push")
    assert code == 1
    retries = [line for line in err.splitlines() if "retry" in line]
    assert len(retries) == 4, err
    for n, line in enumerate(retries, start=1):
        assert re.fullmatch(
            rf"INFO fgsync\.remote\.client: ShowFunctionCode: network: cannot connect to 127\.0\.0\.1:{port} "
            rf"\(Connection refused\); retry {n} of 4 in \d+\.\d s",
            line,
        ), line
        assert "/v2/" not in line
