"""File events -> filter -> debounce -> batches: what `fgsync watch` reacts to.

Shaped after watchfiles: :func:`watch_changes` is a generator of *sets* of changes, woken by a ``stop_event``
so shutdown and tests never hang. The pieces are separate so each can be tested alone:

- :class:`FileEventSource` runs ONE watchdog observer (native, or polling with ``poll=True``) over the
  top-most source folders and queues raw ``(path, is_dir)`` events;
- :class:`ChangeFilter` maps a raw path to the functions it belongs to, dropping paths the packaging ignore
  rules drop (a path under a folder shared by two functions belongs to both);
- :class:`Debouncer` is a pure trailing debounce with a max-wait, driven by an injectable clock.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Generic, NamedTuple, Optional, TypeVar

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from fgsync.errors import FgsyncError

if TYPE_CHECKING:
    from typing import Protocol

    from fgsync.config import FunctionConfig

    class IgnoreMatcher(Protocol):
        """What the watcher needs from :class:`fgsync.ignore.IgnoreRules`."""

        def is_ignored(self, relpath: str, *, is_dir: bool = False) -> bool: ...

        def is_rule_file(self, relpath: str) -> bool: ...

        def reload(self) -> IgnoreMatcher: ...


logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest single wait, so a set ``stop_event`` is noticed quickly (watchfiles' "step").
STEP_SECONDS = 0.05

#: Seconds between two scans of the tree with ``poll=True``.
DEFAULT_POLL_INTERVAL = 0.5

#: With polling, the quiet time is at least the scan interval plus this.
POLL_DEBOUNCE_MARGIN_MS = 100

# Reads (opened, closed_no_write) and a folder's own "modified" (a child was added or removed, which has its
# own event) say nothing about the content; everything else can change the package, attrib included
# (chmod +x flips the zip entry's mode to 0755).
_FILE_EVENT_TYPES = frozenset({"created", "modified", "deleted", "moved", "closed", "attrib"})
_DIR_EVENT_TYPES = frozenset({"created", "deleted", "moved"})


class RawEvent(NamedTuple):
    """One file-system event as the observer reports it."""

    path: str
    is_dir: bool
    #: The event says the path came into being ("created"; not a move's destination, which may replace a file).
    created: bool = False


class Change(NamedTuple):
    """One changed path of one function: ``path`` is POSIX, relative to the function's source.

    ``transient`` marks a path that came into being and was gone again within one burst (an editor's temp
    file renamed onto the real one, say): the burst still counts, but the path names nothing to report.
    """

    function: str
    path: str
    transient: bool = False


@dataclass(frozen=True)
class WatchTarget:
    """A function as the watcher sees it: a name, a source folder and the rules that drop paths."""

    name: str
    source: Path
    rules: IgnoreMatcher
    #: Relative paths that never trigger, whatever the rules say (a jar function's artifact, for one).
    ignored_paths: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def for_function(cls, fn: FunctionConfig) -> WatchTarget:
        """The target of a configured function, with the same ignore rules as its packaging.

        Raises:
            FgsyncError: the function's ignore files cannot be read (from :mod:`fgsync.ignore`).
        """
        from fgsync.ignore import IgnoreRules

        rules = IgnoreRules.for_function(fn.source, exclude=fn.exclude, use_gitignore=fn.use_gitignore)
        ignored: set[str] = set()
        if fn.artifact is not None:
            # The jar a build writes is what gets uploaded; it changing must not start another build.
            rel = _relative(os.path.abspath(fn.artifact), os.path.abspath(fn.source))
            if rel:
                ignored.add(rel)
        return cls(fn.name, fn.source, rules, frozenset(ignored))


def _relative(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` as POSIX, "" for the root itself, None when outside it."""
    if path == root:
        return ""
    prefix = root if root.endswith(os.sep) else root + os.sep
    if not path.startswith(prefix):
        return None
    return PurePosixPath(*Path(path[len(prefix) :]).parts).as_posix()


