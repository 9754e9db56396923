"""`fgsync push` and `fgsync status` (`fgsync package` is :mod:`fgsync.cli.package_cmd`)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Optional

import click

from fgsync.cli.common import common_options
from fgsync.cli.completion import complete_function_names
from fgsync.cli.context import AppContext, app_context
from fgsync.config import Config, FunctionConfig, select_functions
from fgsync.errors import EXIT_CREDENTIALS, EXIT_OK, CredentialsError, FgsyncError
from fgsync.events import Event, error_event
from fgsync.sync import decide_state, package_split, recorded_push, sync_function
from fgsync.sync.upload import UploadRoute

if TYPE_CHECKING:
    from fgsync.cli.output import Reporter
    from fgsync.remote import FunctionGraphClient


@click.command("push")
@click.argument("names", nargs=-1, shell_complete=complete_function_names)
@click.option("--force", is_flag=True, help="Upload even when nothing changed.")
@click.option("--dry-run", is_flag=True, help="Do everything but the upload; say what would happen.")
@click.option("--no-overwrite", is_flag=True, help="Leave a function alone if its code changed outside fgsync.")
@common_options
def push_command(names: tuple[str, ...], force: bool, dry_run: bool, no_overwrite: bool) -> int:
    """Sync each function once: package, compare, then upload or skip."""
    app = app_context()
    config = app.load_config()
    functions = select_functions(config, names)
    routes: list[UploadRoute] = []
    lock = threading.Lock()

    def route() -> UploadRoute:
        with lock:  # one route (and OBS client) for every function of the command
            if not routes:
                routes.append(app.make_route(config, app.credentials(config)))
            return routes[0]

    def push_one(fn: FunctionConfig, client: FunctionGraphClient) -> None:
        with app.reporter.progress(fn.name) as hook:
            sync_function(
                fn,
                client=client,
                store=app.store,
                endpoint=config.endpoint,
                emit=app.reporter.emit,
                force=force,
                dry_run=dry_run,
                no_overwrite=no_overwrite,
                progress=hook,
                route=route(),
            )

    try:
        return _each_function(app, config, functions, push_one)
    finally:
        for made in routes:
            made.close()


@click.command("status")
@click.argument("names", nargs=-1, shell_complete=complete_function_names)
@common_options
def status_command(names: tuple[str, ...]) -> int:
    """Per function: local SHA-512, last push, remote digest, and in sync / out of sync / drift."""
    app = app_context()
    config = app.load_config()
    functions = select_functions(config, names)

    def unknown(fn: FunctionConfig) -> None:
        empty = {"sha512": None, "pushed_sha512": None, "remote_digest": None, "state": "unknown"}
        app.reporter.emit(Event("status", fn.name, empty))

    return _each_function(app, config, functions, lambda fn, client: _status_one(app, config, fn, client), unknown)


#: push and status work on at most this many functions at once, so at most this many requests are in flight (SPEC).
PARALLEL_FUNCTIONS = 8


def _each_function(
    app: AppContext,
    config: Config,
    functions: tuple[FunctionConfig, ...],
    action: Callable[[FunctionConfig, FunctionGraphClient], None],
    on_error: Optional[Callable[[FunctionConfig], None]] = None,
) -> int:
    """Run ``action`` for each function, up to 8 at once, with one client (one connection pool between them).

    A failure is reported and the other functions go on; the worst exit code is returned. Output is in the
    configuration's order: the first function not yet done writes its events as they come, the others' are held
    and written as soon as every function before them is done (so a slow first function holds back the output,
    not the work, of the ones after it). A credentials problem stops the work, since every function would fail
    the same way: no function starts after it, those under way finish and are reported, and a CredentialsError
    is raised again (exit 3) once they are. One function runs in this thread, with its progress bar; several
    show none (their bars would be out of order).
    """
    with app.make_client(config) as client:
        if len(functions) == 1:
            return _run_one(app, functions[0], client, action, on_error)
        app.store  # noqa: B018 - made here, once: the threads share it (it keeps what it wrote in memory)
        order = _InOrder(app.reporter, len(functions))
        stop = threading.Event()

        def work(index: int, fn: FunctionConfig) -> int:
            try:
                if stop.is_set():
                    return EXIT_OK
                with app.reporter.routed(order.route(index)):
                    try:
                        code = _run_one(app, fn, client, action, on_error)
                    except CredentialsError:
                        stop.set()
                        raise
                if code == EXIT_CREDENTIALS:
                    stop.set()
                return code
            finally:
                order.finish(index)

        from concurrent.futures import ThreadPoolExecutor  # here: one function (an editor's save) needs no pool

        worst = EXIT_OK
        refused: Optional[CredentialsError] = None
        pool = ThreadPoolExecutor(max_workers=PARALLEL_FUNCTIONS, thread_name_prefix="fgsync-function")
        try:
            futures = [pool.submit(work, index, fn) for index, fn in enumerate(functions)]
            for future in futures:
                try:
                    worst = max(worst, future.result())
                except CredentialsError as error:
                    refused = refused or error
        except BaseException:
            stop.set()  # Ctrl+C: nothing new starts; the functions under way finish
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            order.close()  # after Ctrl+C: what the finished functions said is still written, in order
        if refused is not None:
            raise refused
        return worst


def _run_one(
    app: AppContext,
    fn: FunctionConfig,
    client: FunctionGraphClient,
    action: Callable[[FunctionConfig, FunctionGraphClient], None],
    on_error: Optional[Callable[[FunctionConfig], None]],
) -> int:
    """``action`` for one function: its exit code, its failure reported (a CredentialsError is raised)."""
    try:
        action(fn, client)
    except CredentialsError:
        raise
    except FgsyncError as error:
        _report(app, fn, error)
        if on_error is not None:
            on_error(fn)
        return error.exit_code
    return EXIT_OK


class _InOrder:
    """Routes the events of functions worked on at once so that they come out in the configuration's order.

    The first function not yet finished (the head) writes through; the others' events are held, and written when
    the head moves on to them.
    """

    def __init__(self, reporter: Reporter, count: int) -> None:
        self._reporter = reporter
        self._lock = threading.Lock()
        self._held: list[list[Event]] = [[] for _ in range(count)]
        self._finished = [False] * count
        self._head = 0

    def route(self, index: int) -> Callable[[Event], None]:
        """Where function ``index``'s events go."""

        def emit(event: Event) -> None:
            with self._lock:
                if index == self._head:
                    self._reporter.write_event(event)
                else:
                    self._held[index].append(event)

        return emit

    def finish(self, index: int) -> None:
        """Function ``index`` is done (or will not run): move the head past every finished function."""
        with self._lock:
            self._finished[index] = True
            while self._head < len(self._finished) and self._finished[self._head]:
                self._head += 1
                if self._head < len(self._held):
                    held, self._held[self._head] = self._held[self._head], []
                    for event in held:
                        self._reporter.write_event(event)

    def close(self) -> None:
        """Write whatever is still held, in order (functions that never ran hold nothing)."""
        for index in range(len(self._finished)):
            self.finish(index)


