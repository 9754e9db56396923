"""What developers do to a watched tree every day, against a real `fgsync watch` process and the emulator.

Each test ends with the outcome that matters: the function's remote digest is the SHA-512 of a cold package of
the tree on disk, the uploads are as many as they should be, the exit code is right, no traceback, no process
left behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import HELLO_PY, TOKEN, make_tree, write_config
from test_package import processes_with
from test_watch_e2e import Proc, _children_in

from fgsync.config import load_config
from fgsync.sync import package_function


@pytest.fixture
def project(tmp_path: Path, emulator: Any) -> Path:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY, "lib/util.py": "X = 1\n"})
    write_config(tmp_path, endpoint=emulator.url)
    emulator.emulator.create_function("hello")
    return tmp_path


def cold(project: Path, name: str = "hello") -> str:
    """SHA-512 of a cold package of the function as the config on disk defines it."""
    fn = next(f for f in load_config(project / "fgsync.toml").functions if f.name == name)
    return package_function(fn).sha512


def remote_names(emulator: Any, name: str = "hello") -> list[str]:
    with zipfile.ZipFile(io.BytesIO(emulator.emulator.function(name).code)) as archive:
        return archive.namelist()


def settle(watch: Proc, emulator: Any, *, uploads: int, name: str = "hello", quiet: float = 0.6) -> None:
    """Wait for `uploads` uploads of the function in all, then make sure no more come."""
    deadline = time.monotonic() + 20
    while emulator.emulator.uploads(name) < uploads:
        assert watch.proc.poll() is None, watch.lines
        assert time.monotonic() < deadline, (emulator.emulator.uploads(name), watch.lines)
        time.sleep(0.02)
    time.sleep(quiet)
    assert emulator.emulator.uploads(name) == uploads, watch.lines


def stop(watch: Proc, sig: int = signal.SIGTERM) -> tuple[int, str]:
    watch.proc.send_signal(sig)
    code, err = watch.finish()
    assert "Traceback" not in err, err
    return code, err


# --- 1: a source folder deleted and made again ---------------------------------------------------------------------


def test_a_source_folder_removed_and_rebuilt_at_once_keeps_being_synced(project: Path, emulator: Any) -> None:
    """`rm -rf dist && tsc`: the folder is back before anyone could notice; its new watch must still hear saves."""
    src = project / "functions" / "hello"
    with Proc(project, "--json", "--debounce-ms", "100") as watch:
        settle(watch, emulator, uploads=1)
        shutil.rmtree(src)
        make_tree(src, {"index.py": HELLO_PY.replace("hello", "rebuilt"), "lib/util.py": "X = 2\n"})
        settle(watch, emulator, uploads=2)
        (src / "index.py").write_text(HELLO_PY.replace("hello", "edited later"))  # the new folder is watched
        settle(watch, emulator, uploads=3)
        assert emulator.emulator.function("hello").digest == cold(project)
        code, _ = stop(watch)
    assert code == 0


def test_a_source_symlink_pointed_elsewhere_is_synced_and_watched_there(tmp_path: Path, emulator: Any) -> None:
    """A release layout: the source is `current -> releases/v1`, and a deploy points it at v2."""
    releases = tmp_path / "functions" / "releases"
    make_tree(releases / "v1", {"index.py": HELLO_PY, "lib/util.py": "X = 1\n"})
    make_tree(releases / "v2", {"index.py": HELLO_PY.replace("hello", "v2"), "lib/util.py": "X = 2\n"})
    os.symlink("releases/v1", tmp_path / "functions" / "current")
    write_config(tmp_path, endpoint=emulator.url, functions=[{"name": "hello", "source": "functions/current"}])
    emulator.emulator.create_function("hello")
    with Proc(tmp_path, "--json", "--debounce-ms", "100") as watch:
        settle(watch, emulator, uploads=1)
        os.symlink("releases/v2", tmp_path / "functions" / "next")
        os.replace(tmp_path / "functions" / "next", tmp_path / "functions" / "current")  # ln -sfn, atomically
        settle(watch, emulator, uploads=2)
        assert emulator.emulator.function("hello").digest == cold(tmp_path)
        (releases / "v2" / "lib" / "util.py").write_text("X = 3\n")  # the new target is the one watched
        settle(watch, emulator, uploads=3)
        (releases / "v1" / "lib" / "util.py").write_text("X = 4\n")  # and the old one no longer
        settle(watch, emulator, uploads=3)
        assert emulator.emulator.function("hello").digest == cold(tmp_path)
        code, _ = stop(watch)
    assert code == 0


def test_a_source_folder_that_stays_missing_is_an_error_until_it_is_back(project: Path, emulator: Any) -> None:
    src = project / "functions" / "hello"
    with Proc(project, "--json", "--debounce-ms", "100") as watch:
        settle(watch, emulator, uploads=1)
        shutil.rmtree(src)
        error = watch.wait_event(lambda e: e["event"] == "error" and e.get("code") == "source")
        assert "is missing" in error["message"] and str(src) in error["message"]
        time.sleep(0.5)
        make_tree(src, {"index.py": HELLO_PY.replace("hello", "back again")})
        settle(watch, emulator, uploads=2)
        assert emulator.emulator.function("hello").digest == cold(project)
        (src / "lib").mkdir()
        (src / "lib" / "more.py").write_text("Y = 1\n")
        settle(watch, emulator, uploads=3)
        assert emulator.emulator.function("hello").digest == cold(project)
        code, _ = stop(watch)
    assert code == 0


# --- 2: an in-place rewrite that keeps size and mtime --------------------------------------------------------------


@pytest.mark.parametrize("mode", [(), ("--poll",)], ids=["native", "poll"])
def test_cp_p_over_a_watched_file_is_pushed(project: Path, emulator: Any, tmp_path: Path, mode: tuple[str]) -> None:
    """With --poll too: a scan that compared size and mtime only would never see it."""
    target = project / "functions" / "hello" / "lib" / "util.py"
    with Proc(project, "--json", "--debounce-ms", "100", *mode) as watch:
        settle(watch, emulator, uploads=1)
        before = target.stat()
        incoming = tmp_path / "util.py"
        incoming.write_text("X = 9\n")  # same size
        os.utime(incoming, ns=(before.st_atime_ns, before.st_mtime_ns))
        shutil.copyfile(incoming, target)  # in place: the same inode
        shutil.copystat(incoming, target)  # and the old mtime back, as `cp -p` does
        after = target.stat()
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
        settle(watch, emulator, uploads=2)
        assert emulator.emulator.function("hello").digest == cold(project)
        code, _ = stop(watch)
    assert code == 0


# --- 3: fgsync's cache folder inside a source ----------------------------------------------------------------------


def test_a_cache_folder_inside_the_source_neither_loops_nor_is_uploaded(
    project: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = project / "functions" / "hello"
    cache = src / ".cache" / "fgsync"
    with Proc(project, "--json", "--debounce-ms", "100", env={"FGSYNC_CACHE_DIR": str(cache)}) as watch:
        settle(watch, emulator, uploads=1)
        (src / "index.py").write_text(HELLO_PY.replace("hello", "once"))
        settle(watch, emulator, uploads=2, quiet=1.5)  # a loop would have uploaded again and again by now
        code, err = stop(watch)
    assert code == 0
    assert any(cache.rglob("*.json"))  # the state really is in there
    assert not [name for name in remote_names(emulator) if name.startswith(".cache")]
    assert "fgsync's own folder .cache/fgsync is inside the source" in err
    monkeypatch.setenv("FGSYNC_CACHE_DIR", str(cache))  # the cold package leaves out the same folder
    assert emulator.emulator.function("hello").digest == cold(project)


# --- 6: fgsync.toml edited while watching --------------------------------------------------------------------------


def test_an_edit_of_fgsync_toml_is_applied_and_a_broken_one_keeps_the_last_good(project: Path, emulator: Any) -> None:
    emulator.emulator.create_function("world")
    make_tree(project / "functions" / "world", {"index.py": HELLO_PY.replace("hello", "world")})
    with Proc(project, "--json", "--debounce-ms", "100") as watch:
        settle(watch, emulator, uploads=1)
        assert "lib/util.py" in remote_names(emulator)
        # a new exclude: the excluded file leaves the package at once
        write_config(
            project,
            endpoint=emulator.url,
            functions=[{"name": "hello", "source": "functions/hello", "exclude": ["lib/"]}],
        )
        reloaded = watch.wait_event(lambda e: e["event"] == "watching" and "reloaded" in e)
        assert reloaded["reloaded"]["changed"] == {"hello": ["exclude"]}
        settle(watch, emulator, uploads=2)
        assert "lib/util.py" not in remote_names(emulator)
        (project / "functions" / "hello" / "lib" / "util.py").write_text("X = 2\n")  # excluded now: no sync
        time.sleep(0.5)
        assert emulator.emulator.uploads("hello") == 2
        # a broken file: said once, and the last good configuration stays in force
        config = project / "fgsync.toml"
        good = config.read_text()
        config.write_text(good + "\n[[function]\nname = \n")
        error = watch.wait_event(lambda e: e["event"] == "error" and e.get("code") == "config")
        assert "fgsync.toml" in error["message"] and "previous configuration stays" in error["message"]
        (project / "functions" / "hello" / "index.py").write_text(HELLO_PY.replace("hello", "still synced"))
        settle(watch, emulator, uploads=3)
        assert "lib/util.py" not in remote_names(emulator)
        # fixed, with a new function: it gets its initial sync
        write_config(
            project,
            endpoint=emulator.url,
            functions=[
                {"name": "hello", "source": "functions/hello", "exclude": ["lib/"]},
                {"name": "world", "source": "functions/world"},
            ],
        )
        reloaded = watch.wait_event(lambda e: e["event"] == "watching" and e.get("reloaded", {}).get("added"))
        assert reloaded["reloaded"]["added"] == ["world"] and reloaded["functions"] == ["hello", "world"]
        settle(watch, emulator, uploads=1, name="world")
        (project / "functions" / "world" / "index.py").write_text(HELLO_PY.replace("hello", "world 2"))
        settle(watch, emulator, uploads=2, name="world")
        code, _ = stop(watch)
    assert code == 0
    assert emulator.emulator.function("hello").digest == cold(project)
    assert emulator.emulator.function("world").digest == cold(project, "world")
    assert emulator.emulator.uploads("hello") == 3


# --- 7: signals during a build -------------------------------------------------------------------------------------


def build_project(project: Path, emulator: Any, marker: str, seconds: float) -> None:
    """A function whose build takes a while (and starts a child of its own, as real builds do)."""
    sleeper = f"{sys.executable} -c 'import time; time.sleep({seconds})' {marker}"
    write_config(
        project,
        endpoint=emulator.url,
        functions=[{"name": "hello", "source": "functions/hello", "build": f"{sleeper} && echo built > built.txt"}],
    )


def wait_build(marker: str) -> None:
    deadline = time.monotonic() + 20
    while not processes_with(marker):
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.02)


def test_ctrl_c_during_a_build_says_so_lets_it_finish_and_pushes(project: Path, emulator: Any) -> None:
    marker = f"fgsync-build-{os.getpid()}-finish"
    build_project(project, emulator, marker, 1.5)
    with Proc(project, "--json", "--debounce-ms", "100") as watch:
        wait_build(marker)
        watch.proc.send_signal(signal.SIGINT)
        waiting = watch.wait_event(lambda e: e["event"] == "waiting")
        assert waiting["message"] == "waiting for the build of hello; Ctrl+C again to abort"
        code, err = watch.finish()
    assert code == 130 and "Traceback" not in err
    events = [json.loads(line) for line in watch.lines]
    assert [e["event"] for e in events][-2:] == ["pushed", "stopped"]
    assert events[-1]["pending"] == []
    assert emulator.emulator.function("hello").digest == cold(project)
    assert not processes_with(marker) and not _children_in(project)


def test_a_second_ctrl_c_during_a_build_kills_its_whole_group(project: Path, emulator: Any) -> None:
    marker = f"fgsync-build-{os.getpid()}-abort"
    build_project(project, emulator, marker, 60)
    with Proc(project, "--json", "--debounce-ms", "100") as watch:
        wait_build(marker)
        watch.proc.send_signal(signal.SIGINT)
        watch.wait_event(lambda e: e["event"] == "waiting")
        aborted = time.monotonic()
        watch.proc.send_signal(signal.SIGINT)
        code, err = watch.finish()
    assert code == 130 and "Aborted." in err and "Traceback" not in err
    assert time.monotonic() - aborted < 5
    events = [json.loads(line) for line in watch.lines]
    assert events[-1] == {**events[-1], "event": "stopped", "pending": ["hello"]}
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_with(marker)
    assert emulator.emulator.uploads("hello") == 0


def test_sighup_acts_as_sigterm(project: Path, emulator: Any) -> None:
    with Proc(project, "--json", "--debounce-ms", "100") as watch:
        settle(watch, emulator, uploads=1)
        code, _ = stop(watch, signal.SIGHUP)
    assert code == 0
    assert json.loads(watch.lines[-1]) == {**json.loads(watch.lines[-1]), "event": "stopped", "pending": []}


def test_a_build_over_its_timeout_is_stopped_and_reported(project: Path, emulator: Any) -> None:
    marker = f"fgsync-build-{os.getpid()}-timeout"
    build_project(project, emulator, marker, 60)
    config = project / "fgsync.toml"
    config.write_text(config.read_text() + "build_timeout_s = 1\n")
    with Proc(project, "--json", "--debounce-ms", "100") as watch:
        error = watch.wait_event(lambda e: e["event"] == "error" and e.get("code") == "build")
        assert "timed out after 1 s" in error["message"]
        assert not processes_with(marker)
        code, _ = stop(watch)
    assert code == 0
    assert emulator.emulator.uploads("hello") == 0


# --- 9: a stale git lock -------------------------------------------------------------------------------------------


def test_changes_held_by_a_git_lock_are_named_when_stopped(project: Path, emulator: Any) -> None:
    (project / ".git").mkdir()
    with Proc(project, "--json", "--debounce-ms", "100") as watch:
        settle(watch, emulator, uploads=1)
        (project / ".git" / "index.lock").write_text("")  # a git that crashed left it
        (project / "functions" / "hello" / "index.py").write_text(HELLO_PY.replace("hello", "held"))
        watch.wait_event(lambda e: e["event"] == "change")
        time.sleep(0.5)
        code, _ = stop(watch, signal.SIGINT)
    assert code == 130
    assert json.loads(watch.lines[-1])["pending"] == ["hello"]  # not dropped without a word
    assert emulator.emulator.uploads("hello") == 1


# --- 15: the small ones --------------------------------------------------------------------------------------------


def test_a_newline_in_a_file_name_stays_on_one_change_line(project: Path, emulator: Any) -> None:
    with Proc(project, "--debounce-ms", "100") as watch:
        watch.wait_line(lambda line: "pushed" in line)
        (project / "functions" / "hello" / "odd\nname.py").write_text("x = 1\n")
        line = watch.wait_line(lambda line: "changed" in line)
        assert line.endswith("changed odd\\nname.py")
        settle(watch, emulator, uploads=2)
        code, _ = stop(watch)
    assert code == 0


def test_a_reader_that_goes_away_stops_the_watch_quietly(project: Path, emulator: Any) -> None:
    """`fgsync watch --json | head -1`: once the pipe is closed, the watch stops; no BrokenPipeError."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FGSYNC_", "CLOUD_SDK_"))}
    env.update(FGSYNC_TOKEN=TOKEN, FGSYNC_CACHE_DIR=str(project / ".cache"))
    shell = f"{sys.executable} -m fgsync watch --json --debounce-ms 100 | head -1"
    proc = subprocess.Popen(
        ["sh", "-c", f"{shell}; echo \"fgsync exit $?\" >&2"],  # POSIX sh: $? of a pipeline is head's
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        settle_deadline = time.monotonic() + 20
        while emulator.emulator.uploads("hello") < 1 and time.monotonic() < settle_deadline:
            time.sleep(0.05)
        (project / "functions" / "hello" / "index.py").write_text(HELLO_PY.replace("hello", "after head"))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(out.splitlines()[0])["event"] == "watching"
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    assert not _children_in(project)
