"""One sync of one function, in-process against the emulator on a loopback port: the pending-send record around
the PUT (what a lost answer leaves behind, what a refusal clears) and the function lock between two syncs."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import HELLO_PY, PROJECT_ID, TOKEN, make_tree, write_config

from fgsync.auth.credentials import resolve_credentials
from fgsync.config import FunctionConfig, load_config
from fgsync.errors import ApiError, DriftError, NetworkError, StateError
from fgsync.events import Event
from fgsync.remote import FunctionGraphClient, RetryPolicy
from fgsync.state import StateStore
from fgsync.sync import package_function, sync_function

NO_RETRY = RetryPolicy(attempts=0)


@pytest.fixture
def fn(tmp_path: Path, emulator: Any) -> FunctionConfig:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    write_config(tmp_path, endpoint=emulator.url)
    emulator.emulator.create_function("hello")
    return load_config(tmp_path / "fgsync.toml").functions[0]


def client_for(emulator: Any) -> FunctionGraphClient:
    credentials = resolve_credentials(iam_endpoint=emulator.url, project_id=PROJECT_ID, env={"FGSYNC_TOKEN": TOKEN})
    return FunctionGraphClient(emulator.url, PROJECT_ID, auth=credentials.auth(), retry=NO_RETRY)


def sync(fn: FunctionConfig, emulator: Any, store: StateStore, events: list[Event], **options: Any) -> Any:
    with client_for(emulator) as client:
        return sync_function(fn, client=client, store=store, endpoint=emulator.url, emit=events.append, **options)


def test_a_lost_answer_leaves_a_pending_send_that_the_next_sync_records_as_its_own(
    fn: FunctionConfig, emulator: Any
) -> None:
    store = StateStore()
    emulator.emulator.inject("update_code", drop_after=True)
    with pytest.raises(NetworkError):
        sync(fn, emulator, store, [])
    local = package_function(fn).sha512
    assert [p.sha512 for p in StateStore().pending(emulator.url, fn.urn)] == [local]
    assert StateStore().get(emulator.url, fn.urn) is None

    events: list[Event] = []
    result = sync(fn, emulator, StateStore(), events)  # a new process
    assert (result.action, result.reason) == ("skipped", "unchanged")
    record = StateStore().get(emulator.url, fn.urn)
    assert record is not None and record.sha512 == record.digest == local
    assert StateStore().pending(emulator.url, fn.urn) == ()
    assert emulator.emulator.uploads("hello") == 1


def test_someone_elses_code_after_a_lost_answer_is_still_drift(fn: FunctionConfig, emulator: Any) -> None:
    """The pending send says what fgsync sent; anything else on the remote is someone else's."""
    emu = emulator.emulator
    sync(fn, emulator, StateStore(), [])
    (fn.source / "index.py").write_text(HELLO_PY + "# v2\n")
    emu.inject("update_code", drop_after=True)
    with pytest.raises(NetworkError):
        sync(fn, emulator, StateStore(), [])
    emu.set_code("hello", emu.function("hello").code + b"\0")  # a console edit after the lost answer
    events: list[Event] = []
    with pytest.raises(DriftError):
        sync(fn, emulator, StateStore(), events, no_overwrite=True)
    assert [e.event for e in events] == ["packaged", "drift"]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 403, "code": "FSS.0403"},
        {"status": 400, "code": "FSS.1011"},
        {"status": 409, "code": "FSS.0409"},
        {"status": 429, "code": "FSS.0429", "times": 5},
        {"status": 503},
        {"status": 408},
        {"drop": True},
    ],
    ids=["403", "400", "409", "429", "503", "408", "drop"],
)
def test_a_failed_put_keeps_its_pending_send(fn: FunctionConfig, emulator: Any, fault: dict[str, Any]) -> None:
    """Whatever the last attempt's answer, an earlier attempt of the client's retries may have landed."""
    emulator.emulator.inject("update_code", **fault)
    store = StateStore()
    with contextlib.suppress(ApiError):  # FSS.0409 is a skip, the others fail
        sync(fn, emulator, store, [])
    sent = [package_function(fn).sha512]
    assert [p.sha512 for p in store.pending(emulator.url, fn.urn)] == sent
    assert [p.sha512 for p in StateStore().pending(emulator.url, fn.urn)] == sent


