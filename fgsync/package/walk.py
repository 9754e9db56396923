"""The source walk: which files go into a function's package, and how each is opened.

Sorted by POSIX relpath; ignored folders pruned without being listed; symlinks inside the source followed,
symlinks leading out of it (or dangling, or looping) refused by name; FIFOs, sockets and devices refused.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Callable, NamedTuple, Optional

from fgsync.errors import PackageError, SourceError
from fgsync.ignore import IgnoreRules

S_ISREG = stat.S_ISREG


class VanishedError(PackageError):
    """A file or folder disappeared while the package was being built (a save or checkout in progress).

    Worth one more try: the tree is usually whole again a moment later.
    """


class DanglingLinkError(PackageError):
    """A symlink leads to nothing. ``link`` is ``(relpath, real path of where it leads)``: what appears there
    (an ``npm install`` into an ignored folder, say) mends the tree."""

    def __init__(self, message: str, link: tuple[str, str]) -> None:
        super().__init__(message)
        self.link = link


def read_error(rel: str, exc: OSError, what: str = "read") -> PackageError:
    """The PackageError for an OSError on rel; a VanishedError when the path no longer exists."""
    cls = VanishedError if isinstance(exc, FileNotFoundError) else PackageError
    return cls(f"cannot {what} {rel}: {exc.strerror or exc}")

def missing_source(source: Path) -> SourceError:
    """The error for a source folder that is not there (a build's ``rm -rf``, a branch switch)."""
    return SourceError(
        f"source folder {source} is missing (deleted or moved?); fgsync syncs it again as soon as it is back"
    )


# Where the OS lists folders through a descriptor (Linux, macOS), the walk uses it; Windows walks by path.
_FD_WALK = os.scandir in os.supports_fd
_O_DIRECTORY_READ = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)

OpenFile = Callable[[str], BinaryIO]


class SourceFile(NamedTuple):
    """One regular file to package: its name in the zip and the stat of what it resolves to.

    A NamedTuple rather than a frozen dataclass: one is made per file on every build, and a warm rebuild's
    budget is a few milliseconds for the whole tree. The stat fields are the incremental cache's key: ``ctime_ns``
    because an in-place rewrite that puts size and mtime back (``cp -p``, ``rsync -a --inplace``, ``touch -r``)
    cannot put the ctime back (git compares ``st_ctime`` for the same reason), ``dev`` because a folder can be
    replaced by one on another file system with the same inode numbers.
    """

    rel: str
    path: str
    size: int
    mtime_ns: int
    ino: int
    mode: int
    ctime_ns: int
    dev: int


# O_NONBLOCK: a FIFO swapped in after the walk would otherwise block open() forever.
_O_READ = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
#: Files up to this size are read whole by :func:`read_source_file` (one read call); larger ones in chunks.
WHOLE_READ_BYTES = 16 * 1024 * 1024
_TAIL_CHUNK = 1 << 20


def open_source_file(path: str) -> BinaryIO:
    """Open a file for reading without ever blocking on a FIFO, and refuse anything but a regular file."""
    fd = os.open(path, _O_READ)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_source_file(path: str) -> bytes:
    """A file's whole content, as :func:`open_source_file` would read it, in as few system calls as it takes.

    Open (never blocking on a FIFO), ``fstat`` (anything but a regular file is refused), one ``read`` of its
    size plus one byte, close: four calls, and no file object. The extra byte tells a file that grew since the
    ``fstat`` (it is then read to its end); a short read is followed by more reads until the end of the file.

    Raises:
        OSError: it cannot be opened or read, or it is not a regular file (``EINVAL``).
    """
    fd = os.open(path, _O_READ)
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = os.read(fd, st.st_size + 1)
        if len(data) == st.st_size:
            return data
        parts = [data]
        while data:
            data = os.read(fd, _TAIL_CHUNK)
            parts.append(data)
        return b"".join(parts)
    finally:
        os.close(fd)


def _inside(real: str, root: str) -> bool:
    try:
        return os.path.commonpath([real, root]) == root
    except ValueError:  # different drives on Windows
        return False


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def walk_source(source: Path, rules: IgnoreRules) -> list[SourceFile]:
    """Every file to package under source, sorted by POSIX relpath.

    Ignored folders are pruned, not descended. Symlinks to files inside source stand for their target's
    content; symlinks to folders inside source are followed.

    Raises:
        PackageError: source missing; a symlink outside source, dangling or looping; a folder that cannot be
            listed; a FIFO, socket or device; a name that is not UTF-8.
    """
    return walk_tree(source, rules).files


class Walk(NamedTuple):
    """A walk's files, and the symlinks it followed: ``(relpath, real path of the target)``. A linked file or
    folder has two names and an event names only the real one, so :func:`fgsync.package.rewalk.rewalk` looks the
    links up."""

    files: list[SourceFile]
    links: list[tuple[str, str]]


def walk_tree(source: Path, rules: IgnoreRules) -> Walk:
    """:func:`walk_source`, with the symlinks it followed.

    Raises:
        PackageError: as :func:`walk_source`.
    """
    root, root_st = source_root(source)
    found: list[SourceFile] = []
    links: list[tuple[str, str]] = []
    visit = visitor(root, rules, found, links, on_path={(root_st.st_dev, root_st.st_ino)})
    visit.folder(root, "")
    found.sort()  # by rel, the first field, which is unique
    return Walk(found, links)


