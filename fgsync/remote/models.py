"""The wire models of the dependency calls: dependency versions and dependencies as FunctionGraph answers them,
parsed leniently (a missing or mistyped field becomes "" or 0), and the description that carries fgsync's hash.

The service's ``etag`` is no hash fgsync can compute (FUNCTIONGRAPH.md: documented as an MD5, shaped like a
multipart tag), so fgsync keeps the SHA-256 of the zip in the version's ``description``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

_DESCRIPTION_PREFIX = "fgsync sha256="
# Compiled on first use (re keeps it): only a function with dependencies reads descriptions.
_DESCRIPTION_SHA256 = r"(?:^|\s)fgsync sha256=([0-9a-fA-F]{64})(?=\s|$)"
# Epoch seconds this large are milliseconds (year 5138 in seconds): accept both.
_MILLISECONDS = 100_000_000_000


@dataclass(frozen=True)
class DependencyVersion:
    """One version of a dependency package, as CreateDependencyVersion, ShowDependencyVersion and
    ListDependencyVersion answer it (and a function's ``dependencies[]`` lists it).

    Attributes:
        id: the version id: what ``depend_version_list`` holds.
        dep_id: the dependency's id (shared by its versions).
        version: the version number, from 1.
        last_modified: epoch seconds (0 when the answer had none).
        download_link: a temporary link to the zip (ShowDependencyVersion only; else "").
    """

    id: str
    dep_id: str
    version: int
    name: str
    runtime: str
    description: str
    size: int
    etag: str
    link: str
    file_name: str
    last_modified: int
    download_link: str = ""
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def sha256(self) -> Optional[str]:
        """The SHA-256 fgsync wrote into the description when it published this version, else None."""
        return description_sha256(self.description)


@dataclass(frozen=True)
class DependencySummary:
    """One dependency as ListDependencies answers it: ``id`` is the dependency id (``dep_id`` of its versions);
    ``version``, ``description``, ``size`` and the rest describe its newest version."""

    id: str
    name: str
    runtime: str
    version: int
    description: str
    size: int
    etag: str
    link: str
    file_name: str
    owner: str
    last_modified: int
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)


def dependency_description(sha256: str) -> str:
    """``fgsync sha256=<hex>``: the description fgsync gives a version it publishes.

    Raises:
        ValueError: ``sha256`` is not 64 hex digits.
    """
    if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"not a SHA-256 in hex: {sha256!r}")
    return f"{_DESCRIPTION_PREFIX}{sha256.lower()}"


def description_sha256(description: str) -> Optional[str]:
    """The SHA-256 (lowercase hex) in a description fgsync wrote, else None (a user's own dependency)."""
    match = re.search(_DESCRIPTION_SHA256, description or "")
    return match.group(1).lower() if match else None


def parse_dependency_version(data: Mapping[str, Any]) -> DependencyVersion:
    """A version from the service's JSON, leniently: missing or mistyped fields become "" or 0."""
    return DependencyVersion(
        id=as_text(data.get("id")),
        dep_id=as_text(data.get("dep_id")),
        version=as_int(data.get("version")),
        name=as_text(data.get("name")),
        runtime=as_text(data.get("runtime")),
        description=as_text(data.get("description")),
        size=as_int(data.get("size")),
        etag=as_text(data.get("etag")),
        link=as_text(data.get("link")),
        file_name=as_text(data.get("file_name")),
        last_modified=_epoch(data.get("last_modified")),
        download_link=as_text(data.get("download_link")),
        raw=dict(data),
    )


def parse_dependency_summary(data: Mapping[str, Any]) -> DependencySummary:
    """A ListDependencies entry from the service's JSON, leniently (as :func:`parse_dependency_version`)."""
    return DependencySummary(
        id=as_text(data.get("id")),
        name=as_text(data.get("name")),
        runtime=as_text(data.get("runtime")),
        version=as_int(data.get("version")),
        description=as_text(data.get("description")),
        size=as_int(data.get("size")),
        etag=as_text(data.get("etag")),
        link=as_text(data.get("link")),
        file_name=as_text(data.get("file_name")),
        owner=as_text(data.get("owner")),
        last_modified=_epoch(data.get("last_modified")),
        raw=dict(data),
    )


def parse_attached(value: Any) -> tuple[DependencyVersion, ...]:
    """A function's ``dependencies[]`` (ShowFunctionCode/Config, UpdateFunctionCode): entries that are objects."""
    if not isinstance(value, list):
        return ()
    return tuple(parse_dependency_version(item) for item in value if isinstance(item, Mapping))


def as_text(value: Any) -> str:
    """A string as is, a number as text; "" for anything else (None, a list, an object)."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def as_int(value: Any) -> int:
    """An int from an int, a float or a numeric string; 0 for anything else (None, "", NaN, a list)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return 0
    try:
        return int(value)
    except (ValueError, OverflowError):
        try:
            return int(float(value))
        except (ValueError, OverflowError):
            return 0


def _epoch(value: Any) -> int:
    seconds = as_int(value)
    return seconds // 1000 if seconds >= _MILLISECONDS else seconds
