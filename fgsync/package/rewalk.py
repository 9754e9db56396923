"""The last walk brought up to date from the paths the watcher reported, instead of a walk of the whole tree.

A save in a 7,500-file ``node_modules`` tree changes one file; a full walk stats 10,000 entries to find it (half
of the daemon's repack). :func:`rewalk` looks at the reported paths only, and at the folders above them (one
``lstat`` each: a folder replaced by a file, or now ignored, shows there), and gives the list a full walk would
give. Where it cannot be sure of that, it says so (``None``) and the caller walks the whole tree: the root itself,
an ignore file, a path reached through a symlink, a link replaced (others may lead through it), too many paths.
What the watcher never reported is the verifying walk's to find (:meth:`fgsync.package.PackageBuilder.missed`).
"""

from __future__ import annotations

import bisect
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from fgsync.ignore import IgnoreRules
from fgsync.package.walk import (
    S_ISREG,
    SourceFile,
    Walk,
    check_name,
    read_error,
    refuse_special,
    visitor,
)

#: More reported paths than this: a walk of the whole tree is about as quick, and simpler to trust.
MAX_PATHS = 512

#: Files that change the ignore rules: the answer for every path may change with them.
RULE_FILES = frozenset({".fgsyncignore", ".gitignore"})

_GONE = (FileNotFoundError, NotADirectoryError)


def rewalk(source: Path, rules: IgnoreRules, previous: Walk, paths: Iterable[str]) -> Optional[Walk]:
    """``previous`` (a walk of ``source`` under ``rules``) as it is now that ``paths`` changed, or None when
    only a walk of the whole tree can tell.

    Args:
        source: the function's source folder.
        rules: the ignore rules, the same as for ``previous``.
        previous: the last walk.
        paths: relative POSIX paths that changed (created, modified, deleted, moved from or to); a folder stands
            for everything under it; "" is the whole tree.

    Raises:
        PackageError: as :func:`fgsync.package.walk.walk_source`, for what is at the paths.
    """
    wanted = set(paths)
    if "" in wanted or len(wanted) > MAX_PATHS:
        return None
    if any(rel.rpartition("/")[2] in RULE_FILES for rel in wanted):
        return None
    root = os.path.realpath(source)
    try:
        root_st = os.stat(root)
    except OSError:
        return None  # the full walk says what is wrong with the source folder
    sep = os.sep
    if previous.links and _blind(root, rules, previous.links):
        return None
    if previous.links:
        # A link whose target is named through another link (`chain -> current -> v1`, `a.py -> lib/x.py` with
        # `lib` a link) was recorded by where it led: when that other link is pointed elsewhere, or replaced by
        # a real file or folder, only a full walk sees where the first one leads now.
        linked = {link_rel for link_rel, _ in previous.links}
        if len(linked) > 1 and any(os.path.lexists(root + sep + rel.replace("/", sep)) for rel in wanted & linked):
            return None
        # A symlink shows its target's content under its own name: a change at or below the target, or of a
        # folder above it, is a change of the link's entries too.
        for rel in list(wanted):
            real = root + sep + rel.replace("/", sep)
            for link_rel, target in previous.links:
                if target == real or target.startswith(real + sep) or real.startswith(target + sep):
                    wanted.add(link_rel)
        # A link found inside a linked folder has a name through that folder's link: the outer link stands for it.
        wanted = {_outermost(rel, linked) for rel in wanted}
    found: list[SourceFile] = []
    links: list[tuple[str, str]] = []
    decide = rules.decide
    walked: list[str] = []  # prefixes of the folders walked whole: paths under them are done
    stale = sorted(wanted)
    for rel in stale:
        if walked and rel.startswith(tuple(walked)):
            continue
        parts = rel.split("/")
        on_path = {(root_st.st_dev, root_st.st_ino)}
        folder = root
        reachable = True
        for depth, part in enumerate(parts[:-1], 1):
            folder = folder + sep + part
            try:
                st = os.lstat(folder)
            except _GONE:
                reachable = False
                break
            except OSError as exc:
                raise read_error("/".join(parts[:depth]), exc) from None
            if stat.S_ISLNK(st.st_mode):
                return None  # the path has another name through the link: only a full walk sees both
            if not stat.S_ISDIR(st.st_mode) or decide("/".join(parts[:depth]), is_dir=True):
                reachable = False  # a file where the folder was (reported itself), or an ignored folder
                break
            on_path.add((st.st_dev, st.st_ino))
        if not reachable:
            continue
        path = folder + sep + parts[-1]
        try:
            st = os.lstat(path)
        except _GONE:
            continue
        except OSError as exc:
            raise read_error(rel, exc) from None
        check_name(rel)
        mode = st.st_mode
        visit = visitor(root, rules, found, links, on_path=on_path)
        if stat.S_ISLNK(mode):
            visit.link(path, rel)
            walked.append(rel + "/")
        elif stat.S_ISDIR(mode):
            if not decide(rel, is_dir=True):
                visit.subfolder(path, rel, st)
            walked.append(rel + "/")
        elif decide(rel, is_dir=False):
            continue
        elif S_ISREG(mode):
            found.append(
                SourceFile(rel, path, st.st_size, st.st_mtime_ns, st.st_ino, mode, st.st_ctime_ns, st.st_dev)
            )
        else:
            raise refuse_special(rel, mode)
    return Walk(_merge(previous.files, stale, found), _merge_links(previous.links, stale, links))


def _outermost(rel: str, linked: set[str]) -> str:
    """The first folder above or at ``rel`` that is a followed link, else ``rel``."""
    at = rel.find("/")
    while at != -1:
        if rel[:at] in linked:
            return rel[:at]
        at = rel.find("/", at + 1)
    return rel


def _blind(root: str, rules: IgnoreRules, links: list[tuple[str, str]]) -> bool:
    """Whether a link leads into an ignored place: the watcher reports nothing there, so only a full walk sees
    its content change."""
    for _rel, target in links:
        parts = os.path.relpath(target, root).replace(os.sep, "/").split("/")
        for depth in range(1, len(parts) + 1):
            is_dir = depth < len(parts) or os.path.isdir(target)
            if rules.decide("/".join(parts[:depth]), is_dir=is_dir):
                return True
    return False


def _merge(files: list[SourceFile], stale: list[str], found: list[SourceFile]) -> list[SourceFile]:
    """``files`` without the entries at or under the ``stale`` paths, plus ``found``, sorted by relpath."""
    rels = [f.rel for f in files]
    cut: list[tuple[int, int]] = []  # index ranges to drop
    for rel in stale:
        at = bisect.bisect_left(rels, rel)
        if at < len(rels) and rels[at] == rel:
            cut.append((at, at + 1))
        # Everything under rel/ sorts between "rel/" and "rel0" ("0" follows "/").
        start = bisect.bisect_left(rels, rel + "/")
        end = bisect.bisect_left(rels, rel + "0", start)
        if end > start:
            cut.append((start, end))
    if cut:
        kept: list[SourceFile] = []
        at = 0
        for start, end in sorted(cut):
            if start > at:
                kept.extend(files[at:start])
            at = max(at, end)
        kept.extend(files[at:])
    else:
        kept = list(files)
    kept.extend(found)
    kept.sort()
    return kept


def _merge_links(links: list[tuple[str, str]], stale: list[str], found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not links:
        return found
    drop = set(stale)
    prefixes = tuple(rel + "/" for rel in stale)
    return [link for link in links if link[0] not in drop and not link[0].startswith(prefixes)] + found
