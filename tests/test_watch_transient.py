"""Temp files that live and die inside one burst (sed -i, atomic saves): the burst counts, their names do not.

Real files and the real observer throughout: the watcher yields such paths marked ``transient``, and the
daemon leaves them out of the `change` event while still syncing the function.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import make_tree
from test_daemon import FAST, Events, FakeSync, idle
from test_watch import collect, make_fn, target

from fgsync.config import FunctionConfig
from fgsync.watch import Change, Daemon, FileEventSource, RawEvent, watch_changes
from fgsync.watch.changes import _mark_transient


@contextmanager
def running(fn: FunctionConfig, sync: FakeSync, events: Events) -> Iterator[None]:
    """The daemon over one function with a 250 ms debounce: a temp file's creation and its rename always fall
    in one burst, even when a loaded machine delays the observer thread."""
    stop = threading.Event()
    daemon = Daemon([fn], sync=sync, emit=events, stop_event=stop, debounce_ms=250, max_wait_ms=3000, timing=FAST)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        events.wait(lambda: bool(events.named("watching")))
        yield
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert events.items[-1].event == "stopped"


def sed_style_save(path: Path, text: str) -> str:
    """What `sed -i` does: write a new file beside the original, then rename it over the original."""
    fd, temp = tempfile.mkstemp(prefix="sed", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.rename(temp, path)
    return os.path.basename(temp)


def test_the_watcher_marks_paths_created_and_gone_within_a_burst(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "v1", "old.py": "o", "lib/util.py": "u"})
    stop = threading.Event()
    source = FileEventSource([src])
    source.start()
    gen = watch_changes([target("hello", src)], stop_event=stop, debounce_ms=200, max_wait_ms=3000, source=source)

    temp = sed_style_save(src / "index.py", "v2")  # created, then renamed onto a file that exists
    (src / "old.py").unlink()  # a real file deleted: existed before the burst
    (src / "scratch.txt").write_text("x")  # created and deleted
    (src / "scratch.txt").unlink()
    (src / "tmpdir").mkdir()  # a folder and its file, created and removed
    (src / "tmpdir" / "x.py").write_text("x")
    shutil.rmtree(src / "tmpdir")
    (src / "draft.py").write_text("d")  # created, renamed to a new name that stays
    os.rename(src / "draft.py", src / "new.py")

    # tmpdir/x.py may come and go before the new folder's watch is up: only tmpdir itself is sure to be seen.
    # When x.py is seen, its first event may not be "created" (the watch came late), but its folder was created
    # in the burst, so it is transient all the same.
    want = {"index.py", "old.py", "new.py", temp, "scratch.txt", "tmpdir", "draft.py"}
    batches: list[set[Change]] = []
    paths = collect(map(lambda b: batches.append(b) or b, gen), stop, lambda seen: want <= seen)
    assert len(paths) == 1, paths
    (batch,) = batches
    lasting = {c.path for c in batch if not c.transient}
    transient = {c.path for c in batch if c.transient}
    assert lasting == {"index.py", "old.py", "new.py"}
    assert {temp, "scratch.txt", "tmpdir", "draft.py"} <= transient
    assert not lasting & transient


def test_plain_path_pairs_from_other_event_sources_are_never_transient(tmp_path: Path) -> None:
    """A source that queues (path, is_dir) without the created flag: nothing is marked, nothing is lost."""
    src = make_tree(tmp_path / "hello", {"index.py": "v1"})

    class PairSource(FileEventSource):
        def __init__(self) -> None:
            super().__init__([src])
            self.items: list[tuple[str, bool]] = [(str(src / "gone.py"), False), (str(src / "index.py"), False)]

        def start(self) -> None:
            pass

        def get(self, timeout: float) -> RawEvent | None:
            if self.items:
                path, is_dir = self.items.pop(0)
                return path, is_dir  # type: ignore[return-value]
            stop.wait(timeout)
            return None

    stop = threading.Event()
    gen = watch_changes([target("hello", src)], stop_event=stop, debounce_ms=20, source=PairSource())
    batch = next(gen)
    stop.set()
    assert batch == {Change("hello", "gone.py"), Change("hello", "index.py")}
    assert RawEvent("p", False) == ("p", False, False, False)


def test_a_sed_style_save_reports_only_the_edited_file(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "v1", "lib/util.py": "u"})
    events = Events()
    sync = FakeSync(events)
    with running(make_fn("hello", src), sync, events):
        idle(sync, events, "hello", 1)
        temp = sed_style_save(src / "index.py", "v2")
        idle(sync, events, "hello", 2)
        (change,) = events.named("change", "hello")
        assert change.fields == {"paths": ["index.py"], "count": 1}, temp
        assert sync.calls[-1][1]["index.py"] == "v2"

        (src / "lib" / "util.py").unlink()  # deleting a real file is still a reported change
        idle(sync, events, "hello", 3)
        assert events.named("change", "hello")[-1].fields == {"paths": ["lib/util.py"], "count": 1}
        assert "lib/util.py" not in sync.calls[-1][1]


@pytest.mark.skipif(shutil.which("sed") is None, reason="needs a sed with -i (GNU or busybox)")
def test_real_sed_in_place_reports_only_the_edited_file(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "GREETING = 'hello'\n"})
    events = Events()
    sync = FakeSync(events)
    with running(make_fn("hello", src), sync, events):
        idle(sync, events, "hello", 1)
        subprocess.run(["sed", "-i", "s/hello/bonjour/", str(src / "index.py")], check=True)
        idle(sync, events, "hello", 2)
    (change,) = events.named("change", "hello")
    assert change.fields == {"paths": ["index.py"], "count": 1}
    assert sync.calls[-1][1]["index.py"] == "GREETING = 'bonjour'\n"


def test_a_burst_of_only_transient_paths_still_syncs_without_a_change_line(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "v1"})
    events = Events()
    sync = FakeSync(events)
    with running(make_fn("hello", src), sync, events):
        idle(sync, events, "hello", 1)
        (src / "probe.py").write_text("p")
        (src / "probe.py").unlink()
        idle(sync, events, "hello", 2)  # something happened: the function is checked again
    assert sync.count("hello") == 2
    assert events.named("change", "hello") == []


def test_a_file_inside_a_folder_created_in_the_burst_is_transient_whatever_its_own_first_event(
    tmp_path: Path,
) -> None:
    """The watch on a new folder comes up late: its file's first event may be "modified", not "created"."""

    gone_dir = str(tmp_path / "tmpdir")
    gone_file = str(tmp_path / "tmpdir" / "x.py")
    kept = make_tree(tmp_path, {"index.py": "v2"}) / "index.py"
    deleted = str(tmp_path / "old.py")  # existed before the burst: its first event was "deleted"
    changes = {name: Change("hello", name) for name in ("tmpdir", "tmpdir/x.py", "index.py", "old.py")}
    raw_paths = {
        changes["tmpdir"]: gone_dir,
        changes["tmpdir/x.py"]: gone_file,
        changes["index.py"]: str(kept),
        changes["old.py"]: deleted,
    }
    born = {gone_dir: True, gone_file: False, str(kept): False, deleted: False}
    marked = {c.path: c.transient for c in _mark_transient(set(changes.values()), raw_paths, born)}
    assert marked == {"tmpdir": True, "tmpdir/x.py": True, "index.py": False, "old.py": False}
