"""One sync of one function: build, package, decide, push or skip. Emits events; prints nothing.

The decision follows SPEC.md "Deciding to skip". With L the new package's SHA-512, R the function's remote
``digest`` and (S, D) the last confirmed push (SHA-512 sent, digest answered):

1. L == S and R == D          -> skipped (unchanged)
2. L == R                     -> skipped (remote-identical)
3. the PUT answers FSS.0409   -> skipped (server-unchanged)

A record (S, D) whose D is not R, with R != L, means someone changed the function since fgsync pushed: drift.
Drift is reported, then pushed over — unless ``no_overwrite``. ``force`` always uploads; ``dry_run`` does
everything but the PUT.

fgsync's own uploads are never drift. Before each PUT the SHA-512 being sent is written to the state as a
*pending send* (:meth:`fgsync.state.StateStore.begin_send`). If the answer never comes (the process killed,
the connection dropped after the service applied the update, a timeout) the send stays pending, and the next
sync or `status` that finds R equal to a pending SHA-512 records it as fgsync's push, (S, D) = (that SHA-512,
R), before deciding (:meth:`~fgsync.state.StateStore.reconcile`). This relies on what FunctionGraph documents
``digest`` to be, the SHA-512 of the function's code, and on what the service answers, the SHA-512 of the zip
it received: fgsync compares R with what it sent, and a service whose digest meant something else would
simply never match (fgsync would report drift, as before). A failed PUT keeps its pending send whatever the
error: the client retries on its own, so an attempt that landed and lost its answer may be followed by one
that was refused (a 429 that outlasts the retries, a 4xx) — and a kept pending send can only ever match a
remote that holds exactly what fgsync sent (the last few are kept).

The remote part of a sync (ShowFunctionCode → decide → PUT → record) holds the function's lock
(:meth:`fgsync.locks.LockFolder.function`), so a `push` and a running `watch` never race on one function: the
second waits (a `waiting` event, reason ``in-flight``), then finds the first one's push in the state and on the
remote. Packaging happens before, outside the lock.

A push whose record cannot be written is still a push: the `pushed` event is emitted, then
:class:`~fgsync.errors.StateError` is raised (not retryable); the store keeps the record in memory, so the rest
of the process (a running watch) does not take it for drift.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from fgsync.config import FunctionConfig
from fgsync.errors import ApiError, DriftError
from fgsync.events import (
    SKIP_REMOTE_IDENTICAL,
    SKIP_SERVER_UNCHANGED,
    SKIP_UNCHANGED,
    WAIT_IN_FLIGHT,
    Emit,
    Event,
)
from fgsync.package import BuildProcesses, Package, SplitPackage, build_and_package, build_function_packages
from fgsync.sync.upload import UploadRoute

if TYPE_CHECKING:  # httpx costs ~70 ms to import, the state (with its locks and JSON) ~10 ms: `fgsync package`
    from fgsync.remote import FunctionGraphClient, ProgressHook, RemoteCode  # needs neither
    from fgsync.state import PushRecord, StateStore
    from fgsync.sync.dependency import DependencyPlan  # imported where used: a function without dependencies
    # (an editor's save) never loads the dependency step

#: How a sync packages a function: its code zip and, with dependencies, its dependency package.
PackageFn = Callable[[FunctionConfig], SplitPackage]

#: The answer FunctionGraph gives an UpdateFunctionCode whose code is what it already has (Serverless Devs reads
#: it as "same code, nothing updated").
SAME_CODE_CODES = frozenset({"FSS.0409", "FGS.0409"})

SKIP_DRY_RUN = "dry-run"


@dataclass(frozen=True)
class SyncResult:
    """What one sync did.

    ``action`` is ``pushed``, ``skipped`` (``reason`` says why; ``dry-run`` when it would have pushed) or
    ``refused`` (drift with ``no_overwrite``; also raised as DriftError). ``package`` is the code zip,
    ``dependency`` the dependency package (None without one).
    """

    function: str
    action: str
    reason: Optional[str]
    package: Package
    digest: Optional[str]
    drift: bool
    ms: int
    dependency: Optional[Package] = None


def package_split(fn: FunctionConfig, *, route: Optional[UploadRoute] = None) -> SplitPackage:
    """Build the function's packages from scratch (no cache): the code zip of `source` (or the jar `artifact`)
    and, with ``dependencies``, the dependency package, from one walk; as large as ``route`` can send (50 MB of
    code and 40 MB of dependency in the request, 300 MB each through ``[obs]``)."""
    route = route or UploadRoute()
    return build_function_packages(fn, max_bytes=route.max_code_bytes, max_dependency_bytes=route.max_dependency_bytes)


def package_function(fn: FunctionConfig) -> Package:
    """The function's code package, from scratch (what a push uploads as code)."""
    return package_split(fn).code


