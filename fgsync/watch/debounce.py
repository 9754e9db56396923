"""A pure trailing debounce with a max-wait, driven by an injectable clock."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Callable, Generic, Optional, TypeVar

T = TypeVar("T")


class Debouncer(Generic[T]):
    """A trailing debounce with a max-wait: a burst ends ``debounce_ms`` after its last item, or
    ``max_wait_ms`` after its first, whichever comes first.

    Items added as ``slow`` (a function's dependency files: an ``npm install`` writes for many seconds, with
    pauses) hold the burst until they have been quiet for ``slow_quiet_ms``, past the max-wait (up to
    ``slow_max_wait_ms``): a dependency is republished once, not once per max-wait.

    Pure: it never sleeps or starts threads; time comes from ``clock``.
    """

    def __init__(
        self,
        debounce_ms: int,
        max_wait_ms: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        slow_quiet_ms: int = 2000,
        slow_max_wait_ms: int = 300_000,
    ) -> None:
        if debounce_ms < 0 or max_wait_ms < 0:
            raise ValueError("debounce_ms and max_wait_ms must not be negative")
        self.debounce = debounce_ms / 1000.0
        # A max-wait shorter than the debounce would make the debounce meaningless; the larger one wins.
        self.max_wait = max(max_wait_ms, debounce_ms) / 1000.0
        self.slow_quiet = max(slow_quiet_ms, debounce_ms) / 1000.0
        self.slow_max_wait = max(slow_max_wait_ms, max_wait_ms) / 1000.0
        self._clock = clock
        self._items: set[T] = set()
        self._first = 0.0
        self._last = 0.0
        self._slow_last: Optional[float] = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[T], *, slow: bool = False) -> None:
        """Record items seen now; an empty iterable changes nothing."""
        new = set(items)
        if not new:
            return
        now = self._clock()
        if not self._items:
            self._first = now
        self._last = now
        if slow:
            self._slow_last = now
        self._items |= new

    def timeout(self) -> Optional[float]:
        """Seconds until the burst is due (0 when due now), or None when nothing is pending."""
        if not self._items:
            return None
        due = min(self._last + self.debounce, self._first + self.max_wait)
        if self._slow_last is not None:
            due = max(due, min(self._slow_last + self.slow_quiet, self._first + self.slow_max_wait))
        return max(0.0, due - self._clock())

    def ready(self) -> bool:
        """True when a burst is pending and has settled (or waited ``max_wait``)."""
        return self.timeout() == 0.0

    def take(self) -> set[T]:
        """Return the pending items and start afresh."""
        items, self._items = self._items, set()
        self._slow_last = None
        return items
