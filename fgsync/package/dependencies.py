"""Which of a function's files go into its dependency package: a partition of the one packaging walk.

FunctionGraph merges a function's dependency packages into its code folder at run time, so fgsync ships the
files that rarely change (``node_modules/``, ``pip install -t .`` packages) as a dependency package uploaded
once, and the code zip leaves them out. The split is decided from the files :func:`~fgsync.package.walk.walk_source`
found (after the ignore rules), never by a second walk: every file goes to exactly one side, so the two path sets
are disjoint and together are the single-package file set.

``dependencies = "auto"`` takes both layouts whatever the runtime (packaging is offline and does not know it):

* every file under ``node_modules/`` at the source root;
* for each ``<name>.dist-info/RECORD`` directly at the source root, the files its rows list and every file of
  that ``.dist-info`` folder. A row that points outside the source (pip's ``../../bin/`` launchers), or that
  names a file the walk did not find (a ``.pyc`` the ignore rules drop, a file deleted since), is skipped.

A list of patterns is gitignore syntax relative to the source (``pathspec.GitIgnoreSpec``, as in
:mod:`fgsync.ignore`), with git's folder rule: a file is a dependency when it, or a folder above it, matches.
"""

from __future__ import annotations

import functools
import io
import posixpath
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Union

from fgsync.errors import PackageError
from fgsync.package.archive import CHUNK
from fgsync.package.walk import OpenFile, SourceFile, open_source_file, read_error

if TYPE_CHECKING:  # imported where used: every packaging imports this module, few functions have patterns
    from pathspec import GitIgnoreSpec

__all__ = [
    "AUTO",
    "MAX_DEPENDENCY_BYTES",
    "MAX_DEPENDENCY_FILES",
    "MAX_DEPENDENCY_OBS_BYTES",
    "OFF",
    "DependencySelector",
    "DependencySetting",
    "DependencySpec",
    "check_dependency_files",
    "dependency_size_fix",
    "record_paths",
    "split_files",
]

OFF = "off"
AUTO = "auto"
#: ``dependencies`` as fgsync.toml spells it (the config's ``FunctionConfig.dependencies``).
DependencySetting = Union[str, Sequence[str]]

#: FunctionGraph: at most this many files in one dependency package.
MAX_DEPENDENCY_FILES = 30_000
#: FunctionGraph: a dependency zip sent in the request body (``depend_type = "zip"``) is at most 40 MB.
MAX_DEPENDENCY_BYTES = 41_943_040
#: Through OBS (``depend_type = "obs"``) a dependency zip may reach 300 MB.
MAX_DEPENDENCY_OBS_BYTES = 314_572_800

NODE_MODULES = "node_modules/"
_RECORD_RE = r"^[^/]+\.dist-info/RECORD$"  # compiled on first use (re keeps it): only "auto" looks for RECORDs
# A RECORD is a few KB; one that is not is not a RECORD, and holding it whole would be a waste.
_MAX_RECORD_BYTES = 64 * 1024 * 1024
_MEMO_LIMIT = 200_000
#: As the builder's cache: a RECORD changed within this of its read is parsed again next time.
_RACY_MARGIN_NS = 2_000_000_000

#: What to do about a dependency package that is too big or has too many files (also the size limit's fix
#: once OBS carries it).
NARROW_FIX = (
    "leave out what the function does not need at run time (exclude, .fgsyncignore, or a narrower list of "
    "dependencies patterns)"
)


