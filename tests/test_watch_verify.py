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
