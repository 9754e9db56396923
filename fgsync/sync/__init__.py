"""One sync of one function (the face the rest of fgsync imports): build, package, decide, push or skip. Emits
events; prints nothing.

Modules: ``run`` (the sync: package, the skip rules of SPEC.md "Deciding to skip", the lock, the push),
``dependency`` (fgsync's dependency package: which version, its publication, the list to send, cleanup).
The build and the `packaged` event are :mod:`fgsync.package.function`'s (re-exported here).
"""

from __future__ import annotations

from fgsync.package import build_and_package
from fgsync.sync.run import (
    SAME_CODE_CODES,
    SKIP_DRY_RUN,
    PackageFn,
    SyncResult,
    decide_state,
    is_drift,
    package_function,
    package_split,
    recorded_push,
    skip_reason,
    sync_function,
    waiting_message,
)

__all__ = [
    "SAME_CODE_CODES",
    "SKIP_DRY_RUN",
    "PackageFn",
    "SyncResult",
    "build_and_package",
    "decide_state",
    "is_drift",
    "package_function",
    "package_split",
    "recorded_push",
    "skip_reason",
    "sync_function",
    "waiting_message",
]
