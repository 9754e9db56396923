"""Rendering events: a human line per event, or one NDJSON object per event on stdout.

Human mode writes the lines to stdout (errors to stderr); ``--json`` keeps stdout for NDJSON events only and
sends anything else to stderr.

``json`` is imported by what writes or reads JSON: `fgsync package` in human mode, run by editors on every save,
never needs it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sys
import threading
from collections.abc import Iterator
from typing import Any, Callable, Optional, TextIO

from fgsync.events import Event

ProgressHook = Callable[[int, int], None]


def human_size(n: int) -> str:
    """1536 -> '1.5 KB' (powers of 1024, one decimal)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def short(digest: Optional[str]) -> str:
    """The first 12 hex characters of a digest, or '-' when there is none."""
    return digest[:12] if digest else "-"


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): a file name with a newline in it must
    not split a line that problem matchers and scripts read as one, nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _paths(paths: list[str], count: int) -> str:
    shown = ", ".join(printable(p) for p in paths[:3])
    more = count - min(len(paths), 3)
    return f"{shown} (+{more} more)" if more > 0 else shown


def render_human(event: Event) -> str:
    """One line (sometimes followed by indented detail lines) for a person."""
    f = event.fields
    if event.event == "watching":
        names = ", ".join(f["functions"])
        line = f"watching {len(f['functions'])} function(s): {names} — Ctrl+C to stop"
        if "reloaded" in f:
            return f"fgsync.toml reloaded: {_reload_summary(f['reloaded'])}; {line}"
        return line
    if event.event == "change":
        return f"changed {_paths(f['paths'], f['count'])}"
    if event.event == "packaged":
        size = human_size(f["bytes"])
        what = "dependency package: " if f.get("package") == "dependency" else ""
        return f"packaged {what}{f['files']} files, {size} in {f['ms']} ms  sha512 {short(f['sha512'])}"
    if event.event == "skipped":
        note = {
            "unchanged": "nothing changed since the last push",
            "remote-identical": "the function already runs this code",
            "server-unchanged": "the service says the code is the same",
            "dry-run": "dry run: would upload",
        }.get(f["reason"], "")
        if f["reason"] == "dry-run" and event.extra.get("would"):
            note = f"dry run: would {event.extra['would']}"
        return f"skipped ({f['reason']}) — {note}" if note else f"skipped ({f['reason']})"
    if event.event == "drift":
        if f.get("remote") == f.get("recorded") and f.get("dependency"):
            return "drift: fgsync's dependency version was detached outside fgsync; attaching it again"
        return (
            f"drift: the function's code was changed outside fgsync "
            f"(remote {short(f['remote'])}, last pushed {short(f['recorded'])})"
        )
    if event.event == "dependency":
        what = {
            "published": "published as version",
            "reused": "reused version",
            "unchanged": "unchanged, version",
        }.get(str(f["action"]), str(f["action"]))
        return (
            f"dependency {what} {f['version']}: {f['files']} files, {human_size(f['bytes'])} in {f['ms']} ms"
            f"  sha256 {short(f['sha256'])}"
        )
    if event.event == "pushed":
        via = "  via OBS" if f.get("code_url") else ""
        return f"pushed {human_size(f['bytes'])} in {f['ms']} ms{via}  digest {short(f['digest'])}"
    if event.event == "invoked":
        text = f"invoked: status {f['status']} in {f['ms']} ms  {_invocation_outcome(f['result'])}"
        log = (f.get("log") or "").rstrip("\n")
        if log:
            text += "\n" + "\n".join("    | " + line for line in log.splitlines()[-15:])
        return text
    if event.event == "waiting":
        return str(f["message"])
    if event.event == "error":
        # "error" is the generic code (no service code, no local category): printing it would say "error error:".
        text = f"error {f['code']}: {f['message']}" if f["code"] != "error" else f"error: {f['message']}"
        if f.get("retry_in_ms") is not None:
            text += f" — retrying in {f['retry_in_ms'] / 1000:.1f} s"
        detail = event.extra.get("detail")
        if detail:
            text += "\n" + "\n".join("    | " + line for line in str(detail).rstrip().splitlines()[-20:])
        return text
    if event.event == "status":
        text = (
            f"{f['state']:<12} local {short(f['sha512'])}  pushed {short(f['pushed_sha512'])}"
            f"  remote {short(f['remote_digest'])}"
        )
        details = []
        if f.get("runtime"):
            details.append(str(f["runtime"]))
        if isinstance(f.get("code_size"), int):
            details.append(human_size(f["code_size"]))
        if f.get("last_modified"):
            details.append(f"modified {f['last_modified']}")
        if f.get("code_url"):
            details.append(f"code from OBS {f['code_url']}")
        dependency = f.get("dependency")
        if isinstance(dependency, dict):
            version = dependency.get("version")
            where = f"version {version}" if version is not None else "no version"
            how = "attached" if dependency.get("attached") else "not attached"
            details.append(f"dependency {short(dependency.get('sha256'))} ({where}, {how})")
        return text + ("  " + "  ".join(details) if details else "")
    if event.event == "stopped":
        pending = f.get("pending") or []
        return f"stopped; changes not pushed: {', '.join(pending)}" if pending else "stopped"
    return event.event


def _reload_summary(reloaded: dict[str, Any]) -> str:
    parts = []
    if reloaded.get("added"):
        parts.append("added " + ", ".join(reloaded["added"]))
    if reloaded.get("removed"):
        parts.append("removed " + ", ".join(reloaded["removed"]))
    for name, keys in (reloaded.get("changed") or {}).items():
        parts.append(f"changed {name} ({', '.join(keys)})")
    for key, (old, new) in (reloaded.get("settings") or {}).items():
        parts.append(f"{key} {old} -> {new}")
    return "; ".join(parts) if parts else "no change to apply"


