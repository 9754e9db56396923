"""fgsync.watch.scheduler and .daemon: the policy with a fake clock, and the loop over real files with a fake sync."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from conftest import make_tree
from test_watch import make_fn

from fgsync.config import FunctionConfig
from fgsync.errors import (
    ApiError,
    AuthApiError,
    BuildError,
    CredentialsError,
    FgsyncError,
    NetworkError,
    PackageError,
    TransientApiError,
)
from fgsync.events import Emit, Event
from fgsync.package.fingerprint import InputFingerprints
from fgsync.watch import Daemon, Scheduler, Timing, backoff_delay, git_lock_held

# -- Scheduler (pure, fake time) -------------------------------------------------------------------------------

T = Timing(backoff_base=1.0, backoff_cap=60.0, auth_poll=2.0, auth_retry=30.0, lock_poll=0.2)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    assert [backoff_delay(n, base=1, cap=60, rand=lambda: 1.0) for n in (1, 2, 3, 6, 7, 20)] == [1, 2, 4, 32, 60, 60]
    assert backoff_delay(3, base=1, cap=60, rand=lambda: 0.0) == 2.0  # never less than half
    assert backoff_delay(0, base=0.5, cap=60, rand=lambda: 1.0) == 0.5


def test_initial_sync_then_one_follow_up_for_changes_during_flight() -> None:
    s = Scheduler(["a", "b"], timing=T)
    assert s.due(0.0) == ["a", "b"]
    assert s.due(0.0) == []
    s.finished("b", None, 1.0)
    for _ in range(3):
        s.changed("a")  # three bursts while a's upload runs
    assert s.due(1.0) == []
    assert s.finished("a", None, 2.0) is None
    assert s.due(2.0) == ["a"]
    s.finished("a", None, 3.0)
    assert s.due(3.0) == [] and s.next_wakeup(3.0) is None


def test_retryable_errors_back_off_and_retry_without_a_new_change() -> None:
    s = Scheduler(["a"], timing=T, rand=lambda: 1.0)
    s.due(0.0)
    event = s.finished("a", TransientApiError("throttled", status=429, code="FSS.0429", retryable=True), 0.0)
    assert event is not None and event.fields["retryable"] is True and event.fields["retry_in_ms"] == 1000
    assert event.fields["code"] == "FSS.0429"
    assert s.due(0.9) == [] and s.next_wakeup(0.9) == 1.0
    assert s.due(1.0) == ["a"]
    event = s.finished("a", NetworkError("connection reset"), 1.0)
    assert event is not None and event.fields["retry_in_ms"] == 2000 and event.fields["code"] == "network"
    assert s.due(2.9) == [] and s.due(3.0) == ["a"]
    s.finished("a", None, 3.0)  # success resets the backoff
    s.changed("a")
    assert s.due(3.0) == ["a"]
    assert s.finished("a", NetworkError("again"), 3.0).fields["retry_in_ms"] == 1000  # type: ignore[union-attr]


def test_retry_after_from_the_service_is_honoured_within_the_cap() -> None:
    s = Scheduler(["a"], timing=Timing(backoff_base=0.1, backoff_cap=5.0), rand=lambda: 1.0)
    s.due(0.0)
    error = TransientApiError("slow down", status=429, code="FSS.0429", retryable=True)
    error.retry_after = 3.0
    assert s.finished("a", error, 0.0).fields["retry_in_ms"] == 3000  # type: ignore[union-attr]
    error.retry_after = 600.0
    s.due(3.0)
    assert s.finished("a", error, 3.0).fields["retry_in_ms"] == 5000  # type: ignore[union-attr]


def test_credentials_error_pauses_until_the_stamp_changes_or_the_periodic_retry() -> None:
    stamp = ["token-1"]
    s = Scheduler(["a"], timing=T, credential_stamp=lambda: stamp[0])
    s.due(0.0)
    event = s.finished("a", AuthApiError("token expired", status=401, code="FSS.0401"), 0.0)
    assert event is not None and "fgsync login" in event.fields["message"] and event.fields["code"] == "FSS.0401"
    assert event.fields["retryable"] is False and event.fields["retry_in_ms"] == 30000
    assert s.paused("a")
    assert s.due(2.0) == [] and s.due(5.0) == []  # stamp polled, unchanged
    stamp[0] = "token-2"  # `fgsync login` ran
    assert s.due(6.9) == []  # the stamp is next polled at 7.0
    assert s.due(7.0) == ["a"]
    assert s.finished("a", CredentialsError("still no good"), 7.0) is None  # one event per pause, not per retry
    assert s.due(36.9) == []
    assert s.next_wakeup(36.9) == pytest.approx(37.0)
    assert s.due(37.0) == ["a"]  # the periodic retry, credentials unchanged
    assert s.finished("a", None, 37.5) is None and not s.paused("a")


def test_a_login_that_lands_while_the_failing_request_is_in_flight_still_resumes_early() -> None:
    stamp = ["token-1"]
    s = Scheduler(["a"], timing=T, credential_stamp=lambda: stamp[0])
    assert s.due(0.0) == ["a"]
    stamp[0] = "token-2"  # `fgsync login` finished before the 401 of the old token came back
    s.finished("a", AuthApiError("token expired", status=401, code="FSS.0401"), 0.5)
    assert s.paused("a")
    assert s.due(2.5) == ["a"], "the next stamp poll sees new credentials, not the 30 s periodic retry"


def test_a_credentials_error_that_already_says_how_to_log_in_is_not_told_twice() -> None:
    s = Scheduler(["a"], timing=T)
    s.due(0.0)
    event = s.finished("a", CredentialsError("no credentials for project p: run `fgsync login`"), 0.0)
    assert event is not None and event.fields["message"].count("fgsync login") == 1
    assert event.fields["code"] == "auth" and "resumes by itself" in event.fields["message"]


def test_other_errors_are_reported_and_wait_for_the_next_change() -> None:
    s = Scheduler(["a"], timing=T)
    s.due(0.0)
    event = s.finished("a", BuildError("build failed (exit 2)", output="SyntaxError", returncode=2), 0.0)
    assert event is not None and event.fields["code"] == "build" and event.extra["detail"] == "SyntaxError"
    assert event.fields["retryable"] is False and event.fields["retry_in_ms"] is None
    assert s.due(100.0) == [] and s.next_wakeup(100.0) is None
    s.changed("a")
    assert s.due(100.0) == ["a"]
    event = s.finished("a", ApiError("Not found the function", status=404, code="FSS.1051"), 100.0)
    assert event is not None and event.fields["code"] == "FSS.1051"
    s.changed("a")
    s.due(101.0)
    event = s.finished("a", ZeroDivisionError("boom"), 101.0)
    assert event is not None and event.fields["code"] == "error" and "ZeroDivisionError" in event.fields["message"]


def test_git_lock_holds_syncs_and_is_polled() -> None:
    held = {"a": True}
    calls = []

    def lock_held(name: str) -> bool:
        calls.append(name)
        return held[name]

    s = Scheduler(["a"], timing=T, lock_held=lock_held)
    assert s.due(0.0) == []
    assert s.next_wakeup(0.0) == pytest.approx(0.2)
    assert s.due(0.1) == [] and len(calls) == 1  # not re-checked before lock_poll
    held["a"] = False
    assert s.due(0.2) == ["a"]


def test_a_git_lock_that_holds_long_is_said_after_10_s_and_every_minute(tmp_path: Path) -> None:
    """A stale index.lock (a git that crashed) must not hold a change in silence."""
    lock = tmp_path / ".git" / "index.lock"
    lock.parent.mkdir()
    lock.write_text("")
    s = Scheduler(["a"], timing=T, lock_held=lambda name: lock)
    assert s.due(0.0) == [] and s.notices(5.0) == []
    s.due(9.0)
    assert s.notices(9.9) == []
    (event,) = s.notices(10.0)
    assert event.event == "waiting" and event.function == "a"
    assert event.fields["reason"] == "git-lock" and event.fields["path"] == str(lock)
    assert str(lock) in event.fields["message"] and "remove it" in event.fields["message"]
    assert s.notices(30.0) == []
    s.due(69.9)
    assert len(s.notices(70.0)) == 1
    assert s.pending() == ["a"]  # named when watching stops


def test_pending_names_what_may_not_be_pushed() -> None:
    s = Scheduler(["a", "b", "c"], timing=T)
    assert sorted(s.pending()) == ["a", "b", "c"]  # each owes its initial sync
    assert s.due(0.0) == ["a", "b", "c"]
    s.finished("a", None, 1.0)
    s.finished("b", FgsyncError("HTTP 403: no permission"), 1.0)
    assert sorted(s.pending()) == ["b", "c"]  # b failed, c is still running
    s.finished("c", None, 1.0)
    s.changed("a")
    assert sorted(s.pending()) == ["a", "b"]


def test_git_lock_held_finds_index_lock_in_the_source_or_a_parent_repo(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    source = make_tree(repo / "functions" / "hello", {"index.py": "x"})
    (repo / ".git").mkdir()
    assert not git_lock_held(source)
    (repo / ".git" / "index.lock").write_text("")
    assert git_lock_held(source)
    (repo / ".git" / "index.lock").unlink()
    # a worktree or submodule: .git is a file naming the real git folder
    real = tmp_path / "gitdirs" / "hello"
    real.mkdir(parents=True)
    (source / ".git").write_text(f"gitdir: {real}\n")
    assert not git_lock_held(source)
    (real / "index.lock").write_text("")
    assert git_lock_held(source)


# -- The loop, real files, fake sync ---------------------------------------------------------------------------


class Events:
    """A thread-safe event sink with a wait-until helper."""

    def __init__(self) -> None:
        self.items: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def named(self, name: str, function: Optional[str] = None) -> list[Event]:
        with self._cond:
            return [e for e in self.items if e.event == name and (function is None or e.function == function)]

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; events: {[(e.event, e.function, e.fields) for e in self.items]}"
                self._cond.wait(min(left, 0.05))


class FakeSync:
    """Records what each sync saw on disk; a gate holds a sync in flight; errors can be scripted."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.gate: Optional[threading.Event] = None
        self.entered = threading.Event()
        self.errors: list[Exception] = []
        self.during: Optional[Callable[[FunctionConfig], None]] = None
        self._lock = threading.Lock()

    def __call__(self, fn: FunctionConfig, emit: Emit) -> object:
        snapshot = {p.relative_to(fn.source).as_posix(): p.read_text() for p in fn.source.rglob("*.py")}
        with self._lock:
            self.calls.append((fn.name, snapshot))
            error = self.errors.pop(0) if self.errors else None
        self.entered.set()
        if self.during is not None:
            self.during(fn)
        emit(Event("packaged", fn.name, {"files": len(snapshot), "bytes": 1, "sha512": "0" * 128, "ms": 1}))
        if self.gate is not None:
            assert self.gate.wait(10)
        if error is not None:
            raise error
        emit(Event("pushed", fn.name, {"bytes": 1, "digest": "d" * 128, "ms": 1}))
        return None

    def count(self, name: str) -> int:
        with self._lock:
            return sum(1 for n, _ in self.calls if n == name)


