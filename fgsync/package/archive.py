"""The zip itself: per-file compression, the header records and the hashed layout of the archive.

The zip is written by hand (``struct`` + ``zlib``) rather than through ``zipfile`` so that every header field
is pinned here and the bytes cannot move with ``zipfile`` defaults between Python versions:

* entries sorted by POSIX path, files only (no folder entries, like ``zip -D``);
* DOS time 1980-01-01 00:00:00; no extra fields, no comments, no data descriptors;
* "made by" Unix (3) version 2.0; "needed" 2.0 for deflate, 1.0 for stored;
* external attributes ``0o100644`` or ``0o100755`` (any executable bit) in the high 16 bits;
* flag bit 11 (UTF-8) set only when the name is not pure ASCII;
* raw deflate, level 6, default window and memory; an entry is stored instead when deflate does not make
  it smaller, or when :func:`looks_incompressible` says so before trying (decisions that depend only on the
  content).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import stat
import struct
import sys
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from fgsync.errors import PackageError
from fgsync.package.walk import (
    WHOLE_READ_BYTES,
    OpenFile,
    SourceFile,
    open_source_file,
    read_error,
    read_source_file,
)

DEFLATE_LEVEL = 6
STORED = 0
DEFLATED = 8
DOS_DATE_1980 = (0 << 9) | (1 << 5) | 1  # 1980-01-01
DOS_TIME_MIDNIGHT = 0
VERSION_MADE_BY = (3 << 8) | 20  # Unix, spec 2.0: fixed so the bytes do not depend on the OS
FLAG_UTF8 = 0x800
MAX_ENTRIES = 0xFFFF  # beyond this the archive would need zip64 records
CHUNK = 1 << 20
PROBE_MIN = 64 * 1024  # smaller files are simply deflated
PROBE_WINDOW = 4096
REFRESH_IN_MEMORY = 16 * 1024 * 1024  # a re-checked file up to this size is read once, into memory
_PARALLEL_HASH_BYTES = 4 * 1024 * 1024
_HASH_BLOCK = 1024 * 1024  # a cold build hashes what it wrote in blocks of about this much

_LOCAL = struct.Struct("<4s5H3I2H")
_CENTRAL_HEAD = struct.Struct("<4s6H3I5HI")  # the central record up to, not including, the local offset
_OFFSET = struct.Struct("<I")
_END = struct.Struct("<4s4H2IH")

@dataclass(frozen=True)
class CompressedEntry:
    """A file's compressed bytes and what its zip headers need; ``digest`` is SHA-256 of the content."""

    crc: int
    raw_size: int
    method: int
    data: bytes = field(repr=False)
    digest: bytes = field(repr=False)


def looks_incompressible(head: bytes) -> bool:
    """Whether a file whose first chunk is ``head`` is stored without even trying deflate.

    Deflating random bytes (archives, media, encrypted blobs) costs as much CPU as deflating text and gains
    nothing. So a file of at least ``PROBE_MIN`` bytes whose first chunk has three ``PROBE_WINDOW`` windows
    (start, middle, end of the chunk) that deflate does not shrink at all is stored. The rule reads only the
    content, so the bytes stay reproducible.
    """
    if len(head) < PROBE_MIN:
        return False
    middle = (len(head) - PROBE_WINDOW) // 2
    for start in (0, middle, len(head) - PROBE_WINDOW):
        window = head[start : start + PROBE_WINDOW]
        probe = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
        if len(probe.compress(window)) + len(probe.flush()) < len(window):
            return False
    return True


def _chunks(src: SourceFile, open_file: OpenFile) -> Iterator[bytes]:
    try:
        with open_file(src.path) as handle:
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    return
                yield chunk
    except OSError as exc:
        raise read_error(src.rel, exc) from None


def _over(what: str, text: str, fix: str) -> PackageError:
    """The error for an archive over its limit: ``<what> <text>`` and, when there is one, ``: <fix>``."""
    return PackageError(f"{what} {text}: {fix}" if fix else f"{what} {text}")


def _compress(
    rel: str, chunks: Iterable[bytes], keep_limit: int, what: str = "package", fix: str = ""
) -> CompressedEntry:
    crc = 0
    size = 0
    hasher = hashlib.sha256()
    deflater: Optional[zlib._Compress] = None
    out: list[bytes] = []
    raw: Optional[list[bytes]] = []
    for chunk in chunks:
        if size == 0 and not looks_incompressible(chunk):
            deflater = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
        size += len(chunk)
        crc = zlib.crc32(chunk, crc)
        hasher.update(chunk)
        if deflater is not None:
            out.append(deflater.compress(chunk))
        if raw is not None:
            raw.append(chunk)
            if size > keep_limit:
                raw = None
    if deflater is not None:
        out.append(deflater.flush())
        data = b"".join(out)
        if len(data) < size:
            return CompressedEntry(crc, size, DEFLATED, data, hasher.digest())
    if raw is None:
        raise _over(
            f"{rel} is {size:,} bytes and does not compress: the {what}",
            f"would be over the limit of {keep_limit:,} bytes",
            fix,
        )
    return CompressedEntry(crc, size, STORED, b"".join(raw), hasher.digest())


