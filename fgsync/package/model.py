"""What packaging produces: a package ready to upload, the pair one walk of a function with dependencies gives,
what a build did, and the jar artifact's package (uploaded as it is, not zipped)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional

from fgsync.errors import PackageError

__all__ = [
    "DEPENDENCY_FILENAME",
    "MAX_PACKAGE_BYTES",
    "ZIP_FILENAME",
    "BuildStats",
    "Package",
    "SplitPackage",
    "jar_package",
]

#: FunctionGraph refuses zip and jar packages above this size (FSS.1071); checked before any upload.
MAX_PACKAGE_BYTES = 52_428_800
ZIP_FILENAME = "index.zip"
#: The dependency package's file name (for ``fgsync package --dependencies`` and the upload's records).
DEPENDENCY_FILENAME = "dependency.zip"


@dataclass(frozen=True)
class Package:
    """A package ready to upload.

    Attributes:
        data: the zip (or jar) bytes.
        sha512: lowercase hex SHA-512 of ``data``.
        files: how many files it holds.
        paths: their paths inside the zip, sorted (for a jar, the artifact's name).
        filename: ``code_filename`` to send (``index.zip``, or the jar's name).
        code_type: ``zip`` or ``jar``.
    """

    data: bytes = field(repr=False)
    sha512: str
    files: int
    paths: tuple[str, ...] = field(repr=False)
    filename: str
    code_type: str

    @property
    def size(self) -> int:
        """The package size in bytes."""
        return len(self.data)

    @cached_property
    def sha256(self) -> str:
        """Lowercase hex SHA-256 of ``data`` (a dependency version's ``description`` carries it); computed once,
        when first asked for."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class SplitPackage:
    """What one walk of a function with ``dependencies`` gives.

    Attributes:
        code: the code zip, without the dependency files (the upload of every save).
        dependency: the dependency package, the same files at the same relative paths; None when no file is a
            dependency (``auto`` on a tree without ``node_modules/`` or RECORD files), or without dependencies.
    """

    code: Package
    dependency: Optional[Package]


@dataclass(frozen=True)
class BuildStats:
    """What the last build did, per file: reused from the cache, re-read and found equal, or compressed."""

    reused: int = 0
    rechecked: int = 0
    compressed: int = 0


def jar_package(source: Path, artifact: Optional[Path], max_bytes: int) -> Package:
    """The package of a ``jar`` function: its artifact as it is (relative paths are relative to source)."""
    if artifact is None:
        raise PackageError("code_type jar needs an artifact: the .jar file to upload")
    path = artifact if artifact.is_absolute() else source / artifact
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PackageError(
            f"artifact {path} not found: build it first (for example `mvn -q package`), or set the function's "
            "`build` command so fgsync runs it before packaging"
        ) from None
    except OSError as exc:
        raise PackageError(f"cannot read artifact {path}: {exc.strerror or exc}") from None
    if not data:
        raise PackageError(f"artifact {path} is empty: an empty upload would reset the function to template code")
    if len(data) > max_bytes:
        raise PackageError(f"artifact {path} is {len(data):,} bytes, over the limit of {max_bytes:,} bytes")
    return Package(data, hashlib.sha512(data).hexdigest(), 1, (path.name,), path.name, "jar")