FAST = Timing(backoff_base=0.05, backoff_cap=0.2, auth_poll=0.05, auth_retry=0.5, lock_poll=0.05)


@contextmanager
def running(functions: list[FunctionConfig], sync: FakeSync, events: Events, **options: Any) -> Iterator[Daemon]:
    stop = threading.Event()
    options.setdefault("timing", FAST)
    daemon = Daemon(functions, sync=sync, emit=events, stop_event=stop, debounce_ms=60, max_wait_ms=1000, **options)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            daemon.run()
        except BaseException as error:
            failure.append(error)

    before = {t.ident for t in threading.enumerate()}
    thread = threading.Thread(target=target)
    thread.start()
    try:
        events.wait(lambda: bool(events.named("watching")))
        yield daemon
    finally:
        stop.set()
        if sync.gate is not None:
            sync.gate.set()
        thread.join(10)
    assert not thread.is_alive()
    assert not failure, failure
    assert events.items[-1].event == "stopped"
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not left, f"threads left behind: {left}"


def idle(sync: FakeSync, events: Events, name: str, n: int) -> None:
    """Wait until name has finished n syncs (pushed or error events)."""
    events.wait(lambda: len(events.named("pushed", name)) + len(events.named("error", name)) >= n)


def test_initial_sync_then_one_sync_per_burst_of_real_writes(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "v1"})
    events = Events()
    sync = FakeSync(events)
    with running([make_fn("hello", src)], sync, events):
        idle(sync, events, "hello", 1)
        for i in range(20):
            (src / f"m{i}.py").write_text(str(i))
        (src / "index.py").write_text("v2")
        idle(sync, events, "hello", 2)
        watching = events.named("watching")[0]
        assert watching.fields == {"functions": ["hello"], "paths": [str(src)]}
    assert sync.count("hello") == 2
    assert sync.calls[-1][1]["index.py"] == "v2" and len(sync.calls[-1][1]) == 21
    (change,) = events.named("change", "hello")
    assert change.fields["count"] == 21 and len(change.fields["paths"]) == 20


