"""The low-level parts of packaging: the source walk, per-file compression and the zip records.

The zip is written by hand (``struct`` + ``zlib``) rather than through ``zipfile`` so that every header field
is pinned here and the bytes cannot move with ``zipfile`` defaults between Python versions:

* entries sorted by POSIX path, files only (no folder entries, like ``zip -D``);
* DOS time 1980-01-01 00:00:00; no extra fields, no comments, no data descriptors;
* "made by" Unix (3) version 2.0; "needed" 2.0 for deflate, 1.0 for stored;
* external attributes ``0o100644`` or ``0o100755`` (any executable bit) in the high 16 bits;
* flag bit 11 (UTF-8) set only when the name is not pure ASCII;
* raw deflate, level 6, default window and memory; an entry is stored instead when deflate does not make
  it smaller (a decision that depends only on the content).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from fgsync.errors import PackageError
from fgsync.ignore import IgnoreRules

DEFLATE_LEVEL = 6
STORED = 0
DEFLATED = 8
DOS_DATE_1980 = (0 << 9) | (1 << 5) | 1  # 1980-01-01
DOS_TIME_MIDNIGHT = 0
VERSION_MADE_BY = (3 << 8) | 20  # Unix, spec 2.0: fixed so the bytes do not depend on the OS
FLAG_UTF8 = 0x800
MAX_ENTRIES = 0xFFFF  # beyond this the archive would need zip64 records
CHUNK = 1 << 20

_LOCAL = struct.Struct("<4s5H3I2H")
_CENTRAL = struct.Struct("<4s6H3I5H2I")
_END = struct.Struct("<4s4H2IH")

OpenFile = Callable[[str], BinaryIO]


@dataclass(frozen=True)
class SourceFile:
    """One regular file to package: its name in the zip and the stat of what it resolves to."""

    rel: str
    path: str
    size: int
    mtime_ns: int
    ino: int
    mode: int

    @property
    def stamp(self) -> tuple[int, int, int, int]:
        """What the incremental cache compares: (size, mtime_ns, inode, mode)."""
        return (self.size, self.mtime_ns, self.ino, self.mode)


@dataclass(frozen=True)
class CompressedEntry:
    """A file's compressed bytes and what its zip headers need; ``digest`` is BLAKE2b of the content."""

    crc: int
    raw_size: int
    method: int
    data: bytes = field(repr=False)
    digest: bytes = field(repr=False)