def test_a_landed_send_then_a_throttled_retry_is_not_drift(fn: FunctionConfig, emulator: Any) -> None:
    """The chaos soak's find: attempt 1 lands and loses its answer, the client's retries then meet 429 until
    they give up. The remote holds what fgsync sent: the next sync of a newer tree must not call it drift."""
    emu = emulator.emulator
    store = StateStore()
    sync(fn, emulator, store, [])  # a first push: fgsync has a record
    (fn.source / "index.py").write_text("def handler(event, context):\n    return 1\n")
    emu.inject("update_code", drop_after=True)
    emu.inject("update_code", status=429, code="FSS.0429", times=10)
    credentials = resolve_credentials(iam_endpoint=emulator.url, project_id=PROJECT_ID, env={"FGSYNC_TOKEN": TOKEN})
    retrying = RetryPolicy(attempts=3, base=0.01, cap=0.02)
    client = FunctionGraphClient(emulator.url, PROJECT_ID, auth=credentials.auth(), retry=retrying)
    with client, pytest.raises(ApiError) as caught:
        sync_function(fn, client=client, store=store, endpoint=emulator.url, emit=lambda event: None)
    assert caught.value.status == 429  # what the last of the client's attempts got
    assert emu.function("hello").digest == package_function(fn).sha512  # attempt 1 landed
    emu.clear_faults()
    (fn.source / "index.py").write_text("def handler(event, context):\n    return 2\n")
    events: list[Event] = []
    sync(fn, emulator, StateStore(), events, no_overwrite=True)
    assert [e.event for e in events] == ["packaged", "pushed"]


def test_dry_run_neither_sends_nor_records(fn: FunctionConfig, emulator: Any) -> None:
    store = StateStore()
    store.begin_send(emulator.url, fn.urn, "not what the remote holds")
    events: list[Event] = []
    result = sync(fn, emulator, store, events, dry_run=True)
    assert result.reason == "dry-run"
    assert [p.sha512 for p in StateStore().pending(emulator.url, fn.urn)] == ["not what the remote holds"]
    assert emulator.emulator.uploads("hello") == 0


def test_a_push_whose_record_fails_emits_pushed_then_raises_state_error(fn: FunctionConfig, emulator: Any) -> None:
    cache = Path(os.environ["FGSYNC_CACHE_DIR"])
    cache.mkdir(parents=True)
    (cache / "state").write_text("")
    store = StateStore()
    events: list[Event] = []
    with pytest.raises(StateError, match=r"^pushed, but could not record it in .*/state: Not a directory$"):
        sync(fn, emulator, store, events)
    assert [e.event for e in events] == ["packaged", "pushed"]
    # The same process (a running watch) still knows it pushed: the next sync is `unchanged`, not drift.
    again: list[Event] = []
    assert sync(fn, emulator, store, again).reason == "unchanged"
    assert emulator.emulator.uploads("hello") == 1


def test_two_syncs_of_one_function_never_overlap(fn: FunctionConfig, emulator: Any) -> None:
    """Two stores on one cache folder are two processes; the lock is per open file, so threads do as well."""
    emulator.emulator.inject("update_code", delay=0.5)
    first_events: list[Event] = []
    second_events: list[Event] = []
    first = threading.Thread(target=sync, args=(fn, emulator, StateStore(), first_events))
    first.start()
    while emulator.emulator.calls("update_code") == 0:
        assert first.is_alive()
        threading.Event().wait(0.01)
    second = sync(fn, emulator, StateStore(), second_events)
    first.join(10)
    assert [e.event for e in first_events] == ["packaged", "pushed"]
    assert [e.event for e in second_events] == ["packaged", "waiting", "skipped"]
    waiting = second_events[1]
    assert waiting.fields == {
        "reason": "in-flight",
        "message": f"waiting for the sync of hello in another fgsync process (pid {os.getpid()})",
    }
    assert second.reason == "unchanged"
    assert emulator.emulator.uploads("hello") == 1
