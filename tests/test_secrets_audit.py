"""The secrets audit (issue 4): a whole credentials cycle at DEBUG, then every trace it left is searched.

One cycle — login with a remembered password, auth, push, a push through an expired token (renewed before the
read) and through a 401 on the upload itself (renewed, body re-sent), status, invoke, watch (a change, a push, a
renewal after the emulator expired every token), a refused login, logout, then the same with an AK/SK pair in the
keyring and in the environment — runs with ``-vv``, in human and ``--json`` output. Then none of the secrets may
appear in stdout, stderr, any log record of any logger (httpx and httpcore included), the ``str``/``repr`` of
any fgsync error raised on the way or of any ``Credentials`` built, nor in any file under the temp HOME, the
cache folder, the project folder or the emulator's data folder. Secrets are the password (also base64, URL-
encoded and as unsalted hashes), the SK, and every token the emulator issued (recorded as it issues them).

Below the cycle: the ways a secret was found to escape, or could, each pinned by a test — a token that cannot
travel in a header (httpx's error quotes the header value), and keyring backends whose errors quote the value.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import httpx
import keyring
import pytest

from fgsync.auth.credentials import Credentials
from fgsync.auth.iam import IssuedToken, login_with_password
from fgsync.auth.keyring_store import KeyringStore, save_token
from fgsync.cli import main
from fgsync.config import load_config
from fgsync.emulator import Emulator, serve
from fgsync.errors import EXIT_CREDENTIALS, EXIT_OK, EXIT_USAGE, CredentialsError, FgsyncError
from fgsync.sync import package_function
from tests.conftest import (
    AK,
    DOMAIN,
    HELLO_PY,
    PASSWORD,
    PROJECT_ID,
    REGION,
    SK,
    TOKEN,
    USER,
    MemoryKeyring,
    make_tree,
    write_config,
)
from tests.test_watch_auth import Terminals, use_terminals, watch_with

WRONG_PASSWORD = "Tr0ub4dor&3 not it"
#: Characters of a random token that count as a leak when they appear together.
FRAGMENT = 24


# -- what counts as a leak -------------------------------------------------------------------------------------


def _base64_cores(secret: bytes) -> set[str]:
    """The base64 text a secret always produces inside any longer base64 stream, at each of the 3 alignments.

    Encoding ``pad + secret`` and dropping the characters that depend on the neighbouring bytes leaves what
    every encoding of a buffer that contains the secret at that alignment must contain.
    """
    cores = set()
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + secret).decode("ascii")
            start = (pad * 4 + 2) // 3  # characters that mix padding bits with the secret's
            end = (pad + len(secret)) // 3 * 4  # the last full group of the secret's own bytes
            core = text[start:end]
            if len(core) >= 12:
                cores.add(core)
    return cores


def leak_forms(secret: str, *, hashed: bool = False, fragments: bool = False) -> set[str]:
    """The ways a secret could show up: as is, base64 (any alignment), URL-encoded, and unsalted hashes.

    With ``fragments`` (random tokens, thousands of characters long), also its head, middle and tail: a log
    line that shows "only the first part" of a token still leaks a usable share of it.
    """
    data = secret.encode("utf-8")
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1]}
    forms |= _base64_cores(data)
    if hashed:
        forms |= {hashlib.new(name, data).hexdigest() for name in ("md5", "sha1", "sha256", "sha512")}
    if fragments:
        middle = len(secret) // 2
        forms |= {secret[:FRAGMENT], secret[middle : middle + FRAGMENT], secret[-FRAGMENT:]}
    return forms


class Audit:
    """Everything the cycle produced that a secret could leak into, and the secrets to look for."""

    def __init__(self) -> None:
        self.issued: list[str] = []  # tokens the emulator issued, in order
        self.errors: list[FgsyncError] = []  # every FgsyncError constructed during the cycle
        self.credentials: list[Credentials] = []  # every Credentials built during the cycle
        self.texts: dict[str, str] = {}  # what each command printed, by label

    def forms(self) -> dict[str, str]:
        """leak form -> the name of the secret it comes from (never the secret itself, for readable failures)."""
        named: dict[str, str] = {}
        for label, secret, hashed, fragments in [
            ("password", PASSWORD, True, False),
            ("wrong password", WRONG_PASSWORD, True, False),
            ("SK", SK, True, False),
            ("static token", TOKEN, False, False),
            *((f"issued token #{i + 1}", token, False, True) for i, token in enumerate(self.issued)),
        ]:
            for form in leak_forms(secret, hashed=hashed, fragments=fragments):
                named[form] = label
        return named

    def find(self, text: str) -> list[str]:
        return sorted({label for form, label in self.forms().items() if form in text})


@contextmanager
def recording(audit: Audit, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Spy on the emulator's token book, on FgsyncError construction and on Credentials construction."""
    issue = emu.tokens.issue

    def issue_and_record() -> tuple[str, float, float]:
        token, issued, expires = issue()
        audit.issued.append(token)
        return token, issued, expires

    monkeypatch.setattr(emu.tokens, "issue", issue_and_record)

    def new_error(cls: type[FgsyncError], *args: Any, **kwargs: Any) -> FgsyncError:
        error = Exception.__new__(cls, *args, **kwargs)
        audit.errors.append(error)
        return error

    init = Credentials.__init__

    def init_and_record(self: Credentials, **kwargs: Any) -> None:
        init(self, **kwargs)
        audit.credentials.append(self)

    monkeypatch.setattr(Credentials, "__init__", init_and_record)
    FgsyncError.__new__ = new_error  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        del FgsyncError.__new__


