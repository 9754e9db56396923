"""The chaos soak: a real `fgsync watch` over three functions while a random developer works the trees and the
emulator misbehaves, for a few minutes. At the end, with the faults gone, every function's remote code must be
a cold package of its tree on disk: nothing lost, nothing stale, nothing doubled.

`FGSYNC_CHAOS_SECONDS` sets how long the chaos lasts (default 120), `FGSYNC_CHAOS_SEED` the random seed; the
figures (operations, faults, uploads) are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import HELLO_PY, make_tree, write_config
from test_watch_e2e import Proc, _children_in

from fgsync.config import load_config
from fgsync.sync import package_function

NAMES = ("alpha", "beta", "gamma")
FOLDERS = ("", "lib", "lib/deep", "static")


# Read at import: the tests' hygiene fixture drops every FGSYNC_* variable before a test runs.
CHAOS_SECONDS = float(os.environ.get("FGSYNC_CHAOS_SECONDS", "120"))
CHAOS_SEED = os.environ.get("FGSYNC_CHAOS_SEED")


class Developer:
    """Random everyday operations on the three source trees."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.done: Counter[str] = Counter()

    def source(self) -> Path:
        return self.root / "functions" / self.rng.choice(NAMES)

    def files(self, src: Path) -> list[Path]:
        return [p for p in src.rglob("*") if p.is_file() and p.name != "index.py"]

    def text(self) -> str:
        return f"VALUE = {self.rng.random()!r}\n" * self.rng.randint(1, 40)

    def step(self) -> None:
        operations: list[tuple[int, Callable[[Path], None]]] = [
            (30, self.edit),
            (15, self.create),
            (10, self.delete),
            (10, self.rename),
            (10, self.copy_keeping_times),
            (8, self.burst),
            (5, self.edit_handler),
            (4, self.rebuild_folder),
        ]
        weights, actions = zip(*operations)
        action = self.rng.choices(actions, weights=weights)[0]
        src = self.source()
        if src.is_dir():
            action(src)
            self.done[action.__name__] += 1

    def edit(self, src: Path) -> None:
        files = self.files(src)
        if files:
            self.rng.choice(files).write_text(self.text())
        else:
            self.create(src)

    def edit_handler(self, src: Path) -> None:
        (src / "index.py").write_text(HELLO_PY.replace("hello", f"hello {self.rng.randrange(10**6)}"))

    def create(self, src: Path) -> None:
        folder = src / self.rng.choice(FOLDERS)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{self.rng.randrange(10**6)}.py").write_text(self.text())

    def delete(self, src: Path) -> None:
        files = self.files(src)
        if files:
            self.rng.choice(files).unlink()

    def rename(self, src: Path) -> None:
        files = self.files(src)
        if files:
            old = self.rng.choice(files)
            old.rename(old.with_name(f"r{self.rng.randrange(10**6)}.py"))

    def copy_keeping_times(self, src: Path) -> None:
        """`cp -p` over a file: same inode, same size, the old mtime back."""
        files = self.files(src)
        if not files:
            return
        target = self.rng.choice(files)
        before = target.stat()
        content = target.read_bytes()
        scrambled = bytes(self.rng.randrange(48, 58) if c in b"0123456789" else c for c in content)
        with open(target, "r+b") as handle:
            handle.write(scrambled)
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

    def burst(self, src: Path) -> None:
        for _ in range(self.rng.randint(5, 30)):
            self.create(src)

    def rebuild_folder(self, src: Path) -> None:
        """`rm -rf` of the whole source folder, then back with new files (sometimes after a while)."""
        keep = (src / "index.py").read_text()
        shutil.rmtree(src)
        if self.rng.random() < 0.3:
            time.sleep(self.rng.uniform(0.2, 1.5))
        make_tree(src, {"index.py": keep, f"lib/b{self.rng.randrange(10**6)}.py": self.text()})