if sys.version_info >= (3, 11):

    def _deflate(data: bytes) -> bytes:
        # One call, one release of the GIL: the same stream as compressobj().compress() + flush(), whatever the
        # input's split (zlib's output does not depend on it without flushes; tests/test_package.py checks it).
        return zlib.compress(data, DEFLATE_LEVEL, wbits=-15)

else:  # pragma: no cover - zlib.compress takes wbits from Python 3.11 on

    def _deflate(data: bytes) -> bytes:
        deflater = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
        return deflater.compress(data) + deflater.flush()


def _compress_data(
    rel: str, data: bytes, keep_limit: int, what: str = "package", fix: str = "", digest: Optional[bytes] = None
) -> CompressedEntry:
    """:func:`_compress` for a file read whole: the same entry, with one deflate call instead of one per chunk."""
    size = len(data)
    crc = zlib.crc32(data)
    if digest is None:
        digest = hashlib.sha256(data).digest()
    if size and not looks_incompressible(data[:CHUNK]):  # the first chunk, as the streaming pass sees it
        deflated = _deflate(data)
        if len(deflated) < size:
            return CompressedEntry(crc, size, DEFLATED, deflated, digest)
    if size > keep_limit:
        raise _over(
            f"{rel} is {size:,} bytes and does not compress: the {what}",
            f"would be over the limit of {keep_limit:,} bytes",
            fix,
        )
    return CompressedEntry(crc, size, STORED, data, digest)


def _read_whole(src: SourceFile, open_file: OpenFile) -> Optional[bytes]:
    """The file's content read in one go, when it is small enough and read the default way; else None."""
    if open_file is not open_source_file or src.size > WHOLE_READ_BYTES:
        return None
    try:
        return read_source_file(src.path)
    except OSError as exc:
        raise read_error(src.rel, exc) from None


def compress_file(
    src: SourceFile, *, open_file: OpenFile = open_source_file, keep_limit: int, what: str = "package", fix: str = ""
) -> CompressedEntry:
    """Read, checksum, hash and deflate one file in a single streaming pass (up to 16 MiB: read whole, deflated
    in one call).

    Args:
        src: the file.
        open_file: how to open it (a seam for tests).
        keep_limit: raw bytes kept aside in case the file must be stored; a file that deflate cannot shrink
            and that is larger than this could never fit in a package anyway.
        what, fix: the archive the file is for and what to do when it does not fit, for the message.

    Raises:
        PackageError: the file cannot be read, or it alone is larger than ``keep_limit`` and incompressible.
    """
    data = _read_whole(src, open_file)
    if data is not None:
        return _compress_data(src.rel, data, keep_limit, what, fix)
    return _compress(src.rel, _chunks(src, open_file), keep_limit, what, fix)


def refresh_file(
    src: SourceFile,
    cached: CompressedEntry,
    *,
    open_file: OpenFile = open_source_file,
    keep_limit: int,
    what: str = "package",
    fix: str = "",
) -> Optional[CompressedEntry]:
    """Re-read a file whose stat cannot vouch for it; None when its content still hashes as ``cached``.

    Otherwise its new entry, made from the bytes already read (the file is read once either way).

    Raises:
        PackageError: as :func:`compress_file`.
    """
    if src.size > REFRESH_IN_MEMORY:  # too big to hold: compare first, then read again to compress
        hasher = hashlib.sha256()
        for chunk in _chunks(src, open_file):
            hasher.update(chunk)
        if hasher.digest() == cached.digest:
            return None
        return compress_file(src, open_file=open_file, keep_limit=keep_limit, what=what, fix=fix)
    data = _read_whole(src, open_file)
    if data is not None:
        digest = hashlib.sha256(data).digest()
        if digest == cached.digest:
            return None
        return _compress_data(src.rel, data, keep_limit, what, fix, digest)
    chunks = list(_chunks(src, open_file))
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    if hasher.digest() == cached.digest:
        return None
    return _compress(src.rel, chunks, keep_limit, what, fix)


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