def skip_reason(sha512: str, record: Optional[PushRecord], remote_digest: str) -> Optional[str]:
    """Why an upload of ``sha512`` is not needed (rules 1 and 2 of the module docstring), or None."""
    if record is not None and sha512 == record.sha512 and remote_digest == record.digest:
        return SKIP_UNCHANGED
    if sha512 == remote_digest:
        return SKIP_REMOTE_IDENTICAL
    return None


def decide_state(sha512: str, record: Optional[PushRecord], remote_digest: str) -> str:
    """``in-sync``, ``drift`` or ``out-of-sync`` for a local hash, the last push and the remote digest."""
    if skip_reason(sha512, record, remote_digest) is not None:
        return "in-sync"
    if is_drift(sha512, record, remote_digest):
        return "drift"
    return "out-of-sync"


def is_drift(sha512: str, record: Optional[PushRecord], remote_digest: str) -> bool:
    """True when the remote code is neither what fgsync last pushed nor the local package."""
    return record is not None and remote_digest not in (record.digest, sha512)


def sync_function(
    fn: FunctionConfig,
    *,
    client: FunctionGraphClient,
    store: StateStore,
    endpoint: str,
    emit: Emit,
    force: bool = False,
    dry_run: bool = False,
    no_overwrite: bool = False,
    package_fn: Optional[PackageFn] = None,
    progress: Optional[ProgressHook] = None,
    after_build: Optional[Callable[[FunctionConfig], None]] = None,
    processes: Optional[BuildProcesses] = None,
    route: Optional[UploadRoute] = None,
    clock: Callable[[], float] = time.monotonic,
) -> SyncResult:
    """Run the build (if any), package, compare with the last push and the remote, then upload or skip.

    The comparison and the upload hold the function's lock; when another fgsync process holds it, a
    `waiting` event says so and the sync waits for it. ``route`` says how packages are sent (in the request,
    or through ``[obs]``: :mod:`fgsync.sync.upload`).

    Raises:
        BuildError, PackageError: the function could not be packaged.
        ApiError (and subclasses): the service refused or could not be reached.
        DriftError: the remote changed behind fgsync's back and ``no_overwrite`` is set.
        StateError: pushed, but the record could not be written.
    """
    started = clock()
    route = route or UploadRoute()
    split = build_and_package(
        fn,
        emit=emit,
        package_fn=package_fn or (lambda f: package_split(f, route=route)),
        after_build=after_build,
        processes=processes,
        clock=clock,
    )

    def on_wait(pid: Optional[int]) -> None:
        emit(Event("waiting", fn.name, {"reason": WAIT_IN_FLIGHT, "message": waiting_message(fn.name, pid)}))

    with store.locks.function(endpoint, fn.urn, on_wait=on_wait):
        return _decide(
            fn,
            split,
            route,
            client=client,
            store=store,
            endpoint=endpoint,
            emit=emit,
            force=force,
            dry_run=dry_run,
            no_overwrite=no_overwrite,
            progress=progress,
            started=started,
            clock=clock,
        )


def waiting_message(name: str, pid: Optional[int]) -> str:
    """What a sync says while another fgsync process holds the function."""
    who = f" (pid {pid})" if pid is not None else ""
    return f"waiting for the sync of {name} in another fgsync process{who}"


def recorded_push(store: StateStore, endpoint: str, urn: str, remote_digest: str) -> Optional[PushRecord]:
    """The last push, for `status`: a pending send the remote now holds counts as fgsync's push.

    It is written to the state only when no sync holds the function (status never waits for one).
    """
    with store.locks.function(endpoint, urn, wait=False) as held:
        return store.reconcile(endpoint, urn, remote_digest, persist=held)


