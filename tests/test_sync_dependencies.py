"""Dependencies end to end: `fgsync push`, `status` and `invoke` against the emulator over loopback.

Publish → reuse → republish on change → the replaced version deleted, the user's own dependencies kept;
FSS.1033; `off` again; limits before any upload; drift; a handler that imports what only the dependency holds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import TOKEN, make_tree, write_config

from fgsync.cli import main
from fgsync.config import load_config
from fgsync.state import StateStore
from fgsync.sync import package_split

HANDLER = """\
import shout


def handler(event, context):
    return {"said": shout.loud(event.get("word", "hi"))}
"""
SHOUT_V1 = "def loud(word):\n    return word.upper() + '!'\n"
SHOUT_V2 = "def loud(word):\n    return word.upper() + '!!!'\n"
RECORD = "shout/__init__.py,sha256=x,10\nshout-1.0.dist-info/METADATA,,\n../../bin/shout,,\nshout/__pycache__/x.pyc,,\n"
NAME = "fgsync-default-hello"


def vendored(src: Path, shout: str = SHOUT_V1) -> None:
    """A `pip install -t .` of a one-module distribution."""
    make_tree(src, {"shout/__init__.py": shout, "shout-1.0.dist-info/METADATA": "Name: shout\n"})
    (src / "shout-1.0.dist-info" / "RECORD").write_text(RECORD)


@pytest.fixture
def project(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    src = make_tree(tmp_path / "functions" / "hello", {"index.py": HANDLER})
    vendored(src)
    write_config(tmp_path, endpoint=emulator.url, functions=[hello(dependencies="auto")])
    emulator.emulator.create_function("hello")
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def hello(**keys: Any) -> dict[str, Any]:
    return {"name": "hello", "source": "functions/hello", **keys}


def fgsync(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["--json", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def cold(project: Path) -> Any:
    return package_split(load_config(project / "fgsync.toml").functions[0])


def test_publish_then_unchanged_then_republish_and_delete_the_replaced(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator.emulator
    mine = emu.create_dependency_version("my-own-lib", b"PK\x05\x06" + b"\0" * 18)
    emu.set_depend_version_list("hello", [mine.id])

    code, events, err = fgsync(capsys, "push")
    assert code == 0, err
    (dep,) = named(events, "dependency")
    assert dep["action"] == "published" and dep["version"] == 1 and dep["files"] == 3
    split = cold(project)
    assert dep["sha256"] == split.dependency.sha256 and dep["bytes"] == split.dependency.size
    (v1,) = emu.dependency_versions(NAME)
    assert v1.description == f"fgsync sha256={split.dependency.sha256}" and v1.id == dep["id"]
    assert emu.function("hello").depend_version_list == [mine.id, v1.id]  # the user's own kept, fgsync's added
    assert emu.function("hello").digest == split.code.sha512
    assert "shout/__init__.py" not in _names(emu.function("hello").code)

    code, events, _ = fgsync(capsys, "push")  # nothing changed: nothing is sent
    assert code == 0
    assert [e["event"] for e in events] == ["packaged", "dependency", "skipped"]
    assert named(events, "dependency")[0]["action"] == "unchanged"
    assert emu.calls("create_dependency_version") == 1 and emu.uploads("hello") == 1

    (project / "functions" / "hello" / "index.py").write_text(HANDLER + "# a code edit\n")
    code, events, _ = fgsync(capsys, "push")  # code only: no new version
    assert named(events, "dependency")[0]["action"] == "unchanged" and named(events, "pushed")
    assert emu.calls("create_dependency_version") == 1 and emu.uploads("hello") == 2

    vendored(project / "functions" / "hello", SHOUT_V2)
    code, events, _ = fgsync(capsys, "push")
    assert code == 0
    dep = named(events, "dependency")[0]
    assert dep["action"] == "published" and dep["version"] == 2
    assert [v.version for v in emu.dependency_versions(NAME)] == [2]  # version 1 was deleted
    assert emu.function("hello").depend_version_list == [mine.id, dep["id"]]
    record = StateStore().get(emulator.url, load_config(project / "fgsync.toml").functions[0].urn)
    assert record is not None and record.dependency is not None and record.dependency.version == 2
    assert record.retired == ()


def test_the_function_runs_with_the_module_only_its_dependency_holds(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fgsync(capsys, "push")[0] == 0
    code, events, err = fgsync(capsys, "invoke", "hello")
    assert code == 0, err
    assert json.loads(named(events, "invoked")[0]["result"]) == {"said": "HI!"}


def test_an_existing_version_with_the_same_zip_is_reused(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator.emulator
    split = cold(project)
    description = f"fgsync sha256={split.dependency.sha256}"
    published = emu.create_dependency_version(NAME, split.dependency.data, description=description)
    code, events, _ = fgsync(capsys, "push")
    assert code == 0
    dep = named(events, "dependency")[0]
    assert (dep["action"], dep["id"]) == ("reused", published.id)
    assert emu.calls("create_dependency_version") == 0
    assert emu.function("hello").depend_version_list == [published.id]


def test_a_version_in_use_is_kept_then_deleted_by_a_later_sync(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator.emulator
    fgsync(capsys, "push")
    (v1,) = emu.dependency_versions(NAME)
    emu.create_function("other", depend_version_list=[v1.id])  # someone else uses fgsync's version 1
    vendored(project / "functions" / "hello", SHOUT_V2)
    with caplog.at_level(logging.WARNING, logger="fgsync"):
        code, _, _ = fgsync(capsys, "push")
    assert code == 0  # the push worked; the cleanup only waits
    assert "version 1 stays: it is still in use (FSS.1033)" in caplog.text
    assert [v.version for v in emu.dependency_versions(NAME)] == [1, 2]
    emu.set_depend_version_list("other", [])
    code, events, _ = fgsync(capsys, "push")  # nothing to upload, but the retired version goes now
    assert code == 0 and named(events, "skipped")
    assert [v.version for v in emu.dependency_versions(NAME)] == [2]


def test_dependencies_off_again_detaches_and_deletes_fgsyncs_version(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator.emulator
    mine = emu.create_dependency_version("my-own-lib", b"PK\x05\x06" + b"\0" * 18)
    emu.set_depend_version_list("hello", [mine.id])
    fgsync(capsys, "push")
    write_config(project, endpoint=emulator.url, functions=[hello()])  # dependencies = "off" (the default)
    code, events, _ = fgsync(capsys, "push")
    assert code == 0 and named(events, "pushed") and not named(events, "dependency")
    assert emu.function("hello").depend_version_list == [mine.id]
    assert emu.dependency_versions(NAME) == []
    assert "shout/__init__.py" in _names(emu.function("hello").code)  # packaged with the code again


def test_an_explicit_depend_version_list_gets_fgsyncs_version_added(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator.emulator
    a = emu.create_dependency_version("lib-a", b"PK\x05\x06" + b"\0" * 18)
    b = emu.create_dependency_version("lib-b", b"PK\x05\x06" + b"\0" * 18)
    emu.set_depend_version_list("hello", [b.id])
    write_config(project, endpoint=emulator.url, functions=[hello(dependencies="auto", depend_version_list=[a.id])])
    assert fgsync(capsys, "push")[0] == 0
    (ours,) = emu.dependency_versions(NAME)
    assert emu.function("hello").depend_version_list == [a.id, ours.id]


def test_more_than_20_dependencies_is_refused_before_any_upload(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator.emulator
    ids = [emu.create_dependency_version(f"lib-{n}", b"PK\x05\x06" + b"\0" * 18).id for n in range(20)]
    emu.set_depend_version_list("hello", ids)
    code, events, _ = fgsync(capsys, "push")
    assert code == 1
    (error,) = named(events, "error")
    assert error["code"] == "package" and "21 dependencies" in error["message"] and "limit of 20" in error["message"]
    assert emu.calls("create_dependency_version") == 0 and emu.calls("update_code") == 0


def test_a_dependency_file_name_ending_in_tilde_is_refused_before_any_upload(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # `*~` is on the built-in ignore list (editor backups): only a file brought back on purpose can be one
    make_tree(
        project / "functions" / "hello",
        {"node_modules/x/index.js": "1", "node_modules/x/notes~": "backup", ".fgsyncignore": "!notes~\n"},
    )
    write_config(project, endpoint=emulator.url, functions=[hello(dependencies=["node_modules/"])])
    code, events, _ = fgsync(capsys, "push")
    assert code == 1
    assert "ends in ~" in named(events, "error")[0]["message"]
    assert emulator.emulator.calls("create_dependency_version") == 0 and emulator.emulator.calls("update_code") == 0


def test_a_dependency_detached_behind_fgsyncs_back_is_drift(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator.emulator
    fgsync(capsys, "push")
    emu.set_depend_version_list("hello", [])  # someone detached it in the console
    code, events, _ = fgsync(capsys, "status")
    assert named(events, "status")[0]["state"] == "drift"
    code, events, _ = fgsync(capsys, "push", "--no-overwrite")
    assert code == 1 and "dependency version 1 was detached outside fgsync" in named(events, "error")[0]["message"]
    assert named(events, "drift")[0]["dependency"]["attached"] == []
    code, events, _ = fgsync(capsys, "push")  # without --no-overwrite: attached again
    assert code == 0 and named(events, "drift") and named(events, "pushed")
    (ours,) = emu.dependency_versions(NAME)
    assert emu.function("hello").depend_version_list == [ours.id]


def test_status_shows_the_dependency(project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, events, _ = fgsync(capsys, "status")
    status = named(events, "status")[0]
    split = cold(project)
    assert status["dependency"] == {"version": None, "sha256": split.dependency.sha256, "attached": False}
    assert status["state"] == "out-of-sync"
    fgsync(capsys, "push")
    status = named(fgsync(capsys, "status")[1], "status")[0]
    assert status["state"] == "in-sync"
    assert status["dependency"] == {"version": 1, "sha256": split.dependency.sha256, "attached": True}
    vendored(project / "functions" / "hello", SHOUT_V2)  # a new local dependency, not published yet
    status = named(fgsync(capsys, "status")[1], "status")[0]
    assert status["state"] == "out-of-sync" and status["dependency"]["attached"] is False
    code = main(["status"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0 and "dependency " in line and "(version 1, not attached)" in line


def test_dry_run_publishes_nothing(project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, events, _ = fgsync(capsys, "push", "--dry-run")
    assert code == 0 and named(events, "skipped")[0]["reason"] == "dry-run" and not named(events, "dependency")
    assert emulator.emulator.calls("create_dependency_version") == 0 and emulator.emulator.calls("update_code") == 0
    main(["push", "--dry-run"])
    assert "after publishing" in capsys.readouterr().out


def _names(data: bytes) -> list[str]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()


