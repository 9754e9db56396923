"""Push records: per endpoint + URN, in the cache folder, atomic."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pytest

from fgsync.errors import StateError
from fgsync.state import MAX_PENDING, DependencyRecord, PushRecord, StateStore, default_cache_dir

URN = "urn:fss:cn-north-4:0123456789abcdef0123456789abcdef:function:default:hello:latest"


def test_round_trip_and_scoping(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.get("http://a", URN) is None
    record = store.put("http://a", URN, "s" * 128, "d" * 128)
    assert store.get("http://a", URN) == record
    assert store.get("http://a/", URN) == record, "a trailing slash is the same endpoint"
    assert store.get("http://b", URN) is None, "another endpoint is another function"
    assert store.get("http://a", URN.replace("hello", "other")) is None


def test_default_folder_is_the_cache_dir_not_the_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FGSYNC_CACHE_DIR", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    StateStore().put("http://a", URN, "s", "d")
    assert [p.parent for p in (tmp_path / "cache").rglob("*.json")] == [tmp_path / "cache" / "state"]
    monkeypatch.delenv("FGSYNC_CACHE_DIR")
    assert default_cache_dir() == Path(os.environ["XDG_CACHE_HOME"]) / "fgsync"


def test_a_crash_mid_write_keeps_the_previous_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path)
    first = store.put("http://a", URN, "s1", "d1")

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StateError, match="disk full"):
        store.put("http://a", URN, "s2", "d2")
    monkeypatch.undo()
    assert StateStore(tmp_path).get("http://a", URN) == first, "another process still reads the previous record"
    assert [p.name for p in (tmp_path / "state").iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("content", ["{not json", json.dumps(["list"]), json.dumps({"format": 1, "urn": "other"})])
def test_unreadable_records_read_as_none(tmp_path: Path, content: str) -> None:
    store = StateStore(tmp_path)
    store.put("http://a", URN, "s", "d")
    (path,) = (tmp_path / "state").glob("*.json")
    path.write_text(content)
    assert StateStore(tmp_path).get("http://a", URN) is None
    assert store.get("http://a", URN) is not None, "the process that pushed still knows it did"


# -- pending sends, memory, and the newest record between processes ---------------------------------------------


class Clock:
    """A UTC wall clock that moves one millisecond per reading (and by hand)."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(milliseconds=1)
        return self.now


def test_a_pending_send_the_remote_holds_becomes_the_record(tmp_path: Path) -> None:
    clock = Clock()
    store = StateStore(tmp_path, now=clock)
    store.put("http://a", URN, "s1", "s1")
    store.begin_send("http://a", URN, "s2")  # then the process dies: a new one reads the disk
    later = StateStore(tmp_path, now=clock)
    assert [p.sha512 for p in later.pending("http://a", URN)] == ["s2"]
    assert later.reconcile("http://a", URN, "other") == later.get("http://a", URN)
    assert later.get("http://a", URN) is not None and later.get("http://a", URN).sha512 == "s1"  # type: ignore[union-attr]
    record = later.reconcile("http://a", URN, "s2")
    assert record is not None and (record.sha512, record.digest) == ("s2", "s2")
    assert StateStore(tmp_path).get("http://a", URN) == record and StateStore(tmp_path).pending("http://a", URN) == ()
    assert "s2" in (tmp_path / "state").joinpath(next((tmp_path / "state").glob("*.json")).name).read_text()


def test_reconcile_in_memory_only_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.begin_send("http://a", URN, "s1")
    record = store.reconcile("http://a", URN, "s1", persist=False)
    assert record is not None and store.get("http://a", URN) == record
    fresh = StateStore(tmp_path)
    assert fresh.get("http://a", URN) is None and [p.sha512 for p in fresh.pending("http://a", URN)] == ["s1"]