def _decide(
    fn: FunctionConfig,
    split: SplitPackage,
    route: UploadRoute,
    *,
    client: FunctionGraphClient,
    store: StateStore,
    endpoint: str,
    emit: Emit,
    force: bool,
    dry_run: bool,
    no_overwrite: bool,
    progress: Optional[ProgressHook],
    started: float,
    clock: Callable[[], float],
) -> SyncResult:
    package = split.code

    def result(action: str, reason: Optional[str], digest: Optional[str], drift: bool = False) -> SyncResult:
        return SyncResult(fn.name, action, reason, package, digest, drift, _ms(clock() - started), split.dependency)

    remote = client.show_code(fn.urn)
    record = store.reconcile(endpoint, fn.urn, remote.digest, persist=not dry_run)
    plan = None
    if fn.has_dependencies or _had_dependency(fn, record, remote):
        from fgsync.sync.dependency import plan_dependency  # here: see the TYPE_CHECKING import

        recorded = record.dependency if record is not None else None
        plan = plan_dependency(
            fn, split.dependency, remote, recorded, client=client, route=route, emit=emit, dry_run=dry_run
        )
    reason = None if force else skip_reason(package.sha512, record, remote.digest)
    if reason is not None and (plan is None or not plan.changes_list):
        emit(Event("skipped", fn.name, {"reason": reason}))
        if record is not None and record.retired and not dry_run:
            from fgsync.sync.dependency import delete_retired  # here: see the TYPE_CHECKING import

            store.retire(endpoint, fn.urn, delete_retired(fn, record.retired, client=client))
        return result("skipped", reason, remote.digest)
    drift = is_drift(package.sha512, record, remote.digest) or (plan is not None and plan.detached)
    if drift:
        assert record is not None
        _report_drift(fn, record, remote, plan, emit=emit, refuse=no_overwrite and not force)
    if dry_run:
        would = f"upload {package.size} bytes to {fn.urn}"
        if plan is not None and plan.action == "published":
            from fgsync.sync.dependency import dependency_name  # here: see the TYPE_CHECKING import

            assert split.dependency is not None
            would += f", after publishing {split.dependency.size} bytes as a new version of {dependency_name(fn)}"
        emit(Event("skipped", fn.name, {"reason": SKIP_DRY_RUN}, extra={"would": would}))
        return result("skipped", SKIP_DRY_RUN, remote.digest, drift)
    return _push(
        fn,
        split,
        remote,
        record,
        plan,
        route,
        client=client,
        store=store,
        endpoint=endpoint,
        emit=emit,
        progress=progress,
        started=started,
        clock=clock,
        drift=drift,
    )


def _had_dependency(fn: FunctionConfig, record: Optional[PushRecord], remote: RemoteCode) -> bool:
    """Whether fgsync attached a dependency to the function before (now ``off``: it is detached and deleted)."""
    if record is not None and (record.dependency is not None or record.retired):
        return True
    if not remote.dependencies:
        return False
    from fgsync.sync.dependency import dependency_name  # here: see the TYPE_CHECKING import

    name = dependency_name(fn)
    return any(version.name == name for version in remote.dependencies)


def _report_drift(
    fn: FunctionConfig,
    record: PushRecord,
    remote: RemoteCode,
    plan: Optional[DependencyPlan],
    *,
    emit: Emit,
    refuse: bool,
) -> None:
    """The `drift` event, and the DriftError of ``--no-overwrite``."""
    fields: dict[str, object] = {"recorded": record.digest, "remote": remote.digest}
    detached = plan is not None and plan.detached and record.dependency is not None
    if detached:
        assert record.dependency is not None
        fields["dependency"] = {"recorded": record.dependency.version_id, "attached": list(remote.depend_version_list)}
    emit(Event("drift", fn.name, fields))
    if not refuse:
        return
    if remote.digest not in (record.digest,):
        what = (
            f"the function's code was changed outside fgsync (remote digest {remote.digest[:12]}, fgsync last "
            f"pushed {record.digest[:12]})"
        )
    else:
        assert record.dependency is not None
        what = f"fgsync's dependency version {record.dependency.version} was detached outside fgsync"
    raise DriftError(
        f"{fn.name}: {what}; --no-overwrite leaves it alone. Run `fgsync push` without --no-overwrite to replace "
        "it with your local code."
    )


