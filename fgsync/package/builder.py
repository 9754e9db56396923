"""Deterministic packaging: the zip (or jar) that gets uploaded, its SHA-512, and the build command.

``build_package`` makes a package from scratch; ``PackageBuilder`` is the daemon's long-lived version that
keeps each file's compressed entry between builds and re-deflates only what changed, while producing the very
same bytes as a cold build. The walk is in :mod:`fgsync.package.walk`, the zip layout in
:mod:`fgsync.package.archive`, the build command in :mod:`fgsync.package.build`.

With ``dependencies`` (see :mod:`fgsync.package.dependencies`) one walk gives two zips: the code, and the
function's dependency package (``build_split`` / ``build_split_package``). Both come from the same entry cache,
each with its own hash trail, so an edit on one side re-deflates and re-hashes nothing of the other.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Union

from fgsync.errors import PackageError
from fgsync.ignore import IgnoreRules
from fgsync.package.archive import CompressedEntry, HashTrail, assemble, compress_file, refresh_file
from fgsync.package.build import run_build
from fgsync.package.deflate import in_order
from fgsync.package.dependencies import (
    MAX_DEPENDENCY_BYTES,
    MAX_DEPENDENCY_FILES,
    OFF,
    DependencySelector,
    DependencySetting,
    DependencySpec,
    check_dependency_files,
    dependency_size_fix,
    obs_fix,
)
from fgsync.package.model import (
    DEPENDENCY_FILENAME,
    MAX_PACKAGE_BYTES,
    ZIP_FILENAME,
    BuildStats,
    Package,
    SplitPackage,
    jar_package,
)
from fgsync.package.walk import (
    DanglingLinkError,
    OpenFile,
    SourceFile,
    VanishedError,
    Walk,
    open_source_file,
    walk_tree,
)

__all__ = [
    "CACHE_BYTES",
    "MAX_PACKAGE_BYTES",
    "BuildStats",
    "Package",
    "PackageBuilder",
    "ReportedWalk",
    "SplitPackage",
    "build_package",
    "build_split_package",
    "run_build",
]

log = logging.getLogger(__name__)

#: Default bound of the incremental cache: room for a maximal package's entries.
CACHE_BYTES = 64 * 1024 * 1024
#: A cached entry whose mtime or ctime is within this of the moment it was read may have been rewritten in the
#: same timestamp tick (2 s on FAT), so the next build re-reads it and compares content hashes ("racy git").
RACY_MARGIN_NS = 2_000_000_000
_ATTEMPTS = 3


@dataclass(frozen=True)
class _Cached:
    src: SourceFile  # the file as it was stat'ed when its entry was made (or last re-checked)
    entry: CompressedEntry
    trusted: bool  # its mtime was safely older than the read: an equal stat means equal content


class ReportedWalk(NamedTuple):
    """What a build from the reported paths saw: its walk, and the ignore rules it was made with."""

    walk: Walk
    rules: IgnoreRules


class _Side:
    """One of the archives a builder makes (code, dependency): its limit, names, and last trail and package."""

    def __init__(self, what: str, filename: str, max_bytes: int, fix: str = "") -> None:
        self.what = what
        self.filename = filename
        self.max_bytes = max_bytes
        self.fix = fix
        self.trail: Optional[HashTrail] = None
        self.last: Optional[Package] = None  # the last package built, reused when nothing in it changed

    def forget(self) -> None:
        self.trail = None
        self.last = None


_Job = tuple[SourceFile, Optional[_Cached], _Side]
_Outcome = tuple[CompressedEntry, str]  # the entry and "rechecked" or "compressed"
_Slot = Union[CompressedEntry, int]  # a reused entry, or the index of the job that makes it


class PackageBuilder:
    """Builds a function's package again and again, re-deflating only the files that changed.

    The bytes are identical to a cold :func:`build_package` of the same tree: cached entries are reused only
    when the file's (size, mtime_ns, ctime_ns, inode, device, mode) is unchanged and both its timestamps were
    safely older than the moment it was read; otherwise the file is re-read and its content hash compared. The
    cache is an LRU bounded by ``cache_bytes`` and is dropped whenever the ignore rules change. Not reentrant:
    builds are serialized.

    With ``dependencies``, :meth:`build_split` makes the code zip and the dependency package from one walk;
    the cache is shared (a file that moves from one side to the other is not compressed again) and each
    archive keeps its own hash trail; an archive none of whose entries changed is the previous package object.
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
        dependencies: Union[DependencySetting, DependencySpec, None] = OFF,
        max_dependency_bytes: int = MAX_DEPENDENCY_BYTES,
        max_dependency_files: int = MAX_DEPENDENCY_FILES,
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
            dependencies: the function's ``dependencies`` (``"off"``, ``"auto"``, patterns, or a
                :class:`DependencySpec`): which files go into the dependency package.
            max_dependency_bytes: the dependency zip's size limit (40 MB for a direct upload; the OBS route
                passes ``MAX_DEPENDENCY_OBS_BYTES``).
            max_dependency_files: the dependency package's file-count limit.

        Raises:
            PackageError: ``dependencies`` is not a valid setting.
        """
        self.source = Path(source)
        self.code_type = code_type
        self.artifact = artifact
        self.cache_bytes = cache_bytes
        self.workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
        self.max_bytes = max_bytes
        self.dependencies = DependencySpec.from_setting(dependencies)
        self.max_dependency_bytes = max_dependency_bytes
        self.max_dependency_files = max_dependency_files
        self._selector = (
            DependencySelector(self.dependencies, open_file=open_file, clock_ns=clock_ns, racy_margin_ns=racy_margin_ns)
            if self.dependencies is not None
            else None
        )
        # [obs] lifts the limit of an upload in the request, up to OBS's 300 MB.
        self._code = _Side("package", ZIP_FILENAME, max_bytes, obs_fix(max_bytes))
        self._dependency = _Side(
            "dependency package", DEPENDENCY_FILENAME, max_dependency_bytes, dependency_size_fix(max_dependency_bytes)
        )
        self._rules = rules if rules is not None else IgnoreRules.for_function(self.source)
        self._open_file = open_file
        self._clock_ns = clock_ns
        self._racy_margin_ns = racy_margin_ns
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cached_bytes = 0
        self._fingerprint: Optional[str] = None
        self._lock = threading.Lock()
        #: The last build's walk (None after a failure: the next build walks the whole tree), and whether it came
        #: from reported paths only (then :meth:`missed` has something to verify).
        self._walk: Optional[Walk] = None
        self._walk_partial = False
        #: The symlinks the last build that went through followed (kept when one fails, with the one that dangled):
        #: read without the lock.
        self._links: tuple[tuple[str, str], ...] = ()
        #: What the last build did, over both archives; ``code_stats`` and ``dependency_stats`` split it.
        self.stats = BuildStats()
        self.code_stats = BuildStats()
        self.dependency_stats = BuildStats()

    @property
    def rules(self) -> IgnoreRules:
        """The ignore rules in use (replaced when their files change)."""
        return self._rules

    def invalidate(self) -> None:
        """Forget every cached entry; the next build is cold."""
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        self._cache.clear()
        self._cached_bytes = 0
        self._walk = None
        self._code.forget()
        self._dependency.forget()

    def build(self, changed: Optional[Collection[str]] = None) -> Package:
        """Build the package from the tree as it is now: with dependencies, the code part of :meth:`build_split`.

        A file or folder that vanishes mid-build (an editor's atomic save, a checkout) makes the build start
        over, up to three times, before the error is reported.

        Raises:
            PackageError: see :func:`build_package`.
        """
        return self.build_split(changed).code

    def build_split(self, changed: Optional[Collection[str]] = None) -> SplitPackage:
        """Build the code zip and, with dependencies, the dependency package, from one walk of the tree.

        Without dependencies ``dependency`` is None and ``code`` is what :meth:`build` always gave.

        Args:
            changed: every path (relative to the source, POSIX; "" for the whole tree) that changed since the
                last build, as the watcher reported them: only those are looked at
                (:func:`fgsync.package.rewalk.rewalk`), unless the last build failed or the paths call for a
                full walk. None: walk the whole tree. Paths a watcher missed are found by :meth:`missed`.

        Raises:
            PackageError: see :func:`build_split_package`.
        """
        with self._lock:
            if self.code_type == "jar":
                if self.dependencies is not None:
                    raise PackageError('dependencies need code_type = "zip": a jar is uploaded as it is')
                return SplitPackage(jar_package(self.source, self.artifact, self.max_bytes), None)
            if self.code_type != "zip":
                raise PackageError(f"unsupported code_type {self.code_type!r}: fgsync packages zip and jar")
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    # A retry walks the whole tree: the first attempt forgot its walk.
                    return self._build_zip_once(changed if attempt == 1 else None)
                except DanglingLinkError as exc:
                    # Where it leads may be an ignored folder: something appearing there is a change of the link.
                    if exc.link not in self._links:
                        self._links = (*self._links, exc.link)
                    raise
                except VanishedError as exc:
                    if attempt == _ATTEMPTS:
                        raise
                    log.debug("%s; packaging %s again", exc, self.source)
            raise AssertionError("unreachable")  # pragma: no cover

    def _build_zip_once(self, changed: Optional[Collection[str]]) -> SplitPackage:
        previous, self._walk = self._walk, None  # a build that fails leaves none: the next one walks it all
        if self._rules.is_stale():
            log.debug("ignore rules of %s changed on disk; reloading", self.source)
            self._rules = self._rules.reload()
            previous = None
        walk = None
        if changed is not None and previous is not None:
            from fgsync.package.rewalk import rewalk  # here: only the daemon's repacks know what changed

            walk = rewalk(self.source, self._rules, previous, changed)
        partial = walk is not None
        if walk is None:
            walk = walk_tree(self.source, self._rules)
        files = walk.files
        fingerprint = self._rules.fingerprint()
        if fingerprint != self._fingerprint:
            self._forget()
            self._fingerprint = fingerprint
        dependency: list[SourceFile] = []
        if self._selector is None:
            code = files
        else:
            code, dependency = self._selector.split(files)
        if not code:
            raise PackageError(self._nothing_to_package(bool(dependency)))
        if dependency:
            check_dependency_files(dependency, max_files=self.max_dependency_files)
        else:
            self._dependency.forget()
        parts = [(self._code, code)]
        if dependency:
            parts.append((self._dependency, dependency))
        packages = self._build_zips(parts)
        self._walk, self._walk_partial = walk, partial
        self._links = tuple(walk.links)
        return SplitPackage(packages[0], packages[1] if dependency else None)

    def aliases(self, rel: str) -> list[str]:
        """The names the source path ``rel`` has in the package through the symlinks the last build followed
        (``pkg/lib.py`` for ``node_modules/pkg/lib.py`` with ``pkg -> node_modules/pkg``): the watcher drops
        the events of an ignored folder, though a link leads into it. Cheap, and never waits for a build."""
        links = self._links
        if not links:
            return []
        sep = os.sep
        real = os.path.realpath(self.source) + sep + rel.replace("/", sep)
        names = []
        for link_rel, target in links:
            if real == target:
                names.append(link_rel)
            elif real.startswith(target + sep):
                names.append(link_rel + "/" + real[len(target) + 1 :].replace(sep, "/"))
        return names

    def last_walk(self) -> Optional[ReportedWalk]:
        """What the last build saw, when it looked at the reported paths only; None after a build that walked the
        whole tree (nothing to verify) or failed. Every function the package of that build serves is verified
        against it (:meth:`missed`)."""
        with self._lock:
            if self._walk is None or not self._walk_partial:
                return None
            return ReportedWalk(self._walk, self._rules)

    def missed(self, since: Optional[ReportedWalk] = None) -> list[str]:
        """After a build from reported paths: walk the whole tree and name the paths that differ from what that
        build saw (changes no event reported: a hard link's other name, a watch lost for a moment). A change
        found here is a change like any other; a missed event then costs one more sync, never a stale push.

        Args:
            since: what the build to verify saw (:meth:`last_walk` then), when it may not be the last one: a
                function that shares this builder was served by a build that another function's sync has
                replaced since (the change found for one of them is news to the other).

        Returns [] when that build walked the whole tree, when (without ``since``) another build ran meanwhile (it
        is verified after its own sync), or when nothing differs; ``[""]`` when the tree cannot be walked (the
        sync that follows reports why). The walk runs without the builder's lock: call it from a low-priority
        thread.
        """
        latest = since is None
        if since is None:
            since = self.last_walk()
            if since is None:
                return []
        walk, rules = since
        if rules.is_stale():
            return [""]  # an ignore file changed unreported: every answer may differ
        try:
            now = walk_tree(self.source, rules).files
        except PackageError:
            return [""]
        if latest:
            with self._lock:
                if self._walk is not walk:
                    return []
        seen = {f.rel: f for f in walk.files}
        differ = [f.rel for f in now if seen.pop(f.rel, None) != f]
        return sorted([*differ, *seen])

    def _nothing_to_package(self, all_dependencies: bool) -> str:
        if all_dependencies and self.dependencies is not None:
            return (
                f"nothing to package in {self.source}: every file left after the ignore rules goes to the "
                f"dependency package (dependencies = {self.dependencies.describe()}), and an empty code upload "
                "would reset the function to template code"
            )
        return (
            f"nothing to package in {self.source}: no files left after the ignore rules, and an empty "
            "upload would reset the function to template code"
        )

    def _build_zips(self, parts: Sequence[tuple[_Side, list[SourceFile]]]) -> list[Package]:
        """One archive per (side, files); the files that need reading are compressed in one pool, in order."""
        read_at = self._clock_ns()
        plans: list[tuple[_Side, list[SourceFile], list[_Slot]]] = []
        jobs: list[_Job] = []
        reused: list[int] = []
        get = self._cache.get
        for side, files in parts:
            slots: list[_Slot] = []
            count = 0
            for src in files:
                cached = get(src.rel)
                # One tuple comparison: (relpath, path, size, mtime_ns, inode, mode, ctime_ns, dev).
                if cached is not None and cached.trusted and cached.src == src:
                    slots.append(cached.entry)
                    count += 1
                else:
                    slots.append(len(jobs))
                    jobs.append((src, cached, side))
            plans.append((side, files, slots))
            reused.append(count)
        # Jobs are in archive order (all of the code's, then the dependency's): each assemble below takes
        # exactly its own outcomes from the one stream.
        outcomes = self._run_jobs(jobs)
        # What each job did, and (only when caching) the entry it made: a cold build keeps no entry once it is in
        # the archive, so the zip is held once.
        kinds: list[Optional[str]] = [None] * len(jobs)
        done: list[Optional[_Outcome]] = [None] * len(jobs)
        try:
            packages = [self._archive(side, files, slots, outcomes, kinds, done) for side, files, slots in plans]
        finally:
            outcomes.close()  # stops the workers early when assemble gave up
        per_side: list[BuildStats] = []
        for (side, _files, _slots), count in zip(plans, reused):
            made = [kind for kind, job in zip(kinds, jobs) if kind is not None and job[2] is side]
            per_side.append(BuildStats(count, made.count("rechecked"), made.count("compressed")))
        self.code_stats = per_side[0]
        self.dependency_stats = per_side[1] if len(per_side) > 1 else BuildStats()
        self.stats = BuildStats(
            sum(st.reused for st in per_side),
            sum(st.rechecked for st in per_side),
            sum(st.compressed for st in per_side),
        )
        if self.cache_bytes > 0:
            all_files = [src for _side, files, _slots in plans for src in files]
            all_slots = [slot for _side, _files, slots in plans for slot in slots]
            self._remember(all_files, all_slots, done, read_at)
        return packages

    def _archive(
        self,
        side: _Side,
        files: list[SourceFile],
        slots: list[_Slot],
        outcomes: Iterator[_Outcome],
        kinds: list[Optional[str]],
        done: list[Optional[_Outcome]],
    ) -> Package:
        last, trail = side.last, side.trail
        if last is not None and trail is not None and _unchanged(trail, files, slots):
            # Same names, modes and entry objects as last time: the same bytes. Reusing the package object
            # also keeps its lazily computed sha256.
            return last

        keep = self.cache_bytes > 0

        def entries() -> Iterator[CompressedEntry]:
            for slot in slots:
                if isinstance(slot, CompressedEntry):
                    yield slot
                else:
                    outcome = next(outcomes)
                    kinds[slot] = outcome[1]
                    if keep:
                        done[slot] = outcome
                    yield outcome[0]

        data, sha512, new_trail = assemble(
            files,
            entries(),
            max_bytes=side.max_bytes,
            abort_bytes=2 * side.max_bytes,
            trail=trail,
            keep_trail=self.cache_bytes > 0,
            what=side.what,
            fix=side.fix,
        )
        package = Package(data, sha512, len(files), tuple([f.rel for f in files]), side.filename, "zip")
        if self.cache_bytes > 0:
            side.trail, side.last = new_trail, package
        return package

    def _run_jobs(self, jobs: Sequence[_Job]) -> Generator[_Outcome, None, None]:
        """Outcomes of the jobs, in order; in parallel batches when there is enough work."""
        return in_order(jobs, self._run_job, size=lambda job: job[0].size, workers=self.workers)

    def _run_job(self, job: _Job) -> _Outcome:
        src, cached, side = job
        limit, what, fix = side.max_bytes, side.what, side.fix
        # A different size means different content; anything else (a touch, a racy entry) is compared.
        if cached is not None and cached.src.size == src.size:
            fresh = refresh_file(src, cached.entry, open_file=self._open_file, keep_limit=limit, what=what, fix=fix)
            if fresh is None:
                return cached.entry, "rechecked"
            return fresh, "compressed"
        return compress_file(src, open_file=self._open_file, keep_limit=limit, what=what, fix=fix), "compressed"

    def _remember(
        self,
        files: Sequence[SourceFile],
        slots: Sequence[_Slot],
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


def _unchanged(trail: HashTrail, files: Sequence[SourceFile], slots: Sequence[_Slot]) -> bool:
    """Whether an archive of these files and entries is the one the trail was made from."""
    keys = trail.keys
    if len(keys) != len(files):
        return False
    for key, src, slot in zip(keys, files, slots):
        if not isinstance(slot, CompressedEntry) or key[2] is not slot or key[0] != src.rel or key[1] != src.mode:
            return False
    return True


def build_package(
    fn_source: Path,
    *,
    rules: IgnoreRules,
    code_type: str = "zip",
    artifact: Optional[Path] = None,
    max_bytes: int = MAX_PACKAGE_BYTES,
    dependencies: Union[DependencySetting, DependencySpec, None] = OFF,
    max_dependency_bytes: int = MAX_DEPENDENCY_BYTES,
) -> Package:
    """Build a function's package from scratch: a reproducible zip of source, or the jar artifact.

    With ``dependencies`` this is the code zip only (the dependency files left out, the dependency package
    still built and checked against its limits); :func:`build_split_package` gives both.

    Args:
        fn_source: the function's source folder; its contents become the zip root.
        rules: the ignore rules (``IgnoreRules.for_function``).
        code_type: ``zip`` or ``jar``.
        artifact: for ``jar``, the file to upload (relative paths are relative to fn_source).
        max_bytes: the size limit (FunctionGraph's 50 MB unless a test says otherwise).
        dependencies: ``"off"`` (default), ``"auto"``, patterns, or a :class:`DependencySpec`.
        max_dependency_bytes: the dependency package's size limit.

    Raises:
        PackageError: no files; a symlink out of source, dangling or looping; an unreadable file or folder;
            over the size limit; a missing jar artifact; a dependency package over its limits.
    """
    return build_split_package(
        fn_source,
        rules=rules,
        code_type=code_type,
        artifact=artifact,
        max_bytes=max_bytes,
        dependencies=dependencies,
        max_dependency_bytes=max_dependency_bytes,
    ).code


def build_split_package(
    fn_source: Path,
    *,
    rules: IgnoreRules,
    dependencies: Union[DependencySetting, DependencySpec, None],
    code_type: str = "zip",
    artifact: Optional[Path] = None,
    max_bytes: int = MAX_PACKAGE_BYTES,
    max_dependency_bytes: int = MAX_DEPENDENCY_BYTES,
    max_dependency_files: int = MAX_DEPENDENCY_FILES,
) -> SplitPackage:
    """Build a function's code zip and dependency package from scratch, from one walk of its source.

    Args:
        fn_source: the function's source folder.
        rules: the ignore rules (``IgnoreRules.for_function``).
        dependencies: ``"off"``, ``"auto"``, patterns relative to fn_source, or a :class:`DependencySpec`.
        code_type: ``zip`` (``jar`` only with ``dependencies = "off"``).
        artifact: for ``jar``, the file to upload.
        max_bytes: the code zip's size limit.
        max_dependency_bytes: the dependency zip's size limit (40 MB direct; OBS allows 300 MB).
        max_dependency_files: the dependency package's file-count limit (30,000).

    Returns:
        The code zip and the dependency package (None when no file is a dependency).

    Raises:
        PackageError: as :func:`build_package`; a code set left empty (every file a dependency); a dependency
            package over ``max_dependency_files`` files or ``max_dependency_bytes`` bytes, or holding a file
            name that ends in ``~``.
    """
    builder = PackageBuilder(
        fn_source,
        rules=rules,
        code_type=code_type,
        artifact=artifact,
        cache_bytes=0,
        max_bytes=max_bytes,
        dependencies=dependencies,
        max_dependency_bytes=max_dependency_bytes,
        max_dependency_files=max_dependency_files,
    )
    return builder.build_split()