def _status_one(app: AppContext, config: Config, fn: FunctionConfig, client: FunctionGraphClient) -> None:
    split = package_split(fn, route=UploadRoute(obs_configured=config.obs is not None))
    package = split.code
    remote = client.show_config(fn.urn)
    record = recorded_push(app.store, config.endpoint, fn.urn, remote.digest)
    state = decide_state(package.sha512, record, remote.digest)
    fields: dict[str, object] = {
        "sha512": package.sha512,
        "pushed_sha512": record.sha512 if record else None,
        "remote_digest": remote.digest or None,
        "state": state,
        "runtime": remote.runtime,
        "code_size": remote.code_size,
        "last_modified": remote.last_modified,
    }
    if remote.code_type == "obs" and remote.code_url:
        fields["code_url"] = remote.code_url  # the code came through OBS: which object
    recorded = record.dependency if record is not None else None
    if fn.has_dependencies or recorded is not None:
        from fgsync.sync.dependency import dependency_status  # here: a function without dependencies never needs it

        fields["dependency"], says = dependency_status(split.dependency, recorded, remote.depend_version_list)
        if says == "drift" or (says == "out-of-sync" and state == "in-sync"):
            fields["state"] = says
    app.reporter.emit(Event("status", fn.name, fields))


def _report(app: AppContext, fn: FunctionConfig, error: FgsyncError) -> None:
    detail = getattr(error, "output", "") or None
    app.reporter.emit(
        error_event(
            fn.name, error.code, error.message, retryable=error.retryable, extra={"detail": detail} if detail else None
        )
    )
