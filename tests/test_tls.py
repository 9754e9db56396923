"""TLS as a user meets it: `fgsync push` and `fgsync login` against a real TLS server on a loopback port, and a
``ca_bundle`` that is not what it should be.

The server is the emulator behind a certificate made with the ``openssl`` command at test time: a
self-signed one (not trusted until ``ca_bundle`` names it), and one for another host name. Verification
failures are not retried and point at ``ca_bundle``; with ``ca_bundle`` the same server works.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import pytest
from conftest import DOMAIN, HELLO_PY, PASSWORD, PROJECT_ID, REGION, SECRETS, TOKEN, USER, make_tree, write_config

from fgsync.cli import main
from fgsync.emulator import Emulator

VERIFY_HINT = (
    "if your company's proxy or a private CA issues it, set `ca_bundle` in fgsync.toml to a PEM file of that CA "
    "(fgsync never turns TLS verification off)"
)


def make_cert(folder: Path, name: str, san: str) -> tuple[Path, Path]:
    """A self-signed certificate (it is its own CA) and its key, for the subjectAltName ``san``."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"]
    command += ["-addext", f"subjectAltName={san}"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: no certificates to test TLS with")
    folder = tmp_path_factory.mktemp("certs")
    return {
        "loopback": make_cert(folder, "loopback", "IP:127.0.0.1,DNS:localhost"),
        "other": make_cert(folder, "other", "DNS:other.example"),
    }


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class TLSEmulator(socketserver.ThreadingMixIn, WSGIServer):
    """The emulator's WSGI app behind TLS; counts handshakes (one per connection fgsync opens)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, emulator: Emulator, cert: tuple[Path, Path]) -> None:
        super().__init__(("127.0.0.1", 0), _Quiet)
        self.set_app(emulator.wsgi_app)
        self.emulator = emulator
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert[0]), str(cert[1]))
        self.handshakes = 0
        self.url = f"https://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        self.handshakes += 1
        sock.settimeout(5)
        return self.context.wrap_socket(sock, server_side=True), address  # closes sock if the client refuses

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up on the certificate is what these tests are about

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


@pytest.fixture
def serve_tls() -> Iterator[Any]:
    """Factory: serve_tls(cert) -> a TLSEmulator with the function `hello`, closed after the test."""
    servers: list[TLSEmulator] = []

    def start(cert: tuple[Path, Path]) -> TLSEmulator:
        emu = Emulator(project_id=PROJECT_ID, region=REGION, token=TOKEN, user=USER, password=PASSWORD, domain=DOMAIN)
        emu.create_function("hello")
        server = TLSEmulator(emu, cert)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    return tmp_path


def push(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["push", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for secret in SECRETS:
        assert secret not in out + err
    return code, out, err


def test_a_self_signed_certificate_fails_at_once_with_the_ca_bundle_hint(
    project: Path, certs: Any, serve_tls: Any, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve_tls(certs["loopback"])
    write_config(project, endpoint=server.url)
    code, _out, err = push(capsys)
    assert code == 1
    port = server.server_address[1]
    assert (
        f"hello  error network: cannot verify the TLS certificate of 127.0.0.1:{port} (self-signed certificate); "
        f"{VERIFY_HINT}\n"
    ) in err
    assert server.handshakes == 1 and retry_sleeps == []  # not retried: another try cannot verify it either
    assert server.emulator.uploads("hello") == 0


def test_with_ca_bundle_the_same_server_works(
    project: Path, certs: Any, serve_tls: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve_tls(certs["loopback"])
    shutil.copy(certs["loopback"][0], project / "corp-ca.pem")
    write_config(project, endpoint=server.url, extra='ca_bundle = "corp-ca.pem"')
    code, out, err = push(capsys)
    assert code == 0, err
    assert "pushed" in out
    assert server.emulator.uploads("hello") == 1


def test_a_certificate_for_another_host_fails_at_once_naming_endpoint(
    project: Path, certs: Any, serve_tls: Any, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve_tls(certs["other"])
    shutil.copy(certs["other"][0], project / "corp-ca.pem")  # trusted, but not for 127.0.0.1
    write_config(project, endpoint=server.url, extra='ca_bundle = "corp-ca.pem"')
    code, out, _err = push(capsys, "--json")
    assert code == 1
    (error,) = [event for event in map(json.loads, out.splitlines()) if event["event"] == "error"]
    port = server.server_address[1]
    assert error["code"] == "network" and error["retryable"] is False
    assert error["message"] == (
        f"the TLS certificate of 127.0.0.1:{port} is for another host (IP address mismatch, certificate is not "
        f"valid for '127.0.0.1'.); check `endpoint` in fgsync.toml, or {VERIFY_HINT}"
    )
    assert server.handshakes == 1 and retry_sleeps == []


def test_https_to_a_plain_http_server_says_it_does_not_speak_tls(
    project: Path, emulator: Any, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.emulator.create_function("hello")
    url = emulator.url.replace("http://", "https://")
    write_config(project, endpoint=url)
    code, _out, err = push(capsys)
    assert code == 1
    port = emulator.port
    assert f"hello  error network: 127.0.0.1:{port} does not speak TLS (" in err
    assert "); check `endpoint` in fgsync.toml (https:// needs a TLS server; a local emulator is http://)\n" in err
    assert retry_sleeps == []


def test_login_to_an_untrusted_iam_fails_at_once_with_the_hint(
    project: Path, certs: Any, serve_tls: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve_tls(certs["loopback"])
    write_config(project, endpoint=server.url)
    monkeypatch.delenv("FGSYNC_TOKEN")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = main(["login", "--user", USER, "--domain", DOMAIN, "--password-stdin"])
    out, err = capsys.readouterr()
    assert code == 1
    port = server.server_address[1]
    assert err == (
        f"Error: network: IAM login: cannot verify the TLS certificate of 127.0.0.1:{port} (self-signed "
        f"certificate); {VERIFY_HINT}\n"
    )
    assert server.handshakes == 1
    assert PASSWORD not in out + err


# -- ca_bundle that is not a PEM file of CA certificates (issue 9, item 11) --------------------------------------


def ca_bundle_error(project: Path, written: str, problem: str) -> str:
    return (
        f'Error: fgsync.toml: ca_bundle = "{written}": must be a PEM file of CA certificates ("-----BEGIN '
        f'CERTIFICATE-----" blocks), relative to the folder of fgsync.toml; {project / written} {problem}\n'
    )


def test_a_ca_bundle_that_is_not_pem_is_a_config_error(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "corp-ca.pem").write_text("this is not a certificate\n")
    write_config(project, endpoint=emulator.url, extra='ca_bundle = "corp-ca.pem"')
    code, out, err = push(capsys)
    assert code == 2
    assert out == ""
    assert err == ca_bundle_error(project, "corp-ca.pem", "has no certificate in it")
    assert emulator.emulator.calls("show_code") == 0


@pytest.mark.parametrize(
    ("written", "make", "problem"),
    [
        (
            "corp-ca.der",
            lambda cert, key: ssl.PEM_cert_to_DER_cert(cert.read_text()),
            "is a binary (DER) certificate; convert it with `openssl x509 -inform der -in corp-ca.der -out "
            "corp-ca.pem` and point ca_bundle at the .pem",
        ),
        ("corp-ca.pem", lambda cert, key: key.read_bytes(), "holds a private key but no certificate"),
        (
            "corp-ca.pem",
            lambda cert, key: cert.read_bytes()[:300],
            "has a damaged certificate in it (OpenSSL: [X509] PEM lib)",
        ),
    ],
    ids=["der", "private-key", "damaged"],
)
def test_ca_bundle_mistakes_are_named(
    project: Path, certs: Any, capsys: pytest.CaptureFixture[str], written: str, make: Any, problem: str
) -> None:
    (project / written).write_bytes(make(*certs["loopback"]))
    write_config(project, endpoint="https://127.0.0.1:9", extra=f'ca_bundle = "{written}"')
    code, _out, err = push(capsys)
    assert code == 2
    assert err == ca_bundle_error(project, written, problem)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads mode-000 files")
def test_an_unreadable_ca_bundle_is_a_config_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = project / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    bundle.chmod(0)
    write_config(project, endpoint="https://127.0.0.1:9", extra='ca_bundle = "corp-ca.pem"')
    code, _out, err = push(capsys)
    assert code == 2
    assert err == ca_bundle_error(project, "corp-ca.pem", "cannot be read (Permission denied)")


def test_login_checks_ca_bundle_too(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "corp-ca.pem").write_text("")
    write_config(project, endpoint="https://127.0.0.1:9", extra='ca_bundle = "corp-ca.pem"')
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = main(["login", "--user", USER, "--domain", DOMAIN, "--password-stdin"])
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert code == 2
    assert err == ca_bundle_error(project, "corp-ca.pem", "has no certificate in it")


def test_a_ca_bundle_deleted_after_loading_is_a_config_error(project: Path) -> None:
    from fgsync.cli.context import AppContext
    from fgsync.config import load_config
    from fgsync.errors import ConfigError

    bundle = project / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    config = load_config(write_config(project, endpoint="https://127.0.0.1:9", extra='ca_bundle = "corp-ca.pem"'))
    bundle.unlink()  # `watch` keeps a config for hours; the file may go meanwhile
    with pytest.raises(ConfigError) as caught:
        AppContext().verify(config)
    expected = ca_bundle_error(project, "corp-ca.pem", "cannot be read (No such file or directory)")
    assert f"Error: {caught.value}\n" == expected
    assert caught.value.key == "ca_bundle" and caught.value.exit_code == 2