@contextmanager
def every_log_record(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """DEBUG for every logger. fgsync's own logger is hooked directly as well, so its records are seen even if
    the cli stops them from propagating (it used to); a record seen twice is only searched twice."""
    caplog.set_level(logging.DEBUG)
    fgsync_logger = logging.getLogger("fgsync")
    fgsync_logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        fgsync_logger.removeHandler(caplog.handler)


def all_files(*roots: Path) -> dict[Path, bytes]:
    found: dict[Path, bytes] = {}
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                if path.is_file() and not path.is_symlink():
                    found[path] = path.read_bytes()
    return found


# -- the cycle ------------------------------------------------------------------------------------------------


class Cycle:
    """Runs fgsync commands with -vv (and --json when asked), keeping every line they print."""

    def __init__(self, audit: Audit, monkeypatch: pytest.MonkeyPatch, json_mode: bool) -> None:
        self.audit = audit
        self.monkeypatch = monkeypatch
        self.json_mode = json_mode
        self.stdout, self.stderr = use_terminals(monkeypatch)
        self.runs = 0

    def run(self, *args: str, stdin: str = "") -> int:
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        flags = ["-vv", "--json"] if self.json_mode else ["-vv"]
        code = main([*args, *flags])
        self.keep(" ".join(args))
        return code

    def keep(self, label: str) -> None:
        self.runs += 1
        label = f"#{self.runs} {label}"  # commands repeat: keep each run's output apart
        if self.json_mode:  # --json: stdout carries JSON only, at any verbosity
            for line in self.stdout.main.text.splitlines():
                json.loads(line)
        for name, terminals in (("stdout", self.stdout), ("stderr", self.stderr)):
            self.audit.texts[f"{label} [{name}]"] = terminals.main.text
            self.audit.texts[f"{label} [{name}, other terminal]"] = terminals.other.text
            terminals.reset()

    def watch(self, terminals: Terminals, driver: Callable[[], None]) -> int:
        flags = ["-vv", "--json"] if self.json_mode else ["-vv"]
        code = watch_with([*flags, "--debounce-ms", "50"], terminals, driver)
        self.keep("watch")
        return code


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_a_full_credentials_cycle_leaves_no_secret_anywhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    memory_keyring: MemoryKeyring,
    json_mode: bool,
) -> None:
    home, cache = Path(os.environ["HOME"]), Path(os.environ["FGSYNC_CACHE_DIR"])
    project, data = tmp_path / "project", tmp_path / "emulator-data"
    src = make_tree(project / "functions" / "hello", {"index.py": HELLO_PY, "lib/util.py": "X = 1\n"})
    make_tree(project / "events", {"hello.json": '{"name": "audit"}'})
    audit = Audit()
    emu = Emulator(
        project_id=PROJECT_ID, region=REGION, token=TOKEN, ak=AK, sk=SK, user=USER, password=PASSWORD, domain=DOMAIN,
        data_dir=data,
    )  # fmt: skip
    emu.create_function("hello")
    monkeypatch.chdir(project)

    with serve(emu) as server, recording(audit, emu, monkeypatch), every_log_record(caplog):
        url = server.url
        write_config(
            project,
            endpoint=url,
            functions=[{"name": "hello", "source": "functions/hello", "invoke_event": "events/hello.json"}],
        )
        fn = load_config(project / "fgsync.toml").functions[0]
        cycle = Cycle(audit, monkeypatch, json_mode)
        login = ["login", "--user", USER, "--domain", DOMAIN, "--password-stdin"]

        assert cycle.run(*login, "--remember-password", stdin=PASSWORD + "\n") == EXIT_OK
        assert cycle.run("auth") == EXIT_OK
        assert cycle.run("push") == EXIT_OK
        assert emu.uploads("hello") == 1

        emu.expire_tokens()  # the next read gets a 401: renewed with the remembered password
        (src / "index.py").write_text(HELLO_PY + "# 2\n")
        assert cycle.run("push") == EXIT_OK
        emu.inject("update_code", status=401, code="FSS.0401", message="Authentication failed: the token has expired")
        (src / "index.py").write_text(HELLO_PY + "# 3\n")
        assert cycle.run("push") == EXIT_OK  # a 401 on the upload itself: renewed, body sent again
        assert emu.uploads("hello") == 3 and len(audit.issued) == 3

        assert cycle.run("status") == EXIT_OK
        assert cycle.run("invoke", "hello") == EXIT_OK

        def user() -> None:
            _wait(lambda: emu.calls("show_code") + emu.calls("show_config") > reads, "the initial sync")
            (src / "index.py").write_text(HELLO_PY + "# 4\n")
            _wait(lambda: emu.uploads("hello") == 4, "the push of a change")
            emu.expire_tokens()
            (src / "index.py").write_text(HELLO_PY + "# 5\n")
            _wait(lambda: emu.uploads("hello") == 5, "the push after a renewal")

        reads = emu.calls("show_code") + emu.calls("show_config")
        assert cycle.watch(cycle.stdout, user) == EXIT_OK
        assert emu.function("hello").digest == package_function(fn).sha512
        assert len(audit.issued) == 4  # the watch renewed by itself

        stored = json.loads(KeyringStore(url, PROJECT_ID).get("token") or "{}")["token"]
        assert stored == audit.issued[-1]
        assert cycle.run(*login, stdin=WRONG_PASSWORD + "\n") == EXIT_CREDENTIALS
        assert cycle.run("logout") == EXIT_OK
        assert memory_keyring.entries == {}
        assert cycle.run("auth") == EXIT_CREDENTIALS
        assert cycle.run("push") == EXIT_CREDENTIALS

        # The same with an access key pair: in the keyring, then in the environment.
        aksk = project / "aksk.toml"
        aksk.write_text(
            (project / "fgsync.toml").read_text().replace("\n[[function]]", '[auth]\nmethod = "aksk"\n[[function]]', 1)
        )
        assert cycle.run("login", "--config", str(aksk), "--ak", AK, stdin=SK + "\n") == EXIT_OK
        assert cycle.run("auth", "--config", str(aksk)) == EXIT_OK
        (src / "index.py").write_text(HELLO_PY + "# 6\n")
        assert cycle.run("push", "--config", str(aksk)) == EXIT_OK
        assert cycle.run("logout", "--config", str(aksk)) == EXIT_OK
        monkeypatch.setenv("CLOUD_SDK_AK", AK)
        monkeypatch.setenv("CLOUD_SDK_SK", SK)
        assert cycle.run("status") == EXIT_OK
        monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
        assert cycle.run("auth") == EXIT_OK
        assert memory_keyring.entries == {}
        assert emu.uploads("hello") == 6

    # Something was produced everywhere the audit looks, so the absence of secrets means something.
    records = caplog.records
    assert {r.name.split(".")[0] for r in records} >= {"fgsync", "httpx", "httpcore"}
    assert any(r.levelno == logging.DEBUG and r.name.startswith("fgsync") for r in records)
    assert any("renew" in r.getMessage() for r in records)
    assert any("x-subject-token" in r.getMessage().lower() for r in records)  # httpcore's header trace
    assert len(audit.errors) >= 3 and len(audit.credentials) >= 8
    files = all_files(home, cache, project, data)
    assert any(cache in p.parents for p in files) and any(data in p.parents for p in files)

    leaks: list[str] = []
    for label, text in audit.texts.items():
        leaks += [f"{secret} in the output of `{label}`" for secret in audit.find(text)]
    for record in records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        leaks += [f"{secret} in a log record of {record.name}" for secret in audit.find(text)]
    for error in audit.errors:
        text = f"{error}\n{error!r}\n{error.message}"
        leaks += [f"{secret} in a {type(error).__name__}" for secret in audit.find(text)]
    for creds in audit.credentials:
        text = f"{creds!r}\n{creds}\n{creds.auth()!r}\n{json.dumps(creds.describe())}"
        leaks += [f"{secret} in a Credentials' repr, auth or description" for secret in audit.find(text)]
    for path, content in files.items():
        text = str(path) + "\n" + content.decode("utf-8", errors="replace")
        leaks += [f"{secret} in {path}" for secret in audit.find(text)]
    assert not leaks, "\n".join(sorted(set(leaks)))


