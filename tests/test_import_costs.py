"""What each command imports: editors run `fgsync package`, `push` and `--version` on every save, so nothing may
be imported that the command does not use (httpx costs ~70 ms, keyring ~80 ms). Checked in a fresh interpreter,
since this test process has long imported everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import HELLO_PY, TOKEN, make_tree, write_config

HEAVY = ("httpx", "httpcore", "keyring", "rich", "watchdog", "tomllib", "tomli", "pathspec", "platformdirs")

PROBE = """
import json, sys
from fgsync.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY_NAMES))
print(json.dumps({"code": code, "heavy": heavy, "fgsync": sorted(m for m in sys.modules if m.startswith("fgsync"))}))
""".replace("HEAVY_NAMES", repr(HEAVY))


def imported(cwd: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FGSYNC_", "CLOUD_SDK_"))}
    environ.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture
def project(tmp_path: Path, emulator: Any) -> Path:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    write_config(tmp_path, endpoint=emulator.url)
    emulator.emulator.create_function("hello")
    return tmp_path


def test_version_imports_nothing_of_fgsync_but_the_command_line(tmp_path: Path) -> None:
    seen = imported(tmp_path, "--version")
    assert seen["code"] == 0 and seen["heavy"] == []
    assert seen["fgsync"] == ["fgsync", "fgsync.cli", "fgsync.cli.common", "fgsync.cli.context", "fgsync.errors",
                              "fgsync.events"]  # fmt: skip


def test_package_never_imports_httpx_or_keyring(project: Path) -> None:
    seen = imported(project, "package")
    assert seen["code"] == 0
    assert not {"httpx", "httpcore", "keyring", "rich", "watchdog"} & set(seen["heavy"])


def test_push_with_env_credentials_never_imports_keyring(project: Path) -> None:
    seen = imported(project, "push", env={"FGSYNC_TOKEN": TOKEN})
    assert seen["code"] == 0
    assert "httpx" in seen["heavy"]  # it does talk to the service
    assert "keyring" not in seen["heavy"] and "watchdog" not in seen["heavy"]
    seen = imported(project, "status", env={"CLOUD_SDK_AK": "AKTESTEXAMPLE0000000", "CLOUD_SDK_SK": "x" * 24})
    assert "keyring" not in seen["heavy"]


def test_version_and_package_never_load_ssl(project: Path) -> None:
    """The TLS stack (ssl, _ssl, socket: ~15 ms) is for commands that talk to a service."""
    probe = PROBE.replace(repr(HEAVY), "('ssl', '_ssl')")
    for args in (["--version"], ["package"]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=project, capture_output=True, text=True)
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert seen["code"] == 0 and seen["heavy"] == [], args


def test_token_push_of_a_function_without_dependencies_loads_neither_signer_nor_dependency_code(project: Path) -> None:
    """A token needs no AK/SK signer (nor hmac) nor the IAM login; a function without dependencies neither the
    dependency step nor the dependency wire models; a config without [obs] not its bucket side."""
    for command in ("push", "status"):
        seen = imported(project, command, env={"FGSYNC_TOKEN": TOKEN})
        assert seen["code"] == 0, command
        loaded = set(seen["fgsync"])
        assert not loaded & {"fgsync.auth.signer", "fgsync.auth.iam"}, command  # no AK/SK, no login
        assert not loaded & {"fgsync.sync.dependency", "fgsync.remote.models"}, command
        assert not loaded & {"fgsync.sync.obs_target", "fgsync.remote.obs", "fgsync.remote.invocation"}, command
