"""The event source: ONE watchdog observer (native, or polling) over the top-most source folders, queueing raw
``(path, is_dir, created)`` events for :func:`fgsync.watch.changes.watch_changes`."""

from __future__ import annotations

import errno
import logging
import os
import queue
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from fgsync.errors import FgsyncError

logger = logging.getLogger(__name__)

#: Seconds between two scans of the tree with ``poll=True``.
DEFAULT_POLL_INTERVAL = 0.5

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

