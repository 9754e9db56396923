"""The child process of one emulated invocation: import the handler, call it, write the outcome.

Run as a script (``python _runner.py``) with the invocation on stdin as JSON. The handler's prints go to
this process's stdout/stderr, which the emulator captures as the function's log; the outcome goes to the
JSON file named by ``result_path``, so a handler printing anything cannot corrupt it. Standard library only:
this runs beside the user's code, in its folder.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any, Optional


class _Logger:
    """What ``context.getLogger()`` returns: timestamped lines on stdout, like the service's runtime."""

    def __init__(self, request_id: str) -> None:
        self._request_id = request_id

    def _write(self, level: str, message: Any) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"{stamp} {self._request_id} {level} {message}", flush=True)

    def debug(self, message: Any) -> None:
        self._write("DEBUG", message)

    def info(self, message: Any) -> None:
        self._write("INFO", message)

    def warn(self, message: Any) -> None:
        self._write("WARN", message)

    def warning(self, message: Any) -> None:
        self._write("WARN", message)

    def error(self, message: Any) -> None:
        self._write("ERROR", message)


class Context:
    """The ``context`` argument of a FunctionGraph Python handler (the emulator's subset)."""

    def __init__(self, spec: dict[str, Any], started: float) -> None:
        self._spec = spec
        self._deadline = started + float(spec["timeout_ms"]) / 1000.0
        self._logger = _Logger(str(spec["request_id"]))

    def getRequestID(self) -> str:
        return str(self._spec["request_id"])

    def getRemainingTimeInMilliSeconds(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def getAccessKey(self) -> str:
        # Temporary keys come from the function's agency; emulated functions have none.
        return ""

    def getSecretKey(self) -> str:
        return ""

    def getSecurityAccessKey(self) -> str:
        return ""

    def getSecuritySecretKey(self) -> str:
        return ""

    def getSecurityToken(self) -> str:
        return ""

    def getToken(self) -> str:
        return ""

    def getUserData(self, key: str, default: Optional[str] = None) -> Optional[str]:
        value = self._spec.get("user_data", {}).get(key)
        return default if value is None else str(value)

    def getFunctionName(self) -> str:
        return str(self._spec["function_name"])

    def getRunningTimeInSeconds(self) -> int:
        return int(float(self._spec["timeout_ms"]) / 1000.0)

    def getVersion(self) -> str:
        return "latest"

    def getMemorySize(self) -> int:
        return int(self._spec["memory_size"])

    def getCPUNumber(self) -> int:
        return int(self._spec["memory_size"]) * 300 // 128

    def getPackage(self) -> str:
        return str(self._spec["package"])

    def getProjectID(self) -> str:
        return str(self._spec["project_id"])

    def getLogger(self) -> _Logger:
        return self._logger


def _max_rss_kb() -> int:
    try:
        import resource
    except ImportError:  # Windows: no getrusage
        return 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss // 1024) if sys.platform == "darwin" else int(rss)


def _user_frames(exc: BaseException) -> Any:
    """The traceback without the runner's own frame: the user's code is what they need to read."""
    tb = exc.__traceback__
    return tb.tb_next if tb is not None and tb.tb_next is not None else tb


def _error(exc: BaseException) -> dict[str, Any]:
    frames = traceback.format_exception(type(exc), exc, _user_frames(exc))
    return {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": [f.rstrip() for f in frames]}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Import and call the handler described by ``spec``; the outcome as a JSON-ready dict."""
    code_dir = str(spec["code_dir"])
    # Running this file as a script put the emulator's folder first on sys.path; the user's modules must not
    # find the emulator's (store, auth, ...) instead of their own.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [code_dir] + [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    module_name, _, attr = str(spec["handler"]).rpartition(".")
    if not module_name or not attr:
        return {
            "ok": False,
            "error": {
                "errorMessage": f"bad handler {spec['handler']!r}: use module.function",
                "errorType": "HandlerError",
                "stackTrace": [],
            },
        }
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, attr)
    except Exception as exc:
        error = _error(exc)
        error["errorMessage"] = f"cannot load handler {spec['handler']!r}: {exc}"
        return {"ok": False, "error": error}
    try:
        event = json.loads(spec["event"]) if spec["event"] else {}
        value = handler(event, Context(spec, time.monotonic()))
    except Exception as exc:
        traceback.print_exception(type(exc), exc, _user_frames(exc))
        return {"ok": False, "error": _error(exc)}
    try:
        return {"ok": True, "result": json.dumps(value)}
    except (TypeError, ValueError) as exc:
        return {
            "ok": False,
            "error": {
                "errorMessage": f"the handler's return value is not JSON: {exc}",
                "errorType": type(exc).__name__,
                "stackTrace": [],
            },
        }


def main() -> int:
    """Read the spec from stdin, run, write the outcome file; the exit code is 0 unless the runner broke."""
    spec = json.loads(sys.stdin.read())
    os.chdir(str(spec["code_dir"]))
    outcome = run(spec)
    sys.stdout.flush()
    sys.stderr.flush()
    outcome["max_rss_kb"] = _max_rss_kb()
    with open(str(spec["result_path"]), "w", encoding="utf-8") as handle:
        json.dump(outcome, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
