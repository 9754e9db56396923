"""Injected faults: the next N calls of a route (of one function's, or any) get an error answer, latency, or a
dropped connection (before the call is handled, or after it was applied: the client never learns that it worked)."""

from __future__ import annotations

import dataclasses
import threading
from http import HTTPStatus
from typing import Optional

#: The routes faults and call counts are kept for.
ROUTES = (
    "iam_token",
    "create_function",
    "show_code",
    "update_code",
    "show_config",
    "invoke",
    "create_dependency_version",
    "list_dependencies",
    "list_dependency_versions",
    "show_dependency_version",
    "delete_dependency_version",
    "iam_securitytokens",
    "obs_put",
    "obs_head",
    "obs_get",
    "obs_delete",
    "obs_list",
)


class DroppedConnection(ConnectionResetError):
    """Raised by the app to drop the connection without an answer.

    The loopback server closes the socket without writing a byte (wsgiref ignores ConnectionResetError
    from the application); in-process callers (``httpx.WSGITransport``) see the exception itself.
    """


@dataclasses.dataclass
class Fault:
    """One injected fault and how many more calls it applies to (negative: until cleared)."""

    status: Optional[int]
    code: Optional[str]
    message: Optional[str]
    delay: float
    drop: bool
    remaining: int
    #: Handle the call (an update is applied), then drop the connection instead of answering.
    drop_after: bool = False
    #: Seconds for the error answer's ``Retry-After`` header.
    retry_after: Optional[float] = None
    #: Only calls about this function (its name) meet the fault; None: any call of the route.
    function: Optional[str] = None

    def error(self) -> Optional[tuple[int, str, str]]:
        """The error answer (status, code, message), or None when the fault only delays or drops."""
        if self.status is None and self.code is None:
            return None
        status = self.status if self.status is not None else 500
        code = self.code or f"FSS.{status:04d}"
        try:
            default = HTTPStatus(status).phrase
        except ValueError:
            default = "Injected fault"
        return status, code, self.message or default


def make_fault(
    route: str,
    *,
    status: Optional[int] = None,
    code: Optional[str] = None,
    message: Optional[str] = None,
    delay: float = 0.0,
    drop: bool = False,
    times: int = 1,
    drop_after: bool = False,
    retry_after: Optional[float] = None,
    function: Optional[str] = None,
) -> Fault:
    """Validate the arguments of ``Emulator.inject`` and build the fault.

    Raises:
        ValueError: unknown route, a status outside 400-599, a negative delay, ``times == 0``, a fault
            that would do nothing, or ``drop_after`` with ``drop`` or an error answer.
    """
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; one of: {', '.join(ROUTES)}")
    if status is not None and not 400 <= status <= 599:
        raise ValueError(f"status must be an HTTP error status (400-599), not {status}")
    if delay < 0:
        raise ValueError("delay must be >= 0")
    if times == 0:
        raise ValueError("times must be positive, or negative for 'until cleared'")
    if drop_after and (drop or status is not None or code is not None):
        raise ValueError("drop_after lets the call through, then drops the answer: not with drop or status/code")
    if retry_after is not None and (retry_after < 0 or (status is None and code is None)):
        raise ValueError("retry_after goes with an error answer (status/code), and is >= 0")
    if status is None and code is None and not drop and not drop_after and delay == 0:
        raise ValueError("the fault does nothing: give status/code, delay, drop or drop_after")
    if function is not None and not function:
        raise ValueError("function names the function whose calls meet the fault: not empty")
    return Fault(
        status=status,
        code=code,
        message=message,
        delay=float(delay),
        drop=drop,
        remaining=times,
        drop_after=drop_after,
        retry_after=retry_after,
        function=function,
    )


class FaultBook:
    """Faults per route, used first-in first-out; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, list[Fault]] = {route: [] for route in ROUTES}

    def add(self, route: str, fault: Fault) -> None:
        """Queue a fault for a route."""
        with self._lock:
            self._faults[route].append(fault)

    def clear(self) -> None:
        """Forget every fault."""
        with self._lock:
            for queue in self._faults.values():
                queue.clear()

    def take(self, route: str, function: Optional[str] = None) -> Optional[Fault]:
        """The fault for this call of the route (about ``function``, when it names one), counting it against its
        ``times``; None when there is none. The first queued fault that applies to the call is used."""
        with self._lock:
            queue = self._faults.get(route)
            if not queue:
                return None
            fault = next((f for f in queue if f.function is None or f.function == function), None)
            if fault is None:
                return None
            if fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.remove(fault)
            return dataclasses.replace(fault)

    def pending(self) -> dict[str, int]:
        """How many faults are queued per route (for the stats answer)."""
        with self._lock:
            return {route: len(queue) for route, queue in self._faults.items()}