@dataclass(frozen=True)
class DependencySpec:
    """How a function's dependency files are chosen: ``auto``, or gitignore-style ``patterns``.

    Build it with :meth:`from_setting` from the ``dependencies`` value of fgsync.toml.
    """

    auto: bool = False
    patterns: tuple[str, ...] = ()

    @classmethod
    def from_setting(cls, setting: Union[DependencySetting, DependencySpec, None]) -> Optional[DependencySpec]:
        """The spec for a ``dependencies`` value: None for ``"off"`` (or None), else the spec.

        Raises:
            PackageError: an unknown string, an empty list, or a pattern gitignore syntax refuses (the config
                check refuses these first; this guards other callers).
        """
        if setting is None or isinstance(setting, DependencySpec):
            return setting
        if isinstance(setting, str):
            if setting == OFF:
                return None
            if setting == AUTO:
                return cls(auto=True)
            raise PackageError(f'dependencies = {setting!r}: must be "off", "auto" or a list of patterns')
        patterns = tuple(setting)
        if not patterns:
            raise PackageError("dependencies: an empty list of patterns names no files")
        _compile(patterns)
        return cls(patterns=patterns)

    def looks_like_dependency(self, rel: str) -> bool:
        """Whether a changed path belongs to the dependency set, judged from the path alone (the watcher's
        question: an ``npm install`` writes for many seconds, and should settle into one republish).

        ``auto``: under ``node_modules/`` or a ``*.dist-info/`` folder at the root (the packages a RECORD lists
        cannot be told by their names); patterns: the path or a folder above it matches.
        """
        if self.auto:
            head = rel.split("/", 1)[0]
            return head == NODE_MODULES.rstrip("/") or head.endswith(".dist-info")
        spec = _compiled(self.patterns)
        parts = rel.split("/")
        return any(spec.match_file("/".join(parts[:depth]) + "/") for depth in range(1, len(parts))) or bool(
            spec.match_file(rel)
        )

    def describe(self) -> str:
        """The setting as fgsync.toml spells it, for messages: ``"auto"`` or ``["vendor/", ...]``."""
        if self.auto:
            return '"auto"'
        return "[" + ", ".join(f'"{p}"' for p in self.patterns) + "]"


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> GitIgnoreSpec:
    """:func:`_compile`, once per set of patterns (the watcher asks for every changed path)."""
    return _compile(patterns)


def _compile(patterns: Sequence[str]) -> GitIgnoreSpec:
    from pathspec import GitIgnoreSpec

    try:
        return GitIgnoreSpec.from_lines(list(patterns))
    except ValueError as exc:
        raise PackageError(f"dependencies: invalid pattern ({exc})") from None


def record_paths(text: str) -> list[str]:
    """The files a ``.dist-info/RECORD`` lists, as normalised POSIX paths relative to the folder it is in.

    RECORD is CSV (path, hash, size); paths are relative to the site-packages folder, which for ``pip install
    -t .`` is the source root. Rows whose path is absolute or leaves that folder (``../../bin/x``) are dropped;
    whether the rest exist is the caller's business.

    Raises:
        ValueError: the text is not CSV.
    """
    import csv  # here: only "auto" with a RECORD reads CSV

    paths: list[str] = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip():
            continue
        # RECORD paths use "/" by the spec; old Windows installers wrote "\".
        raw = row[0].strip().replace("\\", "/")
        if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
            continue
        rel = posixpath.normpath(raw)
        if rel in (".", "..") or rel.startswith("../"):
            continue
        paths.append(rel)
    return paths