def central_prefix(name: bytes, entry: CompressedEntry, mode: int) -> bytes:
    """The first 42 bytes of an entry's central directory record: everything before its offset."""
    version = 20 if entry.method == DEFLATED else 10
    return _CENTRAL_HEAD.pack(
        b"PK\x01\x02", VERSION_MADE_BY, version, _flags(name), entry.method, DOS_TIME_MIDNIGHT, DOS_DATE_1980,
        entry.crc, len(entry.data), entry.raw_size, len(name), 0, 0, 0, 0, external_attr(mode),
    )  # fmt: skip


def central_header(name: bytes, entry: CompressedEntry, mode: int, offset: int) -> bytes:
    """The central directory record for one entry whose local header starts at offset."""
    return central_prefix(name, entry, mode) + _OFFSET.pack(offset) + name


def end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    """The end of central directory record."""
    return _END.pack(b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)


#: What an archive's entry was built from and into: (name, mode, entry, name bytes, local header, the
#: central record's first 42 bytes). An entry with the same name, mode and entry object reuses them.
TrailKey = tuple[str, int, CompressedEntry, bytes, bytes, bytes]


@dataclass
class HashTrail:
    """The last archive's entries and its SHA-512 state at every entry boundary, to make the next one fast.

    When a rebuild's first k entries are the same objects, under the same names and modes, as last time,
    its first bytes are identical too, and hashing restarts at entry k instead of byte 0; every unchanged
    entry reuses its headers.

    The layout of that prefix is reused too: its local headers and data (``parts``), central records and
    offsets are the last archive's, taken by slicing, not entry by entry.

    Attributes:
        keys: one :data:`TrailKey` per entry of the last archive.
        states: ``states[i]`` is the hash of the bytes before entry i (``len(keys) + 1`` states).
        parts: the last archive's pieces: local header and data of each entry, then the directory and the end.
        central: each entry's central directory record.
        offsets: where each entry's local header starts, and where the directory starts (``len(keys) + 1``).
    """

    keys: list[TrailKey]
    states: list[Any]
    parts: list[bytes] = field(default_factory=list)
    central: list[bytes] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


def _assemble_once(
    files: Sequence[SourceFile],
    entries: Iterable[CompressedEntry],
    max_bytes: int,
    abort_bytes: int,
    what: str,
    fix: str,
) -> tuple[bytes, str]:
    """A cold build's layout: each entry is written into one growing buffer and hashed as it comes, then let go.

    So the archive is held once, not beside the entries it is made of (a cold build peaks at about the zip's
    size, plus the entries still in flight). ``BytesIO.getvalue()`` hands over its buffer without a copy.
    """
    out = io.BytesIO()
    write = out.write
    hasher = hashlib.sha512()
    hashed = 0

    def hash_written() -> None:
        # In blocks of the buffer, not per entry: each update of more than 2 KiB lets go of the GIL and must
        # win it back from the compressing threads, which costs more than the hashing of a small entry.
        with out.getbuffer() as view, view[hashed:] as block:
            hasher.update(block)

    central: list[bytes] = []
    offset = 0
    for src, entry in zip(files, entries):
        name = src.rel.encode("utf-8")
        head = local_header(name, entry)
        central.append(central_prefix(name, entry, src.mode) + _OFFSET.pack(offset) + name)
        data = entry.data
        write(head)
        write(data)
        offset += len(head) + len(data)
        if offset > abort_bytes:
            raise _over(what, f"would be at least {offset:,} bytes, over the limit of {max_bytes:,} bytes", fix)
        if offset - hashed >= _HASH_BLOCK:
            hash_written()
            hashed = offset
    directory = b"".join(central)
    tail = end_record(len(central), len(directory), offset)
    total = offset + len(directory) + len(tail)
    if total > max_bytes:
        raise _over(what, f"is {total:,} bytes, over the limit of {max_bytes:,} bytes", fix)
    write(directory)
    write(tail)
    hash_written()
    return out.getvalue(), hasher.hexdigest()


