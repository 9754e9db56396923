"""`fgsync init`: write a commented fgsync.toml, never over an existing one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import click

from fgsync.cli.common import common_options
from fgsync.cli.context import app_context
from fgsync.config import CONFIG_FILENAME, PROJECT_ID_RE, REGION_RE
from fgsync.config.template import render_init
from fgsync.errors import EXIT_OK, UsageError

DEFAULT_FUNCTION = ("hello", "functions/hello")


def parse_function_specs(specs: tuple[str, ...]) -> list[tuple[str, str]]:
    """Turn ``NAME=SOURCE`` values into pairs; none gives the default ``hello=functions/hello``.

    Raises:
        UsageError: a value has no ``=`` or an empty side.
    """
    pairs = []
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise UsageError(f'--function "{spec}": expected NAME=SOURCE, e.g. --function hello=functions/hello')
        pairs.append((name.strip(), source.strip()))
    return pairs or [DEFAULT_FUNCTION]


@click.command("init")
@click.option("--region", metavar="REGION", help='Region id, e.g. "cn-north-4" (else a placeholder to fill in).')
@click.option("--project-id", metavar="ID", help="Project id: 32 letters and digits (else a placeholder).")
@click.option(
    "--function",
    "functions",
    metavar="NAME=SOURCE",
    multiple=True,
    help="A function and its source folder, relative to the file (repeatable; default hello=functions/hello).",
)
@common_options
def init_command(region: Optional[str], project_id: Optional[str], functions: tuple[str, ...]) -> int:
    """Write a commented fgsync.toml (./fgsync.toml, or the --config path). Never overwrites a file."""
    app = app_context()
    target = Path(os.path.abspath(Path(app.config_path or CONFIG_FILENAME).expanduser()))
    if region is not None and not REGION_RE.match(region):
        raise UsageError(f'--region "{region}": must be a region id such as "cn-north-4"')
    if project_id is not None and not PROJECT_ID_RE.match(project_id):
        raise UsageError(f'--project-id "{project_id}": must be 32 letters and digits (the project id of the region)')
    pairs = parse_function_specs(functions)
    text = render_init(region=region, project_id=project_id, functions=pairs)
    if target.is_dir():
        raise UsageError(f"{target} is a folder; give --config the path of the file to write")
    if target.exists():
        raise UsageError(
            f"{_shown(target)} already exists; fgsync init never overwrites it: edit it, or remove "
            "it first to start again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # "x" (O_EXCL) so a file created since the check above is not overwritten either.
        with target.open("x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    except FileExistsError:
        raise UsageError(f"{_shown(target)} already exists; fgsync init never overwrites it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {_shown(target)}: {exc.strerror or exc}") from None

    missing = [key for key, value in (("region", region), ("project_id", project_id)) if not value]
    absent = [source for _name, source in pairs if not (target.parent / source).is_dir()]
    config_flag = f"--config {_shown(target)} " if app.config_path else ""
    steps = []
    if missing:
        steps.append(f"fill in {' and '.join(missing)} in {_shown(target)} (and remove the leading #)")
    if absent:
        where = "" if target.parent == Path.cwd() else f" (relative to {_shown(target.parent)})"
        plural = "s" if len(absent) > 1 else ""
        steps.append(f"create the source folder{plural}{where}: " + ", ".join(absent))
    steps += [f"fgsync {config_flag}login", f"fgsync {config_flag}push   (or: fgsync {config_flag}watch)"]
    if app.json:
        app.reporter.document(
            {
                "path": str(target),
                "functions": [name for name, _source in pairs],
                "missing": missing,
                "next_steps": steps,
            }
        )
        return EXIT_OK
    names = ", ".join(name for name, _source in pairs)
    app.reporter.info(f"Wrote {_shown(target)} ({len(pairs)} function{'s' if len(pairs) > 1 else ''}: {names}).")
    app.reporter.info("Next steps:")
    for number, step in enumerate(steps, start=1):
        app.reporter.info(f"  {number}. {step}")
    return EXIT_OK


def _shown(path: Path) -> str:
    """The path relative to the current folder when it is below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)
