"""Deterministic packaging (the face the rest of fgsync imports): the zip or jar that gets uploaded, its
SHA-512, and the function's build command.

Modules: ``builder`` (``build_package``, the daemon's incremental ``PackageBuilder``), ``walk`` (which files,
how they are opened), ``archive`` (the zip layout, written by hand so every header field is pinned) and
``build`` (the `build` command).
"""

from __future__ import annotations

from fgsync.package.build import BuildProcesses, run_build
from fgsync.package.builder import (
    CACHE_BYTES,
    MAX_PACKAGE_BYTES,
    BuildStats,
    Package,
    PackageBuilder,
    build_package,
)

__all__ = [
    "CACHE_BYTES",
    "MAX_PACKAGE_BYTES",
    "BuildProcesses",
    "BuildStats",
    "Package",
    "PackageBuilder",
    "build_package",
    "run_build",
]
