"""How `fgsync watch` stops: SIGINT (Ctrl+C), SIGTERM and SIGHUP (the terminal closed) stop watching and let
what is in flight finish; a second one aborts at once, stopping every build's process group first.

The handler only records the signal and sets the stop event (the daemon runs on a thread of its own, so the
handler never interrupts code holding one of its locks). The ``q`` key goes the same way as Ctrl+C.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Callable, Optional

from fgsync.errors import EXIT_INTERRUPTED
from fgsync.package import BuildProcesses
from fgsync.watch import Daemon

logger = logging.getLogger(__name__)

#: The signals that stop `fgsync watch`: Ctrl+C, `kill`, and the terminal closing (SIGHUP acts as SIGTERM).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopper:
    """The first stop request sets ``stop``; a second one calls ``abort``. Thread-safe."""

    def __init__(self, stop: threading.Event, abort: Callable[[int], None]) -> None:
        self.stop = stop
        self.received: list[int] = []
        self._abort = abort
        self._lock = threading.Lock()

    def trigger(self, signum: int) -> None:
        """A stop request (a signal, or the ``q`` key as SIGINT)."""
        with self._lock:
            again = bool(self.received)
            self.received.append(signum)
        if again:
            self._abort(signum)
        self.stop.set()

    @property
    def interrupted(self) -> bool:
        """Whether the stop came from Ctrl+C (exit 130), not from SIGTERM or SIGHUP (exit 0)."""
        return signal.SIGINT in self.received


@contextlib.contextmanager
def handle_signals(stopper: Stopper) -> Iterator[Stopper]:
    """Route SIGINT, SIGTERM and SIGHUP to ``stopper`` while the block runs.

    Outside the main thread (where Python cannot install handlers) nothing is installed.
    """

    def handler(signum: int, _frame: Optional[FrameType]) -> None:
        stopper.trigger(signum)

    previous = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:
        logger.debug("not the main thread: no signal handlers")
    try:
        yield stopper
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def make_abort(
    daemon: Daemon, builds: BuildProcesses, *, cleanup: Sequence[Callable[[], None]] = ()
) -> Callable[[int], None]:
    """The second signal: stop every build's process group, say what was not pushed, and exit at once."""

    def abort(_signum: int) -> None:
        # The user wants out now, upload or not: os._exit skips joining the upload thread.
        builds.stop_all(grace=1.0)
        daemon.emit_stopped()
        for undo in cleanup:
            undo()  # the terminal's settings, before the process goes
        sys.stdout.flush()
        sys.stderr.write("Aborted.\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    return abort