# -- tokens that cannot travel in a header ----------------------------------------------------------------------

WRAPPED = TOKEN[:20] + "\n" + TOKEN[20:]  # a token copied from wrapped output, e.g. `base64` or a narrow terminal


@pytest.mark.parametrize("args", [["push"], ["status"], ["invoke", "hello"], ["auth"]])
def test_a_token_with_a_line_break_is_refused_without_being_echoed(
    tmp_path: Path,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    args: list[str],
) -> None:
    """httpx refuses such a header with an error that quotes it ("Illegal header value b'MII…'"): fgsync must
    say what is wrong before any request, and never repeat the token."""
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    write_config(tmp_path, endpoint=emulator.url)
    emulator.emulator.create_function("hello")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FGSYNC_TOKEN", WRAPPED)
    stdout, stderr = use_terminals(monkeypatch)
    with every_log_record(caplog):
        code = main([*args, "-vv"])
    err = stderr.main.text
    assert code == EXIT_CREDENTIALS, err
    assert "Error: FGSYNC_TOKEN is not a usable token: it has a line break at character 21" in err
    assert sum(emulator.emulator.stats()["calls"].values()) == 0
    for text in (stdout.main.text, err, caplog.text):
        for secret in (WRAPPED, TOKEN[:20], TOKEN[20:]):
            assert secret not in text


