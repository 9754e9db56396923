"""Talking to the cloud (the face the rest of fgsync imports): the FunctionGraph client over httpx, its typed
errors and its retry policy.

Modules: ``client`` (the calls, the retries), ``errors`` (answers and transport failures -> typed errors).
"""

from __future__ import annotations

from fgsync.remote.client import (
    FunctionGraphClient,
    Invocation,
    ProgressHook,
    RemoteCode,
    RemoteConfig,
    RetryPolicy,
)
from fgsync.remote.errors import error_from_response

__all__ = [
    "FunctionGraphClient",
    "Invocation",
    "ProgressHook",
    "RemoteCode",
    "RemoteConfig",
    "RetryPolicy",
    "error_from_response",
]
