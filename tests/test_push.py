"""`fgsync push`, `status` and `package` end to end: main([...]) against the emulator on a loopback socket."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import HELLO_PY, PROJECT_ID, SECRETS, TOKEN, make_tree, write_config

from fgsync.cli import main


class Run:
    """The outcome of one `fgsync ...` call."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


@pytest.fixture
def project(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two functions on disk, created in the emulator, a config pointing at it, FGSYNC_TOKEN set."""
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY, "lib/util.py": "X = 1\n"})
    make_tree(tmp_path / "functions" / "world", {"index.py": HELLO_PY.replace("hello", "world")})
    write_config(
        tmp_path,
        endpoint=emulator.url,
        functions=[
            {"name": "hello", "source": "functions/hello"},
            {"name": "world", "source": "functions/world"},
        ],
    )
    emulator.emulator.create_function("hello")
    emulator.emulator.create_function("world")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    return tmp_path


@pytest.fixture
def fgsync(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*args: str) -> Run:
        code = main(list(args))
        captured = capsys.readouterr()
        for secret in SECRETS:
            assert secret not in captured.out and secret not in captured.err
        return Run(code, captured.out, captured.err)

    return run


def test_push_uploads_once_then_skips_then_uploads_the_edit(project: Path, emulator: Any, fgsync: Any) -> None:
    emu = emulator.emulator
    first = fgsync("push", "--json")
    assert first.code == 0, first.err
    assert [e["function"] for e in first.named("pushed")] == ["hello", "world"]
    assert emu.uploads("hello") == emu.uploads("world") == 1
    for event in first.named("pushed"):
        assert emu.function(event["function"]).digest == event["digest"]

    second = fgsync("--json", "push")
    assert second.code == 0
    assert [(e["function"], e["reason"]) for e in second.named("skipped")] == [
        ("hello", "unchanged"),
        ("world", "unchanged"),
    ]
    assert emu.uploads("hello") == 1

    human = fgsync("push")
    assert human.code == 0
    assert "hello  skipped (unchanged)" in human.out

    (project / "functions" / "hello" / "lib" / "util.py").write_text("X = 2\n")
    third = fgsync("push", "--json")
    assert [e["function"] for e in third.named("pushed")] == ["hello"]
    assert emu.uploads("hello") == 2 and emu.uploads("world") == 1
    packaged = {e["function"]: e for e in third.named("packaged")}
    assert emu.function("hello").digest == hashlib.sha512(emu.function("hello").code).hexdigest()
    assert packaged["hello"]["sha512"] == hashlib.sha512(emu.function("hello").code).hexdigest()


def test_json_events_have_the_spec_fields(project: Path, fgsync: Any) -> None:
    run = fgsync("push", "hello", "--json")
    kinds = [e["event"] for e in run.events]
    assert kinds == ["packaged", "pushed"]
    packaged, pushed = run.events
    assert set(packaged) == {"event", "ts", "function", "files", "bytes", "sha512", "ms"}
    assert set(pushed) == {"event", "ts", "function", "bytes", "digest", "ms"}
    assert packaged["files"] == 2 and len(packaged["sha512"]) == 128
    assert pushed["ts"].endswith("Z")


def test_status_in_sync_out_of_sync_and_drift(project: Path, emulator: Any, fgsync: Any) -> None:
    before = fgsync("status", "--json")
    assert {e["function"]: e["state"] for e in before.named("status")} == {
        "hello": "out-of-sync",
        "world": "out-of-sync",
    }
    fgsync("push")
    after = fgsync("status", "--json")
    states = {e["function"]: e for e in after.named("status")}
    assert states["hello"]["state"] == "in-sync"
    assert states["hello"]["sha512"] == states["hello"]["pushed_sha512"] == states["hello"]["remote_digest"]
    assert states["hello"]["runtime"] == "Python3.9"
    line = next(line for line in fgsync("status", "hello").out.splitlines() if "hello" in line)
    assert re.search(
        r"hello  in-sync +local [0-9a-f]{12}  pushed [0-9a-f]{12}  remote [0-9a-f]{12}  Python3\.9  \d+ B  modified ",
        line,
    )

    (project / "functions" / "world" / "index.py").write_text("def handler(e, c):\n    return 1\n")
    emulator.emulator.set_code("hello", _zip({"index.py": "def handler(e, c):\n    return 'console edit'\n"}))
    drifted = fgsync("status", "--json")
    states = {e["function"]: e["state"] for e in drifted.named("status")}
    assert states == {"hello": "drift", "world": "out-of-sync"}
    human = fgsync("status", "hello")
    assert "hello  drift" in human.out


def test_drift_is_reported_then_pushed_or_refused_with_no_overwrite(project: Path, emulator: Any, fgsync: Any) -> None:
    emu = emulator.emulator
    fgsync("push", "hello")
    emu.set_code("hello", _zip({"index.py": "# edited in the console\n"}))
    remote = emu.function("hello").digest

    refused = fgsync("push", "hello", "--no-overwrite", "--json")
    assert refused.code == 1
    assert refused.named("drift")[0]["remote"] == remote
    assert refused.named("error")[0]["code"] == "drift"
    assert "changed outside fgsync" in refused.named("error")[0]["message"]
    assert emu.uploads("hello") == 1 and emu.function("hello").digest == remote

    pushed = fgsync("push", "hello", "--json")
    assert pushed.code == 0
    assert [e["event"] for e in pushed.events] == ["packaged", "drift", "pushed"]
    assert emu.uploads("hello") == 2


def test_remote_identical_force_and_dry_run(project: Path, emulator: Any, fgsync: Any, monkeypatch: Any) -> None:
    emu = emulator.emulator
    fgsync("push", "hello")
    monkeypatch.setenv("FGSYNC_CACHE_DIR", str(project / "fresh-cache"))  # fgsync forgot its last push
    run = fgsync("push", "hello", "--json")
    assert run.named("skipped")[0]["reason"] == "remote-identical"

    forced = fgsync("push", "hello", "--force", "--json")
    assert forced.named("pushed") and emu.uploads("hello") == 2

    (project / "functions" / "hello" / "index.py").write_text("def handler(e, c):\n    return 2\n")
    dry = fgsync("push", "hello", "--dry-run")
    assert dry.code == 0 and "dry run" in dry.out
    assert emu.uploads("hello") == 2


def test_fss_0409_means_server_unchanged_and_records_nothing(project: Path, emulator: Any, fgsync: Any) -> None:
    emulator.emulator.inject("update_code", status=409, code="FSS.0409", message="already exists")
    run = fgsync("push", "hello", "--json")
    assert run.code == 0
    assert run.named("skipped")[0]["reason"] == "server-unchanged"
    # Nothing was confirmed, so the next push tries again instead of trusting a record.
    again = fgsync("push", "hello", "--json")
    assert again.named("pushed")


def test_depend_version_list_is_kept_unless_configured(project: Path, emulator: Any, fgsync: Any) -> None:
    emu = emulator.emulator
    hello = {"name": "hello", "source": "functions/hello"}
    # The service refuses version ids that name no dependency version (404 FSS.1056): publish two first.
    dep_a, dep_b = (emu.create_dependency_version(name, b"PK\x05\x06" + bytes(18)).id for name in ("dep-a", "dep-b"))
    write_config(project, endpoint=emulator.url, functions=[{**hello, "depend_version_list": [dep_a, dep_b]}])
    assert fgsync("push").code == 0
    assert list(emu.function("hello").depend_version_list) == [dep_a, dep_b]

    # Without the key, fgsync re-sends the function's current list instead of detaching its dependencies.
    write_config(project, endpoint=emulator.url, functions=[hello])
    (project / "functions" / "hello" / "index.py").write_text("def handler(e, c):\n    return 3\n")
    assert fgsync("push", "--json").named("pushed")
    assert list(emu.function("hello").depend_version_list) == [dep_a, dep_b]


def test_transient_failures_are_retried_to_success(project: Path, emulator: Any, fgsync: Any) -> None:
    emu = emulator.emulator
    emu.inject("update_code", status=503, code="FSS.0503", times=1)
    emu.inject("show_code", status=429, code="FSS.0429", times=1)
    run = fgsync("push", "hello", "--json")
    assert run.code == 0, run.err
    assert run.named("pushed")
    assert emu.uploads("hello") == 1


def test_missing_function_is_reported_with_its_code_and_exit_1(project: Path, emulator: Any, fgsync: Any) -> None:
    write_config(project, endpoint=emulator.url, functions=[{"name": "ghost", "source": "functions/hello"}])
    run = fgsync("push", "--json")
    assert run.code == 1
    (error,) = run.named("error")
    assert error["function"] == "ghost" and error["code"] == "FSS.1051" and not error["retryable"]
    human = fgsync("push")
    assert "FSS.1051" in human.err and "HTTP 404" in human.err


def test_missing_credentials_exit_3(project: Path, fgsync: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FGSYNC_TOKEN")
    run = fgsync("push")
    assert run.code == 3
    assert "fgsync login" in run.err


def test_wrong_token_exit_3(project: Path, fgsync: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FGSYNC_TOKEN", "MIIwrong")
    run = fgsync("push", "--json")
    assert run.code == 3
    assert run.named("error")[0]["code"] == "FSS.0401"


def test_unknown_function_name_is_a_usage_error(project: Path, fgsync: Any) -> None:
    run = fgsync("push", "nope")
    assert run.code == 2
    assert "nope" in run.err and "hello" in run.err


def test_package_writes_exactly_the_bytes_it_hashes(project: Path, fgsync: Any, tmp_path: Path) -> None:
    out = tmp_path / "out" / "hello.zip"
    run = fgsync("package", "hello", "-o", str(out), "--json")
    assert run.code == 0, run.err
    (event,) = run.named("packaged")
    assert hashlib.sha512(out.read_bytes()).hexdigest() == event["sha512"]
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["index.py", "lib/util.py"]
    human = fgsync("package", "hello")
    assert event["sha512"] in human.out


def test_package_refuses_to_write_into_the_source(project: Path, fgsync: Any) -> None:
    run = fgsync("package", "hello", "-o", "functions/hello/out.zip")
    assert run.code == 2
    assert not (project / "functions" / "hello" / "out.zip").exists()


def test_push_writes_nothing_into_the_source(project: Path, fgsync: Any) -> None:
    source = project / "functions"
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    fgsync("push")
    fgsync("status")
    fgsync("package")
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before


def test_empty_function_is_refused_before_upload(project: Path, emulator: Any, fgsync: Any) -> None:
    for path in (project / "functions" / "world").rglob("*.py"):
        path.unlink()
    run = fgsync("push", "world", "--json")
    assert run.code == 1
    assert run.named("error")[0]["code"] == "package"
    assert emulator.emulator.uploads("world") == 0


def test_config_error_exit_2(project: Path, fgsync: Any) -> None:
    (project / "fgsync.toml").write_text(f'project_id = "{PROJECT_ID}"\nregion = "cn-north-4"\nbogus = 1\n')
    run = fgsync("push")
    assert run.code == 2
    assert "fgsync.toml" in run.err and "bogus" in run.err


def _zip(files: dict[str, str]) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()
