"""Push records: per endpoint + URN, in the cache folder, atomic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fgsync.state import StateStore, default_cache_dir

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
    with pytest.raises(OSError, match="disk full"):
        store.put("http://a", URN, "s2", "d2")
    monkeypatch.undo()
    assert store.get("http://a", URN) == first
    assert [p.name for p in (tmp_path / "state").iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("content", ["{not json", json.dumps(["list"]), json.dumps({"format": 1, "urn": "other"})])
def test_unreadable_records_read_as_none(tmp_path: Path, content: str) -> None:
    store = StateStore(tmp_path)
    store.put("http://a", URN, "s", "d")
    (path,) = (tmp_path / "state").glob("*.json")
    path.write_text(content)
    assert store.get("http://a", URN) is None