def _push(
    fn: FunctionConfig,
    split: SplitPackage,
    remote: RemoteCode,
    record: Optional[PushRecord],
    plan: Optional[DependencyPlan],
    route: UploadRoute,
    *,
    client: FunctionGraphClient,
    store: StateStore,
    endpoint: str,
    emit: Emit,
    progress: Optional[ProgressHook],
    started: float,
    clock: Callable[[], float],
    drift: bool,
) -> SyncResult:
    package = split.code
    if plan is not None:
        depends: Sequence[str] = plan.depend_version_list
    else:
        depends = fn.depend_version_list if fn.depend_version_list is not None else remote.depend_version_list

    def result(action: str, reason: Optional[str], digest: Optional[str]) -> SyncResult:
        return SyncResult(fn.name, action, reason, package, digest, drift, _ms(clock() - started), split.dependency)

    upload_started = clock()
    code_url: Optional[str] = None
    via_obs = route.through_obs(fn, package)  # PackageError before any upload when it fits nowhere
    store.begin_send(endpoint, fn.urn, package.sha512)
    try:
        if via_obs:
            assert route.obs is not None
            code_url = route.obs.put(fn, package, progress=progress)
            answer = client.update_code_from_obs(
                fn.urn,
                code_url=code_url,
                code_filename=fn.code_filename,
                depend_version_list=depends,
                kms_key_id=fn.kms_key_id,
            )
        else:
            answer = client.update_code(
                fn.urn,
                code_type=package.code_type,
                code_filename=fn.code_filename,
                data=package.data,
                depend_version_list=depends,
                kms_key_id=fn.kms_key_id,
                progress=progress,
            )
    except ApiError as error:
        # The pending send stays, refused or not: an earlier attempt of the client's own retries may have landed.
        if error.code not in SAME_CODE_CODES:
            raise
        if plan is not None and plan.changes_list:
            _check_attached(fn, depends, client=client, error=error)
        emit(Event("skipped", fn.name, {"reason": SKIP_SERVER_UNCHANGED}))
        return result("skipped", SKIP_SERVER_UNCHANGED, None)
    if not answer.digest:
        raise ApiError(
            "the service accepted the code but answered no digest; not recording this push",
            status=200,
        )
    pushed: dict[str, object] = {"bytes": package.size, "digest": answer.digest, "ms": _ms(clock() - upload_started)}
    if code_url is not None:
        pushed["code_url"] = code_url  # the package went through OBS
    emit(Event("pushed", fn.name, pushed))
    target = plan.target if plan is not None and plan.target is not None and plan.target.version_id else None
    retired = (*(record.retired if record is not None else ()), *(plan.replaced if plan is not None else ()))
    retired = tuple(dict.fromkeys(d for d in retired if target is None or d.version_id != target.version_id))
    # StateError: pushed, but not recorded
    store.put(endpoint, fn.urn, package.sha512, answer.digest, dependency=target, retired=retired)
    if retired:
        from fgsync.sync.dependency import delete_retired  # here: see the TYPE_CHECKING import

        store.retire(endpoint, fn.urn, delete_retired(fn, retired, client=client))
    if route.obs is not None:
        in_use = {f"{route.obs.folder(fn)}{sha}.zip" for sha in (package.sha256, target.sha256 if target else "")}
        route.obs.clean(fn, in_use)
    return result("pushed", None, answer.digest)


def _check_attached(
    fn: FunctionConfig, depends: Sequence[str], *, client: FunctionGraphClient, error: ApiError
) -> None:
    """FSS.0409 to an update that changes ``depend_version_list``: the same code, but was the list applied?"""
    attached = client.show_config(fn.urn).depend_version_list
    if list(attached) != list(depends):
        raise ApiError(
            f"the service answered {error.code} (the code is the same) to an update that changes the function's "
            f"dependencies, and did not attach them (it has {list(attached)}, fgsync sent {list(depends)})",
            status=error.status,
            code=error.code,
            request_id=error.request_id,
        )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
