"""`fgsync watch --notify`: a desktop notification when a function's sync fails, and when it recovers.

Through the desktop's own mechanism: ``notify-send`` on Linux (libnotify) where it is installed, ``osascript``
on macOS; elsewhere, or when neither is there, nothing at all (never an error). One notification per failure
streak: retries of the same failure stay quiet until the function syncs again.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
from typing import Callable, Optional

from fgsync.events import Emit, Event

logger = logging.getLogger(__name__)

#: What ends a failure streak: the function's code is (again) what is on disk.
_RECOVERED = ("pushed", "skipped")
_TITLE = "fgsync"
_MAX_BODY = 200


def desktop_command(title: str, body: str, *, platform: str = sys.platform) -> Optional[list[str]]:
    """The command that shows a notification on this desktop, or None when there is no way to."""
    if platform == "darwin":
        if shutil.which("osascript") is None:
            return None
        script = f"display notification {_applescript(body)} with title {_applescript(title)}"
        return ["osascript", "-e", script]
    if platform.startswith(("linux", "freebsd", "openbsd", "netbsd")) and shutil.which("notify-send"):
        return ["notify-send", "--app-name=fgsync", title, body]
    return None


def _applescript(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Notifier:
    """Watches the event stream and tells the desktop about failures and recoveries.

    Args:
        show: shows one notification (title, body); default: the desktop's command, run without waiting.
    """

    def __init__(self, show: Optional[Callable[[str, str], None]] = None) -> None:
        self._show = show or _run_desktop_command
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def wrap(self, emit: Emit) -> Emit:
        """``emit`` that also looks at each event."""

        def both(event: Event) -> None:
            emit(event)
            self.observe(event)

        return both

    def observe(self, event: Event) -> None:
        """Notify on the first error of a function's streak, and on the sync that ends it."""
        name = event.function
        if name is None:
            return
        with self._lock:
            if event.event == "error":
                if name in self._failing:
                    return
                self._failing.add(name)
                message = str(event.fields.get("message", ""))
                title, body = f"{_TITLE}: {name} failed", _short(message)
            elif event.event in _RECOVERED and name in self._failing:
                self._failing.discard(name)
                title, body = f"{_TITLE}: {name} recovered", "its code is in sync again"
            else:
                return
        try:
            self._show(title, body)
        except Exception:  # a notification is a courtesy: it never breaks the watch
            logger.debug("notification failed", exc_info=True)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_BODY else text[: _MAX_BODY - 1] + "…"


def _run_desktop_command(title: str, body: str) -> None:
    command = desktop_command(title, body)
    if command is None:
        return
    try:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    except OSError as exc:
        logger.debug("cannot run %s: %s", command[0], exc)
        return
    # Reaped on a thread: a notification must not hold the watch, nor leave a zombie behind.
    threading.Thread(target=proc.wait, name="fgsync-notify", daemon=True).start()
