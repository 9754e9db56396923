"""Deterministic packaging (the face the rest of fgsync imports): the zip or jar that gets uploaded, its
SHA-512, and the function's build command.

Modules: ``builder`` (``build_package``, the daemon's incremental ``PackageBuilder``), ``model`` (``Package``
and the other results), ``deflate`` (the files deflated in order, on worker threads when it pays), ``walk``
(which files, how they are opened), ``dependencies`` (which of them go into the function's dependency package),
``archive`` (the zip layout, written by hand so every header field is pinned), ``build`` (the `build` command)
and ``function`` (a configured function: its build, rules and packages, and the `packaged` event).
"""

from __future__ import annotations

from fgsync.package.build import BuildProcesses, run_build
from fgsync.package.builder import CACHE_BYTES, PackageBuilder, ReportedWalk, build_package, build_split_package
from fgsync.package.dependencies import (
    MAX_DEPENDENCY_BYTES,
    MAX_DEPENDENCY_FILES,
    MAX_DEPENDENCY_OBS_BYTES,
    DependencySelector,
    DependencySpec,
    split_files,
)
from fgsync.package.function import build_and_package, build_function_packages
from fgsync.package.model import DEPENDENCY_FILENAME, MAX_PACKAGE_BYTES, BuildStats, Package, SplitPackage

__all__ = [
    "CACHE_BYTES",
    "DEPENDENCY_FILENAME",
    "MAX_DEPENDENCY_BYTES",
    "MAX_DEPENDENCY_FILES",
    "MAX_DEPENDENCY_OBS_BYTES",
    "MAX_PACKAGE_BYTES",
    "BuildProcesses",
    "BuildStats",
    "DependencySelector",
    "DependencySpec",
    "Package",
    "PackageBuilder",
    "ReportedWalk",
    "SplitPackage",
    "build_and_package",
    "build_function_packages",
    "build_package",
    "build_split_package",
    "run_build",
    "split_files",
]