class Saboteur:
    """Random faults in the emulator: errors, throttling with Retry-After, delays, drops before and after."""

    def __init__(self, emulator: Any, rng: random.Random) -> None:
        self.emu = emulator
        self.rng = rng
        self.done: Counter[str] = Counter()

    def step(self) -> None:
        route = self.rng.choice(["update_code", "update_code", "show_code"])
        kind = self.rng.choice(["503", "429", "delay", "drop", "drop_after"])
        # Up to 6 in a row: more than the client's own retries, so the daemon's backoff is exercised too.
        times = self.rng.randint(1, 6)
        if kind == "503":
            self.emu.inject(route, status=503, times=times)
        elif kind == "429":
            self.emu.inject(route, status=429, code="FSS.0429", retry_after=1, times=times)
        elif kind == "delay":
            self.emu.inject(route, delay=self.rng.uniform(0.3, 2.0), times=times)
        elif kind == "drop":
            self.emu.inject(route, drop=True, times=times)
        elif route == "update_code":
            self.emu.inject(route, drop_after=True, times=times)
        else:
            return
        self.done[f"{route} {kind}"] += times


def cold(project: Path, name: str) -> str:
    fn = next(f for f in load_config(project / "fgsync.toml").functions if f.name == name)
    return package_function(fn).sha512


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_chaos_soak(tmp_path: Path, emulator: Any) -> None:
    seed = int(CHAOS_SEED) if CHAOS_SEED else random.randrange(10**9)
    rng = random.Random(seed)
    emu = emulator.emulator
    for name in NAMES:
        make_tree(tmp_path / "functions" / name, {"index.py": HELLO_PY, "lib/util.py": "X = 1\n"})
        emu.create_function(name)
    write_config(tmp_path, endpoint=emulator.url, functions=[{"name": n, "source": f"functions/{n}"} for n in NAMES])
    developer = Developer(tmp_path, rng)
    saboteur = Saboteur(emu, rng)
    with Proc(tmp_path, "--json", "--debounce-ms", "150", "--max-wait-ms", "1500") as watch:
        end = time.monotonic() + CHAOS_SECONDS
        next_fault = time.monotonic()
        while time.monotonic() < end:
            assert watch.proc.poll() is None, watch.lines[-20:]
            developer.step()
            if time.monotonic() >= next_fault:
                saboteur.step()
                next_fault = time.monotonic() + rng.uniform(0.5, 3.0)
            time.sleep(rng.uniform(0.02, 0.6))
        emu.clear_faults()
        # Quiet now: every function must settle on its tree (a backoff in progress may take up to its cap).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(emu.function(n).digest == cold(tmp_path, n) for n in NAMES):
                break
            time.sleep(0.5)
        time.sleep(2.0)  # and stay settled: nothing more should come
        remote = {n: emu.function(n).digest for n in NAMES}
        watch.proc.send_signal(signal.SIGTERM)
        code, err = watch.finish(timeout=60)
    events = [json.loads(line) for line in watch.lines]  # NDJSON clean: every stdout line is one JSON object
    pushed = [e for e in events if e["event"] == "pushed"]
    uploads = {n: emu.uploads(n) for n in NAMES}
    errors = Counter(e.get("code") for e in events if e["event"] == "error")
    print(
        f"\nchaos soak, seed {seed}, {CHAOS_SECONDS:.0f} s: {sum(developer.done.values())} operations "
        f"{dict(developer.done)}; {sum(saboteur.done.values())} faults {dict(saboteur.done)}; "
        f"{len(pushed)} pushed events, uploads {uploads}; errors {dict(errors)}"
    )
    assert code == 0, err
    assert "Traceback" not in err, err
    assert events[-1]["event"] == "stopped" and events[-1]["pending"] == []
    assert [e for e in events if e["event"] == "drift"] == []  # fgsync never mistook its own upload
    for name in NAMES:
        assert remote[name] == cold(tmp_path, name), f"{name}: remote is not the tree on disk (seed {seed})"
        digests = [e["digest"] for e in pushed if e["function"] == name]
        doubled = [a for a, b in zip(digests, digests[1:]) if a == b]
        assert not doubled, f"{name}: the same code pushed twice in a row (seed {seed})"
    assert not _children_in(tmp_path)
