"""Packaging speed against Info-ZIP, on three generated tree shapes (mixed, node_modules, vendored Python).

Run: ``python benchmarks/bench_package.py [--shapes mixed,node,python] [--repeat R] [--workers N]``.

For each shape (benchmarks/_trees.py), in interleaved rounds so that load from other processes weighs on every
contender alike:

1. cold, whole process: ``fgsync package -o`` (a new Python process, as a user or an editor task runs it) vs
   ``zip -X -r -q -6`` into a new archive, each timed from spawn to exit, with the child's CPU time
   (``resource.getrusage(RUSAGE_CHILDREN)``);
2. the daemon's repack after a one-file edit: a ``PackageBuilder`` kept across builds (in this process), one
   source file appended to per round, checked byte-for-byte against a cold ``build_package`` of the same tree.

Printed per shape: median, min and max of each, and the ratios of the medians. Goals: (1) <= 1.0x zip on every
shape; (2) <= 5 % of zip. The trees' mtimes are an hour in the past, as in a project that exists before the daemon
starts (fresh files are "racy" and get re-checked once). The page cache is warm (one untimed run of each first).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import SOURCE, child_env, load
from _trees import SHAPES, generate

sys.path.insert(0, str(SOURCE))

from fgsync.ignore import IgnoreRules
from fgsync.package import PackageBuilder, build_package

SUFFIXES = {"mixed": ".py", "node": ".js", "python": ".py"}


def spread(samples: list[float]) -> str:
    """``median  (min .. max)`` in milliseconds."""
    ms = [s * 1000 for s in samples]
    return f"median {statistics.median(ms):8.1f} ms  (min {min(ms):7.1f}, max {max(ms):7.1f})"


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bench_shape(shape: str, tmp: Path, repeat: int) -> dict[str, float]:
    tree = tmp / shape / "src"
    count, size = generate(shape, tree)
    config = tmp / shape / "fgsync.toml"
    config.write_text(
        'region = "cn-north-4"\nproject_id = "0123456789abcdef0123456789abcdef"\n\n'
        f'[[function]]\nname = "f"\nsource = "{tree}"\n'
    )
    env = child_env(FGSYNC_CACHE_DIR=str(tmp / "cache"))
    out_fg, out_zip = tmp / shape / "fgsync.zip", tmp / shape / "zip.zip"
    fgsync = [sys.executable, "-m", "fgsync", "--config", str(config), "package", "f", "-o", str(out_fg)]

    def run_zip() -> tuple[float, float]:
        out_zip.unlink(missing_ok=True)
        return timed(["zip", "-X", "-r", "-q", "-6", str(out_zip), "."], tree, env)

    rules = IgnoreRules.for_function(tree)
    run_zip()  # warm the page cache for every contender
    timed(fgsync, tmp, env)
    builder = PackageBuilder(tree, rules=rules)
    builder.build()
    victims = [rel for rel in builder.build().paths if rel.endswith(SUFFIXES[shape])]
    rng = random.Random(2)
    zips: list[float] = []
    zip_cpu: list[float] = []
    colds: list[float] = []
    cold_cpu: list[float] = []
    warms: list[float] = []
    walked: list[float] = []  # the same repack after a walk of the whole tree (no event to go by)
    for _ in range(repeat):
        wall, cpu = run_zip()
        zips.append(wall)
        zip_cpu.append(cpu)
        wall, cpu = timed(fgsync, tmp, env)
        colds.append(wall)
        cold_cpu.append(cpu)
        victim = rng.choice(victims)
        with (tree / victim).open("ab") as handle:
            handle.write(b"// edited\n" if shape == "node" else b"# edited\n")
        start = time.perf_counter()
        warm = builder.build(changed=[victim])  # as the daemon does: the path the watcher reported
        warms.append(time.perf_counter() - start)
        with (tree / victim).open("ab") as handle:
            handle.write(b"// edited\n" if shape == "node" else b"# edited\n")
        start = time.perf_counter()
        warm = builder.build()
        walked.append(time.perf_counter() - start)
        builder.build()  # a full walk again: the next round's repack goes from one
    cold = build_package(tree, rules=IgnoreRules.for_function(tree))
    if warm.data != cold.data:
        raise SystemExit(f"MISMATCH ({shape}): the incremental build differs from a cold build")
    victim = rng.choice(victims)
    with (tree / victim).open("ab") as handle:
        handle.write(b"# one more\n")
    if builder.build(changed=[victim]).data != build_package(tree, rules=IgnoreRules.for_function(tree)).data:
        raise SystemExit(f"MISMATCH ({shape}): the build from the reported path differs from a cold build")
    zip_s, cold_s, warm_s, walked_s = (statistics.median(x) for x in (zips, colds, warms, walked))
    print(f"== {shape}: {count:,} files, {size / 2**20:.1f} MiB -> zip {out_zip.stat().st_size / 2**20:.1f} MiB"
          f" (fgsync {cold.size / 2**20:.1f} MiB); {load()}")  # fmt: skip
    print(f"  zip -X -r -q -6, whole process:    {spread(zips)}  cpu {statistics.median(zip_cpu) * 1000:7.1f} ms")
    print(f"  fgsync package -o, whole process:  {spread(colds)}  cpu {statistics.median(cold_cpu) * 1000:7.1f} ms")
    print(f"  PackageBuilder repack, 1 edit:     {spread(warms)}  (the reported path only, as the daemon)")
    print(f"  the same after a whole-tree walk:  {spread(walked)}  (last: {builder.stats})")
    ratio = cold_s / zip_s
    rounds = [c / z for c, z in zip(colds, zips)]
    cpu_ratio = statistics.median(cold_cpu) / statistics.median(zip_cpu)
    print(
        f"  (1) cold package / zip = {ratio:.2f}x (goal <= 1.0x; per round {min(rounds):.2f}..{max(rounds):.2f}x);"
        f" CPU {cpu_ratio:.2f}x zip's"
    )
    print(
        f"  (2) repack / zip = {100 * warm_s / zip_s:.1f} % (goal <= 5 %); "
        f"with a whole-tree walk {100 * walked_s / zip_s:.1f} %"
    )
    return {"cold": ratio, "repack": warm_s / zip_s}


def main(argv: list[str] | None = None) -> int:
    """Generate the trees, measure, print the figures and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds per shape (default 7)")
    args = parser.parse_args(argv)
    if shutil.which("zip") is None:
        print("zip (Info-ZIP) is not installed", file=sys.stderr)
        return 1
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = sorted(set(shapes) - set(SHAPES))
    if unknown:
        parser.error(f"unknown shapes: {', '.join(unknown)}")
    print(f"fgsync from {SOURCE}; cpus: {os.cpu_count()}; python {sys.version.split()[0]}; {load()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="fgsync-bench-") as tmp:
        for shape in shapes:
            results[shape] = bench_shape(shape, Path(tmp), args.repeat)
    print("summary: " + "; ".join(
        f"{s}: cold {r['cold']:.2f}x zip, repack {100 * r['repack']:.1f} % of zip" for s, r in results.items()
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
