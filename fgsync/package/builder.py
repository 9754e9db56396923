"""Deterministic packaging: the zip (or jar) that gets uploaded, its SHA-512, and the build command.

``build_package`` makes a package from scratch; ``PackageBuilder`` is the daemon's long-lived version that
keeps each file's compressed entry between builds and re-deflates only what changed, while producing the very
same bytes as a cold build. The walk is in :mod:`fgsync.package.walk`, the zip layout in
:mod:`fgsync.package.archive`, the build command in :mod:`fgsync.package.build`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from fgsync.errors import PackageError
from fgsync.ignore import IgnoreRules
from fgsync.package.archive import CompressedEntry, HashTrail, assemble, compress_file, refresh_file
from fgsync.package.build import run_build
from fgsync.package.walk import OpenFile, SourceFile, VanishedError, open_source_file, walk_source

__all__ = [
    "CACHE_BYTES",
    "MAX_PACKAGE_BYTES",
    "BuildStats",
    "Package",
    "PackageBuilder",
    "build_package",
    "run_build",
]

log = logging.getLogger(__name__)

#: FunctionGraph refuses zip and jar packages above this size (FSS.1071); checked before any upload.
MAX_PACKAGE_BYTES = 52_428_800
ZIP_FILENAME = "index.zip"
#: Default bound of the incremental cache: room for a maximal package's entries.
CACHE_BYTES = 64 * 1024 * 1024
#: A cached entry whose mtime or ctime is within this of the moment it was read may have been rewritten in the
#: same timestamp tick (2 s on FAT), so the next build re-reads it and compares content hashes ("racy git").
RACY_MARGIN_NS = 2_000_000_000
# Files are handed to the compressing threads in batches of about this many bytes: tiny files one by one
# would cost more in thread hand-offs than in deflate.
_BATCH_BYTES = 512 * 1024
# Below this much work a thread pool costs more than it saves.
_PARALLEL_MIN_BYTES = 2 * 1024 * 1024
_ATTEMPTS = 3


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


@dataclass(frozen=True)
class BuildStats:
    """What the last build did, per file: reused from the cache, re-read and found equal, or compressed."""

    reused: int = 0
    rechecked: int = 0
    compressed: int = 0


@dataclass(frozen=True)
class _Cached:
    src: SourceFile  # the file as it was stat'ed when its entry was made (or last re-checked)
    entry: CompressedEntry
    trusted: bool  # its mtime was safely older than the read: an equal stat means equal content


_Job = tuple[SourceFile, Optional[_Cached]]
_Outcome = tuple[CompressedEntry, str]  # the entry and "rechecked" or "compressed"


class PackageBuilder:
    """Builds a function's package again and again, re-deflating only the files that changed.

    The bytes are identical to a cold :func:`build_package` of the same tree: cached entries are reused only
    when the file's (size, mtime_ns, ctime_ns, inode, device, mode) is unchanged and both its timestamps were
    safely older than the moment it was read; otherwise the file is re-read and its content hash compared. The
    cache is an LRU bounded by ``cache_bytes`` and is dropped whenever the ignore rules change. Not reentrant:
    builds are serialized.
    """

    def __init__(
        self,
        source: Path,
        *,
        rules: Optional[IgnoreRules] = None,
        code_type: str = "zip",
        artifact: Optional[Path] = None,
        cache_bytes: int = CACHE_BYTES,
        workers: Optional[int] = None,
        max_bytes: int = MAX_PACKAGE_BYTES,
        open_file: OpenFile = open_source_file,
        clock_ns: Callable[[], int] = time.time_ns,
        racy_margin_ns: int = RACY_MARGIN_NS,
    ) -> None:
        """Set up a builder; nothing is read until :meth:`build`.

        Args:
            source: the function's source folder.
            rules: its ignore rules (default: ``IgnoreRules.for_function(source)``). They are reloaded by
                the builder when one of their files changes on disk.
            code_type: ``zip`` or ``jar``.
            artifact: for ``jar``, the file to upload (relative paths are relative to source).
            cache_bytes: bound of the compressed-entry cache; 0 disables caching.
            workers: compressing threads (default: the CPU count, at most 4).
            max_bytes: the package size limit.
            open_file: how files are opened (a seam for tests).
            clock_ns: wall clock in ns, compared with file mtimes.
            racy_margin_ns: a file changed within this of the moment it was read is re-read next time.
        """
        self.source = Path(source)
        self.code_type = code_type
        self.artifact = artifact
        self.cache_bytes = cache_bytes
        self.workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
        self.max_bytes = max_bytes
        self._rules = rules if rules is not None else IgnoreRules.for_function(self.source)
        self._open_file = open_file
        self._clock_ns = clock_ns
        self._racy_margin_ns = racy_margin_ns
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cached_bytes = 0
        self._fingerprint: Optional[str] = None
        self._trail: Optional[HashTrail] = None
        self._lock = threading.Lock()
        self.stats = BuildStats()

    @property
    def rules(self) -> IgnoreRules:
        """The ignore rules in use (replaced when their files change)."""
        return self._rules

    def invalidate(self) -> None:
        """Forget every cached entry; the next build is cold."""
        with self._lock:
            self._cache.clear()
            self._cached_bytes = 0
            self._trail = None

    def build(self) -> Package:
        """Build the package from the tree as it is now.

        A file or folder that vanishes mid-build (an editor's atomic save, a checkout) makes the build start
        over, up to three times, before the error is reported.

        Raises:
            PackageError: see :func:`build_package`.
        """
        with self._lock:
            if self.code_type == "jar":
                return _jar_package(self.source, self.artifact, self.max_bytes)
            if self.code_type != "zip":
                raise PackageError(f"unsupported code_type {self.code_type!r}: fgsync packages zip and jar")
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    return self._build_zip_once()
                except VanishedError as exc:
                    if attempt == _ATTEMPTS:
                        raise
                    log.debug("%s; packaging %s again", exc, self.source)
            raise AssertionError("unreachable")  # pragma: no cover

    def _build_zip_once(self) -> Package:
        if self._rules.is_stale():
            log.debug("ignore rules of %s changed on disk; reloading", self.source)
            self._rules = self._rules.reload()
        files = walk_source(self.source, self._rules)
        fingerprint = self._rules.fingerprint()
        if fingerprint != self._fingerprint:
            self._cache.clear()
            self._cached_bytes = 0
            self._trail = None
            self._fingerprint = fingerprint
        if not files:
            raise PackageError(
                f"nothing to package in {self.source}: no files left after the ignore rules, and an empty "
                "upload would reset the function to template code"
            )
        return self._build_zip(files)

    def _build_zip(self, files: list[SourceFile]) -> Package:
        read_at = self._clock_ns()
        slots: list[Union[CompressedEntry, int]] = []
        jobs: list[_Job] = []
        reused = 0
        get = self._cache.get
        for src in files:
            cached = get(src.rel)
            # One tuple comparison: (relpath, path, size, mtime_ns, inode, mode, ctime_ns, dev).
            if cached is not None and cached.trusted and cached.src == src:
                slots.append(cached.entry)
                reused += 1
            else:
                slots.append(len(jobs))
                jobs.append((src, cached))
        outcomes = self._run_jobs(jobs)
        done: list[Optional[_Outcome]] = [None] * len(jobs)

        def entries() -> Iterator[CompressedEntry]:
            for slot in slots:
                if isinstance(slot, CompressedEntry):
                    yield slot
                else:
                    done[slot] = outcome = next(outcomes)
                    yield outcome[0]

        try:
            data, sha512, trail = assemble(
                files,
                entries(),
                max_bytes=self.max_bytes,
                abort_bytes=2 * self.max_bytes,
                trail=self._trail,
                keep_trail=self.cache_bytes > 0,
            )
        finally:
            outcomes.close()  # stops the workers early when assemble gave up
        kinds = [o[1] for o in done if o is not None]
        self.stats = BuildStats(reused, kinds.count("rechecked"), kinds.count("compressed"))
        if self.cache_bytes > 0:
            self._trail = trail
            self._remember(files, slots, done, read_at)
        return Package(data, sha512, len(files), tuple([f.rel for f in files]), ZIP_FILENAME, "zip")

    def _run_jobs(self, jobs: Sequence[_Job]) -> Generator[_Outcome, None, None]:
        """Outcomes of the jobs, in order; in parallel batches when there is enough work."""
        total = sum(src.size for src, _ in jobs)
        if self.workers <= 1 or total < _PARALLEL_MIN_BYTES:
            for job in jobs:
                yield self._run_job(job)
            return
        batches: list[list[_Job]] = [[]]
        weight = 0
        for job in jobs:
            batches[-1].append(job)
            weight += job[0].size + 4096  # per-file cost beyond its bytes: open, stat, headers
            if weight >= _BATCH_BYTES:
                batches.append([])
                weight = 0
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fgsync-deflate")
        try:
            futures: list[Future[list[_Outcome]]] = [
                pool.submit(self._run_batch, batch) for batch in batches if batch
            ]
            for future in futures:
                yield from future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_batch(self, batch: Sequence[_Job]) -> list[_Outcome]:
        return [self._run_job(job) for job in batch]

    def _run_job(self, job: _Job) -> _Outcome:
        src, cached = job
        # A different size means different content; anything else (a touch, a racy entry) is compared.
        if cached is not None and cached.src.size == src.size:
            fresh = refresh_file(src, cached.entry, open_file=self._open_file, keep_limit=self.max_bytes)
            if fresh is None:
                return cached.entry, "rechecked"
            return fresh, "compressed"
        return compress_file(src, open_file=self._open_file, keep_limit=self.max_bytes), "compressed"

    def _remember(
        self,
        files: Sequence[SourceFile],
        slots: Sequence[Union[CompressedEntry, int]],
        done: Sequence[Optional[_Outcome]],
        read_at: int,
    ) -> None:
        touch = self._cache.move_to_end
        for src, slot in zip(files, slots):
            if isinstance(slot, CompressedEntry):
                touch(src.rel)
                continue
            outcome = done[slot]
            if outcome is not None:
                # ctime too: a write in the same tick as the read may leave mtime alone but never ctime's tick.
                trusted = max(src.mtime_ns, src.ctime_ns) + self._racy_margin_ns < read_at
                self._store(src.rel, _Cached(src, outcome[0], trusted))
        if len(self._cache) > len(files):  # files deleted, renamed or newly ignored
            current = {src.rel for src in files}
            for rel in [rel for rel in self._cache if rel not in current]:
                self._drop(rel)
        while self._cached_bytes > self.cache_bytes and self._cache:
            self._drop(next(iter(self._cache)))

    def _store(self, rel: str, item: _Cached) -> None:
        self._drop(rel)
        self._cache[rel] = item
        self._cached_bytes += len(item.entry.data)

    def _drop(self, rel: str) -> None:
        old = self._cache.pop(rel, None)
        if old is not None:
            self._cached_bytes -= len(old.entry.data)


def _jar_package(source: Path, artifact: Optional[Path], max_bytes: int) -> Package:
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


def build_package(
    fn_source: Path,
    *,
    rules: IgnoreRules,
    code_type: str = "zip",
    artifact: Optional[Path] = None,
    max_bytes: int = MAX_PACKAGE_BYTES,
) -> Package:
    """Build a function's package from scratch: a reproducible zip of source, or the jar artifact.

    Args:
        fn_source: the function's source folder; its contents become the zip root.
        rules: the ignore rules (``IgnoreRules.for_function``).
        code_type: ``zip`` or ``jar``.
        artifact: for ``jar``, the file to upload (relative paths are relative to fn_source).
        max_bytes: the size limit (FunctionGraph's 50 MB unless a test says otherwise).

    Raises:
        PackageError: no files; a symlink out of source, dangling or looping; an unreadable file or folder;
            over the size limit; a missing jar artifact.
    """
    builder = PackageBuilder(
        fn_source, rules=rules, code_type=code_type, artifact=artifact, cache_bytes=0, max_bytes=max_bytes
    )
    return builder.build()
