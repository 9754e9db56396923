"""fgsync.toml while watching: notice an edit, and say what it changed.

The file is looked at by ``stat`` a few times a second rather than through the file watcher: it may lie outside
every source folder, editors replace it atomically, and a look costs one system call. An edit is read once the
file has stayed the same for one look (an editor's save in several writes is read whole).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from fgsync.config import FunctionConfig

#: Seconds between two looks at the config file.
CONFIG_CHECK_SECONDS = 0.25

_Stamp = Optional[tuple[int, int, int, int]]


@dataclass(frozen=True)
class WatchSettings:
    """What the daemon takes from a configuration: the functions and the timings.

    ``context`` is the caller's own (the cli keeps the loaded config there, for its sync step).
    """

    functions: tuple[FunctionConfig, ...]
    debounce_ms: int
    max_wait_ms: int
    poll: bool
    context: Any = field(default=None, compare=False)


def _stamp(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class ConfigFileWatch:
    """Tells when a config file was edited and has settled. Not thread-safe: the daemon's loop alone uses it."""

    def __init__(self, path: Path, *, now: float) -> None:
        self.path = path
        self._stamp = _stamp(path)
        self._candidate: _Stamp = self._stamp
        self._check_at = now + CONFIG_CHECK_SECONDS

    def edited(self, now: float) -> bool:
        """True once per settled edit: the file differs from the last one read and held still for one look."""
        if now < self._check_at:
            return False
        self._check_at = now + CONFIG_CHECK_SECONDS
        stamp = _stamp(self.path)
        settled = stamp == self._candidate
        self._candidate = stamp
        if not settled or stamp == self._stamp or stamp is None:
            return False  # still being written, unchanged, or gone for now (an atomic save in progress)
        self._stamp = stamp
        return True

    def next_check(self) -> float:
        """When :meth:`edited` next looks."""
        return self._check_at


def describe_reload(old: WatchSettings, new: WatchSettings) -> dict[str, Any]:
    """The ``reloaded`` field of the `watching` event after a reload: what was added, removed and changed."""
    before = {fn.name: fn for fn in old.functions}
    after = {fn.name: fn for fn in new.functions}
    changed = {name: _changed_keys(before[name], fn) for name, fn in after.items() if name in before}
    settings = {
        key: [getattr(old, key), getattr(new, key)]
        for key in ("debounce_ms", "max_wait_ms", "poll")
        if getattr(old, key) != getattr(new, key)
    }
    return {
        "added": [name for name in after if name not in before],
        "removed": [name for name in before if name not in after],
        "changed": {name: keys for name, keys in changed.items() if keys},
        "settings": settings,
    }


def _changed_keys(old: FunctionConfig, new: FunctionConfig) -> list[str]:
    return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def changed_functions(old: Sequence[FunctionConfig], new: Sequence[FunctionConfig]) -> list[str]:
    """Names present in both whose definition differs."""
    before = {fn.name: fn for fn in old}
    return [fn.name for fn in new if fn.name in before and before[fn.name] != fn]
