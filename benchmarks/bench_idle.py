"""Idle cost of `fgsync watch` over 10,000 files: CPU (% of one core) and memory (RSS), native events and --poll.

Run: ``python benchmarks/bench_idle.py [--seconds 60] [--layouts 10x1000,1x10000] [--modes native,poll]``,
or ``python benchmarks/bench_idle.py --reads [--repeat 5] [--saves 3] [--rows native:off,native:auto,poll:off]``.
Linux only (it reads /proc).

For each layout (``FxN``: F functions of N files each; 20 files per folder) and mode, it generates the tree,
starts a real ``fgsync emulator`` and a real ``fgsync watch --json`` (token auth) as subprocesses on loopback,
waits for the initial sync of every function plus 2 s, then measures the watch process itself for
``--seconds``: CPU from /proc/PID/stat (utime + stime) over the window, RSS from /proc/PID/status sampled every
second (VmRSS at the end, the highest sample in the window) and VmHWM (the process's lifetime peak, so it
includes the initial packaging). Nothing is written to the tree during the window: any event or upload in it
is reported as a failure. Goals: < 1 % of one core and < 100 MB RSS with native events.

With ``--reads`` (issue 12: "idle daemon CPU during a `grep -r` over the node tree <= 50 ms"), it measures what
reading a watched tree costs the daemon instead: the node_modules-shaped tree of ``_trees.py`` (7,500 files) is
one function's source, watched by a real ``fgsync watch --json`` against a real ``fgsync emulator``, once per row
(``--rows``: native events or ``--poll``, with ``dependencies = "off"`` or ``"auto"``). After the initial sync
and the daemon's idle rate (``--idle-seconds``, taken again after the reads), each read is run ``--repeat``
times, in interleaved rounds, as a process of its own: ``grep -r`` for a string that is in no file, ``cat`` of
every file (``find -exec cat {} +``) and a ``git status``-style walk (``os.walk`` + ``lstat`` of every file, in
``python -S``); then ``--saves`` real saves (new content in ``index.js``, until ``pushed``). Each one is timed
from its start until the daemon has been idle again for ``--quiet-seconds`` (2 s at least after a save, whose
verifying walk comes 1 s after its sync; its CPU over that window no more than its idle rate plus a quarter,
plus 3 ms): the daemon's CPU in that span is the *raw* figure, and *net* is
raw minus the idle rate over the span. CPU is the watch process's own (children excluded): the sum of its
threads' ``/proc/PID/task/TID/schedstat`` run time (nanoseconds) when its threads were the same at both ends,
else utime + stime of ``/proc/PID/stat`` (10 ms ticks). Any watch event during the reads fails the run.
Goal, native events: <= 50 ms of raw daemon CPU per ``grep -r`` (median); ``--poll`` rescans the tree on a
timer by design and is shown for comparison.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _trees as trees
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


# --reads: what reading the watched node tree costs the daemon (issue 12) ------------------------------------------

READ_GOAL_MS = 50.0
NODE_RUNTIME = "Node.js18.15"  # the emulator's runtime for the function: a dependency version needs one
#: A string in no generated file, so `grep -r` reads every byte of the tree.
NEEDLE = "somethingnotthere"
#: `git status`'s reading of a work tree, without git: every folder listed, every file lstat'ed.
WALK = "import os, sys\nfor d, _, fs in os.walk(sys.argv[1]):\n    for f in fs:\n        os.lstat(os.path.join(d, f))\n"
#: A quiet window may hold the idle rate's CPU plus this share of it (polling's scans come in lumps) plus this.
QUIET_SHARE = 0.25
QUIET_MARGIN_MS = 3.0
SAMPLE_SECONDS = 0.05
SETTLE_TIMEOUT = 30.0
#: A sync is followed 1 s later by the daemon's verifying walk of the whole tree (fgsync/watch/verify.py): the
#: wait after the initial sync, and the quiet window that ends a save, are longer than that, so the walk is
#: counted with its save and never lands in a read's figure.
INITIAL_SETTLE_SECONDS = 2.5
SAVE_QUIET_SECONDS = 2.0


@dataclass(frozen=True)
class Row:
    poll: bool
    dependencies: str

    @classmethod
    def parse(cls, text: str) -> Row:
        mode, _, dependencies = text.partition(":")
        if mode not in ("native", "poll") or dependencies not in ("off", "auto"):
            raise argparse.ArgumentTypeError(f"{text!r}: a row is native|poll:off|auto")
        return cls(mode == "poll", dependencies)

    def __str__(self) -> str:
        return f"{'poll' if self.poll else 'native'}, dependencies {self.dependencies}"


class Reading(NamedTuple):
    at: float  # monotonic seconds
    ns: int  # the sum of the live threads' run time (schedstat)
    tids: frozenset[int]
    stat_s: float  # utime + stime of the whole process (10 ms ticks, ended threads included)


class CpuMeter:
    """The CPU time of one process between two readings, children excluded: nanosecond-exact from its threads'
    ``/proc/PID/task/TID/schedstat`` when the same threads lived at both readings (a thread that ended takes
    its time with it), else from ``/proc/PID/stat`` (utime + stime, in clock ticks)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def read(self) -> Reading:
        total, tids = 0, []
        for name in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{name}/schedstat") as handle:
                    total += int(handle.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
                continue
            tids.append(int(name))
        return Reading(time.monotonic(), total, frozenset(tids), cpu_seconds(self.pid))

    @staticmethod
    def ms(a: Reading, b: Reading) -> float:
        if a.tids == b.tids:
            return (b.ns - a.ns) / 1e6
        return (b.stat_s - a.stat_s) * 1000


def settle(meter: CpuMeter, idle_rate: float, quiet: float) -> tuple[Reading, bool]:
    """Wait until the process's CPU over the last ``quiet`` seconds is no more than its idle rate (ms per s)
    allows; returns the reading that ends that window, and False if it never came within SETTLE_TIMEOUT."""
    allowed = idle_rate * quiet * (1 + QUIET_SHARE) + QUIET_MARGIN_MS
    samples = [meter.read()]
    deadline = samples[0].at + SETTLE_TIMEOUT
    while True:
        time.sleep(SAMPLE_SECONDS)
        now = meter.read()
        samples.append(now)
        while len(samples) > 2 and samples[1].at <= now.at - quiet:
            samples.pop(0)
        if now.at - samples[0].at >= quiet and meter.ms(samples[0], now) <= allowed:
            return now, True
        if now.at > deadline:
            return now, False


@dataclass(frozen=True)
class Sample:
    raw_ms: float  # the daemon's CPU from the start until it was quiet again
    span_s: float  # from the start until the end of the quiet window
    settled: bool
    exact: bool  # read from schedstat (the same threads at both ends), not in 10 ms ticks
    own_ms: float = 0.0  # the command's own CPU (its rusage, children included)
    wall_ms: float = 0.0  # the command's run time
    packaged_ms: float = 0.0  # a save's `packaged.ms`
    pushed_ms: float = 0.0  # a save's `pushed.ms`
    after_ms: float = 0.0  # a save's daemon CPU after `pushed` (the verifying walk)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_read(command: list[str], meter: CpuMeter, idle_rate: float, quiet: float) -> Sample:
    """Run ``command`` as a process of its own, then wait for the daemon to be quiet again."""
    own = _children_cpu()  # only this command is reaped meanwhile: the emulator and the watch live on
    start = meter.read()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.monotonic() - start.at
    own = _children_cpu() - own
    if done.returncode not in (0, 1):  # grep: 1 is "not found"
        raise RuntimeError(f"{command[0]} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    end, settled = settle(meter, idle_rate, quiet)
    raw = meter.ms(start, end)
    return Sample(raw, end.at - start.at, settled, start.tids == end.tids, own * 1000, wall * 1000)


def run_save(index: Path, text: str, watch: WatchProcess, meter: CpuMeter, idle_rate: float, quiet: float) -> Sample:
    """One real save of ``index`` (new content, written in place), until `pushed` and the daemon is quiet."""
    mark = watch.mark()
    start = meter.read()
    with open(index, "w") as handle:
        handle.write(text)

    def ended() -> bool:
        return bool(watch.since(mark, "pushed") or watch.since(mark, "skipped") or watch.errors(mark))

    watch.wait(ended, 60, "pushed after a save")
    pushed = meter.read()
    if not watch.since(mark, "pushed"):
        raise RuntimeError(f"a save did not end in `pushed`: {[e for _, e in watch.since(mark)]}")
    end, settled = settle(meter, idle_rate, max(quiet, SAVE_QUIET_SECONDS))
    raw = meter.ms(start, end)
    packaged = watch.since(mark, "packaged")
    return Sample(
        raw,
        end.at - start.at,
        settled,
        start.tids == end.tids,
        packaged_ms=float(packaged[-1][1].get("ms", 0)) if packaged else 0.0,
        pushed_ms=float(watch.since(mark, "pushed")[-1][1].get("ms", 0)),
        after_ms=meter.ms(pushed, end),
    )


@dataclass(frozen=True)
class RowFigures:
    row: Row
    initial_s: float
    idle_before: float  # ms of CPU per second, before the reads
    idle_after: float  # the same, after them
    threads: int
    reads: dict[str, list[Sample]]
    saves: list[Sample]
    read_events: list[str]  # the watch events that came during the reads (there should be none)
    errors: list[dict[str, Any]]

    @property
    def idle_rate(self) -> float:
        return (self.idle_before + self.idle_after) / 2

    def net(self, sample: Sample) -> float:
        """The sample's CPU above the daemon's idle rate over the same span."""
        return sample.raw_ms - self.idle_rate * sample.span_s


def read_commands(source: Path) -> dict[str, list[str]]:
    return {
        f"grep -r {NEEDLE}": ["grep", "-r", NEEDLE, str(source)],
        "cat of every file": ["find", str(source), "-type", "f", "-exec", "cat", "{}", "+"],
        "os.walk + lstat (git status)": [sys.executable, "-S", "-c", WALK, str(source)],
    }


def measure_reads(root: Path, source: Path, row: Row, args: argparse.Namespace) -> RowFigures:
    """One row: a fresh emulator and `fgsync watch` over ``source``; the reads, then the saves."""
    emulator = EmulatorProcess([f"node:{NODE_RUNTIME}"], cwd=root)
    watch: Optional[WatchProcess] = None
    try:
        config = write_project(root, emulator.url, {"node": source.relative_to(root).as_posix()})
        config.write_text(config.read_text() + f'dependencies = "{row.dependencies}"\n')  # the only function's
        started = time.monotonic()
        watch = WatchProcess(config, poll=row.poll)
        w = watch
        w.wait(lambda: bool(w.since(0, "pushed") or w.since(0, "skipped")), 300, "initial sync")
        initial = time.monotonic() - started
        if watch.errors():
            raise RuntimeError(f"errors during the initial sync: {watch.errors()}")
        time.sleep(INITIAL_SETTLE_SECONDS)  # the initial sync's threads, garbage and verifying walk go first
        meter = CpuMeter(watch.pid)

        def idle() -> float:
            first = meter.read()
            time.sleep(args.idle_seconds)
            last = meter.read()
            return meter.ms(first, last) / (last.at - first.at)

        idle_rate = idle()
        mark = watch.mark()
        commands = read_commands(source)
        reads: dict[str, list[Sample]] = {label: [] for label in commands}
        for _ in range(args.repeat):  # interleaved rounds: the machine's moods fall on every kind alike
            for label, command in commands.items():
                reads[label].append(run_read(command, meter, idle_rate, args.quiet_seconds))
        idle_after = idle()
        read_events = [str(e.get("event")) for _, e in watch.since(mark)]
        threads = status(watch.pid)["Threads"]
        index = source / "index.js"
        base = index.read_text()
        saves = [
            run_save(index, f"{base}// save {n} of {row}\n", watch, meter, idle_rate, args.quiet_seconds)
            for n in range(args.saves)
        ]
        return RowFigures(
            row,
            initial,
            idle_rate,
            idle_after,
            threads,
            reads,
            saves,
            read_events,
            watch.errors(mark),
        )
    finally:
        code = watch.stop() if watch is not None else 130
        emulator.stop()
        if code != 130:
            print(f"warning: fgsync watch exited {code} after SIGINT (expected 130)", file=sys.stderr)


def _fs_of(path: Path) -> str:
    """The type of the file system that holds ``path``, and how it updates atimes."""
    best, found = "", "?"
    real = os.path.realpath(path)
    with open("/proc/mounts") as handle:
        for line in handle:
            _, point, kind, options = line.split()[:4]
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                atime = next((o for o in ("noatime", "relatime") if o in options.split(",")), "atime")
                best, found = point, f"{kind}, {atime}"
    return found


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):>7.1f} ms  (min {min(values):>7.1f}, max {max(values):>7.1f})"