def test_changes_during_an_upload_cause_exactly_one_follow_up_with_the_newest_tree(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "v1"})
    events = Events()
    sync = FakeSync(events)
    with running([make_fn("hello", src)], sync, events):
        idle(sync, events, "hello", 1)
        sync.gate = threading.Event()
        sync.entered.clear()
        (src / "index.py").write_text("v2")
        assert sync.entered.wait(10)  # the v2 upload is in flight
        for version in ("v3", "v4", "v5"):  # three settled bursts, each arriving while the upload is held
            seen = len(events.named("change", "hello"))
            (src / "index.py").write_text(version)
            events.wait(lambda n=seen: len(events.named("change", "hello")) > n)  # type: ignore[misc]
        sync.gate.set()
        idle(sync, events, "hello", 3)
        time.sleep(0.3)  # room for a wrong extra sync to show up
    assert [snap["index.py"] for _, snap in sync.calls] == ["v1", "v2", "v5"]


def test_a_folder_shared_by_two_functions_rechecks_both(tmp_path: Path) -> None:
    shared = make_tree(tmp_path / "shared", {"index.py": "v1"})
    other = make_tree(tmp_path / "other", {"index.py": "o1"})
    events = Events()
    sync = FakeSync(events)
    fns = [make_fn("a", shared), make_fn("b", shared), make_fn("c", other)]
    with running(fns, sync, events):
        for name in ("a", "b", "c"):
            idle(sync, events, name, 1)
        (shared / "index.py").write_text("v2")
        idle(sync, events, "a", 2)
        idle(sync, events, "b", 2)
        time.sleep(0.2)
    assert (sync.count("a"), sync.count("b"), sync.count("c")) == (2, 2, 1)


