"""The event source: ONE watchdog observer (native, or polling) over the top-most source folders, queueing raw
``(path, is_dir, created)`` events for :func:`fgsync.watch.changes.watch_changes`."""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import watchdog.events
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserverVFS

from fgsync.errors import FgsyncError

logger = logging.getLogger(__name__)

#: Seconds between two scans of the tree with ``poll=True``.
DEFAULT_POLL_INTERVAL = 0.5

# Reads (opened, closed_no_write) and a folder's own "modified" (a child was added or removed, which has its
# own event) say nothing about the content; everything else can change the package, attrib included
# (chmod +x flips the zip entry's mode to 0755).
_FILE_EVENT_TYPES = frozenset({"created", "modified", "deleted", "moved", "closed", "attrib"})
_DIR_EVENT_TYPES = frozenset({"created", "deleted", "moved"})

#: The event classes the observer is asked for at all (watchdog >= 4 passes them to inotify as its mask): with
#: no filter, inotify also reports every open and read-only close under a source, so the packager's own walk,
#: `grep -r` or an IDE's indexer would wake the daemon thousands of times. Attribute changes must stay (a
#: `touch`, `chmod +x`): watchdog >= 7 reports them as FileAttribEvent, older ones as FileModifiedEvent.
CONTENT_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileClosedEvent,
    *[cls for cls in (getattr(watchdog.events, "FileAttribEvent", None),) if cls is not None],
]


class RawEvent(NamedTuple):
    """One file-system event as the observer reports it."""

    path: str
    is_dir: bool
    #: The event says the path came into being ("created"; not a move's destination, which may replace a file).
    created: bool = False
    #: Not one path but everything under ``path``: its watch was (re-)armed, or the OS lost events.
    rescan: bool = False


#: The loggers through which watchdog reports an inotify queue overflow (the only sign it gives of lost events).
_OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")
_OVERFLOW_MESSAGE = "Inotify queue overflowed"


