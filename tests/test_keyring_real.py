"""fgsync's keyring store against a real Secret Service (gnome-keyring on a private D-Bus session).

Run them with ``.ci/with-secret-service python -m pytest -m secret_service tests/test_keyring_real.py``.
Without a Secret Service they skip and say why; with ``FGSYNC_REQUIRE_SECRET_SERVICE=1`` (CI) they fail instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import keyring
import keyring.errors
import pytest

from fgsync.auth.credentials import resolve_credentials
from fgsync.auth.iam import IssuedToken
from fgsync.auth.keyring_store import SERVICE, KeyringStore, save_token
from fgsync.cli import main
from fgsync.errors import EXIT_OK
from tests.conftest import DOMAIN, HELLO_PY, PASSWORD, PROJECT_ID, SECRETS, USER, make_tree, write_config

pytestmark = pytest.mark.secret_service

# Read at import time: the autouse hygiene fixture removes every FGSYNC_* variable before a test runs.
REQUIRE = os.environ.get("FGSYNC_REQUIRE_SECRET_SERVICE") == "1"

# 5,000 characters: four times what Windows Credential Manager takes in one entry, twice a usual IAM token.
LONG_TOKEN = "MII" + "".join(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64] for i in range(4997)
)


def _probe(timeout: float = 5.0) -> tuple[Any, str]:
    """(the SecretService backend, "") when usable, else (None, why not)."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return None, "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset): run under .ci/with-secret-service"
    box: dict[str, Any] = {}

    def check() -> None:
        try:
            from keyring.backends import SecretService

            backend = SecretService.Keyring()
            backend.priority  # noqa: B018 - raises with the reason when the service is unusable
            collection = backend.get_preferred_collection()
            with contextlib.closing(collection.connection):
                if collection.is_locked():
                    box["reason"] = "the Secret Service's default collection is locked"
                    return
            box["backend"] = backend
        except Exception as error:
            box["reason"] = f"the Secret Service is not usable: {type(error).__name__}: {error}"

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None, f"the Secret Service did not answer within {timeout:g} s"
    return box.get("backend"), box.get("reason", "")


@pytest.fixture
def secret_service() -> Iterator[Any]:
    """Select the real SecretService backend for this test (the hygiene fixture restores the previous one)."""
    backend, reason = _probe()
    if backend is None:
        if REQUIRE:
            pytest.fail(f"FGSYNC_REQUIRE_SECRET_SERVICE=1 but {reason}")
        pytest.skip(reason)
    keyring.set_keyring(backend)
    yield backend
    # Leave nothing behind even when an assertion failed halfway (only this suite's loopback entries).
    for user in _fgsync_usernames():
        if user.startswith("http://127.0.0.1:") and PROJECT_ID in user:
            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                backend.delete_password(SERVICE, user)


def _fgsync_usernames() -> list[str]:
    """User names of every `fgsync` item in the Secret Service, read with libsecret's secret-tool when present."""
    tool = shutil.which("secret-tool")
    if tool is not None:
        done = subprocess.run(
            [tool, "search", "--all", "service", SERVICE], capture_output=True, text=True, timeout=30, check=False
        )
        # Only the attribute lines are kept: the output also holds the secrets themselves.
        lines = (done.stdout + done.stderr).splitlines()
        return [line.split("=", 1)[1].strip() for line in lines if line.startswith("attribute.username")]
    import secretstorage

    with secretstorage.dbus_init() as connection:
        items = secretstorage.get_default_collection(connection).search_items({"service": SERVICE})
        return [item.get_attributes().get("username", "") for item in items]


def _write(folder: Path, url: str, extra: str = "") -> Path:
    make_tree(folder / "functions" / "hello", {"index.py": HELLO_PY})
    return write_config(folder, endpoint=url, extra=extra)


