"""Watching (the face the rest of fgsync imports): file events -> filter -> debounce -> batches, and the daemon
that turns batches into syncs.

Modules: ``source`` (one watchdog observer, native or polling), ``filter`` (raw path -> the functions' changes,
after the ignore rules), ``debounce`` (the pure burst rule), ``changes`` (:func:`watch_changes`, the generator of
settled bursts), ``gitlock`` (``index.lock``), ``scheduler`` (which function syncs when, on a fake-able clock) and
``daemon`` (the loop: batches -> syncs, one in flight per function).
"""

from __future__ import annotations

from fgsync.watch.changes import watch_changes
from fgsync.watch.daemon import Daemon, SyncStep
from fgsync.watch.debounce import Debouncer
from fgsync.watch.filter import Change, ChangeFilter, WatchTarget
from fgsync.watch.gitlock import git_lock_held
from fgsync.watch.reload import WatchSettings
from fgsync.watch.scheduler import Scheduler, Timing, backoff_delay
from fgsync.watch.source import DEFAULT_POLL_INTERVAL, FileEventSource, RawEvent, watch_roots

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "Change",
    "ChangeFilter",
    "Daemon",
    "Debouncer",
    "FileEventSource",
    "RawEvent",
    "Scheduler",
    "SyncStep",
    "Timing",
    "WatchSettings",
    "WatchTarget",
    "backoff_delay",
    "git_lock_held",
    "watch_changes",
    "watch_roots",
]
