"""What bench_idle.py and bench_burst.py share: a real `fgsync emulator` and a real `fgsync watch --json`, each a
subprocess on loopback, and readings of a process from /proc (Linux).

Not a benchmark itself. Everything here measures or drives the real processes a user runs; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Callable, Optional

import httpx

PROJECT_ID = "0123456789abcdef0123456789abcdef"
# A made-up emulator token (the emulator accepts it as `--token`): never a real credential.
TOKEN = "MIIbench-" + "t" * 64
STARTUP_SECONDS = 60.0
ROOT = Path(__file__).resolve().parent.parent
#: The fgsync source tree the children run (and bench_package imports): this checkout, or another one to compare
#: with (``FGSYNC_BENCH_SOURCE=/path/to/other/checkout``; the benchmarks themselves stay these).
SOURCE = Path(os.environ.get("FGSYNC_BENCH_SOURCE") or ROOT).resolve()


def child_env(**extra: str) -> dict[str, str]:
    """The environment for fgsync children: none of the caller's fgsync or cloud credentials, no keyring."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FGSYNC_", "CLOUD_SDK_"))}
    # Bytecode is cached, as for an installed fgsync (pip compiles it at install time): with
    # PYTHONDONTWRITEBYTECODE set, every start would compile fgsync's ~40 modules again (~100 ms) while the
    # libraries it is compared with load their installed .pyc files. The cache goes to __pycache__ (gitignored).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # Benchmarks authenticate with FGSYNC_TOKEN; a locked Secret Service must not stall or skew a run.
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env["PYTHONPATH"] = str(SOURCE) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def _pump(stream: IO[str], sink: Callable[[str], None]) -> None:
    for line in stream:
        sink(line)


