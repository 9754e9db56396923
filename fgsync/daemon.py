"""The watch loop: batches of changes -> syncs, one in flight per function, with retries and pauses.

:class:`Scheduler` is the policy alone (which function syncs when): time is an argument, credentials and git
locks are callables, so it is unit-tested with a fake clock. :class:`Daemon` drives it with one watcher
thread (:func:`fgsync.watch.watch_changes`), a pool of sync threads and a main loop that sleeps on an event,
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

from fgsync.errors import AuthApiError, BuildError, CredentialsError, FgsyncError
from fgsync.events import Emit, Event, change_event, error_event
from fgsync.watch import (
    DEFAULT_POLL_INTERVAL,
    Change,
    FileEventSource,
    WatchTarget,
    git_lock_held,
    watch_changes,
    watch_roots,
)

if TYPE_CHECKING:
    from fgsync.config import FunctionConfig

logger = logging.getLogger(__name__)

#: One sync of one function, given the emit to report through (built by the cli around sync_function).
SyncStep = Callable[["FunctionConfig", Emit], object]

#: Longest sleep of the main loop between two looks at ``stop_event``.
_STEP_SECONDS = 0.1

LOGIN_HINT = "run `fgsync login`; the function resumes by itself once credentials work"
RESUME_HINT = "the function resumes by itself once credentials work"


def _no_stamp() -> str:
    return ""


@dataclass(frozen=True)
class Timing:
    """The loop's delays, in seconds. Tests shrink them; the defaults are what users get."""

    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    auth_poll: float = 2.0
    auth_retry: float = 30.0
    lock_poll: float = 0.2
    #: Events this long after a build's packaging are still taken as its output (late notifications).
    build_grace: float = 0.3


def backoff_delay(attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with "equal jitter": between half and all of ``min(cap, base * 2**(n-1))``.

    Half the delay is kept fixed so a retry never fires at once after a failure; the other half spreads
    several fgsync processes hitting the same throttled service.
    """
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rand() * ceiling / 2


@dataclass
class _State:
    dirty: bool = True  # a sync is owed: the initial one, or a change since the last one started
    running: bool = False
    attempt: int = 0  # consecutive retryable failures
    retry_at: float = 0.0  # not before this time (backoff, or the periodic retry while paused)
    paused: bool = False  # credentials refused
    stamp: str = ""  # credential_stamp() when the sync that got paused started
    stamp_check_at: float = 0.0
    locked: bool = False  # a git index.lock held it at the last look
    lock_check_at: float = 0.0


class Scheduler:
    """Which function syncs when. Every method takes the current time; nothing here sleeps or does I/O
    beyond the injected ``credential_stamp`` and ``lock_held`` callables.

    Args:
        names: the functions; each starts owing its initial sync.
        timing: delays.
        credential_stamp: a fingerprint of the current credentials (never the secret itself).
        lock_held: whether a git operation holds the function's tree (by function name).
        rand: [0, 1) for the backoff jitter.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        timing: Timing = Timing(),
        credential_stamp: Callable[[], str] = _no_stamp,
        lock_held: Callable[[str], bool] = lambda _name: False,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.timing = timing
        self._states = {name: _State() for name in names}
        self._credential_stamp = credential_stamp
        self._lock_held = lock_held
        self._rand = rand

    def changed(self, name: str) -> None:
        """A settled burst touched the function: it owes a sync (a follow-up if one is running)."""
        self._states[name].dirty = True

    def paused(self, name: str) -> bool:
        """Whether the function waits for working credentials."""
        return self._states[name].paused

    def due(self, now: float) -> list[str]:
        """The functions to sync now; each is marked running until :meth:`finished`."""
        started = []
        for name, state in self._states.items():
            if state.running or not state.dirty or not self._may_start(name, state, now):
                continue
            state.running = True
            state.dirty = False
            # Taken at the start, not at the failure: a login that lands while the failing request is in
            # flight must still count as a change of credentials.
            state.stamp = self._stamp()
            started.append(name)
        return started

    def _may_start(self, name: str, state: _State, now: float) -> bool:
        if state.paused and now >= state.stamp_check_at:
            state.stamp_check_at = now + self.timing.auth_poll
            if self._stamp() != state.stamp:
                logger.info("%s: credentials changed, retrying", name)
                state.retry_at = now
        if now < state.retry_at:
            return False
        if state.locked and now < state.lock_check_at:
            return False
        held = self._lock_held(name)
        if held and not state.locked:
            logger.info("%s: a git operation is in progress (index.lock); waiting for it", name)
        elif state.locked and not held:
            logger.info("%s: git index.lock is gone", name)
        state.locked = held
        state.lock_check_at = now + self.timing.lock_poll
        return not held

    def _stamp(self) -> str:
        try:
            return self._credential_stamp()
        except Exception as error:  # a keyring hiccup must not kill the loop; retry later
            logger.debug("credential stamp failed: %s", type(error).__name__)
            return ""

    def finished(self, name: str, error: Optional[BaseException], now: float) -> Optional[Event]:
        """Record the end of a sync; returns the `error` event to report, if any."""
        state = self._states[name]
        state.running = False
        if error is None:
            if state.paused:
                logger.info("%s: credentials work again, resumed", name)
            state.attempt = 0
            state.paused = False
            return None
        if isinstance(error, (AuthApiError, CredentialsError)):
            return self._pause(name, state, error, now)
        state.paused = False
        if isinstance(error, FgsyncError) and error.retryable:
            state.dirty = True
            state.attempt += 1
            delay = backoff_delay(
                state.attempt, base=self.timing.backoff_base, cap=self.timing.backoff_cap, rand=self._rand
            )
            retry_after = getattr(error, "retry_after", None)
            if retry_after:
                delay = max(delay, min(float(retry_after), self.timing.backoff_cap))
            state.retry_at = now + delay
            return error_event(name, error.code, error.message, retryable=True, retry_in_ms=round(delay * 1000))
        state.attempt = 0
        if isinstance(error, FgsyncError):
            extra = {"detail": error.output} if isinstance(error, BuildError) and error.output else None
            return error_event(name, error.code, error.message, extra=extra)
        logger.debug("%s: unexpected error in sync", name, exc_info=error)
        return error_event(name, "error", f"unexpected {type(error).__name__}: {error}")

    def _pause(self, name: str, state: _State, error: FgsyncError, now: float) -> Optional[Event]:
        state.dirty = True  # the change is not lost: it goes up once credentials work
        state.attempt = 0
        state.retry_at = now + self.timing.auth_retry
        state.stamp_check_at = now + self.timing.auth_poll
        # Only credentials that change after the failed sync started are worth an early retry (state.stamp).
        if state.paused:
            logger.info("%s: credentials still refused", name)
            return None
        state.paused = True
        # CredentialsError messages already say how to log in; a 401 from the service does not.
        hint = RESUME_HINT if "fgsync login" in error.message else LOGIN_HINT
        return error_event(
            name, error.code, f"{error.message} — {hint}", retry_in_ms=round(self.timing.auth_retry * 1000)
        )

    def next_wakeup(self, now: float) -> Optional[float]:
        """The earliest future time at which :meth:`due` may start something without a new change."""
        times = []
        for state in self._states.values():
            if state.running or not state.dirty:
                continue
            times.append(state.retry_at)
            if state.paused:
                times.append(state.stamp_check_at)
            if state.locked:
                times.append(state.lock_check_at)
        future = [t for t in times if t > now]
        return min(future) if future else None


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
        credential_stamp: Callable[[], str] = _no_stamp,
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
