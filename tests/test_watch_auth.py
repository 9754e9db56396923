"""The credentials cycle end to end (issue 4): login, push, a token that expires, renewal or a pause, login again.

Everything goes through ``main([...])`` against a real emulator on a loopback port, with the in-memory keyring
of conftest shared by every command of a test. `fgsync watch` runs in the test's main thread (so its real
SIGINT/SIGTERM handling is what stops it), while a *driver* thread plays the user in another terminal: edits
files, runs `fgsync login`, and finally sends SIGTERM to the process.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Optional

import pytest

from fgsync.auth.keyring_store import KeyringStore
from fgsync.cli import main
from fgsync.config import load_config
from fgsync.errors import EXIT_OK
from fgsync.sync import package_function
from tests.conftest import DOMAIN, HELLO_PY, PASSWORD, PROJECT_ID, SECRETS, USER, make_tree, write_config

LOGIN = ["login", "--user", USER, "--domain", DOMAIN, "--password-stdin"]

# -- consoles: what each "terminal" sees ------------------------------------------------------------------------


class Console(io.TextIOBase):
    """A text stream several threads write to; a test can wait for what appears on it."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._chunks: list[str] = []

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes streams with bytes to tell binary ones apart
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._cond:
            self._chunks.append(text)
            self._cond.notify_all()
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(self._chunks)

    def events(self) -> list[dict[str, Any]]:
        """The NDJSON events written so far (complete lines only)."""
        lines = self.text.split("\n")[:-1]
        return [json.loads(line) for line in lines]

    def wait_for(self, predicate: Callable[[Console], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out waiting for {what or predicate}; console:\n{''.join(self._chunks)}"
                    )
                self._cond.wait(min(left, 0.1))

    def wait_event(self, name: str, count: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the count-th event called name; returns it."""
        self.wait_for(lambda c: len(named(c.events(), name)) >= count, timeout, what=f"{count} x {name!r}")
        return named(self.events(), name)[count - 1]


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


class Terminals(io.TextIOBase):
    """sys.stdout (or sys.stderr) for a test with two terminals: the driver thread's writes go to its own console."""

    def __init__(self) -> None:
        super().__init__()
        self.main = Console()
        self.other = Console()
        self.other_thread: Optional[int] = None

    def _target(self) -> Console:
        return self.other if threading.get_ident() == self.other_thread else self.main

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def reset(self) -> None:
        """Fresh consoles: what follows starts on a clean screen."""
        self.main, self.other = Console(), Console()


def use_terminals(monkeypatch: pytest.MonkeyPatch) -> tuple[Terminals, Terminals]:
    """(stdout, stderr) stand-ins, split between the watch's terminal and the driver's.

    Called in the test's body: pytest's own capture re-installs its streams when the test's call starts.
    """
    out, err = Terminals(), Terminals()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    return out, err


def run(args: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    """One fgsync command, as a terminal would run it (stdin given; output wherever sys.stdout points)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(args)


# -- `fgsync watch` in the main thread, a driver thread as the user ------------------------------------------------


@contextmanager
def _sigterm_guard() -> Iterator[list[int]]:
    """Until the watch installs its own handlers, a SIGTERM must not kill the test run: record it instead."""
    stray: list[int] = []

    def record(signum: int, _frame: Optional[FrameType]) -> None:
        stray.append(signum)

    previous = signal.signal(signal.SIGTERM, record)
    try:
        yield stray
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_watch(guard: Any, returned: threading.Event, timeout: float = 30.0) -> None:
    """SIGTERM to this process once `fgsync watch` handles it (the user's Ctrl+C, from another terminal)."""
    deadline = time.monotonic() + timeout
    while not returned.is_set():
        if signal.getsignal(signal.SIGTERM) is not guard:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        assert time.monotonic() < deadline, "fgsync watch never installed its signal handlers"
        returned.wait(0.02)


def watch_with(args: list[str], terminals: Terminals, driver: Callable[[], None]) -> int:
    """Run `fgsync watch ARGS` here; ``driver`` runs on another thread, then the watch gets SIGTERM.

    Returns the watch's exit code; re-raises the driver's failure.
    """
    failures: list[BaseException] = []
    returned = threading.Event()
    with _sigterm_guard() as stray:
        guard = signal.getsignal(signal.SIGTERM)

        def drive() -> None:
            terminals.other_thread = threading.get_ident()
            try:
                driver()
            except BaseException as error:  # re-raised in the test's thread below
                failures.append(error)
            finally:
                _stop_watch(guard, returned)

        thread = threading.Thread(target=drive, name="driver")
        thread.start()
        try:
            code = main(["watch", *args])
        finally:
            returned.set()
            thread.join(30)
    assert not thread.is_alive()
    if failures:
        raise failures[0]
    assert not stray, "a SIGTERM arrived while fgsync watch was not handling it"
    return code


# -- fixtures and checks ---------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The function `hello` on disk and in the emulator (with template code); the tests run in this folder."""
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY, "lib/util.py": "X = 1\n"})
    write_config(tmp_path, endpoint=emulator.url)
    emulator.emulator.create_function("hello")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def stored_token(url: str) -> str:
    raw = KeyringStore(url, PROJECT_ID).get("token")
    assert raw is not None
    token: str = json.loads(raw)["token"]
    return token


def assert_in_sync(project: Path, emulator: Any, uploads: int) -> None:
    """The emulator ran `uploads` uploads and its code is the local package, byte for byte."""
    fn = load_config(project / "fgsync.toml").functions[0]
    assert emulator.emulator.uploads("hello") == uploads
    assert emulator.emulator.function("hello").digest == package_function(fn).sha512


def assert_no_secret(*texts: str, extra: tuple[str, ...] = ()) -> None:
    for text in texts:
        for secret in (*SECRETS, *extra):
            assert secret not in text


def edit(project: Path, note: str) -> None:
    (project / "functions" / "hello" / "index.py").write_text(f"{HELLO_PY}# {note}\n")


# -- the tests -------------------------------------------------------------------------------------------------


def test_push_renews_an_expired_token_with_the_remembered_password(
    project: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminals = use_terminals(monkeypatch)
    emu = emulator.emulator
    assert run([*LOGIN, "--remember-password"], monkeypatch, PASSWORD + "\n") == EXIT_OK, terminals[1].main.text
    first = stored_token(emulator.url)
    login_text = terminals[0].main.text + terminals[1].main.text
    for terminal in terminals:
        terminal.reset()
    out, err = (t.main for t in terminals)
    assert run(["push", "--json"], monkeypatch) == EXIT_OK, err.text
    assert [e["event"] for e in out.events()] == ["packaged", "pushed"]
    assert_in_sync(project, emulator, uploads=1)

    emu.expire_tokens()
    edit(project, "after expiry")
    logins = emu.calls("iam_token")
    pushed_before = len(named(out.events(), "pushed"))
    assert run(["push", "--json"], monkeypatch) == EXIT_OK, err.text

    assert len(named(out.events(), "pushed")) == pushed_before + 1
    assert not named(out.events(), "error")
    assert_in_sync(project, emulator, uploads=2)
    assert emu.calls("iam_token") == logins + 1  # one renewal, no user action
    renewed = stored_token(emulator.url)
    assert renewed != first
    assert emu.tokens.check(renewed) is None and emu.tokens.check(first) is not None
    assert "fgsync login" not in err.text
    assert_no_secret(login_text, out.text, err.text, extra=(first, renewed))


def test_watch_pauses_on_an_expired_token_and_resumes_after_a_login_elsewhere(
    project: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdout, stderr = terminals = use_terminals(monkeypatch)
    emu = emulator.emulator
    assert run(LOGIN, monkeypatch, PASSWORD + "\n") == EXIT_OK  # no --remember-password
    tokens = [stored_token(emulator.url)]
    login_text = stdout.main.text + stderr.main.text
    for terminal in terminals:
        terminal.reset()
    out, err = stdout.main, stderr.main
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))  # what the other terminal will type

    def user() -> None:
        out.wait_event("pushed")  # the initial sync replaced the template code
        assert_in_sync(project, emulator, uploads=1)
        emu.expire_tokens()
        edit(project, "after expiry")
        error = out.wait_event("error")
        assert error["function"] == "hello" and error["code"] == "FSS.0401"
        assert error["message"].count("fgsync login") == 1, error
        calls = sum(emu.stats()["calls"].values())
        time.sleep(0.5)  # an observation window: a paused function must not keep calling the service
        assert sum(emu.stats()["calls"].values()) == calls
        assert emu.uploads("hello") == 1

        assert main(LOGIN) == EXIT_OK, stderr.other.text  # another terminal; watch is not told
        tokens.append(stored_token(emulator.url))
        out.wait_event("pushed", 2)

    code = watch_with(["--json", "--debounce-ms", "50"], stdout, user)

    assert code == EXIT_OK, err.text  # SIGTERM
    events = out.events()
    names = [e["event"] for e in events]
    assert names[0] == "watching" and names[-1] == "stopped"
    assert names.count("error") == 1 and names.count("pushed") == 2
    assert names.index("error") < len(names) - 1 - names[::-1].index("pushed")  # resumed after the pause
    last_pushed = named(events, "pushed")[-1]
    fn = load_config(project / "fgsync.toml").functions[0]
    assert last_pushed["digest"] == package_function(fn).sha512
    assert_in_sync(project, emulator, uploads=2)
    assert emu.calls("iam_token") == 2  # the two logins: nothing to renew with
    assert "logged in as" in stdout.other.text
    assert tokens[0] != tokens[1]
    assert_no_secret(login_text, out.text, err.text, stdout.other.text, stderr.other.text, extra=tuple(tokens))


# -- the same with real processes and the real Secret Service ---------------------------------------------------


@pytest.fixture
def real_keyring() -> Iterator[dict[str, str]]:
    """The environment for fgsync subprocesses that share the real Secret Service (skipped without one)."""
    from tests.test_keyring_real import REQUIRE, _probe

    backend, reason = _probe()
    if backend is None:
        if REQUIRE:
            pytest.fail(f"FGSYNC_REQUIRE_SECRET_SERVICE=1 but {reason}")
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FGSYNC_", "CLOUD_SDK_"))}
    env.update(
        FGSYNC_CACHE_DIR=os.environ["FGSYNC_CACHE_DIR"],
        PYTHON_KEYRING_BACKEND="keyring.backends.SecretService.Keyring",
        PYTHONUNBUFFERED="1",
    )
    yield env


class WatchProcess:
    """`fgsync watch --json` as a subprocess; its NDJSON stdout is collected by a thread into a Console."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.out = Console()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fgsync", "watch", "--json", "--debounce-ms", "50"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.write(line)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode, err


def fgsync_process(
    args: list[str], project: Path, env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """One fgsync command in a process of its own: another terminal."""
    return subprocess.run(
        [sys.executable, "-m", "fgsync", *args],
        cwd=project,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.secret_service
def test_watch_process_resumes_after_a_login_process_through_the_real_keyring(
    project: Path, emulator: Any, real_keyring: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator.emulator
    texts: list[str] = []
    issued: list[str] = []
    issue = emu.tokens.issue

    def issue_and_record() -> tuple[str, float, float]:
        answer: tuple[str, float, float] = issue()
        issued.append(answer[0])
        return answer

    monkeypatch.setattr(emu.tokens, "issue", issue_and_record)
    login = fgsync_process(LOGIN, project, real_keyring, PASSWORD + "\n")
    texts += [login.stdout, login.stderr]
    assert login.returncode == EXIT_OK, login.stderr
    watch = WatchProcess(project, real_keyring)
    try:
        watch.out.wait_event("pushed")
        emu.expire_tokens()
        edit(project, "after expiry")
        error = watch.out.wait_event("error")
        assert error["code"] == "FSS.0401" and error["message"].count("fgsync login") == 1
        assert emu.uploads("hello") == 1
        again = fgsync_process(LOGIN, project, real_keyring, PASSWORD + "\n")
        texts += [again.stdout, again.stderr]
        assert again.returncode == EXIT_OK, again.stderr
        pushed = watch.out.wait_event("pushed", 2)
    finally:
        code, err = watch.stop()
        logout = fgsync_process(["logout"], project, real_keyring)
    texts += [watch.out.text, err, logout.stdout, logout.stderr]
    assert code == 130, err
    assert "Traceback" not in err
    assert logout.returncode == EXIT_OK and logout.stdout.startswith("removed ")
    assert pushed["digest"] == package_function(load_config(project / "fgsync.toml").functions[0]).sha512
    assert_in_sync(project, emulator, uploads=2)
    assert [e["event"] for e in watch.out.events()].count("error") == 1
    assert len(issued) == 2  # the two logins; the watch had no password to renew with
    assert_no_secret(*texts, extra=tuple(issued))
