"""fgsync never mistakes its own upload for drift, and a push whose record cannot be written says so.

The way users hit it: the PUT lands but its answer is lost (`kill -9` of `fgsync watch` mid-upload, a connection
dropped after the service applied the update), or the state folder cannot be written (a file where the folder
should be, the state file replaced by a folder, a full disk). Each test runs the real `fgsync` as a subprocess
against the emulator on a loopback port, and ends with the remote digest equal to a cold package of the tree.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import HELLO_PY, make_tree, write_config
from processes import (
    alive,
    no_tracebacks,
    processes_in,
    run_fgsync,
    synced,
    wait_until,
    watch,
)

from fgsync.config import load_config
from fgsync.state import StateStore
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


def local_sha512(project: Path) -> str:
    return package_function(load_config(project / "fgsync.toml").functions[0]).sha512


def assert_remote_is_local(project: Path, emulator: Any) -> None:
    assert emulator.emulator.function("hello").digest == local_sha512(project)


# -- item 4: the answer was lost, the upload was not ------------------------------------------------------------


def test_kill_9_of_watch_mid_upload_is_not_drift_afterwards(project: Path, emulator: Any) -> None:
    emu = emulator.emulator
    cache = project / ".cache"
    with watch(project, cache) as first:
        first.wait_for(lambda events: synced(events))
        assert emu.uploads("hello") == 1
        emu.inject("update_code", delay=1.0)  # the service holds the next PUT, then applies it
        edit(project, "v2")
        wait_until(lambda: emu.calls("update_code") == 2, what="the v2 upload in flight")
        first.proc.send_signal(signal.SIGKILL)
        killed = first.finish()
    assert killed.code == -signal.SIGKILL
    wait_until(lambda: emu.uploads("hello") == 2, what="the service applying the v2 upload")
    assert not alive(first.pid)

    edit(project, "v3")
    status = run_fgsync(project, cache, "status", "--json")
    assert status.code == 0, status.err
    assert [e["state"] for e in status.named("status")] == ["out-of-sync"], "fgsync's own v2 upload is no drift"

    pushed = run_fgsync(project, cache, "push", "--no-overwrite", "--json")
    assert pushed.code == 0, pushed.err
    assert pushed.named("drift") == [] and len(pushed.named("pushed")) == 1
    assert emu.uploads("hello") == 3
    assert_remote_is_local(project, emulator)

    # A new watch starts at once (the killed one's lock died with it) and has nothing to upload.
    with watch(project, cache) as again:
        again.wait_for(lambda events: synced(events))
        result = again.stop(signal.SIGTERM)
    assert result.code == 0, result.err
    assert [e["reason"] for e in result.named("skipped")] == ["unchanged"]
    assert emu.uploads("hello") == 3
    no_tracebacks(status, pushed, result)
    assert not processes_in(project)


def test_an_answer_dropped_after_the_service_applied_it_is_not_drift(project: Path, emulator: Any) -> None:
    emu = emulator.emulator
    cache = project / ".cache"
    assert run_fgsync(project, cache, "push").code == 0
    # Every attempt of the next push lands, and every answer is lost: fgsync cannot tell it worked.
    emu.inject("update_code", drop_after=True, times=-1)
    edit(project, "v2")
    lost = run_fgsync(project, cache, "push", "--json")
    emu.clear_faults()
    assert lost.code == 1
    assert [e["code"] for e in lost.named("error")] == ["network"]
    assert emu.function("hello").digest == local_sha512(project)

    edit(project, "v3")
    status = run_fgsync(project, cache, "status", "--json")
    assert [e["state"] for e in status.named("status")] == ["out-of-sync"]
    pushed = run_fgsync(project, cache, "push", "--no-overwrite", "--json")
    assert pushed.code == 0, pushed.err
    assert pushed.named("drift") == [] and len(pushed.named("pushed")) == 1
    assert_remote_is_local(project, emulator)
    no_tracebacks(lost, status, pushed)


def test_watch_whose_answers_were_dropped_takes_the_landed_upload_as_its_own(project: Path, emulator: Any) -> None:
    emu = emulator.emulator
    cache = project / ".cache"
    with watch(project, cache) as proc:
        proc.wait_for(lambda events: synced(events))
        emu.inject("update_code", drop_after=True, times=5)  # one sync's PUT and its 4 retries: all land, no answer
        edit(project, "v2")
        proc.wait_for(lambda events: bool(proc.named("skipped")))  # the daemon's retry finds the remote has v2
        edit(project, "v3")
        proc.wait_for(lambda events: len(proc.named("pushed")) == 2)
        result = proc.stop(signal.SIGTERM)
    assert result.code == 0, result.err
    assert [e["code"] for e in result.named("error")] == ["network"]
    assert [e["reason"] for e in result.named("skipped")] == ["unchanged"], "recorded as fgsync's push"
    assert result.named("drift") == []
    assert emu.uploads("hello") == 1 + 5 + 1
    assert_remote_is_local(project, emulator)
    no_tracebacks(result)


# -- item 10: pushed, but the record cannot be written -------------------------------------------------------


def _state_folder_is_a_file(cache: Path, endpoint: str, urn: str) -> None:
    cache.mkdir(parents=True)
    (cache / "state").write_text("not a folder\n")


def _state_file_is_a_folder(cache: Path, endpoint: str, urn: str) -> None:
    path = StateStore(cache)._path(endpoint, urn)
    (path / "inside").mkdir(parents=True)


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [(_state_folder_is_a_file, "Not a directory"), (_state_file_is_a_folder, "Is a directory"), (None, "too large")],
    ids=["state-folder-is-a-file", "state-file-is-a-folder", "disk-full"],
)
def test_push_whose_record_cannot_be_written_says_pushed_but_not_recorded(
    project: Path, emulator: Any, breakage: Any, reason: str
) -> None:
    emu = emulator.emulator
    cache = project / ".cache"
    config = load_config(project / "fgsync.toml")
    if breakage is not None:
        breakage(cache, config.endpoint, config.functions[0].urn)
    run = run_fgsync(project, cache, "push", "--json", fsize_limit=breakage is None)
    assert run.code == 1, run.err
    no_tracebacks(run)
    assert [e["event"] for e in run.events] == ["packaged", "pushed", "error"]
    error = run.named("error")[0]
    assert error["code"] == "state" and error["retryable"] is False
    folder = cache / "state"
    assert error["message"].startswith(f"pushed, but could not record it in {folder}: "), error["message"]
    assert reason in error["message"]
    assert emu.uploads("hello") == 1
    assert_remote_is_local(project, emulator)

    human = run_fgsync(project, cache, "push", "--force", fsize_limit=breakage is None)
    assert human.code == 1
    no_tracebacks(human)
    assert f"hello  error state: pushed, but could not record it in {folder}" in human.err


def test_watch_with_an_unwritable_state_reports_it_and_never_a_false_drift(project: Path, emulator: Any) -> None:
    emu = emulator.emulator
    cache = project / ".cache"
    assert run_fgsync(project, cache, "push").code == 0  # a record on disk, from before the disk filled up
    with watch(project, cache, fsize_limit=True) as proc:
        proc.wait_for(lambda events: synced(events))
        assert [e["reason"] for e in proc.named("skipped")] == ["unchanged"]
        edit(project, "v2")
        proc.wait_for(lambda events: synced(events, 2))
        edit(project, "v3")
        proc.wait_for(lambda events: synced(events, 4))
        result = proc.stop(signal.SIGTERM)
    assert result.code == 0, result.err
    no_tracebacks(result)
    kinds = [e["event"] for e in result.events if e["event"] not in ("change", "packaged")]
    assert kinds == ["watching", "skipped", "pushed", "error", "pushed", "error", "stopped"], kinds
    errors = result.named("error")
    assert all(e["code"] == "state" and not e["retryable"] and e["retry_in_ms"] is None for e in errors)
    assert "File too large" in errors[0]["message"]
    assert emu.uploads("hello") == 3, "each change uploaded once: a record that failed is not a failed push"
    assert_remote_is_local(project, emulator)
