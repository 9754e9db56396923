"""The daemon packages from the paths the watcher reported, and a verifying walk after each push finds what no
event said: a real `fgsync watch` against the emulator, and a change made through a hard link from outside the
source folder (inotify reports it to the folder the writer went through, not to the watched one)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_tree, write_config
from test_watch_e2e import Proc

from fgsync.config import load_config
from fgsync.sync import package_split


@pytest.fixture
def project(tmp_path: Path, emulator: Any) -> Path:
    make_tree(tmp_path / "functions" / "hello", {"index.py": "A = 1\n", "b.py": "B = 1\n"})
    (tmp_path / "outside").mkdir()
    # The same file under a second name, outside every watched folder.
    os.link(tmp_path / "functions" / "hello" / "b.py", tmp_path / "outside" / "b.py")
    write_config(tmp_path, endpoint=emulator.url, functions=[{"name": "hello", "source": "functions/hello"}])
    emulator.emulator.create_function("hello")
    return tmp_path


def local_digest(project: Path) -> str:
    return package_split(load_config(project / "fgsync.toml").functions[0]).code.sha512


def test_a_change_no_event_reported_is_found_after_the_next_push_and_pushed(project: Path, emulator: Any) -> None:
    emu = emulator.emulator
    src = project / "functions" / "hello"
    with Proc(project, "--json", "--debounce-ms", "100") as watch:
        watch.wait_event(lambda e: e["event"] in ("pushed", "skipped"))
        # Past the racy window (2 s): from here on the packager trusts what it cached of b.py.
        time.sleep(2.5)
        (src / "index.py").write_text("A = 2\n")
        watch.wait_event(lambda e: e["event"] == "pushed" and e["digest"] == local_digest(project))
        pushes = emu.uploads("hello")

        (project / "outside" / "b.py").write_text("B = 2, and no event in functions/hello said so\n")
        (src / "index.py").write_text("A = 3\n")  # reported: packaged from its path, with b.py as last seen
        found = watch.wait_event(lambda e: e["event"] == "change" and "b.py" in e["paths"], timeout=30)
        assert "index.py" not in found["paths"]  # the verifying walk names the one the watcher never reported
        watch.wait_event(lambda e: e["event"] == "pushed" and e["digest"] == local_digest(project), timeout=30)
        time.sleep(2.0)  # and then it is quiet: the next verifying walk finds nothing
        assert emu.function("hello").digest == local_digest(project)
        assert emu.uploads("hello") == pushes + 2  # the stale push, and the one that mended it
        watch.proc.terminate()
        code, err = watch.finish()
    assert code == 0 and "Traceback" not in err


def test_functions_sharing_a_source_each_get_what_the_verifying_walk_found(tmp_path: Path, emulator: Any) -> None:
    # Two functions over one folder share one builder. The verifying walk after the first one's push finds the
    # edit no event reported, and that function repacks at once; the second one's walk, over a tree big enough to
    # take longer than that repack, must still find the edit its own push left out.
    src = make_tree(tmp_path / "functions" / "hello", {"index.py": "A = 1\n", "b.py": "B = 1\n"})
    make_tree(src / "lib", {f"d{i % 40}/m{i}.py": f"M = {i}\n" for i in range(4000)})
    (tmp_path / "outside").mkdir()
    os.link(src / "b.py", tmp_path / "outside" / "b.py")
    names = ("alpha", "beta")
    write_config(tmp_path, endpoint=emulator.url, functions=[{"name": n, "source": "functions/hello"} for n in names])
    emu = emulator.emulator
    for name in names:
        emu.create_function(name)
    with Proc(tmp_path, "--json", "--debounce-ms", "100") as watch:
        for name in names:
            watch.wait_event(lambda e, name=name: e["event"] == "pushed" and e["function"] == name)
        time.sleep(2.5)  # past the racy window: the next build re-reads b.py once, then trusts what it cached
        (src / "index.py").write_text("A = 2\n")
        for name in names:
            watch.wait_event(lambda e, name=name: e["event"] == "pushed" and e.get("function") == name and
                             e["digest"] == local_digest(tmp_path))  # fmt: skip
        (tmp_path / "outside" / "b.py").write_text("B = 2, and no event in functions/hello said so\n")
        (src / "index.py").write_text("A = 3\n")  # reported: both repack from its path, with b.py as last seen
        want = local_digest(tmp_path)
        for name in names:
            watch.wait_event(lambda e, name=name: e["event"] == "pushed" and e.get("function") == name and
                             e["digest"] == want, timeout=15)  # fmt: skip
        time.sleep(1.5)  # quiet again: nothing more to find
        assert [emu.function(name).digest for name in names] == [want, want]
        watch.proc.terminate()
        code, err = watch.finish()
    assert code == 0 and "Traceback" not in err


def test_an_edit_in_an_ignored_folder_a_symlink_leads_into_is_pushed(tmp_path: Path, emulator: Any) -> None:
    # node_modules/ is ignored, but the link pkg -> node_modules/pkg is followed: its files are in the package
    # under pkg/, and an edit inside node_modules/pkg (whose own events the ignore rules drop) changes it.
    src = make_tree(
        tmp_path / "functions" / "hello",
        {"index.py": "A = 1\n", ".fgsyncignore": "node_modules/\n", "node_modules/pkg/lib.py": "L = 1\n"},
    )
    os.symlink("node_modules/pkg", src / "pkg")
    write_config(tmp_path, endpoint=emulator.url, functions=[{"name": "hello", "source": "functions/hello"}])
    emulator.emulator.create_function("hello")
    with Proc(tmp_path, "--json", "--debounce-ms", "100") as watch:
        watch.wait_event(lambda e: e["event"] == "pushed")
        (src / "node_modules" / "pkg" / "lib.py").write_text("L = 2\n")
        found = watch.wait_event(lambda e: e["event"] == "change", timeout=10)
        assert found["paths"] == ["pkg/lib.py"]  # its name in the package
        watch.wait_event(lambda e: e["event"] == "pushed" and e["digest"] == local_digest(tmp_path), timeout=10)
        watch.proc.terminate()
        code, err = watch.finish()
    assert code == 0 and "Traceback" not in err


def test_a_link_pointed_elsewhere_moves_the_links_that_lead_through_it(tmp_path: Path, emulator: Any) -> None:
    # app.py -> current/app.py, with current -> v1: a deploy points current at v2; app.py must follow at once
    # (its entry cached as v1's app.py would otherwise go up stale, and only the verifying walk mend it).
    src = make_tree(
        tmp_path / "functions" / "hello",
        {"index.py": "A = 1\n", "v1/app.py": "V = 1\n", "v2/app.py": "V = 2, longer\n"},
    )
    os.symlink("v1", src / "current")
    os.symlink("current/app.py", src / "app.py")
    write_config(tmp_path, endpoint=emulator.url, functions=[{"name": "hello", "source": "functions/hello"}])
    emu = emulator.emulator
    emu.create_function("hello")
    with Proc(tmp_path, "--json", "--debounce-ms", "100") as watch:
        watch.wait_event(lambda e: e["event"] == "pushed")
        time.sleep(2.5)  # past the racy window: the next build re-reads everything once, then trusts it
        (src / "index.py").write_text("A = 2\n")
        watch.wait_event(lambda e: e["event"] == "pushed" and e["digest"] == local_digest(tmp_path))
        pushes = emu.uploads("hello")
        earlier = {e["digest"] for e in watch.events() if e["event"] == "pushed"}
        os.symlink("v2", src / "next")
        os.replace(src / "next", src / "current")
        pushed = watch.wait_event(lambda e: e["event"] == "pushed" and e["digest"] not in earlier, timeout=10)
        assert pushed["digest"] == local_digest(tmp_path)
        time.sleep(1.5)  # the verifying walk finds nothing left to mend
        assert emu.uploads("hello") == pushes + 1
        watch.proc.terminate()
        code, err = watch.finish()
    assert code == 0 and "Traceback" not in err


def test_a_dangling_link_into_an_ignored_folder_is_synced_once_its_target_is_there(
    tmp_path: Path, emulator: Any
) -> None:
    # The link comes before `npm install` makes what it leads to: an error until then, and no event of the
    # install (node_modules/ is ignored) may leave that error standing.
    src = make_tree(tmp_path / "functions" / "hello", {"index.py": "A = 1\n", ".fgsyncignore": "node_modules/\n"})
    write_config(tmp_path, endpoint=emulator.url, functions=[{"name": "hello", "source": "functions/hello"}])
    emulator.emulator.create_function("hello")
    with Proc(tmp_path, "--json", "--debounce-ms", "100") as watch:
        watch.wait_event(lambda e: e["event"] == "pushed")
        os.symlink("node_modules/pkg", src / "pkg")
        watch.wait_event(lambda e: e["event"] == "error" and "dangling" in e["message"])
        make_tree(src / "node_modules" / "pkg", {"lib.py": "L = 1\n"})
        watch.wait_event(lambda e: e["event"] == "pushed" and e["digest"] == local_digest(tmp_path), timeout=10)
        watch.proc.terminate()
        code, err = watch.finish()
    assert code == 0 and "Traceback" not in err
