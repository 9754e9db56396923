"""What fgsync last pushed, per function: the SHA-512 of the zip it sent and the `digest` the service answered,
and the uploads it started but never heard back from.

Kept in the user cache folder (``$FGSYNC_CACHE_DIR``, else ``platformdirs.user_cache_dir("fgsync")``), never in
the source tree, one small JSON file per (endpoint, URN) so two emulators or two accounts never share a record.
Every write goes through write-then-rename, so a crash mid-write leaves the previous file (or none), never half
a file.

- The **record** (``sha512``, ``digest``, ``pushed_at``) is written only after the service confirmed a push.
- A **pending send** (``sha512``, ``sent_at``) is written just *before* each PUT: if the answer is lost (the
  process killed, the connection dropped after the service applied it), a later sync that finds the remote
  ``digest`` equal to a SHA-512 fgsync sent knows it is fgsync's own push, not drift
  (:meth:`StateStore.reconcile`). The few most recent are kept (an upload can be retried); a confirmed push
  clears them all, a definite refusal clears its own.

The store also keeps both in memory for the life of the process, so a state folder that cannot be written
(read-only, full, a file where the folder should be) never makes a running `fgsync watch` take its own push for
drift: a failed record write raises :class:`~fgsync.errors.StateError` (the push worked; it is not retried),
a failed pending write only logs a warning (the upload goes ahead). Between processes the newest wins, by
time, so a push made by another process is never hidden by an older record held in memory.

The lock files of :mod:`fgsync.locks` live next to the state, in ``<cache>/locks``. Nothing secret is ever
written here.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from fgsync.errors import StateError
from fgsync.folders import cache_dir
from fgsync.locks import LockFolder, lock_key

log = logging.getLogger(__name__)

_FORMAT = 1
#: Pending sends kept per function: the latest upload and the retries or follow-ups before it. Failed sends are
#: kept too (an earlier attempt may have landed), so the window must outlast a run of failures: 16 lines of JSON.
MAX_PENDING = 16

_EPOCH = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)


@dataclass(frozen=True)
class DependencyRecord:
    """A version of fgsync's dependency package (``fgsync-<package>-<function>``) of one function."""

    name: str
    dep_id: str
    version_id: str
    version: int
    sha256: str


@dataclass(frozen=True)
class PushRecord:
    """The last confirmed push of one function.

    ``dependency`` is fgsync's dependency version that push attached (None: none); ``retired`` the versions it
    replaced that could not be deleted yet (in use: FSS.1033), which later syncs try to delete again.
    """

    sha512: str
    digest: str
    pushed_at: str
    dependency: Optional[DependencyRecord] = None
    retired: tuple[DependencyRecord, ...] = ()


@dataclass(frozen=True)
class PendingSend:
    """An upload fgsync started and got no answer for (yet): what it sent, and when."""

    sha512: str
    sent_at: str


@dataclass
class _Entry:
    """One function's state: the record and the pending sends (in memory, or as read from disk)."""

    record: Optional[PushRecord] = None
    pending: list[PendingSend] = field(default_factory=list)
    #: Pending sends cleared in this process (by a record), so that a stale copy on an unwritable disk does not
    #: revive them.
    forgotten: set[PendingSend] = field(default_factory=set)


#: ``$FGSYNC_CACHE_DIR``, else the platform's user cache folder for fgsync (never packaged or watched).
default_cache_dir = cache_dir


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _stamp(moment: _dt.datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _moment(stamp: str) -> _dt.datetime:
    """A stamp written by :func:`_stamp` (or by older fgsync, to the second); unreadable ones are the oldest."""
    try:
        moment = _dt.datetime.fromisoformat(stamp)
    except ValueError:
        return _EPOCH
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_dt.timezone.utc)


