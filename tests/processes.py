"""Helpers for tests that run the real `fgsync` as a subprocess against the emulator on a loopback port.

`run_fgsync(...)` runs one command to its end; `WatchProcess` is a running `fgsync watch --json` whose NDJSON
events are read on a thread. Both take the cache folder explicitly, so two processes can share a state folder
(or not) exactly as two terminals would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from conftest import SECRETS, TOKEN


def fgsync_env(cache: Path) -> dict[str, str]:
    """The environment of a user's terminal: FGSYNC_TOKEN set, the cache folder given, nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FGSYNC_", "CLOUD_SDK_"))}
    env.update(FGSYNC_TOKEN=TOKEN, FGSYNC_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    return env


def command(*args: str, fsize_limit: bool = False) -> list[str]:
    """``python -m fgsync ARGS``; ``fsize_limit``: under ``ulimit -f 0``, where every write to a regular file fails
    with EFBIG ("File too large"), even as root — a full disk, as far as the state file is concerned."""
    argv = [sys.executable, "-m", "fgsync", *args]
    return ["sh", "-c", 'ulimit -f 0 && exec "$@"', "sh", *argv] if fsize_limit else argv


class Result:
    """The outcome of one finished `fgsync ...` process."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err
        for secret in SECRETS:
            assert secret not in out and secret not in err

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


def run_fgsync(cwd: Path, cache: Path, *args: str, timeout: float = 60.0, fsize_limit: bool = False) -> Result:
    """Run `fgsync ARGS` in ``cwd`` to its end."""
    proc = subprocess.run(
        command(*args, fsize_limit=fsize_limit),
        cwd=cwd,
        env=fgsync_env(cache),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


class FgsyncProcess:
    """A running `fgsync ARGS` (``--json`` output expected), its NDJSON events read line by line on a thread."""

    def __init__(self, cwd: Path, cache: Path, *args: str, fsize_limit: bool = False) -> None:
        self.proc = subprocess.Popen(
            command(*args, fsize_limit=fsize_limit),
            cwd=cwd,
            env=fgsync_env(cache),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._result: Optional[Result] = None
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._cond:
            return [json.loads(line) for line in self.lines if line.strip()]

    def named(self, name: str, function: Optional[str] = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name and (function is None or e.get("function") == function)]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0) -> None:
        """Wait until ``predicate(events)`` holds; fails if the process ends first or the time runs out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate([json.loads(line) for line in self.lines if line.strip()]):
                assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.lines}"
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; events so far: {self.lines}"
                self._cond.wait(min(left, 0.1))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> Result:
        """Send ``sig`` (if still running) and collect the outcome."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout: float = 30.0) -> Result:
        """Wait for the end (killing it after ``timeout``) and collect the outcome (once; later calls repeat it)."""
        if self._result is not None:
            return self._result
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read() if self.proc.stderr is not None else ""
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        with self._cond:
            out = "\n".join(self.lines) + ("\n" if self.lines else "")
        self._result = Result(code, out, err)
        return self._result

    def __enter__(self) -> FgsyncProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()


def watch(cwd: Path, cache: Path, *args: str, fsize_limit: bool = False) -> FgsyncProcess:
    """`fgsync watch --json --debounce-ms 50 ARGS`."""
    return FgsyncProcess(cwd, cache, "watch", "--json", "--debounce-ms", "50", *args, fsize_limit=fsize_limit)


def synced(events: list[dict[str, Any]], count: int = 1) -> bool:
    """At least ``count`` syncs of any function have ended (pushed, skipped or error)."""
    return sum(e["event"] in ("pushed", "skipped", "error") for e in events) >= count


def alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def processes_in(folder: Path) -> list[int]:
    """Live processes whose working folder is under ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name)):
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            if cwd == folder or folder in cwd.parents:
                found.append(int(entry.name))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def no_tracebacks(*results: Result) -> None:
    for result in results:
        assert "Traceback" not in result.err, result.err
        assert "unexpected" not in result.out + result.err, result.out + result.err


__all__: Sequence[str] = (
    "FgsyncProcess",
    "Result",
    "alive",
    "command",
    "fgsync_env",
    "no_tracebacks",
    "processes_in",
    "run_fgsync",
    "synced",
    "wait_until",
    "watch",
)
