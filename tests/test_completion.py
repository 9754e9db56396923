"""Shell completion: click's scripts for bash, zsh and fish, and function names from fgsync.toml.

In-process through `main([])` with click's `_FGSYNC_COMPLETE` protocol, and once for real: bash sources the
generated script and runs its completion function against the installed `fgsync`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_tree, write_config

from fgsync.cli import main

NAMES = ("hello", "hello-admin", "worker")


def complete(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], words: str, *, shell: str = "bash"
) -> list[str]:
    """What click answers for the command line `words` (a trailing space starts a new word)."""
    monkeypatch.setenv("_FGSYNC_COMPLETE", f"{shell}_complete")
    monkeypatch.setenv("COMP_WORDS", words)
    if shell == "fish":  # fish passes the word being completed itself
        monkeypatch.setenv("COMP_CWORD", "" if words.endswith(" ") else words.split()[-1])
    else:  # bash and zsh pass its index
        monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - (0 if words.endswith(" ") else 1)))
    with pytest.raises(SystemExit) as exit_:
        main([])
    out, err = capsys.readouterr()
    assert (exit_.value.code, err) == (0, "")
    return [line for line in out.splitlines() if line]  # no candidates: click prints an empty line


def values(lines: list[str]) -> list[str]:
    """The bash answer's values: `plain,push` -> `push`."""
    return [line.split(",", 1)[1] for line in lines]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in NAMES:
        make_tree(tmp_path / "functions" / name, {"index.py": "def handler(event, context):\n    return 1\n"})
    write_config(tmp_path, functions=[{"name": n, "source": f"functions/{n}"} for n in NAMES])
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _fgsync_completion fgsync"),
        ("zsh", "#compdef fgsync"),
        ("fish", "complete --no-files --command fgsync"),
    ],
)
def test_each_shell_gets_its_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], shell: str, marker: str
) -> None:
    monkeypatch.setenv("_FGSYNC_COMPLETE", f"{shell}_source")
    with pytest.raises(SystemExit) as exit_:
        main([])
    out, err = capsys.readouterr()
    assert (exit_.value.code, err) == (0, "")
    assert marker in out
    assert f"_FGSYNC_COMPLETE={shell}_complete" in out


def test_commands_and_options_complete(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no fgsync.toml here or above: still no error
    assert complete(monkeypatch, capsys, "fgsync pu") == ["plain,push"]
    assert sorted(values(complete(monkeypatch, capsys, "fgsync "))) == sorted(
        ["auth", "demo", "emulator", "init", "invoke", "login", "logout", "package", "push", "status", "watch"]
    )
    assert "--debounce-ms" in values(complete(monkeypatch, capsys, "fgsync watch --de"))
    assert complete(monkeypatch, capsys, "fgsync push ") == []


def test_function_names_complete_for_every_name_argument(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("push", "watch", "status", "package", "invoke"):
        assert values(complete(monkeypatch, capsys, f"fgsync {command} ")) == list(NAMES), command
        assert values(complete(monkeypatch, capsys, f"fgsync {command} hel")) == ["hello", "hello-admin"], command
    # several names: the ones already on the line are not offered again
    assert values(complete(monkeypatch, capsys, "fgsync push hello ")) == ["hello-admin", "worker"]
    assert values(complete(monkeypatch, capsys, "fgsync watch --invoke worker hello ")) == ["hello-admin"]
    # one name: nothing after it
    assert complete(monkeypatch, capsys, "fgsync invoke hello ") == []


def test_zsh_and_fish_show_each_function_source(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    zsh = complete(monkeypatch, capsys, "fgsync push w", shell="zsh")
    assert zsh == ["plain", "worker", "functions/worker"]
    fish = complete(monkeypatch, capsys, "fgsync push w", shell="fish")
    assert fish == ["plain,worker\tfunctions/worker"]


def test_the_config_is_found_as_the_command_would_find_it(
    project: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = tmp_path_factory.mktemp("other")
    make_tree(other / "fn", {"index.py": ""})
    write_config(other, functions=[{"name": "elsewhere", "source": "fn"}])
    monkeypatch.chdir(project / "functions" / "worker")  # the nearest fgsync.toml is in a parent
    assert values(complete(monkeypatch, capsys, "fgsync push ")) == list(NAMES)
    assert values(complete(monkeypatch, capsys, f"fgsync --config {other / 'fgsync.toml'} push ")) == ["elsewhere"]
    assert values(complete(monkeypatch, capsys, f"fgsync push --config {other / 'fgsync.toml'} ")) == ["elsewhere"]
    monkeypatch.setenv("FGSYNC_CONFIG", str(other / "fgsync.toml"))
    assert values(complete(monkeypatch, capsys, "fgsync invoke ")) == ["elsewhere"]


def test_names_complete_despite_other_problems_and_a_broken_file_gives_none(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(project / "functions" / "worker")  # `fgsync push` would refuse this config
    assert main(["push", "--dry-run"]) == 2
    capsys.readouterr()
    assert values(complete(monkeypatch, capsys, "fgsync push w")) == ["worker"]
    (project / "fgsync.toml").write_text("[[function]\nname = ")
    assert complete(monkeypatch, capsys, "fgsync push ") == []
    (project / "fgsync.toml").write_bytes(b"\xff\xfe")
    assert complete(monkeypatch, capsys, "fgsync push ") == []


def _fgsync_script() -> str | None:
    return shutil.which("fgsync", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(shutil.which("bash") is None or _fgsync_script() is None, reason="needs bash and the fgsync script")
def test_bash_sources_the_script_and_completes(project: Path) -> None:
    script = """
        eval "$(_FGSYNC_COMPLETE=bash_source fgsync)"
        show() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _fgsync_completion fgsync;
                 echo "${COMPREPLY[*]}"; }
        show fgsync pu
        show fgsync invoke w
        show fgsync push hello ""
    """
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == ["push", "worker", "hello-admin worker"]
