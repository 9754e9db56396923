"""Which functions a raw path belongs to: :class:`ChangeFilter` drops paths the packaging ignore rules drop (a
path under a folder shared by two functions belongs to both)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

from fgsync.errors import FgsyncError

if TYPE_CHECKING:
    from typing import Protocol

    from fgsync.config import FunctionConfig

    class IgnoreMatcher(Protocol):
        """What the watcher needs from :class:`fgsync.ignore.IgnoreRules`."""

        def is_ignored(self, relpath: str, *, is_dir: bool = False) -> bool: ...

        def is_rule_file(self, relpath: str) -> bool: ...

        def reload(self) -> IgnoreMatcher: ...


logger = logging.getLogger(__name__)

class Change(NamedTuple):
    """One changed path of one function: ``path`` is POSIX, relative to the function's source; "" means the
    whole tree (its watch was re-armed, or the OS lost events): something may have changed anywhere.

    ``transient`` marks a path that came into being and was gone again within one burst (an editor's temp
    file renamed onto the real one, say): the burst still counts, but the path names nothing to report.
    """

    function: str
    path: str
    transient: bool = False


@dataclass(frozen=True)
class WatchTarget:
    """A function as the watcher sees it: a name, a source folder and the rules that drop paths."""

    name: str
    source: Path
    rules: IgnoreMatcher
    #: Relative paths that never trigger, whatever the rules say (a jar function's artifact, for one).
    ignored_paths: frozenset[str] = field(default_factory=frozenset)
    #: Whether a relative path is one of the function's dependency files (their bursts settle slowly).
    dependency: Optional[Callable[[str], bool]] = None
    #: The names an ignored path has in the package through the symlinks the last build followed.
    aliases: Optional[Callable[[str], Sequence[str]]] = None

    @classmethod
    def for_function(
        cls, fn: FunctionConfig, *, aliases: Optional[Callable[[str], Sequence[str]]] = None
    ) -> WatchTarget:
        """The target of a configured function, with the same ignore rules as its packaging, and ``aliases``.

        Raises:
            FgsyncError: the function's ignore files cannot be read (from :mod:`fgsync.ignore`).
        """
        from fgsync.ignore import IgnoreRules

        rules = IgnoreRules.for_function(fn.source, exclude=fn.exclude, use_gitignore=fn.use_gitignore)
        ignored: set[str] = set()
        if fn.artifact is not None:
            # The jar a build writes is what gets uploaded; it changing must not start another build.
            rel = _relative(os.path.abspath(fn.artifact), os.path.abspath(fn.source))
            if rel:
                ignored.add(rel)
        from fgsync.package.dependencies import DependencySpec

        spec = DependencySpec.from_setting(fn.dependencies)
        dependency = spec.looks_like_dependency if spec else None
        return cls(fn.name, fn.source, rules, frozenset(ignored), dependency, aliases)


def _relative(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` as POSIX, "" for the root itself, None when outside it."""
    if path == root:
        return ""
    prefix = root if root.endswith(os.sep) else root + os.sep
    if not path.startswith(prefix):
        return None
    return PurePosixPath(*Path(path[len(prefix) :]).parts).as_posix()


class ChangeFilter:
    """Maps a raw file-system path to the :class:`Change` records it means, after the ignore rules."""

    def __init__(self, targets: Sequence[WatchTarget]) -> None:
        self._roots: list[tuple[WatchTarget, tuple[str, ...]]] = []
        # Current rules per function: an edit to an ignore file swaps them (WatchTarget is frozen).
        self._rules: dict[str, IgnoreMatcher] = {}
        for target in targets:
            plain = os.path.abspath(target.source)
            real = os.path.realpath(target.source)
            # Some backends (FSEvents) report resolved paths; accept both spellings of the root.
            self._roots.append((target, (plain,) if plain == real else (plain, real)))
            self._rules[target.name] = target.rules
        self._targets = {target.name: target for target in targets}

    def match(self, path: str, *, is_dir: bool = False) -> list[Change]:
        """The changes ``path`` means: one per function whose source holds it and does not ignore it.

        An edit to an ignore file (``.fgsyncignore``, or a ``.gitignore`` in use) reloads that function's
        rules and counts as a change: it changes what gets packaged. An ignored path that a followed symlink
        leads into is a change of its names through the link.
        """
        changes = []
        for target, roots in self._roots:
            for root in roots:
                rel = _relative(path, root)
                if rel is None:
                    continue
                if rel and (self._reloaded(target, rel) or not self._ignored(target, rel, is_dir)):
                    changes.append(Change(target.name, rel))
                elif rel and target.aliases is not None:
                    names = [name for name in target.aliases(rel) if not self._ignored(target, name, is_dir)]
                    changes.extend(Change(target.name, name) for name in names)
                break
        return changes

    def match_tree(self, path: str) -> list[Change]:
        """A change of the whole tree (``path`` ""), for every function whose source is ``path`` or under it:
        what a re-armed watch or lost events mean."""
        changes = []
        for target, roots in self._roots:
            if any(_relative(root, path) is not None for root in roots):
                changes.append(Change(target.name, ""))
        return changes

    def settles_slowly(self, change: Change) -> bool:
        """Whether a change is to one of its function's dependency files (see :class:`Debouncer`)."""
        target = self._targets.get(change.function)
        return bool(change.path and target is not None and target.dependency and target.dependency(change.path))

    def _reloaded(self, target: WatchTarget, rel: str) -> bool:
        rules = self._rules[target.name]
        if not rules.is_rule_file(rel):
            return False
        try:
            self._rules[target.name] = rules.reload()
        except FgsyncError as error:
            # Packaging reports the bad pattern when the sync runs; the watch keeps the last good rules.
            logger.warning("%s: keeping the previous ignore rules: %s", target.name, error)
        return True

    def _ignored(self, target: WatchTarget, rel: str, is_dir: bool) -> bool:
        if rel in target.ignored_paths:
            return True
        # IgnoreRules.is_ignored also ignores a path inside an ignored folder, as the packaging walk prunes it.
        return self._rules[target.name].is_ignored(rel, is_dir=is_dir)

