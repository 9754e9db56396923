"""One `fgsync watch` per config and state folder, and `fgsync push` never racing a watch on a function.

The process tests run the real `fgsync` (two terminals, or an editor task plus a terminal) against the emulator
on a loopback port; the unit tests drive :mod:`fgsync.locks` with threads and child processes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import HELLO_PY, make_tree, write_config
from processes import (
    FgsyncProcess,
    alive,
    no_tracebacks,
    processes_in,
    run_fgsync,
    synced,
    wait_until,
    watch,
)

from fgsync.config import load_config
from fgsync.errors import LockedError
from fgsync.locks import LockFolder
from fgsync.sync import package_function


@pytest.fixture
def project(tmp_path: Path, emulator: Any) -> Path:
    """`hello` on disk and in the emulator (template code), a config pointing at the emulator."""
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY, "lib/util.py": "X = 1\n"})
    write_config(tmp_path, endpoint=emulator.url)
    emulator.emulator.create_function("hello")
    return tmp_path


def edit(project: Path, version: str) -> None:
    (project / "functions" / "hello" / "index.py").write_text(f"{HELLO_PY}# {version}\n")


def assert_remote_is_local(project: Path, emulator: Any) -> None:
    fn = load_config(project / "fgsync.toml").functions[0]
    assert emulator.emulator.function("hello").digest == package_function(fn).sha512


# -- the real commands -----------------------------------------------------------------------------------------


def test_a_second_watch_on_one_config_refuses_naming_the_first_and_a_killed_one_frees_it(
    project: Path, emulator: Any
) -> None:
    emu = emulator.emulator
    cache = project / ".cache"
    config = project / "fgsync.toml"
    message = f"fgsync watch is already running for {config} (pid {{pid}}); stop it first, or use `fgsync push`"
    with watch(project, cache) as first:
        first.wait_for(lambda events: synced(events))
        assert emu.uploads("hello") == 1

        second = run_fgsync(project / "functions", cache, "watch", "--json", timeout=30)
        assert second.code == 1
        assert second.err.strip() == f"Error: {message.format(pid=first.pid)}"
        (event,) = second.events
        assert event["event"] == "error" and event["message"] == message.format(pid=first.pid)
        human = run_fgsync(project, cache, "watch", timeout=30)
        assert human.code == 1 and human.out == ""
        assert human.err.strip() == f"Error: {message.format(pid=first.pid)}"

        edit(project, "v2")
        first.wait_for(lambda events: synced(events, 2))
        assert emu.uploads("hello") == 2, "one watch, one upload per change"
        first.proc.send_signal(signal.SIGKILL)
        first.finish()
    assert not alive(first.pid)

    # kill -9 leaves no stale lock: the OS released it with the process.
    with watch(project, cache) as third:
        third.wait_for(lambda events: synced(events))
        edit(project, "v3")
        third.wait_for(lambda events: synced(events, 2))
        result = third.stop(signal.SIGTERM)
    assert result.code == 0, result.err
    assert [e["event"] for e in result.events if e["event"] in ("skipped", "pushed")] == ["skipped", "pushed"]
    assert emu.uploads("hello") == 3
    assert_remote_is_local(project, emulator)
    no_tracebacks(second, human, result)
    assert not processes_in(project)


def test_watches_on_other_configs_or_state_folders_run_side_by_side(project: Path, emulator: Any) -> None:
    other = project / "other"
    make_tree(other / "functions" / "hello", {"index.py": HELLO_PY})
    write_config(other, endpoint=emulator.url)
    with watch(project, project / ".cache") as first, watch(other, project / ".cache") as second:
        first.wait_for(lambda events: synced(events))
        second.wait_for(lambda events: synced(events))
        with watch(project, project / ".cache-2") as third:
            third.wait_for(lambda events: synced(events))
            results = [p.stop(signal.SIGTERM) for p in (first, second, third)]
    assert [r.code for r in results] == [0, 0, 0], [r.err for r in results]
    no_tracebacks(*results)


def test_push_while_a_watch_uploads_waits_for_it_and_nothing_is_uploaded_twice(project: Path, emulator: Any) -> None:
    emu = emulator.emulator
    cache = project / ".cache"
    with watch(project, cache) as daemon:
        daemon.wait_for(lambda events: synced(events))
        assert emu.uploads("hello") == 1
        emu.inject("update_code", delay=2.0)  # the watch's next upload is held by the service for 2 s
        edit(project, "v2")
        wait_until(lambda: emu.calls("update_code") == 2, what="the watch's v2 upload in flight")

        with FgsyncProcess(project, cache, "push", "--json") as push:
            push.wait_for(lambda events: any(e["event"] == "waiting" for e in events))
            (waiting,) = push.named("waiting")
            assert waiting == {
                "event": "waiting",
                "ts": waiting["ts"],
                "function": "hello",
                "reason": "in-flight",
                "message": f"waiting for the sync of hello in another fgsync process (pid {daemon.pid})",
            }
            pushed = push.finish()
        assert pushed.code == 0, pushed.err
        assert [e["event"] for e in pushed.events] == ["packaged", "waiting", "skipped"]
        assert pushed.named("skipped")[0]["reason"] == "unchanged"
        daemon.wait_for(lambda events: synced(events, 2))

        human = run_fgsync(project, cache, "push")
        result = daemon.stop(signal.SIGTERM)
    assert result.code == 0, result.err
    assert [e["event"] for e in result.events if e["event"] in ("skipped", "pushed", "drift")] == [
        "pushed",  # the initial sync
        "pushed",  # v2, the one the push waited for
    ]
    assert "hello  skipped (unchanged)" in human.out
    assert emu.uploads("hello") == 2, "each change uploaded exactly once"
    assert_remote_is_local(project, emulator)
    no_tracebacks(pushed, human, result)


# -- fgsync.locks ------------------------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from fgsync.locks import LockFolder
with LockFolder(Path(sys.argv[1])).watch(Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_the_watch_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    locks = LockFolder(tmp_path / "locks")
    config = tmp_path / "fgsync.toml"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "locks"), str(config)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(LockedError) as caught, locks.watch(config):
            pass
        assert caught.value.pid == holder.pid and caught.value.exit_code == 1
        assert str(caught.value) == (
            f"fgsync watch is already running for {config} (pid {holder.pid}); stop it first, or use `fgsync push`"
        )
        assert locks.watch_path(config).read_text() == f"{holder.pid}\n", "the pid, and nothing else"
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    with locks.watch(config):  # kill -9 released it: no stale lock to clean
        assert locks.watch_path(config).read_text() == f"{os.getpid()}\n"
    assert locks.watch_path(config).read_text() == "", "emptied on release, never deleted"


def test_a_lock_file_left_with_a_dead_pid_is_simply_taken(tmp_path: Path) -> None:
    locks = LockFolder(tmp_path / "locks")
    path = locks.function_path("http://a", "urn:x")
    path.parent.mkdir(parents=True)
    path.write_text("999999999\n")
    waited: list[object] = []
    with locks.function("http://a", "urn:x", on_wait=waited.append) as held:
        assert held and waited == []
        assert path.read_text() == f"{os.getpid()}\n"


def test_the_function_lock_excludes_threads_and_says_who_is_waited_for(tmp_path: Path) -> None:
    locks = LockFolder(tmp_path / "locks")
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with locks.function("http://a/", "urn:x"):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    with locks.function("http://a", "urn:x", wait=False) as held:
        assert not held, "busy: status goes on without it"
    with locks.function("http://a", "urn:other", wait=False) as held:
        assert held, "another function is another lock"
    waited: list[object] = []

    def on_wait(pid: object) -> None:
        waited.append(pid)
        release.set()

    with locks.function("http://a", "urn:x", on_wait=on_wait):
        order.append("second in")
    thread.join(10)
    assert waited == [os.getpid()]
    assert order == ["first in", "first out", "second in"]


def test_a_locks_folder_that_cannot_be_made_warns_once_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder should be\n")
    locks = LockFolder(tmp_path / "cache" / "locks")
    with caplog.at_level(logging.DEBUG, logger="fgsync.locks"):
        with locks.watch(tmp_path / "fgsync.toml"), locks.function("http://a", "urn:x") as held:
            assert held
        with locks.function("http://a", "urn:x"):
            pass
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "going on without it" in warnings[0].getMessage()
    assert "Not a directory" in warnings[0].getMessage()
