"""Locks between fgsync processes: one `fgsync watch` per config and state folder, one remote sync per function.

Lock files live in ``<cache>/locks/`` next to the state (so "one per state folder" comes for free):

- ``watch-<hash of the config's real path>.lock``: held by a running `fgsync watch` for its whole life. A second
  one on the same config and state folder refuses to start (:class:`~fgsync.errors.LockedError`, naming the
  first one's pid).
- ``function-<hash of endpoint + URN>.lock``: held around the remote part of one sync (ShowFunctionCode →
  decide → PUT → record), by `push` and by the watch's syncs alike, so the two never race on a function: one
  waits for the other, then sees the other's push in the state and the remote.

A lock is ``flock(LOCK_EX | LOCK_NB)`` on POSIX (``msvcrt.locking`` on Windows) on a file opened for the
occasion. flock belongs to the open file description, so two threads of one process exclude each other too,
and the OS releases it when the process dies: a ``kill -9`` leaves a lock file behind, never a held lock, and
the next process simply takes it. Lock files are never deleted (deleting a flock'ed file lets two processes
each lock a different inode of the same name). The holder writes its pid (nothing else: no secret, no path)
into the file so that others can name it; it empties the file when it lets go.

If the locks folder cannot be created or opened (a cache folder that is read-only, or a file), fgsync warns
once and goes on without the lock: refusing to sync because of a broken cache would be worse.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

from fgsync.errors import LockedError

log = logging.getLogger(__name__)

#: How often a blocked acquisition looks again where the OS offers no blocking lock (Windows).
_POLL_SECONDS = 0.05
#: How long a reader waits for a new holder to write its pid.
_PID_WAIT_SECONDS = 0.5
#: Windows locks byte ranges and forbids reading them, so the lock is taken on a byte far past the pid.
_WINDOWS_LOCK_OFFSET = 1 << 30


def lock_key(*parts: str) -> str:
    """A short, stable file-name key for a tuple of strings (an endpoint and a URN, a config path)."""
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:32]


class LockFile:
    """An exclusive lock on ``path``, held through one open file description of its own.

    Not re-entrant, and one instance is one holder: make one per acquisition.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, blocking: bool) -> bool:
        """Take the lock; ``blocking=False`` returns False at once when another holder has it.

        Raises:
            OSError: the lock file cannot be created or opened.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this LockFile")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_TRUNC never: it would wipe the pid of the process that holds the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        try:
            if not _lock(fd, blocking=blocking):
                os.close(fd)
                return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._write_pid(f"{os.getpid()}\n".encode("ascii"))
        return True

    def release(self) -> None:
        """Let go (idempotent); the file stays, emptied."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)

    def _write_pid(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, data)
        except OSError as error:  # the lock holds without it; others just cannot name the holder
            log.debug("cannot write the pid into %s: %s", self.path, error)

    def holder(self) -> Optional[int]:
        """The pid another process wrote into the lock file, or None (unknown, or the file is empty)."""
        deadline = time.monotonic() + _PID_WAIT_SECONDS
        while True:
            try:
                text = self.path.read_text(encoding="ascii", errors="replace").strip()
            except OSError:
                return None
            if text.isdigit():
                return int(text)
            # Taken a moment ago, the pid not written yet (or the holder cannot write at all: give up soon).
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def __enter__(self) -> LockFile:
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class LockFolder:
    """The lock files of one state folder (``<cache>/locks``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._warned = False
        self._warn_lock = threading.Lock()

    def watch_path(self, config_path: Path) -> Path:
        """The lock file of `fgsync watch` for a config (by its real path: symlinks and ``..`` do not dodge it)."""
        return self.root / f"watch-{lock_key(os.path.realpath(config_path))}.lock"

    def function_path(self, endpoint: str, urn: str) -> Path:
        """The lock file of one function at one endpoint."""
        return self.root / f"function-{lock_key(endpoint.rstrip('/'), urn)}.lock"

    @contextlib.contextmanager
    def watch(self, config_path: Path) -> Iterator[None]:
        """Hold the watch lock of ``config_path`` for the block.

        Raises:
            LockedError: another `fgsync watch` holds it (the message names its pid and the config).
        """
        lock = LockFile(self.watch_path(config_path))
        if not self._acquire(lock, blocking=False, what=f"the watch lock for {config_path}"):
            pid = lock.holder()
            who = f" (pid {pid})" if pid is not None else ""
            raise LockedError(
                f"fgsync watch is already running for {config_path}{who}; stop it first, or use `fgsync push`",
                pid=pid,
            )
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def function(
        self,
        endpoint: str,
        urn: str,
        *,
        wait: bool = True,
        on_wait: Callable[[Optional[int]], None] = lambda pid: None,
    ) -> Iterator[bool]:
        """Hold the lock of one function for the block; yields whether it is held.

        Args:
            wait: when another process holds it, call ``on_wait(its pid or None)`` once, then wait for it.
                Without ``wait`` the block runs at once and gets False when the lock is busy.
            on_wait: told who is being waited for (the sync reports it as a `waiting` event).

        A lock that cannot be opened at all (broken cache folder) is warned about once, and the block runs
        without it (yielding True: nothing else could hold it either).
        """
        lock = LockFile(self.function_path(endpoint, urn))
        what = f"the lock of {urn}"
        if not self._acquire(lock, blocking=False, what=what):
            if not wait:
                yield False
                return
            on_wait(lock.holder())
            self._acquire(lock, blocking=True, what=what)
        try:
            yield True
        finally:
            lock.release()

    def _acquire(self, lock: LockFile, *, blocking: bool, what: str) -> bool:
        """``lock.acquire``; True also when the lock file cannot be used (warned once; runs unlocked)."""
        try:
            return lock.acquire(blocking=blocking)
        except OSError as error:
            with self._warn_lock:
                warned, self._warned = self._warned, True
            (log.debug if warned else log.warning)(
                "cannot take %s in %s: %s; going on without it (another fgsync process would not be noticed)",
                what,
                self.root,
                error.strerror or error,
            )
            return True


if sys.platform == "win32":  # pragma: no cover - CI runs on Linux
    import msvcrt

    def _lock(fd: int, *, blocking: bool) -> bool:
        while True:
            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not blocking:
                    return False
            # LK_LOCK gives up after 10 s; a sync may take longer, so poll instead.
            time.sleep(_POLL_SECONDS)

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int, *, blocking: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
