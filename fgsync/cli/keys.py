"""Keys in `fgsync watch` on a terminal: Enter syncs every function now, ``i`` invokes again, ``q`` stops.

Only in human mode with stdin a terminal (never for ``--json``, pipes or editor tasks). The terminal is put in
"cbreak" mode (keys arrive one by one, not echoed; Ctrl+C still sends SIGINT) and restored on every way out:
the normal end, an error, and the abort path, which calls :meth:`KeyReader.restore` before ``os._exit``.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
from typing import Any, Callable, Optional, TextIO

logger = logging.getLogger(__name__)

HINT = "keys: Enter sync now · i invoke again · q quit"

#: Longest wait for a key before looking at the stop flag again.
_STEP_SECONDS = 0.1


def keys_wanted(*, json_mode: bool, stdin: Optional[TextIO] = None, stdout: Optional[TextIO] = None) -> bool:
    """Whether `watch` should take keys: human output, and both stdin and stdout a terminal (POSIX)."""
    if json_mode or os.name != "posix":
        return False
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    try:
        return bool(stdin and stdin.isatty() and stdout and stdout.isatty())
    except (AttributeError, ValueError):
        return False


class KeyReader:
    """Reads keys from a terminal on a thread of its own and calls the matching action.

    Args:
        on_sync: Enter (or Return).
        on_invoke: ``i``.
        on_quit: ``q`` (the same as Ctrl+C: a second one aborts).
        fd: the terminal's descriptor (stdin's by default).
    """

    def __init__(
        self,
        *,
        on_sync: Callable[[], None],
        on_invoke: Callable[[], None],
        on_quit: Callable[[], None],
        fd: Optional[int] = None,
    ) -> None:
        self._actions = {"\n": on_sync, "\r": on_sync, "i": on_invoke, "I": on_invoke, "q": on_quit, "Q": on_quit}
        self._fd = sys.stdin.fileno() if fd is None else fd
        self._saved: Optional[list[Any]] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fgsync-keys", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Put the terminal in cbreak mode and start reading. A terminal that refuses is simply not read."""
        import termios
        import tty

        try:
            saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd, termios.TCSANOW)
        except (termios.error, OSError) as exc:
            logger.debug("no keys: %s", exc)
            return
        with self._lock:
            self._saved = saved
        self._thread.start()

    def restore(self) -> None:
        """Give the terminal its settings back (idempotent; safe from a signal handler)."""
        with self._lock:
            saved, self._saved = self._saved, None
        if saved is None:
            return
        import termios

        try:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)
        except (termios.error, OSError) as exc:
            logger.debug("could not restore the terminal: %s", exc)

    def close(self) -> None:
        """Stop reading, wait for the reader, restore the terminal."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self.restore()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], _STEP_SECONDS)
                if not ready:
                    continue
                data = os.read(self._fd, 64)
            except (OSError, ValueError):
                return  # the terminal went away
            if not data:
                return
            for char in data.decode("utf-8", errors="ignore"):
                action = self._actions.get(char)
                if action is None or self._stop.is_set():
                    continue
                try:
                    action()
                except Exception:  # a key must never kill the watch
                    logger.debug("key %r failed", char, exc_info=True)
