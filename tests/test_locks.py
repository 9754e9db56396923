"""fgsync.locks: lock files between fgsync processes, driven with threads and child processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fgsync.errors import LockedError
from fgsync.locks import LockFolder

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
