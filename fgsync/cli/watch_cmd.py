"""`fgsync watch`: an initial sync, then one per settled burst of changes, until Ctrl+C.

The loop itself is :class:`fgsync.watch.Daemon`; this module wires it to the config, the credentials, the
client and the reporter, and owns the signals: the first SIGINT/SIGTERM stops watching and lets an upload in
flight finish (exit 130 after SIGINT, 0 after SIGTERM); a second one exits at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import click

from fgsync.auth.credentials import credential_stamp
from fgsync.cli.common import common_options
from fgsync.cli.completion import complete_function_names
from fgsync.cli.context import AppContext, app_context
from fgsync.cli.invoke_cmd import invoke_function, read_event
from fgsync.cli.keys import HINT as KEYS_HINT
from fgsync.cli.keys import KeyReader, keys_wanted
from fgsync.cli.notify import Notifier
from fgsync.cli.watch_signals import Stopper, handle_signals, make_abort
from fgsync.config import Config, FunctionConfig, load_config, select_functions
from fgsync.errors import EXIT_INTERRUPTED, EXIT_OK, FgsyncError
from fgsync.events import Emit, error_event
from fgsync.ignore import IgnoreRules
from fgsync.package import BuildProcesses, PackageBuilder, ReportedWalk, SplitPackage
from fgsync.package.fingerprint import InputFingerprints
from fgsync.remote import FunctionGraphClient
from fgsync.sync import SyncResult, sync_function
from fgsync.sync.upload import UploadRoute
from fgsync.watch import Daemon, SyncStep, WatchSettings

logger = logging.getLogger(__name__)

#: How often the main thread looks up from waiting for the daemon (signals are handled between looks).
_JOIN_STEP = 0.2


class ClientCache:
    """One FunctionGraph client (and the route packages take: in the request, or through ``[obs]``) for every
    sync thread, rebuilt when the credentials change.

    Credentials are resolved on first use, not at start, so `fgsync watch` can start before `fgsync login`:
    the first sync fails with a credentials error, the daemon pauses the function, and the next sync after
    the login (seen through ``stamp``) builds a client with the new credentials.

    Args:
        make: builds the client, or the client and its route (one resolution of the credentials for both).
        stamp: a fingerprint of the credentials (and the config they are for).
    """

    def __init__(
        self,
        make: Callable[[], Union[FunctionGraphClient, tuple[FunctionGraphClient, UploadRoute]]],
        stamp: Callable[[], str],
    ) -> None:
        self._make = make
        self._stamp = stamp
        self._lock = threading.Lock()
        self._made: Optional[tuple[FunctionGraphClient, UploadRoute]] = None
        self._made_stamp: Optional[str] = None
        # Replaced clients may still serve a request on another thread; they are closed at the end.
        self._retired: list[tuple[FunctionGraphClient, UploadRoute]] = []

    def _current(self) -> tuple[FunctionGraphClient, UploadRoute]:
        stamp = self._stamp()
        with self._lock:
            if self._made is None or stamp != self._made_stamp:
                made = self._make()
                pair = made if isinstance(made, tuple) else (made, UploadRoute())
                if self._made is not None:
                    logger.info("credentials changed; using the new ones")
                    self._retired.append(self._made)
                self._made, self._made_stamp = pair, stamp
            return self._made

    def get(self) -> FunctionGraphClient:
        """The client for the current credentials.

        Raises:
            CredentialsError: no usable credentials (the daemon pauses the function).
        """
        return self._current()[0]

    def route(self) -> UploadRoute:
        """The route for the current credentials (its OBS client signs with them).

        Raises:
            CredentialsError: no usable credentials.
        """
        return self._current()[1]

    def close(self) -> None:
        """Close every client made."""
        with self._lock:
            made = [*self._retired, *([self._made] if self._made is not None else [])]
            self._made, self._retired = None, []
        for client, route in made:
            client.close()
            route.close()


class IncrementalPackager:
    """Packages functions with :class:`fgsync.package.PackageBuilder` objects kept across syncs, so a save
    re-deflates only the files that changed (the bytes are those of a cold build), in the code zip and the
    dependency package alike.

    Functions whose package inputs are the same (source, rules, build, code type, dependencies, limits) share one
    builder, and one build serves them all when nothing changed for them after it began: an edit in a folder 50
    functions share is packaged once per burst, not 50 times. What changed when comes from the daemon
    (:meth:`changed`, its ``on_change``). A function whose definition changes (fgsync.toml reloaded) gets the
    builder of its new inputs.

    Args:
        route: how packages will be sent (it sets the size limits: 300 MB with ``[obs]``); read at each build.
        told: :meth:`changed` is called for every change (the daemon's ``on_change``): only then may one build
            serve several syncs; else every call builds (from its cache).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        route: Callable[[], UploadRoute] = UploadRoute,
        *,
        told: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._route = route
        self._told = told
        self._clock = clock
        self._lock = threading.Lock()
        self._shared: dict[tuple[object, ...], _Shared] = {}
        self._key_of: dict[str, tuple[object, ...]] = {}
        self._changed_at: dict[str, float] = {}
        #: What the build of each function's last package saw (None: it walked the whole tree).
        self._served: dict[str, Optional[ReportedWalk]] = {}

    def changed(self, name: str, paths: Sequence[str] = ("",)) -> None:
        """A burst touched the function now, at ``paths`` (relative to its source; "" for anywhere): the next
        package of it must come from a build started later, which looks at those paths (and the others reported
        since its builder's last build) instead of walking the whole tree."""
        with self._lock:
            self._changed_at[name] = self._clock()
            shared = self._shared.get(self._key_of.get(name, ()))
            if shared is not None and shared.pending is not None:
                if "" in paths:
                    shared.pending = None
                else:
                    shared.pending.update(paths)

    def missed(self, fn: FunctionConfig) -> list[str]:
        """After a sync of ``fn``: the paths a full walk finds changed that no event reported since the build of
        the package it got (see :meth:`fgsync.package.PackageBuilder.missed`); [] when that build walked
        everything. Functions that share a builder are each verified against their own package's build: what
        one of them found and repacked is still missing from the others' code. Slow (a walk of the whole tree):
        call it from a low-priority thread."""
        with self._lock:
            shared = self._shared.get(self._key_of.get(fn.name, ()))
            since = self._served.get(fn.name)
        return shared.builder.missed(since) if shared is not None and since is not None else []

    def aliases(self, name: str, rel: str) -> list[str]:
        """The names ``rel`` (a path the function's rules ignore) has in its package through the symlinks its last
        build followed (see :meth:`fgsync.package.PackageBuilder.aliases`); called by the watcher, per event."""
        with self._lock:
            shared = self._shared.get(self._key_of.get(name, ()))
        return shared.builder.aliases(rel) if shared is not None else []

    def __call__(self, fn: FunctionConfig) -> SplitPackage:
        """The function's packages, as :func:`fgsync.sync.package_split` would build them."""
        route = self._route()
        key = _inputs(fn, route)
        with self._lock:
            shared = self._shared.get(key)
            if shared is None:
                rules = IgnoreRules.for_function(fn.source, exclude=fn.exclude, use_gitignore=fn.use_gitignore)
                builder = PackageBuilder(
                    fn.source,
                    rules=rules,
                    code_type=fn.code_type,
                    artifact=fn.artifact,
                    dependencies=fn.dependencies,
                    max_bytes=route.max_code_bytes,
                    max_dependency_bytes=route.max_dependency_bytes,
                )
                shared = self._shared[key] = _Shared(builder)
            self._key_of[fn.name] = key
            changed_at = self._changed_at.get(fn.name, 0.0)
        with shared.lock:  # one build at a time per inputs; the others wait for it, then see if it serves them
            if self._told and shared.last is not None and shared.started >= changed_at and not fn.build:
                with self._lock:
                    self._served[fn.name] = shared.walked
                return shared.last
            with self._lock:
                started = self._clock()
                # Only the daemon tells of every change; a build command writes where no event is reported.
                changed = shared.pending if self._told and not fn.build else None
                shared.pending = set()
            split = shared.builder.build_split(changed)
            shared.last, shared.started, shared.walked = split, started, shared.builder.last_walk()
            with self._lock:
                self._served[fn.name] = shared.walked
            return split


@dataclass
class _Shared:
    """One builder for the functions of the same inputs, and its last build (when it began)."""

    builder: PackageBuilder
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: Optional[SplitPackage] = None
    started: float = -1.0
    #: What the build of ``last`` saw, when it looked at reported paths only (its verifying walk compares with it).
    walked: Optional[ReportedWalk] = None
    #: The paths reported since the last build began; None: the whole tree (the first build walks it anyway).
    pending: Optional[set[str]] = None


def _inputs(fn: FunctionConfig, route: UploadRoute) -> tuple[object, ...]:
    """What a function's packages depend on: equal inputs, equal packages."""
    return (
        fn.source,
        fn.exclude,
        fn.use_gitignore,
        fn.code_type,
        fn.artifact,
        fn.dependencies,
        fn.build,
        route.max_code_bytes,
        route.max_dependency_bytes,
    )


@dataclass
class WatchState:
    """What the sync step reads at each sync, replaced when fgsync.toml is reloaded."""

    config: Config


def make_sync_step(
    app: AppContext,
    state: WatchState,
    clients: ClientCache,
    *,
    invoke: bool = False,
    fingerprints: Optional[InputFingerprints] = None,
    builds: Optional[BuildProcesses] = None,
    packager: Optional[IncrementalPackager] = None,
) -> SyncStep:
    """The daemon's sync step: :func:`fgsync.sync.sync_function` with incremental packaging, then (``invoke``)
    an invocation after a push.

    One progress bar at a time: uploads running in parallel beyond the first go without one.
    """
    bar_slot = threading.Lock()
    if packager is None:
        packager = IncrementalPackager(lambda: UploadRoute(obs_configured=state.config.obs is not None))

    def step(fn: FunctionConfig, emit: Emit) -> SyncResult:
        client, route = clients.get(), clients.route()
        with contextlib.ExitStack() as stack:
            progress = None
            if bar_slot.acquire(blocking=False):
                stack.callback(bar_slot.release)
                progress = stack.enter_context(app.reporter.progress(fn.name))
            result = sync_function(
                fn,
                client=client,
                store=app.store,
                endpoint=state.config.endpoint,
                emit=emit,
                package_fn=packager,
                progress=progress,
                after_build=fingerprints.record if fingerprints is not None else None,
                processes=builds,
                route=route,
            )
        if invoke and result.action == "pushed":
            _invoke(fn, client, emit)
        return result

    return step


def _invoke(fn: FunctionConfig, client: FunctionGraphClient, emit: Emit) -> None:
    # The push worked; a failed invocation is reported, never retried as if the push had failed.
    try:
        invoke_function(fn, client, read_event(fn, None), emit=emit)
    except FgsyncError as error:
        emit(error_event(fn.name, error.code, f"invoke: {error.message}", retryable=False))


def warn_own_folders_inside(functions: Sequence[FunctionConfig]) -> None:
    """fgsync's cache folder inside a source is left out of packages and watches; say so once, at start."""
    for fn in functions:
        rules = IgnoreRules.for_function(fn.source, exclude=fn.exclude, use_gitignore=fn.use_gitignore)
        for rel in sorted(rules.private_inside):
            logger.warning(
                "%s: fgsync's own folder %s is inside the source %s; it is never packaged or watched",
                fn.name,
                rel,
                fn.source,
            )


@click.command("watch")
@click.argument("names", nargs=-1, shell_complete=complete_function_names)
@click.option("--invoke", is_flag=True, help="After each push, invoke the function with its invoke_event.")
@click.option(
    "--debounce-ms",
    type=click.IntRange(min=0),
    metavar="N",
    help="Quiet time that ends a burst of changes (default: watch.debounce_ms, 300).",
)
@click.option(
    "--max-wait-ms",
    type=click.IntRange(min=0),
    metavar="N",
    help="Push a burst that never goes quiet after this long (default: watch.max_wait_ms, 3000).",
)
@click.option("--poll", is_flag=True, default=None, help="Poll the file system instead of native events.")
@click.option("--notify", is_flag=True, help="A desktop notification when a sync fails, and when it recovers.")
@common_options
def watch_command(
    names: Sequence[str],
    invoke: bool,
    debounce_ms: Optional[int],
    max_wait_ms: Optional[int],
    poll: Optional[bool],
    notify: bool = False,
) -> int:
    """Sync now, then after every settled burst of changes, until Ctrl+C.

    Edits that leave the package identical (a touch, an edit then undo) are skipped, not uploaded. Events on
    ignored paths (.git, editor temporaries, .fgsyncignore, exclude) trigger nothing, and files written by a
    function's build command never trigger another build. fgsync.toml is read again when it changes.

    On a terminal: Enter syncs every function now, i invokes them again, q stops (as Ctrl+C).
    """
    app = app_context()
    config = app.load_config()
    functions = select_functions(config, names)
    click.get_current_context().with_resource(app.store.locks.watch(config.path))  # LockedError: one watch only
    state = WatchState(config)

    def stamp() -> str:
        current = state.config
        return f"{current.endpoint}\n" + credential_stamp(
            iam_endpoint=current.iam_endpoint, project_id=current.project_id, env=os.environ
        )

    def settings(loaded: Config) -> WatchSettings:
        return WatchSettings(
            select_functions(loaded, names),
            loaded.watch.debounce_ms if debounce_ms is None else debounce_ms,
            loaded.watch.max_wait_ms if max_wait_ms is None else max_wait_ms,
            loaded.watch.poll if poll is None else poll,
            context=loaded,
        )

    def on_reload(new: WatchSettings) -> None:
        state.config = new.context

    emit = Notifier().wrap(app.reporter.emit) if notify else app.reporter.emit
    def remote() -> tuple[FunctionGraphClient, UploadRoute]:
        credentials = app.credentials(state.config)
        return app.make_client(state.config, credentials), app.make_route(state.config, credentials)

    clients = ClientCache(remote, stamp)
    fingerprints = InputFingerprints()
    builds = BuildProcesses()
    packager = IncrementalPackager(lambda: UploadRoute(obs_configured=state.config.obs is not None), told=True)
    stop = threading.Event()
    first = settings(config)
    warn_own_folders_inside(functions)
    daemon = Daemon(
        first.functions,
        sync=make_sync_step(
            app, state, clients, invoke=invoke, fingerprints=fingerprints, builds=builds, packager=packager
        ),
        emit=emit,
        stop_event=stop,
        debounce_ms=first.debounce_ms,
        max_wait_ms=first.max_wait_ms,
        poll=first.poll,
        credential_stamp=stamp,
        inputs_changed=fingerprints.changed,
        config_file=config.path,
        reload=lambda: settings(load_config(config.path)),
        on_reload=on_reload,
        on_change=packager.changed,
        missed=packager.missed,
        aliases=packager.aliases,
    )
    app.reporter.on_closed = stop.set  # `fgsync watch | head -1`: the reader is gone, stop as on SIGTERM
    keys: Optional[KeyReader] = None
    cleanup: list[Callable[[], None]] = []
    stopper = Stopper(stop, make_abort(daemon, builds, cleanup=cleanup))
    if keys_wanted(json_mode=app.json):
        keys = KeyReader(
            on_sync=daemon.request_sync,
            on_invoke=lambda: _invoke_again(app, daemon, clients, emit, invoke=invoke),
            on_quit=lambda: stopper.trigger(signal.SIGINT),
        )
        cleanup.append(keys.restore)
        app.reporter.hint = KEYS_HINT
    failure: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except BaseException as error:  # re-raised in the main thread, which reports it
            failure.append(error)

    # The daemon runs on its own thread so the main thread only waits: a signal handler then never
    # interrupts code holding one of the daemon's locks.
    with handle_signals(stopper):
        thread = threading.Thread(target=run, name="fgsync-daemon")
        thread.start()
        try:
            if keys is not None:
                keys.start()
            while thread.is_alive():
                thread.join(_JOIN_STEP)
        finally:
            stop.set()
            if keys is not None:
                keys.close()
            thread.join()
            clients.close()
    if failure:
        raise failure[0]
    return EXIT_INTERRUPTED if stopper.interrupted else EXIT_OK


def _invoke_again(app: AppContext, daemon: Daemon, clients: ClientCache, emit: Emit, *, invoke: bool) -> None:
    """The ``i`` key: invoke the watched functions again (every one with --invoke, else those with an event)."""
    chosen = [fn for fn in daemon.functions.values() if invoke or fn.invoke_event is not None]
    if not chosen:
        app.reporter.info("nothing to invoke: start `fgsync watch --invoke`, or set invoke_event for a function")
        return
    for fn in chosen:
        try:
            _invoke(fn, clients.get(), emit)
        except FgsyncError as error:
            emit(error_event(fn.name, error.code, f"invoke: {error.message}", retryable=False))
