"""The emulator's dependency packages: dependencies by name, their numbered versions, and persistence.

A dependency (``dep_id``) is a name; each CreateDependencyVersion adds a version (``id``, the **version id**
that functions list in ``depend_version_list``) numbered from 1. Numbers are never reused: deleting version
2 of 1..3 leaves 1 and 3, and the next one is 4. A dependency whose last version is deleted is gone; the
same name later starts again at version 1 with a new ``dep_id``.

With a data folder, ``DIR/dependencies/index.json`` holds the metadata and ``DIR/dependencies/<id>.zip``
each version's package; a zip is written before the index that names it and removed after the index that no
longer does, each write-then-rename, so a crash never leaves a version without its package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

from fgsync.emulator.store import atomic_write

log = logging.getLogger(__name__)

_INDEX = "index.json"


@dataclasses.dataclass(frozen=True)
class DependencyVersion:
    """One version of a dependency package, as the emulator keeps it (``data`` is the zip)."""

    id: str
    dep_id: str
    name: str
    version: int
    runtime: str
    description: str
    size: int
    etag: str
    last_modified: int
    data: bytes = dataclasses.field(repr=False)

    @property
    def file_name(self) -> str:
        """The service names the stored file after the dependency: ``<name>.zip``."""
        return f"{self.name}.zip"

    @property
    def sha256(self) -> str:
        """Lowercase hex SHA-256 of the zip (not part of the API: for tests)."""
        return hashlib.sha256(self.data).hexdigest()


@dataclasses.dataclass
class _Dependency:
    dep_id: str
    name: str
    next_version: int
    versions: dict[int, DependencyVersion]


class DependencyStore:
    """Thread-safe dependencies and versions, optionally persisted in ``data_dir/dependencies``."""

    def __init__(self, data_dir: Optional[Path], *, clock: Callable[[], float]) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._deps: dict[str, _Dependency] = {}
        self._folder = data_dir / "dependencies" if data_dir is not None else None
        if self._folder is not None:
            self._folder.mkdir(parents=True, exist_ok=True)
            self._load()

    @property
    def lock(self) -> threading.RLock:
        """The lock around every read and change (taken after the function store's lock, never before)."""
        return self._lock

    def create_version(self, name: str, *, runtime: str, description: str, data: bytes) -> DependencyVersion:
        """Add a version: a new name makes a new dependency at version 1, an existing one its next version."""
        with self._lock:
            dep = self._by_name(name)
            if dep is None:
                dep = _Dependency(dep_id=str(uuid.uuid4()), name=name, next_version=1, versions={})
                self._deps[dep.dep_id] = dep
            version = DependencyVersion(
                id=str(uuid.uuid4()),
                dep_id=dep.dep_id,
                name=name,
                version=dep.next_version,
                runtime=runtime,
                description=description,
                size=len(data),
                etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),  # documented as the package's MD5
                last_modified=int(self._clock()),
                data=data,
            )
            dep.versions[version.version] = version
            dep.next_version += 1
            if self._folder is not None:
                atomic_write(self._folder / f"{version.id}.zip", data)
                self._save_index()
            return version

    def dependencies(self) -> list[tuple[str, str, list[DependencyVersion]]]:
        """Every dependency as (dep_id, name, versions oldest first), sorted by name."""
        with self._lock:
            deps = sorted(self._deps.values(), key=lambda d: (d.name, d.dep_id))
            return [(d.dep_id, d.name, [d.versions[n] for n in sorted(d.versions)]) for d in deps]

    def versions(self, dep_id: str) -> Optional[list[DependencyVersion]]:
        """The versions of a dependency, oldest first; None for an unknown dependency."""
        with self._lock:
            dep = self._deps.get(dep_id)
            return None if dep is None else [dep.versions[n] for n in sorted(dep.versions)]

    def versions_named(self, name: str) -> list[DependencyVersion]:
        """The versions of the dependency with this name, oldest first (empty when there is none)."""
        with self._lock:
            dep = self._by_name(name)
            return [] if dep is None else [dep.versions[n] for n in sorted(dep.versions)]

    def get(self, dep_id: str, number: int) -> Optional[DependencyVersion]:
        """One version by dependency id and version number, or None."""
        with self._lock:
            dep = self._deps.get(dep_id)
            return None if dep is None else dep.versions.get(number)

    def by_id(self, version_id: str) -> Optional[DependencyVersion]:
        """One version by its version id (what ``depend_version_list`` holds), or None."""
        with self._lock:
            for dep in self._deps.values():
                for version in dep.versions.values():
                    if version.id == version_id:
                        return version
            return None

    def delete(self, dep_id: str, number: int) -> bool:
        """Remove one version (and the dependency with its last version); False when there is no such version."""
        with self._lock:
            dep = self._deps.get(dep_id)
            if dep is None or number not in dep.versions:
                return False
            version = dep.versions.pop(number)
            if not dep.versions:
                del self._deps[dep_id]
            if self._folder is not None:
                self._save_index()
                (self._folder / f"{version.id}.zip").unlink(missing_ok=True)
            return True

    def _by_name(self, name: str) -> Optional[_Dependency]:
        for dep in self._deps.values():
            if dep.name == name:
                return dep
        return None

    def _save_index(self) -> None:
        assert self._folder is not None
        entries = []
        for dep in self._deps.values():
            versions = []
            for number in sorted(dep.versions):
                meta = dataclasses.asdict(dep.versions[number])
                del meta["data"]
                versions.append(meta)
            entry = {"dep_id": dep.dep_id, "name": dep.name, "next_version": dep.next_version, "versions": versions}
            entries.append(entry)
        atomic_write(self._folder / _INDEX, json.dumps({"dependencies": entries}, indent=2, sort_keys=True).encode())

    def _load(self) -> None:
        assert self._folder is not None
        path = self._folder / _INDEX
        try:
            index: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            entries = list(index["dependencies"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable dependency index %s: %s", path, exc)
            return
        for entry in entries:
            try:
                dep = _Dependency(str(entry["dep_id"]), str(entry["name"]), int(entry["next_version"]), {})
                for meta in entry["versions"]:
                    data = (self._folder / f"{meta['id']}.zip").read_bytes()
                    version = DependencyVersion(data=data, **meta)
                    if hashlib.md5(data, usedforsecurity=False).hexdigest() != version.etag:
                        log.warning("ignoring dependency version %s: its zip does not match its etag", version.id)
                        continue
                    dep.versions[version.version] = version
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("ignoring an unreadable dependency in %s: %s", path, exc)
                continue
            if dep.versions:
                self._deps[dep.dep_id] = dep
