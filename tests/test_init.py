"""`fgsync init`: writes a commented fgsync.toml that loads, never overwrites, and says what to do next."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fgsync.cli import main
from fgsync.config import SCHEMA, load_config
from fgsync.errors import ConfigError
from tests.conftest import PROJECT_ID


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_init_with_region_and_project_loads_as_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["init", "--region", "cn-north-4", "--project-id", PROJECT_ID])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    assert out.splitlines() == [
        "Wrote fgsync.toml (1 function: hello).",
        "Next steps:",
        "  1. create the source folder: functions/hello",
        "  2. fgsync login",
        "  3. fgsync push   (or: fgsync watch)",
    ]
    text = (tmp_path / "fgsync.toml").read_text()
    keys = set(re.findall(r"^(?:# )?([a-z_]+) = ", text, re.MULTILINE))
    assert {key for table in SCHEMA.values() for key in table if key not in SCHEMA} <= keys
    (tmp_path / "functions" / "hello").mkdir(parents=True)
    config = load_config(tmp_path / "fgsync.toml")
    assert (config.region, config.project_id) == ("cn-north-4", PROJECT_ID)
    (fn,) = config.functions
    assert (fn.name, fn.source) == ("hello", tmp_path / "functions" / "hello")
    assert fn.urn == f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"


def test_init_with_several_functions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src" / "api").mkdir(parents=True)
    args = ["init", "--region", "ap-southeast-1", "--project-id", PROJECT_ID]
    code = main([*args, "--function", "api=src/api", "--function", "worker = src/worker"])
    out, _err = capsys.readouterr()
    assert code == 0
    assert "Wrote fgsync.toml (2 functions: api, worker)." in out
    assert "  1. create the source folder: src/worker" in out  # src/api exists already
    (tmp_path / "src" / "worker").mkdir()
    config = load_config(tmp_path / "fgsync.toml")
    assert [(fn.name, fn.source) for fn in config.functions] == [
        ("api", tmp_path / "src" / "api"),
        ("worker", tmp_path / "src" / "worker"),
    ]


def test_init_without_values_writes_placeholders_to_fill_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 0
    out, _err = capsys.readouterr()
    assert "  1. fill in region and project_id in fgsync.toml (and remove the leading #)" in out
    path = tmp_path / "fgsync.toml"
    (tmp_path / "functions" / "hello").mkdir(parents=True)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "fgsync.toml: region is missing" in str(info.value)
    assert "fgsync.toml: project_id is missing" in str(info.value)
    text = path.read_text()
    text = text.replace('# region = "cn-north-4"', 'region = "cn-north-4"', 1)
    text = re.sub(r'^# project_id = "[^"]*"', f'project_id = "{PROJECT_ID}"', text, count=1, flags=re.MULTILINE)
    path.write_text(text)
    assert load_config(path).project_id == PROJECT_ID


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fgsync.toml"
    path.write_text("# mine\n")
    assert main(["init", "--region", "cn-north-4"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "Error: fgsync.toml already exists; fgsync init never overwrites it: edit it, or remove it first to start "
        "again\n"
    )
    assert path.read_text() == "# mine\n"


def test_init_writes_to_the_global_config_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", "deploy/fg.toml", "init", "--region", "cn-north-4", "--project-id", PROJECT_ID])
    out, _err = capsys.readouterr()
    assert code == 0
    assert not (tmp_path / "fgsync.toml").exists()
    assert "Wrote deploy/fg.toml (1 function: hello)." in out
    assert "  1. create the source folder (relative to deploy): functions/hello" in out
    assert "  2. fgsync --config deploy/fg.toml login" in out
    (tmp_path / "deploy" / "functions" / "hello").mkdir(parents=True)
    (fn,) = load_config(tmp_path / "deploy" / "fg.toml").functions
    assert fn.source == tmp_path / "deploy" / "functions" / "hello"
    # The option also works after the command name, and the second run refuses.
    assert main(["init", "--config", "deploy/fg.toml"]) == 2
    assert "deploy/fg.toml already exists" in capsys.readouterr().err


def test_init_json_writes_one_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "init", "--project-id", PROJECT_ID]) == 0
    out, _err = capsys.readouterr()
    (line,) = out.splitlines()
    document = json.loads(line)
    assert document["path"] == str(tmp_path / "fgsync.toml")
    assert document["functions"] == ["hello"]
    assert document["missing"] == ["region"]
    assert document["next_steps"][0] == "fill in region in fgsync.toml (and remove the leading #)"


def test_init_quiet_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "fgsync.toml").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--region", "North"], 'Error: --region "North": must be a region id such as "cn-north-4"'),
        (
            ["--project-id", "abc"],
            'Error: --project-id "abc": must be 32 letters and digits (the project id of the region)',
        ),
        (
            ["--function", "hello"],
            'Error: --function "hello": expected NAME=SOURCE, e.g. --function hello=functions/hello',
        ),
        (
            ["--function", "=src"],
            'Error: --function "=src": expected NAME=SOURCE, e.g. --function hello=functions/hello',
        ),
        (["--function", "a b=src"], 'Error: function name "a b" must be letters, digits, - and _'),
        (["--function", "a=x", "--function", "a=y"], 'Error: function name "a" is given twice'),
    ],
)
def test_init_bad_arguments_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["init", *args]) == 2
    assert capsys.readouterr().err.splitlines() == [message]
    assert not (tmp_path / "fgsync.toml").exists()


def test_init_into_a_folder_path_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    assert main(["--config", "sub", "init"]) == 2
    assert "is a folder" in capsys.readouterr().err
