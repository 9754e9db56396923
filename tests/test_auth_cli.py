"""`fgsync login / logout / auth` end to end: main([...]) against a loopback emulator, an in-memory keyring."""

from __future__ import annotations

import io
import json
import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import keyring
import keyring.backends.fail
import pytest

from fgsync.auth.credentials import resolve_credentials
from fgsync.auth.keyring_store import KeyringStore
from fgsync.cli import main
from fgsync.errors import EXIT_CREDENTIALS, EXIT_OK, EXIT_USAGE
from tests.conftest import (
    AK,
    DOMAIN,
    HELLO_PY,
    PASSWORD,
    PROJECT_ID,
    SECRETS,
    SK,
    TOKEN,
    USER,
    MemoryKeyring,
    make_tree,
    write_config,
)

AUTH_TABLE = f'[auth]\nuser = "{USER}"\ndomain = "{DOMAIN}"\n'


def _write(folder: Path, url: str, extra: str = "") -> Path:
    make_tree(folder / "functions" / "hello", {"index.py": HELLO_PY})
    return write_config(folder, endpoint=url, extra=extra)


@pytest.fixture
def config(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """fgsync.toml pointing both endpoints at the emulator; the tests run in its folder."""
    monkeypatch.chdir(tmp_path)
    return _write(tmp_path, emulator.url)


@pytest.fixture
def offline_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """fgsync.toml for tests that must fail before any network call (the discard port answers nothing)."""
    monkeypatch.chdir(tmp_path)
    return _write(tmp_path, "http://127.0.0.1:9")


def _run(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _no_secret(*texts: str, extra: tuple[str, ...] = ()) -> None:
    for text in texts:
        for secret in (*SECRETS, *extra):
            assert secret not in text


def _stored_token(url: str) -> str:
    raw = KeyringStore(url, PROJECT_ID).get("token")
    assert raw is not None
    token: str = json.loads(raw)["token"]
    return token


def _show_code(emulator: Any, **env: str) -> int:
    """GET ShowFunctionCode with whatever credentials fgsync resolves now."""
    urn = emulator.emulator.create_function(f"probe{time.monotonic_ns()}")
    creds = resolve_credentials(iam_endpoint=emulator.url, project_id=PROJECT_ID, env=env)
    url = f"{emulator.url}/v2/{PROJECT_ID}/fgs/functions/{urn}/code"
    with httpx.Client(auth=creds.auth()) as client:
        return client.get(url).status_code


def test_password_login_stores_a_working_token(
    config: Path,
    emulator: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, err = _run(
        ["login", "--user", USER, "--domain", DOMAIN, "--password-stdin"], capsys, monkeypatch, PASSWORD + "\n"
    )
    assert code == EXIT_OK, err
    assert f"logged in as {USER} ({DOMAIN}); token for project {PROJECT_ID} stored in the OS keyring" in out
    assert "(expires in 23 h 59 min)" in out or "(expires in 24 h)" in out
    token = _stored_token(emulator.url)
    assert len(token) > 1000
    assert _show_code(emulator) == 200
    assert KeyringStore(emulator.url, PROJECT_ID).get("password") is None
    _no_secret(out, err, caplog.text, extra=(token,))


def test_remembered_password_renews_an_expired_token(
    tmp_path: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, emulator.url, AUTH_TABLE)
    code, out, err = _run(["login", "--password-stdin", "--remember-password"], capsys, monkeypatch, PASSWORD + "\n")
    assert code == EXIT_OK, err
    assert "password kept in the OS keyring" in out
    first = _stored_token(emulator.url)
    emulator.emulator.expire_tokens()
    assert _show_code(emulator) == 200
    assert _stored_token(emulator.url) != first
    _no_secret(out, err, extra=(first,))


def test_wrong_password_is_exit_3_without_the_password(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    wrong = "not-the-password-42"
    code, out, err = _run(["login", "-u", USER, "-d", DOMAIN, "--password-stdin"], capsys, monkeypatch, wrong + "\n")
    assert code == EXIT_CREDENTIALS
    assert err.startswith("Error: IAM at http://127.0.0.1:")
    assert f"refused the login of user '{USER}' of account '{DOMAIN}': wrong user name, account name or password" in err
    assert memory_keyring.entries == {}
    _no_secret(out, err, extra=(wrong,))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["login", "--password-stdin"], "Error: no IAM user: pass --user or set auth.user in fgsync.toml"),
        (["login", "-u", USER, "--password-stdin"], "Error: no account name: pass --domain or set auth.domain"),
        (
            ["login", "-u", USER, "-d", DOMAIN],
            "Error: no terminal to ask for the password: pipe it in with --password-stdin",
        ),
        (["login", "--password-stdin", "--token-stdin"], "Error: --password-stdin and --token-stdin cannot be used"),
        (["login", "--token-stdin", "--remember-password"], "Error: --remember-password needs a password login"),
        (["login", "--ak", AK], 'Error: --ak stores an access key pair, which fgsync uses when auth.method = "aksk"'),
    ],
)
def test_login_usage_errors(
    offline_config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    code, _out, err = _run(args, capsys, monkeypatch, PASSWORD + "\n")
    assert code == EXIT_USAGE
    assert err.startswith(message)
    _no_secret(err)


def test_pasted_token_then_auth_then_logout(
    config: Path,
    emulator: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    memory_keyring: MemoryKeyring,
) -> None:
    code, out, err = _run(["login", "--token-stdin", "--user", USER], capsys, monkeypatch, f"  {TOKEN}  \n")
    assert code == EXIT_OK, err
    assert _stored_token(emulator.url) == TOKEN
    assert _show_code(emulator) == 200

    code, out, err = _run(["auth"], capsys, monkeypatch)
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0] == "source      OS keyring"
    assert "kind        IAM token" in lines
    assert f"user        {USER}" in lines
    assert f"project     {PROJECT_ID}" in lines
    assert "expires     unknown" in lines
    assert "renewal     none: run `fgsync login` when it expires" in lines

    code, out, err = _run(["logout"], capsys, monkeypatch)
    assert (code, out) == (EXIT_OK, f"removed 2 keyring entries for project {PROJECT_ID}\n")
    assert memory_keyring.entries == {}
    code, out, err = _run(["logout", "--json"], capsys, monkeypatch)
    assert json.loads(out) == {"removed": 0, "project": PROJECT_ID, "iam_endpoint": emulator.url}
    _no_secret(out, err)


def test_auth_json_document(
    config: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _run(
        ["--json", "login", "-u", USER, "-d", DOMAIN, "--password-stdin", "--remember-password"],
        capsys,
        monkeypatch,
        PASSWORD + "\n",
    )
    assert code == EXIT_OK, err
    login_doc = json.loads(out)
    code, out, err = _run(["auth", "--json"], capsys, monkeypatch)
    assert code == EXIT_OK
    doc = json.loads(out)
    assert doc == login_doc | {"expires_in_s": doc["expires_in_s"]}
    assert set(doc) == {
        "source", "kind", "user", "domain", "project", "iam_endpoint", "expires_at", "expired", "expires_in_s",
        "password_remembered", "ak",
    }  # fmt: skip
    assert doc["source"] == "keyring" and doc["kind"] == "token"
    assert (doc["user"], doc["domain"], doc["project"]) == (USER, DOMAIN, PROJECT_ID)
    assert doc["expired"] is False and 86000 < doc["expires_in_s"] <= 86400
    assert doc["password_remembered"] is True
    _no_secret(out, err, extra=(_stored_token(emulator.url),))


def test_auth_without_credentials_is_exit_3(
    config: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _run(["auth"], capsys, monkeypatch)
    assert code == EXIT_CREDENTIALS
    assert out.splitlines()[0] == "source      none"
    assert err == (
        f"Error: no credentials for project {PROJECT_ID} at {emulator.url}: run `fgsync login`, "
        "or set FGSYNC_TOKEN (or CLOUD_SDK_AK and CLOUD_SDK_SK)\n"
    )
    code, out, err = _run(["auth", "--json"], capsys, monkeypatch)
    assert code == EXIT_CREDENTIALS
    assert json.loads(out)["source"] == "none"


def test_auth_from_the_environment_never_shows_the_secret(
    offline_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUD_SDK_AK", AK)
    monkeypatch.setenv("CLOUD_SDK_SK", SK)
    code, out, err = _run(["auth"], capsys, monkeypatch)
    assert code == EXIT_OK
    assert "source      environment (CLOUD_SDK_AK, CLOUD_SDK_SK)" in out
    assert "access key  AKTE…0000" in out
    assert AK not in out
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    code, out, err = _run(["auth", "--json"], capsys, monkeypatch)
    assert json.loads(out)["source"] == "env"
    _no_secret(out, err)


def test_aksk_login_signs_requests(
    tmp_path: Path,
    emulator: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    memory_keyring: MemoryKeyring,
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, emulator.url, '[auth]\nmethod = "aksk"\n')
    code, out, err = _run(["login", "--ak", AK], capsys, monkeypatch, SK + "\n")
    assert code == EXIT_OK, err
    assert out == f"stored access key AKTE…0000 for project {PROJECT_ID} in the OS keyring\n"
    urn = emulator.emulator.create_function("signed")
    creds = resolve_credentials(iam_endpoint=emulator.url, project_id=PROJECT_ID, auth_method="aksk", env={})
    with httpx.Client(auth=creds.auth()) as client:
        assert client.get(f"{emulator.url}/v2/{PROJECT_ID}/fgs/functions/{urn}/code").status_code == 200
    code, out, err = _run(["auth"], capsys, monkeypatch)
    assert code == EXIT_OK and "access key  AKTE…0000" in out
    code, out, err = _run(["login", "--ak", AK, "--password-stdin"], capsys, monkeypatch, SK + "\n")
    assert code == EXIT_USAGE
    code, out, err = _run(["logout"], capsys, monkeypatch)
    assert memory_keyring.entries == {}
    _no_secret(out, err)


def test_no_keyring_backend_is_an_actionable_exit_3(
    offline_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())
    code, out, err = _run(["login", "--token-stdin"], capsys, monkeypatch, TOKEN + "\n")
    assert code == EXIT_CREDENTIALS
    assert err.startswith("Error: no OS keyring is available: fgsync never stores credentials in a plain file;")
    assert "FGSYNC_TOKEN" in err
    _no_secret(out, err)


def test_hidden_password_prompt_on_a_terminal(tmp_path: Path, emulator: Any) -> None:
    """A real pseudo-terminal: the prompt appears, the typed password is not echoed, the login succeeds."""
    pytest.importorskip("termios", reason="pseudo-terminals are POSIX-only")
    import pty

    config = _write(tmp_path, emulator.url)
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "tests.conftest.MemoryKeyring", "PYTHONPATH": os.getcwd()}
    # The child becomes a session leader and takes the pty as its controlling terminal, as a login shell would;
    # getpass reads /dev/tty, so without this it would fall back to an echoing stdin.
    launcher = (
        "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.executable, [sys.executable, '-m', 'fgsync', *sys.argv[1:]])"
    )
    master, slave = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", launcher, "--config", str(config), "login", "-u", USER, "-d", DOMAIN],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env=env,
        cwd=os.getcwd(),
    )
    os.close(slave)
    transcript = b""
    try:
        transcript = _read_until(master, b"Password for dev-user", transcript)
        # click prints the prompt before getpass turns echo off (and flushes pending input): type only then.
        _wait_for_echo_off(master)
        os.write(master, PASSWORD.encode() + b"\n")
        transcript = _read_until(master, None, transcript)
        assert child.wait(timeout=30) == EXIT_OK, transcript.decode(errors="replace")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    text = transcript.decode(errors="replace")
    assert "logged in as dev-user (my-account)" in text
    _no_secret(text)


def _wait_for_echo_off(fd: int, timeout: float = 30.0) -> None:
    import termios

    deadline = time.monotonic() + timeout
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        if time.monotonic() > deadline:
            raise AssertionError("the terminal's echo was never turned off for the password prompt")
        time.sleep(0.01)


def _read_until(fd: int, marker: bytes | None, seen: bytes, timeout: float = 30.0) -> bytes:
    """Read the pty until marker appears (or, for None, until the child closes it), with a deadline."""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {marker!r}; got {seen.decode(errors='replace')!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            if marker is None:
                return seen
            raise AssertionError(f"the child exited before {marker!r}; got {seen.decode(errors='replace')!r}")
        seen += chunk
    return seen