def assemble(
    files: Sequence[SourceFile],
    entries: Iterable[CompressedEntry],
    *,
    max_bytes: int,
    abort_bytes: int,
    trail: Optional[HashTrail] = None,
    keep_trail: bool = False,
    what: str = "package",
    fix: str = "",
) -> tuple[bytes, str, Optional[HashTrail]]:
    """Lay the entries out as a zip and hash it.

    Args:
        files: the sorted files.
        entries: their compressed entries, in the same order (may be produced lazily).
        max_bytes: the package limit, reported in the error.
        abort_bytes: stop early once the archive is known to exceed this (a runaway tree need not be
            compressed to the end just to be refused).
        trail: the previous archive's hash trail, to skip re-hashing an unchanged prefix.
        keep_trail: return this archive's trail (costs one hash-state copy per entry).
        what: the archive's name in messages (``package``, ``dependency package``).
        fix: what to do about an archive over the limit, appended to the message.

    Returns:
        The zip bytes, their SHA-512 (lowercase hex) and, with ``keep_trail``, the new trail. Without a trail
        either way (a cold build), each entry goes into the archive as it comes and is not kept.

    Raises:
        PackageError: the archive is over ``max_bytes``, or has more entries than a plain zip holds.
    """
    if len(files) > MAX_ENTRIES:
        named = "" if what == "package" else f"{what}: "
        raise PackageError(f"{named}{len(files):,} files is more than a zip without zip64 holds ({MAX_ENTRIES:,})")
    if trail is None and not keep_trail:
        return (*_assemble_once(files, entries, max_bytes, abort_bytes, what, fix), None)
    old_keys = trail.keys if trail is not None else []
    by_name: Optional[dict[str, TrailKey]] = None
    same = 0  # entries 0..same-1 are byte-identical to the trail's archive, at the same offsets
    keys: list[TrailKey] = []
    parts: list[bytes] = []
    central: list[bytes] = []
    offsets: list[int] = []
    offset = 0
    pairs: Iterator[tuple[SourceFile, CompressedEntry]] = zip(files, entries)
    if trail is not None and trail.offsets:
        # The unchanged prefix: only compared here, then its layout is sliced out of the last archive's.
        limit = len(old_keys)
        first: list[tuple[SourceFile, CompressedEntry]] = []
        for src, entry in pairs:
            if same < limit:
                old = old_keys[same]
                if old[2] is entry and old[0] == src.rel and old[1] == src.mode:
                    same += 1
                    continue
            first.append((src, entry))
            break
        keys, parts, central = old_keys[:same], trail.parts[: 2 * same], trail.central[:same]
        offsets, offset = trail.offsets[:same], trail.offsets[same]
        if offset > abort_bytes:
            raise _over(what, f"would be at least {offset:,} bytes, over the limit of {max_bytes:,} bytes", fix)
        pairs = itertools.chain(first, pairs)
    for index, (src, entry) in enumerate(pairs, same):
        rel = src.rel
        mode = src.mode
        key: Optional[TrailKey] = None
        if same == index and index < len(old_keys):
            key = old_keys[index]
            if key[0] == rel and key[1] == mode and key[2] is entry:
                same += 1
            else:
                key = None
        if key is None and old_keys:
            if by_name is None:
                by_name = {k[0]: k for k in old_keys}
            key = by_name.get(rel)
            if key is not None and (key[1] != mode or key[2] is not entry):
                key = None
        if key is None:
            name = rel.encode("utf-8")
            key = (rel, mode, entry, name, local_header(name, entry), central_prefix(name, entry, mode))
        keys.append(key)
        offsets.append(offset)
        central.append(key[5] + _OFFSET.pack(offset) + key[3])
        parts.append(key[4])
        parts.append(entry.data)
        offset += len(key[4]) + len(entry.data)
        if offset > abort_bytes:
            raise _over(what, f"would be at least {offset:,} bytes, over the limit of {max_bytes:,} bytes", fix)
    directory = b"".join(central)
    tail = end_record(len(central), len(directory), offset)
    total = offset + len(directory) + len(tail)
    if total > max_bytes:
        raise _over(what, f"is {total:,} bytes, over the limit of {max_bytes:,} bytes", fix)
    parts.append(directory)
    parts.append(tail)

    def digest() -> tuple[str, Optional[HashTrail]]:
        hasher: Any = trail.states[same].copy() if trail is not None else hashlib.sha512()
        states: list[Any] = list(trail.states[:same]) if keep_trail and trail is not None else []
        for index in range(same, len(keys)):
            if keep_trail:
                states.append(hasher.copy())
            hasher.update(parts[2 * index])
            hasher.update(parts[2 * index + 1])
        if keep_trail:
            states.append(hasher.copy())
        hasher.update(directory)
        hasher.update(tail)
        return hasher.hexdigest(), HashTrail(keys, states, parts, central, [*offsets, offset]) if keep_trail else None

    if total < _PARALLEL_HASH_BYTES:
        return (b"".join(parts), *digest())
    # Hashing and joining both walk every byte and both release the GIL: side by side they take half as long.
    result: list[tuple[str, Optional[HashTrail]]] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(digest())
        except BaseException as exc:  # handed back to the caller below
            failure.append(exc)

    worker = threading.Thread(target=run, name="fgsync-sha512", daemon=True)
    worker.start()
    data = b"".join(parts)
    worker.join()
    if failure:
        raise failure[0]
    return (data, *result[0])