class ChangeFilter:
    """Maps a raw file-system path to the :class:`Change` records it means, after the ignore rules."""

    def __init__(self, targets: Sequence[WatchTarget]) -> None:
        self._roots: list[tuple[WatchTarget, tuple[str, ...]]] = []
        # Current rules per function: an edit to an ignore file swaps them (WatchTarget is frozen).
        self._rules: dict[str, IgnoreMatcher] = {}
        for target in targets:
            plain = os.path.abspath(target.source)
            real = os.path.realpath(target.source)
            # Some backends (FSEvents) report resolved paths; accept both spellings of the root.
            self._roots.append((target, (plain,) if plain == real else (plain, real)))
            self._rules[target.name] = target.rules

    def match(self, path: str, *, is_dir: bool = False) -> list[Change]:
        """The changes ``path`` means: one per function whose source holds it and does not ignore it.

        An edit to an ignore file (``.fgsyncignore``, or a ``.gitignore`` in use) reloads that function's
        rules and counts as a change: it changes what gets packaged.
        """
        changes = []
        for target, roots in self._roots:
            for root in roots:
                rel = _relative(path, root)
                if rel is None:
                    continue
                if rel and (self._reloaded(target, rel) or not self._ignored(target, rel, is_dir)):
                    changes.append(Change(target.name, rel))
                break
        return changes

    def _reloaded(self, target: WatchTarget, rel: str) -> bool:
        rules = self._rules[target.name]
        if not rules.is_rule_file(rel):
            return False
        try:
            self._rules[target.name] = rules.reload()
        except FgsyncError as error:
            # Packaging reports the bad pattern when the sync runs; the watch keeps the last good rules.
            logger.warning("%s: keeping the previous ignore rules: %s", target.name, error)
        return True

    def _ignored(self, target: WatchTarget, rel: str, is_dir: bool) -> bool:
        if rel in target.ignored_paths:
            return True
        # IgnoreRules.is_ignored also ignores a path inside an ignored folder, as the packaging walk prunes it.
        return self._rules[target.name].is_ignored(rel, is_dir=is_dir)


class Debouncer(Generic[T]):
    """A trailing debounce with a max-wait: a burst ends ``debounce_ms`` after its last item, or
    ``max_wait_ms`` after its first, whichever comes first.

    Pure: it never sleeps or starts threads; time comes from ``clock``.
    """

    def __init__(self, debounce_ms: int, max_wait_ms: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if debounce_ms < 0 or max_wait_ms < 0:
            raise ValueError("debounce_ms and max_wait_ms must not be negative")
        self.debounce = debounce_ms / 1000.0
        # A max-wait shorter than the debounce would make the debounce meaningless; the larger one wins.
        self.max_wait = max(max_wait_ms, debounce_ms) / 1000.0
        self._clock = clock
        self._items: set[T] = set()
        self._first = 0.0
        self._last = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[T]) -> None:
        """Record items seen now; an empty iterable changes nothing."""
        new = set(items)
        if not new:
            return
        now = self._clock()
        if not self._items:
            self._first = now
        self._last = now
        self._items |= new

    def timeout(self) -> Optional[float]:
        """Seconds until the burst is due (0 when due now), or None when nothing is pending."""
        if not self._items:
            return None
        due = min(self._last + self.debounce, self._first + self.max_wait)
        return max(0.0, due - self._clock())

    def ready(self) -> bool:
        """True when a burst is pending and has settled (or waited ``max_wait``)."""
        return self.timeout() == 0.0

    def take(self) -> set[T]:
        """Return the pending items and start afresh."""
        items, self._items = self._items, set()
        return items


def watch_roots(sources: Iterable[Path]) -> list[Path]:
    """The distinct top-most folders among ``sources``: one recursive watch each, none nested in another.

    Paths are resolved: a source that is a symlink is watched at its target (the filter accepts both names).
    """
    roots: list[Path] = []
    for source in sorted({Path(os.path.realpath(s)) for s in sources}, key=lambda p: len(p.parts)):
        if not any(root == source or root in source.parents for root in roots):
            roots.append(source)
    return sorted(roots)


class _QueueHandler(FileSystemEventHandler):
    def __init__(self, sink: queue.Queue[RawEvent]) -> None:
        super().__init__()
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        wanted = _DIR_EVENT_TYPES if event.is_directory else _FILE_EVENT_TYPES
        if event.event_type not in wanted:
            return
        is_dir = bool(event.is_directory)
        self._sink.put(RawEvent(os.fsdecode(event.src_path), is_dir, event.event_type == "created"))
        if event.dest_path:
            self._sink.put(RawEvent(os.fsdecode(event.dest_path), is_dir))


