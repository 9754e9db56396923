"""Talking to the cloud (the face the rest of fgsync imports): the FunctionGraph client over httpx, its typed
errors, its retry policy and the overall deadline of every request; the OBS client for packages too large to
send inline.

Modules: ``http`` (what every client shares: retries, the deadline, streamed bodies from ``fgsync.upload``),
``client`` (the FunctionGraph calls), ``dependencies`` (the dependency calls, a mixin of the client), ``models``
(their wire models), ``errors`` (answers and transport failures -> the messages users read), ``deadline``
(connect-to-last-byte budgets, enforced at the sockets), ``invocation`` (what InvokeFunction answers), ``obs``
(the OBS object calls, OBS's XML errors, object URLs and package keys).

The OBS names are loaded on first use (PEP 562): ``obs`` brings ``xml.etree`` and the OBS signer (~5 ms), which a
config without ``[obs]`` never needs; so are ``Invocation`` (``invocation``), which only `fgsync invoke` needs, and
the dependency wire models (``models``), which a function without dependencies never needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fgsync.remote.client import (
    FunctionGraphClient,
    ProgressHook,
    RemoteCode,
    RemoteConfig,
    RetryPolicy,
)
from fgsync.remote.deadline import UPLOAD_BYTES_PER_S, install_deadlines, request_budget, request_deadline
from fgsync.remote.errors import error_from_response, host_port, network_error

if TYPE_CHECKING:
    from fgsync.remote.invocation import Invocation
    from fgsync.remote.models import (
        DependencySummary,
        DependencyVersion,
        dependency_description,
        description_sha256,
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

_OBS_NAMES = frozenset(
    {
        "MAX_OBS_PACKAGE_BYTES",
        "ObjectInfo",
        "ObsAuthError",
        "ObsClient",
        "ObsError",
        "ObsPermissionError",
        "default_obs_endpoint",
        "package_object_key",
    }
)

_MODEL_NAMES = frozenset({"DependencySummary", "DependencyVersion", "dependency_description", "description_sha256"})


def __getattr__(name: str) -> Any:
    if name in _OBS_NAMES:
        from fgsync.remote import obs

        return getattr(obs, name)
    if name == "Invocation":
        from fgsync.remote.invocation import Invocation

        return Invocation
    if name in _MODEL_NAMES:
        from fgsync.remote import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_OBS_PACKAGE_BYTES",
    "UPLOAD_BYTES_PER_S",
    "DependencySummary",
    "DependencyVersion",
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
    "dependency_description",
    "description_sha256",
    "error_from_response",
    "host_port",
    "install_deadlines",
    "network_error",
    "package_object_key",
    "request_budget",
    "request_deadline",
]
