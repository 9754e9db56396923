"""`fgsync emulator` as users run it: a subprocess that prints how to reach it and stops cleanly on signals."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
from conftest import PASSWORD, SK, TOKEN
from test_emulator import login_body

from fgsync.cli import main
from fgsync.cli.emulator_cmd import _is_loopback

STARTUP_DEADLINE = 30.0


class Running:
    """A `fgsync emulator` child process with its banner read."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FGSYNC_", "CLOUD_SDK_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fgsync", "emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(cwd),
            env=env,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        self.banner = self._read_banner()
        found = re.search(r"endpoint\s+(http://\S+)", self.banner)
        assert found, self.banner
        self.url = found.group(1)

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def _read_banner(self) -> str:
        deadline = time.monotonic() + STARTUP_DEADLINE
        seen: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if line.startswith("Serving until"):
                return "".join(seen)
        raise AssertionError(f"no banner; stdout so far: {''.join(seen)!r}")

    def value(self, label: str) -> str:
        found = re.search(rf"^\s+{label}\s+(\S+)", self.banner, re.M)
        assert found, (label, self.banner)
        return found.group(1)

    def stop(self, signum: int) -> tuple[int, str]:
        self.proc.send_signal(signum)
        _out, err = self.proc.communicate(timeout=STARTUP_DEADLINE)
        return self.proc.returncode, err


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.communicate()


def test_dev_server_prints_what_to_use_serves_and_stops_on_sigterm(tmp_path: Path, running: list[Running]) -> None:
    data = tmp_path / "data"
    emu = Running(["--function", "hello", "--function", "js:Node.js18.15", "--data", str(data)], tmp_path)
    running.append(emu)
    project = emu.value("project id")
    token = emu.value("token")
    assert re.fullmatch(r"[0-9a-f]{32}", project)
    assert "user dev, password dev, domain dev" in emu.banner
    assert f'project_id = "{project}"' in emu.banner and f'endpoint = "{emu.url}"' in emu.banner
    assert "hello (Python3.9)" in emu.banner and "js (Node.js18.15)" in emu.banner

    with httpx.Client(base_url=emu.url, timeout=30) as client:
        base = f"/v2/{project}/fgs/functions"
        assert client.get(f"{base}/hello/config", headers={"X-Auth-Token": token}).status_code == 200
        login = client.post("/v3/auth/tokens", json=login_body("dev", "dev", "dev", project))
        issued = login.headers["X-Subject-Token"]
        invoked = client.post(f"{base}/hello/invocations", json={"a": 1}, headers={"X-Auth-Token": issued})
        assert invoked.json()["status"] == 200 and '"statusCode": 200' in invoked.json()["result"]
        client.post("/_emulator/faults", json={"route": "show_code", "status": 503, "times": 1})
        assert client.get(f"{base}/hello/code", headers={"X-Auth-Token": token}).status_code == 503
        stats = client.get("/_emulator/stats").json()
        assert stats["calls"]["show_code"] == 1 and stats["calls"]["invoke"] == 1

    code, err = emu.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in err

    # Restarted on the same data folder: same project, same functions, and the issued token still works.
    again = Running(["--data", str(data)], tmp_path)
    running.append(again)
    assert again.value("project id") == project and "hello (Python3.9)" in again.banner
    with httpx.Client(base_url=again.url, timeout=30) as client:
        ok = client.get(f"/v2/{project}/fgs/functions/hello/code", headers={"X-Auth-Token": issued})
        assert ok.status_code == 200
    code, err = again.stop(signal.SIGINT)
    assert code == 0 and "Traceback" not in err


def test_node_functions_without_node_on_path_are_flagged_in_the_banner(
    tmp_path: Path, running: list[Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # Running copies os.environ; python is sys.executable
    emu = Running(["--function", "js:Node.js18.15", "--function", "py"], tmp_path)
    running.append(emu)
    assert "js (Node.js18.15), py (Python3.9)" in emu.banner
    assert "no node on PATH: Node.js functions cannot be invoked; install Node.js" in emu.banner
    project, token = emu.value("project id"), emu.value("token")
    with httpx.Client(base_url=emu.url, headers={"X-Auth-Token": token}, timeout=30) as client:
        answer = client.post(f"/v2/{project}/fgs/functions/js/invocations", json={})
    assert answer.status_code == 400 and "need Node.js" in answer.json()["error_msg"]
    code, err = emu.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in err


def test_given_secrets_are_never_printed(tmp_path: Path, running: list[Running]) -> None:
    args = ["--token", TOKEN, "--ak", "AKGIVEN", "--sk", SK, "--user", "u1", "--password", PASSWORD, "--domain", "d1"]
    emu = Running(args, tmp_path)
    running.append(emu)
    for secret in (TOKEN, SK, PASSWORD):
        assert secret not in emu.banner
    assert "<hidden>" in emu.banner and "AKGIVEN" in emu.banner and "user u1" in emu.banner
    with httpx.Client(base_url=emu.url) as client:
        project = emu.value("project id")
        answer = client.get(f"/v2/{project}/fgs/functions/nothing/code", headers={"X-Auth-Token": TOKEN})
        assert answer.status_code == 404 and answer.json()["error_code"] == "FSS.1051"
    code, err = emu.stop(signal.SIGTERM)
    assert code == 0 and all(secret not in err for secret in (TOKEN, SK, PASSWORD))


def test_latency_and_bandwidth_shape_the_link_and_show_in_the_banner(tmp_path: Path, running: list[Running]) -> None:
    emu = Running(["--function", "hello", "--latency", "60", "--bandwidth", "20000"], tmp_path)
    running.append(emu)
    assert "link         latency 60 ms each way (120 ms round trip), bandwidth 20,000 kbit/s each way" in emu.banner
    with httpx.Client(base_url=emu.url, timeout=30) as client:
        stats = client.get("/_emulator/stats")  # warm: the connection is open
        assert stats.json()["link"] == {"latency_ms": 60.0, "bandwidth_kbit": 20000.0}
        started = time.monotonic()
        client.get("/_emulator/stats")
        assert time.monotonic() - started >= 0.9 * 0.12
    code, err = emu.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ak", "AK1"], "Error: --ak and --sk go together"),
        (["--user", "u"], "Error: --user and --password go together"),
        (["--project-id", "short"], "Error: --project-id 'short': a project id is 32 letters and digits"),
        (["--function", "9lives"], "Error: --function '9lives': the name must start with a letter"),
        (["--latency", "-5"], "Invalid value for '--latency'"),
        (["--bandwidth", "0"], "Invalid value for '--bandwidth'"),
    ],
)
def test_bad_options_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--port", "0", *args]) == 2
    assert message in capsys.readouterr().err


def test_loopback_detection() -> None:
    for host in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"):
        assert _is_loopback(host), host
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        assert not _is_loopback(host), host


def test_non_loopback_host_warns_and_an_unbindable_address_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    # 192.0.2.1 (TEST-NET-1) is not this machine's: the warning is printed, then binding fails cleanly.
    assert main(["emulator", "--host", "192.0.2.1", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "Warning: listening on 192.0.2.1, not a loopback address" in err
    assert "Error: cannot listen on 192.0.2.1:0" in err and "Traceback" not in err
