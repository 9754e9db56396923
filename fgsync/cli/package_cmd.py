"""`fgsync package`: build a function's package (or its dependency package), print its hash, optionally write it.

Editors run it on every save, so it imports only what packaging needs (:mod:`fgsync.package.function`): not the
sync step, a client, credentials or the state (those are `push` and `status`, in :mod:`fgsync.cli.sync_cmds`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from fgsync.cli import output
from fgsync.cli.common import common_options
from fgsync.cli.completion import complete_function_names
from fgsync.cli.context import AppContext, app_context
from fgsync.config import DEPENDENCIES_AUTO, Config, FunctionConfig, select_functions
from fgsync.errors import EXIT_OK, FgsyncError, PackageError, UsageError
from fgsync.package import (
    MAX_DEPENDENCY_OBS_BYTES,
    Package,
    SplitPackage,
    build_and_package,
    build_function_packages,
)


@click.command("package")
@click.argument("name", required=False, shell_complete=complete_function_names)
@click.option(
    "-o",
    "--output",
    "output_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the zip (or jar) to FILE.",
)
@click.option(
    "--dependencies",
    "dependency",
    is_flag=True,
    help="Build the function's dependency package (its `dependencies` files) instead of its code.",
)
@common_options
def package_command(name: Optional[str], output_path: Optional[Path], dependency: bool) -> int:
    """Build a function's package and print its file count, size and SHA-512.

    The zip is byte-for-byte reproducible: the same tree gives the same bytes and hash on every machine.
    With `dependencies` set, the code zip leaves the dependency files out; --dependencies builds those.
    """
    app = app_context()
    config = app.load_config()
    functions = select_functions(config, [name] if name else [])
    if dependency:
        functions = _with_dependencies(config, functions)
    if output_path is not None and len(functions) != 1:
        flag = " --dependencies" if dependency else ""
        raise UsageError(
            f"-o writes one package, but {config.path.name} has {len(functions)} functions"
            f"{' with dependencies' if dependency else ''}: name one, "
            f"e.g. `fgsync package {functions[0].name}{flag} -o {output_path}`"
        )
    if output_path is not None:
        _refuse_inside_source(output_path, functions[0])
    for fn in functions:
        package = _package_dependency(app, fn) if dependency else _package_code(app, fn)
        if output_path is not None:
            _write_file(output_path, package.data)
            app.reporter.info(f"wrote {output_path} ({output.human_size(package.size)})")
        if not app.json and not app.quiet:
            app.reporter.info(f"sha512 {package.sha512}")
            if dependency:
                app.reporter.info(f"sha256 {package.sha256}")
    return EXIT_OK


#: `fgsync package` writes packages of any size FunctionGraph takes at all (300 MB, through OBS: code and
#: dependency alike, the limits of ``UploadRoute(obs_configured=True)``), with or without ``[obs]``: it uploads
#: nothing, and a package too big to send in a request is still worth looking at.
ANY_SIZE = MAX_DEPENDENCY_OBS_BYTES


def _package_split(fn: FunctionConfig) -> SplitPackage:
    return build_function_packages(fn, max_bytes=ANY_SIZE, max_dependency_bytes=ANY_SIZE)


def _package_code(app: AppContext, fn: FunctionConfig) -> Package:
    """Build the code package and emit `packaged`; with dependencies, say in a line what went where."""
    split = build_and_package(fn, emit=app.reporter.emit, package_fn=_package_split)
    if fn.has_dependencies:
        moved = split.dependency
        if moved is not None:
            app.reporter.info(
                f"{moved.files} files ({output.human_size(moved.size)} zipped) went to the dependency package: "
                f"fgsync package {fn.name} --dependencies"
            )
        else:
            app.reporter.info(f"no dependency package: {_no_dependency_files(fn)}")
    return split.code


def _package_dependency(app: AppContext, fn: FunctionConfig) -> Package:
    """Build the dependency package and emit `packaged` for it (``package: "dependency"``, ``sha256``)."""

    def package_fn(f: FunctionConfig) -> SplitPackage:
        split = _package_split(f)
        if split.dependency is None:
            raise PackageError(f"{f.name} has no dependency package: {_no_dependency_files(f)}")
        return split

    dependency = build_and_package(fn, emit=app.reporter.emit, package_fn=package_fn, dependency=True).dependency
    assert dependency is not None
    return dependency


def _no_dependency_files(fn: FunctionConfig) -> str:
    if fn.dependencies == DEPENDENCIES_AUTO:
        return (
            f'dependencies = "auto" found no node_modules/ and no *.dist-info/RECORD at the root of {fn.source}'
        )
    patterns = ", ".join(f'"{p}"' for p in fn.dependencies)
    return f"dependencies = [{patterns}] matches no file in {fn.source} (after the ignore rules)"


def _with_dependencies(config: Config, functions: tuple[FunctionConfig, ...]) -> tuple[FunctionConfig, ...]:
    """The functions that have a dependency package; a usage error when none of those asked for has one."""
    chosen = tuple(fn for fn in functions if fn.has_dependencies)
    if chosen:
        return chosen
    if len(functions) == 1:
        raise UsageError(
            f'{functions[0].name} has dependencies = "off", so it has no dependency package: set '
            f'dependencies = "auto" (or a list of patterns) for it in {config.path.name}'
        )
    raise UsageError(
        f'no function in {config.path.name} has a dependency package (every one has dependencies = "off"): '
        'set dependencies = "auto" (or a list of patterns) for one'
    )


def _refuse_inside_source(path: Path, fn: FunctionConfig) -> None:
    target = path.resolve()
    if target == fn.source or fn.source in target.parents:
        raise UsageError(
            f"-o {path} is inside the function's source folder {fn.source}; fgsync never writes there "
            "(the zip would package itself next time). Write it elsewhere."
        )


def _write_file(path: Path, data: bytes) -> None:
    target = path.resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    except OSError as error:
        raise FgsyncError(f"cannot write {path}: {error.strerror or error}") from None
