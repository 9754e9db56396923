"""The paused function's line in `fgsync watch` says what helps (issue 9, item 14 e, f): "run `fgsync login`"
only where a login can help; not when there is no keyring, and not when the clock is off.

`fgsync watch` runs in this thread against a real emulator on a loopback port (helpers from test_watch_auth).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backends.fail
import pytest

from fgsync.emulator import Emulator, serve
from fgsync.errors import EXIT_OK, ClockSkewError, KeyringError
from fgsync.watch.scheduler import Scheduler, Timing
from tests.conftest import AK, HELLO_PY, PROJECT_ID, REGION, SECRETS, SK, make_tree, write_config
from tests.test_watch_auth import use_terminals, watch_with


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def paused_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run `fgsync watch --json` until its first `error` event; returns that event."""
    stdout, stderr = use_terminals(monkeypatch)
    out = stdout.main
    seen: list[dict[str, Any]] = []

    def user() -> None:
        seen.append(out.wait_event("error"))

    code = watch_with(["--json", "--debounce-ms", "50"], stdout, user)
    assert code == EXIT_OK, stderr.main.text
    text = out.text + stderr.main.text
    assert "Traceback" not in text
    for secret in SECRETS:
        assert secret not in text
    return seen[0]


def test_no_keyring_says_what_helps_not_login(
    project: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.emulator.create_function("hello")
    write_config(project, endpoint=emulator.url)
    keyring.set_keyring(keyring.backends.fail.Keyring())  # no keyring backend at all; restored by the hygiene
    error = paused_error(project, monkeypatch)
    assert error["function"] == "hello" and error["code"] == "auth"
    assert error["message"] == (
        "no OS keyring is available: fgsync never stores credentials in a plain file; unlock or install an OS "
        "keyring (a Secret Service such as GNOME Keyring or KWallet on Linux, Keychain on macOS, Credential "
        "Manager on Windows), or set FGSYNC_TOKEN (or CLOUD_SDK_AK and CLOUD_SDK_SK) instead — a keyring "
        "installed now, FGSYNC_TOKEN, or CLOUD_SDK_AK and CLOUD_SDK_SK take effect when `fgsync watch` starts again"
    )
    assert "fgsync login" not in error["message"]


@pytest.fixture
def fast_clock_emulator() -> Iterator[Any]:
    """An emulator whose clock is 90 minutes ahead of this machine's, accepting the test AK/SK."""
    emu = Emulator(project_id=PROJECT_ID, region=REGION, ak=AK, sk=SK, clock=lambda: time.time() + 90 * 60)
    emu.create_function("hello")
    with serve(emu, host="127.0.0.1", port=0) as server:
        yield server


def test_a_clock_skew_pause_says_to_fix_the_clock_not_to_login(
    project: Path, fast_clock_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUD_SDK_AK", AK)
    monkeypatch.setenv("CLOUD_SDK_SK", SK)
    write_config(project, endpoint=fast_clock_emulator.url)
    error = paused_error(project, monkeypatch)
    assert error["code"] == "APIGW.0301"
    assert "this machine's clock is 90 minutes behind the service's" in error["message"]
    assert error["message"].endswith(
        "set the system clock right (turn on automatic time / NTP), then try again — fgsync tries again every 30 s"
    )
    assert "fgsync login" not in error["message"]
    assert error["retry_in_ms"] == 30_000
    assert fast_clock_emulator.emulator.uploads("hello") == 0


def test_the_hints_on_a_fake_clock() -> None:
    scheduler = Scheduler(["a", "b", "c"], timing=Timing(auth_retry=30.0))
    assert scheduler.due(0.0) == ["a", "b", "c"]
    locked = KeyringError("the OS keyring did not answer within 5 s (reading): it may be locked")
    absent = KeyringError("no OS keyring is available", absent=True)
    skew = ClockSkewError("X-Sdk-Date is more than 15 minutes away", status=401, code="APIGW.0301")
    messages = [scheduler.finished(name, error, 1.0).fields["message"]  # type: ignore[union-attr]
                for name, error in zip("abc", (locked, absent, skew))]  # fmt: skip
    assert messages[0].endswith("— the function resumes by itself once the keyring answers (unlocked); "
                                "FGSYNC_TOKEN, or CLOUD_SDK_AK and CLOUD_SDK_SK, take effect when `fgsync watch` "
                                "starts again")  # fmt: skip
    assert messages[1].endswith("— a keyring installed now, FGSYNC_TOKEN, or CLOUD_SDK_AK and CLOUD_SDK_SK take "
                                "effect when `fgsync watch` starts again")  # fmt: skip
    assert messages[2].endswith("— fgsync tries again every 30 s")
    assert not any("fgsync login" in message for message in messages)
    assert all(scheduler.paused(name) for name in "abc")