def test_a_stored_token_with_a_line_break_asks_for_a_new_login(
    tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    write_config(tmp_path, endpoint=emulator.url)
    monkeypatch.chdir(tmp_path)
    save_token(KeyringStore(emulator.url, PROJECT_ID), IssuedToken(WRAPPED), user=USER, domain=DOMAIN)
    stdout, stderr = use_terminals(monkeypatch)
    with every_log_record(caplog):
        assert main(["push", "-vv"]) == EXIT_CREDENTIALS
    assert stderr.main.text.endswith(
        "Error: the token in the OS keyring is not a usable token: it has a line break at character 21 (an IAM "
        "token is one line of letters, digits and symbols); run `fgsync login`\n"
    )
    assert sum(emulator.emulator.stats()["calls"].values()) == 0
    for text in (stdout.main.text, stderr.main.text, caplog.text):
        assert TOKEN[:20] not in text and TOKEN[20:] not in text


@pytest.mark.parametrize("pasted", [TOKEN[:20] + "é" + TOKEN[20:], TOKEN[:20] + "\x7f" + TOKEN[20:]])
def test_a_pasted_token_that_cannot_be_a_header_is_not_stored(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    memory_keyring: MemoryKeyring,
    pasted: str,
) -> None:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    write_config(tmp_path, endpoint="http://127.0.0.1:9")
    monkeypatch.chdir(tmp_path)
    stdout, stderr = use_terminals(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO(pasted + "\n"))
    assert main(["login", "--token-stdin"]) == EXIT_USAGE
    assert stderr.main.text.startswith("Error: the token on standard input is not a usable token: it has a")
    assert "at character 21" in stderr.main.text
    assert memory_keyring.entries == {}
    for text in (stdout.main.text, stderr.main.text):
        assert TOKEN[:20] not in text and TOKEN[20:] not in text


def test_an_iam_answer_with_a_token_that_cannot_be_sent_is_a_clear_error() -> None:
    answer = TOKEN[:20] + " " + TOKEN[20:]

    def iam(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"X-Subject-Token": answer}, json={"token": {"expires_at": None}})

    with pytest.raises(CredentialsError) as caught:
        login_with_password(
            iam_endpoint="https://iam.example.test",
            project_id=PROJECT_ID,
            user=USER,
            domain=DOMAIN,
            password=PASSWORD,
            transport=httpx.MockTransport(iam),
        )
    assert str(caught.value) == (
        "IAM at https://iam.example.test answered the login with a token fgsync cannot send: it has a space or tab "
        "at character 21"
    )


class EchoingKeyring(MemoryKeyring):
    """A backend whose write errors quote what it was given (some do): fgsync must not pass that on."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    def set_password(self, service: str, username: str, password: str) -> None:
        if username.endswith(self.failing):
            raise RuntimeError(f"cannot store {password!r} for {username}")
        super().set_password(service, username, password)


@pytest.mark.parametrize("failing", ["token #1", "token #2", "password #1"])
def test_a_keyring_write_error_that_quotes_the_secret_is_reported_without_it(
    tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    write_config(tmp_path, endpoint=emulator.url)
    monkeypatch.chdir(tmp_path)
    audit = Audit()
    issue = emulator.emulator.tokens.issue

    def issue_and_record() -> tuple[str, float, float]:
        answer: tuple[str, float, float] = issue()
        audit.issued.append(answer[0])
        return answer

    monkeypatch.setattr(emulator.emulator.tokens, "issue", issue_and_record)
    keyring.set_keyring(EchoingKeyring(failing))  # the hygiene fixture puts the previous one back
    stdout, stderr = use_terminals(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    code = main(["login", "--user", USER, "--domain", DOMAIN, "--password-stdin", "--remember-password"])
    assert code == EXIT_CREDENTIALS
    assert stderr.main.text.startswith("Error: the OS keyring failed (writing): RuntimeError: cannot store '<hidden>'")
    assert len(audit.issued) == 1
    assert audit.find(stdout.main.text + stderr.main.text) == []