def source_root(source: Path) -> tuple[str, os.stat_result]:
    """The real path of the source folder and its stat.

    Raises:
        SourceError: it is missing.
        PackageError: it cannot be read, or is not a folder.
    """
    root = os.path.realpath(source)
    try:
        root_st = os.stat(root)
    except FileNotFoundError:
        raise missing_source(source) from None
    except OSError as exc:
        raise PackageError(f"source folder {source} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(root_st.st_mode):
        raise PackageError(f"source {source} is not a folder")
    return root, root_st


def check_name(rel: str) -> None:
    """Refuse a name that is not UTF-8 (a zip stores UTF-8 names).

    Raises:
        PackageError: it is not.
    """
    if not rel.isascii():
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            raise PackageError(f"file name {rel!r} is not valid UTF-8") from None


def refuse_special(rel: str, mode: int) -> PackageError:
    """The error for a FIFO, socket or device where a file to package was expected."""
    return PackageError(f"cannot package {rel}: {_kind(mode)}")


class Visitor(NamedTuple):
    """The walk's steps, each adding the files to package it finds to ``found`` (unsorted) and the symlinks it
    follows to ``links``. Made by :func:`visitor`.

    Attributes:
        folder: ``folder(path, prefix)``: everything under the folder whose relpath plus "/" is ``prefix``.
        subfolder: ``subfolder(path, rel, st)``: the same for a folder below the root, checked for a loop.
        link: ``link(path, rel)``: a symlink: the file it stands for, or the folder it leads to.
    """

    folder: Callable[[str, str], None]
    subfolder: Callable[[str, str, os.stat_result], None]
    link: Callable[[str, str], None]


def visitor(
    root: str,
    rules: IgnoreRules,
    found: list[SourceFile],
    links: list[tuple[str, str]],
    *,
    on_path: set[tuple[int, int]],
) -> Visitor:
    """The steps of a walk of the source folder ``root``.

    Args:
        root: the real path of the source folder (symlinks must lead inside it).
        rules: the ignore rules.
        found: where the files go.
        links: where the followed symlinks go, as ``(relpath, real path of the target)``.
        on_path: (device, inode) of the folders above where the walk starts: meeting one again through a
            link is a loop.
    """
    decide = rules.decide
    memo_get = rules.memo.get
    add = found.append
    new = tuple.__new__
    sep = os.sep

    def visit(folder: str, prefix: str) -> None:
        fd: Optional[int] = None
        try:
            if _FD_WALK:
                # Listing through a folder descriptor makes each entry's stat an fstatat() on its bare name,
                # instead of a lookup of the whole path: a third of a warm rebuild's walk.
                fd = os.open(folder, _O_DIRECTORY_READ)
                listing = os.scandir(fd)
            else:
                listing = os.scandir(folder)
            with listing:
                entries = list(listing)
        except OSError as exc:
            if fd is not None:
                os.close(fd)
            raise read_error(prefix or "./", exc, "list folder") from None
        folders: list[tuple[str, str, os.stat_result]] = []
        try:
            for entry in entries:
                name = entry.name
                rel = prefix + name
                if not rel.isascii():
                    check_name(rel)
                path = folder + sep + name
                if entry.is_symlink():
                    followed = visit_link(path, rel)
                    if followed is not None:
                        folders.append((path, rel, followed))
                    continue
                # d_type answers "folder?" without a syscall; ignored entries are never stat'ed.
                is_dir = entry.is_dir(follow_symlinks=False)
                ignored = memo_get((rel, is_dir))
                if ignored is None:
                    ignored = decide(rel, is_dir=is_dir)
                if ignored:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    raise read_error(rel, exc) from None
                if is_dir:
                    folders.append((path, rel, st))
                elif S_ISREG(st.st_mode):
                    # tuple.__new__ skips the NamedTuple's Python-level __new__: one frame less per file.
                    add(new(SourceFile, (rel, path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, st.st_ctime_ns,
                                         st.st_dev)))  # fmt: skip
                else:
                    raise refuse_special(rel, st.st_mode)
        finally:
            if fd is not None:
                os.close(fd)  # before descending: open descriptors stay one per level, not one per folder
        for path, rel, st in folders:
            visit_folder(path, rel, st)

    def visit_link(path: str, rel: str) -> Optional[os.stat_result]:
        """Add a linked file to ``found``; return the stat of a linked folder to follow."""
        try:
            st = os.stat(path)
        except OSError as exc:
            if decide(rel, is_dir=False):
                return None
            if exc.errno == errno.ELOOP:
                raise PackageError(f"symlink {rel} is a loop") from None
            if exc.errno == errno.ENOENT:
                target = os.readlink(path)
                message = f"symlink {rel} is dangling (points to {target}, which is missing)"
                raise DanglingLinkError(message, (rel, os.path.realpath(path))) from None
            raise read_error(rel, exc) from None
        is_dir = stat.S_ISDIR(st.st_mode)
        if decide(rel, is_dir=is_dir):
            return None
        real = os.path.realpath(path)
        if not _inside(real, root):
            raise PackageError(f"symlink {rel} points outside the source folder (to {os.readlink(path)})")
        links.append((rel, real))
        if is_dir:
            return st
        if not S_ISREG(st.st_mode):
            raise PackageError(f"cannot package {rel}: {_kind(st.st_mode)}")
        found.append(
            SourceFile(rel, path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, st.st_ctime_ns, st.st_dev)
        )
        return None

    def visit_folder(path: str, rel: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key in on_path:
            raise PackageError(f"symlink {rel} is a loop (it leads back to a folder above it)")
        on_path.add(key)
        visit(path, rel + "/")
        on_path.discard(key)

    def follow(path: str, rel: str) -> None:
        st = visit_link(path, rel)
        if st is not None:
            visit_folder(path, rel, st)

    return Visitor(visit, visit_folder, follow)
