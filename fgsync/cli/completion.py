"""Shell completion of function names, for click's built-in completion (`_FGSYNC_COMPLETE=bash_source fgsync`).

Click completes commands and options by itself; this module adds the local function names from fgsync.toml to
the `NAME` arguments (`push`, `watch`, `status`, `package`, `invoke`). See docs/completion.md.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fgsync.cli.context import AppContext
from fgsync.config import find_config
from fgsync.errors import FgsyncError

if TYPE_CHECKING:  # imported when completing: every command that takes a NAME imports this module
    from click.shell_completion import CompletionItem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

log = logging.getLogger(__name__)


def complete_function_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The names of the functions in fgsync.toml that start with ``incomplete``, for a click ``shell_complete=``.

    The config is found as the command would find it (``--config`` typed earlier on the line, ``$FGSYNC_CONFIG``,
    the nearest fgsync.toml). Only the ``[[function]]`` names are read, without the full validation, so names
    still complete while another part of the file is wrong. Names already typed are not offered again. Each
    item's help (shown by zsh and fish) is the function's ``source``.

    Completion must never print or fail: with no usable config the answer is empty.
    """
    from click.shell_completion import CompletionItem

    app = ctx.find_object(AppContext)
    try:
        path = find_config(app.config_path if app else None, env=os.environ, cwd=Path.cwd())
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (FgsyncError, OSError, ValueError) as error:  # ValueError: TOML syntax, or not UTF-8
        log.debug("no function names to complete: %s", error)
        return []
    typed = ctx.params.get(param.name or "") or ()
    already = {typed} if isinstance(typed, str) else set(typed)
    items = []
    for table in _function_tables(data):
        name = table.get("name")
        if isinstance(name, str) and name.startswith(incomplete) and name not in already:
            source = table.get("source")
            items.append(CompletionItem(name, help=source if isinstance(source, str) else None))
    return items


def _function_tables(data: dict[str, Any]) -> list[dict[str, Any]]:
    tables = data.get("function")
    if not isinstance(tables, list):
        return []
    return [table for table in tables if isinstance(table, dict)]
