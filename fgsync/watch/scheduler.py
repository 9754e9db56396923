"""Which function syncs when: :class:`Scheduler` is the policy alone (follow-ups, git locks, backoff, pauses on
401). Time is an argument, credentials and git locks are callables, so it is unit-tested with a fake clock."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from fgsync.errors import AuthApiError, BuildError, ClockSkewError, CredentialsError, FgsyncError, KeyringError
from fgsync.events import WAIT_GIT_LOCK, Event, error_event

logger = logging.getLogger(__name__)

LOGIN_HINT = "run `fgsync login`; the function resumes by itself once credentials work"
RESUME_HINT = "the function resumes by itself once credentials work"
#: No keyring backend: the keyring library chose it when fgsync started, and the environment was read then too.
NO_KEYRING_HINT = (
    "a keyring installed now, FGSYNC_TOKEN, or CLOUD_SDK_AK and CLOUD_SDK_SK take effect when `fgsync watch` "
    "starts again"
)
KEYRING_HINT = (
    "the function resumes by itself once the keyring answers (unlocked); FGSYNC_TOKEN, or CLOUD_SDK_AK and "
    "CLOUD_SDK_SK, take effect when `fgsync watch` starts again"
)


def no_stamp() -> str:
    return ""


@dataclass(frozen=True)
class Timing:
    """The loop's delays, in seconds. Tests shrink them; the defaults are what users get."""

    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    auth_poll: float = 2.0
    auth_retry: float = 30.0
    lock_poll: float = 0.2
    #: A `waiting` event (git-lock) once a git lock has held a function this long, and again this often.
    lock_notice_after: float = 10.0
    lock_notice_every: float = 60.0
    #: A `waiting` event (in-flight) once an upload has waited for the service this long, and again this often.
    inflight_notice_after: float = 10.0
    inflight_notice_every: float = 30.0


