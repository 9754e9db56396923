"""One edit in a folder that 50 functions share: packaged once when their inputs are the same.

Run: ``python benchmarks/bench_shared.py [--functions 50] [--files 2000] [--rounds 3]``.

A real ``fgsync emulator`` and a real ``fgsync watch --json`` (subprocesses on loopback, benchmarks/_harness.py)
over ``--functions`` functions whose ``source`` is one generated ``node_modules``-shaped folder. Each round edits
one file and waits until every function has pushed it. Two configurations:

* shared: the functions' package inputs are identical (same source, rules, no build), so one build serves them
  all; every function still reports ``packaged``, and the build's time shows on one of them (and, in part, on
  the few that were syncing at the same moment and waited for that build: the daemon runs 4 syncs at once);
* distinct: each function has an ``exclude`` pattern of its own that matches nothing, so the inputs differ and
  each function is packaged on its own (the reference: what it cost before).

Printed per configuration: the sum of ``packaged.ms`` over the functions, how many took more than 2 ms (the
builds), the wall time from the edit to the last ``pushed``, and the daemon's CPU for the round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import PROJECT_ID, EmulatorProcess, WatchProcess, cpu_seconds, load
from _trees import generate_node


def write_config(root: Path, endpoint: str, names: list[str], *, distinct: bool) -> Path:
    lines = [
        f'region = "cn-north-4"\nproject_id = "{PROJECT_ID}"',
        f'endpoint = "{endpoint}"\niam_endpoint = "{endpoint}"',
    ]
    for index, name in enumerate(names):
        lines.append(f'[[function]]\nname = "{name}"\nsource = "shared"')
        if distinct:
            lines.append(f'exclude = ["nothing-matches-{index}/"]')
    path = root / "fgsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(root: Path, count: int, rounds: int, *, distinct: bool) -> dict[str, Any]:
    names = [f"f{n:03d}" for n in range(count)]
    emulator = EmulatorProcess(names, cwd=root)
    watch = None
    try:
        config = write_config(root, emulator.url, names, distinct=distinct)
        watch = WatchProcess(config, options=["--debounce-ms", "100"])
        mark = 0
        watch.wait(lambda: len(watch.since(mark, "pushed")) + len(watch.since(mark, "skipped")) >= count, 300, "start")
        victims = sorted((root / "shared").rglob("*.js"))
        totals, builds, walls, cpus = [], [], [], []
        tops: list[list[int]] = []
        for n in range(rounds):
            time.sleep(2.0)  # past the verifying walks of the last round
            mark = watch.mark()
            cpu0 = cpu_seconds(watch.pid)
            start = time.monotonic()
            with victims[(n * 997) % len(victims)].open("a") as handle:
                handle.write(f"// edit {n}\n")
            watch.wait(lambda at=mark: len(watch.since(at, "pushed")) >= count, 300, "every push")
            last = max(t for t, _ in watch.since(mark, "pushed"))
            packaged = [e["ms"] for _, e in watch.since(mark, "packaged")]
            walls.append(last - start)
            cpus.append(cpu_seconds(watch.pid) - cpu0)
            totals.append(sum(packaged))
            builds.append(sum(1 for ms in packaged if ms > 2))
            tops.append(sorted(packaged, reverse=True)[:6])
            if watch.errors(mark):
                raise RuntimeError(f"errors: {watch.errors(mark)[:3]}")
        return {
            "packaged_ms": statistics.median(totals),
            "builds": statistics.median(builds),
            "wall": statistics.median(walls),
            "cpu": statistics.median(cpus),
            "top": tops[-1],
        }
    finally:
        if watch is not None:
            watch.stop()
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    """Measure both configurations and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=50)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[bool, dict[str, Any]] = {}
    for distinct in (False, True):
        with tempfile.TemporaryDirectory(prefix="fgsync-bench-shared-") as tmp:
            root = Path(tmp)
            (root / "shared").mkdir()
            files, size = generate_node(root / "shared", files=args.files)
            results[distinct] = run(root, args.functions, args.rounds, distinct=distinct)
    print(f"{args.functions} functions over one folder of {files:,} files ({size / 2**20:.1f} MiB); {load()}")
    for distinct, label in ((False, "shared inputs"), (True, "distinct inputs")):
        r = results[distinct]
        print(
            f"  {label:16} packaged.ms summed {r['packaged_ms']:8.0f} ms, builds > 2 ms: {r['builds']:4.0f}; "
            f"edit -> last push {r['wall']:6.2f} s; daemon CPU {r['cpu'] * 1000:7.0f} ms"
        )
        print(f"  {'':16} largest packaged.ms of the last round: {', '.join(map(str, r['top']))}")
    shared, distinct_r = results[False], results[True]
    print(
        f"  shared / distinct: packaging {shared['packaged_ms'] / max(distinct_r['packaged_ms'], 1):.2f}x, "
        f"CPU {shared['cpu'] / max(distinct_r['cpu'], 1e-9):.2f}x (goal: one build per burst when inputs are equal)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