def failure_summary(result: Any) -> Optional[str]:
    """``ValueError: bad input`` when an invocation's result is FunctionGraph's error object, else None.

    One line (runs of white space folded), so editors and scripts can read it.
    """
    import json

    try:
        data = json.loads(result) if isinstance(result, str) else result
    except ValueError:
        return None
    if not isinstance(data, dict) or not (data.get("errorType") or data.get("errorMessage")):
        return None
    text = ": ".join(str(part) for part in (data.get("errorType"), data.get("errorMessage")) if part)
    return " ".join(text.split())


def _invocation_outcome(result: Any) -> str:
    """``result {...}``, or for a handler error ``failed: ZeroDivisionError: division by zero`` (the log tail
    has the traceback); long results are cut so one invocation stays a few lines."""
    failure = failure_summary(result)
    if failure is not None:
        return f"failed: {failure}"
    import json

    text = result if isinstance(result, str) else json.dumps(result)
    return f"result {text if len(text) <= 300 else text[:297] + '...'}"


class Reporter:
    """Writes events for a person or a program; safe to call from several threads.

    Args:
        json_mode: NDJSON events on stdout, nothing else there.
        quiet: human mode shows only errors and drift.
    """

    def __init__(
        self,
        *,
        json_mode: bool = False,
        quiet: bool = False,
        out: Optional[TextIO] = None,
        err: Optional[TextIO] = None,
    ) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self._out = out
        self._err = err
        self._lock = threading.Lock()
        self._local = threading.local()  # .route: where this thread's events go instead (see routed)
        #: Called (once) when stdout is gone: `fgsync watch | head -1`, a closed terminal. `watch` stops then.
        self.on_closed: Optional[Callable[[], None]] = None
        #: A line shown once, under the first `watching` line (human mode): the keys `watch` takes.
        self.hint: Optional[str] = None
        self._closed = False

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    def emit(self, event: Event) -> None:
        """Write one event (or, in a thread inside :meth:`routed`, hand it to that thread's route)."""
        route: Optional[Callable[[Event], None]] = getattr(self._local, "route", None)
        if route is not None:
            route(event)
            return
        self.write_event(event)

    @contextlib.contextmanager
    def routed(self, route: Callable[[Event], None]) -> Iterator[None]:
        """While the block runs, the events this thread emits go to ``route`` instead of the output.

        For work done in parallel whose output must keep an order: the route holds the events and writes them
        (:meth:`write_event`) when their turn comes. Progress bars are off in a routed thread (several at once,
        out of order, would garble the terminal).
        """
        previous = getattr(self._local, "route", None)
        self._local.route = route
        try:
            yield
        finally:
            self._local.route = previous

    def write_event(self, event: Event) -> None:
        """Write one event now, whatever thread and route."""
        if self.json_mode:
            import json

            line = json.dumps(event.to_json(), ensure_ascii=False, sort_keys=False) + "\n"
            with self._lock:
                self._write(self.out, line)
            return
        with self._lock:
            if self.quiet and event.event not in ("error", "drift"):
                return
            stream = self.err if event.event == "error" else self.out
            stamp = _dt.datetime.now().strftime("%H:%M:%S")
            who = f"{event.function}  " if event.function else ""
            self._write(stream, f"{stamp} {who}{render_human(event)}\n")
            if event.event == "watching" and self.hint:
                hint, self.hint = self.hint, None
                self._write(stream, f"         {hint}\n")

    def info(self, text: str) -> None:
        """A line for a person: stdout in human mode, stderr with --json, nothing with --quiet."""
        if self.quiet:
            return
        with self._lock:
            self._write(self.err if self.json_mode else self.out, text + "\n")

    def document(self, data: dict[str, Any]) -> None:
        """One JSON document on stdout (for commands whose --json answer is not an event stream)."""
        import json

        line = json.dumps(data, ensure_ascii=False) + "\n"
        with self._lock:
            self._write(self.out, line)

    def _write(self, stream: TextIO, text: str) -> None:
        """Write and flush; a reader that went away ends the output quietly instead of raising in a worker."""
        if self._closed and stream is self.out:
            return
        try:
            stream.write(text)
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            if stream is not self.out:
                return  # stderr gone too: nothing left to tell anyone
            self._closed = True
            _detach(stream)
            if self.on_closed is not None:
                self.on_closed()

    @contextlib.contextmanager
    def progress(self, function: str) -> Iterator[ProgressHook]:
        """A progress bar for an upload, shown only on a terminal, in human mode, after one second (and not in a
        :meth:`routed` thread)."""
        routed = getattr(self._local, "route", None) is not None
        if self.json_mode or self.quiet or routed or not _isatty(self.out):
            yield lambda sent, total_: None
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        bar = Progress(
            TextColumn(f"{function} uploading"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
            auto_refresh=True,
        )
        task = bar.add_task("upload", total=None, visible=False)
        started = _dt.datetime.now()
        shown = False

        def hook(sent: int, total_: int) -> None:
            nonlocal shown
            if not shown and (_dt.datetime.now() - started).total_seconds() >= 1.0 and sent < total_:
                bar.start()
                bar.update(task, visible=True)
                shown = True
            bar.update(task, completed=sent, total=total_)

        try:
            yield hook
        finally:
            if shown:
                bar.stop()


def _detach(stream: TextIO) -> None:
    """Point a dead stream's descriptor at the null device, so the interpreter's last flush does not complain."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests): nothing to detach
        pass


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
