"""`fgsync watch` end to end: real files, the real sync, the emulator on a loopback socket.

Every test counts the uploads the emulator saw and checks that the function's remote digest is the SHA-512 of
the local package at the end.
"""

from __future__ import annotations

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
from typing import Any, Callable, Optional

import pytest
from conftest import HELLO_PY, PROJECT_ID, SECRETS, TOKEN, make_tree, write_config
from test_daemon import Events

from fgsync.auth.credentials import credential_stamp, resolve_credentials
from fgsync.auth.iam import IssuedToken
from fgsync.auth.keyring_store import KeyringStore, save_token
from fgsync.cli.watch_cmd import ClientCache, IncrementalPackager, WatchState, make_sync_step
from fgsync.config import FunctionConfig, load_config
from fgsync.events import Emit
from fgsync.remote import FunctionGraphClient, RetryPolicy
from fgsync.state import StateStore
from fgsync.sync import package_function, sync_function
from fgsync.watch import Daemon, Timing

FAST_RETRY = RetryPolicy(attempts=2, base=0.01, cap=0.02)
FAST = Timing(backoff_base=0.05, backoff_cap=0.3, auth_poll=0.05, auth_retry=60.0, lock_poll=0.05)


@pytest.fixture
def project(tmp_path: Path, emulator: Any) -> Path:
    """A function `hello` on disk and in the emulator, and a config pointing at the emulator."""
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY, "lib/util.py": "X = 1\n"})
    write_config(tmp_path, endpoint=emulator.url)
    emulator.emulator.create_function("hello")
    return tmp_path


def token_sync(endpoint: str) -> tuple[Callable[[FunctionConfig, Emit], object], FunctionGraphClient]:
    """The real sync step (incremental packaging, as `fgsync watch` does), authenticated with TOKEN, with fast
    client retries, and its client (to close: it keeps its connection alive). Tests compare the remote digest
    with a cold build: the two must give the same bytes."""
    credentials = resolve_credentials(iam_endpoint=endpoint, project_id=PROJECT_ID, env={"FGSYNC_TOKEN": TOKEN})
    client = FunctionGraphClient(endpoint, PROJECT_ID, auth=credentials.auth(), retry=FAST_RETRY)
    store = StateStore()
    packager = IncrementalPackager()

    def step(fn: FunctionConfig, emit: Emit) -> object:
        return sync_function(fn, client=client, store=store, endpoint=endpoint, emit=emit, package_fn=packager)

    return step, client


class Watch:
    """A running daemon over the project, and what it reported."""

    def __init__(self, project: Path, emulator: Any, events: Events) -> None:
        self.fn = load_config(project / "fgsync.toml").functions[0]
        self.src = self.fn.source
        self.emu = emulator.emulator
        self.events = events
        self.base = self.emu.uploads("hello")  # uploads before this daemon started

    def pushed(self) -> int:
        return len(self.events.named("pushed", "hello"))

    def settled(self, *, uploads: int, skipped: Optional[int] = None, quiet: float = 0.4) -> None:
        """Wait until the emulator has seen `uploads` uploads in all (and this daemon `skipped` skips), then check
        nothing more comes for `quiet` seconds and the remote code is the local package."""
        self.events.wait(lambda: self.base + self.pushed() >= uploads)
        if skipped is not None:
            self.events.wait(lambda: len(self.events.named("skipped", "hello")) >= skipped)
        time.sleep(quiet)  # a wrong extra sync would show up here
        assert self.base + self.pushed() == uploads
        assert self.emu.uploads("hello") == uploads
        if skipped is not None:
            assert len(self.events.named("skipped", "hello")) == skipped
        assert self.emu.function("hello").digest == package_function(self.fn).sha512


@contextmanager
def watching(
    project: Path, emulator: Any, *, sync: Optional[Callable[[FunctionConfig, Emit], object]] = None, **options: Any
) -> Iterator[Watch]:
    events = Events()
    watch = Watch(project, emulator, events)
    stop = threading.Event()
    options.setdefault("timing", FAST)
    options.setdefault("debounce_ms", 80)
    client = None
    if sync is None:
        sync, client = token_sync(emulator.url)
    daemon = Daemon([watch.fn], sync=sync, emit=events, stop_event=stop, **options)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        events.wait(lambda: bool(events.named("pushed") or events.named("skipped") or events.named("error")))
        yield watch
    finally:
        stop.set()
        thread.join(20)
        if client is not None:
            client.close()
    assert not thread.is_alive()
    assert events.items[-1].event == "stopped"