class StateStore:
    """Reads and writes push records and pending sends under ``root/state``; thread-safe.

    Args:
        root: the cache folder (default :func:`default_cache_dir`); state goes in ``root/state``, locks in
            ``root/locks``.
        now: the wall clock (UTC), for the stamps that order records and pending sends between processes.
    """

    def __init__(self, root: Optional[Path] = None, *, now: Callable[[], _dt.datetime] = _utc_now) -> None:
        self.cache_dir = root if root is not None else default_cache_dir()
        self.root = self.cache_dir / "state"
        #: The lock files of this state folder (one watch per config, one sync per function).
        self.locks = LockFolder(self.cache_dir / "locks")
        self._now = now
        self._lock = threading.Lock()
        self._memory: dict[Path, _Entry] = {}
        self._warned: set[str] = set()

    def _path(self, endpoint: str, urn: str) -> Path:
        return self.root / f"{lock_key(endpoint.rstrip('/'), urn)}.json"

    # -- reading ------------------------------------------------------------------------------------------------

    def get(self, endpoint: str, urn: str) -> Optional[PushRecord]:
        """The last push of ``urn`` at ``endpoint``, or None (never pushed, or an unreadable record)."""
        with self._lock:
            return self._current(self._path(endpoint, urn), urn).record

    def pending(self, endpoint: str, urn: str) -> tuple[PendingSend, ...]:
        """Uploads started after the last push and never answered, oldest first."""
        with self._lock:
            return tuple(self._current(self._path(endpoint, urn), urn).pending)

    def reconcile(self, endpoint: str, urn: str, remote_digest: str, *, persist: bool = True) -> Optional[PushRecord]:
        """The last push, once a lost answer is accounted for.

        When the remote ``digest`` is the SHA-512 of a pending send, that upload landed and its answer was lost:
        it becomes the record (fgsync's push, not drift) and the pending sends are cleared. FunctionGraph
        documents ``digest`` as the SHA-512 of the code, and the service (like the emulator) answers the SHA-512
        of the zip it got; a service whose digest were something else would simply never match, and fgsync
        would fall back to reporting drift.

        Args:
            persist: write the adopted record (False: memory only, e.g. ``--dry-run`` or a lock held elsewhere).
                A failed write is logged; the record is kept in memory either way.
        """
        path = self._path(endpoint, urn)
        with self._lock:
            entry = self._current(path, urn)
            landed = next((p for p in reversed(entry.pending) if remote_digest and p.sha512 == remote_digest), None)
            if landed is None:
                return entry.record
            record = PushRecord(sha512=landed.sha512, digest=remote_digest, pushed_at=_stamp(self._now()))
            log.info(
                "%s: the upload sent at %s landed (its answer was lost); recorded as fgsync's push", urn, landed.sent_at
            )
            memory = self._memory.setdefault(path, _Entry())
            memory.record = record
            memory.forgotten.update(entry.pending)
            memory.pending = []
            if persist:
                try:
                    self._write(path, endpoint, urn, _Entry(record=record))
                except OSError as error:
                    self._warn_once(
                        "write", "could not record %s in %s: %s; kept in memory", urn, self.root, _why(error)
                    )
            return record

    def _current(self, path: Path, urn: str) -> _Entry:
        """Disk and memory merged: the newer record, and the pending sends newer than it."""
        disk = self._read(path, urn)
        memory = self._memory.get(path, _Entry())
        record = disk.record
        if memory.record is not None and (
            record is None or _moment(memory.record.pushed_at) >= _moment(record.pushed_at)  # a tie: the same push
        ):
            record = memory.record
        since = _moment(record.pushed_at) if record is not None else _EPOCH
        newest: dict[str, PendingSend] = {}
        for send in [*disk.pending, *memory.pending]:
            if send in memory.forgotten or _moment(send.sent_at) <= since:
                continue
            known = newest.get(send.sha512)
            if known is None or _moment(send.sent_at) > _moment(known.sent_at):
                newest[send.sha512] = send
        pending = sorted(newest.values(), key=lambda send: _moment(send.sent_at))[-MAX_PENDING:]
        return _Entry(record=record, pending=pending)

    def _read(self, path: Path, urn: str) -> _Entry:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):  # no folder, no record (a write will say why)
            return _Entry()
        except (OSError, ValueError) as error:
            self._warn_once(f"read {path}", "ignoring unreadable state file %s: %s", path, _why(error))
            return _Entry()
        if not isinstance(data, dict) or data.get("urn") != urn or data.get("format") != _FORMAT:
            return _Entry()
        record = None
        if all(isinstance(data.get(key), str) for key in ("sha512", "digest", "pushed_at")):
            record = PushRecord(
                sha512=data["sha512"],
                digest=data["digest"],
                pushed_at=data["pushed_at"],
                dependency=_dependency(data.get("dependency")),
                retired=tuple(d for d in map(_dependency, data.get("retired") or ()) if d is not None),
            )
        pending = []
        for item in data.get("pending") or ():
            if isinstance(item, dict) and isinstance(item.get("sha512"), str) and isinstance(item.get("sent_at"), str):
                pending.append(PendingSend(sha512=item["sha512"], sent_at=item["sent_at"]))
        return _Entry(record=record, pending=pending)

    # -- writing ------------------------------------------------------------------------------------------------

    def put(
        self,
        endpoint: str,
        urn: str,
        sha512: str,
        digest: str,
        *,
        dependency: Optional[DependencyRecord] = None,
        retired: tuple[DependencyRecord, ...] = (),
    ) -> PushRecord:
        """Record a confirmed push (atomically: temp file, fsync, rename) and clear the pending sends.

        Args:
            dependency: fgsync's dependency version the push attached.
            retired: versions it replaced that are still to be deleted.

        Raises:
            StateError: the record could not be written ("pushed, but could not record it in <folder>: <reason>");
                it is kept in memory for the rest of the process all the same.
        """
        record = PushRecord(
            sha512=sha512, digest=digest, pushed_at=_stamp(self._now()), dependency=dependency, retired=retired
        )
        self._keep(endpoint, urn, record)
        return record

    def retire(self, endpoint: str, urn: str, retired: tuple[DependencyRecord, ...]) -> None:
        """Replace the last record's versions still to delete (some were deleted now, or could not be).

        Raises:
            StateError: the record could not be written.
        """
        current = self.get(endpoint, urn)
        if current is None or current.retired == retired:
            return
        self._keep(endpoint, urn, dataclasses.replace(current, retired=retired), clear_pending=False)

    def _keep(self, endpoint: str, urn: str, record: PushRecord, *, clear_pending: bool = True) -> None:
        """Make ``record`` the function's record, in memory and on disk (a push clears the pending sends)."""
        path = self._path(endpoint, urn)
        with self._lock:
            memory = self._memory.setdefault(path, _Entry())
            if clear_pending:
                memory.forgotten.update(memory.pending)
                memory.pending = []
            memory.record = record
            try:
                self._write(path, endpoint, urn, self._current(path, urn))
            except OSError as error:
                reason = _why(error)
                raise StateError(
                    f"pushed, but could not record it in {self.root}: {reason}", folder=str(self.root), reason=reason
                ) from None

    def begin_send(self, endpoint: str, urn: str, sha512: str) -> PendingSend:
        """Remember, before the PUT, that ``sha512`` is being sent; never fails.

        A failed write only logs a warning (once per process): the upload goes ahead, and the pending send is
        kept in memory, which is enough for the rest of this process. Only a later process, after a lost
        answer, could then see fgsync's upload as drift.
        """
        send = PendingSend(sha512=sha512, sent_at=_stamp(self._now()))
        path = self._path(endpoint, urn)
        with self._lock:
            memory = self._memory.setdefault(path, _Entry())
            memory.pending = [*(p for p in memory.pending if p.sha512 != sha512), send][-MAX_PENDING:]
            current = self._current(path, urn)
            try:
                self._write(path, endpoint, urn, current)
            except OSError as error:
                self._warn_once(
                    "write",
                    "could not note the upload of %s in %s: %s; remembered in memory only",
                    urn,
                    self.root,
                    _why(error),
                )
        return send

    def _write(self, path: Path, endpoint: str, urn: str, entry: _Entry) -> None:
        payload: dict[str, Any] = {"format": _FORMAT, "endpoint": endpoint.rstrip("/"), "urn": urn}
        if entry.record is not None:
            record = entry.record
            payload.update(sha512=record.sha512, digest=record.digest, pushed_at=record.pushed_at)
            if record.dependency is not None:
                payload["dependency"] = dataclasses.asdict(record.dependency)
            if record.retired:
                payload["retired"] = [dataclasses.asdict(d) for d in record.retired]
        if entry.pending:
            payload["pending"] = [{"sha512": p.sha512, "sent_at": p.sent_at} for p in entry.pending]
        folder = path.parent
        if folder.exists() and not folder.is_dir():  # mkdir would say "File exists", which misleads
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        """A warning the first time (per kind of failure, per process), debug after: one broken folder, one line."""
        first = key not in self._warned
        self._warned.add(key)
        (log.warning if first else log.debug)(message, *args)


def _dependency(data: Any) -> Optional[DependencyRecord]:
    """A dependency record as written by :meth:`StateStore._write`, or None when it is not one."""
    if not isinstance(data, dict):
        return None
    try:
        return DependencyRecord(
            name=str(data["name"]),
            dep_id=str(data["dep_id"]),
            version_id=str(data["version_id"]),
            version=int(data["version"]),
            sha256=str(data["sha256"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _why(error: OSError | ValueError) -> str:
    """The reason alone ("No space left on device"), without the errno and the path."""
    return (error.strerror if isinstance(error, OSError) else None) or str(error)
