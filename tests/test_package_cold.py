"""The cold packaging path (`fgsync package`, `push`): files read whole and deflated in one call, the zip held once.

Same bytes as the streaming pass and as the incremental builder; the memory check counts Python's allocations
(tracemalloc), not time.
"""

from __future__ import annotations

import os
import random
import tracemalloc
from pathlib import Path
from typing import BinaryIO

import pytest

from fgsync.ignore import IgnoreRules
from fgsync.package import PackageBuilder, build_package
from fgsync.package.archive import CHUNK, compress_file, refresh_file
from fgsync.package.walk import WHOLE_READ_BYTES, SourceFile, open_source_file, read_source_file, walk_source
from tests.conftest import make_tree


def _text(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = ["def", "return", "value", "self", "import", "lambda", "x", "=", "(", ")", "\n", "    "]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words).encode() + b" "
    return bytes(out[:size])


def _streamed(path: str) -> BinaryIO:
    """Another opener than the default: the builder then reads the file in chunks, the streaming pass."""
    return open_source_file(path)


SIZES_AND_KINDS = [
    (0, "text"),
    (1, "text"),
    (5_000, "text"),
    (CHUNK - 1, "text"),
    (CHUNK + 1, "text"),
    (3 * CHUNK + 17, "text"),
    (70_000, "noise"),
    (2 * CHUNK + 5, "noise"),
    (CHUNK + 9, "noisy head"),
    (WHOLE_READ_BYTES + 3, "text"),  # beyond a whole read: chunks on both sides
]


@pytest.mark.parametrize(("size", "kind"), SIZES_AND_KINDS)
def test_a_file_read_whole_gives_the_entry_of_the_streaming_pass(tmp_path: Path, size: int, kind: str) -> None:
    rng = random.Random(size)
    if kind == "text":
        data = _text(size, size)
    elif kind == "noise":
        data = rng.randbytes(size)
    else:
        data = rng.randbytes(8192) + _text(1, size - 8192)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    st = path.stat()
    src = SourceFile("f.bin", str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, st.st_ctime_ns, st.st_dev)
    whole = compress_file(src, keep_limit=64 << 20)
    streamed = compress_file(src, open_file=_streamed, keep_limit=64 << 20)
    assert whole == streamed  # crc, sizes, method, deflate stream and content hash
    other = compress_file(src._replace(size=0), keep_limit=64 << 20)  # a stale size from the walk changes nothing
    assert other == whole
    stale = streamed.__class__(streamed.crc ^ 1, streamed.raw_size, streamed.method, streamed.data, b"\0" * 32)
    assert refresh_file(src, stale, keep_limit=64 << 20) == streamed
    assert refresh_file(src, streamed, keep_limit=64 << 20) is None


def test_read_source_file_reads_to_the_end_and_refuses_what_is_not_a_file(tmp_path: Path) -> None:
    path = tmp_path / "grows.txt"
    path.write_bytes(b"x" * 10)
    assert read_source_file(str(path)) == b"x" * 10
    (tmp_path / "empty").write_bytes(b"")
    assert read_source_file(str(tmp_path / "empty")) == b""
    with pytest.raises(OSError):
        read_source_file(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        read_source_file(str(fifo))  # without blocking
    with pytest.raises(FileNotFoundError):
        read_source_file(str(tmp_path / "gone"))


def test_a_cold_build_holds_the_zip_once(tmp_path: Path) -> None:
    """Peak Python memory of a cold build of ~12 MB of incompressible files stays near one zip, not two."""
    rng = random.Random(4)
    src = make_tree(tmp_path / "src", {f"blobs/b{i:02d}.bin": rng.randbytes(300_000) for i in range(40)})
    make_tree(src, {f"lib/m{i:03d}.py": _text(i, 20_000) for i in range(100)})
    rules = IgnoreRules.for_function(src)
    walk_source(src, rules)  # the rules' memo is filled before measuring
    tracemalloc.start()
    try:
        package = build_package(src, rules=rules)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert package.size > 12_000_000
    # The zip, plus the growing buffer's slack, the entries in flight and the walk's records: well under 2x.
    assert peak < 1.35 * package.size + 3_000_000, (peak, package.size)
    assert PackageBuilder(src, rules=rules).build().data == package.data  # the incremental path: same bytes