def vim_save(src: Path) -> None:
    (src / "4913").write_text("")  # vim checks the folder is writable
    (src / "4913").unlink()
    os.rename(src / "index.py", src / "index.py~")
    (src / "index.py").write_text(HELLO_PY + "# vim\n")
    (src / "index.py~").unlink()


def jetbrains_save(src: Path) -> None:
    (src / "index.py___jb_tmp___").write_text(HELLO_PY + "# jetbrains\n")
    os.rename(src / "index.py", src / "index.py___jb_old___")
    os.rename(src / "index.py___jb_tmp___", src / "index.py")
    (src / "index.py___jb_old___").unlink()


def plain_rewrite(src: Path) -> None:
    with open(src / "index.py", "w") as f:
        f.write(HELLO_PY)
        f.flush()
        f.write("# plain\n")


def atomic_replace(src: Path) -> None:
    tmp = src / ".index.py.tmp-1234"
    tmp.write_text(HELLO_PY + "# atomic\n")
    os.replace(tmp, src / "index.py")


@pytest.mark.parametrize("save", [vim_save, jetbrains_save, plain_rewrite, atomic_replace])
def test_an_editor_save_is_one_upload(project: Path, emulator: Any, save: Callable[[Path], None]) -> None:
    with watching(project, emulator) as w:
        w.settled(uploads=1)  # the initial sync: the emulator has template code
        save(w.src)
        w.settled(uploads=2)
        (change,) = w.events.named("change", "hello")
        assert "index.py" in change.fields["paths"]
        assert not [p for p in change.fields["paths"] if p.endswith(("~", "___")) or p == "4913"]


def test_initial_sync_is_skipped_when_already_in_sync_and_300_files_are_one_upload(
    project: Path, emulator: Any
) -> None:
    with watching(project, emulator) as w:
        w.settled(uploads=1)
    with watching(project, emulator, poll=True, poll_interval=0.1) as w:
        w.events.wait(lambda: bool(w.events.named("skipped", "hello")))
        for i in range(300):
            (w.src / "data" / f"{i // 50}").mkdir(parents=True, exist_ok=True)
            (w.src / "data" / f"{i // 50}" / f"f{i}.json").write_text(json.dumps({"i": i}))
        w.settled(uploads=2, skipped=1)
        (change,) = w.events.named("change", "hello")
        assert change.fields["count"] == 300 + 7 and len(change.fields["paths"]) == 20  # files, and data/ + 6 folders
    assert emulator.emulator.uploads("hello") == 2


@pytest.mark.slow
def test_a_steady_writer_is_pushed_at_least_every_max_wait(project: Path, emulator: Any) -> None:
    with watching(project, emulator, debounce_ms=300, max_wait_ms=1000) as w:
        w.settled(uploads=1, quiet=0)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 5.0:
            n += 1
            (w.src / "index.py").write_text(f"{HELLO_PY}# write {n}\n")
            time.sleep(0.1)  # the writer's own pace, not a synchronisation
        final = package_function(w.fn).sha512
        w.events.wait(lambda: any(e.fields["digest"] == final for e in w.events.named("pushed", "hello")))
        w.settled(uploads=w.base + w.pushed())
    pushes = w.events.named("pushed", "hello")[1:]
    assert len(pushes) >= 4, [e.ts for e in pushes]
    stamps = [_seconds(e.ts) for e in pushes]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps[:-1], default=0) < 2.0, gaps


def _seconds(ts: str) -> float:
    hms = ts.split("T")[1].rstrip("Z")
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_touch_identical_rewrite_and_edit_then_revert_upload_nothing(project: Path, emulator: Any) -> None:
    with watching(project, emulator) as w:
        w.settled(uploads=1)
        os.utime(w.src / "index.py", (1, 1))  # touch
        w.settled(uploads=1, skipped=1)
        (w.src / "index.py").write_text(HELLO_PY)  # identical rewrite
        w.settled(uploads=1, skipped=2)
        (w.src / "index.py").write_text(HELLO_PY + "# oops\n")  # edit then revert, one burst
        (w.src / "index.py").write_text(HELLO_PY)
        w.settled(uploads=1, skipped=3)
        assert {e.fields["reason"] for e in w.events.named("skipped")} == {"unchanged"}


