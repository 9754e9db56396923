"""`fgsync invoke NAME [--event FILE|-]`: one sync invocation, with status, result and the log tail."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click

from fgsync.cli.common import common_options
from fgsync.cli.completion import complete_function_names
from fgsync.cli.context import app_context
from fgsync.cli.output import failure_summary
from fgsync.config import FunctionConfig, select_functions
from fgsync.errors import EXIT_OK, HandlerError, UsageError
from fgsync.events import Emit, Event
from fgsync.remote import FunctionGraphClient, Invocation

#: FunctionGraph's limit for a sync invocation's event.
MAX_EVENT_BYTES = 6 * 1024 * 1024


@click.command("invoke")
@click.argument("name", shell_complete=complete_function_names)
@click.option(
    "--event",
    "event_path",
    metavar="FILE",
    help="The event (JSON): a file, or - for stdin. Default: the function's invoke_event, else {}.",
)
@common_options
def invoke_command(name: str, event_path: Optional[str]) -> int:
    """Invoke a function synchronously and print its status, result and log tail."""
    app = app_context()
    config = app.load_config()
    (fn,) = select_functions(config, [name])
    event = read_event(fn, event_path)
    with app.make_client(config) as client:
        invocation = invoke_function(fn, client, event, emit=app.reporter.emit)
    if invocation.function_error:
        # The `invoked` line carries the whole error object (stack trace included); the closing
        # `Error:` line says in a few words what went wrong, and makes the exit code 1.
        raise HandlerError(f"{fn.name}: {describe_failure(invocation)}")
    return EXIT_OK


def describe_failure(invocation: Invocation) -> str:
    """A one-line account of a failed invocation: ``the handler failed with status 500: ValueError: bad``.

    The v1 answer's result is the error object (``errorType``, ``errorMessage``, ``stackTrace``) when the
    handler raised or timed out; anything else is shown as it came, cut to 200 characters, on one line.
    """
    detail = failure_summary(invocation.result)
    if detail is None:
        raw = invocation.result if len(invocation.result) <= 200 else invocation.result[:200] + "…"
        detail = " ".join(raw.split())
    head = f"the handler failed with status {invocation.status}"
    return f"{head}: {detail}" if detail else head


def read_event(fn: FunctionConfig, event_path: Optional[str]) -> bytes:
    """The event bytes: --event FILE or - (stdin), else the function's invoke_event, else ``{}``.

    Raises:
        UsageError: the file is missing, is not JSON, or is over FunctionGraph's 6 MB limit.
    """
    if event_path == "-":
        data, origin = sys.stdin.buffer.read(), "stdin"
    else:
        path = Path(event_path) if event_path else fn.invoke_event
        if path is None:
            return b"{}"
        origin = str(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read the event file {origin}: {error.strerror or error}") from None
    if len(data) > MAX_EVENT_BYTES:
        raise UsageError(f"the event from {origin} is {len(data)} bytes; a sync invocation takes at most 6 MB")
    try:
        json.loads(data or b"null")
    except ValueError as error:
        raise UsageError(f"the event from {origin} is not JSON: {error}") from None
    return data or b"{}"


def invoke_function(fn: FunctionConfig, client: FunctionGraphClient, event: bytes, *, emit: Emit) -> Invocation:
    """Invoke and emit an `invoked` event; errors (service, network) propagate as FgsyncError."""
    invocation = client.invoke(fn.urn, event)
    emit(
        Event(
            "invoked",
            fn.name,
            {"status": invocation.status, "result": invocation.result, "log": invocation.log, "ms": invocation.ms},
            extra={"function_error": invocation.function_error},
        )
    )
    return invocation
