"""`fgsync demo` driven as a person would: in a pseudo-terminal, edit the named file, see the new result, Ctrl+C."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pty = pytest.importorskip("pty", reason="pseudo-terminals exist on POSIX only")
fcntl = pytest.importorskip("fcntl")
termios = pytest.importorskip("termios")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A process on a pseudo-terminal, read with deadlines."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "200", "LINES": "50", "PYTHONUNBUFFERED": "1"}
        # A session of its own with the pty as controlling terminal, so Ctrl+C (\x03) becomes SIGINT as it
        # does for a person at a terminal.
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        self.slave_name = os.ttyname(slave)
        os.close(slave)
        self.screen = ""

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            self.screen += ANSI.sub("", chunk.decode(errors="replace")).replace("\r", "")

    def expect(self, pattern: str, *, after: int = 0, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            found = regex.search(self.screen, after)
            if found:
                return found
            self._read(0.1)
        raise AssertionError(f"never saw {pattern!r} on the screen:\n{self.screen}")

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        self._read(0.2)
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


@pytest.mark.timeout(90)
def test_demo_edit_save_see_the_new_result_then_ctrl_c(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    term = Terminal([sys.executable, "-m", "fgsync", "demo", "--dir", str(demo)], cwd=tmp_path)
    try:
        edit = term.expect(r"Edit (\S+index\.py)")
        handler = Path(edit.group(1))
        assert handler == demo / "hello" / "index.py"
        first = term.expect(r"invoked: status 200 .*result (.*Hello, developer!.*)")

        text = handler.read_text()
        assert 'GREETING = "Hello"' in text
        handler.write_text(text.replace('GREETING = "Hello"', 'GREETING = "Bonjour"'))

        term.expect(r"pushed ", after=first.end())
        term.expect(r"invoked: status 200 .*Bonjour, developer!", after=first.end())

        term.ctrl_c()
        assert term.wait() == 130
        assert "Traceback" not in term.screen
        term.expect(rf"files are in {re.escape(str(demo))}")
        assert sorted(p.name for p in (demo / "hello").iterdir()) == ["index.py"], "nothing written into source"
    finally:
        term.close()


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("node")
def test_demo_nodejs_edit_save_see_the_new_result_then_ctrl_c(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    term = Terminal([sys.executable, "-m", "fgsync", "demo", "--runtime", "nodejs", "--dir", str(demo)], cwd=tmp_path)
    try:
        edit = term.expect(r"Edit (\S+index\.js)")
        handler = Path(edit.group(1))
        assert handler == demo / "hello" / "index.js"
        assert "hello (Node.js18.15)" in term.screen
        first = term.expect(r"invoked: status 200 .*result (.*Hello, developer!.*)")
        term.expect(r"INFO saying Hello to developer", after=first.end())  # context.getLogger() in the log tail

        text = handler.read_text()
        assert 'const GREETING = "Hello";' in text and "context.getLogger()" in text
        handler.write_text(text.replace('const GREETING = "Hello";', 'const GREETING = "Bonjour";'))

        term.expect(r"pushed ", after=first.end())
        term.expect(r"invoked: status 200 .*Bonjour, developer!", after=first.end())
        term.expect(r"INFO saying Bonjour to developer", after=first.end())

        term.ctrl_c()
        assert term.wait() == 130
        assert "Traceback" not in term.screen
        term.expect(rf"files are in {re.escape(str(demo))}")
        assert sorted(p.name for p in (demo / "hello").iterdir()) == ["index.js"], "nothing written into source"
    finally:
        term.close()


def test_demo_nodejs_without_node_says_how_to_install_it(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()  # a PATH with no node on it
    result = subprocess.run(
        [sys.executable, "-m", "fgsync", "demo", "--runtime", "nodejs", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": str(tmp_path / "bin")},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: fgsync demo --runtime nodejs needs Node.js, and there is no `node` on PATH")
    assert "apt-get install nodejs" in result.stderr and "brew install node" in result.stderr
    assert "https://nodejs.org" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
    assert not (tmp_path / "demo").exists(), "checked before anything is written"


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    result = subprocess.run(
        [sys.executable, "-m", "fgsync", "demo", "--dir", str(tmp_path / "busy")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not empty" in result.stderr
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
