"""Big functions through OBS, end to end: `fgsync push` against the emulator (its FunctionGraph, IAM and OBS)
over loopback. A 60 MB package; an AK/SK user's 20 MB package; the second push sends nothing; a 45 MB
dependency; temporary keys once per window; old objects cleaned up; the refusal without [obs]; no secret out."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import AK, SECRETS, SK, TOKEN, make_tree, write_config

from fgsync.cli import main
from fgsync.config import load_config
from fgsync.sync import package_split
from fgsync.sync.upload import UploadRoute

BUCKET = "fgsync-test"


def big_tree(src: Path, megabytes: float, *, seed: int = 0, folder: str = "data") -> None:
    """Incompressible files (stored, not deflated): the zip is as big as the files."""
    make_tree(src, {"index.py": "def handler(event, context):\n    return 1\n"})
    chunk = 4 * 1024 * 1024
    left = int(megabytes * 1024 * 1024)
    n = 0
    while left > 0:
        size = min(chunk, left)
        (src / folder).mkdir(parents=True, exist_ok=True)
        (src / folder / f"blob{seed}-{n}.bin").write_bytes(os.urandom(size))
        left -= size
        n += 1


@pytest.fixture
def project(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    emulator.emulator.create_function("hello")
    emulator.emulator.create_bucket(BUCKET)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def configure(project: Path, emulator: Any, *, obs: bool = True, **fn: Any) -> None:
    extra = f'[obs]\nbucket = "{BUCKET}"\nendpoint = "{emulator.url}"\n' if obs else ""
    write_config(project, endpoint=emulator.url, functions=[{"name": "hello", "source": "functions/hello", **fn}],
                 extra=extra)  # fmt: skip


def push(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["--json", "push", *args])
    out, err = capsys.readouterr()
    for secret in (*SECRETS, SK):
        assert secret not in out and secret not in err
    return code, [json.loads(line) for line in out.splitlines()], err


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def local(project: Path) -> Any:
    return package_split(load_config(project / "fgsync.toml").functions[0], route=UploadRoute(obs_configured=True))


def test_fgsync_package_builds_up_to_what_obs_carries_with_or_without_obs() -> None:
    """`fgsync package` builds with the limits of a route through OBS (it no longer imports the sync step to ask)."""
    from fgsync.cli.package_cmd import ANY_SIZE

    route = UploadRoute(obs_configured=True)
    assert ANY_SIZE == route.max_code_bytes == route.max_dependency_bytes == 314_572_800


def test_a_60_mb_package_goes_through_obs_and_a_second_push_sends_nothing(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator.emulator
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    big_tree(project / "functions" / "hello", 60)
    configure(project, emulator)
    code, events, err = push(capsys)
    assert code == 0, err
    (packaged,) = named(events, "packaged")
    assert packaged["bytes"] > 60 * 1024 * 1024
    function = emu.function("hello")
    assert function.digest == packaged["sha512"]  # the service read the object fgsync put
    assert function.code_type == "obs"
    (obj,) = emu.objects(BUCKET)
    assert obj.key.startswith("fgsync/default/hello/") and obj.key.endswith(".zip")
    assert named(events, "pushed")[0]["code_url"].endswith(obj.key)  # the event says the package went through OBS
    assert emu.calls("iam_securitytokens") == 1  # temporary keys for the token: fetched once

    code, events, _ = push(capsys)  # unchanged: no object, no code update
    assert code == 0 and named(events, "skipped")[0]["reason"] == "unchanged"
    assert emu.calls("obs_put") == 1 and emu.uploads("hello") == 1

    code, events, _ = push(capsys, "--force")  # forced: the code update again, but the object is already there
    assert code == 0 and named(events, "pushed")
    assert emu.calls("obs_put") == 1 and emu.calls("obs_head") >= 2 and emu.uploads("hello") == 2

    code = main(["--json", "status"])
    status = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status["state"] == "in-sync" and status["code_url"].endswith(obj.key)


def test_an_aksk_users_20_mb_package_goes_through_obs(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed request bodies are limited to 12 MB: 20 MB of zip would be refused in the request."""
    emu = emulator.emulator
    monkeypatch.setenv("CLOUD_SDK_AK", AK)
    monkeypatch.setenv("CLOUD_SDK_SK", SK)
    big_tree(project / "functions" / "hello", 20)
    configure(project, emulator)
    code, events, err = push(capsys)
    assert code == 0, err
    assert emu.function("hello").digest == named(events, "packaged")[0]["sha512"]
    assert emu.function("hello").code_type == "obs" and emu.calls("iam_securitytokens") == 0  # its own AK/SK


def test_without_obs_a_package_that_does_not_fit_is_refused_naming_size_limit_and_obs(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUD_SDK_AK", AK)
    monkeypatch.setenv("CLOUD_SDK_SK", SK)
    big_tree(project / "functions" / "hello", 14)
    configure(project, emulator, obs=False)
    code, events, _ = push(capsys)
    assert code == 1
    message = named(events, "error")[0]["message"]
    assert "over what an AK/SK-signed request can carry" in message and "[obs]" in message
    assert emulator.emulator.calls("update_code") == 0
    monkeypatch.delenv("CLOUD_SDK_AK")
    monkeypatch.delenv("CLOUD_SDK_SK")
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    big_tree(project / "functions" / "hello", 52, seed=1)
    code, events, _ = push(capsys)
    assert code == 1
    message = named(events, "error")[0]["message"]
    assert "over the limit of 52,428,800 bytes" in message and 'set [obs] bucket = "..."' in message
    assert emulator.emulator.calls("update_code") == 0


def test_a_45_mb_dependency_goes_through_obs(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator.emulator
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    big_tree(project / "functions" / "hello", 45, folder="node_modules/big")
    configure(project, emulator, dependencies="auto")
    code, events, err = push(capsys)
    assert code == 0, err
    (dep,) = named(events, "dependency")
    assert dep["action"] == "published" and dep["bytes"] > 45 * 1024 * 1024
    (version,) = emu.dependency_versions("fgsync-default-hello")
    assert version.description == f"fgsync sha256={dep['sha256']}"
    assert emu.function("hello").depend_version_list == [version.id]
    assert emu.function("hello").code_type != "obs"  # the code itself is small: in the request
    assert [o.key for o in emu.objects(BUCKET)] == [f"fgsync/default/hello/{dep['sha256']}.zip"]


def test_objects_no_longer_used_are_deleted_the_newest_two_kept(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator.emulator
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    configure(project, emulator)
    src = project / "functions" / "hello"
    keys = []
    for seed in range(4):
        for old in (src / "data").glob("*") if (src / "data").exists() else ():
            old.unlink()
        big_tree(src, 51, seed=seed)
        code, _, err = push(capsys)
        assert code == 0, err
        keys.append(f"fgsync/default/hello/{local(project).code.sha256}.zip")
    assert sorted(o.key for o in emu.objects(BUCKET)) == sorted(keys[-2:])


def test_the_terminal_line_of_an_obs_push_says_so() -> None:
    from fgsync.cli.output import render_human
    from fgsync.events import Event

    fields = {"bytes": 60 * 1024 * 1024, "digest": "ab" * 64, "ms": 900}
    assert "via OBS" not in render_human(Event("pushed", "hello", fields))
    line = render_human(Event("pushed", "hello", {**fields, "code_url": "http://127.0.0.1:1/b/fgsync/k.zip"}))
    assert line == "pushed 60.0 MB in 900 ms  via OBS  digest abababababab"
