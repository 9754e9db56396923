"""One ignore engine, shared by packaging and by the watcher.

A path is ignored when the last rule layer that has an opinion about it says so, or when any folder above it
is ignored (as in git, a file inside an excluded folder cannot be re-included). The layers, lowest precedence
first:

1. the built-in list (:attr:`IgnoreRules.BUILTIN`): VCS folders, caches, editor droppings, ``.fgsync/``,
   ``.fgsyncignore`` itself;
2. with ``use_gitignore``, every ``.gitignore`` in the source tree, each applying to its own folder, deeper
   files overriding shallower ones;
3. ``source/.fgsyncignore``;
4. the function's ``exclude`` patterns from ``fgsync.toml``.

Every layer uses gitignore syntax (``pathspec.GitIgnoreSpec``), negation included, so ``!keep.pyc`` in
``.fgsyncignore`` brings back a file the built-in list drops. Above all layers, and beyond any negation,
fgsync's own folders (:func:`fgsync.folders.own_folders`: state, locks, caches) are left out when they lie inside
the source: packaging its own state file, or syncing because it wrote one, would loop for ever.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Optional, Union

from fgsync.errors import PackageError

# pathspec costs ~15 ms to import: it is imported when a layer has patterns to compile (or the built-in list needs
# it), so rules with nothing beyond the built-in list, decided in plain Python, never load it.
if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

log = logging.getLogger(__name__)

FGSYNCIGNORE = ".fgsyncignore"
GITIGNORE = ".gitignore"

# Memoized decisions per rules object; a watcher sees an unbounded stream of names, so the memo is capped.
_MEMO_LIMIT = 200_000

#: (size, mtime_ns, inode) of a rule file, or None when it did not exist.
_Stamp = Optional[tuple[int, int, int]]


def _compile(lines: Iterable[str], origin: str) -> GitIgnoreSpec:
    """Compile gitignore lines; a bad pattern becomes a PackageError naming where it came from."""
    from pathspec import GitIgnoreSpec

    kept = list(lines)
    try:
        return GitIgnoreSpec.from_lines(kept)
    except ValueError:
        for number, line in enumerate(kept, start=1):
            try:
                GitIgnoreSpec.from_lines([line])
            except ValueError as exc:
                raise PackageError(f"invalid ignore pattern {line!r} ({origin}, line {number}): {exc}") from None
        raise  # pragma: no cover - the whole list failed but no single line did


BuiltinMatcher = Callable[[str, bool], bool]
_GLOB = frozenset("*?[\\")


def basename_matcher(patterns: Sequence[str]) -> Optional[BuiltinMatcher]:
    """A plain-Python ``(relpath, is_dir) -> ignored`` for gitignore patterns that only look at the last name,
    for a path no folder above which is ignored (the contract of :meth:`IgnoreRules.decide`).

    The built-in list is made of such patterns (``.git/``, ``*.pyc``, ``.#*``, ``\\#*#``, ``/.fgsyncignore``), and
    checking them is most of a cold walk's Python: pathspec tries one regex per pattern on every path. The forms
    understood, with gitignore's meaning: ``NAME/`` (a folder of that name anywhere), ``NAME``, ``*SUFFIX``,
    ``PREFIX*``, ``PREFIX*SUFFIX`` (``*`` matching any run of characters but ``/``, the empty one too), ``/NAME``
    (only at the root), and a leading ``\\#`` for a literal ``#``. Anything else (negation, ``?``, ``[...]``, ``**``,
    a ``/`` inside) gives None: the caller keeps pathspec. tests/test_ignore.py compares the two on many names.
    """
    folders: set[str] = set()
    names: set[str] = set()
    at_root: set[str] = set()
    affixes: list[tuple[str, str]] = []
    for pattern in patterns:
        if not pattern or pattern.startswith("#") or pattern != pattern.rstrip():
            return None  # comments, blank lines and trailing spaces have rules of their own: leave them to pathspec
        text = pattern
        if text.startswith("\\#"):
            text = text[1:]
        dir_only = text.endswith("/")
        if dir_only:
            text = text[:-1]
        rooted = text.startswith("/")
        if rooted:
            text = text[1:]
        if not text or text.startswith("!") or "/" in text or text.count("*") > 1 or (_GLOB - {"*"}) & set(text):
            return None
        if "*" in text:
            if dir_only or rooted:
                return None
            prefix, _, suffix = text.partition("*")
            affixes.append((prefix, suffix))
        elif rooted:
            if dir_only:
                return None
            at_root.add(text)
        elif dir_only:
            folders.add(text)
        else:
            names.add(text)
    plain = frozenset(names)
    dirs = frozenset(folders)
    root = frozenset(at_root)
    suffixes = tuple(suffix for prefix, suffix in affixes if not prefix)
    prefixes = tuple(prefix for prefix, _suffix in affixes if prefix)  # a cheap first test for both kinds below
    bounded = tuple((p, s, len(p) + len(s)) for p, s in affixes if p)

    def ignored(rel: str, is_dir: bool) -> bool:
        # The last name decides: as IgnoreRules.decide, this assumes that no folder above rel is ignored (the walk
        # prunes those, and is_ignored asks about every folder first).
        name = rel[rel.rfind("/") + 1 :]
        if name in plain or (is_dir and name in dirs) or rel in root:
            return True
        if suffixes and name.endswith(suffixes):
            return True
        if prefixes and name.startswith(prefixes):
            for prefix, suffix, size in bounded:
                if len(name) >= size and name.startswith(prefix) and name.endswith(suffix):
                    return True
        return False

    return ignored


def _stamp(path: Path) -> _Stamp:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        # Not a crash for the watcher either: a rule file we cannot stat is treated as changed every time.
        log.debug("cannot stat %s: %s", path, exc)
        return (-1, -1, -1)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _read_rule_file(path: Path, relname: str) -> list[str] | None:
    """The lines of a rule file, or None when it does not exist."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise PackageError(f"{relname} is a folder, expected an ignore file") from None
    except OSError as exc:
        raise PackageError(f"cannot read {relname}: {exc.strerror or exc}") from None
    # Ignore files are bytes on disk; a stray non-UTF-8 byte must not make the whole file unusable.
    return raw.decode("utf-8", errors="replace").splitlines()


