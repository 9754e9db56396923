"""Peak memory of `fgsync push` and `fgsync package` for a 40 MB package, against a tiny one.

Run: ``python benchmarks/bench_memory.py [--megabytes 40] [--repeat 3]``.

Two functions against a real ``fgsync emulator`` subprocess: ``big`` (a handler and ``--megabytes`` of
incompressible data in 4 MB files, so the zip is about that size) and ``tiny`` (one file). Each of
``fgsync package NAME -o``, ``fgsync push NAME --force`` is run as a subprocess; its peak RSS is the child's own
``ru_maxrss`` (``os.wait4``), so nothing of this script counts. Printed: the medians, and the big push's peak
above the tiny push's, against the goal: <= 1.5 x the zip + 20 MB (the upload body streamed in chunks, not held
as one base64 string; the zip held once).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import SOURCE, TOKEN, EmulatorProcess, child_env, load, run_measured, write_project


def main(argv: list[str] | None = None) -> int:
    """Make the two functions, run each command --repeat times, print peak RSS figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=40.0, help="size of the big package (default 40)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (default 3)")
    args = parser.parse_args(argv)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="fgsync-bench-") as tmp:
        root = Path(tmp)
        big = root / "functions" / "big"
        big.mkdir(parents=True)
        (big / "index.py").write_text("def handler(event, context):\n    return 1\n")
        left = int(args.megabytes * 1_000_000)
        part = 0
        while left > 0:
            size = min(left, 4_000_000)
            (big / f"blob{part:02d}.bin").write_bytes(rng.randbytes(size))
            left -= size
            part += 1
        tiny = root / "functions" / "tiny"
        tiny.mkdir(parents=True)
        (tiny / "index.py").write_text("def handler(event, context):\n    return 1\n")
        emulator = EmulatorProcess(["big", "tiny"], cwd=root)
        try:
            config = write_project(root, emulator.url, {"big": "functions/big", "tiny": "functions/tiny"})
            env = child_env(FGSYNC_TOKEN=TOKEN, FGSYNC_CACHE_DIR=str(root / "cache"))
            fgsync = [sys.executable, "-m", "fgsync", "--config", str(config)]
            zip_path = root / "big.zip"
            commands = {
                "package tiny -o": [*fgsync, "package", "tiny", "-o", str(root / "tiny.zip")],
                "package big -o": [*fgsync, "package", "big", "-o", str(zip_path)],
                "push tiny --force": [*fgsync, "push", "tiny", "--force"],
                "push big --force": [*fgsync, "push", "big", "--force"],
            }
            peaks: dict[str, list[int]] = {name: [] for name in commands}
            walls: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.repeat):
                for name, command in commands.items():
                    wall, _cpu, rss_kb, _code = run_measured(command, cwd=root, env=env)
                    peaks[name].append(rss_kb)
                    walls[name].append(wall)
            zipped = zip_path.stat().st_size
            uploads = emulator.uploads()
        finally:
            emulator.stop()
    mib = 1024 * 1024
    print(f"fgsync from {SOURCE}; cpus: {os.cpu_count()}; python {sys.version.split()[0]}; {load()}")
    print(f"big zip: {zipped / mib:.1f} MiB; uploads: {uploads}")
    med = {name: statistics.median(values) * 1024 for name, values in peaks.items()}  # bytes
    for name in commands:
        values = peaks[name]
        print(
            f"  {name:18s} peak RSS median {med[name] / mib:6.1f} MiB (min {min(values) / 1024:6.1f}, "
            f"max {max(values) / 1024:6.1f})  wall median {statistics.median(walls[name]):5.2f} s"
        )
    for kind in ("package", "push"):
        above = med[f"{kind} big{' -o' if kind == 'package' else ' --force'}"]
        above -= med[f"{kind} tiny{' -o' if kind == 'package' else ' --force'}"]
        print(f"  {kind}: big above tiny = {above / mib:.1f} MiB = {above / zipped:.2f} x the zip")
    goal = 1.5 * zipped + 20 * mib
    above = med["push big --force"] - med["push tiny --force"]
    print(f"  goal (push): <= 1.5 x zip + 20 MiB = {goal / mib:.1f} MiB: {'met' if above <= goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
