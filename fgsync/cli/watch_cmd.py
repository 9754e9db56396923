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
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Callable, Optional

import click

from fgsync.auth.credentials import credential_stamp
from fgsync.cli.common import common_options
from fgsync.cli.completion import complete_function_names
from fgsync.cli.context import AppContext, app_context
from fgsync.cli.invoke_cmd import invoke_function, read_event
from fgsync.config import Config, FunctionConfig, select_functions
from fgsync.errors import EXIT_INTERRUPTED, EXIT_OK, FgsyncError
from fgsync.events import Emit, error_event
from fgsync.ignore import IgnoreRules
from fgsync.package import Package, PackageBuilder
from fgsync.remote import FunctionGraphClient
from fgsync.sync import SyncResult, sync_function
from fgsync.watch import Daemon, SyncStep

logger = logging.getLogger(__name__)

#: How often the main thread looks up from waiting for the daemon (signals are handled between looks).
_JOIN_STEP = 0.2


class ClientCache:
    """One FunctionGraph client for every sync thread, rebuilt when the credentials change.

    Credentials are resolved on first use, not at start, so `fgsync watch` can start before `fgsync login`:
    the first sync fails with a credentials error, the daemon pauses the function, and the next sync after
    the login (seen through ``stamp``) builds a client with the new credentials.
    """

    def __init__(
        self,
        make: Callable[[], FunctionGraphClient],
        stamp: Callable[[], str],
    ) -> None:
        self._make = make
        self._stamp = stamp
        self._lock = threading.Lock()
        self._client: Optional[FunctionGraphClient] = None
        self._client_stamp: Optional[str] = None
        # Replaced clients may still serve a request on another thread; they are closed at the end.
        self._retired: list[FunctionGraphClient] = []

    def get(self) -> FunctionGraphClient:
        """The client for the current credentials.

        Raises:
            CredentialsError: no usable credentials (the daemon pauses the function).
        """
        stamp = self._stamp()
        with self._lock:
            if self._client is None or stamp != self._client_stamp:
                client = self._make()
                if self._client is not None:
                    logger.info("credentials changed; using the new ones")
                    self._retired.append(self._client)
                self._client, self._client_stamp = client, stamp
            return self._client

    def close(self) -> None:
        """Close every client made."""
        with self._lock:
            clients = [*self._retired, *([self._client] if self._client is not None else [])]
            self._client, self._retired = None, []
        for client in clients:
            client.close()


class IncrementalPackager:
    """Packages each function with its own :class:`fgsync.package.PackageBuilder`, kept across syncs, so a
    save re-deflates only the files that changed (the bytes are those of a cold build)."""

    def __init__(self) -> None:
        self._builders: dict[str, PackageBuilder] = {}
        self._lock = threading.Lock()

    def __call__(self, fn: FunctionConfig) -> Package:
        """The function's package, as :func:`fgsync.sync.package_function` would build it."""
        with self._lock:
            builder = self._builders.get(fn.name)
            if builder is None:
                rules = IgnoreRules.for_function(fn.source, exclude=fn.exclude, use_gitignore=fn.use_gitignore)
                builder = PackageBuilder(fn.source, rules=rules, code_type=fn.code_type, artifact=fn.artifact)
                self._builders[fn.name] = builder
        return builder.build()


def make_sync_step(app: AppContext, config: Config, clients: ClientCache, *, invoke: bool = False) -> SyncStep:
    """The daemon's sync step: :func:`fgsync.sync.sync_function` with incremental packaging, then (``invoke``)
    an invocation after a push.

    One progress bar at a time: uploads running in parallel beyond the first go without one.
    """
    bar_slot = threading.Lock()
    packager = IncrementalPackager()

    def step(fn: FunctionConfig, emit: Emit) -> SyncResult:
        client = clients.get()
        with contextlib.ExitStack() as stack:
            progress = None
            if bar_slot.acquire(blocking=False):
                stack.callback(bar_slot.release)
                progress = stack.enter_context(app.reporter.progress(fn.name))
            result = sync_function(
                fn,
                client=client,
                store=app.store,
                endpoint=config.endpoint,
                emit=emit,
                package_fn=packager,
                progress=progress,
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


@contextlib.contextmanager
def handle_signals(stop: threading.Event, *, abort: Callable[[int], None]) -> Iterator[list[int]]:
    """SIGINT and SIGTERM set ``stop``; a second one calls ``abort(signum)``. Yields the signals received.

    Outside the main thread (where Python cannot install handlers) nothing is installed.
    """
    received: list[int] = []

    def handler(signum: int, _frame: Optional[FrameType]) -> None:
        if received:
            abort(signum)
        received.append(signum)
        stop.set()

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:
        logger.debug("not the main thread: no signal handlers")
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _abort(_signum: int) -> None:
    # Second Ctrl+C: the user wants out now, upload or not. os._exit skips joining the upload thread.
    sys.stdout.flush()
    sys.stderr.write("Aborted.\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


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
@common_options
def watch_command(
    names: Sequence[str], invoke: bool, debounce_ms: Optional[int], max_wait_ms: Optional[int], poll: Optional[bool]
) -> int:
    """Sync now, then after every settled burst of changes, until Ctrl+C.

    Edits that leave the package identical (a touch, an edit then undo) are skipped, not uploaded. Events on
    ignored paths (.git, editor temporaries, .fgsyncignore, exclude) trigger nothing, and files written by a
    function's build command never trigger another build.
    """
    app = app_context()
    config = app.load_config()
    functions = select_functions(config, names)
    click.get_current_context().with_resource(app.store.locks.watch(config.path))  # LockedError: one watch only

    def stamp() -> str:
        return credential_stamp(iam_endpoint=config.iam_endpoint, project_id=config.project_id, env=os.environ)

    clients = ClientCache(lambda: app.make_client(config), stamp)
    stop = threading.Event()
    daemon = Daemon(
        functions,
        sync=make_sync_step(app, config, clients, invoke=invoke),
        emit=app.reporter.emit,
        stop_event=stop,
        debounce_ms=config.watch.debounce_ms if debounce_ms is None else debounce_ms,
        max_wait_ms=config.watch.max_wait_ms if max_wait_ms is None else max_wait_ms,
        poll=config.watch.poll if poll is None else poll,
        credential_stamp=stamp,
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except BaseException as error:  # re-raised in the main thread, which reports it
            failure.append(error)

    # The daemon runs on its own thread so the main thread only waits: a signal handler then never
    # interrupts code holding one of the daemon's locks.
    with handle_signals(stop, abort=_abort) as received:
        thread = threading.Thread(target=run, name="fgsync-daemon")
        thread.start()
        try:
            while thread.is_alive():
                thread.join(_JOIN_STEP)
        finally:
            stop.set()
            thread.join()
            clients.close()
    if failure:
        raise failure[0]
    return EXIT_INTERRUPTED if signal.SIGINT in received else EXIT_OK
