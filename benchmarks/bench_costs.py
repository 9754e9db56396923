"""Fixed cost per command, against the floor each command cannot go below: the interpreter and the libraries it needs.

Run: ``python benchmarks/bench_costs.py [--repeat 15]``.

Each contender is a new process, timed from spawn to exit, in interleaved rounds (so that load from other processes
weighs on every contender alike); printed: the median, min and max, and the ratio of the medians:

* ``fgsync --version`` vs ``python -c pass``                                   (goal <= 3x)
* ``fgsync package`` of a 1-file function vs ``python -c "import click, pathspec"``   (goal <= 1.5x)
* ``fgsync push`` and ``fgsync status`` with nothing to do (the function in sync) vs
  ``python -c "import httpx, click"``                                          (goal <= 1.5x)

``push`` and ``status`` talk to a real ``fgsync emulator`` subprocess on loopback (benchmarks/_harness.py), with
a made-up ``FGSYNC_TOKEN`` and a temporary cache folder. fgsync runs as ``python -m fgsync`` from the checkout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import SOURCE, TOKEN, EmulatorProcess, child_env, load, write_project


def run_timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of one child, spawn to exit (spawned straight from here: no launcher in between)."""
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Start an emulator, make a 1-file function, time every contender, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="interleaved rounds (default 15)")
    args = parser.parse_args(argv)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="fgsync-bench-") as tmp:
        root = Path(tmp)
        (root / "functions" / "hello").mkdir(parents=True)
        (root / "functions" / "hello" / "index.py").write_text("def handler(event, context):\n    return 1\n")
        emulator = EmulatorProcess(["hello"], cwd=root)
        try:
            config = write_project(root, emulator.url, {"hello": "functions/hello"})
            env = child_env(FGSYNC_TOKEN=TOKEN, FGSYNC_CACHE_DIR=str(root / "cache"))
            fgsync = [py, "-m", "fgsync", "--config", str(config)]
            subprocess.run([*fgsync, "push"], env=env, cwd=root, check=True, capture_output=True)  # now in sync
            contenders = {
                "python -c pass": [py, "-c", "pass"],
                "fgsync --version": [py, "-m", "fgsync", "--version"],
                "python -c 'import click, pathspec'": [py, "-c", "import click, pathspec"],
                "fgsync package (1 file)": [*fgsync, "package", "hello"],
                "python -c 'import httpx, click'": [py, "-c", "import httpx, click"],
                "fgsync push (nothing to do)": [*fgsync, "push"],
                "fgsync status (in sync)": [*fgsync, "status"],
            }
            walls: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(2):  # warm the page cache and the bytecode caches
                for command in contenders.values():
                    run_timed(command, root, env)
            for _ in range(args.repeat):
                for name, command in contenders.items():
                    walls[name].append(run_timed(command, root, env))
            uploads = emulator.uploads()["hello"]
        finally:
            emulator.stop()
    med = {name: statistics.median(values) for name, values in walls.items()}
    print(f"fgsync from {SOURCE}; cpus: {os.cpu_count()}; python {sys.version.split()[0]}; {load()}")
    for name, values in walls.items():
        ms = [v * 1000 for v in values]
        print(f"  {name:38s} median {statistics.median(ms):7.1f} ms  (min {min(ms):6.1f}, max {max(ms):6.1f})")
    floors = [
        ("fgsync --version", "python -c pass", 3.0),
        ("fgsync package (1 file)", "python -c 'import click, pathspec'", 1.5),
        ("fgsync push (nothing to do)", "python -c 'import httpx, click'", 1.5),
        ("fgsync status (in sync)", "python -c 'import httpx, click'", 1.5),
    ]
    for name, floor, goal in floors:
        ratio = med[name] / med[floor]
        print(f"  {name} / {floor} = {ratio:.2f}x (goal <= {goal:g}x)")
    print(f"  uploads during the timed rounds: {uploads - 1} (expected 0: nothing to do)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
