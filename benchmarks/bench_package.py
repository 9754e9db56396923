"""Packaging speed against Info-ZIP, on a generated tree of about 3,000 files / 40 MB.

Run: ``python benchmarks/bench_package.py [--files N] [--megabytes M] [--repeat R]``.

1. cold build (``build_package``) vs ``zip -X -r -q -6`` of the same tree, in the same run;
2. repack after a one-file change with a warm ``PackageBuilder`` vs a cold build vs ``zip -X -r``.

Every figure is the median of ``--repeat`` runs with a warm page cache. The tree's mtimes are set an hour in
the past, as in a project that exists before the daemon starts (fresh files are "racy" and get re-checked once).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fgsync.ignore import IgnoreRules
from fgsync.package import PackageBuilder, build_package

WORDS = [
    "def", "return", "import", "class", "self", "value", "result", "event", "context", "handler", "data",
    "items", "config", "for", "in", "if", "else", "while", "try", "except", "raise", "with", "as",
    "lambda", "yield", "async", "await", "None", "True", "False", "json", "dumps", "loads", "path",
]


def make_text(rng: random.Random, size: int) -> bytes:
    """Source-like text: words, indentation and numbers (compresses about 3-4x, like real code)."""
    lines = []
    total = 0
    while total < size:
        line = "    " * rng.randrange(4) + " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))
        line += f" = {rng.randrange(10**6)}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def generate(root: Path, files: int, megabytes: float, seed: int = 1) -> tuple[int, int]:
    """A mixed tree: 90 % of the files are text (about 40 % of the bytes), the rest incompressible binary."""
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
    past = time.time() - 3600
    for folder, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(folder, name), (past, past))
    return files, total


def timed(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run_zip(tree: Path, out: Path) -> None:
    if out.exists():
        out.unlink()
    subprocess.run(["zip", "-X", "-r", "-q", "-6", str(out), "."], cwd=tree, check=True)


def main(argv: list[str] | None = None) -> int:
    """Generate the tree, measure, print the figures and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--megabytes", type=float, default=40.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if shutil.which("zip") is None:
        print("zip (Info-ZIP) is not installed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="fgsync-bench-") as tmp:
        tree = Path(tmp) / "src"
        count, size = generate(tree, args.files, args.megabytes)
        print(f"tree: {count} files, {size / 2**20:.1f} MiB; cpus: {os.cpu_count()}; python {sys.version.split()[0]}")
        rules = IgnoreRules.for_function(tree)
        out = Path(tmp) / "zip.zip"
        run_zip(tree, out)  # warm the page cache for both contenders
        build_package(tree, rules=rules)

        zip_s = timed(lambda: run_zip(tree, out), args.repeat)
        cold_s = timed(lambda: build_package(tree, rules=rules), args.repeat)
        cold = build_package(tree, rules=rules)
        print(f"zip -X -r -q -6: {zip_s * 1000:8.1f} ms  ({out.stat().st_size / 2**20:.1f} MiB)")
        print(f"cold build:      {cold_s * 1000:8.1f} ms  ({cold.size / 2**20:.1f} MiB)")
        print(f"(1) cold build / zip = {cold_s / zip_s:.2f}x   (goal <= 1.0x)")

        builder = PackageBuilder(tree, rules=rules)
        builder.build()
        files = [tree / rel for rel in cold.paths if rel.endswith(".py")]
        rng = random.Random(2)
        samples = []
        for _ in range(args.repeat):
            victim = rng.choice(files)
            with victim.open("ab") as handle:
                handle.write(b"# edited\n")
            start = time.perf_counter()
            warm = builder.build()
            samples.append(time.perf_counter() - start)
            if warm.data != build_package(tree, rules=rules).data:
                print("MISMATCH: incremental build differs from a cold build", file=sys.stderr)
                return 1
        incr_s = statistics.median(samples)
        print(f"repack, 1 file:  {incr_s * 1000:8.1f} ms  (last build: {builder.stats})")
        print(f"(2) repack / zip = {incr_s / zip_s:.3f} ({100 * incr_s / zip_s:.1f} %, goal <= 5 %);"
              f" repack / cold build = {incr_s / cold_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