def test_build_output_never_retriggers(tmp_path: Path) -> None:
    """A build whose output differs every time (a counter, a timestamp) must not loop: its own writes are
    compared with what the inputs held right after it, and dropped."""
    src = make_tree(tmp_path / "app", {"index.py": "v1"})
    events = Events()
    sync = FakeSync(events)
    fingerprints = InputFingerprints()
    builds = []

    def build(fn: FunctionConfig) -> None:  # what a build command does: writes into the source
        builds.append(1)
        (fn.source / "dist").mkdir(exist_ok=True)
        (fn.source / "dist" / "bundle.py").write_text(f"bundle {len(builds)}")
        fingerprints.record(fn)  # what sync_function's after_build does

    sync.during = build
    with running([make_fn("app", src, build="make")], sync, events, inputs_changed=fingerprints.changed):
        idle(sync, events, "app", 1)
        time.sleep(0.4)  # past the debounce: a self-trigger would have started
        assert sync.count("app") == 1
        (src / "index.py").write_text("v2")
        idle(sync, events, "app", 2)
        time.sleep(0.4)
    assert sync.count("app") == 2
    assert not [e for e in events.named("change") if any(p.startswith("dist") for p in e.fields["paths"])]
    assert [e.fields["paths"] for e in events.named("change")] == [["index.py"]]


def test_a_save_right_after_a_build_is_never_dropped(tmp_path: Path) -> None:
    """The old time window dropped every event for 0.3 s after a build's packaging; by content, a save that
    lands right after packaging (before the build's own events even settle) is a change like any other."""
    src = make_tree(tmp_path / "app", {"index.py": "v1"})
    events = Events()
    sync = FakeSync(events)
    fingerprints = InputFingerprints()
    saved = threading.Event()

    def build(fn: FunctionConfig) -> None:
        (fn.source / "dist").mkdir(exist_ok=True)
        (fn.source / "dist" / "bundle.py").write_text(f"bundle {time.monotonic()}")
        fingerprints.record(fn)
        if sync.count("app") == 2 and not saved.is_set():
            saved.set()
            (fn.source / "index.py").write_text("v3")  # the user saves while the sync is still running

    sync.during = build
    with running([make_fn("app", src, build="make")], sync, events, inputs_changed=fingerprints.changed):
        idle(sync, events, "app", 1)
        (src / "index.py").write_text("v2")
        idle(sync, events, "app", 3)
        time.sleep(0.4)
    assert [snap["index.py"] for _, snap in sync.calls] == ["v1", "v2", "v3"]


def test_changes_while_a_build_fails_are_not_lost(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "app", {"index.py": "v1"})
    events = Events()
    sync = FakeSync(events)
    fingerprints = InputFingerprints()
    sync.errors = [BuildError("build command failed with exit code 2")]
    with running([make_fn("app", src, build="make")], sync, events, inputs_changed=fingerprints.changed):
        idle(sync, events, "app", 1)  # failed before any fingerprint was taken
        (src / "index.py").write_text("v2")
        idle(sync, events, "app", 2)
    assert [snap["index.py"] for _, snap in sync.calls] == ["v1", "v2"]