def test_pending_sends_keep_the_few_newest_and_never_predate_the_record(tmp_path: Path) -> None:
    clock = Clock()
    store = StateStore(tmp_path, now=clock)
    old = store.begin_send("http://a", URN, "old")
    store.put("http://a", URN, "s1", "d1")
    assert store.pending("http://a", URN) == ()
    assert store.reconcile("http://a", URN, "old") == store.get("http://a", URN), "sent before the record: stale"
    for n in range(MAX_PENDING + 2):
        store.begin_send("http://a", URN, f"s{n + 2}")
    store.begin_send("http://a", URN, "s3")  # a retry of the same package moves to the end
    kept = [p.sha512 for p in StateStore(tmp_path).pending("http://a", URN)]
    # s2, s4 … s{M+3}, then s3 again: the newest M are kept, the two oldest (s2, s4) go
    assert kept == [f"s{n}" for n in range(5, MAX_PENDING + 4)] + ["s3"]
    assert old not in store.pending("http://a", URN)


def test_an_unwritable_state_folder_raises_state_error_and_keeps_the_record_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state").write_text("a file where the folder should be\n")
    store = StateStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fgsync.state"):
        send = store.begin_send("http://a", URN, "s1")  # never raises: the upload goes ahead
        store.begin_send("http://a", URN, "s2")
    assert send.sha512 == "s1"
    assert [r.getMessage() for r in caplog.records] == [
        f"could not note the upload of {URN} in {tmp_path / 'state'}: Not a directory; remembered in memory only"
    ]
    with pytest.raises(StateError) as caught:
        store.put("http://a", URN, "s2", "d2")
    assert str(caught.value) == f"pushed, but could not record it in {tmp_path / 'state'}: Not a directory"
    assert caught.value.code == "state" and caught.value.exit_code == 1 and not caught.value.retryable
    record = store.get("http://a", URN)
    assert record is not None and (record.sha512, record.digest) == ("s2", "d2")
    assert store.pending("http://a", URN) == ()
    assert StateStore(tmp_path).get("http://a", URN) is None


def test_the_newest_record_wins_between_processes(tmp_path: Path) -> None:
    clock = Clock()
    watch = StateStore(tmp_path, now=clock)
    watch.put("http://a", URN, "s1", "d1")
    StateStore(tmp_path, now=clock).put("http://a", URN, "s2", "d2")  # `fgsync push` in another terminal
    record = watch.get("http://a", URN)
    assert record is not None and record.sha512 == "s2", "an older record in memory never hides a newer push"


def test_records_written_by_older_versions_still_read(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    path = store._path("http://a", URN)
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "format": 1,
                "endpoint": "http://a",
                "urn": URN,
                "sha512": "s",
                "digest": "d",
                "pushed_at": "2025-01-01T00:00:00+00:00",
            }
        )
    )
    assert store.get("http://a", URN) == PushRecord("s", "d", "2025-01-01T00:00:00+00:00")
    store.begin_send("http://a", URN, "s2")
    assert [p.sha512 for p in StateStore(tmp_path).pending("http://a", URN)] == ["s2"]


def test_a_push_records_its_dependency_and_the_versions_left_to_delete(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    dep = DependencyRecord(name="fgsync-default-hello", dep_id="d1", version_id="v-2", version=2, sha256="ab" * 32)
    old = DependencyRecord(name="fgsync-default-hello", dep_id="d1", version_id="v-1", version=1, sha256="cd" * 32)
    store.put("http://a", URN, "s", "d", dependency=dep, retired=(old,))
    again = StateStore(tmp_path).get("http://a", URN)  # another process reads it back
    assert again is not None and again.dependency == dep and again.retired == (old,)
    store.begin_send("http://a", URN, "s2")
    store.retire("http://a", URN, ())  # deleted now: nothing left to delete, the pending send stays
    reread = StateStore(tmp_path)
    record = reread.get("http://a", URN)
    assert record is not None and record.retired == () and record.dependency == dep
    assert [p.sha512 for p in reread.pending("http://a", URN)] == ["s2"]
