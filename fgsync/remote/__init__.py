"""Talking to the cloud (the face the rest of fgsync imports): the FunctionGraph client over httpx, its typed
errors and its retry policy; the OBS client for packages too large to send inline.

Modules: ``client`` (the calls, the error mapping, the retries), ``obs`` (the OBS object calls, OBS's XML
errors, object URLs and package keys).
"""

from __future__ import annotations

from fgsync.remote.client import (
    FunctionGraphClient,
    Invocation,
    ProgressHook,
    RemoteCode,
    RemoteConfig,
    RetryPolicy,
    error_from_response,
)
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
    "package_object_key",
]
