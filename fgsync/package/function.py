"""A configured function's packages: its ``build`` command, its ignore rules, a cold build, the `packaged` event.

What `fgsync package` runs, and the first step of every sync (:func:`fgsync.sync.sync_function` passes the size
limits of its upload route). Nothing here imports the sync step, the state or a client, so a command that only
packages does not pay for them at start-up (editors run `fgsync package` on every save).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional

from fgsync.errors import PackageError
from fgsync.events import Emit, Event
from fgsync.ignore import IgnoreRules
from fgsync.package.build import BuildProcesses, run_build
from fgsync.package.builder import build_split_package
from fgsync.package.dependencies import MAX_DEPENDENCY_BYTES
from fgsync.package.model import MAX_PACKAGE_BYTES, SplitPackage
from fgsync.package.walk import missing_source

if TYPE_CHECKING:
    from fgsync.config import FunctionConfig


def build_function_packages(
    fn: FunctionConfig, *, max_bytes: int = MAX_PACKAGE_BYTES, max_dependency_bytes: int = MAX_DEPENDENCY_BYTES
) -> SplitPackage:
    """Build the function's packages from scratch (no cache): the code zip of `source` (or the jar `artifact`)
    and, with ``dependencies``, the dependency package, from one walk.

    Args:
        fn: the function.
        max_bytes: the largest code zip to build (the default: what fits in a request).
        max_dependency_bytes: the largest dependency zip to build (the default: what fits in a request).

    Raises:
        SourceError, PackageError: as :func:`fgsync.package.build_split_package`.
    """
    rules = IgnoreRules.for_function(fn.source, exclude=fn.exclude, use_gitignore=fn.use_gitignore)
    return build_split_package(
        fn.source,
        rules=rules,
        dependencies=fn.dependencies,
        code_type=fn.code_type,
        artifact=fn.artifact,
        max_bytes=max_bytes,
        max_dependency_bytes=max_dependency_bytes,
    )


def build_and_package(
    fn: FunctionConfig,
    *,
    emit: Emit,
    package_fn: Optional[Callable[[FunctionConfig], SplitPackage]] = None,
    after_build: Optional[Callable[[FunctionConfig], None]] = None,
    processes: Optional[BuildProcesses] = None,
    clock: Callable[[], float] = time.monotonic,
    dependency: bool = False,
) -> SplitPackage:
    """Run the function's `build` command (if any), package it, and emit `packaged`.

    Args:
        fn: the function.
        emit: where `packaged` goes.
        package_fn: how to package (default: a cold :func:`build_function_packages`).
        after_build: called right after a successful build, before packaging (the daemon takes the digest of
            the inputs there: see :mod:`fgsync.package.fingerprint`).
        processes: where the running build is registered, so an abort can stop it.
        clock: monotonic seconds.
        dependency: report the dependency package in `packaged` (``package: "dependency"``, ``sha256``)
            instead of the code zip.

    Raises:
        SourceError: the source folder is missing.
        BuildError, PackageError: the function could not be packaged (or, with ``dependency``, has no
            dependency package).
    """
    started = clock()
    if fn.build:
        if not fn.source.is_dir():
            raise missing_source(fn.source)  # before the shell says "No such file or directory" about cwd
        run_build(fn.build, fn.source, timeout=fn.build_timeout_s, processes=processes)
        if after_build is not None:
            after_build(fn)
    split = (package_fn or build_function_packages)(fn)
    shown = split.dependency if dependency else split.code
    if shown is None:
        raise PackageError(f"{fn.name} has no dependency package")
    fields = {"files": shown.files, "bytes": shown.size, "sha512": shown.sha512, "ms": _ms(clock() - started)}
    if dependency:
        fields.update(package="dependency", sha256=shown.sha256)
    emit(Event("packaged", fn.name, fields))
    return split


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