def main_reads(args: argparse.Namespace) -> int:
    rows: list[Row] = args.rows
    failed = False
    with tempfile.TemporaryDirectory(prefix="fgsync-reads-", dir=args.dir) as tmp:
        root = Path(tmp)
        source = root / "functions" / "node"
        files, size = trees.generate("node", source)
        folders = sum(1 for _ in os.walk(source))
        print(
            f"fgsync watch over the node tree: {files:,} files, {size / 1e6:.1f} MB, {folders:,} folders, "
            f"{_fs_of(root)}; cpus: {os.cpu_count()}; python {sys.version.split()[0]}; {load()}"
        )
        print(
            f"each read {args.repeat}x as a process of its own, then {args.saves} save(s); daemon CPU from the start "
            f"until {args.quiet_seconds:g} s at its idle rate (raw), and minus that rate over the span (net)",
            flush=True,
        )
        results = []
        for row in rows:
            fig = measure_reads(root, source, row, args)
            results.append(fig)
            print(
                f"== {row}: initial sync {fig.initial_s:.1f} s; idle {fig.idle_before:.1f} ms of CPU per s before "
                f"the reads, {fig.idle_after:.1f} after; {fig.threads} threads"
            )
            for label, samples in fig.reads.items():
                raw = [s.raw_ms for s in samples]
                net = statistics.median(fig.net(s) for s in samples)
                own = statistics.median(s.own_ms for s in samples)
                wall = statistics.median(s.wall_ms for s in samples)
                span = statistics.median(s.span_s for s in samples)
                print(
                    f"  {label:<30} daemon CPU {_spread(raw)}  net {net:>+6.1f} ms over {span:.1f} s"
                    f"  | itself {own:>5.0f} ms CPU, {wall:>5.0f} ms wall"
                )
            raw = [s.raw_ms for s in fig.saves]
            net = statistics.median(fig.net(s) for s in fig.saves)
            span = statistics.median(s.span_s for s in fig.saves)
            packaged = statistics.median(s.packaged_ms for s in fig.saves)
            pushed = statistics.median(s.pushed_ms for s in fig.saves)
            after = statistics.median(s.after_ms for s in fig.saves)
            print(
                f"  {'one save -> pushed':<30} daemon CPU {_spread(raw)}  net {net:>+6.1f} ms over {span:.1f} s"
                f"  | packaged {packaged:.0f} ms, pushed {pushed:.0f} ms; CPU after pushed {after:.0f} ms"
            )
            grep = statistics.median(s.raw_ms for s in fig.reads[f"grep -r {NEEDLE}"])
            save = statistics.median(raw)
            every = [s for samples in [*fig.reads.values(), fig.saves] for s in samples]
            unsettled = sum(not s.settled for s in every)
            ticks = sum(not s.exact for s in every)
            print(
                f"  grep -r / save = {100 * grep / save:.1f} %; events during the reads: {len(fig.read_events)}"
                f"{' ' + str(sorted(set(fig.read_events))) if fig.read_events else ''}; not quiet within "
                f"{SETTLE_TIMEOUT:g} s: {unsettled}; spans read in 10 ms ticks (a thread came or went): {ticks}",
                flush=True,
            )
            failed |= bool(fig.read_events) or bool(fig.errors) or unsettled > 0
            if fig.errors:
                print(f"  errors: {fig.errors}", file=sys.stderr)
    print()
    for fig in results:
        samples = fig.reads[f"grep -r {NEEDLE}"]
        median = statistics.median(s.raw_ms for s in samples)
        worst = max(s.raw_ms for s in samples)
        if fig.row.poll:
            goal = "polling rescans on a timer: no goal, shown for comparison"
        else:
            verdict = "met" if median <= READ_GOAL_MS else "MISSED"
            goal = f"goal <= {READ_GOAL_MS:g} ms per grep -r: {verdict}"
        print(f"{fig.row}: the daemon's CPU per grep -r: median {median:.1f} ms, max {worst:.1f} ms; {goal}")
    print(load())
    if failed:
        print("FAILED: events or errors during the reads, or the daemon did not go quiet", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each idle window (default 60)")
    parser.add_argument("--layouts", default="10x1000,1x10000", help="FxN: F functions of N files, comma-separated")
    parser.add_argument("--modes", default="native,poll", help="native and/or poll, comma-separated")
    reads = parser.add_argument_group("--reads: the daemon's CPU while the node tree is read (issue 12)")
    reads.add_argument("--reads", action="store_true", help="measure reads of a watched tree instead")
    reads.add_argument(
        "--rows",
        type=lambda text: [Row.parse(item) for item in text.split(",")],
        default=[Row(False, "off"), Row(False, "auto"), Row(True, "off")],
        help="MODE:DEPENDENCIES, comma-separated (default native:off,native:auto,poll:off)",
    )
    reads.add_argument("--repeat", type=int, default=5, help="runs of each read per row (default 5)")
    reads.add_argument("--saves", type=int, default=3, help="saves per row, for comparison (default 3)")
    reads.add_argument(
        "--idle-seconds", type=float, default=1.5, help="idle-rate window, before and after the reads (default 1.5)"
    )
    reads.add_argument(
        "--quiet-seconds", type=float, default=1.0, help="idle this long means a read is over (default 1)"
    )
    reads.add_argument("--dir", default=None, help="where the temporary tree goes (default: the system's temp)")
    args = parser.parse_args(argv)
    if not os.path.exists("/proc/self/stat"):
        print("bench_idle reads /proc: Linux only", file=sys.stderr)
        return 1
    if args.reads:
        return main_reads(args)
    return main_window(args)


def main_window(args: argparse.Namespace) -> int:
    layouts = [Layout.parse(text) for text in args.layouts.split(",")]
    modes = args.modes.split(",")
    print(
        f"fgsync watch, idle for {args.seconds:g} s after the initial sync; cpus: {os.cpu_count()}; "
        f"python {sys.version.split()[0]}"
    )
    header = (
        f"{'functions x files':>17} {'mode':>6} {'folders':>7} | {'CPU % of 1 core':>15} "
        f"{'RSS end':>8} {'RSS max':>8} {'VmHWM':>8} {'threads':>7} | {'events':>6} {'uploads':>7} "
        f"{'initial sync':>12}"
    )
    print(header)
    failed = False
    results = []
    for layout in layouts:
        for mode in modes:
            fig = measure(layout, mode == "poll", args.seconds)
            results.append((layout, mode, fig))
            print(
                f"{layout!s:>17} {mode:>6} {fig.folders:>7} | {fig.cpu_percent:>13.2f} % "
                f"{fig.rss_end_mb:>6.1f}MB {fig.rss_peak_mb:>6.1f}MB {fig.hwm_mb:>6.1f}MB {fig.threads:>7} | "
                f"{fig.events:>6} {fig.uploads:>7} {fig.initial_s:>10.1f} s",
                flush=True,
            )
            failed |= fig.events > 0 or fig.uploads > 0
    print()
    for layout, mode, fig in results:
        verdict = "meets" if fig.cpu_percent < CPU_GOAL and fig.rss_peak_mb < RSS_GOAL_MB else "misses"
        goal = (
            f"{verdict} the goal (< {CPU_GOAL:g} % CPU, < {RSS_GOAL_MB:g} MB RSS)"
            if mode == "native"
            else ("(polling: no goal, shown for comparison)")
        )
        print(f"{layout!s} {mode}: {fig.cpu_seconds:.2f} s of CPU in {fig.window:.1f} s; {goal}; {fig.load}")
    if failed:
        print("FAILED: the idle window saw events or uploads, but nothing was written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
