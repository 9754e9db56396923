"""`fgsync push` over many functions against an emulator with network latency: warm (nothing to do) and cold.

Run: ``python benchmarks/bench_many.py [--functions 200] [--latency-ms 15] [--repeat 3]``.

A real ``fgsync emulator --latency 15`` subprocess (15 ms each way: a 30 ms round trip per request, as to a
nearby region) serves ``--functions`` functions of two small files each; ``fgsync push --json`` runs as a
subprocess from spawn to exit (benchmarks/_harness.py: made-up ``FGSYNC_TOKEN``, temporary cache folder). Rounds:

* cold: every function's ``index.py`` changed since the last push, so every one is packaged, compared
  (ShowFunctionCode) and uploaded (UpdateFunctionCode);
* warm: nothing changed, every function is skipped after its ShowFunctionCode.

Printed: median, min and max of each, the uploads the emulator counted, and the most requests it had in flight at
once (SPEC: at most 8). Goals: warm <= 2 s, cold <= 6 s for 200 functions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import SOURCE, TOKEN, EmulatorProcess, child_env, load, write_project

HANDLER = 'def handler(event, context):\n    return {"statusCode": 200, "body": "%s v%d"}\n'


def push(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, list[dict[str, Any]]]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"fgsync push exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """Make the functions, start the emulator, time the rounds, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=200, help="how many functions (default 200)")
    parser.add_argument("--latency-ms", type=float, default=15.0, help="the emulator's --latency (default 15)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of cold + warm (default 3)")
    args = parser.parse_args(argv)
    names = [f"fn{i:03d}" for i in range(args.functions)]
    with tempfile.TemporaryDirectory(prefix="fgsync-bench-") as tmp:
        root = Path(tmp)
        for name in names:
            folder = root / "functions" / name
            folder.mkdir(parents=True)
            (folder / "index.py").write_text(HANDLER % (name, 0))
            (folder / "util.py").write_text("def double(x):\n    return 2 * x\n" * 20)
        emulator = EmulatorProcess(names, cwd=root, options=["--latency", f"{args.latency_ms:g}"])
        try:
            config = write_project(root, emulator.url, {n: f"functions/{n}" for n in names})
            env = child_env(FGSYNC_TOKEN=TOKEN, FGSYNC_CACHE_DIR=str(root / "cache"))
            command = [sys.executable, "-m", "fgsync", "--config", str(config), "--json", "push"]
            colds: list[float] = []
            warms: list[float] = []
            uploads: list[int] = []
            peaks: list[Any] = []
            order_ok = True
            for round_ in range(1, args.repeat + 1):
                for name in names:
                    (root / "functions" / name / "index.py").write_text(HANDLER % (name, round_))
                before = sum(emulator.uploads().values())
                wall, events = push(command, root, env)
                colds.append(wall)
                uploads.append(sum(emulator.uploads().values()) - before)
                peaks.append(emulator.stats().get("requests", {}).get("peak", "n/a"))
                order_ok &= [e["function"] for e in events if e["event"] == "pushed"] == names
                wall, events = push(command, root, env)
                warms.append(wall)
                order_ok &= [e["function"] for e in events if e["event"] == "skipped"] == names
        finally:
            emulator.stop()
    print(f"fgsync from {SOURCE}; cpus: {os.cpu_count()}; python {sys.version.split()[0]}; {load()}")
    print(f"{args.functions} functions, emulator --latency {args.latency_ms:g} (round trip {2 * args.latency_ms:g} ms)")
    for label, values, goal in (("cold push (all changed)", colds, 6.0), ("warm push (nothing to do)", warms, 2.0)):
        print(
            f"  {label:26s} median {statistics.median(values):6.2f} s  (min {min(values):5.2f}, max {max(values):5.2f})"
            f"  goal <= {goal:g} s"
        )
    print(f"  uploads per cold push: {uploads}; most requests in flight at once: {peaks}")
    print(f"  output in config order: {'yes' if order_ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
