"""The dependency part of a sync: which version of fgsync's dependency package the function should have, its
publication when needed, the ``depend_version_list`` to send, and the cleanup of the versions it replaced.

FunctionGraph merges a function's dependency packages into its code folder at run time; attaching happens only
through ``depend_version_list`` on UpdateFunctionCode. fgsync's dependency is named ``fgsync-<package>-<function
name>`` (from the function's URN); each version's ``description`` holds ``fgsync sha256=<hex of the zip>``, the
only fingerprint fgsync can compare (the service's ``etag`` is not one).

The version the function should have (the *target*):

1. the one fgsync recorded, when its SHA-256 is the local package's and it is attached — ``unchanged``;
2. else a version of fgsync's dependency with the same SHA-256 (published before, or attached by hand) —
   ``reused``;
3. else a new version, published with the function's runtime — ``published``.

The list sent is the function's current list without fgsync's versions (or the configured
``depend_version_list``), plus the target: the user's own dependencies are kept. After a successful update the
versions it replaced are deleted; one still in use (412 FSS.1033) is kept, said in a warning, and deleted by a
later sync. With ``dependencies = "off"`` (or an empty set) the target is None: fgsync's versions are detached
and deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from fgsync.errors import ApiError, DependencyInUseError, DependencyNotFoundError, PackageError
from fgsync.events import Emit, Event
from fgsync.sync.upload import UploadRoute

if TYPE_CHECKING:  # fgsync.remote imports httpx: `fgsync package` and `status` of packages alone never need it
    from fgsync.config import FunctionConfig
    from fgsync.package import Package
    from fgsync.remote import DependencyVersion, FunctionGraphClient, RemoteCode
    from fgsync.state import DependencyRecord  # imported where a record is made: `fgsync package` makes none

log = logging.getLogger(__name__)

#: FunctionGraph attaches at most this many dependency versions to a function (403 FSS.1045 beyond).
MAX_DEPENDENCIES = 20


def dependency_name(fn: FunctionConfig) -> str:
    """``fgsync-<package>-<function name>``, from the function's URN (its package and name as the service has
    them). Dependency names allow letters, digits, ``_``, ``.`` and ``-``: the URN's parts already do."""
    from fgsync.config import urn_package_and_name

    package, name = urn_package_and_name(fn.urn)
    return f"fgsync-{package}-{name}"[:96]


@dataclass(frozen=True)
class DependencyPlan:
    """What a sync does about dependencies.

    Attributes:
        target: fgsync's version the function should have attached (None: none).
        action: ``unchanged``, ``reused`` or ``published`` (None without a dependency package).
        depend_version_list: the list to send with the code.
        replaced: fgsync's versions attached now that the update detaches (deleted after it).
        changes_list: the list differs from the function's current one (an update is needed even when the code
            is unchanged).
        detached: fgsync's recorded version is no longer attached although nobody told fgsync (drift).
    """

    target: Optional[DependencyRecord]
    action: Optional[str]
    depend_version_list: tuple[str, ...]
    replaced: tuple[DependencyRecord, ...]
    changes_list: bool
    detached: bool


