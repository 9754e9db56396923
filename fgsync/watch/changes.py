"""File events -> filter -> debounce -> batches: :func:`watch_changes`, a generator of *sets* of changes, woken
by a ``stop_event`` so shutdown and tests never hang (the shape of watchfiles)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Callable, Optional

from fgsync.watch.debounce import Debouncer
from fgsync.watch.filter import Change, ChangeFilter, WatchTarget
from fgsync.watch.source import DEFAULT_POLL_INTERVAL, FileEventSource, watch_roots

logger = logging.getLogger(__name__)

#: Longest single wait, so a set ``stop_event`` is noticed quickly (watchfiles' "step").
STEP_SECONDS = 0.05

#: Seconds between two looks at whether each watched root is still the folder that is watched.
ROOT_CHECK_SECONDS = 0.25

#: With polling, the quiet time is at least the scan interval plus this.
POLL_DEBOUNCE_MARGIN_MS = 100


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
    """Yield a set of :class:`Change` for every settled burst of file events, until ``stop_event`` is set; then
    once more with what was seen but had not settled, if anything.

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
        check_at = clock() + ROOT_CHECK_SECONDS
        while not stop_event.is_set():
            due = debouncer.timeout()
            raw = source.get(STEP_SECONDS if due is None else min(due, STEP_SECONDS))
            while raw is not None:
                path = raw[0]
                if getattr(raw, "rescan", False):
                    seen = changes_filter.match_tree(path)
                else:
                    if path in roots:
                        # The root itself was deleted or moved: its watch is dead even when a new folder with the
                        # same inode number (reused at once by the file system) already stands in its place.
                        source.rearm(Path(path))
                    seen = changes_filter.match(path, is_dir=raw[1])
                seen = [c for c in seen if suppress is None or not suppress(c)]
                if seen:
                    # Event sources other than the observer (test scripts) may queue plain (path, is_dir) pairs.
                    born.setdefault(path, bool(getattr(raw, "created", False)))
                    for change in seen:
                        raw_paths.setdefault(change, path)
                    debouncer.add(seen, slow=any(changes_filter.settles_slowly(c) for c in seen))
                # A writer faster than this loop must not hold the burst past its max-wait.
                raw = None if debouncer.ready() else source.get(0)
            if clock() >= check_at:
                check_at = clock() + ROOT_CHECK_SECONDS
                source.check_roots()  # queues a rescan for each root that went missing or came back
            if debouncer.ready():
                batch = _mark_transient(debouncer.take(), raw_paths, born)
                born, raw_paths = {}, {}
                yield batch
        if len(debouncer):
            # Stopping: what was seen but not yet settled is handed over, so nothing goes unreported.
            yield _mark_transient(debouncer.take(), raw_paths, born)


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