def _run(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_5000_char_token_round_trips_authenticates_and_logs_out(
    secret_service: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fgsync.emulator import Emulator, serve

    emu = Emulator(project_id=PROJECT_ID, token=LONG_TOKEN, user=USER, password=PASSWORD, domain=DOMAIN)
    with serve(emu, host="127.0.0.1", port=0) as server:
        store = KeyringStore(server.url, PROJECT_ID)
        save_token(store, IssuedToken(LONG_TOKEN, "2099-01-01T00:00:00.000000Z"), user=USER, domain=DOMAIN)

        mine = [u for u in _fgsync_usernames() if u.startswith(f"{server.url} {PROJECT_ID} ")]
        assert len(mine) >= 1 + 5  # a header and at least five parts of at most 1,000 characters

        creds = resolve_credentials(iam_endpoint=server.url, project_id=PROJECT_ID, env={})
        assert (creds.source, creds.kind, creds.user) == ("keyring", "token", USER)
        urn = emu.create_function("hello")
        with httpx.Client(auth=creds.auth()) as client:
            answer = client.get(f"{server.url}/v2/{PROJECT_ID}/fgs/functions/{urn}/code")
        assert answer.status_code == 200

        monkeypatch.chdir(tmp_path)
        _write(tmp_path, server.url)
        code, out, err = _run(["logout"], capsys, monkeypatch)
        assert code == EXIT_OK, err
        assert out == f"removed {len(mine)} keyring entries for project {PROJECT_ID}\n"
        left = [u for u in _fgsync_usernames() if PROJECT_ID in u]
        assert left == []
        assert store.get("token") is None
        for text in (out, err, repr(creds), json.dumps(creds.describe())):
            assert LONG_TOKEN not in text


def test_login_auth_logout_through_the_cli(
    secret_service: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fgsync.emulator import Emulator, serve

    emu = Emulator(project_id=PROJECT_ID, user=USER, password=PASSWORD, domain=DOMAIN)
    with serve(emu, host="127.0.0.1", port=0) as server:
        monkeypatch.chdir(tmp_path)
        _write(tmp_path, server.url, extra=f'[auth]\nuser = "{USER}"\ndomain = "{DOMAIN}"\n')
        code, out, err = _run(
            ["login", "--password-stdin", "--remember-password"], capsys, monkeypatch, PASSWORD + "\n"
        )
        assert code == EXIT_OK, err
        code, out, err = _run(["auth", "--json"], capsys, monkeypatch)
        assert code == EXIT_OK, err
        doc = json.loads(out)
        assert (doc["source"], doc["kind"], doc["password_remembered"]) == ("keyring", "token", True)
        for secret in SECRETS:
            assert secret not in out + err
        code, out, err = _run(["logout"], capsys, monkeypatch)
        assert code == EXIT_OK
        assert [u for u in _fgsync_usernames() if PROJECT_ID in u] == []


_LOCK_THEN_AUTH = """
import contextlib, sys, time
import secretstorage
from fgsync.cli import main

with contextlib.closing(secretstorage.dbus_init()) as connection:
    collection = secretstorage.get_default_collection(connection)
    collection.lock()
    assert collection.is_locked()
started = time.monotonic()
code = main(["--config", sys.argv[1], "auth"])
print(f"elapsed={time.monotonic() - started:.2f}", file=sys.stderr)
sys.exit(code)
"""


def test_a_locked_secret_service_is_a_clear_error_within_seconds(tmp_path: Path) -> None:
    """Its own private session (the script nests): lock the login collection, then `fgsync auth`."""
    missing = [tool for tool in ("dbus-run-session", "gnome-keyring-daemon") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install -y dbus gnome-keyring)"
        if REQUIRE:
            pytest.fail(f"FGSYNC_REQUIRE_SECRET_SERVICE=1 but {reason}")
        pytest.skip(reason)
    config = _write(tmp_path, "http://127.0.0.1:9")
    script = Path(__file__).resolve().parent.parent / ".ci" / "with-secret-service"
    env = {**os.environ, "FGSYNC_KEYRING_TIMEOUT": "3"}
    done = subprocess.run(
        [str(script), sys.executable, "-c", _LOCK_THEN_AUTH, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1
    assert errors[0].startswith("Error: the OS keyring ")
    assert "unlock or install an OS keyring" in errors[0] and "FGSYNC_TOKEN" in errors[0]
    elapsed = float(next(line for line in lines if line.startswith("elapsed="))[8:])
    assert elapsed < 5.0
