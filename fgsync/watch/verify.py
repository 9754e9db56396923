"""The verifying walk: after a sync, a walk of the whole tree at low priority looks for what no event reported.

The daemon's packager looks only at the paths the watcher reported (:func:`fgsync.package.rewalk.rewalk`). An
event can still go missing: a hard link's other name, a file written through a bind mount, a watch that was
re-armed a moment late. So after a sync that trusted the events, one thread walks the function's whole tree,
niced, a little after the sync (so a save that is still settling is reported by its own event first), and
hands back what differs. The daemon treats that as a change like any other: a missed event costs one more sync,
never a stale push.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from fgsync.config import FunctionConfig

logger = logging.getLogger(__name__)

#: How much nicer than the daemon the walking thread runs (Linux: a thread has its own nice value).
NICENESS = 10


class Verifier:
    """One low-priority thread that runs ``check`` for each function some time after its sync.

    Args:
        check: the paths of ``fn`` that changed unreported (a walk of its tree; may be slow).
        report: called from the thread with the function's name, those paths and the token given to
            :meth:`after_sync`, when there are any.
        delay: seconds between a sync and its check; another sync of the function meanwhile moves it later.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        check: Callable[[FunctionConfig], Sequence[str]],
        report: Callable[[str, Sequence[str], int], None],
        *,
        delay: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._report = report
        self._delay = delay
        self._clock = clock
        self._due: dict[str, tuple[float, FunctionConfig, int]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fgsync-verify", daemon=True)
        self._thread.start()

    def after_sync(self, fn: FunctionConfig, token: int) -> None:
        """Check ``fn`` ``delay`` seconds from now (replacing a check not yet run)."""
        with self._cond:
            self._due[fn.name] = (self._clock() + self._delay, fn, token)
            self._cond.notify()

    def cancel(self, name: str) -> None:
        """Forget the check of a function not run yet (it changed: its next sync is checked instead)."""
        with self._cond:
            self._due.pop(name, None)

    def close(self) -> None:
        """Stop the thread (a walk under way is not waited for: the thread is a daemon)."""
        with self._cond:
            self._closed = True
            self._due.clear()
            self._cond.notify()

    def _run(self) -> None:
        _lower_priority()
        while True:
            with self._cond:
                while not self._closed:
                    now = self._clock()
                    ready = [name for name, (at, _fn, _token) in self._due.items() if at <= now]
                    if ready:
                        _at, fn, token = self._due.pop(ready[0])
                        break
                    soonest = min((at for at, _fn, _token in self._due.values()), default=None)
                    self._cond.wait(None if soonest is None else max(0.0, soonest - now))
                else:
                    return
            try:
                paths = list(self._check(fn))
            except Exception:  # a check that fails says nothing; the next sync is checked again
                logger.debug("%s: the verifying walk failed", fn.name, exc_info=True)
                continue
            if paths:
                logger.info("%s: the verifying walk found %d change(s) no event reported", fn.name, len(paths))
                self._report(fn.name, paths, token)


def _lower_priority() -> None:
    """Nice this thread, not the process (Linux gives each thread its own nice value)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
    except (AttributeError, OSError):  # pragma: no cover - a sandbox that refuses it: the walk runs as is
        logger.debug("could not lower the verifying walk's priority", exc_info=True)
