"""fgsync.watch: the debounce (fake clock), the ignore filter, and the watcher over real files."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
from conftest import make_tree

from fgsync.config import FunctionConfig
from fgsync.errors import FgsyncError
from fgsync.ignore import IgnoreRules
from fgsync.watch import Change, ChangeFilter, Debouncer, FileEventSource, WatchTarget, watch_changes, watch_roots


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_fn(name: str, source: Path, **overrides: object) -> FunctionConfig:
    values: dict[str, object] = {
        "name": name,
        "source": source,
        "urn": f"urn:fss:cn-north-4:0123456789abcdef0123456789abcdef:function:default:{name}:latest",
        "package": "default",
        "code_type": "zip",
        "code_filename": "index.zip",
        "artifact": None,
        "build": None,
        "exclude": (),
        "use_gitignore": False,
        "depend_version_list": None,
        "kms_key_id": None,
        "invoke_event": None,
    }
    values.update(overrides)
    return FunctionConfig(**values)  # type: ignore[arg-type]


def target(name: str, source: Path, **overrides: object) -> WatchTarget:
    return WatchTarget.for_function(make_fn(name, source, **overrides))


# -- Debouncer -------------------------------------------------------------------------------------------------


def test_debounce_trailing_quiet_time_ends_a_burst() -> None:
    clock = FakeClock()
    d: Debouncer[str] = Debouncer(300, 3000, clock=clock)
    assert d.timeout() is None and not d.ready()
    d.add(["a"])
    assert d.timeout() == pytest.approx(0.3)
    clock.now += 0.2
    d.add(["b"])  # a new event pushes the end of the burst back
    clock.now += 0.29
    assert not d.ready()
    assert d.timeout() == pytest.approx(0.01)
    clock.now += 0.01
    assert d.ready()
    assert d.take() == {"a", "b"}
    assert d.timeout() is None and len(d) == 0


def test_debounce_max_wait_bounds_a_burst_that_never_goes_quiet() -> None:
    clock = FakeClock()
    d: Debouncer[int] = Debouncer(300, 1000, clock=clock)
    fired = []
    for step in range(40):  # an event every 125 ms (exact in binary) for 5 s
        clock.now = 100.0 + step * 0.125
        d.add([step])
        if d.ready():
            fired.append((clock.now - 100.0, len(d.take())))
    assert fired == [(1.0, 9), (2.125, 9), (3.25, 9), (4.375, 9)]
    clock.now += 0.3
    assert d.ready() and d.take() == set(range(36, 40))


def test_debounce_empty_add_changes_nothing_and_max_wait_never_below_debounce() -> None:
    clock = FakeClock()
    d: Debouncer[str] = Debouncer(500, 100, clock=clock)
    d.add([])
    assert d.timeout() is None
    d.add(["x"])
    assert d.timeout() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        Debouncer(-1, 10)


# -- Filtering -------------------------------------------------------------------------------------------------


def test_watch_roots_keeps_only_top_most_distinct_folders(tmp_path: Path) -> None:
    a, b, c = tmp_path / "fns" / "a", tmp_path / "fns" / "a" / "inner", tmp_path / "other"
    assert watch_roots([b, a, c, a]) == [a, c]


def test_filter_drops_editor_droppings_vcs_and_excluded_paths(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "x", ".fgsyncignore": "*.log\n"})
    f = ChangeFilter([target("hello", src, exclude=("tests/",))])
    keep = ["index.py", "lib/util.py"]
    drop = ["4913", "index.py~", ".index.py.swp", "a.py___jb_tmp___", "a.py___jb_old___", ".git/index",
            "__pycache__/a.cpython-311.pyc", "tests/test_a.py", "debug.log", ".fgsync/cache"]  # fmt: skip
    for rel in keep:
        assert f.match(str(src / rel)) == [Change("hello", rel)], rel
    for rel in drop:
        assert f.match(str(src / rel)) == [], rel
    assert f.match(str(src / ".git"), is_dir=True) == []
    assert f.match(str(src)) == []  # the root itself says nothing about content
    assert f.match(str(tmp_path / "elsewhere.py")) == []


def test_filter_routes_shared_and_nested_sources_to_every_function(tmp_path: Path) -> None:
    shared = make_tree(tmp_path / "shared", {"index.py": "x", "sub/index.py": "y"})
    f = ChangeFilter([target("a", shared), target("b", shared), target("c", shared / "sub")])
    assert sorted(f.match(str(shared / "index.py"))) == [Change("a", "index.py"), Change("b", "index.py")]
    assert sorted(f.match(str(shared / "sub" / "index.py"))) == [
        Change("a", "sub/index.py"),
        Change("b", "sub/index.py"),
        Change("c", "index.py"),
    ]


def test_filter_ignores_a_jar_artifact_but_not_the_sources(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "java", {"src/App.java": "class App {}"})
    t = target("java", src, code_type="jar", code_filename="app.jar", artifact=src / "target" / "app.jar")
    f = ChangeFilter([t])
    assert f.match(str(src / "target" / "app.jar")) == []
    assert f.match(str(src / "src" / "App.java")) == [Change("java", "src/App.java")]


def test_editing_the_ignore_file_counts_and_reloads_the_rules(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "x"})
    f = ChangeFilter([target("hello", src)])
    assert f.match(str(src / "notes.md")) == [Change("hello", "notes.md")]
    (src / ".fgsyncignore").write_text("*.md\n")
    assert f.match(str(src / ".fgsyncignore")) == [Change("hello", ".fgsyncignore")]
    assert f.match(str(src / "notes.md")) == []


# -- The generator, scripted ----------------------------------------------------------------------------------


class ScriptedSource(FileEventSource):
    """Replays (time, path) events on a fake clock: get(timeout) advances the clock instead of sleeping."""

    def __init__(self, clock: FakeClock, script: list[tuple[float, str]], stop: threading.Event) -> None:
        super().__init__([])
        self.clock, self.script, self.stop = clock, sorted(script), stop
        self.closed = False

    def start(self) -> None:
        pass

    def get(self, timeout: float) -> Optional[tuple[str, bool]]:
        if self.script and self.script[0][0] <= self.clock.now + timeout:
            at, path = self.script.pop(0)
            self.clock.now = max(self.clock.now, at)
            return path, False
        self.clock.now += timeout
        if not self.script and self.clock.now > 1000:
            self.stop.set()
        return None

    def close(self) -> None:
        self.closed = True


def run_script(
    tmp_path: Path,
    script: list[tuple[float, str]],
    *,
    debounce_ms: int = 100,
    max_wait_ms: int = 1000,
    suppress: Optional[Callable[[Change], bool]] = None,
) -> tuple[list[tuple[float, set[str]]], ScriptedSource]:
    src = tmp_path / "hello"
    src.mkdir(exist_ok=True)
    clock, stop = FakeClock(), threading.Event()
    source = ScriptedSource(clock, [(100.0 + t, str(src / p)) for t, p in script], stop)
    batches = []
    for batch in watch_changes([target("hello", src)], stop_event=stop, debounce_ms=debounce_ms,
                               max_wait_ms=max_wait_ms, source=source, clock=clock, suppress=suppress):  # fmt: skip
        batches.append((round(clock.now - 100.0, 3), {c.path for c in batch}))
    return batches, source


def test_scripted_vim_save_is_one_batch_of_real_paths(tmp_path: Path) -> None:
    script = [(0.0, "4913"), (0.001, "4913"), (0.002, "index.py"), (0.002, "index.py~"), (0.003, "index.py"),
              (0.004, "index.py~")]  # fmt: skip
    batches, source = run_script(tmp_path, script)
    assert len(batches) == 1 and batches[0][1] == {"index.py"}
    assert batches[0][0] == pytest.approx(0.104, abs=0.002)
    assert source.closed


def test_scripted_steady_writer_yields_at_max_wait_then_the_tail(tmp_path: Path) -> None:
    script = [(i * 0.1, "app.py") for i in range(50)]
    batches, _ = run_script(tmp_path, script, debounce_ms=300, max_wait_ms=1000)
    times = [t for t, _ in batches]
    assert len(batches) == 5
    assert all(b - a <= 1.15 for a, b in zip([0.0, *times], times))
    assert times[-1] == pytest.approx(4.9 + 0.3, abs=0.06)


def test_scripted_suppressed_changes_never_start_a_burst(tmp_path: Path) -> None:
    script = [(0.0, "dist/out.js"), (0.01, "dist/out.js.map"), (2.0, "index.js")]
    batches, _ = run_script(tmp_path, script, suppress=lambda c: c.path.startswith("dist/"))
    assert batches == [(2.1, {"index.js"})]


# -- Real files ------------------------------------------------------------------------------------------------


def collect(gen: Iterator[set[Change]], stop: threading.Event, want: Callable[[set[str]], bool],
            timeout: float = 10.0) -> list[set[str]]:  # fmt: skip
    """Gather batches on a thread until want(all paths seen so far) or the deadline; then stop."""
    batches: list[set[str]] = []
    done = threading.Event()

    def pump() -> None:
        for batch in gen:
            batches.append({c.path for c in batch})
            if want(set().union(*batches)):
                done.set()
        done.set()

    thread = threading.Thread(target=pump)
    thread.start()
    done.wait(timeout)
    stop.set()
    thread.join(5)
    assert not thread.is_alive(), "the generator did not end after stop_event"
    return batches


@pytest.mark.parametrize("poll", [False, True], ids=["native", "poll"])
def test_real_writes_arrive_as_one_batch_without_ignored_paths(tmp_path: Path, poll: bool) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "v1", "lib/a.py": "a"})
    stop = threading.Event()
    source = FileEventSource([src], poll=poll, poll_interval=0.05)
    source.start()
    gen = watch_changes([target("hello", src)], stop_event=stop, debounce_ms=150, max_wait_ms=2000, source=source)
    threads_before = threading.active_count()

    # vim-style: probe file, backup by rename, write, drop the backup; then a new file in a new folder
    (src / "4913").write_text("")
    (src / "4913").unlink()
    os.rename(src / "index.py", src / "index.py~")
    (src / "index.py").write_text("v2")
    (src / "index.py~").unlink()
    (src / "lib" / "b").mkdir()
    (src / "lib" / "b" / "c.py").write_text("c")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")

    batches = collect(gen, stop, lambda seen: {"index.py", "lib/b/c.py"} <= seen)
    seen = set().union(*batches)
    assert {"index.py", "lib/b/c.py"} <= seen
    assert not {p for p in seen if p.endswith("~") or p == "4913" or p.startswith(".git")}
    assert len(batches) == 1
    deadline = time.monotonic() + 5
    while threading.active_count() >= threads_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() < threads_before, "the observer thread was not joined"


def test_watching_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FgsyncError, match=r"cannot watch .*missing"):
        FileEventSource([tmp_path / "missing"]).start()


def test_ignore_rules_for_function_is_what_watch_target_uses(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {"index.py": "x"})
    t = target("hello", src, exclude=("*.md",), use_gitignore=True)
    assert isinstance(t.rules, IgnoreRules)
    assert t.rules.is_ignored("README.md") and not t.rules.is_ignored("index.py")


def test_a_source_reached_through_a_symlink_is_watched_at_its_target(tmp_path: Path) -> None:
    real = make_tree(tmp_path / "real" / "hello", {"index.py": "v1"})
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert watch_roots([link]) == [real]
    stop = threading.Event()
    gen = watch_changes([target("hello", link)], stop_event=stop, debounce_ms=50, max_wait_ms=1000)
    seen: list[set[str]] = []

    def write_soon() -> None:
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:  # until the watch is up and reports
            (real / "index.py").write_text(f"v{time.monotonic()}")
            time.sleep(0.1)

    writer = threading.Thread(target=write_soon)
    writer.start()
    seen.extend(collect(gen, stop, lambda paths: "index.py" in paths))
    writer.join()
    assert {"index.py"} == set().union(*seen)


class Pump:
    """Runs a watch_changes generator on a thread, keeping every batch; the test waits for what it needs."""

    def __init__(self, gen: Iterator[set[Change]], stop: threading.Event) -> None:
        self.batches: list[set[Change]] = []
        self._gen = gen
        self._stop = stop
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        for batch in self._gen:
            with self._cond:
                self.batches.append(batch)
                self._cond.notify_all()

    def wait_for(self, want: Callable[[set[Change]], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not want(set().union(*self.batches)):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; batches: {self.batches}"
                self._cond.wait(min(left, 0.05))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the generator did not end after stop_event"


@pytest.mark.parametrize("poll", [False, True], ids=["native", "poll"])
def test_a_watched_folder_deleted_and_made_again_is_watched_again(tmp_path: Path, poll: bool) -> None:
    """`rm -rf dist && tsc`, a branch switch: the OS drops the watch with the folder. The source re-arms it
    (new device/inode) and hands the whole tree over as changed, since files written before the new watch
    was up have no events of their own."""
    src = make_tree(tmp_path / "hello", {"index.py": "v1"})
    stop = threading.Event()
    source = FileEventSource([src], poll=poll, poll_interval=0.1)
    pump = Pump(watch_changes([target("hello", src)], stop_event=stop, debounce_ms=50, source=source), stop)
    try:
        time.sleep(0.3)  # the watch is up
        shutil.rmtree(src)
        make_tree(src, {"index.py": "v2"})  # back at once: no time for anyone to notice it was gone
        # Native: the re-armed root, the whole tree. Polling compares paths, not watches: it may just see the
        # file's new content (or the folder gone, then re-armed).
        wanted = {Change("hello", "")} if not poll else {Change("hello", ""), Change("hello", "index.py")}
        pump.wait_for(lambda seen: bool(wanted & seen))
        # And the new folder really is watched: a later file is seen by name, or (when it came before the new
        # watch was up) through the whole-tree change that re-arming the watch hands over after it.
        time.sleep(0.1)
        before = len(pump.batches)
        (src / "later.py").write_text("x")
        later = {Change("hello", "later.py"), Change("hello", "")}
        pump.wait_for(lambda _: any(later & batch for batch in pump.batches[before:]))
    finally:
        pump.close()


def test_a_watched_folder_that_goes_missing_is_handed_over_as_changed(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "hello", {})
    stop = threading.Event()
    source = FileEventSource([src])
    pump = Pump(watch_changes([target("hello", src)], stop_event=stop, debounce_ms=50, source=source), stop)
    try:
        time.sleep(0.3)
        src.rmdir()  # empty: no file event at all, only the folder's own
        pump.wait_for(lambda seen: Change("hello", "") in seen)
    finally:
        pump.close()


def test_lost_events_check_every_function_again(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """An inotify queue overflow (watchdog's only sign of it is a warning on its logger) rescans every root,
    and watchdog's raw line stays off stderr."""
    a = make_tree(tmp_path / "a", {"index.py": "a"})
    b = make_tree(tmp_path / "b", {"index.py": "b"})
    stop = threading.Event()
    source = FileEventSource([a, b])
    pump = Pump(watch_changes([target("a", a), target("b", b)], stop_event=stop, debounce_ms=50, source=source), stop)
    try:
        time.sleep(0.3)
        # exactly what watchdog's inotify reader logs when the kernel says IN_Q_OVERFLOW
        watchdog_log = logging.getLogger("watchdog.observers.inotify_c")
        watchdog_log.warning("Inotify queue overflowed; filesystem events were lost")
        pump.wait_for(lambda seen: {Change("a", ""), Change("b", "")} <= seen)
    finally:
        pump.close()
    assert "Inotify queue overflowed" not in capfd.readouterr().err


@pytest.mark.parametrize("poll", [False, True], ids=["native", "poll"])
def test_reads_wake_nothing_but_a_touch_does(tmp_path: Path, poll: bool) -> None:
    """Content events only: the packager's walk, `grep -r` or an indexer reading the tree queue no event at all;
    a touch (attributes only) still does."""
    src = make_tree(tmp_path / "hello", {"index.py": "v1", "lib/a.py": "a", "lib/b.py": "b"})
    source = FileEventSource([src], poll=poll, poll_interval=0.1)
    delivered: list[str] = []  # everything the observer hands over, before fgsync's own filtering
    dispatch = source._handler.dispatch
    source._handler.dispatch = lambda event: (delivered.append(event.event_type), dispatch(event))[1]  # type: ignore[method-assign]
    with source:
        time.sleep(0.3)
        while source.get(0) is not None:
            pass
        delivered.clear()
        for path in src.rglob("*"):
            if path.is_file():
                path.read_bytes()
        list(os.scandir(src / "lib"))
        assert source.get(0.5) is None
        assert delivered == []  # not even an "opened" reached the handler
        os.utime(src / "lib" / "a.py")
        event = source.get(5)
        assert event is not None and event.path == str(src / "lib" / "a.py")


def test_a_burst_of_dependency_files_settles_past_the_max_wait() -> None:
    """`npm install` writes for seconds, with pauses: its files hold the burst until they are quiet for 2 s."""
    clock = FakeClock()
    debouncer: Debouncer[str] = Debouncer(100, 1000, clock=clock, slow_quiet_ms=2000)
    debouncer.add(["index.js"])
    clock.now += 0.05
    debouncer.add(["node_modules/a/index.js"], slow=True)
    for _ in range(10):  # a write every 0.5 s for 5 s: well past max_wait
        clock.now += 0.5
        assert not debouncer.ready()
        debouncer.add(["node_modules/b/index.js"], slow=True)
    clock.now += 1.9
    assert not debouncer.ready()
    clock.now += 0.2
    assert debouncer.ready() and debouncer.take() == {"index.js", "node_modules/a/index.js", "node_modules/b/index.js"}
    debouncer.add(["index.js"])  # a code save alone: the usual rules
    clock.now += 0.1
    assert debouncer.ready()


def test_dependency_paths_by_the_spec() -> None:
    from fgsync.package.dependencies import DependencySpec

    auto = DependencySpec(auto=True)
    assert auto.looks_like_dependency("node_modules/left-pad/index.js")
    assert auto.looks_like_dependency("requests-2.31.0.dist-info/RECORD")
    assert not auto.looks_like_dependency("src/node_modules.js") and not auto.looks_like_dependency("index.py")
    patterns = DependencySpec(patterns=("vendor/", "*.whl"))
    assert patterns.looks_like_dependency("vendor/x/y.py") and patterns.looks_like_dependency("libs/a.whl")
    assert not patterns.looks_like_dependency("src/vendor.py")
