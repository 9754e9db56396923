"""fgsync's command line: ``main(argv) -> int``, the click group and the global options.

Global options (``--config``, ``--json``, ``-v``, ``-q``) work before or after the command name: every command
is decorated with :func:`common_options`, whose callbacks write into the one :class:`AppContext` in ``ctx.obj``.
``main`` catches :class:`FgsyncError` only, prints ``Error: <message>`` and returns the error's exit code.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Optional, TextIO

import click

from fgsync import __version__
from fgsync.cli.common import common_options
from fgsync.cli.context import AppContext, app_context
from fgsync.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ApiError, FgsyncError
from fgsync.events import error_event

_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


#: Command name -> "module:attribute". Modules load only when their command runs (or help lists them), so
#: `fgsync --version` and shell completion of command names stay quick.
COMMANDS = {
    "init": "fgsync.cli.init_cmd:init_command",
    "login": "fgsync.cli.auth_cmds:login_command",
    "logout": "fgsync.cli.auth_cmds:logout_command",
    "auth": "fgsync.cli.auth_cmds:auth_command",
    "package": "fgsync.cli.package_cmd:package_command",
    "push": "fgsync.cli.sync_cmds:push_command",
    "watch": "fgsync.cli.watch_cmd:watch_command",
    "status": "fgsync.cli.sync_cmds:status_command",
    "invoke": "fgsync.cli.invoke_cmd:invoke_command",
    "emulator": "fgsync.cli.emulator_cmd:emulator_command",
    "demo": "fgsync.cli.demo_cmd:demo_command",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="fgsync")
@common_options
def cli() -> None:
    """Keep FunctionGraph functions in step with the code on your disk.

    \b
    Quick start:
      fgsync demo                 a live-reload tour against a local emulator (no account)
      fgsync init                 write a commented fgsync.toml
      fgsync login                store an IAM token in the OS keyring
      fgsync watch                push every save, skipping what did not really change
    """


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg, unused-ignore]
    """Writes to whatever ``sys.stderr`` is at the time of the record, not the one at set-up time (main() may
    run many times in one process, each with its own stderr, as in tests and `fgsync demo`)."""

    @property  # type: ignore[override, unused-ignore]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def _configure_logging() -> None:
    logger = logging.getLogger("fgsync")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run fgsync with argv (default: sys.argv[1:]) and return the exit code."""
    _configure_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    obj = AppContext()
    try:
        result = cli.main(args=args, prog_name="fgsync", standalone_mode=False, obj=obj)
    except FgsyncError as error:
        _report_fatal(obj, error)
        return error.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.ClickException as error:
        error.show()
        return EXIT_USAGE if isinstance(error, click.UsageError) else EXIT_FAILED
    except BrokenPipeError:
        return EXIT_FAILED
    return result if isinstance(result, int) else EXIT_OK


def _report_fatal(obj: AppContext, error: FgsyncError) -> None:
    if obj.json:
        obj.reporter.emit(error_event(None, error.code, error.message, retryable=error.retryable))
    coded = isinstance(error, ApiError) and error.code != "error"  # the generic code would read "Error: error: ..."
    text = f"{error.code}: {error.message}" if coded else error.message
    click.echo(f"Error: {text}", err=True)


__all__ = ["AppContext", "app_context", "cli", "common_options", "main"]
