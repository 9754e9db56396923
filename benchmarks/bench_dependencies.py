"""Save -> `pushed` for a function with ~1 MB of code and ~40 MB of dependencies (a generated node_modules-shaped
tree: thousands of small files), with `dependencies = "off"` and `"auto"`, through an emulator that behaves like a
20 Mbit/s link with 15 ms each way (`--bandwidth 20000 --latency 15`), in the same run.

The floor a save cannot beat with `auto`: the debounce, the code upload's body at the link rate (base64 in JSON:
4/3 of the zip), and one round trip per request (ShowFunctionCode, UpdateFunctionCode). Goals (issue 10): auto
<= 1.2 x that floor, and >= 8 x faster than off.

    python benchmarks/bench_dependencies.py [--runs 3] [--code-mb 1] [--deps-mb 40] [--bandwidth 20000] [--latency 15]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import EmulatorProcess, WatchProcess, load, write_project

WORDS = ("const", "function", "return", "module", "exports", "require", "async", "await", "value", "index", "map")


def js_text(rng: random.Random, size: int) -> str:
    """JavaScript-looking text that deflates about as well as real node_modules (roughly 3:1)."""
    out: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(WORDS) + str(rng.randrange(10 ** rng.randrange(1, 6))) for _ in range(8)) + ";\n"
        out.append(line)
        total += len(line)
    return "".join(out)[:size]


def make_tree(root: Path, code_mb: float, deps_mb: float, seed: int = 7) -> None:
    rng = random.Random(seed)
    src = root / "functions" / "api"
    (src / "src").mkdir(parents=True)
    (src / "index.js").write_text("exports.handler = async (event) => require('./src/app').run(event);\n")
    written = 0
    n = 0
    while written < code_mb * 1024 * 1024:
        size = rng.randint(20_000, 120_000)
        (src / "src" / f"mod{n}.js").write_text(js_text(rng, size))
        written += size
        n += 1
    (src / "src" / "app.js").write_text("exports.run = async (e) => ({ ok: true, v: 0 });\n")
    written = 0
    n = 0
    # As a real node_modules: a few hundred packages, each a handful of folders (lib/, dist/esm/ ...) 3-5 deep.
    layouts = [("lib",), ("lib", "util"), ("dist", "esm"), ("dist", "cjs", "internal"), ("src", "core", "impl")]
    while written < deps_mb * 1024 * 1024:
        folder = src / "node_modules" / f"pkg{n % 400}" / "/".join(rng.choice(layouts))
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1_000, 10_000)
        name = f"f{n}.json" if n % 5 == 0 else f"f{n}.js"
        (folder / name).write_text(js_text(rng, size))
        written += size
        n += 1


def measure(
    mode: str, root: Path, runs: int, debounce_ms: int, emulator: EmulatorProcess
) -> list[tuple[float, int, int]]:
    """(seconds from the save of src/app.js to `pushed`, `packaged.ms`, `pushed.ms`), `runs` times, after the
    initial sync."""
    config = write_project(root, emulator.url, {"api": "functions/api"})
    config.write_text(config.read_text() + f'dependencies = "{mode}"\n')
    watch = WatchProcess(config, options=["--debounce-ms", str(debounce_ms)])
    try:
        watch.wait(lambda: bool(watch.since(0, "pushed") or watch.since(0, "skipped")), 600, "initial sync")
        app = root / "functions" / "api" / "src" / "app.js"
        times = []
        for run in range(runs):
            time.sleep(0.5)
            mark = watch.mark()
            started = time.monotonic()
            app.write_text(f"exports.run = async (e) => ({{ ok: true, v: {mode!r}, run: {run} }});\n")
            watch.wait(lambda m=mark: bool(watch.since(m, "pushed")), 600, f"push {run} ({mode})")  # type: ignore[misc]
            at, pushed = watch.since(mark, "pushed")[0]
            packaged = watch.since(mark, "packaged")[0][1]
            times.append((at - started, int(packaged["ms"]), int(pushed["ms"])))
        errors = watch.errors()
        if errors:
            raise RuntimeError(f"{mode}: {errors}")
        return times
    finally:
        watch.stop()


def code_zip_bytes(root: Path) -> int:
    """What the code zip weighs with `auto` (src/ and index.js), as fgsync builds it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from fgsync.config import load_config
    from fgsync.sync import package_split

    fn = load_config(root / "fgsync.toml").functions[0]
    split = package_split(fn)
    assert split.dependency is not None
    with zipfile.ZipFile(io.BytesIO(split.dependency.data)) as archive:
        files = len(archive.namelist())
    print(
        f"  code zip {split.code.size / 1e6:.2f} MB; dependency zip {split.dependency.size / 1e6:.1f} MB, {files} files"
    )
    return split.code.size


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--code-mb", type=float, default=1.0)
    parser.add_argument("--deps-mb", type=float, default=40.0)
    parser.add_argument("--bandwidth", type=int, default=20000, help="kilobits per second (emulator --bandwidth)")
    parser.add_argument("--latency", type=int, default=15, help="ms each way (emulator --latency)")
    parser.add_argument("--debounce-ms", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-deps-") as tmp:
        root = Path(tmp)
        print(f"making a tree: {args.code_mb:g} MB of code, {args.deps_mb:g} MB of node_modules …")
        make_tree(root, args.code_mb, args.deps_mb)
        link = ["--latency", str(args.latency), "--bandwidth", str(args.bandwidth)]
        emulator = EmulatorProcess(["api:Node.js18.15"], cwd=root, options=link)
        try:
            write_project(root, emulator.url, {"api": "functions/api"}).write_text(
                (root / "fgsync.toml").read_text() + 'dependencies = "auto"\n'
            )
            code_bytes = code_zip_bytes(root)
            results = {mode: measure(mode, root, args.runs, args.debounce_ms, emulator) for mode in ("auto", "off")}
        finally:
            emulator.stop()
    rate = args.bandwidth * 1000 / 8  # bytes per second
    rtt = 2 * args.latency / 1000
    body = code_bytes * 4 / 3 + 200
    floor = args.debounce_ms / 1000 + body / rate + 2 * rtt
    auto = statistics.median(r[0] for r in results["auto"])
    off = statistics.median(r[0] for r in results["off"])
    print(f"link: {args.bandwidth} kbit/s, {args.latency} ms each way; debounce {args.debounce_ms} ms; load {load()}")
    for mode in ("auto", "off"):
        rows = results[mode]
        shown = ", ".join(f"{r[0]:.2f}" for r in rows)
        median = statistics.median(r[0] for r in rows)
        packaged = statistics.median(r[1] for r in rows)
        pushed = statistics.median(r[2] for r in rows)
        split = f"packaged {packaged:.0f} ms, pushed {pushed:.0f} ms"
        print(f"  {mode:4}  save -> pushed: median {median:.2f} s  ({shown});  {split}")
    print(f"  floor with auto: {floor:.2f} s (debounce + {body / 1e6:.2f} MB at the link rate + 2 round trips)")
    print(f"  auto / floor = {auto / floor:.2f} (goal <= 1.2);  off / auto = {off / auto:.1f} (goal >= 8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