def open_source_file(path: str) -> BinaryIO:
    """Open a file for reading without ever blocking on a FIFO, and refuse anything but a regular file."""
    # O_NONBLOCK: a FIFO swapped in after the walk would otherwise block open() forever.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
    root = os.path.realpath(source)
    try:
        root_st = os.stat(root)
    except OSError as exc:
        raise PackageError(f"source folder {source} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(root_st.st_mode):
        raise PackageError(f"source {source} is not a folder")
    found: list[SourceFile] = []
    # (dev, inode) of the folders on the current path: meeting one again through a link is a loop
    on_path = {(root_st.st_dev, root_st.st_ino)}

    def visit(folder: str, prefix: str) -> None:
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            raise PackageError(f"cannot list folder {prefix or './'}: {exc.strerror or exc}") from None
        for entry in entries:
            rel = prefix + entry.name
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise PackageError(f"file name {rel!r} is not valid UTF-8") from None
            link = entry.is_symlink()
            try:
                st = os.stat(entry.path) if link else entry.stat(follow_symlinks=False)
            except OSError as exc:
                if rules.decide(rel, is_dir=False):
                    continue
                if link and exc.errno == errno.ELOOP:
                    raise PackageError(f"symlink {rel} is a loop") from None
                if link and exc.errno == errno.ENOENT:
                    target = os.readlink(entry.path)
                    raise PackageError(f"symlink {rel} is dangling (points to {target}, which is missing)") from None
                raise PackageError(f"cannot read {rel}: {exc.strerror or exc}") from None
            is_dir = stat.S_ISDIR(st.st_mode)
            if rules.decide(rel, is_dir=is_dir):
                continue
            if link:
                real = os.path.realpath(entry.path)
                if not _inside(real, root):
                    raise PackageError(
                        f"symlink {rel} points outside the source folder (to {os.readlink(entry.path)})"
                    )
            if is_dir:
                key = (st.st_dev, st.st_ino)
                if key in on_path:
                    raise PackageError(f"symlink {rel} is a loop (it leads back to a folder above it)")
                on_path.add(key)
                visit(entry.path, rel + "/")
                on_path.discard(key)
            elif stat.S_ISREG(st.st_mode):
                found.append(SourceFile(rel, entry.path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode))
            else:
                raise PackageError(f"cannot package {rel}: {_kind(st.st_mode)}")

    visit(root, "")
    found.sort(key=lambda f: f.rel)
    return found


def _read_error(rel: str, exc: OSError) -> PackageError:
    return PackageError(f"cannot read {rel}: {exc.strerror or exc}")


def compress_file(src: SourceFile, *, open_file: OpenFile = open_source_file, keep_limit: int) -> CompressedEntry:
    """Read, checksum, hash and deflate one file in a single streaming pass.

    Args:
        src: the file.
        open_file: how to open it (a seam for tests).
        keep_limit: raw bytes kept aside in case the file must be stored; a file that deflate cannot shrink
            and that is larger than this could never fit in a package anyway.

    Raises:
        PackageError: the file cannot be read, or it alone is larger than ``keep_limit`` and incompressible.
    """
    crc = 0
    size = 0
    hasher = hashlib.blake2b(digest_size=32)
    deflater = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
    out: list[bytes] = []
    raw: Optional[list[bytes]] = []
    try:
        with open_file(src.path) as handle:
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                crc = zlib.crc32(chunk, crc)
                hasher.update(chunk)
                out.append(deflater.compress(chunk))
                if raw is not None:
                    raw.append(chunk)
                    if size > keep_limit:
                        raw = None
    except OSError as exc:
        raise _read_error(src.rel, exc) from None
    out.append(deflater.flush())
    data = b"".join(out)
    if len(data) < size:
        return CompressedEntry(crc, size, DEFLATED, data, hasher.digest())
    if raw is None:
        raise PackageError(
            f"{src.rel} is {size:,} bytes and does not compress: the package would be over the limit of "
            f"{keep_limit:,} bytes"
        )
    return CompressedEntry(crc, size, STORED, b"".join(raw), hasher.digest())


def digest_file(src: SourceFile, *, open_file: OpenFile = open_source_file) -> bytes:
    """BLAKE2b of a file's content (the cache's re-check of a file whose stat cannot be trusted)."""
    hasher = hashlib.blake2b(digest_size=32)
    try:
        with open_file(src.path) as handle:
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
    except OSError as exc:
        raise _read_error(src.rel, exc) from None
    return hasher.digest()


def external_attr(mode: int) -> int:
    """Unix mode in the high 16 bits: 0644, or 0755 when any executable bit is set."""
    perm = 0o755 if mode & 0o111 else 0o644
    return (stat.S_IFREG | perm) << 16


def _flags(name: bytes) -> int:
    return FLAG_UTF8 if not name.isascii() else 0


def local_header(name: bytes, entry: CompressedEntry) -> bytes:
    """The local file header (30 bytes + name) that precedes the entry's data."""
    version = 20 if entry.method == DEFLATED else 10
    return _LOCAL.pack(
        b"PK\x03\x04", version, _flags(name), entry.method, DOS_TIME_MIDNIGHT, DOS_DATE_1980,
        entry.crc, len(entry.data), entry.raw_size, len(name), 0,
    ) + name  # fmt: skip


def central_header(name: bytes, entry: CompressedEntry, mode: int, offset: int) -> bytes:
    """The central directory record for one entry whose local header starts at offset."""
    version = 20 if entry.method == DEFLATED else 10
    return _CENTRAL.pack(
        b"PK\x01\x02", VERSION_MADE_BY, version, _flags(name), entry.method, DOS_TIME_MIDNIGHT, DOS_DATE_1980,
        entry.crc, len(entry.data), entry.raw_size, len(name), 0, 0, 0, 0, external_attr(mode), offset,
    ) + name  # fmt: skip


def end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    """The end of central directory record."""
    return _END.pack(b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)


def assemble(
    files: Sequence[SourceFile], entries: Iterable[CompressedEntry], *, max_bytes: int, abort_bytes: int
) -> tuple[bytes, str]:
    """Lay the entries out as a zip, hashing while streaming; returns (zip bytes, SHA-512 hex).

    Args:
        files: the sorted files.
        entries: their compressed entries, in the same order (may be produced lazily).
        max_bytes: the package limit, reported in the error.
        abort_bytes: stop early once the archive is known to exceed this (a runaway tree need not be
            compressed to the end just to be refused).

    Raises:
        PackageError: the archive is over ``max_bytes``, or has more entries than a plain zip holds.
    """
    if len(files) > MAX_ENTRIES:
        raise PackageError(f"{len(files):,} files is more than a zip without zip64 holds ({MAX_ENTRIES:,})")
    hasher = hashlib.sha512()
    parts: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for src, entry in zip(files, entries):
        name = src.rel.encode("utf-8")
        head = local_header(name, entry)
        central.append(central_header(name, entry, src.mode, offset))
        for piece in (head, entry.data):
            hasher.update(piece)
            parts.append(piece)
        offset += len(head) + len(entry.data)
        if offset > abort_bytes:
            raise PackageError(
                f"package would be at least {offset:,} bytes, over the limit of {max_bytes:,} bytes"
            )
    directory = b"".join(central)
    tail = end_record(len(central), len(directory), offset)
    for piece in (directory, tail):
        hasher.update(piece)
        parts.append(piece)
    total = offset + len(directory) + len(tail)
    if total > max_bytes:
        raise PackageError(f"package is {total:,} bytes, over the limit of {max_bytes:,} bytes")
    return b"".join(parts), hasher.hexdigest()