class FileEventSource:
    """One watchdog observer over the given folders, queueing raw ``(path, is_dir)`` events.

    Use as a context manager (or ``start()``/``close()``); ``close()`` stops and joins the observer thread.
    """

    def __init__(
        self, roots: Sequence[Path], *, poll: bool = False, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        self.roots = list(roots)
        self.poll = poll
        self.poll_interval = poll_interval
        self._queue: queue.Queue[RawEvent] = queue.Queue()
        self._observer: Any = PollingObserver(timeout=poll_interval) if poll else Observer()
        self._started = False
        self._closed = False

    def start(self) -> None:
        """Schedule every root and start the observer thread (idempotent).

        Raises:
            FgsyncError: a root is missing, or the OS watch limit is reached (with the --poll hint).
        """
        if self._started:
            return
        handler = _QueueHandler(self._queue)
        try:
            for root in self.roots:
                if not root.is_dir():
                    raise FgsyncError(f"cannot watch {root}: not a folder")
                self._observer.schedule(handler, str(root), recursive=True)
            self._observer.start()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EMFILE):
                raise FgsyncError(
                    f"cannot watch {len(self.roots)} folder(s): the system's file-watch limit is reached "
                    "(raise fs.inotify.max_user_watches, or run with --poll)"
                ) from None
            raise FgsyncError(f"cannot watch files: {exc}") from None
        self._started = True
        logger.debug("watching %s (%s)", ", ".join(map(str, self.roots)), "polling" if self.poll else "native")

    def get(self, timeout: float) -> Optional[RawEvent]:
        """The next raw event, waiting at most ``timeout`` seconds (0: do not wait); None when none came."""
        try:
            if timeout <= 0:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop the observer and join its thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._observer.stop()
            self._observer.join()

    def __enter__(self) -> FileEventSource:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def watch_changes(
    targets: Sequence[WatchTarget],
    *,
    stop_event: threading.Event,
    debounce_ms: int = 300,
    max_wait_ms: int = 3000,
    poll: bool = False,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    suppress: Optional[Callable[[Change], bool]] = None,
    source: Optional[FileEventSource] = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[set[Change]]:
    """Yield a set of :class:`Change` for every settled burst of file events, until ``stop_event`` is set.

    Args:
        targets: the functions to watch.
        stop_event: set it to end the generator within ~50 ms (the observer is stopped and joined).
        debounce_ms: quiet time that ends a burst.
        max_wait_ms: a burst that never goes quiet still ends this long after its first event.
        poll: scan the file system instead of native events.
        poll_interval: seconds between scans with ``poll``.
        suppress: called for each change as it is seen; True drops it (the daemon drops a function's own
            build output this way).
        source: an event source to read instead of a new one over the targets' folders (it is closed at
            the end either way).
        clock: monotonic seconds, for the debounce.

    Raises:
        FgsyncError: the folders cannot be watched.
    """
    changes_filter = ChangeFilter(targets)
    if source is None:
        source = FileEventSource(watch_roots(t.source for t in targets), poll=poll, poll_interval=poll_interval)
    if source.poll:
        # A scan sees a burst in slices one interval apart; a shorter quiet time would split it.
        debounce_ms = max(debounce_ms, round(source.poll_interval * 1000) + POLL_DEBOUNCE_MARGIN_MS)
    debouncer: Debouncer[Change] = Debouncer(debounce_ms, max_wait_ms, clock=clock)
    roots = {str(root) for root in source.roots}
    # Per burst: whether each path's first event was "created", and the raw path behind each change.
    born: dict[str, bool] = {}
    raw_paths: dict[Change, str] = {}
    with source:
        while not stop_event.is_set():
            due = debouncer.timeout()
            raw = source.get(STEP_SECONDS if due is None else min(due, STEP_SECONDS))
            while raw is not None:
                path = raw[0]
                if path in roots and not os.path.isdir(path):
                    # The OS drops the watch with the folder; say so rather than go quiet.
                    logger.warning("%s was removed: changes under it are no longer seen; restart fgsync watch", path)
                seen = [c for c in changes_filter.match(path, is_dir=raw[1]) if suppress is None or not suppress(c)]
                if seen:
                    # Event sources other than the observer (test scripts) may queue plain (path, is_dir) pairs.
                    born.setdefault(path, bool(getattr(raw, "created", False)))
                    for change in seen:
                        raw_paths.setdefault(change, path)
                    debouncer.add(seen)
                # A writer faster than this loop must not hold the burst past its max-wait.
                raw = None if debouncer.ready() else source.get(0)
            if debouncer.ready():
                batch = _mark_transient(debouncer.take(), raw_paths, born)
                born, raw_paths = {}, {}
                yield batch


def _mark_transient(batch: set[Change], raw_paths: dict[Change, str], born: dict[str, bool]) -> set[Change]:
    """``batch`` with the changes whose path was created in the burst and is gone at its end marked transient.

    A path counts as created when its own first event was "created", or a folder above it was created in the
    burst (the file's own creation may come before the watch on the new folder is up). A deleted path that was
    not created in the burst existed before it: its deletion is real.
    """
    marked = set()
    for change in batch:
        path = raw_paths.get(change)
        if path is not None and _born_in_burst(path, born) and not os.path.lexists(path):
            change = change._replace(transient=True)
        marked.add(change)
    return marked


def _born_in_burst(path: str, born: dict[str, bool]) -> bool:
    while True:
        if born.get(path):
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


def git_lock_held(source: Path) -> bool:
    """Whether ``index.lock`` exists in the git folder of ``source`` or of any repository above it.

    A ``.git`` file (worktrees, submodules) is followed to the folder its ``gitdir:`` line names.
    """
    for folder in (source, *source.parents):
        dotgit = folder / ".git"
        try:
            if dotgit.is_dir():
                if (dotgit / "index.lock").exists():
                    return True
            elif dotgit.is_file():
                line = dotgit.read_text(encoding="utf-8", errors="replace").strip()
                if line.startswith("gitdir:") and (folder / line[7:].strip() / "index.lock").exists():
                    return True
        except OSError:
            continue
    return False