class DependencySelector:
    """Splits walk results into code and dependency files; keeps what it parsed between builds.

    One per builder (not thread-safe: the builder serializes builds). RECORD files are parsed again only when
    their stat changed, or when their timestamps were too fresh to vouch for their content; pattern decisions
    are memoized per path and per folder.
    """

    def __init__(
        self,
        spec: DependencySpec,
        *,
        open_file: OpenFile = open_source_file,
        clock_ns: Callable[[], int] = time.time_ns,
        racy_margin_ns: int = _RACY_MARGIN_NS,
    ) -> None:
        self.spec = spec
        self._open_file = open_file
        self._clock_ns = clock_ns
        self._racy_margin_ns = racy_margin_ns
        self._spec = _compile(spec.patterns) if spec.patterns else None
        # folder relpath -> whether it or a folder above it matches; file relpath -> whether it matches
        self._folders: dict[str, bool] = {"": False}
        self._files: dict[str, bool] = {}
        # RECORD relpath -> (its stat when parsed, whether that stat vouches for the content, listed paths)
        self._records: dict[str, tuple[SourceFile, bool, tuple[str, ...]]] = {}

    def split(self, files: Sequence[SourceFile]) -> tuple[list[SourceFile], list[SourceFile]]:
        """(code files, dependency files), each in the order of ``files``.

        Raises:
            PackageError: a RECORD file cannot be read or is not CSV.
        """
        is_dependency = self._auto_test(files) if self.spec.auto else self._pattern_test()
        code: list[SourceFile] = []
        dependency: list[SourceFile] = []
        for src in files:
            (dependency if is_dependency(src.rel) else code).append(src)
        return code, dependency

    # --- auto ---------------------------------------------------------------------------------------------

    def _auto_test(self, files: Sequence[SourceFile]) -> Callable[[str], bool]:
        read_at = self._clock_ns()
        listed: set[str] = set()
        dist_infos: list[str] = []
        seen: dict[str, tuple[SourceFile, bool, tuple[str, ...]]] = {}
        for src in files:
            rel = src.rel
            # Only names ending in "/RECORD" at depth one can match: a cheap filter before the regex.
            if rel.endswith("/RECORD") and re.match(_RECORD_RE, rel):
                kept = self._records.get(rel)
                if kept is None or not kept[1] or kept[0] != src:
                    trusted = max(src.mtime_ns, src.ctime_ns) + self._racy_margin_ns < read_at
                    kept = (src, trusted, tuple(self._parse_record(src)))
                seen[rel] = kept
                listed.update(kept[2])
                dist_infos.append(rel[: -len("RECORD")])
        self._records = seen
        prefixes = tuple(dist_infos)

        def is_dependency(rel: str) -> bool:
            return rel.startswith(NODE_MODULES) or rel in listed or (bool(prefixes) and rel.startswith(prefixes))

        return is_dependency

    def _parse_record(self, src: SourceFile) -> list[str]:
        import csv

        if src.size > _MAX_RECORD_BYTES:
            raise PackageError(f"{src.rel} is {src.size:,} bytes: too big for a RECORD file; reinstall the package")
        try:
            with self._open_file(src.path) as handle:
                data = b"".join(iter(lambda: handle.read(CHUNK), b""))
        except OSError as exc:
            raise read_error(src.rel, exc) from None
        try:
            return record_paths(data.decode("utf-8", errors="replace"))
        except (ValueError, csv.Error) as exc:
            raise PackageError(
                f"{src.rel} is not a valid RECORD file ({exc}): reinstall that package (pip install -t . "
                '--force-reinstall ...), or list the dependency files as patterns instead of "auto"'
            ) from None

    # --- patterns -----------------------------------------------------------------------------------------

    def _pattern_test(self) -> Callable[[str], bool]:
        spec = self._spec
        assert spec is not None
        folders = self._folders
        memo = self._files
        if len(memo) >= _MEMO_LIMIT or len(folders) >= _MEMO_LIMIT:
            memo.clear()
            folders.clear()
            folders[""] = False

        def folder_matches(folder: str) -> bool:
            known = folders.get(folder)
            if known is None:
                parent = folder.rpartition("/")[0]
                known = folder_matches(parent) or bool(spec.check_file(folder + "/").include)
                folders[folder] = known
            return known

        def is_dependency(rel: str) -> bool:
            known = memo.get(rel)
            if known is None:
                known = folder_matches(rel.rpartition("/")[0]) or bool(spec.check_file(rel).include)
                memo[rel] = known
            return known

        return is_dependency


def split_files(
    files: Sequence[SourceFile], spec: DependencySpec, *, open_file: OpenFile = open_source_file
) -> tuple[list[SourceFile], list[SourceFile]]:
    """(code files, dependency files) of one walk, without keeping anything for next time.

    Raises:
        PackageError: a RECORD file cannot be read or is not CSV.
    """
    return DependencySelector(spec, open_file=open_file).split(files)


def check_dependency_files(files: Sequence[SourceFile], *, max_files: int = MAX_DEPENDENCY_FILES) -> None:
    """Refuse, before anything is compressed, a dependency package FunctionGraph would refuse.

    Raises:
        PackageError: more than ``max_files`` files; a file name ending in ``~``.
    """
    if len(files) > max_files:
        raise PackageError(
            f"dependency package has {len(files):,} files, over FunctionGraph's limit of {max_files:,} files per "
            f"dependency: {NARROW_FIX}"
        )
    tilde = [src.rel for src in files if src.rel.endswith("~")]
    if tilde:
        more = f" (and {len(tilde) - 1:,} more)" if len(tilde) > 1 else ""
        raise PackageError(
            f"dependency package: the file name {tilde[0]}{more} ends in ~, which FunctionGraph refuses in a "
            "dependency: delete it, or leave it out (exclude or .fgsyncignore)"
        )


def obs_fix(max_bytes: int) -> str:
    """``[obs]`` lifts a limit of an upload in the request, up to OBS's 300 MB ("" past that)."""
    if max_bytes < MAX_DEPENDENCY_OBS_BYTES:
        limit = f"{MAX_DEPENDENCY_OBS_BYTES:,}"
        return f'set [obs] bucket = "..." in fgsync.toml to send it through OBS (up to {limit} bytes)'
    return ""


def dependency_size_fix(max_bytes: int) -> str:
    """What the size limit's message says to do: ``[obs]`` lifts the direct-upload limit; past OBS's, narrow."""
    lift = obs_fix(max_bytes)
    return f"{lift}, or {NARROW_FIX}" if lift else NARROW_FIX