class EmulatorProcess:
    """`fgsync emulator --port 0` as a child process, with the given functions (``NAME[:RUNTIME]``) created at
    start; ``options`` go on its command line (``--latency 15 --bandwidth 20000``)."""

    def __init__(self, functions: Iterable[str], *, cwd: Path, options: Iterable[str] = ()) -> None:
        args = [sys.executable, "-m", "fgsync", "emulator", "--port", "0", "--project-id", PROJECT_ID]
        args += ["--token", TOKEN, *options]
        for name in functions:
            args += ["--function", name]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(cwd), env=child_env()
        )
        self.pid = self.proc.pid
        lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=_pump, args=(self.proc.stdout, lines.put), daemon=True).start()
        threading.Thread(target=_pump, args=(self.proc.stderr, self.stderr.append), daemon=True).start()
        banner = ""
        deadline = time.monotonic() + STARTUP_SECONDS
        while not banner.endswith("Serving until Ctrl+C.\n"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"the emulator did not start: {banner!r} {''.join(self.stderr)!r}")
            try:
                banner += lines.get(timeout=0.1)
            except queue.Empty:
                continue
        found = re.search(r"endpoint\s+(http://\S+)", banner)
        if not found:
            self.stop()
            raise RuntimeError(f"no endpoint in the emulator's banner: {banner!r}")
        self.url = found.group(1)
        self._http = httpx.Client(base_url=self.url, timeout=30)

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats`` (the control API)."""
        answer = self._http.get("/_emulator/stats")
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def uploads(self) -> dict[str, int]:
        """Successful UpdateFunctionCode calls so far, by function name."""
        return {f["name"]: int(f["uploads"]) for f in self.stats()["functions"]}

    def digests(self) -> dict[str, str]:
        """Each function's current code digest, by function name."""
        return {f["name"]: str(f["digest"]) for f in self.stats()["functions"]}

    def stop(self) -> Optional[int]:
        """SIGTERM, then wait (the emulator exits 0 on it); returns the exit code."""
        if hasattr(self, "_http"):
            self._http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def write_project(root: Path, endpoint: str, sources: dict[str, str]) -> Path:
    """An ``fgsync.toml`` in ``root`` for the functions ``{name: source relative to root}``; its path."""
    lines = [
        'region = "cn-north-4"',
        f'project_id = "{PROJECT_ID}"',
        f'endpoint = "{endpoint}"',
        f'iam_endpoint = "{endpoint}"',
    ]
    for name, source in sources.items():
        lines += ["", "[[function]]", f'name = "{name}"', f'source = "{source}"']
    path = root / "fgsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class WatchProcess:
    """`fgsync watch --json` as a child process; its NDJSON events are kept with the monotonic time they arrived."""

    def __init__(self, config: Path, *, poll: bool = False, options: Iterable[str] = ()) -> None:
        args = [sys.executable, "-m", "fgsync", "--config", str(config), "watch", "--json", *options]
        if poll:
            args.append("--poll")
        cache = Path(tempfile.mkdtemp(prefix="cache-", dir=config.parent))
        env = child_env(FGSYNC_TOKEN=TOKEN, FGSYNC_CACHE_DIR=str(cache))
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(config.parent), env=env
        )
        self.pid = self.proc.pid
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=_pump, args=(self.proc.stdout, self._event), daemon=True),
            threading.Thread(target=_pump, args=(self.proc.stderr, self.stderr.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _event(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = {"event": "garbage", "line": line}  # --json promises NDJSON only; show it if broken
        with self._cond:
            self.events.append((time.monotonic(), event))
            self._cond.notify_all()

    def mark(self) -> int:
        """The index the next event will have."""
        with self._cond:
            return len(self.events)

    def since(self, mark: int, name: Optional[str] = None) -> list[tuple[float, dict[str, Any]]]:
        """Events from index ``mark`` on, optionally only those called ``name``."""
        with self._cond:
            return [(t, e) for t, e in self.events[mark:] if name is None or e.get("event") == name]

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``predicate()`` holds (checked on every event and every 50 ms), or fail naming ``what``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "".join(self.stderr[-20:])
                    raise RuntimeError(f"fgsync watch: no {what} within {timeout:.0f} s; stderr: {tail!r}")
                self._cond.wait(min(left, 0.05))

    def wait_quiet(self, mark: int, quiet: float, timeout: float, *, since: float = 0.0) -> None:
        """Wait until a sync has ended after event ``mark``, and neither an event nor the caller's last write
        (monotonic time ``since``) came in the last ``quiet`` seconds."""

        def settled() -> bool:
            ends = [e for _, e in self.events[mark:] if e.get("event") in ("pushed", "skipped", "error")]
            return bool(ends) and time.monotonic() - max(self.events[-1][0], since) >= quiet

        self.wait(settled, timeout, f"quiet {quiet:.1f} s after a sync")

    def errors(self, mark: int = 0) -> list[dict[str, Any]]:
        """The `error` events since ``mark``."""
        return [e for _, e in self.since(mark, "error")]

    def stop(self, sig: int = signal.SIGINT) -> Optional[int]:
        """Send ``sig`` and wait for the exit (130 after SIGINT, 0 after SIGTERM); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode


# A tiny launcher between this script and a measured child. Linux carries the peak RSS of the process that forked a
# child over into the child's own ru_maxrss (exec keeps the old memory's high-water mark), so a child forked from
# this script, which imports httpx, could never show less than this script's peak; forked from `python -S`
# instead, its floor is a few MB. The launcher writes "maxrss_kb cpu_s exit_code" into the file it is given.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    out.write(f'{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime} {os.waitstatus_to_exitcode(status)}')\n"
)


def run_measured(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float, int, int]:
    """Run a child to its end: (wall seconds, CPU seconds, peak RSS in kB, exit code), from its own rusage.

    ``args[0]`` must be an executable path (``sys.executable``, ``/usr/bin/zip``). Wall time includes the small
    launcher's start; compare against contenders measured the same way.

    Raises:
        RuntimeError: the child failed (its stderr's tail in the message).
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rusage") as result:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, result.name, *args],
            cwd=str(cwd),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wall = time.perf_counter() - start
        maxrss, cpu, code = result.read().split()
    if done.returncode != 0 or int(code) != 0:
        raise RuntimeError(f"{' '.join(args[:6])}... exited {code}: {done.stderr.decode(errors='replace')[-2000:]}")
    return wall, float(cpu), int(maxrss), int(code)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/PID/stat (Linux)."""
    with open(f"/proc/{pid}/stat") as handle:
        # The command name (field 2) may hold spaces and parentheses: split after its closing one.
        fields = handle.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) and Threads from /proc/PID/status (Linux)."""
    wanted = {"VmRSS", "VmHWM", "Threads"}
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in wanted:
                out[key] = int(value.split()[0])
    return out


def load() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"
