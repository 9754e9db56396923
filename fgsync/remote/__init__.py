"""Talking to the cloud (the face the rest of fgsync imports): the FunctionGraph client over httpx, its typed
errors, its retry policy and the overall deadline of every request.

Modules: ``client`` (the calls, the retries), ``dependencies`` (the dependency calls, a mixin of the client),
``models`` (their wire models), ``errors`` (answers and transport failures -> the messages users read),
``deadline`` (connect-to-last-byte budgets, enforced at the sockets).
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
from fgsync.remote.deadline import UPLOAD_BYTES_PER_S, install_deadlines, request_budget, request_deadline
from fgsync.remote.errors import error_from_response, host_port, network_error
from fgsync.remote.models import (
    DependencySummary,
    DependencyVersion,
    dependency_description,
    description_sha256,
)

__all__ = [
    "UPLOAD_BYTES_PER_S",
    "DependencySummary",
    "DependencyVersion",
    "FunctionGraphClient",
    "Invocation",
    "ProgressHook",
    "RemoteCode",
    "RemoteConfig",
    "RetryPolicy",
    "dependency_description",
    "description_sha256",
    "error_from_response",
    "host_port",
    "install_deadlines",
    "network_error",
    "request_budget",
    "request_deadline",
]
