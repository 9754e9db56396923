"""The generated source trees the packaging benchmarks share: three shapes a function's folder takes.

Not a benchmark itself. Every tree is made from a seeded ``random.Random``, so a shape and size always give the
same files (and the same zip), with mtimes an hour in the past, as in a project that exists before the daemon
starts (fresh files are "racy" and get re-checked once).

* ``mixed``: today's bench_package tree: 3,000 files, about 40 MiB; 90 % of the files are source-like text
  (about 40 % of the bytes), the rest incompressible binary.
* ``node``: a ``node_modules``-shaped tree: about 7,500 files, mostly 1-10 KB of JavaScript and JSON in packages
  (some scoped) nested 4-6 folders deep, a few larger bundles and source maps, about 37 MB.
* ``python``: a vendored-Python tree (``pip install -t .``): fewer, larger modules, ``.dist-info`` folders with
  RECORD files, and some ``.so``-like binaries (incompressible, 0.5-4 MB), about 40 MiB.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Callable

SHAPES = ("mixed", "node", "python")

WORDS = [
    "def", "return", "import", "class", "self", "value", "result", "event", "context", "handler", "data",
    "items", "config", "for", "in", "if", "else", "while", "try", "except", "raise", "with", "as",
    "lambda", "yield", "async", "await", "None", "True", "False", "json", "dumps", "loads", "path",
]  # fmt: skip
JS_WORDS = [
    "function", "return", "const", "let", "var", "require", "module", "exports", "this", "value", "props",
    "if", "else", "for", "of", "in", "new", "Promise", "resolve", "reject", "async", "await", "null",
    "undefined", "true", "false", "Object", "keys", "map", "filter", "length", "options", "callback", "=>",
]  # fmt: skip
NAMES = [
    "core", "utils", "parser", "lodash", "debug", "semver", "chalk", "yargs", "glob", "minimatch", "acorn",
    "buffer", "stream", "http", "events", "color", "string", "array", "object", "path", "fs", "json", "ms",
    "once", "wrap", "inherits", "safe", "types", "schema", "ajv", "uri", "punycode", "tslib", "regenerator",
]  # fmt: skip


def make_text(rng: random.Random, size: int, words: list[str] = WORDS) -> bytes:
    """Source-like text: words, indentation and numbers (compresses about 3-4x, like real code)."""
    lines = []
    total = 0
    while total < size:
        line = "    " * rng.randrange(4) + " ".join(rng.choice(words) for _ in range(rng.randrange(3, 12)))
        line += f" = {rng.randrange(10**6)}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def _age(root: Path) -> None:
    past = time.time() - 3600
    for folder, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(folder, name), (past, past))


def generate_mixed(root: Path, files: int = 3000, megabytes: float = 40.0, seed: int = 1) -> tuple[int, int]:
    """The mixed tree; returns (files, bytes)."""
    rng = random.Random(seed)
    budget = int(megabytes * 1024 * 1024)
    binaries = max(1, files // 10)
    texts = files - binaries
    text_bytes = int(budget * 0.4)
    total = 0
    for i in range(files):
        folder = root / f"pkg{i % 37}" / f"sub{i % 11}"
        folder.mkdir(parents=True, exist_ok=True)
        if i % 10 == 9:
            size = rng.randrange(1, 2 * (budget - text_bytes) // binaries)
            (folder / f"blob{i}.bin").write_bytes(rng.randbytes(size))
        else:
            size = rng.randrange(1, 2 * text_bytes // texts)
            (folder / f"module{i}.py").write_bytes(make_text(rng, size))
        total += size
    _age(root)
    return files, total


def generate_node(root: Path, files: int = 7500, seed: int = 2) -> tuple[int, int]:
    """The node_modules tree (``index.js`` and ``package.json`` at the top, the rest under node_modules/)."""
    rng = random.Random(seed)
    (root / "index.js").write_bytes(make_text(rng, 2000, JS_WORDS))
    (root / "package.json").write_bytes(b'{"name": "app", "version": "1.0.0", "main": "index.js"}\n')
    count, total = 2, 2000 + 57
    package = 0
    while count < files:
        name = f"{rng.choice(NAMES)}-{package}"
        if package % 5 == 0:
            name = f"@{rng.choice(NAMES)}/{name}"  # scoped: one level deeper
        base = root / "node_modules" / name
        base.mkdir(parents=True, exist_ok=True)
        version = f"{rng.randrange(10)}.{rng.randrange(20)}.0"
        manifest = f'{{"name": "{name}", "version": "{version}", "main": "lib/index.js"}}\n'
        (base / "package.json").write_text(manifest)
        count, total = count + 1, total + len(manifest)
        # A few folders per package, 4-6 deep: node_modules/[@scope/]pkg/ and 2-3 more.
        kinds = ("lib", "dist", "src", "esm", "cjs", "internal", "utils")
        folders = [
            base.joinpath(*(rng.choice(kinds) for _ in range(rng.randrange(2, 4)))) for _ in range(rng.randrange(2, 6))
        ]
        for _ in range(rng.randrange(10, 40)):
            folder = rng.choice(folders)
            folder.mkdir(parents=True, exist_ok=True)
            roll = rng.random()
            if roll < 0.005:
                size, suffix = rng.randrange(40_000, 150_000), ".min.js"  # a bundle
            elif roll < 0.03:
                size, suffix = rng.randrange(2_000, 20_000), ".js.map"
            elif roll < 0.18:
                size, suffix = rng.randrange(500, 5_000), ".d.ts"
            elif roll < 0.28:
                size, suffix = rng.randrange(200, 2_500), ".json"
            else:
                size, suffix = rng.randrange(1_000, 8_000), ".js"
            path = folder / f"{rng.choice(NAMES)}{count}{suffix}"
            path.write_bytes(make_text(rng, size, JS_WORDS))
            count, total = count + 1, total + size
            if count >= files:
                break
        package += 1
    _age(root)
    return count, total


def generate_python(root: Path, megabytes: float = 40.0, seed: int = 3) -> tuple[int, int]:
    """The vendored-Python tree: packages with modules of 2-80 KB, .dist-info/RECORD, some .so binaries."""
    rng = random.Random(seed)
    budget = int(megabytes * 1024 * 1024)
    (root / "index.py").write_bytes(make_text(rng, 1500))
    count, total = 1, 1500
    binaries = int(budget * 0.4)  # 40 % of the bytes in .so files
    package = 0
    while total < budget:
        name = f"{rng.choice(NAMES)}{package}"
        records: list[str] = []
        for _ in range(rng.randrange(5, 60)):
            sub = root / name / rng.choice(("", "core", "utils", "_vendor", "tests", "io"))
            sub.mkdir(parents=True, exist_ok=True)
            size = rng.randrange(2_000, 80_000)
            path = sub / f"{rng.choice(WORDS)}_{count}.py"
            path.write_bytes(make_text(rng, size))
            records.append(path.relative_to(root).as_posix())
            count, total = count + 1, total + size
        if binaries > 0 and package % 3 == 0:
            size = min(binaries, rng.randrange(500_000, 4_000_000))
            path = root / name / f"_speedups{count}.cpython-311-x86_64-linux-gnu.so"
            path.write_bytes(rng.randbytes(size))
            records.append(path.relative_to(root).as_posix())
            binaries -= size
            count, total = count + 1, total + size
        info = root / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        record = "".join(f"{rel},sha256=x,1\n" for rel in records) + f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n"
        (info / "RECORD").write_text(record)
        count, total = count + 2, total + len(record) + 40
        package += 1
    _age(root)
    return count, total


GENERATORS: dict[str, Callable[[Path], tuple[int, int]]] = {
    "mixed": generate_mixed,
    "node": generate_node,
    "python": generate_python,
}


def generate(shape: str, root: Path) -> tuple[int, int]:
    """Make the tree of ``shape`` (one of :data:`SHAPES`) in ``root``; returns (files, bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    return GENERATORS[shape](root)