class _OverflowFilter(logging.Filter):
    """Turns watchdog's "Inotify queue overflowed" warnings into a rescan of every root, and keeps them off stderr."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__()
        self._on_overflow = on_overflow

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if not message.startswith(_OVERFLOW_MESSAGE):
            return True
        # watchdog says it twice (lost events; reconciling the recursive watches): one rescan is enough.
        if "reconciling" not in message:
            self._on_overflow()
        return False


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
    """One watchdog observer over the given folders, queueing :class:`RawEvent` records.

    The OS drops a folder's watch with the folder: a root that is deleted and re-created (``rm -rf dist && tsc``,
    a branch switch), or replaced by a rename, would go deaf for good. :meth:`check_roots` looks at each root's
    identity (device, inode) and re-arms a watch whose folder is new, queueing a ``rescan`` for it (files
    written before the new watch was up have no events of their own); a root that goes missing gets a
    ``rescan`` too, so its functions are looked at and report the missing folder. An inotify queue overflow
    (events lost) queues a ``rescan`` of every root.

    Use as a context manager (or ``start()``/``close()``); ``close()`` stops and joins the observer thread.
    """

    def __init__(
        self, roots: Sequence[Path], *, poll: bool = False, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        self.roots = list(roots)
        self.poll = poll
        self.poll_interval = poll_interval
        self._queue: queue.Queue[RawEvent] = queue.Queue()
        self._observer: Any = (
            PollingObserverVFS(_poll_stat, os.scandir, polling_interval=poll_interval) if poll else Observer()
        )
        self._handler = _QueueHandler(self._queue)
        # root -> (its watch or None while missing, its (st_dev, st_ino) or None while missing)
        self._watches: dict[Path, tuple[Any, Optional[tuple[int, int]]]] = {}
        self._overflow = _OverflowFilter(self._overflowed)
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    def start(self) -> None:
        """Schedule every root and start the observer thread (idempotent).

        Raises:
            FgsyncError: a root is missing, or the OS watch limit is reached (with the --poll hint).
        """
        if self._started:
            return
        try:
            for root in self.roots:
                if not root.is_dir():
                    raise FgsyncError(f"cannot watch {root}: not a folder")
                self._watches[root] = self._arm(root)
            self._observer.start()
        except OSError as exc:
            raise self._watch_error(exc) from None
        for name in _OVERFLOW_LOGGERS:
            logging.getLogger(name).addFilter(self._overflow)
        self._started = True
        logger.debug("watching %s (%s)", ", ".join(map(str, self.roots)), "polling" if self.poll else "native")

    def _arm(self, root: Path) -> tuple[Any, Optional[tuple[int, int]]]:
        """Watch ``root`` (its identity taken first: a replacement after that is seen by the next check)."""
        identity = _identity(root)
        if identity is None:
            return None, None
        return self._observer.schedule(self._handler, str(root), recursive=True, event_filter=CONTENT_EVENTS), identity

    def _watch_error(self, exc: OSError) -> FgsyncError:
        if exc.errno in (errno.ENOSPC, errno.EMFILE):
            return FgsyncError(
                f"cannot watch {len(self.roots)} folder(s): the system's file-watch limit is reached "
                "(raise fs.inotify.max_user_watches, or run with --poll)"
            )
        return FgsyncError(f"cannot watch files: {exc}")

    def check_roots(self) -> list[tuple[Path, bool]]:
        """Re-arm every root whose folder was replaced or came back; returns ``(root, present)`` for each root
        whose state changed (a ``rescan`` is queued for it). Cheap: one ``stat`` per root.

        Raises:
            FgsyncError: a watch cannot be set up again (the OS watch limit).
        """
        changed: list[tuple[Path, bool]] = []
        with self._lock:
            if not self._started or self._closed:
                return changed
            for root, (_, identity) in list(self._watches.items()):
                if _identity(root) != identity:
                    changed.append((root, self._rearm(root)))
        return changed

    def rearm(self, root: Path) -> None:
        """Watch ``root`` afresh (the OS reported the folder itself deleted or moved), queueing a ``rescan``."""
        with self._lock:
            if self._started and not self._closed and root in self._watches:
                self._rearm(root)

    def _rearm(self, root: Path) -> bool:
        watch = self._watches[root][0]
        if watch is not None:
            self._unschedule(watch)
        try:
            self._watches[root] = self._arm(root)
        except OSError as exc:
            self._watches[root] = (None, None)
            raise self._watch_error(exc) from None
        present = self._watches[root][1] is not None
        if present:
            logger.info("%s is a new folder: watching it again", root)
        else:
            logger.info("%s is missing: watching for it to come back", root)
        self._queue.put(RawEvent(str(root), True, rescan=True))
        return present

    def _unschedule(self, watch: Any) -> None:
        try:
            self._observer.unschedule(watch)
        except (KeyError, OSError) as exc:  # the emitter already stopped with its folder
            logger.debug("unschedule %s: %s", getattr(watch, "path", watch), exc)

    def _overflowed(self) -> None:
        logger.warning("the system dropped file events (inotify queue overflow): checking every function again")
        for root in self.roots:
            self._queue.put(RawEvent(str(root), True, rescan=True))

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
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._started:
            for name in _OVERFLOW_LOGGERS:
                logging.getLogger(name).removeFilter(self._overflow)
            self._observer.stop()
            self._observer.join()

    def __enter__(self) -> FileEventSource:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _poll_stat(path: str) -> os.stat_result:
    """``os.stat`` for the polling observer, whose scans tell a modified file by its mtime and size alone: with
    the ctime beside the mtime, an in-place rewrite that puts both back (``cp -p``, ``rsync -a --inplace``) is a
    change too, as it is with native events. Reads change neither."""
    st = os.stat(path)
    fields: tuple[Any, ...] = (*st[:8], (st.st_mtime_ns, st.st_ctime_ns), st[9])  # st_mtime: compared, never read
    return os.stat_result(fields)


def _identity(root: Path) -> Optional[tuple[int, int]]:
    """``(st_dev, st_ino)`` of the folder at ``root``, or None when there is none."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None
