"""Which function syncs when: :class:`Scheduler` is the policy alone (follow-ups, git locks, backoff, pauses on
401). Time is an argument, credentials and git locks are callables, so it is unit-tested with a fake clock."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from fgsync.errors import AuthApiError, BuildError, ClockSkewError, CredentialsError, FgsyncError, KeyringError
from fgsync.events import Event, error_event

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
    #: Events this long after a build's packaging are still taken as its output (late notifications).
    build_grace: float = 0.3


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


class Scheduler:
    """Which function syncs when. Every method takes the current time; nothing here sleeps or does I/O
    beyond the injected ``credential_stamp`` and ``lock_held`` callables.

    Args:
        names: the functions; each starts owing its initial sync.
        timing: delays.
        credential_stamp: a fingerprint of the current credentials (never the secret itself).
        lock_held: whether a git operation holds the function's tree (by function name).
        rand: [0, 1) for the backoff jitter.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        timing: Timing = Timing(),
        credential_stamp: Callable[[], str] = no_stamp,
        lock_held: Callable[[str], bool] = lambda _name: False,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.timing = timing
        self._states = {name: _State() for name in names}
        self._credential_stamp = credential_stamp
        self._lock_held = lock_held
        self._rand = rand

    def changed(self, name: str) -> None:
        """A settled burst touched the function: it owes a sync (a follow-up if one is running)."""
        self._states[name].dirty = True

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
        elif state.locked and not held:
            logger.info("%s: git index.lock is gone", name)
        state.locked = held
        state.lock_check_at = now + self.timing.lock_poll
        return not held

    def _stamp(self) -> str:
        try:
            return self._credential_stamp()
        except Exception as error:  # a keyring hiccup must not kill the loop; retry later
            logger.debug("credential stamp failed: %s", type(error).__name__)
            return ""

    def finished(self, name: str, error: Optional[BaseException], now: float) -> Optional[Event]:
        """Record the end of a sync; returns the `error` event to report, if any."""
        state = self._states[name]
        state.running = False
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
