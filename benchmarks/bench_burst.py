"""Bursts of 300 files while `fgsync watch` runs: how many uploads the emulator sees for each.

Run: ``python benchmarks/bench_burst.py [--files 300] [--repeat 5] [--spreads 2,8] [--debounce-ms N]
[--max-wait-ms N] [--poll] [--dir DIR]``.

A real ``fgsync emulator`` and a real ``fgsync watch --json`` (token auth, default debounce 300 ms and max-wait
3000 ms unless given) run as subprocesses on loopback over one function of 50 files.

1. ``--repeat`` times, 300 new files in 10 new folders are written as fast as Python can (a `git checkout` of a
   branch that adds them: a few milliseconds). Goal: exactly 1 upload each.
2. For each of ``--spreads`` seconds, 300 new files are written evenly over that time (a slow `npm install`).
   Writes 7-27 ms apart never leave the 300 ms quiet time, so ``max_wait_ms`` ends the burst: expected are
   one upload per full ``max_wait_ms`` of writing, plus one for the tail (1 for 2 s, 3 for 8 s).

Uploads are counted by the emulator (``GET /_emulator/stats``), syncs and `change` events from the watch's
NDJSON output. A run ends when a sync has ended and neither an event nor a write came for 2 s. At the end,
the function's remote digest must be the SHA-512 of a cold build of the tree on disk.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import EmulatorProcess, WatchProcess, load, write_project

from fgsync.ignore import IgnoreRules
from fgsync.package import build_package

QUIET_SECONDS = 2.0
FOLDERS = 10


def contents(tag: str, files: int) -> list[tuple[str, bytes]]:
    """``files`` new files (relative path, bytes) in 10 new folders under ``tag``, prepared before timing."""
    out = []
    for i in range(files):
        body = f'"""{tag} module {i}."""\n\nVALUE = {i}\nNAME = "{tag}-{i}"\n' + "# padding\n" * (i % 30)
        out.append((f"{tag}/pkg{i % FOLDERS}/m{i:04d}.py", body.encode()))
    return out


def write_all(source: Path, files: list[tuple[str, bytes]], spread: float) -> float:
    """Write the files, evenly over ``spread`` seconds (0: as fast as possible); returns the seconds it took."""
    start = time.perf_counter()
    made: set[str] = set()
    for index, (rel, data) in enumerate(files):
        if spread:
            # Pace against the clock, not with fixed sleeps, so slow writes do not stretch the burst.
            due = start + spread * index / len(files)
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        folder = rel.rsplit("/", 1)[0]
        if folder not in made:
            os.makedirs(source / folder, exist_ok=True)
            made.add(folder)
        fd = os.open(source / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return time.perf_counter() - start


def run_burst(
    watch: WatchProcess, emulator: EmulatorProcess, source: Path, tag: str, files: int, spread: float
) -> dict[str, float]:
    """One burst and what it caused, once the loop is quiet again."""
    before = emulator.uploads()["burst"]
    mark = watch.mark()
    wrote_at = time.monotonic()
    took = write_all(source, contents(tag, files), spread)
    last_write = wrote_at + took
    # Quiet counts from the last write too: a max-wait push may come long before the tail's burst ends.
    watch.wait_quiet(mark, QUIET_SECONDS, timeout=120 + spread, since=last_write)
    errors = watch.errors(mark)
    if errors:
        raise RuntimeError(f"the watch reported errors: {errors}")
    pushed = watch.since(mark, "pushed")
    changes = watch.since(mark, "change")
    return {
        "write_ms": took * 1000,
        "uploads": emulator.uploads()["burst"] - before,
        "syncs": len(watch.since(mark, "packaged")),
        "changes": len(changes),
        "paths": sum(int(e["count"]) for _, e in changes),
        "first_ms": (pushed[0][0] - wrote_at) * 1000 if pushed else float("nan"),
        "last_ms": (pushed[-1][0] - last_write) * 1000 if pushed else float("nan"),
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300, help="files per burst (default 300)")
    parser.add_argument("--repeat", type=int, default=5, help="fast bursts (default 5)")
    parser.add_argument("--spreads", default="2,8", help="seconds over which to spread a burst, comma-separated")
    parser.add_argument("--debounce-ms", type=int, default=None, help="default: fgsync's (300)")
    parser.add_argument("--max-wait-ms", type=int, default=None, help="default: fgsync's (3000)")
    parser.add_argument("--poll", action="store_true", help="poll the file system instead of native events")
    parser.add_argument("--dir", default=None, help="where to make the project (default: the temp folder); "
                        "e.g. /dev/shm to take the disk out of the write time")
    args = parser.parse_args(argv)
    options: list[str] = []
    if args.debounce_ms is not None:
        options += ["--debounce-ms", str(args.debounce_ms)]
    if args.max_wait_ms is not None:
        options += ["--max-wait-ms", str(args.max_wait_ms)]
    max_wait = (args.max_wait_ms if args.max_wait_ms is not None else 3000) / 1000
    spreads = [float(text) for text in args.spreads.split(",") if text]

    debounce = args.debounce_ms if args.debounce_ms is not None else 300
    # fgsync lifts the quiet time to the scan interval + 100 ms when polling (docs/watch.md).
    effective = f" ({max(debounce, 600)} ms effective when polling)" if args.poll else ""
    print(f"fgsync watch ({'polling' if args.poll else 'native events'}, "
          f"debounce {debounce} ms{effective}, max-wait {round(max_wait * 1000)} ms); "
          f"bursts of {args.files} new files in {FOLDERS} new folders under {args.dir or tempfile.gettempdir()}; "
          f"cpus: {os.cpu_count()}; {load()}")
    print(f"{'burst':>18} {'write':>9} | {'uploads':>7} {'expected':>8} {'syncs':>5} {'change events (paths)':>22} | "
          f"{'1st push after 1st write':>24} {'last push after last write':>26}")
    failures = 0
    with tempfile.TemporaryDirectory(prefix="fgsync-burst-", dir=args.dir) as tmp:
        root = Path(tmp)
        source = root / "functions" / "burst"
        for rel, data in contents("base", 50):
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_bytes(data)
        emulator = EmulatorProcess(["burst"], cwd=root)
        watch: Optional[WatchProcess] = None
        try:
            watch = WatchProcess(write_project(root, emulator.url, {"burst": "functions/burst"}), poll=args.poll,
                                 options=options)  # fmt: skip
            watch.wait_quiet(0, QUIET_SECONDS, timeout=120)  # the initial sync, then quiet
            plan = [(f"fast #{n}", f"fast{n}", 0.0) for n in range(1, args.repeat + 1)]
            plan += [(f"over {s:g} s", f"slow{i}", s) for i, s in enumerate(spreads)]
            for label, tag, spread in plan:
                expected = 1 if spread < max_wait else int(spread // max_wait) + 1
                r = run_burst(watch, emulator, source, tag, args.files, spread)
                failures += r["uploads"] != expected
                print(f"{label:>18} {r['write_ms']:>7.0f}ms | {r['uploads']:>7.0f} {expected:>8} {r['syncs']:>5.0f} "
                      f"{r['changes']:>12.0f} ({r['paths']:>5.0f} paths) | {r['first_ms']:>22.0f}ms "
                      f"{r['last_ms']:>24.0f}ms", flush=True)
            remote = emulator.digests()["burst"]
            local = build_package(source, rules=IgnoreRules.for_function(source)).sha512
        finally:
            code = watch.stop() if watch is not None else 130
            emulator.stop()
    print(f"remote digest {'==' if remote == local else '!='} SHA-512 of a cold build of the tree on disk; "
          f"watch exit code after SIGINT: {code}; {load()}")
    if remote != local or code != 130:
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
