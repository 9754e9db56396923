"""Sync invocation for real: run a Python or Node.js handler from the function's current code in a subprocess.

Each code version (by digest and attached dependency versions, merged over the code) is extracted once into
a private temp folder; each invocation is a fresh ``python _runner.py`` or ``node _runner.js``
(:mod:`fgsync.emulator.runtimes` picks) in that folder, with the function's timeout, a clean environment (the
function's user data and the ``RUNTIME_*`` variables, never the emulator's own credentials) and its
stdout/stderr captured as the log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, Optional

from fgsync.emulator.runtimes import is_node_runtime, runner_command
from fgsync.emulator.store import FunctionRecord

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 4096
#: How much of the log is kept in memory: a handler printing in a loop must not exhaust the emulator.
_LOG_KEEP_BYTES = 64 * 1024
#: Interpreter start-up time allowed on top of the function's timeout before the child is killed.
_STARTUP_GRACE = 0.5

STATUS_OK = 200
STATUS_FUNCTION_ERROR = 500
STATUS_TIMEOUT = 408

#: (version id, zip) of each attached dependency version, in ``depend_version_list`` order.
DependencyZips = Callable[[list[str]], list[tuple[str, bytes]]]


@dataclasses.dataclass(frozen=True)
class InvokeOutcome:
    """What one invocation produced."""

    status: int
    result: str
    log: str
    duration_ms: float
    memory_used_mb: float

    @property
    def failed(self) -> bool:
        """True when the handler raised, timed out or could not run."""
        return self.status != STATUS_OK


class _TailReader(threading.Thread):
    """Drains a pipe, keeping only the last bytes (the log tail is all anyone reads)."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(name="fgsync-emulator-log", daemon=True)
        self._stream = stream
        self.data = bytearray()

    def run(self) -> None:
        while True:
            chunk = self._stream.read1(65536) if hasattr(self._stream, "read1") else self._stream.read(65536)
            if not chunk:
                return
            self.data += chunk
            if len(self.data) > 2 * _LOG_KEEP_BYTES:
                del self.data[:-_LOG_KEEP_BYTES]


