"""Shared fixtures: hygiene (autouse), trees, configs, an in-memory keyring and a loopback emulator."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import textwrap
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import keyring
import keyring.backend
import keyring.errors
import pytest

PROJECT_ID = "0123456789abcdef0123456789abcdef"
REGION = "cn-north-4"
TOKEN = "MIItest-token-" + "x" * 40 + "-end"
AK = "AKTESTEXAMPLE0000000"
SK = "sk-test-secret-" + "y" * 24
USER = "dev-user"
PASSWORD = "correct horse battery staple"
DOMAIN = "my-account"

#: Every secret the fixtures hand out; tests assert none of them reaches output.
SECRETS = (TOKEN, SK, PASSWORD)

#: Read at import, before the hygiene fixture drops FGSYNC_* from the environment. CI sets it.
REQUIRE_NODE = os.environ.get("FGSYNC_REQUIRE_NODE") == "1"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring that lives in a dict: the unit-test backend."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> Optional[str]:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.entries[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError(username) from None


@pytest.fixture(autouse=True)
def _hygiene(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No credential or config from the developer's environment; HOME and caches in a temp folder."""
    for name in list(os.environ):
        if name.startswith(("FGSYNC_", "CLOUD_SDK_")):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("FGSYNC_CACHE_DIR", str(home / "fgsync-cache"))
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def node() -> str:
    """The ``node`` on PATH, for the Node.js tests: without one they skip, or fail with FGSYNC_REQUIRE_NODE=1."""
    found = shutil.which("node")
    if found is None:
        reason = "node is not on PATH (install Node.js to run the Node.js tests)"
        if REQUIRE_NODE:
            pytest.fail(f"FGSYNC_REQUIRE_NODE=1 but {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    """The in-memory keyring the hygiene fixture installed."""
    backend = keyring.get_keyring()
    assert isinstance(backend, MemoryKeyring)
    return backend


def make_tree(root: Path, files: Mapping[str, Any]) -> Path:
    """Create files under root: {"a/b.py": "text" or b"bytes"}; returns root."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Callable[..., Path]:
    """Factory: tree({"index.py": "..."}, name="hello") -> the folder."""

    def factory(files: Mapping[str, Any], name: str = "hello") -> Path:
        return make_tree(tmp_path / "functions" / name, files)

    return factory


HELLO_PY = textwrap.dedent(
    """\
    import json


    def handler(event, context):
        return {"statusCode": 200, "body": json.dumps({"hello": event.get("name", "world")})}
    """
)


def write_config(
    folder: Path,
    *,
    endpoint: str | None = None,
    functions: Optional[list[dict[str, Any]]] = None,
    extra: str = "",
    iam_endpoint: str | None = None,
) -> Path:
    """Write fgsync.toml into folder. functions: [{"name": ..., "source": ..., other keys}]."""
    lines = [f'region = "{REGION}"', f'project_id = "{PROJECT_ID}"']
    if endpoint:
        lines.append(f'endpoint = "{endpoint}"')
        lines.append(f'iam_endpoint = "{iam_endpoint or endpoint}"')
    lines.append(extra)
    for fn in functions if functions is not None else [{"name": "hello", "source": "functions/hello"}]:
        lines.append("[[function]]")
        for key, value in fn.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (list, tuple)):
                items = ", ".join(f'"{v}"' for v in value)
                lines.append(f"{key} = [{items}]")
            else:
                lines.append(f'{key} = "{value}"')
    path = folder / "fgsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def emulator() -> Iterator[Any]:
    """A real emulator on a loopback port. Yields the server: .url, .emulator (the app's Python API)."""
    from fgsync.emulator import Emulator, serve

    emu = Emulator(
        project_id=PROJECT_ID,
        region=REGION,
        token=TOKEN,
        ak=AK,
        sk=SK,
        user=USER,
        password=PASSWORD,
        domain=DOMAIN,
    )
    with serve(emu, host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's waits between retries, recorded instead of slept: CLI tests see every retry, at once."""
    from fgsync.remote import FunctionGraphClient

    sleeps: list[float] = []
    defaults = FunctionGraphClient.__init__.__kwdefaults__
    assert defaults is not None and "sleep" in defaults
    monkeypatch.setitem(defaults, "sleep", sleeps.append)
    return sleeps


Answer = Callable[[socket.socket, bytes, "RawServer"], None]


class RawServer:
    """A loopback TCP server whose behaviour is a test's own function: for servers that misbehave on purpose.

    Each connection runs in a thread: the request (head and Content-Length body) is read (unless
    ``read_request=False``: a server that never reads what it is sent), then
    ``answer(conn, request, server)`` writes whatever it likes and the connection is closed. ``stop`` is set
    at close, so an answer that trickles forever (``while not server.stop.wait(0.05)``) ends with the test.

    Attributes:
        url: ``http://127.0.0.1:PORT`` (``https://`` with ``tls``).
        connections: connections accepted so far (TLS: handshakes attempted).
        requests: the raw requests read.
    """

    def __init__(self, answer: Answer, *, tls: Optional[ssl.SSLContext] = None, read_request: bool = True) -> None:
        self._answer = answer
        self._tls = tls
        self._read_request = read_request
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.connections = 0
        self.requests: list[bytes] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="raw-server", daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            request = _read_request(conn) if self._read_request else b""
            self.requests.append(request)
            self._answer(conn, request, self)
        except OSError:  # the client gave up (or refused the certificate): that is the point of most tests
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(5)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def http_answer(status: str, body: bytes = b"", headers: Mapping[str, str] = {}) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection."""
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """Factory: raw_server(answer, tls=None, read_request=True) -> a running RawServer, closed after the test."""
    servers: list[RawServer] = []

    def start(answer: Answer, *, tls: Optional[ssl.SSLContext] = None, read_request: bool = True) -> RawServer:
        server = RawServer(answer, tls=tls, read_request=read_request)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
