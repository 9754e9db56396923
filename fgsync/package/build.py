"""The function's ``build`` command: run through the shell in its source folder, output captured.

A build runs in a process group of its own (a new session on POSIX), so the terminal's Ctrl+C reaches fgsync
alone: fgsync decides what a signal means for the build (the first one lets it finish, a second one, or the
build's timeout, stops its whole group). :class:`BuildProcesses` is how the one that decides finds the builds
that are running.

``subprocess`` and ``signal`` (~4 ms to import) are imported by the functions that start or stop a build: every
packaging imports this module, few functions have a ``build``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from fgsync.errors import BuildError

if TYPE_CHECKING:
    import subprocess

log = logging.getLogger(__name__)

_OUTPUT_TAIL_LINES = 30
_OUTPUT_TAIL_CHARS = 4000
#: After SIGTERM, how long a build's processes get to exit before SIGKILL.
_TERM_GRACE = 2.0


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-_OUTPUT_TAIL_LINES:]
    return "\n".join(lines)[-_OUTPUT_TAIL_CHARS:]


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the build and everything it started (they share its process group)."""
    import signal

    try:
        if os.name == "posix":
            os.killpg(proc.pid, signum)
        elif signum == signal.SIGTERM:
            proc.terminate()
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _stop_group(proc: subprocess.Popen[bytes], grace: float = _TERM_GRACE) -> None:
    """SIGTERM the build's group, then SIGKILL what is left after ``grace`` seconds (builds may clean up)."""
    import signal
    import subprocess

    _signal_group(proc, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    # The shell may be gone while a child it started still runs: the group gets SIGKILL either way.
    _signal_group(proc, getattr(signal, "SIGKILL", signal.SIGTERM))


class BuildProcesses:
    """The build commands running now, so a second Ctrl+C (or any abort) can stop every one of them.

    Thread-safe. One per watch (or push); pass it to :func:`run_build`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
        self._stopping = False

    def add(self, proc: subprocess.Popen[bytes], cwd: str) -> None:
        with self._lock:
            self._running[proc.pid] = (proc, cwd)
            stopping = self._stopping
        if stopping:  # started while an abort was under way: it goes too
            _stop_group(proc, grace=0.2)

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.pop(proc.pid, None)

    def running(self) -> list[str]:
        """The folders of the builds running now."""
        with self._lock:
            return [cwd for _, cwd in self._running.values()]

    def stop_all(self, grace: float = _TERM_GRACE) -> None:
        """Stop every running build's process group (SIGTERM, then SIGKILL after ``grace``), and any started
        from now on."""
        import signal
        import subprocess

        with self._lock:
            self._stopping = True
            procs = [proc for proc, _ in self._running.values()]
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            _signal_group(proc, getattr(signal, "SIGKILL", signal.SIGTERM))


def run_build(
    command: str,
    cwd: Path,
    *,
    timeout: Optional[float] = None,
    processes: Optional[BuildProcesses] = None,
) -> str:
    """Run a function's ``build`` command through the shell in its source folder.

    Args:
        command: the shell command line.
        cwd: the folder it runs in (the function's source).
        timeout: seconds before the command and everything it started are stopped (``build_timeout_s``).
        processes: where the running build is registered, so an abort can stop it.

    Returns:
        Its combined stdout and stderr.

    Raises:
        BuildError: it exited non-zero, was killed, timed out or could not start; carries the output.
    """
    import subprocess

    log.debug("running build command in %s", cwd)
    try:
        proc = subprocess.Popen(
            command,
            shell=True,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=os.name == "posix",
        )
    except OSError as exc:
        raise BuildError(f"cannot run the build command in {cwd}: {exc.strerror or exc}") from None
    if processes is not None:
        processes.add(proc, str(cwd))
    output = bytearray()
    reader = threading.Thread(target=_drain, args=(proc, output), name="fgsync-build-output", daemon=True)
    reader.start()
    try:
        timed_out = _wait(proc, timeout)
    except BaseException:  # Ctrl+C in `fgsync push`, or any error: never leave the build behind
        _stop_group(proc, grace=0.5)
        raise
    finally:
        if processes is not None:
            processes.discard(proc)
    # A grandchild that left the group may hold the pipe open: read what came, never wait for ever.
    reader.join(timeout=5)
    text = bytes(output).decode("utf-8", errors="replace")
    if timed_out:
        assert timeout is not None
        message = f"build command timed out after {timeout:g} s (build_timeout_s): stopped it and what it started"
        if text.strip():
            message += ":\n" + _tail(text)
        raise BuildError(message, output=text, returncode=None)
    code = proc.returncode
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"failed with exit code {code}"
        message = f"build command {how}"
        if text.strip():
            message += ":\n" + _tail(text)
        raise BuildError(message, output=text, returncode=code)
    return text


def _wait(proc: subprocess.Popen[bytes], timeout: Optional[float]) -> bool:
    """Wait for the build to exit; True when it ran past ``timeout`` (and was stopped)."""
    import subprocess

    try:
        proc.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        proc.wait()
        return True


def _drain(proc: subprocess.Popen[bytes], sink: bytearray) -> None:
    stream = proc.stdout
    assert stream is not None
    with stream:
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                return
            sink.extend(chunk)
