"""The watch loop: batches of changes -> syncs, one in flight per function, with retries and pauses.

:class:`fgsync.watch.scheduler.Scheduler` is the policy alone (which function syncs when). :class:`Daemon` drives
it with one watcher thread (:func:`fgsync.watch.changes.watch_changes`), a pool of sync threads and a main loop
that sleeps on an event, uvicorn style, so a stop is seen at once. The rules (follow-ups, git locks, build
output, backoff, pauses on 401, reloads of fgsync.toml, signals) and the guarantees are in docs/watch.md.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from fgsync.errors import FgsyncError
from fgsync.events import WAIT_IN_FLIGHT, Emit, Event, change_event, error_event
from fgsync.watch.changes import ROOT_CHECK_SECONDS, watch_changes
from fgsync.watch.filter import Change, WatchTarget
from fgsync.watch.gitlock import git_lock_held
from fgsync.watch.reload import ConfigFileWatch, WatchSettings, changed_functions, describe_reload
from fgsync.watch.scheduler import Scheduler, Timing, no_stamp
from fgsync.watch.source import DEFAULT_POLL_INTERVAL, FileEventSource, watch_roots
from fgsync.watch.verify import Verifier

if TYPE_CHECKING:
    from fgsync.config import FunctionConfig

logger = logging.getLogger(__name__)

#: One sync of one function, given the emit to report through (built by the cli around sync_function).
SyncStep = Callable[["FunctionConfig", Emit], object]

#: Longest sleep of the main loop between two looks at ``stop_event``.
_STEP_SECONDS = 0.1

_PHASE_WORDS = {"build": "the build", "package": "the packaging", "upload": "the upload"}


@dataclass(frozen=True)
class _Done:
    name: str
    error: Optional[BaseException]
    #: The sync was dropped: the inputs were what the function's last build left.
    unchanged: bool = False


@dataclass(frozen=True)
class _Fatal:
    error: BaseException


@dataclass(frozen=True)
class _SyncAll:
    """Sync every function now (the Enter key)."""


@dataclass(frozen=True)
class _Missed:
    """What the verifying walk found changed that no event reported, for the changes seen up to ``seen``."""

    name: str
    paths: tuple[str, ...]
    seen: int


_Item = Union[frozenset[Change], _Done, _Fatal, _SyncAll, _Missed]

#: The verifying walk runs this long after a sync at least, and the quiet time plus half a second in any case.
_VERIFY_DELAY_S = 1.0


@dataclass
class _Watcher:
    """One watcher thread over one event source (replaced as a whole when fgsync.toml changes)."""

    source: FileEventSource
    thread: threading.Thread
    stop: threading.Event

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.source.close()


@dataclass
class _Phase:
    name: str  # "build", "package" or "upload"
    since: float
    notice_at: float


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
        timing: delays (backoff, auth polling, git-lock polling, notices).
        max_workers: parallel syncs; default 4.
        poll_interval: seconds between scans with ``poll``.
        lock_held: the git lock holding a source folder, if any (default :func:`git_lock_held`).
        rand: [0, 1) for the backoff jitter.
        inputs_changed: for functions with a ``build``: whether their inputs differ from what their last build
            left (:class:`fgsync.package.fingerprint.InputFingerprints`). Changes that may be a build's own
            output are checked with it before a sync is spent on them; without it, every change syncs.
        config_file: fgsync.toml, looked at for edits (with ``reload``).
        reload: reads the configuration again (raises ConfigError); the daemon applies what it returns.
        on_reload: called with the new settings once they are in force.
        on_change: told, on the loop's thread, of every function a burst touched and its paths ("" for the whole
            tree: a re-armed watch, lost events, Enter, a reload) — what the packager may rely on to package
            only what changed, and once for functions that share their inputs.
        missed: after a sync that packaged from reported paths only, the paths a walk of the whole tree finds
            changed unreported (run on a low-priority thread, a moment after the sync); they are then a change
            like any other (:mod:`fgsync.watch.verify`).
        aliases: the names a path the function's rules ignore has in its package through the symlinks its last
            build followed (function name, relative path; called by the watcher thread for each such event):
            an edit there is a change of those names.
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
        lock_held: Callable[[Path], object] = git_lock_held,
        rand: Callable[[], float] = random.random,
        inputs_changed: Optional[Callable[[FunctionConfig], bool]] = None,
        config_file: Optional[Path] = None,
        reload: Optional[Callable[[], WatchSettings]] = None,
        on_reload: Optional[Callable[[WatchSettings], None]] = None,
        on_change: Optional[Callable[[str, Sequence[str]], None]] = None,
        missed: Optional[Callable[[FunctionConfig], Sequence[str]]] = None,
        aliases: Optional[Callable[[str, str], Sequence[str]]] = None,
    ) -> None:
        if not functions:
            raise ValueError("no functions to watch")
        self.settings = WatchSettings(tuple(functions), debounce_ms, max_wait_ms, poll)
        self.functions = {fn.name: fn for fn in functions}
        self._sync = sync
        self._emit_to = emit
        self._stop = stop_event
        self.poll_interval = poll_interval
        self._clock = clock
        self.timing = timing
        # Threads start only as work needs them: the bound is the parallelism, for the functions of any reload.
        self._max_workers = max_workers or 4
        self.scheduler = Scheduler(
            list(self.functions),
            timing=timing,
            credential_stamp=credential_stamp,
            lock_held=lambda name: lock_held(self.functions[name].source) if name in self.functions else None,
            rand=rand,
        )
        self._inputs_changed = inputs_changed
        self._config_file = config_file if reload is not None else None
        self._reload = reload
        self._on_reload = on_reload
        self._on_change = on_change or (lambda _name, _paths: None)
        self._missed = missed
        self._aliases = aliases
        self._verifier: Optional[Verifier] = None
        # Per function, a count of the changes told to the packager, and when the watcher last saw one (still
        # settling, maybe): a verifying walk's finding is not trusted when either moved since its sync began.
        self._seen: dict[str, int] = {}
        self._last_seen: dict[str, float] = {}
        self._sync_began: dict[str, float] = {}
        self._emit_lock = threading.Lock()
        self._inbox: queue.Queue[_Item] = queue.Queue()
        self._wake = threading.Event()
        # Paths of changes that may be a build's output, per function, reported once the inputs are checked.
        self._held_paths: dict[str, list[str]] = {}
        self._phases: dict[str, _Phase] = {}
        self._phases_lock = threading.Lock()
        self._stopped = False
        # Per function whose source is reached through a symlink, the folder it led to when the watch began, and
        # the functions whose link now leads elsewhere than the watch.
        self._resolved: dict[str, str] = {}
        self._relinked: set[str] = set()

    @property
    def debounce_ms(self) -> int:
        return self.settings.debounce_ms

    @property
    def max_wait_ms(self) -> int:
        return self.settings.max_wait_ms

    @property
    def poll(self) -> bool:
        return self.settings.poll

    def emit(self, event: Event) -> None:
        """Report an event (thread-safe); ``packaged`` moves its function's sync into its upload phase."""
        if event.event == "packaged" and event.function is not None:
            self._enter_phase(event.function, "upload")
        with self._emit_lock:
            if self._stopped and event.event != "stopped":
                return
            self._emit_to(event)

    def run(self) -> None:
        """Watch and sync until ``stop_event`` is set; then let running syncs finish and emit ``stopped``.

        Raises:
            FgsyncError: the folders cannot be watched, or an ignore file is invalid at start.
        """
        watcher = self._start_watcher(self.settings)  # before the initial sync, so a save during it is seen
        config_watch = ConfigFileWatch(self._config_file, now=self._clock()) if self._config_file else None
        executor = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="fgsync-sync")
        if self._missed is not None:
            self._verifier = Verifier(
                self._missed,
                self._report_missed,
                delay=max(_VERIFY_DELAY_S, self.settings.debounce_ms / 1000 + 0.5),
                clock=self._clock,
            )
        try:
            self.emit(self._watching_event())
            links_at = self._clock() + ROOT_CHECK_SECONDS
            while not self._stop.is_set():
                if config_watch is not None and config_watch.edited(self._clock()):
                    watcher = self._apply_reload(watcher, executor)
                if self._resolved and self._clock() >= links_at:
                    links_at = self._clock() + ROOT_CHECK_SECONDS
                    watcher = self._follow_links(watcher)
                self._step(executor)
            self._drain()
            self._say_in_flight()
        finally:
            watcher.close()  # hands over what it saw but had not settled
            executor.shutdown(wait=True, cancel_futures=True)
            if self._verifier is not None:
                self._verifier.close()
            self._drain(final=True)
            self.emit_stopped()

    def request_sync(self) -> None:
        """Sync every function now, as if each had changed (thread-safe; a normal sync: skips still skip)."""
        self._inbox.put(_SyncAll())
        self._wake.set()

    def emit_stopped(self) -> None:
        """Emit ``stopped`` (once) with the functions whose changes may not be pushed.

        Safe from a signal handler: it waits at most a second for a writer that holds the output.
        """
        if not self._emit_lock.acquire(timeout=1.0):
            return
        try:
            if self._stopped:
                return
            self._stopped = True
            self._emit_to(Event("stopped", None, {"pending": self.scheduler.pending()}))
        finally:
            self._emit_lock.release()

    # ----------------------------------------------------------------- the watcher

    def _start_watcher(self, settings: WatchSettings) -> _Watcher:
        targets = [WatchTarget.for_function(fn, aliases=self._aliases_of(fn.name)) for fn in settings.functions]
        source = FileEventSource(
            watch_roots(t.source for t in targets), poll=settings.poll, poll_interval=self.poll_interval
        )
        source.start()
        stop = threading.Event()
        thread = threading.Thread(
            target=self._watch, args=(targets, settings, source, stop), name="fgsync-watch", daemon=True
        )
        thread.start()
        for fn in settings.functions:
            self._note_source(fn)
        return _Watcher(source, thread, stop)

    def _note_source(self, fn: FunctionConfig) -> None:
        """Remember where a source reached through a symlink leads now (its watch is on that folder)."""
        real = os.path.realpath(fn.source)
        if real != os.path.abspath(fn.source):
            self._resolved[fn.name] = real
        else:
            self._resolved.pop(fn.name, None)

    def _follow_links(self, watcher: _Watcher) -> _Watcher:
        """A source that is a symlink (``current -> releases/v1``) is watched at the folder it leads to; when the
        link is pointed elsewhere (a deploy's ``ln -sfn releases/v2 current``), watch the new folder instead, and
        sync the function as if its whole tree had changed. A link that leads nowhere is synced (the sync says
        the source is missing) and watched again once its folder is there."""
        for name, was in list(self._resolved.items()):
            fn = self.functions.get(name)
            if fn is None:
                del self._resolved[name]
                continue
            now = os.path.realpath(fn.source)
            if now != was:
                self._resolved[name] = now
                self._relinked.add(name)
                if not os.path.isdir(now):
                    self._tell_change(name, [""])
                    self.scheduler.changed(name)
        waiting = {name: self._resolved[name] for name in self._relinked if name in self._resolved}
        if not waiting or not all(os.path.isdir(target) for target in waiting.values()):
            return watcher
        try:
            new_watcher = self._start_watcher(self.settings)
        except FgsyncError as error:
            self.emit(error_event(None, "source", error.message))
            self._relinked.clear()
            return watcher
        watcher.close()  # its last unsettled changes still arrive, through the inbox
        for name, target in waiting.items():
            logger.info("%s: its source now leads to %s: watching it there", name, target)
            self._tell_change(name, [""])  # files written before the new watch was up have no events
            self.scheduler.changed(name)
        self._relinked.clear()
        return new_watcher

    def _aliases_of(self, name: str) -> Optional[Callable[[str], Sequence[str]]]:
        aliases = self._aliases
        return None if aliases is None else lambda rel: aliases(name, rel)

    def _watch(
        self, targets: list[WatchTarget], settings: WatchSettings, source: FileEventSource, stop: threading.Event
    ) -> None:
        try:
            for batch in watch_changes(
                targets,
                stop_event=stop,
                debounce_ms=settings.debounce_ms,
                max_wait_ms=settings.max_wait_ms,
                source=source,
                suppress=self._saw,
                clock=self._clock,
            ):
                self._inbox.put(frozenset(batch))
                self._wake.set()
        except BaseException as error:  # handed to the main loop, which re-raises it
            self._inbox.put(_Fatal(error))
            self._wake.set()

    def _saw(self, change: Change) -> bool:
        """Note when the watcher last saw each function change, before the burst settles (drops nothing)."""
        self._last_seen[change.function] = self._clock()
        return False

    def _watching_event(self, reloaded: Optional[dict[str, object]] = None) -> Event:
        fields: dict[str, object] = {
            "functions": list(self.functions),
            "paths": list(dict.fromkeys(str(fn.source) for fn in self.functions.values())),
        }
        if reloaded is not None:
            fields["reloaded"] = reloaded
        return Event("watching", None, fields)

    # ----------------------------------------------------------------- fgsync.toml

    def _apply_reload(self, watcher: _Watcher, executor: ThreadPoolExecutor) -> _Watcher:
        """Read fgsync.toml again and put it in force; a bad one is reported and the last good one stays."""
        assert self._reload is not None
        try:
            settings = self._reload()
            if not settings.functions:
                raise FgsyncError("no function left to watch: keeping the previous configuration")
            new_watcher = self._start_watcher(settings)  # the new watch is up before the old one goes
        except FgsyncError as error:
            self.emit(error_event(None, "config", f"{error.message} — the previous configuration stays in force"))
            return watcher
        old = self.settings
        watcher.close()  # its last unsettled changes still arrive, through the inbox
        self.settings = settings
        self.functions = {fn.name: fn for fn in settings.functions}
        for fn in old.functions:
            if fn.name not in self.functions:
                self.scheduler.remove(fn.name)  # a sync running for it finishes; nothing more starts
                self._held_paths.pop(fn.name, None)
        for fn in settings.functions:
            self.scheduler.add(fn.name)  # a new one owes its initial sync
        for name in changed_functions(old.functions, settings.functions):
            self._tell_change(name, [""])
            self.scheduler.changed(name)  # new rules, build or target: package again
        if self._on_reload is not None:
            self._on_reload(settings)
        self.emit(self._watching_event(describe_reload(old, settings)))
        return new_watcher

    # ----------------------------------------------------------------- the loop

    def _step(self, executor: ThreadPoolExecutor) -> None:
        self._wake.clear()
        self._drain()
        now = self._clock()
        for name in self.scheduler.due(now):
            fn = self.functions[name]
            verify = self.scheduler.verify_only(name)
            self._enter_phase(name, "build" if fn.build else "package")
            self._sync_began[name] = now
            executor.submit(self._run_one, fn, verify, self._held_paths.pop(name, []))
        for event in self.scheduler.notices(now):
            self.emit(event)
        self._notice_uploads(now)
        wake_at = self.scheduler.next_wakeup(now)
        wait = _STEP_SECONDS if wake_at is None else min(max(0.0, wake_at - now), _STEP_SECONDS)
        self._wake.wait(wait)

    def _run_one(self, fn: FunctionConfig, verify: bool, paths: list[str]) -> None:
        error: Optional[BaseException] = None
        try:
            if verify and not self._inputs_differ(fn):
                logger.debug("%s: only its build's own output changed; nothing to sync", fn.name)
                self._inbox.put(_Done(fn.name, None, unchanged=True))
                return
            if paths:
                self.emit(change_event(fn.name, paths))
            self._sync(fn, self.emit)
        except Exception as exc:  # every failure is the scheduler's to judge; the loop never dies of one
            error = exc
        self._inbox.put(_Done(fn.name, error))

    def _inputs_differ(self, fn: FunctionConfig) -> bool:
        assert self._inputs_changed is not None
        try:
            return self._inputs_changed(fn)
        except Exception:  # unknown: let the sync run (and report whatever is wrong)
            logger.debug("%s: input check failed", fn.name, exc_info=True)
            return True

    def _drain(self, *, final: bool = False) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Fatal):
                if not final:
                    raise item.error
            elif isinstance(item, _SyncAll):
                for name in self.functions:
                    self._tell_change(name, [""])
                    self.scheduler.changed(name)
            elif isinstance(item, _Missed):
                self._found_missed(item)
            elif isinstance(item, _Done):
                self._leave_phase(item.name)
                if item.unchanged:
                    self.scheduler.unchanged(item.name)
                    continue
                event = self.scheduler.finished(item.name, item.error, self._clock())
                if event is not None:
                    self.emit(event)
                self._verify_later(item.name, item.error)
            else:
                self._changed(item)

    def _changed(self, batch: frozenset[Change]) -> None:
        by_function: dict[str, list[str]] = {}
        touched: dict[str, list[str]] = {}
        for change in batch:
            touched.setdefault(change.function, []).append(change.path)
            paths = by_function.setdefault(change.function, [])
            # A temp file created and renamed away (sed -i, atomic saves) names nothing the user has; its
            # rename target has its own event. It still owes a sync: it may have replaced a real file. A
            # change of the whole tree ("": a re-armed watch, lost events) names nothing either.
            if not change.transient and change.path:
                paths.append(change.path)
        for name, fn in self.functions.items():
            if name not in by_function:
                continue
            if "" in touched[name]:
                self._note_source(fn)  # its folder was replaced: by a symlink, maybe, which may then be moved
            self._tell_change(name, touched[name])
            if fn.build and self._inputs_changed is not None:
                # Possibly the build's own output: reported (and synced) only if the inputs really changed.
                self._held_paths.setdefault(name, []).extend(by_function[name])
                self.scheduler.changed(name, verify=True)
                continue
            if by_function[name]:
                self.emit(change_event(name, by_function[name]))
            self.scheduler.changed(name)

    def _tell_change(self, name: str, paths: Sequence[str]) -> None:
        self._seen[name] = self._seen.get(name, 0) + 1
        if self._verifier is not None:
            self._verifier.cancel(name)  # the sync this change brings is verified instead
        self._on_change(name, paths)

    # ----------------------------------------------------------------- the verifying walk

    def _verify_later(self, name: str, error: Optional[BaseException]) -> None:
        """After a sync that went through, unless another is owed: look for changes no event reported."""
        fn = self.functions.get(name)
        if self._verifier is None or fn is None or error is not None or name in self.scheduler.pending():
            return
        self._verifier.after_sync(fn, self._seen.get(name, 0))

    def _report_missed(self, name: str, paths: Sequence[str], seen: int) -> None:
        self._inbox.put(_Missed(name, tuple(paths), seen))
        self._wake.set()

    def _found_missed(self, item: _Missed) -> None:
        name = item.name
        if name not in self.functions or self._seen.get(name, 0) != item.seen or name in self.scheduler.pending():
            return  # a change came since: its own sync is verified in turn
        if self._last_seen.get(name, float("-inf")) >= self._sync_began.get(name, float("inf")):
            # The watcher saw this function change after the sync began, and that burst may not have settled
            # yet (an `npm install` between two pauses): its own sync comes, and is verified in turn.
            return
        logger.debug("%s: changed without an event: %s", item.name, ", ".join(item.paths))
        self._changed(frozenset(Change(item.name, path) for path in item.paths))

    # ----------------------------------------------------------------- what is in flight

    def _enter_phase(self, name: str, phase: str) -> None:
        now = self._clock()
        with self._phases_lock:
            self._phases[name] = _Phase(phase, now, now + self.timing.inflight_notice_after)

    def _leave_phase(self, name: str) -> None:
        with self._phases_lock:
            self._phases.pop(name, None)

    def _notice_uploads(self, now: float) -> None:
        """A sign of life while the service holds an upload: a `waiting` event after a while, then now and then."""
        with self._phases_lock:
            due = [(name, p) for name, p in self._phases.items() if p.name == "upload" and now >= p.notice_at]
            for _, phase in due:
                phase.notice_at = now + self.timing.inflight_notice_every
        for name, phase in due:
            waited = now - phase.since
            message = f"the upload of {name} is still in flight after {waited:.0f} s (waiting for the service)"
            self.emit(Event("waiting", name, {"reason": WAIT_IN_FLIGHT, "message": message}))

    def in_flight(self) -> list[tuple[str, str]]:
        """``(function, phase)`` for every sync running now; phase is ``build``, ``package`` or ``upload``."""
        with self._phases_lock:
            return [(name, phase.name) for name, phase in self._phases.items()]

    def _say_in_flight(self) -> None:
        """Right after a stop: what is still running, and how to abort it."""
        for name, phase in self.in_flight():
            message = f"waiting for {_PHASE_WORDS.get(phase, 'the sync')} of {name}; Ctrl+C again to abort"
            self.emit(Event("waiting", name, {"reason": WAIT_IN_FLIGHT, "message": message}))
