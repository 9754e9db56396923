"""`fgsync watch` on a terminal: the keys (in a real pseudo-terminal) and `--notify` (a fake notify-send)."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import HELLO_PY, TOKEN, make_tree, write_config
from test_demo import Terminal
from test_watch_e2e import Proc

termios = pytest.importorskip("termios")


@pytest.fixture
def project(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    make_tree(tmp_path / "events", {"hello.json": '{"name": "keys"}'})
    write_config(
        tmp_path,
        endpoint=emulator.url,
        functions=[{"name": "hello", "source": "functions/hello", "invoke_event": "events/hello.json"}],
    )
    emulator.emulator.create_function("hello")
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    monkeypatch.setenv("FGSYNC_CACHE_DIR", str(tmp_path / ".cache"))
    return tmp_path


class KeyTerminal(Terminal):
    """A Terminal that keeps its own end of the pty open, to read the terminal's settings afterwards."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        super().__init__(argv, cwd)
        self.slave = os.open(self.slave_name, os.O_RDWR | os.O_NOCTTY)

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        super().close()
        os.close(self.slave)


@pytest.mark.timeout(90)
def test_enter_syncs_i_invokes_q_quits_and_the_terminal_is_restored(project: Path, emulator: Any) -> None:
    term = KeyTerminal([sys.executable, "-m", "fgsync", "watch", "--debounce-ms", "100"], cwd=project)
    try:
        before = termios.tcgetattr(term.slave)
        hint = r"watching 1 function\(s\): hello[^\n]*\n\s+keys: Enter sync now · i invoke again · q quit"
        watching = term.expect(hint)
        pushed = term.expect(r"hello  pushed ", after=watching.end())
        during = termios.tcgetattr(term.slave)
        assert not during[3] & termios.ICANON and not during[3] & termios.ECHO  # keys arrive one by one, unechoed
        uploads = emulator.emulator.uploads("hello")

        term.press(b"\r")  # Enter: a normal sync, so an unchanged function is skipped, not uploaded again
        synced = term.expect(r"hello  skipped \(", after=pushed.end())
        assert emulator.emulator.uploads("hello") == uploads

        term.press(b"i")
        term.expect(r"hello  invoked: status 200 .*keys", after=synced.end())

        term.press(b"q")  # as Ctrl+C
        assert term.wait() == 130
        assert "Traceback" not in term.screen
        term.expect(r"stopped")
        assert termios.tcgetattr(term.slave) == before
    finally:
        term.close()


@pytest.mark.timeout(90)
def test_keys_leave_json_output_alone(project: Path) -> None:
    """Editors read --json: no hint line, no cbreak mode, keys are just input nobody reads."""
    term = KeyTerminal([sys.executable, "-m", "fgsync", "watch", "--json", "--debounce-ms", "100"], cwd=project)
    try:
        before = termios.tcgetattr(term.slave)
        term.expect(r'"event": "pushed"')
        assert "keys:" not in term.screen
        assert termios.tcgetattr(term.slave) == before
        term.ctrl_c()
        assert term.wait() == 130
    finally:
        term.close()


def fake_notify_send(folder: Path) -> Path:
    """A `notify-send` on PATH that appends its arguments to a file, one line per notification."""
    log = folder / "notifications.txt"
    script = folder / "bin" / "notify-send"
    script.parent.mkdir(parents=True)
    script.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {log}\necho >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="notify-send is the Linux notifier")
def test_notify_on_failure_and_on_recovery(project: Path, emulator: Any, tmp_path: Path) -> None:
    log = fake_notify_send(tmp_path)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    emulator.emulator.inject("update_code", status=403, code="FSS.0403", message="no permission to update code")
    with Proc(project, "--json", "--notify", "--debounce-ms", "100", env={"PATH": path}) as watch:
        watch.wait_event(lambda e: e["event"] == "error")
        deadline = time.monotonic() + 10
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        (project / "functions" / "hello" / "index.py").write_text(HELLO_PY.replace("hello", "fixed"))
        watch.wait_event(lambda e: e["event"] == "pushed")
        deadline = time.monotonic() + 10
        while len(log.read_text().splitlines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        watch.proc.terminate()
        code, err = watch.finish()
    assert code == 0 and "Traceback" not in err
    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("--app-name=fgsync|fgsync: hello failed|") and "no permission" in lines[0]
    assert lines[1].startswith("--app-name=fgsync|fgsync: hello recovered|")


def test_notify_without_a_notifier_is_silently_nothing(project: Path, emulator: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    emulator.emulator.inject("update_code", status=403, code="FSS.0403", message="no permission")
    env = {"PATH": f"{empty}{os.pathsep}{Path(sys.executable).parent}"}
    with Proc(project, "--json", "--notify", "--debounce-ms", "100", env=env) as watch:
        watch.wait_event(lambda e: e["event"] == "error")
        watch.proc.terminate()
        code, err = watch.finish()
    assert code == 0 and err.strip() == ""


def test_notify_sends_nothing_when_all_goes_well(project: Path, emulator: Any, tmp_path: Path) -> None:
    log = fake_notify_send(tmp_path)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    with Proc(project, "--json", "--notify", "--debounce-ms", "100", env={"PATH": path}) as watch:
        watch.wait_event(lambda e: e["event"] == "pushed")
        time.sleep(0.3)
        watch.proc.terminate()
        watch.finish()
    assert not log.exists()