def test_retryable_failures_retry_by_themselves_and_one_function_failing_spares_others(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"index.py": "a1"})
    b = make_tree(tmp_path / "b", {"index.py": "b1"})
    events = Events()
    sync = FakeSync(events)
    with running([make_fn("a", a), make_fn("b", b)], sync, events, max_workers=1):
        idle(sync, events, "a", 1)
        idle(sync, events, "b", 1)
        sync.errors = [NetworkError("connection reset"), TransientApiError("busy", status=503, code="FSS.0503",
                                                                          retryable=True)]  # fmt: skip
        (a / "index.py").write_text("a2")
        events.wait(lambda: len(events.named("pushed", "a")) == 2)
        sync.errors = [PackageError("index.py: unreadable")]
        (b / "index.py").write_text("b2")
        events.wait(lambda: len(events.named("error", "b")) == 1)
        (a / "index.py").write_text("a3")
        events.wait(lambda: len(events.named("pushed", "a")) == 3)
    errors_a = events.named("error", "a")
    assert [e.fields["retryable"] for e in errors_a] == [True, True]
    assert [snap["index.py"] for name, snap in sync.calls if name == "a"] == ["a1", "a2", "a2", "a2", "a3"]
    assert events.named("error", "b")[0].fields["code"] == "package"


def test_a_401_pauses_then_resumes_when_credentials_change(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "v1"})
    events = Events()
    sync = FakeSync(events)
    stamp = ["old"]
    sync.errors = [AuthApiError("token expired", status=401, code="FSS.0401")] * 50
    with running([make_fn("hello", src)], sync, events, credential_stamp=lambda: stamp[0],
                 timing=Timing(auth_poll=0.05, auth_retry=60.0)):  # fmt: skip
        events.wait(lambda: bool(events.named("error", "hello")))
        time.sleep(0.2)
        assert sync.count("hello") == 1  # paused: no retry while the credentials stay the same
        sync.errors = []
        stamp[0] = "new"
        events.wait(lambda: bool(events.named("pushed", "hello")))
    (error,) = events.named("error", "hello")
    assert "fgsync login" in error.fields["message"]


def test_syncs_wait_while_a_git_operation_holds_the_index(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    src = make_tree(repo / "hello", {"index.py": "v1"})
    (repo / ".git").mkdir()
    events = Events()
    sync = FakeSync(events)
    with running([make_fn("hello", src)], sync, events):
        idle(sync, events, "hello", 1)
        (repo / ".git" / "index.lock").write_text("")
        (src / "index.py").write_text("v2")
        events.wait(lambda: bool(events.named("change", "hello")))
        time.sleep(0.3)
        assert sync.count("hello") == 1
        (src / "index.py").write_text("v3")  # the checkout rewrites files, then drops the lock
        (repo / ".git" / "index.lock").unlink()
        idle(sync, events, "hello", 2)
        time.sleep(0.2)
    # nothing ran while the lock was held; what ran after saw the tree the checkout left
    seen = [snap["index.py"] for _, snap in sync.calls]
    assert seen[0] == "v1" and set(seen[1:]) == {"v3"}


def test_stop_lets_the_upload_in_flight_finish(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "v1"})
    events = Events()
    sync = FakeSync(events)
    sync.gate = threading.Event()
    stop = threading.Event()
    daemon = Daemon([make_fn("hello", src)], sync=sync, emit=events, stop_event=stop, debounce_ms=50, timing=FAST)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    assert sync.entered.wait(10)
    stop.set()
    thread.join(0.3)
    assert thread.is_alive()  # still waiting for the upload
    sync.gate.set()
    thread.join(10)
    assert not thread.is_alive()
    assert [e.event for e in events.items] == ["watching", "packaged", "waiting", "pushed", "stopped"]
    assert events.items[2].fields == {
        "reason": "in-flight",
        "message": "waiting for the upload of hello; Ctrl+C again to abort",
    }
    assert events.items[-1].fields == {"pending": []}


def test_an_upload_the_service_holds_gets_a_sign_of_life(tmp_path: Path) -> None:
    """No silence while the service holds a PUT: a `waiting` line after a while, then now and then."""
    src = make_tree(tmp_path / "hello", {"index.py": "v1"})
    events = Events()
    sync = FakeSync(events)
    sync.gate = threading.Event()
    timing = Timing(backoff_base=0.05, lock_poll=0.05, inflight_notice_after=0.3, inflight_notice_every=0.4)
    with running([make_fn("hello", src)], sync, events, timing=timing):
        assert sync.entered.wait(10)
        events.wait(lambda: len(events.named("waiting", "hello")) >= 2)
        sync.gate.set()
        idle(sync, events, "hello", 1)
    first, second = events.named("waiting", "hello")[:2]
    assert first.fields["reason"] == "in-flight"
    assert first.fields["message"].startswith("the upload of hello is still in flight after ")
    assert first.fields["message"].endswith(" s (waiting for the service)")
    assert second.ts > first.ts
