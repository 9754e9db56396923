"""The global options, accepted before or after the command name (`fgsync --json push` = `fgsync push --json`)."""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, TypeVar

import click

from fgsync.cli.context import AppContext

F = TypeVar("F", bound=Callable[..., Any])


def _set_config(ctx: click.Context, _param: click.Parameter, value: Optional[str]) -> None:
    if value is not None:
        ctx.ensure_object(AppContext).config_path = value


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(AppContext).json = True


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        obj = ctx.ensure_object(AppContext)
        obj.verbose += value
        logging.getLogger("fgsync").setLevel(logging.DEBUG if obj.verbose > 1 else logging.INFO)


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(AppContext).quiet = True
        logging.getLogger("fgsync").setLevel(logging.ERROR)


def common_options(f: F) -> F:
    """Add the global options to a command (they are also accepted before the command name)."""
    options = [
        click.option(
            "--config",
            "config",
            metavar="PATH",
            expose_value=False,
            callback=_set_config,
            help="Use this fgsync.toml (default: $FGSYNC_CONFIG, else the nearest fgsync.toml).",
        ),
        click.option(
            "--json",
            "json_mode",
            is_flag=True,
            expose_value=False,
            callback=_set_json,
            help="Machine output: one JSON event per line on stdout.",
        ),
        click.option(
            "-v", "--verbose", count=True, expose_value=False, callback=_set_verbose, help="More detail (-vv: debug)."
        ),
        click.option(
            "-q", "--quiet", is_flag=True, expose_value=False, callback=_set_quiet, help="Only errors and drift."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f
