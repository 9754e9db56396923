"""What a function's inputs hold right now, as one digest: the daemon's test for "did anything but the build
change?".

A function with a ``build`` command writes files into its own source; their events must not start another
build, or a build whose output differs each time would loop for ever. Dropping every event for a while after a
build (a time window) also drops the user's saves that land in it. So the daemon decides by content instead:
right after each build, :meth:`InputFingerprints.record` takes the digest of the tree as packaging sees it; when
changes come in later, :meth:`InputFingerprints.changed` compares the tree now with that. The build's own outputs
are in the recorded digest (they were written before it was taken); a save that came after is not.

The digest covers every file the packaging walk takes (same ignore rules), by path, executable bit and SHA-256 of
the content; contents are re-read only for files whose stat changed (or whose timestamps were too fresh to vouch
for them), as in :class:`fgsync.package.builder.PackageBuilder`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional

from fgsync.errors import FgsyncError
from fgsync.ignore import IgnoreRules
from fgsync.package.archive import CHUNK
from fgsync.package.builder import RACY_MARGIN_NS
from fgsync.package.walk import SourceFile, open_source_file, read_error, walk_source

if TYPE_CHECKING:
    from fgsync.config import FunctionConfig


class _Tree:
    """The content digests of one function's files, kept between looks."""

    def __init__(self, fn: FunctionConfig, clock_ns: Callable[[], int]) -> None:
        self.fn = fn
        self._rules = IgnoreRules.for_function(fn.source, exclude=fn.exclude, use_gitignore=fn.use_gitignore)
        self._clock_ns = clock_ns
        # relpath -> (the stat it had, the SHA-256 of its content, whether that stat vouches for the content)
        self._files: dict[str, tuple[SourceFile, bytes, bool]] = {}
        artifact = fn.artifact
        self._skip = os.path.relpath(artifact, fn.source).replace(os.sep, "/") if artifact is not None else None

    def digest(self) -> str:
        if self._rules.is_stale():
            self._rules = self._rules.reload()
        read_at = self._clock_ns()
        files = walk_source(self.fn.source, self._rules)
        known = self._files
        fresh: dict[str, tuple[SourceFile, bytes, bool]] = {}
        total = hashlib.sha256()
        for src in files:
            if src.rel == self._skip:
                continue  # a jar function's artifact is the build's product, not an input
            cached = known.get(src.rel)
            content = cached[1] if cached is not None and cached[2] and cached[0] == src else _content_digest(src)
            fresh[src.rel] = (src, content, max(src.mtime_ns, src.ctime_ns) + RACY_MARGIN_NS < read_at)
            total.update(b"%s\0%d\0" % (src.rel.encode("utf-8"), 1 if src.mode & 0o111 else 0) + content)
        self._files = fresh
        return total.hexdigest()


def _content_digest(src: SourceFile) -> bytes:
    hasher = hashlib.sha256()
    try:
        with open_source_file(src.path) as handle:
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
    except OSError as exc:
        raise read_error(src.rel, exc) from None
    return hasher.digest()


class InputFingerprints:
    """Per function: the digest of its inputs right after its last build. Thread-safe."""

    def __init__(self, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._trees: dict[str, _Tree] = {}
        self._recorded: dict[str, str] = {}

    def _tree(self, fn: FunctionConfig) -> _Tree:
        with self._lock:
            tree = self._trees.get(fn.name)
            if tree is None or tree.fn != fn:  # a new function, or its definition changed in fgsync.toml
                tree = self._trees[fn.name] = _Tree(fn, self._clock_ns)
                self._recorded.pop(fn.name, None)
            return tree

    def record(self, fn: FunctionConfig) -> None:
        """Take the digest of ``fn``'s inputs now (call it right after the build, before packaging)."""
        try:
            digest: Optional[str] = self._tree(fn).digest()
        except FgsyncError:
            digest = None  # packaging reports the problem; the next change is then a real one
        with self._lock:
            if digest is None:
                self._recorded.pop(fn.name, None)
            else:
                self._recorded[fn.name] = digest

    def changed(self, fn: FunctionConfig) -> bool:
        """Whether ``fn``'s inputs differ from what they were right after its last build (True when unknown)."""
        with self._lock:
            recorded = self._recorded.get(fn.name)
        if recorded is None:
            return True
        try:
            return self._tree(fn).digest() != recorded
        except FgsyncError:
            return True  # let the sync run and report it

    def forget(self, name: str) -> None:
        """Drop what is known of a function (it left the configuration)."""
        with self._lock:
            self._trees.pop(name, None)
            self._recorded.pop(name, None)

