"""Talking to the cloud (the face the rest of fgsync imports): the FunctionGraph client over httpx, its typed
errors, its retry policy and the overall deadline of every request; the OBS client for packages too large to
send inline.

Modules: ``client`` (the calls, the retries), ``errors`` (answers and transport failures -> the messages users
read), ``deadline`` (connect-to-last-byte budgets, enforced at the sockets), ``obs`` (the OBS object calls, OBS's
XML errors, object URLs and package keys).
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
from fgsync.remote.obs import (
    MAX_OBS_PACKAGE_BYTES,
    ObjectInfo,
    ObsAuthError,
    ObsClient,
    ObsError,
    ObsPermissionError,
    default_obs_endpoint,
    package_object_key,
)

__all__ = [
    "MAX_OBS_PACKAGE_BYTES",
    "UPLOAD_BYTES_PER_S",
    "FunctionGraphClient",
    "Invocation",
    "ObjectInfo",
    "ObsAuthError",
    "ObsClient",
    "ObsError",
    "ObsPermissionError",
    "ProgressHook",
    "RemoteCode",
    "RemoteConfig",
    "RetryPolicy",
    "default_obs_endpoint",
    "error_from_response",
    "host_port",
    "install_deadlines",
    "network_error",
    "package_object_key",
    "request_budget",
    "request_deadline",
]
