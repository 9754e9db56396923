"""The function's ``build`` command: run through the shell in its source folder, output captured."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Optional

from fgsync.errors import BuildError

log = logging.getLogger(__name__)

_OUTPUT_TAIL_LINES = 30
_OUTPUT_TAIL_CHARS = 4000


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-_OUTPUT_TAIL_LINES:]
    return "\n".join(lines)[-_OUTPUT_TAIL_CHARS:]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the build and everything it started (the shell's children share its session)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def run_build(command: str, cwd: Path, *, timeout: Optional[float] = None) -> str:
    """Run a function's ``build`` command through the shell in its source folder.

    Args:
        command: the shell command line.
        cwd: the folder it runs in (the function's source).
        timeout: seconds before the command and its children are killed.

    Returns:
        Its combined stdout and stderr.

    Raises:
        BuildError: it exited non-zero, was killed, timed out or could not start; carries the output.
    """
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
    try:
        raw, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        try:
            raw, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild left its own session and holds the pipe
            raw = b""
        output = raw.decode("utf-8", errors="replace")
        message = f"build command timed out after {timeout:g} s"
        if output.strip():
            message += ":\n" + _tail(output)
        raise BuildError(message, output=output, returncode=None) from None
    except BaseException:
        _kill(proc)
        proc.wait()
        raise
    output = raw.decode("utf-8", errors="replace")
    code = proc.returncode
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"failed with exit code {code}"
        message = f"build command {how}"
        if output.strip():
            message += ":\n" + _tail(output)
        raise BuildError(message, output=output, returncode=code)
    return output
