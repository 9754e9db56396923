"""What a sync InvokeFunction answers (``fgsync invoke``): a module of its own, so that the client's other users
never build it (the face and :meth:`~fgsync.remote.client.FunctionGraphClient.invoke` load it on first use)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Invocation:
    """A sync invocation's answer (v1 format)."""

    request_id: str
    status: int
    result: str
    log: str
    ms: int
    function_error: bool
    summary: Mapping[str, Any] = field(default_factory=dict)