def tail(text: str, limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of ``text`` (UTF-8), cut on a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", errors="ignore")


class Invoker:
    """Runs invocations; owns the extracted-code cache, removed when the invoker is collected or closed.

    Args:
        dependency_zips: the zips of a function's attached dependency versions (raises ValueError for one
            that does not exist); without it, dependencies are not merged.
    """

    def __init__(self, *, dependency_zips: Optional[DependencyZips] = None) -> None:
        self._dependency_zips = dependency_zips
        self._lock = threading.Lock()
        self._root: Optional[Path] = None
        self._finalizer: Optional[weakref.finalize[Any, Any]] = None

    def close(self) -> None:
        """Remove the code cache now."""
        if self._finalizer is not None:
            self._finalizer()

    def _code_dir(self, record: FunctionRecord) -> Path:
        """The function's code folder: its package, then each attached dependency merged over it."""
        dependencies: list[tuple[str, bytes]] = []
        if record.depend_version_list and self._dependency_zips is not None:
            dependencies = self._dependency_zips(list(record.depend_version_list))
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="fgsync-emulator-code-"))
                self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._root), True)
            key = record.digest[:40]
            if dependencies:  # one folder per (code digest, attached version ids)
                parts = [record.digest, *(version_id for version_id, _ in dependencies)]
                key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]
            if record.code_type == "inline":  # the file name depends on the handler and runtime, not only the code
                suffix = "-js" if is_node_runtime(record.runtime) else ""
                key += "-inline-" + record.handler.rpartition(".")[0] + suffix
            target = self._root / key
            if target.is_dir():
                return target
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=str(self._root)))
            try:
                _unpack(record, staging)
                for _version_id, data in dependencies:
                    # FunctionGraph merges dependencies into the code folder; a dependency's file wins.
                    _extract(data, staging)
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            return target

    def invoke(
        self,
        record: FunctionRecord,
        event: bytes,
        *,
        request_id: str,
        project_id: str,
        region: str,
    ) -> InvokeOutcome:
        """Run the function's handler with ``event``; never raises for the handler's own failures.

        Raises:
            EmulatorError: the runtime cannot run here (not Python or Node.js, or no ``node`` on PATH).
        """
        command = runner_command(record.runtime)
        started = time.monotonic()
        try:
            code_dir = self._code_dir(record)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            return _failure(STATUS_FUNCTION_ERROR, "CodeError", f"cannot unpack the function's code: {exc}", started)
        with tempfile.TemporaryDirectory(prefix="fgsync-invoke-") as scratch:
            result_path = Path(scratch) / "result.json"
            spec = {
                "code_dir": str(code_dir),
                "handler": record.handler,
                "event": event.decode("utf-8"),
                "request_id": request_id,
                "timeout_ms": int(record.timeout * 1000),
                "function_name": record.name,
                "package": record.package,
                "project_id": project_id,
                "memory_size": record.memory_size,
                "user_data": record.user_data,
                "result_path": str(result_path),
            }
            env = _child_env(record, code_dir, project_id, region, scratch)
            popen_kwargs: dict[str, Any] = {}
            if os.name == "posix":
                popen_kwargs["start_new_session"] = True  # so a timeout kills the handler's children too
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=str(code_dir),
                env=env,
                **popen_kwargs,
            )
            assert proc.stdin is not None and proc.stdout is not None
            reader = _TailReader(proc.stdout)
            reader.start()
            try:
                proc.stdin.write(json.dumps(spec).encode("utf-8"))
                proc.stdin.close()
            except BrokenPipeError:
                pass
            timed_out = not _wait_for_exit(proc, record.timeout + _STARTUP_GRACE)
            if timed_out:
                _kill(proc)
                proc.wait()
            reader.join(timeout=5)
            proc.stdout.close()
            duration = (time.monotonic() - started) * 1000
            text = bytes(reader.data).decode("utf-8", errors="replace")
            if timed_out:
                message = f"Invoke function timeout: the handler ran longer than {record.timeout:g} s"
                return InvokeOutcome(STATUS_TIMEOUT, _error_json(message, "TimeoutError"), text, duration, 0.0)
            try:
                outcome = json.loads(result_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                message = f"the runtime exited with code {proc.returncode} before the handler returned"
                return InvokeOutcome(STATUS_FUNCTION_ERROR, _error_json(message, "RuntimeExit"), text, duration, 0.0)
        memory = round(int(outcome.get("max_rss_kb", 0)) / 1024.0, 2)
        if outcome.get("ok"):
            return InvokeOutcome(STATUS_OK, str(outcome["result"]), text, duration, memory)
        return InvokeOutcome(STATUS_FUNCTION_ERROR, json.dumps(outcome["error"]), text, duration, memory)


def billing_ms(duration_ms: float) -> int:
    """Billed duration: whole milliseconds, rounded up."""
    return max(1, math.ceil(duration_ms))


def _error_json(message: str, kind: str) -> str:
    return json.dumps({"errorMessage": message, "errorType": kind, "stackTrace": []})


def _failure(status: int, kind: str, message: str, started: float) -> InvokeOutcome:
    return InvokeOutcome(status, _error_json(message, kind), "", (time.monotonic() - started) * 1000, 0.0)


def _wait_for_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for the child to exit; True when it did.

    ``Popen.wait(timeout)`` polls on POSIX, sleeping up to 50 ms between looks, which added 20-50 ms to every
    invocation; a thread blocked in ``waitpid`` sees the exit at once.
    """
    exited = threading.Event()

    def wait() -> None:
        proc.wait()
        exited.set()

    threading.Thread(target=wait, name="fgsync-emulator-wait", daemon=True).start()
    return exited.wait(timeout)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _child_env(record: FunctionRecord, code_dir: Path, project_id: str, region: str, scratch: str) -> dict[str, str]:
    """A clean environment: never the emulator's (it may hold CLOUD_SDK_SK and the like)."""
    env = {key: os.environ[key] for key in ("PATH", "SYSTEMROOT", "LANG", "LC_ALL") if key in os.environ}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": scratch,
            "TMPDIR": scratch,
            "RUNTIME_PROJECT_ID": project_id,
            "RUNTIME_REGION": region,
            "RUNTIME_PACKAGE": record.package,
            "RUNTIME_FUNC_NAME": record.name,
            "RUNTIME_FUNC_VERSION": "latest",
            "RUNTIME_HANDLER": record.handler,
            "RUNTIME_TIMEOUT": str(math.ceil(record.timeout)),
            "RUNTIME_MEMORY": str(record.memory_size),
            "RUNTIME_CODE_ROOT": str(code_dir),
            "RUNTIME_USERDATA": json.dumps(record.user_data),
        }
    )
    env.update({str(k): str(v) for k, v in record.user_data.items()})
    return env


def _unpack(record: FunctionRecord, target: Path) -> None:
    """Extract a zip (refusing paths that climb out), or write inline code as the handler's module."""
    if record.code_type == "inline":
        module = record.handler.rpartition(".")[0] or "index"
        # Python's handler names a dotted module; Node.js's a file path without its .js.
        filename = module + ".js" if is_node_runtime(record.runtime) else module.replace(".", "/") + ".py"
        (target / filename).parent.mkdir(parents=True, exist_ok=True)
        (target / filename).write_bytes(record.code)
        return
    _extract(record.code, target)


def _extract(data: bytes, target: Path) -> None:
    """Extract a zip into ``target``, over what is there, refusing paths that climb out."""
    root = target.resolve()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            destination = (target / info.filename).resolve()
            if destination != root and root not in destination.parents:
                raise ValueError(f"zip entry {info.filename!r} points outside the code folder")
        archive.extractall(str(target))