def plan_dependency(
    fn: FunctionConfig,
    package: Optional[Package],
    remote: RemoteCode,
    recorded: Optional[DependencyRecord],
    *,
    client: FunctionGraphClient,
    emit: Emit,
    route: Optional[UploadRoute] = None,
    dry_run: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> DependencyPlan:
    """Decide (and, when needed, publish) fgsync's dependency version for one sync.

    Args:
        fn: the function.
        package: its dependency package (None: ``dependencies = "off"``, or no file is a dependency).
        remote: what ShowFunctionCode answered (its ``depend_version_list`` and ``dependencies``).
        recorded: the version fgsync recorded with its last push.
        client: the FunctionGraph client.
        emit: where the `dependency` event goes.
        route: how a new version is sent (in the request, or through ``[obs]`` when it is too large).
        dry_run: decide, but publish nothing (a version to publish is then reported without an id).

    Raises:
        PackageError: the function would have more than 20 dependencies (checked before any upload).
        ApiError: the service refused or could not be reached.
    """
    started = clock()
    name = dependency_name(fn)
    attached = tuple(remote.depend_version_list)
    ours = _fgsync_attached(name, remote, recorded)
    base = _base_list(fn, attached, {d.version_id for d in ours})
    detached = recorded is not None and recorded.version_id not in attached
    if package is None:
        return DependencyPlan(None, None, base, ours, base != attached, detached)
    if len(base) + 1 > MAX_DEPENDENCIES:
        raise PackageError(
            f"{fn.name} would have {len(base) + 1} dependencies with fgsync's, over FunctionGraph's limit of "
            f"{MAX_DEPENDENCIES} per function: detach some (depend_version_list in fgsync.toml), or set "
            'dependencies = "off" to package them with the code'
        )
    sha256 = package.sha256
    target, action = _attached_with(sha256, recorded, ours)
    if target is None:
        target, action = _find_or_publish(
            fn, name, package, client=client, route=route or UploadRoute(), dry_run=dry_run
        )
    wanted = (*base, target.version_id) if target.version_id else base
    fields = {
        "action": action,
        "files": package.files,
        "bytes": package.size,
        "sha256": sha256,
        "version": target.version,
        "id": target.version_id or None,
        "ms": round((clock() - started) * 1000),
    }
    if not (dry_run and not target.version_id):  # a dry run publishes nothing: the `skipped` line says what it would
        emit(Event("dependency", fn.name, fields))
    replaced = tuple(d for d in ours if d.version_id != target.version_id)
    return DependencyPlan(target, action, wanted, replaced, wanted != attached, detached)


def _fgsync_attached(
    name: str, remote: RemoteCode, recorded: Optional[DependencyRecord]
) -> tuple[DependencyRecord, ...]:
    """fgsync's versions among those attached: by the dependency's name, or the one fgsync recorded."""
    found: dict[str, DependencyRecord] = {}
    attached = set(remote.depend_version_list)
    for version in remote.dependencies:
        if version.id in attached and version.name == name:
            found[version.id] = _record(version, name)
    if recorded is not None and recorded.version_id in attached and recorded.version_id not in found:
        found[recorded.version_id] = recorded
    return tuple(found.values())


def _base_list(fn: FunctionConfig, attached: Sequence[str], ours: set[str]) -> tuple[str, ...]:
    """The function's own dependencies: the configured list, else what it has now, without fgsync's."""
    source = fn.depend_version_list if fn.depend_version_list is not None else attached
    return tuple(dict.fromkeys(v for v in source if v not in ours))


def _attached_with(
    sha256: str, recorded: Optional[DependencyRecord], ours: Sequence[DependencyRecord]
) -> tuple[Optional[DependencyRecord], str]:
    """The attached version of fgsync's that already holds this zip, if any."""
    if recorded is not None and recorded.sha256 == sha256 and any(d.version_id == recorded.version_id for d in ours):
        return recorded, "unchanged"
    for version in ours:
        if version.sha256 == sha256:
            return version, "unchanged"
    return None, "published"


def _find_or_publish(
    fn: FunctionConfig, name: str, package: Package, *, client: FunctionGraphClient, route: UploadRoute, dry_run: bool
) -> tuple[DependencyRecord, str]:
    sha256 = package.sha256
    summary = client.find_dependency(name)
    if summary is not None:
        for version in sorted(client.list_dependency_versions(summary.id), key=lambda v: -v.version):
            if version.sha256 == sha256:
                return _record(version, name), "reused"
    via_obs = route.through_obs(fn, package, dependency=True)  # PackageError before any upload: fits nowhere
    if dry_run:
        from fgsync.state import DependencyRecord

        return DependencyRecord(name=name, dep_id="", version_id="", version=0, sha256=sha256), "published"
    from fgsync.remote import dependency_description

    runtime = client.show_config(fn.urn).runtime
    description = dependency_description(sha256)
    if via_obs:
        assert route.obs is not None
        link = route.obs.put(fn, package)
        created = client.create_dependency_version(
            name=name, runtime=runtime, description=description, depend_type="obs", depend_link=link
        )
    else:
        created = client.create_dependency_version(
            name=name, runtime=runtime, data=package.data, description=description
        )
    log.info("%s: published dependency %s version %d", fn.name, name, created.version)
    return _record(created, name), "published"


def _record(version: DependencyVersion, name: str) -> DependencyRecord:
    from fgsync.state import DependencyRecord

    return DependencyRecord(
        name=version.name or name,
        dep_id=version.dep_id,
        version_id=version.id,
        version=version.version,
        sha256=version.sha256 or "",
    )


def delete_retired(
    fn: FunctionConfig, retired: Sequence[DependencyRecord], *, client: FunctionGraphClient
) -> tuple[DependencyRecord, ...]:
    """Delete versions fgsync replaced; returns those that stay (in use, or the service could not be reached).

    A version still in use (412 FSS.1033: another function, or a published version of this one, lists it) is
    kept with a warning; a later sync tries again. One already gone counts as deleted. Never raises: the push
    worked, and cleanup is no reason to report it failed.
    """
    kept = []
    for version in retired:
        if not version.dep_id:
            continue
        try:
            client.delete_dependency_version(version.dep_id, version.version)
            log.info("%s: deleted dependency %s version %d", fn.name, version.name, version.version)
        except DependencyNotFoundError:
            continue
        except DependencyInUseError:
            log.warning(
                "%s: dependency %s version %d stays: it is still in use (FSS.1033), by another function or a "
                "published version of this one; fgsync deletes it on a later sync",
                fn.name,
                version.name,
                version.version,
            )
            kept.append(version)
        except ApiError as error:
            log.warning("%s: could not delete dependency %s version %d: %s", fn.name, version.name, version.version,
                        error.message)  # fmt: skip
            kept.append(version)
    return tuple(kept)


def dependency_status(
    local: Optional[Package], recorded: Optional[DependencyRecord], attached: Sequence[str]
) -> tuple[dict[str, object], Optional[str]]:
    """`status`'s ``dependency`` field — ``{version, sha256, attached}`` — and what it says of the function's
    state: ``drift`` when fgsync's recorded version was detached behind its back, ``out-of-sync`` when the
    attached version is not the local package (or one is attached that should not be), else None.

    Args:
        local: the dependency package on disk (None: none).
        recorded: fgsync's version recorded with the last push.
        attached: the function's ``depend_version_list``.
    """
    in_list = recorded is not None and recorded.version_id in attached
    sha256 = local.sha256 if local is not None else None
    # With a package: fgsync's version of it is attached. Without one: none of fgsync's is.
    in_step = in_list and recorded is not None and recorded.sha256 == sha256 if local is not None else not in_list
    fields: dict[str, object] = {
        "version": recorded.version if recorded is not None and in_list else None,
        "sha256": sha256,
        "attached": in_list and in_step,
    }
    if recorded is not None and not in_list:
        return fields, "drift"
    return fields, None if in_step else "out-of-sync"
