"""Save -> `pushed` latency of the watch loop, against a real emulator on loopback.

Run: ``python benchmarks/bench_latency.py [--sizes 1,40] [--runs N] [--debounce-ms 300] [--poll]``.

For each size, a function of about that many megabytes (a small handler plus incompressible data, so the zip
is as big as the figure says) is watched by the real daemon with the real sync step, packaging incrementally
as `fgsync watch` does (token auth, the emulator served on 127.0.0.1 by its threaded server). Each run rewrites
``index.py`` and times until the daemon emits ``pushed`` for it; the next run starts once the loop is idle.
Printed: median and p90 in milliseconds, and how the median splits into the debounce, packaging
(``packaged.ms``) and the upload (``pushed.ms``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fgsync.auth.credentials import resolve_credentials
from fgsync.cli.watch_cmd import IncrementalPackager
from fgsync.config import FunctionConfig, load_config
from fgsync.emulator import Emulator, serve
from fgsync.events import Emit, Event
from fgsync.remote import FunctionGraphClient
from fgsync.state import StateStore
from fgsync.sync import sync_function
from fgsync.watch import Daemon

PROJECT_ID = "0123456789abcdef0123456789abcdef"
TOKEN = "MIIbench-" + "t" * 64
HANDLER = 'def handler(event, context):\n    return {"statusCode": 200, "body": "v%d"}\n'


class Timeline:
    """Collects events with the monotonic time they were emitted."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[tuple[float, Event]] = []

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.items.append((time.monotonic(), event))
            self.cond.notify_all()

    def wait_for(self, name: str, after: int, timeout: float = 120.0) -> tuple[float, Event]:
        """The first `name` event at index >= after."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, event in self.items[after:]:
                    if event.event == name:
                        return at, event
                    if event.event == "error":
                        raise RuntimeError(f"the daemon reported an error: {event.fields}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {name} event within {timeout} s")
                self.cond.wait(left)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def make_project(root: Path, endpoint: str, megabytes: float) -> FunctionConfig:
    source = root / "functions" / "big"
    source.mkdir(parents=True)
    (source / "index.py").write_text(HANDLER % 0)
    # os.urandom does not compress: the zip is as large as the data.
    (source / "blob.bin").write_bytes(os.urandom(int(megabytes * 1024 * 1024)))
    (root / "fgsync.toml").write_text(
        f'region = "cn-north-4"\nproject_id = "{PROJECT_ID}"\nendpoint = "{endpoint}"\n'
        f'iam_endpoint = "{endpoint}"\n[[function]]\nname = "big"\nsource = "functions/big"\n'
    )
    return load_config(root / "fgsync.toml").functions[0]


def measure(megabytes: float, runs: int, debounce_ms: int, poll: bool) -> dict[str, list[float]]:
    """Latencies (ms) of `runs` saves for one function size."""
    emulator = Emulator(project_id=PROJECT_ID, region="cn-north-4", token=TOKEN)
    emulator.create_function("big")
    with tempfile.TemporaryDirectory() as tmp, serve(emulator, host="127.0.0.1", port=0) as server:
        os.environ["FGSYNC_CACHE_DIR"] = str(Path(tmp) / "cache")
        fn = make_project(Path(tmp), server.url, megabytes)
        credentials = resolve_credentials(iam_endpoint=server.url, project_id=PROJECT_ID, env={"FGSYNC_TOKEN": TOKEN})
        client = FunctionGraphClient(server.url, PROJECT_ID, auth=credentials.auth())
        store = StateStore()

        packager = IncrementalPackager()  # what `fgsync watch` packages with

        def step(f: FunctionConfig, emit: Emit) -> object:
            return sync_function(f, client=client, store=store, endpoint=server.url, emit=emit, package_fn=packager)

        timeline = Timeline()
        stop = threading.Event()
        daemon = Daemon([fn], sync=step, emit=timeline, stop_event=stop, debounce_ms=debounce_ms, poll=poll)
        thread = threading.Thread(target=daemon.run, name="bench-daemon")
        thread.start()
        figures: dict[str, list[float]] = {"total": [], "packaged": [], "pushed": []}
        try:
            timeline.wait_for("pushed", 0)  # the initial sync
            for run in range(1, runs + 1):
                time.sleep(0.2)  # let the loop go idle: no leftover burst in this measurement
                mark = len(timeline.items)
                saved = time.monotonic()
                (fn.source / "index.py").write_text(HANDLER % run)
                at, pushed = timeline.wait_for("pushed", mark)
                _, packaged = timeline.wait_for("packaged", mark)
                figures["total"].append((at - saved) * 1000)
                figures["packaged"].append(float(packaged.fields["ms"]))
                figures["pushed"].append(float(pushed.fields["ms"]))
            assert emulator.uploads("big") == runs + 1, "every save must be exactly one upload"
        finally:
            stop.set()
            thread.join()
            client.close()
            emulator.close()
    return figures


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,40", help="function sizes in MB, comma-separated (default 1,40)")
    parser.add_argument("--runs", type=int, default=0, help="saves per size (default: 15 for <= 5 MB, else 5)")
    parser.add_argument("--debounce-ms", type=int, default=300)
    parser.add_argument("--poll", action="store_true", help="poll the file system instead of native events")
    args = parser.parse_args(argv)
    print(f"fgsync watch: save -> pushed, debounce {args.debounce_ms} ms, {'polling' if args.poll else 'native'}")
    print(f"{'size':>7} {'runs':>5} {'median':>9} {'p90':>9} {'min':>9} | median split: debounce, package, upload")
    for text in args.sizes.split(","):
        megabytes = float(text)
        runs = args.runs or (15 if megabytes <= 5 else 5)
        figures = measure(megabytes, runs, args.debounce_ms, args.poll)
        total = figures["total"]
        print(
            f"{megabytes:>5g}MB {runs:>5} {statistics.median(total):>7.0f}ms {percentile(total, 90):>7.0f}ms "
            f"{min(total):>7.0f}ms | {args.debounce_ms} ms, {statistics.median(figures['packaged']):.0f} ms, "
            f"{statistics.median(figures['pushed']):.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