def test_a_change_during_an_upload_gets_exactly_one_follow_up_with_the_newest_content(
    project: Path, emulator: Any
) -> None:
    with watching(project, emulator) as w:
        w.settled(uploads=1)
        w.emu.inject("update_code", delay=1.0)
        puts = w.emu.calls("update_code")
        (w.src / "index.py").write_text(HELLO_PY + "# v2\n")
        w.events.wait(lambda: w.emu.calls("update_code") > puts)  # the v2 upload is in flight
        for version in ("v3", "v4"):
            (w.src / "index.py").write_text(f"{HELLO_PY}# {version}\n")
        w.settled(uploads=3)
        assert w.pushed() == 3 and "v4" in (w.src / "index.py").read_text()


def test_transient_failures_retry_until_the_change_arrives(project: Path, emulator: Any) -> None:
    with watching(project, emulator) as w:
        w.settled(uploads=1)
        w.emu.inject("update_code", status=503, times=5)
        w.emu.inject("update_code", status=429, times=2)
        w.emu.inject("update_code", drop=True, times=2)
        (w.src / "lib" / "util.py").write_text("X = 2\n")
        w.settled(uploads=2)
        errors = w.events.named("error", "hello")
        assert errors and all(e.fields["retryable"] for e in errors)
        assert w.emu.calls("update_code") == 2 + 9


@contextmanager
def keyring_login(project: Path) -> Iterator[tuple[KeyringStore, Callable[[FunctionConfig, Emit], object], Any]]:
    """The watch command's own sync step and credential stamp, over the (in-memory) keyring."""
    config = load_config(project / "fgsync.toml")
    store = KeyringStore(config.iam_endpoint, config.project_id)

    def make_client() -> FunctionGraphClient:
        creds = resolve_credentials(iam_endpoint=config.iam_endpoint, project_id=config.project_id, env={})
        return FunctionGraphClient(config.endpoint, config.project_id, auth=creds.auth(), retry=FAST_RETRY)

    def stamp() -> str:
        return credential_stamp(iam_endpoint=config.iam_endpoint, project_id=config.project_id, env={})

    clients = ClientCache(make_client, stamp)
    try:
        yield store, make_sync_step(_App(), WatchState(config), clients), stamp  # type: ignore[arg-type]
    finally:
        clients.close()


def test_a_401_pauses_until_a_new_login_then_pushes(project: Path, emulator: Any) -> None:
    with keyring_login(project) as (store, sync, stamp):
        save_token(store, IssuedToken(TOKEN, None), user=None, domain=None)
        with watching(project, emulator, sync=sync, credential_stamp=stamp) as w:
            w.settled(uploads=1)
            w.emu.expire_tokens()
            (w.src / "index.py").write_text(HELLO_PY + "# after expiry\n")
            w.events.wait(lambda: bool(w.events.named("error", "hello")))
            (error,) = w.events.named("error", "hello")
            assert "fgsync login" in error.fields["message"] and error.fields["code"] != "error"
            time.sleep(0.3)
            assert w.emu.uploads("hello") == 1  # paused, not hammering the service
            token, _, _ = w.emu.issue_token()  # `fgsync login` in another terminal
            save_token(store, IssuedToken(token, None), user=None, domain=None)
            w.settled(uploads=2)
    assert len(w.events.named("error", "hello")) == 1


def test_401s_for_a_while_pause_then_the_periodic_retry_pushes(project: Path, emulator: Any) -> None:
    timing = Timing(backoff_base=0.05, backoff_cap=0.3, auth_poll=0.05, auth_retry=0.3)
    with watching(project, emulator, timing=timing) as w:
        w.settled(uploads=1)
        w.emu.inject("update_code", status=401, code="APIGW.0301", times=3)  # the gateway refuses the token
        (w.src / "index.py").write_text(HELLO_PY + "# v2\n")
        w.settled(uploads=2, quiet=0.2)
        assert w.emu.calls("update_code") == 1 + 3 + 1
    (error,) = w.events.named("error", "hello")  # one event per pause, not one per refused retry
    assert error.fields["code"] == "APIGW.0301" and "fgsync login" in error.fields["message"]
    assert error.fields["retry_in_ms"] == 300


