"""The emulator's HTTP layer over real loopback sockets: HTTP/1.1 keep-alive, chunked and Content-Length bodies,
dropped connections, clients that go away, close() with idle connections, and the emulated link (latency,
bandwidth) measured on the wire."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import TOKEN
from test_emulator import BASE, HELLO, code_body, make_emulator, zip_bytes

from fgsync.emulator import Emulator, EmulatorServer, serve
from fgsync.emulator.httpserver import ThreadingWsgiServer
from fgsync.emulator.link import DOWN, UP, Link

AUTH = {"X-Auth-Token": TOKEN}


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emu = make_emulator()
    emu.create_function("hello", code=zip_bytes({"index.py": HELLO}))
    with serve(emu) as running:
        yield running
    emu.close()


def raw_exchange(sock: socket.socket, request: bytes, *, answers: int = 1, timeout: float = 10) -> list[bytes]:
    """Send raw bytes and read ``answers`` complete HTTP answers (each framed by its Content-Length)."""
    sock.settimeout(timeout)
    sock.sendall(request)
    buffer = b""
    out: list[bytes] = []
    while len(out) < answers:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} answers; buffer {buffer[:200]!r}")
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside an answer")
            rest += chunk
        out.append(head + b"\r\n\r\n" + rest[:length])
        buffer = rest[length:]
    return out


def closed_by_peer(sock: socket.socket, timeout: float = 5) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# ----------------------------------------------------------------------------- keep-alive


def test_httpx_reuses_one_connection_for_many_requests(server: EmulatorServer) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        for _ in range(3):
            answer = client.get(f"{BASE}/hello/config")
            assert answer.status_code == 200 and answer.http_version == "HTTP/1.1"
            assert answer.headers.get("Connection", "").lower() != "close"
        assert client.put(f"{BASE}/hello/code", json=code_body(zip_bytes({"index.py": HELLO}))).status_code == 200
        assert client.get(f"{BASE}/nobody/code").status_code == 404  # errors keep the connection too
        assert client.post(f"{BASE}/hello/invocations", json={"name": "x"}).json()["status"] == 200
        assert client.get("/_emulator/stats").status_code == 200
    assert server.connections_accepted == 1


def test_chunked_request_bodies_work_and_keep_the_connection(server: EmulatorServer) -> None:
    new = zip_bytes({"index.py": HELLO + "# chunked\n"})
    raw = json.dumps(code_body(new)).encode()

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(raw), 7):
            yield raw[start : start + 7]

    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        request = client.build_request("PUT", f"{BASE}/hello/code", content=pieces())
        assert request.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in request.headers
        answer = client.send(request)
        assert answer.status_code == 200 and answer.json()["code_size"] == len(new)
        assert client.get(f"{BASE}/hello/config").json()["digest"] == answer.json()["digest"]
    assert server.emulator.function("hello").code == new
    assert server.connections_accepted == 1


def test_pipelined_requests_and_connection_close_on_a_raw_socket(server: EmulatorServer) -> None:
    get = f"GET {BASE}/hello/config HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\n\r\n".encode()
    body = b'{"name": "raw"}'
    post = (
        f"POST {BASE}/hello/invocations HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    chunked = (
        f"POST {BASE}/hello/invocations HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "5;ext=1\r\n{\"nam\r\n9\r\ne\": \"ch\"}\r\n0\r\nTrailer: x\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port)) as sock:
        first, second, third = raw_exchange(sock, get + post + chunked, answers=3)
        assert first.startswith(b"HTTP/1.1 200") and b'"func_name": "hello"' in first
        assert second.startswith(b"HTTP/1.1 200") and b'\\"hello\\": \\"raw\\"' in second
        assert third.startswith(b"HTTP/1.1 200") and b'\\"hello\\": \\"ch\\"' in third
        assert b"Connection: close" in third
        assert closed_by_peer(sock)
    assert server.connections_accepted == 1


def test_http_1_0_closes_unless_it_asks_for_keep_alive(server: EmulatorServer) -> None:
    request = f"GET {BASE}/hello/config HTTP/1.0\r\nX-Auth-Token: {TOKEN}\r\n"
    with socket.create_connection((server.host, server.port)) as sock:
        (answer,) = raw_exchange(sock, (request + "\r\n").encode())
        assert answer.startswith(b"HTTP/1.1 200")
        assert closed_by_peer(sock)
    with socket.create_connection((server.host, server.port)) as sock:
        answers = raw_exchange(sock, (request + "Connection: keep-alive\r\n\r\n").encode() * 2, answers=2)
        assert all(b"Connection: keep-alive" in a for a in answers)


def test_malformed_framing_is_400_and_closes(server: EmulatorServer) -> None:
    bad_chunk = (
        f"PUT {BASE}/hello/code HTTP/1.1\r\nX-Auth-Token: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    ).encode()
    bad_length = f"PUT {BASE}/hello/code HTTP/1.1\r\nContent-Length: -4\r\n\r\n".encode()
    gzip = f"PUT {BASE}/hello/code HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".encode()
    for request, status in ((bad_chunk, b"400"), (bad_length, b"400"), (gzip, b"501")):
        with socket.create_connection((server.host, server.port)) as sock:
            (answer,) = raw_exchange(sock, request)
            assert answer.split(b" ")[1] == status, answer
            assert b"Connection: close" in answer and b'"error_code": "FSS.' in answer
            assert closed_by_peer(sock)
    assert server.emulator.uploads("hello") == 0


def test_an_unread_body_is_drained_and_the_connection_kept(server: EmulatorServer) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        unknown = client.post(f"{BASE}/hello/nothing-here", content=b"x" * 300_000)
        assert unknown.status_code == 404 and unknown.json()["error_code"] == "APIGW.0101"
        assert client.get(f"{BASE}/hello/config").status_code == 200
    assert server.connections_accepted == 1


def test_a_large_unread_body_closes_the_connection_but_the_answer_still_arrives(server: EmulatorServer) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        for _ in range(2):  # beyond what the server drains: it answers, then closes (lingering, not a reset)
            unknown = client.post(f"{BASE}/hello/nothing-here", content=b"x" * 6_000_000)
            assert unknown.status_code == 404 and unknown.headers["Connection"] == "close"
        assert client.get(f"{BASE}/hello/config").status_code == 200
    assert server.connections_accepted == 3


def test_a_204_answer_has_no_body_and_keeps_the_connection() -> None:
    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        assert callable(start_response)
        if environ["REQUEST_METHOD"] == "DELETE":
            start_response("204 No Content", [("Content-Type", "application/json"), ("Content-Length", "0")])
            return [b""]
        start_response("200 OK", [("Content-Type", "text/plain")])  # no Content-Length: the server adds it
        return [b"ok"]

    httpd = ThreadingWsgiServer(("127.0.0.1", 0), app, Link())  # the plain HTTP layer, without the emulator
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with socket.create_connection(httpd.server_address[:2]) as sock:
            request = b"DELETE /x HTTP/1.1\r\nHost: x\r\n\r\nHEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\n\r\n"
            sock.settimeout(10)
            sock.sendall(request)
            data = b""
            while not data.endswith(b"\r\n\r\nok"):
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
    finally:
        httpd.shutdown()
        httpd.connections.close_idle()
        httpd.server_close()
    deleted, head, get = data.split(b"HTTP/1.1 ")[1:]
    assert deleted.startswith(b"204") and b"Content-Length" not in deleted
    assert head.startswith(b"200") and b"Content-Length: 2\r\n" in head and head.endswith(b"\r\n\r\n")
    assert get.startswith(b"200") and get.endswith(b"ok")
    assert httpd.connections.accepted == 1


# ----------------------------------------------------------------------------- faults and closing


def test_an_injected_drop_still_drops_a_reused_connection(server: EmulatorServer) -> None:
    emu = server.emulator
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        assert client.get(f"{BASE}/hello/code").status_code == 200
        emu.inject("show_code", drop=True)
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{BASE}/hello/code")
        assert client.get(f"{BASE}/hello/code").status_code == 200
    assert server.connections_accepted == 2 and emu.calls("show_code") == 3


def test_a_client_that_goes_away_mid_request_is_no_error(
    server: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fgsync.emulator")
    head = f"PUT {BASE}/hello/code HTTP/1.1\r\nX-Auth-Token: {TOKEN}\r\nContent-Length: 100000\r\n\r\n"
    for request in (head.encode() + b'{"code_type"', b"GET /v2/", b""):
        sock = socket.create_connection((server.host, server.port))
        sock.sendall(request)
        sock.close()
    deadline = time.monotonic() + 5
    while server.connections_open and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.connections_open == 0
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        assert client.get(f"{BASE}/hello/config").status_code == 200
    assert server.emulator.uploads("hello") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_close_ends_idle_keep_alive_connections_and_frees_the_port() -> None:
    emu = make_emulator()
    emu.create_function("hello")
    running = serve(emu)
    port = running.port
    client = httpx.Client(base_url=running.url, headers=AUTH)
    assert client.get(f"{BASE}/hello/config").status_code == 200  # now idle in httpx's pool
    silent = socket.create_connection((running.host, port))  # connected, never sends a byte
    assert _wait_for(lambda: running.connections_open == 2)
    started = time.monotonic()
    running.close()
    assert time.monotonic() - started < 2
    assert closed_by_peer(silent)
    assert _wait_for(lambda: not [t for t in threading.enumerate() if t.name == "fgsync-emulator-connection"])
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # released: a new server could listen here now
    with pytest.raises(httpx.TransportError):
        client.get(f"{BASE}/hello/config")
    client.close()
    silent.close()
    emu.close()


def _wait_for(condition: object, timeout: float = 5) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


# ----------------------------------------------------------------------------- the emulated link


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_link_books_each_direction_on_its_own_virtual_clock() -> None:
    fake = FakeTime()
    link = Link(latency_ms=15, bandwidth_kbit=8000, clock=fake.clock, sleep=fake.sleep)  # 1,000,000 bytes/s
    link.hold()
    assert fake.slept == [0.015]
    link.pace(UP, 500_000)
    link.pace(UP, 500_000)
    assert fake.slept[1:] == [0.5, 0.5]
    before = fake.now
    fake.slept.clear()
    # Another thread booked 0.25 s of the downlink just now: this chunk waits behind it.
    link.pace(DOWN, 250_000)
    link._free[DOWN] = fake.now + 0.25
    link.pace(DOWN, 250_000)
    assert fake.slept == [0.25, 0.5] and fake.now == pytest.approx(before + 0.75)
    fake.now += 10  # idle time earns no credit
    fake.slept.clear()
    link.pace(UP, 100_000)
    assert fake.slept == [pytest.approx(0.1)]
    assert link.chunk_size() == 5000
    link.configure()
    assert not link.shaped and link.chunk_size() == 64 * 1024
    with pytest.raises(ValueError, match="latency"):
        Link(latency_ms=-1)
    with pytest.raises(ValueError, match="bandwidth"):
        link.configure(bandwidth_kbit=0)


def test_latency_holds_each_request_a_round_trip() -> None:
    emu = make_emulator(latency_ms=100)
    emu.create_function("hello")
    with serve(emu) as running, httpx.Client(base_url=running.url, headers=AUTH) as client:
        client.get(f"{BASE}/hello/config")
        started = time.monotonic()
        for _ in range(3):
            assert client.get(f"{BASE}/hello/config").status_code == 200
        assert time.monotonic() - started >= 0.9 * 3 * 0.2
        assert client.get("/_emulator/stats").json()["link"] == {"latency_ms": 100.0, "bandwidth_kbit": None}


def test_bandwidth_paces_uploads_and_answers_on_the_socket() -> None:
    emu = make_emulator()
    emu.create_function("hello", code=zip_bytes({"index.py": "def handler(e, c):\n    return 'x' * 400000\n"}))
    # 8,000 kbit/s = 1,000,000 bytes/s each way.
    with serve(emu, bandwidth_kbit=8000) as running, httpx.Client(
        base_url=running.url, headers=AUTH, timeout=60
    ) as client:
        assert running.link is not emu.link and running.link.bandwidth_kbit == 8000
        body = json.dumps(code_body(zip_bytes({"index.py": HELLO, "pad.txt": "p" * 10}))).encode()
        padded = body[:-1] + b', "description_padding": "' + b"z" * 500_000 + b'"}'
        started = time.monotonic()
        assert client.put(f"{BASE}/hello/code", content=padded).status_code == 200
        assert time.monotonic() - started >= 0.9 * len(padded) / 1_000_000

        emu.set_code("hello", zip_bytes({"index.py": "def handler(e, c):\n    return 'x' * 400000\n"}))
        started = time.monotonic()
        answer = client.post(f"{BASE}/hello/invocations", json={})
        assert answer.status_code == 200 and len(answer.content) > 400_000
        assert time.monotonic() - started >= 0.9 * len(answer.content) / 1_000_000


def test_concurrent_uploads_share_one_link() -> None:
    emu = make_emulator()
    emu.create_function("hello")
    payload = b"{" + b" " * 250_000 + b"}"  # parsed, then refused for its missing code_type: the bytes still cross
    with serve(emu, bandwidth_kbit=8000) as running:
        elapsed: list[float] = []

        def upload() -> None:
            with httpx.Client(base_url=running.url, headers=AUTH, timeout=60) as client:
                begun = time.monotonic()
                assert client.put(f"{BASE}/hello/code", content=payload).status_code == 400
                elapsed.append(time.monotonic() - begun)

        started = time.monotonic()
        threads = [threading.Thread(target=upload) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        both = time.monotonic() - started
    # One alone would take 0.25 s; sharing the link, the pair needs the time of both bodies.
    assert len(elapsed) == 2 and both >= 0.9 * 2 * len(payload) / 1_000_000


def test_the_link_changes_through_the_control_api(server: EmulatorServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        changed = client.put("/_emulator/link", json={"latency_ms": 50, "bandwidth_kbit": 20000})
        assert changed.status_code == 200 and changed.json() == {"latency_ms": 50.0, "bandwidth_kbit": 20000.0}
        assert server.emulator.link.latency_ms == 50
        started = time.monotonic()
        client.get("/_emulator/stats")
        assert time.monotonic() - started >= 0.9 * 0.1
        for bad in ({"latency_ms": -1}, {"bandwidth_kbit": 0}, {"latency_ms": "5"}, {"jitter": 1}):
            assert client.put("/_emulator/link", json=bad).status_code == 400, bad
        assert client.put("/_emulator/link", json={}).json() == {"latency_ms": 0.0, "bandwidth_kbit": None}


def test_in_process_calls_are_not_shaped() -> None:
    emu: Emulator = make_emulator(latency_ms=500)
    emu.create_function("hello")
    client = httpx.Client(transport=httpx.WSGITransport(app=emu.wsgi_app), base_url="http://x", headers=AUTH)
    started = time.monotonic()
    assert client.get(f"{BASE}/hello/config").status_code == 200
    assert time.monotonic() - started < 0.5
