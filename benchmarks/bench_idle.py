"""Idle cost of `fgsync watch` over 10,000 files: CPU (% of one core) and memory (RSS), native events and --poll.

Run: ``python benchmarks/bench_idle.py [--seconds 60] [--layouts 10x1000,1x10000] [--modes native,poll]``.
Linux only (it reads /proc).

For each layout (``FxN``: F functions of N files each; 20 files per folder) and mode, it generates the tree,
starts a real ``fgsync emulator`` and a real ``fgsync watch --json`` (token auth) as subprocesses on loopback,
waits for the initial sync of every function plus 2 s, then measures the watch process itself for
``--seconds``: CPU from /proc/PID/stat (utime + stime) over the window, RSS from /proc/PID/status sampled every
second (VmRSS at the end, the highest sample in the window) and VmHWM (the process's lifetime peak, so it
includes the initial packaging). Nothing is written to the tree during the window: any event or upload in it
is reported as a failure. Goals: < 1 % of one core and < 100 MB RSS with native events.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import EmulatorProcess, WatchProcess, cpu_seconds, load, status, write_project

FILES_PER_FOLDER = 20
SETTLE_SECONDS = 2.0
CPU_GOAL = 1.0
RSS_GOAL_MB = 100.0


@dataclass(frozen=True)
class Layout:
    functions: int
    files: int  # per function

    @classmethod
    def parse(cls, text: str) -> Layout:
        functions, _, files = text.partition("x")
        return cls(int(functions), int(files))

    def __str__(self) -> str:
        return f"{self.functions} x {self.files:,}"


@dataclass(frozen=True)
class Figures:
    cpu_percent: float
    cpu_seconds: float
    window: float
    rss_end_mb: float
    rss_peak_mb: float
    hwm_mb: float
    threads: int
    folders: int
    events: int
    uploads: int
    initial_s: float
    load: str


def generate(root: Path, layout: Layout) -> tuple[dict[str, str], int]:
    """The functions' trees: small source-like files, 20 per folder, two folder levels.

    Returns the ``{name: source}`` map for fgsync.toml and the number of folders watched (sources included).
    """
    sources: dict[str, str] = {}
    for f in range(layout.functions):
        name = f"fn{f:02d}"
        source = root / "functions" / name
        sources[name] = f"functions/{name}"
        source.mkdir(parents=True)
        (source / "index.py").write_text("def handler(event, context):\n    return {'statusCode': 200}\n")
        for i in range(layout.files - 1):
            folder = source / f"pkg{i // (FILES_PER_FOLDER * 10):03d}" / f"mod{i // FILES_PER_FOLDER % 10}"
            if i % FILES_PER_FOLDER == 0:
                folder.mkdir(parents=True, exist_ok=True)
            body = "".join(f"VALUE_{i}_{k} = {i * 31 + k}  # generated line {k}\n" for k in range(i % 40 + 1))
            (folder / f"m{i:05d}.py").write_text(body)
    folders = sum(1 for _ in os.walk(root / "functions")) - 1  # not the parent of the sources
    return sources, folders


def measure(layout: Layout, poll: bool, seconds: float) -> Figures:
    """One run: tree, emulator, watch; the idle window's figures."""
    with tempfile.TemporaryDirectory(prefix="fgsync-idle-") as tmp:
        root = Path(tmp)
        sources, folders = generate(root, layout)
        emulator = EmulatorProcess(sources, cwd=root)
        watch: Optional[WatchProcess] = None
        try:
            config = write_project(root, emulator.url, sources)
            started = time.monotonic()
            watch = WatchProcess(config, poll=poll)
            w = watch

            def all_pushed() -> bool:
                done = {e.get("function") for _, e in w.since(0) if e.get("event") in ("pushed", "skipped")}
                return done >= set(sources)

            watch.wait(all_pushed, 600, "initial sync of every function")
            initial = time.monotonic() - started
            if watch.errors():
                raise RuntimeError(f"errors during the initial sync: {watch.errors()}")
            time.sleep(SETTLE_SECONDS)  # let the initial sync's threads and garbage go before measuring
            uploads_before = sum(emulator.uploads().values())
            mark = watch.mark()
            load_before = load()
            peak = 0
            stop = threading.Event()
            begin_cpu, begin = cpu_seconds(watch.pid), time.monotonic()
            end = begin + seconds
            while True:
                peak = max(peak, status(watch.pid)["VmRSS"])
                left = end - time.monotonic()
                if left <= 0:
                    break
                stop.wait(min(1.0, left))  # sampling cadence; the measured process is another one
            end_cpu, finish = cpu_seconds(watch.pid), time.monotonic()
            last = status(watch.pid)
            uploads = sum(emulator.uploads().values()) - uploads_before
            window = finish - begin
            return Figures(
                cpu_percent=100 * (end_cpu - begin_cpu) / window,
                cpu_seconds=end_cpu - begin_cpu,
                window=window,
                rss_end_mb=last["VmRSS"] / 1024,
                rss_peak_mb=max(peak, last["VmRSS"]) / 1024,
                hwm_mb=last["VmHWM"] / 1024,
                threads=last["Threads"],
                folders=folders,
                events=len(watch.since(mark)),
                uploads=uploads,
                initial_s=initial,
                load=f"{load_before} -> {load()}",
            )
        finally:
            code = watch.stop() if watch is not None else 130
            emulator.stop()
            if code != 130:
                print(f"warning: fgsync watch exited {code} after SIGINT (expected 130)", file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each idle window (default 60)")
    parser.add_argument(
        "--layouts", default="10x1000,1x10000", help="FxN: F functions of N files, comma-separated"
    )
    parser.add_argument("--modes", default="native,poll", help="native and/or poll, comma-separated")
    args = parser.parse_args(argv)
    if not os.path.exists("/proc/self/stat"):
        print("bench_idle reads /proc: Linux only", file=sys.stderr)
        return 1
    layouts = [Layout.parse(text) for text in args.layouts.split(",")]
    modes = args.modes.split(",")
    print(f"fgsync watch, idle for {args.seconds:g} s after the initial sync; cpus: {os.cpu_count()}; "
          f"python {sys.version.split()[0]}")
    header = (f"{'functions x files':>17} {'mode':>6} {'folders':>7} | {'CPU % of 1 core':>15} "
              f"{'RSS end':>8} {'RSS max':>8} {'VmHWM':>8} {'threads':>7} | {'events':>6} {'uploads':>7} "
              f"{'initial sync':>12}")
    print(header)
    failed = False
    results = []
    for layout in layouts:
        for mode in modes:
            fig = measure(layout, mode == "poll", args.seconds)
            results.append((layout, mode, fig))
            print(f"{layout!s:>17} {mode:>6} {fig.folders:>7} | {fig.cpu_percent:>13.2f} % "
                  f"{fig.rss_end_mb:>6.1f}MB {fig.rss_peak_mb:>6.1f}MB {fig.hwm_mb:>6.1f}MB {fig.threads:>7} | "
                  f"{fig.events:>6} {fig.uploads:>7} {fig.initial_s:>10.1f} s", flush=True)
            failed |= fig.events > 0 or fig.uploads > 0
    print()
    for layout, mode, fig in results:
        verdict = "meets" if fig.cpu_percent < CPU_GOAL and fig.rss_peak_mb < RSS_GOAL_MB else "misses"
        goal = f"{verdict} the goal (< {CPU_GOAL:g} % CPU, < {RSS_GOAL_MB:g} MB RSS)" if mode == "native" else (
            "(polling: no goal, shown for comparison)")
        print(f"{layout!s} {mode}: {fig.cpu_seconds:.2f} s of CPU in {fig.window:.1f} s; {goal}; {fig.load}")
    if failed:
        print("FAILED: the idle window saw events or uploads, but nothing was written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
