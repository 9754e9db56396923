"""The watch loop: batches of changes -> syncs, one in flight per function, with retries and pauses.

:class:`Scheduler` is the policy alone (which function syncs when): time is an argument, credentials and git
locks are callables, so it is unit-tested with a fake clock. :class:`Daemon` drives it with one watcher
thread (:func:`fgsync.watch.changes.watch_changes`), a pool of sync threads and a main loop that sleeps on an event,
uvicorn style, so a stop is seen at once. The rules (follow-ups, git locks, build output, backoff, pauses on
401, signals) are in docs/watch.md.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from fgsync.events import Emit, Event, change_event
from fgsync.watch.changes import watch_changes
from fgsync.watch.filter import Change, WatchTarget
from fgsync.watch.gitlock import git_lock_held
from fgsync.watch.scheduler import Scheduler, Timing, no_stamp
from fgsync.watch.source import DEFAULT_POLL_INTERVAL, FileEventSource, watch_roots

if TYPE_CHECKING:
    from fgsync.config import FunctionConfig

logger = logging.getLogger(__name__)

#: One sync of one function, given the emit to report through (built by the cli around sync_function).
SyncStep = Callable[["FunctionConfig", Emit], object]

#: Longest sleep of the main loop between two looks at ``stop_event``.
_STEP_SECONDS = 0.1


@dataclass(frozen=True)
class _Done:
    name: str
    error: Optional[BaseException]


@dataclass(frozen=True)
class _Fatal:
    error: BaseException


_Item = Union[frozenset[Change], _Done, _Fatal]


class Daemon:
    """The watch loop over configured functions. Build it, then call :meth:`run` (blocks until stopped).

    Args:
        functions: the functions to watch (at least one).
        sync: one sync of one function (raises FgsyncError subclasses); called from worker threads.
        emit: where events go; calls are serialized by the daemon.
        stop_event: set it (from a signal handler, say) to stop; in-flight syncs finish first.
        debounce_ms, max_wait_ms: the burst rules (see :class:`fgsync.watch.Debouncer`).
        poll: poll the file system instead of native events.
        credential_stamp: fingerprint of the current credentials, polled while a function is paused.
        clock: monotonic seconds.
        timing: delays (backoff, auth polling, git-lock polling, build grace).
        max_workers: parallel syncs; default ``min(4, len(functions))``.
        poll_interval: seconds between scans with ``poll``.
        lock_held: whether git holds a source folder (default :func:`git_lock_held`).
        rand: [0, 1) for the backoff jitter.
    """

    def __init__(
        self,
        functions: Sequence[FunctionConfig],
        *,
        sync: SyncStep,
        emit: Emit,
        stop_event: threading.Event,
        debounce_ms: int = 300,
        max_wait_ms: int = 3000,
        poll: bool = False,
        credential_stamp: Callable[[], str] = no_stamp,
        clock: Callable[[], float] = time.monotonic,
        timing: Timing = Timing(),
        max_workers: Optional[int] = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        lock_held: Callable[[Path], bool] = git_lock_held,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not functions:
            raise ValueError("no functions to watch")
        self.functions = {fn.name: fn for fn in functions}
        self._sync = sync
        self._emit_to = emit
        self._stop = stop_event
        self.debounce_ms = debounce_ms
        self.max_wait_ms = max_wait_ms
        self.poll = poll
        self.poll_interval = poll_interval
        self._clock = clock
        self.timing = timing
        self._max_workers = max_workers or min(4, len(functions))
        self.scheduler = Scheduler(
            list(self.functions),
            timing=timing,
            credential_stamp=credential_stamp,
            lock_held=lambda name: lock_held(self.functions[name].source),
            rand=rand,
        )
        self._emit_lock = threading.Lock()
        self._inbox: queue.Queue[_Item] = queue.Queue()
        self._wake = threading.Event()
        # function name -> monotonic time until which events under its source are its build's output
        self._build_until: dict[str, float] = {}

    def emit(self, event: Event) -> None:
        """Report an event (thread-safe); a ``packaged`` event ends its function's build window."""
        if event.event == "packaged" and event.function in self._build_until:
            self._build_until[event.function] = self._clock() + self.timing.build_grace
        with self._emit_lock:
            self._emit_to(event)

    def run(self) -> None:
        """Watch and sync until ``stop_event`` is set; then let running syncs finish and emit ``stopped``.

        Raises:
            FgsyncError: the folders cannot be watched, or an ignore file is invalid at start.
        """
        targets = [WatchTarget.for_function(fn) for fn in self.functions.values()]
        source = FileEventSource(
            watch_roots(t.source for t in targets), poll=self.poll, poll_interval=self.poll_interval
        )
        source.start()  # before the initial sync, so a save during it is not missed
        watch_stop = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(targets, source, watch_stop), name="fgsync-watch", daemon=True
        )
        executor = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="fgsync-sync")
        try:
            self.emit(
                Event(
                    "watching",
                    None,
                    {
                        "functions": list(self.functions),
                        "paths": list(dict.fromkeys(str(fn.source) for fn in self.functions.values())),
                    },
                )
            )
            watcher.start()
            self._loop(executor)
        finally:
            watch_stop.set()
            if watcher.is_alive():
                watcher.join()
            source.close()
            executor.shutdown(wait=True, cancel_futures=True)
            self._drain(final=True)
            self.emit(Event("stopped"))

    def _watch(self, targets: list[WatchTarget], source: FileEventSource, watch_stop: threading.Event) -> None:
        try:
            for batch in watch_changes(
                targets,
                stop_event=watch_stop,
                debounce_ms=self.debounce_ms,
                max_wait_ms=self.max_wait_ms,
                suppress=self._is_build_output,
                source=source,
                clock=self._clock,
            ):
                self._inbox.put(frozenset(batch))
                self._wake.set()
        except BaseException as error:  # handed to the main loop, which re-raises it
            self._inbox.put(_Fatal(error))
            self._wake.set()

    def _is_build_output(self, change: Change) -> bool:
        now = self._clock()
        building = [name for name, until in list(self._build_until.items()) if now < until]
        if not building:
            return False
        path = self.functions[change.function].source / change.path
        for name in building:
            source = self.functions[name].source
            if path == source or source in path.parents:
                logger.debug("%s: %s taken as build output of %s", change.function, change.path, name)
                return True
        return False

    def _loop(self, executor: ThreadPoolExecutor) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self._drain()
            now = self._clock()
            for name in self.scheduler.due(now):
                fn = self.functions[name]
                if fn.build:
                    self._build_until[name] = math.inf
                executor.submit(self._run_one, fn)
            wake_at = self.scheduler.next_wakeup(now)
            wait = _STEP_SECONDS if wake_at is None else min(max(0.0, wake_at - now), _STEP_SECONDS)
            self._wake.wait(wait)

    def _run_one(self, fn: FunctionConfig) -> None:
        error: Optional[BaseException] = None
        try:
            self._sync(fn, self.emit)
        except Exception as exc:  # every failure is the scheduler's to judge; the loop never dies of one
            error = exc
        finally:
            self._inbox.put(_Done(fn.name, error))
            self._wake.set()

    def _drain(self, *, final: bool = False) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Fatal):
                if not final:
                    raise item.error
            elif isinstance(item, _Done):
                if item.name in self._build_until:
                    grace_end = self._clock() + self.timing.build_grace
                    self._build_until[item.name] = min(self._build_until[item.name], grace_end)
                event = self.scheduler.finished(item.name, item.error, self._clock())
                if event is not None:
                    self.emit(event)
            elif not final:
                self._changed(item)

    def _changed(self, batch: frozenset[Change]) -> None:
        by_function: dict[str, list[str]] = {}
        for change in batch:
            paths = by_function.setdefault(change.function, [])
            # A temp file created and renamed away (sed -i, atomic saves) names nothing the user has; its
            # rename target has its own event. It still owes a sync: it may have replaced a real file.
            if not change.transient:
                paths.append(change.path)
        for name in self.functions:
            if name in by_function:
                if by_function[name]:
                    self.emit(change_event(name, by_function[name]))
                self.scheduler.changed(name)