class IgnoreRules:
    """Decides which paths under a function's source are left out of its package and its watch.

    Build it with :meth:`for_function`. Safe to share between threads: the only mutable state is a memo of
    decisions and a lazily filled cache of nested ``.gitignore`` files, both of which tolerate races.
    """

    #: The built-in patterns (gitignore syntax), applied before every other layer.
    BUILTIN: ClassVar[tuple[str, ...]] = (
        ".git/",
        ".hg/",
        ".svn/",
        "__pycache__/",
        "*.pyc",
        ".DS_Store",
        # vim: swap files, backups, and the "4913" probe file it creates to test a folder is writable
        "*.swp",
        "*.swx",
        "*~",
        "4913",
        # emacs: autosave and lock files ("#" starts a comment in gitignore syntax, hence the backslash)
        "\\#*#",
        ".#*",
        # JetBrains "safe write" temporaries
        "*___jb_tmp___",
        "*___jb_old___",
        ".fgsync/",
        # the rules themselves are not code (anchored: only the root one is a rule file)
        "/.fgsyncignore",
    )

    _BUILTIN_SPEC: ClassVar[Optional[GitIgnoreSpec]] = None
    _BUILTIN_FAST: ClassVar[Optional[tuple[tuple[str, ...], Optional[BuiltinMatcher]]]] = None

    def __init__(
        self,
        source: Path,
        *,
        exclude: Sequence[str] = (),
        use_gitignore: bool = False,
        fgsyncignore: Sequence[str] = (),
        private: Sequence[Path] = (),
    ) -> None:
        """Prefer :meth:`for_function`, which reads ``.fgsyncignore`` from the tree.

        Args:
            source: the function's source folder.
            exclude: gitignore-style patterns from the function's configuration.
            use_gitignore: also apply the ``.gitignore`` files found in the tree.
            fgsyncignore: the lines of ``source/.fgsyncignore``.
            private: folders (absolute, or relative to the current folder) that are always left out when they
                lie inside the source: fgsync's own state and cache folders.
        """
        self.source = Path(source)
        self.exclude = tuple(exclude)
        self.use_gitignore = use_gitignore
        self.private = tuple(Path(p) for p in private)
        self._fgsyncignore_lines = tuple(fgsyncignore)
        self._source_abs = os.path.abspath(self.source)
        #: The private folders inside the source, as relpaths (both spellings when a symlink is involved).
        self.private_inside: frozenset[str] = frozenset(_inside_rels(self.private, self.source))
        self._builtin_fast = self._builtin_matcher()
        # The layers above the built-in and .gitignore ones that have patterns at all (most have none). An empty
        # layer is not compiled: pathspec is imported only when some layer has lines (or the built-in list needs it).
        layers = ((self._fgsyncignore_lines, FGSYNCIGNORE), (self.exclude, "exclude"))
        specs = [_compile(lines, origin) for lines, origin in layers if lines]
        self._layers = tuple(spec for spec in specs if spec.patterns)
        # folder relpath ("" for the root) -> its compiled .gitignore, or None when it has none
        self._gitignores: dict[str, Optional[GitIgnoreSpec]] = {}
        self._gitignore_texts: dict[str, tuple[str, ...]] = {}
        # rule file relpath -> the stamp it had when read: lets a long-lived user notice edits (is_stale)
        self._stamps: dict[str, _Stamp] = {}
        self._memo: dict[tuple[str, bool], bool] = {}

    @property
    def memo(self) -> Mapping[tuple[str, bool], bool]:
        """Decisions made so far, keyed by (relpath, is_dir): a hot loop may look here before calling decide."""
        return self._memo

    @classmethod
    def _builtin_spec(cls) -> GitIgnoreSpec:
        if cls._BUILTIN_SPEC is None:
            cls._BUILTIN_SPEC = _compile(cls.BUILTIN, "built-in list")
        return cls._BUILTIN_SPEC

    @classmethod
    def _builtin_matcher(cls) -> Optional[BuiltinMatcher]:
        cached = cls._BUILTIN_FAST
        if cached is None or cached[0] is not cls.BUILTIN:
            cached = cls._BUILTIN_FAST = (cls.BUILTIN, basename_matcher(cls.BUILTIN))
        return cached[1]

    @classmethod
    def for_function(
        cls,
        source: Path,
        *,
        exclude: Sequence[str] = (),
        use_gitignore: bool = False,
        private: Optional[Sequence[Path]] = None,
    ) -> IgnoreRules:
        """The rules for one function: built-ins, ``.fgsyncignore``, ``exclude``, optionally ``.gitignore``.

        Args:
            source: the function's source folder (its contents become the zip root).
            exclude: the function's ``exclude`` patterns.
            use_gitignore: apply ``.gitignore`` files too (nested ones to their own folder).
            private: folders always left out; None: fgsync's own (:func:`fgsync.folders.own_folders`).

        Raises:
            PackageError: ``.fgsyncignore`` cannot be read or holds an invalid pattern, or ``exclude`` does.
        """
        if private is None:
            from fgsync.folders import own_folders

            private = own_folders()
        path = Path(source) / FGSYNCIGNORE
        stamp = _stamp(path)
        lines = _read_rule_file(path, FGSYNCIGNORE) or []
        rules = cls(source, exclude=exclude, use_gitignore=use_gitignore, fgsyncignore=lines, private=private)
        rules._stamps[FGSYNCIGNORE] = stamp
        return rules

    def reload(self) -> IgnoreRules:
        """Fresh rules with the same options, re-reading the ignore files from disk."""
        return type(self).for_function(
            self.source, exclude=self.exclude, use_gitignore=self.use_gitignore, private=self.private
        )

    def is_stale(self) -> bool:
        """Whether a rule file read so far (or looked for and missing) has changed on disk since."""
        return any(_stamp(self.source / rel) != stamp for rel, stamp in list(self._stamps.items()))

    def is_rule_file(self, relpath: str) -> bool:
        """Whether relpath is an ignore file these rules read (an edit to it means: reload the rules)."""
        rel = self._normalize(relpath)
        if rel is None:
            return False
        if rel == FGSYNCIGNORE:
            return True
        return self.use_gitignore and posixpath.basename(rel) == GITIGNORE

    def fingerprint(self) -> str:
        """A hash of every pattern applied so far; it changes when the effective rules change."""
        digest = hashlib.sha256()
        layers: list[tuple[str, Sequence[str]]] = [
            ("builtin", self.BUILTIN),
            ("fgsyncignore", self._fgsyncignore_lines),
            ("exclude", self.exclude),
            ("use_gitignore", ("1" if self.use_gitignore else "0",)),
        ]
        layers.extend((f"gitignore:{d}", t) for d, t in sorted(self._gitignore_texts.items()))
        layers.append(("private", tuple(sorted(self.private_inside))))
        for name, lines in layers:
            digest.update(name.encode() + b"\0" + "\n".join(lines).encode("utf-8", "surrogateescape") + b"\0\0")
        return digest.hexdigest()

    def is_ignored(self, relpath: Union[str, os.PathLike[str]], *, is_dir: bool = False) -> bool:
        """Whether a path is left out of the package and of the watch.

        Args:
            relpath: a POSIX path relative to the source folder (an absolute path is accepted too and made
                relative). Paths outside the source folder are ignored, never an error.
            is_dir: the path is a folder (patterns ending in ``/`` only match folders).
        """
        rel = self._normalize(relpath)
        if rel is None:
            return True
        if rel == "":
            return False
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            if self.decide("/".join(parts[:depth]), is_dir=True):
                return True
        return self.decide(rel, is_dir=is_dir)

    def decide(self, rel: str, *, is_dir: bool) -> bool:
        """The decision for rel alone, assuming no folder above it is ignored (the walk prunes those).

        Args:
            rel: a normalized POSIX relpath (no ``.``/``..``, no leading or trailing ``/``).
            is_dir: the path is a folder.
        """
        key = (rel, is_dir)
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        result = self._decide(rel, is_dir)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = result
        return result

    def _decide(self, rel: str, is_dir: bool) -> bool:
        if rel in self.private_inside:
            return True  # fgsync's own folder (or a file standing where it would be): beyond every negation
        probe = rel + "/" if is_dir else rel
        fast = self._builtin_fast
        ignored = fast(rel, is_dir) if fast is not None else bool(self._builtin_spec().check_file(probe).include)
        if self.use_gitignore:
            folder = ""
            parts = rel.split("/")
            for depth in range(len(parts)):
                spec = self._gitignore(folder)
                if spec is not None:
                    verdict = spec.check_file(probe[len(folder) + 1 :] if folder else probe).include
                    if verdict is not None:
                        ignored = verdict
                folder = "/".join(parts[: depth + 1])
        for spec in self._layers:
            verdict = spec.check_file(probe).include
            if verdict is not None:
                ignored = verdict
        return ignored

    def _gitignore(self, folder: str) -> Optional[GitIgnoreSpec]:
        if folder in self._gitignores:
            return self._gitignores[folder]
        rel = f"{folder}/{GITIGNORE}" if folder else GITIGNORE
        path = self.source / rel
        self._stamps[rel] = _stamp(path)
        lines = _read_rule_file(path, rel)
        spec = None
        if lines is not None:
            spec = _compile(lines, rel)
            self._gitignore_texts[folder] = tuple(lines)
        self._gitignores[folder] = spec
        return spec

    def _normalize(self, relpath: Union[str, os.PathLike[str]]) -> str | None:
        """A clean POSIX relpath, "" for the source itself, or None when the path is outside source."""
        text = os.fspath(relpath)
        if os.sep != "/":
            text = text.replace(os.sep, "/")
        if os.path.isabs(text):
            try:
                text = os.path.relpath(text, self._source_abs)
            except ValueError:  # another drive on Windows
                return None
            if os.sep != "/":
                text = text.replace(os.sep, "/")
        rel = posixpath.normpath(text) if text else "."
        if rel == ".":
            return ""
        if rel == ".." or rel.startswith("../") or rel.startswith("/"):
            return None
        return rel


def _inside_rels(folders: Iterable[Path], source: Path) -> set[str]:
    """The relpaths, under ``source``, of those ``folders`` that lie strictly inside it (plain and resolved)."""
    rels: set[str] = set()
    pairs = [(os.path.abspath(source), os.path.abspath(f)) for f in folders]
    pairs += [(os.path.realpath(source), os.path.realpath(f)) for f in folders]
    for root, folder in pairs:
        try:
            rel = os.path.relpath(folder, root)
        except ValueError:  # another drive on Windows
            continue
        rel = rel.replace(os.sep, "/")
        if rel not in (".", "..") and not rel.startswith("../"):
            rels.add(rel)
    return rels