def test_watch_started_before_login_pushes_once_credentials_appear(project: Path, emulator: Any) -> None:
    with (
        keyring_login(project) as (store, sync, stamp),
        watching(project, emulator, sync=sync, credential_stamp=stamp) as w,
    ):
        (error,) = w.events.named("error", "hello")
        assert error.fields["code"] == "auth" and error.fields["message"].count("fgsync login") == 1
        assert w.emu.uploads("hello") == 0
        save_token(store, IssuedToken(TOKEN, None), user=None, domain=None)
        w.settled(uploads=1)


class _App:
    """The two AppContext parts the sync step uses: a store and a reporter's progress hook."""

    def __init__(self) -> None:
        self.store = StateStore()
        self.reporter = self

    @contextmanager
    def progress(self, function: str) -> Iterator[Callable[[int, int], None]]:
        yield lambda sent, total: None


# -- the real command, as a subprocess -------------------------------------------------------------------------


def _children_in(folder: Path) -> list[int]:
    """Processes whose working folder is under folder (a build left running would be one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            if cwd == folder or folder in cwd.parents:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_an_upload_lets_it_finish_and_exits_cleanly(
    project: Path, emulator: Any, sig: int, code: int
) -> None:
    emu = emulator.emulator
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FGSYNC_", "CLOUD_SDK_"))}
    env.update(FGSYNC_TOKEN=TOKEN, FGSYNC_CACHE_DIR=str(project / ".cache"), PYTHONUNBUFFERED="1")
    emu.inject("update_code", delay=1.5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fgsync", "watch", "--json", "--debounce-ms", "50"],
        cwd=project / "functions",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while emu.calls("update_code") == 0:  # the initial upload is in flight (held 1.5 s)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["watching", "packaged", "waiting", "pushed", "stopped"]
    # said at once, while the upload is still held: what is in flight, and how to abort it
    assert events[2]["message"] == "waiting for the upload of hello; Ctrl+C again to abort"
    assert events[-1]["pending"] == []
    assert emu.uploads("hello") == 1
    fn = load_config(project / "fgsync.toml").functions[0]
    assert emu.function("hello").digest == package_function(fn).sha512 == events[1]["sha512"]
    assert not _children_in(project)
    for secret in SECRETS:
        assert secret not in out and secret not in err


class Proc:
    """`fgsync watch ...` as a subprocess, its stdout read line by line on a thread."""

    def __init__(
        self, project: Path, *args: str, env: Optional[dict[str, str]] = None, cwd: Optional[Path] = None
    ) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("FGSYNC_", "CLOUD_SDK_"))}
        environ.update(FGSYNC_TOKEN=TOKEN, FGSYNC_CACHE_DIR=str(project / ".cache"), PYTHONUNBUFFERED="1")
        environ.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fgsync", "watch", *args],
            cwd=cwd or project,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.lines}"
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; stdout so far: {self.lines}"
                self._cond.wait(min(left, 0.1))

    def events(self) -> list[dict[str, Any]]:
        """The NDJSON events so far (with --json)."""
        with self._cond:
            return [json.loads(line) for line in self.lines]

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """The first NDJSON event that matches, waiting for it."""
        line = self.wait_line(lambda line: predicate(json.loads(line)), timeout)
        return dict(json.loads(line))

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        try:
            err = self.proc.stderr.read() if self.proc.stderr and not self.proc.stderr.closed else ""
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        return code, err


def test_watch_invoke_in_human_mode_shows_each_new_result(project: Path, emulator: Any) -> None:
    make_tree(project / "events", {"hello.json": '{"name": "fgsync"}'})
    write_config(
        project,
        endpoint=emulator.url,
        functions=[{"name": "hello", "source": "functions/hello", "invoke_event": "events/hello.json"}],
    )
    with Proc(project, "--invoke", "--debounce-ms", "50") as watch:
        watch.wait_line(lambda line: "invoked: status 200" in line and "fgsync" in line)
        (project / "functions" / "hello" / "index.py").write_text(HELLO_PY.replace('"hello"', '"hola"'))
        watch.wait_line(lambda line: "invoked" in line and "hola" in line)
        watch.proc.send_signal(signal.SIGTERM)
        code, err = watch.finish()
    assert code == 0, err
    assert "Traceback" not in err
    out = "\n".join(watch.lines)
    assert "watching 1 function(s): hello" in watch.lines[0]
    assert "hello  changed index.py" in out and "hello  pushed" in out
    assert watch.lines[-1].endswith("stopped")
    assert emulator.emulator.uploads("hello") == 2
    fn = load_config(project / "fgsync.toml").functions[0]
    assert emulator.emulator.function("hello").digest == package_function(fn).sha512
    for secret in SECRETS:
        assert secret not in out and secret not in err


def test_a_second_ctrl_c_aborts_the_upload_at_once(project: Path, emulator: Any) -> None:
    emu = emulator.emulator
    emu.inject("update_code", delay=8.0)
    with Proc(project, "--json") as watch:
        deadline = time.monotonic() + 20
        while emu.calls("update_code") == 0:  # the initial upload is in flight, held for 8 s
            assert time.monotonic() < deadline and watch.proc.poll() is None
            time.sleep(0.02)
        watch.proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # two signals in one instant are one signal to Python; give the first its turn
        assert watch.proc.poll() is None  # the first one waits for the upload
        aborted = time.monotonic()
        watch.proc.send_signal(signal.SIGINT)
        code, err = watch.finish()
    assert code == 130
    assert time.monotonic() - aborted < 3.0
    assert "Aborted." in err and "Traceback" not in err
    events = [json.loads(line) for line in watch.lines]
    assert [e["event"] for e in events] == ["watching", "packaged", "waiting", "stopped"]
    assert events[-1]["pending"] == ["hello"]  # the upload was abandoned: its change is named as not pushed


def test_client_cache_builds_lazily_and_rebuilds_when_the_credentials_change(emulator: Any) -> None:
    stamp = ["a"]
    made: list[FunctionGraphClient] = []

    def make() -> FunctionGraphClient:
        creds = resolve_credentials(iam_endpoint=emulator.url, project_id=PROJECT_ID, env={"FGSYNC_TOKEN": TOKEN})
        made.append(FunctionGraphClient(emulator.url, PROJECT_ID, auth=creds.auth()))
        return made[-1]

    cache = ClientCache(make, lambda: stamp[0])
    assert made == []
    first = cache.get()
    assert cache.get() is first and len(made) == 1
    stamp[0] = "b"  # `fgsync login` replaced the keyring entry
    second = cache.get()
    assert second is not first and len(made) == 2
    cache.close()
    assert all(client._http.is_closed for client in made)


def test_functions_that_share_their_inputs_are_packaged_once_per_burst(tmp_path: Path) -> None:
    """50 functions over one folder: one edit, one build; a function that changed after that build gets a new one."""
    make_tree(tmp_path / "shared", {"index.py": HELLO_PY})
    fns = [
        FunctionConfig(
            name=f"f{n}", source=tmp_path / "shared", package="default",
            urn=f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:f{n}:latest", code_type="zip",
            code_filename="index.zip", artifact=None, build=None, exclude=(),
            use_gitignore=False, depend_version_list=None, kms_key_id=None, invoke_event=None,
        )
        for n in range(50)
    ]  # fmt: skip
    now = [100.0]
    packager = IncrementalPackager(told=True, clock=lambda: now[0])
    first = [packager(fn) for fn in fns]
    assert all(split is first[0] for split in first)  # the initial syncs: one build
    now[0] = 101.0
    (tmp_path / "shared" / "index.py").write_text(HELLO_PY + "# edited\n")
    for fn in fns:
        packager.changed(fn.name, ["index.py"])
    now[0] = 102.0
    second = [packager(fn) for fn in fns]
    assert second[0] is not first[0] and all(split is second[0] for split in second)
    assert second[0].code.sha512 == package_function(fns[0]).sha512
    now[0] = 103.0
    packager.changed("f7", ["index.py"])  # a later burst for one of them
    now[0] = 104.0
    assert packager(fns[7]) is not second[0]
    different = fns[0].__class__(**{**fns[0].__dict__, "name": "other", "exclude": ("*.md",)})
    assert packager(different) is not second[0]  # other rules: other inputs, its own build