def backoff_delay(attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with "equal jitter": between half and all of ``min(cap, base * 2**(n-1))``.

    Half the delay is kept fixed so a retry never fires at once after a failure; the other half spreads
    several fgsync processes hitting the same throttled service.
    """
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rand() * ceiling / 2


@dataclass
class _State:
    dirty: bool = True  # a sync is owed: the initial one, or a change since the last one started
    running: bool = False
    attempt: int = 0  # consecutive retryable failures
    retry_at: float = 0.0  # not before this time (backoff, or the periodic retry while paused)
    paused: bool = False  # credentials refused
    stamp: str = ""  # credential_stamp() when the sync that got paused started
    stamp_check_at: float = 0.0
    locked: bool = False  # a git index.lock held it at the last look
    lock_check_at: float = 0.0
    lock_path: Optional[Path] = None  # the lock that held it, when lock_held named one
    locked_since: float = 0.0
    lock_notice_at: float = 0.0
    # Everything owed comes from changes that may be the function's own build output: the inputs are compared
    # with what its last build left before a sync is spent on them (see fgsync.package.fingerprint).
    verify: bool = False
    verify_run: bool = False  # the running sync was started with verify
    failed: bool = False  # the last sync ended in an error: the remote may not hold the code on disk


class Scheduler:
    """Which function syncs when. Every method takes the current time; nothing here sleeps or does I/O
    beyond the injected ``credential_stamp`` and ``lock_held`` callables.

    Args:
        names: the functions; each starts owing its initial sync.
        timing: delays.
        credential_stamp: a fingerprint of the current credentials (never the secret itself).
        lock_held: the git lock holding the function's tree (by function name): its path, or anything true;
            None or false when there is none.
        rand: [0, 1) for the backoff jitter.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        timing: Timing = Timing(),
        credential_stamp: Callable[[], str] = no_stamp,
        lock_held: Callable[[str], object] = lambda _name: None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.timing = timing
        self._states = {name: _State() for name in names}
        self._credential_stamp = credential_stamp
        self._lock_held = lock_held
        self._rand = rand

    def changed(self, name: str, *, verify: bool = False) -> None:
        """A settled burst touched the function: it owes a sync (a follow-up if one is running).

        ``verify``: the burst may be nothing but the function's build output; the sync may then be dropped once
        the inputs are found unchanged (:meth:`verify_only` tells the daemon). A sync owed for any other reason
        stays owed in full.
        """
        state = self._states[name]
        if not state.dirty:
            state.verify = verify
        elif not verify:
            state.verify = False
        state.dirty = True

    def verify_only(self, name: str) -> bool:
        """Whether the sync just started (by :meth:`due`) was owed only for changes that may be build output."""
        return self._states[name].verify_run

    def add(self, name: str) -> None:
        """A function joined (fgsync.toml was edited): it owes its initial sync."""
        if name not in self._states:
            self._states[name] = _State()

    def remove(self, name: str) -> None:
        """A function left the configuration: nothing more is started for it."""
        self._states.pop(name, None)

    def known(self, name: str) -> bool:
        """Whether the function is (still) scheduled."""
        return name in self._states

    def running(self) -> list[str]:
        """The functions whose sync is running now."""
        return [name for name, state in self._states.items() if state.running]

    def pending(self) -> list[str]:
        """The functions whose changes may not be pushed: a sync owed or running, or the last one failed."""
        return [name for name, state in self._states.items() if state.dirty or state.running or state.failed]

    def paused(self, name: str) -> bool:
        """Whether the function waits for working credentials."""
        return self._states[name].paused

    def due(self, now: float) -> list[str]:
        """The functions to sync now; each is marked running until :meth:`finished`."""
        started = []
        for name, state in self._states.items():
            if state.running or not state.dirty or not self._may_start(name, state, now):
                continue
            state.running = True
            state.dirty = False
            state.verify_run, state.verify = state.verify, False
            # Taken at the start, not at the failure: a login that lands while the failing request is in
            # flight must still count as a change of credentials.
            state.stamp = self._stamp()
            started.append(name)
        return started

    def _may_start(self, name: str, state: _State, now: float) -> bool:
        if state.paused and now >= state.stamp_check_at:
            state.stamp_check_at = now + self.timing.auth_poll
            if self._stamp() != state.stamp:
                logger.info("%s: credentials changed, retrying", name)
                state.retry_at = now
        if now < state.retry_at:
            return False
        if state.locked and now < state.lock_check_at:
            return False
        held = self._lock_held(name)
        if held and not state.locked:
            logger.info("%s: a git operation is in progress (index.lock); waiting for it", name)
            state.locked_since = now
            state.lock_notice_at = now + self.timing.lock_notice_after
        elif state.locked and not held:
            logger.info("%s: git index.lock is gone", name)
        state.locked = bool(held)
        state.lock_path = Path(held) if isinstance(held, (str, os.PathLike)) else None
        state.lock_check_at = now + self.timing.lock_poll
        return not held

    def notices(self, now: float) -> list[Event]:
        """`waiting` events that are due: a git lock that has held a function a while (again every minute)."""
        events = []
        for name, state in self._states.items():
            if not (state.locked and state.dirty) or now < state.lock_notice_at:
                continue
            state.lock_notice_at = now + self.timing.lock_notice_every
            waited = now - state.locked_since
            where = str(state.lock_path) if state.lock_path is not None else "index.lock"
            age = _age(state.lock_path)
            message = (
                f"waiting for git: {where} exists (for {_seconds(max(waited, age or 0.0))}); changes are pushed "
                "once it is gone. If no git command is running, a crashed one left it: remove it"
            )
            fields = {"reason": WAIT_GIT_LOCK, "message": message, "path": where, "age_s": round(age or waited, 1)}
            events.append(Event("waiting", name, fields))
        return events

    def _stamp(self) -> str:
        try:
            return self._credential_stamp()
        except Exception as error:  # a keyring hiccup must not kill the loop; retry later
            logger.debug("credential stamp failed: %s", type(error).__name__)
            return ""

    def finished(self, name: str, error: Optional[BaseException], now: float) -> Optional[Event]:
        """Record the end of a sync; returns the `error` event to report, if any."""
        state = self._states.get(name)
        if state is None:  # it left the configuration while its sync ran
            return None
        state.running = False
        state.failed = error is not None
        if error is None:
            if state.paused:
                logger.info("%s: credentials work again, resumed", name)
            state.attempt = 0
            state.paused = False
            return None
        if isinstance(error, (AuthApiError, CredentialsError)):
            return self._pause(name, state, error, now)
        state.paused = False
        if isinstance(error, FgsyncError) and error.retryable:
            state.dirty = True
            state.attempt += 1
            delay = backoff_delay(
                state.attempt, base=self.timing.backoff_base, cap=self.timing.backoff_cap, rand=self._rand
            )
            retry_after = getattr(error, "retry_after", None)
            if retry_after:
                delay = max(delay, min(float(retry_after), self.timing.backoff_cap))
            state.retry_at = now + delay
            return error_event(name, error.code, error.message, retryable=True, retry_in_ms=round(delay * 1000))
        state.attempt = 0
        if isinstance(error, FgsyncError):
            extra = {"detail": error.output} if isinstance(error, BuildError) and error.output else None
            return error_event(name, error.code, error.message, extra=extra)
        logger.debug("%s: unexpected error in sync", name, exc_info=error)
        return error_event(name, "error", f"unexpected {type(error).__name__}: {error}")

    def unchanged(self, name: str) -> None:
        """End a sync that was dropped because the inputs were what its last build left (nothing to do)."""
        state = self._states.get(name)
        if state is not None:
            state.running = False

    def _pause(self, name: str, state: _State, error: FgsyncError, now: float) -> Optional[Event]:
        state.dirty = True  # the change is not lost: it goes up once credentials work
        state.attempt = 0
        state.retry_at = now + self.timing.auth_retry
        state.stamp_check_at = now + self.timing.auth_poll
        # Only credentials that change after the failed sync started are worth an early retry (state.stamp).
        if state.paused:
            logger.info("%s: credentials still refused", name)
            return None
        state.paused = True
        hint = self._pause_hint(error)
        return error_event(
            name, error.code, f"{error.message} — {hint}", retry_in_ms=round(self.timing.auth_retry * 1000)
        )

    def _pause_hint(self, error: FgsyncError) -> str:
        """What gets the function going again; "run `fgsync login`" only where a login can help."""
        if isinstance(error, KeyringError):
            return NO_KEYRING_HINT if error.absent else KEYRING_HINT
        if isinstance(error, ClockSkewError):  # its message says to fix the clock; the periodic retry notices
            return f"fgsync tries again every {self.timing.auth_retry:g} s"
        # CredentialsError messages already say how to log in; a 401 from the service does not.
        return RESUME_HINT if "fgsync login" in error.message else LOGIN_HINT

    def next_wakeup(self, now: float) -> Optional[float]:
        """The earliest future time at which :meth:`due` may start something without a new change."""
        times = []
        for state in self._states.values():
            if state.running or not state.dirty:
                continue
            times.append(state.retry_at)
            if state.paused:
                times.append(state.stamp_check_at)
            if state.locked:
                times.append(state.lock_check_at)
        future = [t for t in times if t > now]
        return min(future) if future else None


def _age(path: Optional[Path]) -> Optional[float]:
    """Seconds since ``path`` was last modified, or None when it cannot be told."""
    if path is None:
        return None
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        return None


def _seconds(value: float) -> str:
    """``12 s``, ``3 min``, ``2 h``."""
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.0f} h"
