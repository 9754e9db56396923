"""The overall deadline of each HTTP request (issue 9, item 8): a server that trickles bytes, says nothing, or
never reads the upload cannot hold fgsync past ``request_timeout_s`` (plus the body's time at 100 KB/s).

The servers are real loopback sockets (``raw_server``); per-read timeouts alone would let each of them keep a
request alive forever.
"""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DOMAIN, HELLO_PY, PASSWORD, PROJECT_ID, SECRETS, TOKEN, USER, RawServer, make_tree, write_config

from fgsync.cli import main
from fgsync.errors import NetworkError
from fgsync.remote import FunctionGraphClient, RetryPolicy, install_deadlines, network_error, request_budget
from fgsync.remote.deadline import Deadline

URN = f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"
TRICKLE = 0.05  # seconds between two bytes: far shorter than any per-read timeout


class TokenAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["X-Auth-Token"] = TOKEN
        yield request


def trickle_head(conn: socket.socket, _request: bytes, server: RawServer) -> None:
    """The status line and headers, one byte at a time, forever."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Padding: " + b"x" * 100_000
    for byte in head:
        if server.stop.wait(TRICKLE):
            return
        conn.sendall(bytes([byte]))


def trickle_body(conn: socket.socket, _request: bytes, server: RawServer) -> None:
    """A proper head announcing a body that then comes one byte at a time, forever."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{")
    while not server.stop.wait(TRICKLE):
        conn.sendall(b" ")


def silent(_conn: socket.socket, _request: bytes, server: RawServer) -> None:
    """Reads the request and never answers."""
    server.stop.wait(30)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    return tmp_path


@pytest.mark.timeout(30)
def test_push_against_a_trickling_server_fails_as_a_network_error_in_bounded_time(
    project: Path, raw_server: Any, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    server = raw_server(trickle_body)
    write_config(project, endpoint=server.url, extra="request_timeout_s = 0.5")
    started = time.monotonic()
    code = main(["push"])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 1
    assert (
        f"hello  error network: no complete answer from 127.0.0.1:{server.port} within 0.5 s "
        "(request_timeout_s in fgsync.toml)\n"
    ) in err
    assert "Traceback" not in out + err and TOKEN not in out + err
    # Retried like every network error: the first try and 4 retries, each cut at the deadline.
    assert server.connections == 5 and len(retry_sleeps) == 4
    assert 2.5 <= elapsed < 2.5 + 5


@pytest.mark.timeout(30)
@pytest.mark.parametrize("answer", [trickle_head, trickle_body, silent], ids=["head", "body", "silent"])
def test_every_phase_of_the_answer_is_bounded(raw_server: Any, answer: Any) -> None:
    server = raw_server(answer)
    client = FunctionGraphClient(server.url, PROJECT_ID, auth=TokenAuth(), retry=RetryPolicy(attempts=0), timeout=0.4)
    started = time.monotonic()
    with client, pytest.raises(NetworkError) as caught:
        client.show_code(URN)
    assert time.monotonic() - started < 0.4 + 0.5
    assert caught.value.retryable
    assert caught.value.message == (
        f"no complete answer from 127.0.0.1:{server.port} within 0.4 s (request_timeout_s in fgsync.toml)"
    )


@pytest.mark.timeout(30)
def test_an_upload_to_a_server_that_never_reads_is_bounded(
    raw_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The body's allowance made negligible, so the test need not wait for 32 MB at 100 KB/s.
    monkeypatch.setattr("fgsync.remote.deadline.UPLOAD_BYTES_PER_S", 10**12)
    server = raw_server(silent, read_request=False)
    client = FunctionGraphClient(server.url, PROJECT_ID, auth=TokenAuth(), retry=RetryPolicy(attempts=0), timeout=0.5)
    data = b"PK" + bytes(32 * 1024 * 1024)  # more than the socket buffers hold: sending blocks
    started = time.monotonic()
    with client, pytest.raises(NetworkError) as caught:
        client.update_code(URN, code_type="zip", code_filename="index.zip", data=data, depend_version_list=())
    assert time.monotonic() - started < 0.5 + 1.0
    assert caught.value.message.startswith(f"no complete answer from 127.0.0.1:{server.port} within 0.5 s")


def test_the_budget_adds_the_body_at_100_kb_a_second() -> None:
    assert request_budget(60) == 60
    assert request_budget(60, 10 * 1024 * 1024) == pytest.approx(60 + 102.4)
    expired = Deadline(seconds=61.2, at=0.0, clock=lambda: 1.0)
    error = network_error(httpx.WriteTimeout("timed out"), httpx.URL("https://fg.example/v2/x"), budget=expired,
                          request_timeout=60)  # fmt: skip
    assert error.message == (
        "no complete answer from fg.example:443 within 61.2 s (request_timeout_s = 60, plus 1.2 s for the "
        "request body at 100 KB/s)"
    )


def test_a_normal_answer_is_not_affected(emulator: Any) -> None:
    emulator.emulator.create_function("hello")
    client = FunctionGraphClient(emulator.url, PROJECT_ID, auth=TokenAuth(), timeout=0.5)
    with client:
        for _ in range(3):  # the same keep-alive connection, each request with its own deadline
            assert client.show_code(URN).digest


def test_the_deadline_is_fitted_into_every_connection_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # httpx mounts a proxy transport for it
    with httpx.Client() as client:
        assert install_deadlines(client) == 2
        assert install_deadlines(client) == 2  # idempotent
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
        assert install_deadlines(client) == 0  # no sockets, nothing to bound


@pytest.mark.timeout(30)
def test_login_against_a_trickling_iam_fails_in_bounded_time(
    project: Path, raw_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = raw_server(trickle_head)
    write_config(project, endpoint=server.url, extra="request_timeout_s = 0.5")
    monkeypatch.delenv("FGSYNC_TOKEN")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    started = time.monotonic()
    code = main(["login", "--user", USER, "--domain", DOMAIN, "--password-stdin"])
    out, err = capsys.readouterr()
    assert code == 1
    assert time.monotonic() - started < 0.5 + 1.0
    assert err == (
        f"Error: network: IAM login: no complete answer from 127.0.0.1:{server.port} within 0.5 s "
        "(request_timeout_s in fgsync.toml)\n"
    )
    for secret in SECRETS:
        assert secret not in out + err
