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


def summary(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:8.1f} ms   min {min(samples) * 1000:8.1f} ms"


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

        cold = build_package(tree, rules=rules)
        builder = PackageBuilder(tree, rules=rules)
        builder.build()
        files = [tree / rel for rel in cold.paths if rel.endswith(".py")]
        rng = random.Random(2)
        update = Path(tmp) / "update.zip"
        run_zip(tree, update)
        # Interleaved rounds, so that load from other processes weighs on every contender alike.
        zips: list[float] = []
        updates: list[float] = []
        colds: list[float] = []
        warms: list[float] = []
        for _ in range(args.repeat):
            victim = rng.choice(files)
            with victim.open("ab") as handle:
                handle.write(b"# edited\n")
            start = time.perf_counter()
            warm = builder.build()
            warms.append(time.perf_counter() - start)
            start = time.perf_counter()
            cold = build_package(tree, rules=rules)
            colds.append(time.perf_counter() - start)
            if warm.data != cold.data:
                print("MISMATCH: incremental build differs from a cold build", file=sys.stderr)
                return 1
            start = time.perf_counter()
            run_zip(tree, out)
            zips.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(["zip", "-X", "-r", "-q", "-6", str(update), "."], cwd=tree, check=True)
            updates.append(time.perf_counter() - start)
        zip_s, cold_s, warm_s = (statistics.median(x) for x in (zips, colds, warms))
        print(f"zip -X -r -q -6 (new archive):      {summary(zips)}  ({out.stat().st_size / 2**20:.1f} MiB)")
        print(f"zip -X -r -q -6 (update, 1 change): {summary(updates)}")
        print(f"cold build_package:                 {summary(colds)}  ({cold.size / 2**20:.1f} MiB)")
        print(f"PackageBuilder repack, 1 change:    {summary(warms)}  (last: {builder.stats})")
        print(f"(1) cold build / zip = {cold_s / zip_s:.2f}x (goal <= 1.0x)")
        update_s = statistics.median(updates)
        print(
            f"(2) repack / zip = {100 * warm_s / zip_s:.1f} % (goal <= 5 %; best runs "
            f"{100 * min(warms) / min(zips):.1f} %); repack / zip update = {100 * warm_s / update_s:.1f} %;"
            f" repack / cold build = {100 * warm_s / cold_s:.1f} %"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
