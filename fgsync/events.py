"""The events fgsync reports: one record type, rendered by `cli` as a human line or as one NDJSON object.

Event names and fields are the contract of SPEC.md "Output":

========  ===================================================================
watching  functions, paths (after a reload of fgsync.toml also: reloaded)
change    paths (at most 20), count
packaged  files, bytes, sha512, ms (a dependency package: also package = "dependency", sha256)
skipped   reason: unchanged | remote-identical | server-unchanged
drift     recorded, remote (fgsync's dependency detached: also dependency = {recorded, attached})
pushed    bytes, digest, ms
invoked   status, result, log, ms
dependency  action: published | reused | unchanged, files, bytes, sha256, version, id, ms
waiting   reason: git-lock | in-flight, message
error     code, message, retryable, retry_in_ms
status    sha512, pushed_sha512, remote_digest, state (with dependencies: dependency = {version, sha256, attached})
stopped   pending (functions with changes not pushed)
========  ===================================================================

Modules that do work (sync, daemon) take an ``emit: Callable[[Event], None]`` and never print.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

EVENT_NAMES = (
    "watching",
    "change",
    "packaged",
    "skipped",
    "drift",
    "pushed",
    "invoked",
    "dependency",
    "waiting",
    "error",
    "status",
    "stopped",
)

SKIP_UNCHANGED = "unchanged"
SKIP_REMOTE_IDENTICAL = "remote-identical"
SKIP_SERVER_UNCHANGED = "server-unchanged"

#: `waiting` reasons: an upload is in flight (this process's, at a stop, or another process's); a git lock.
WAIT_IN_FLIGHT = "in-flight"
WAIT_GIT_LOCK = "git-lock"

MAX_CHANGE_PATHS = 20


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds, e.g. ``2026-11-28T14:08:22.123Z``."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``fields`` holds the event's own fields (see the module docstring).

    ``extra`` carries details for the human renderer only (for example a dry-run note or the build output);
    they never reach ``--json`` output.
    """

    event: str
    function: Optional[str] = None
    fields: dict[str, Any] = field(default_factory=dict)
    ts: str = field(default_factory=utc_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.event not in EVENT_NAMES:
            raise ValueError(f"unknown event {self.event!r}")

    def to_json(self) -> dict[str, Any]:
        """The NDJSON object: ``event``, ``ts``, ``function`` when it applies, then the fields."""
        out: dict[str, Any] = {"event": self.event, "ts": self.ts}
        if self.function is not None:
            out["function"] = self.function
        out.update(self.fields)
        return out


Emit = Callable[[Event], None]


def change_event(function: str, paths: list[str] | tuple[str, ...]) -> Event:
    """A `change` event: the first 20 paths (sorted) and the total count."""
    ordered = sorted(paths)
    return Event("change", function, {"paths": ordered[:MAX_CHANGE_PATHS], "count": len(ordered)})


def error_event(
    function: str | None,
    code: str,
    message: str,
    *,
    retryable: bool = False,
    retry_in_ms: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Event:
    """An `error` event; ``retry_in_ms`` is null when no retry is scheduled."""
    return Event(
        "error",
        function,
        {"code": code, "message": message, "retryable": retryable, "retry_in_ms": retry_in_ms},
        extra=dict(extra or {}),
    )
