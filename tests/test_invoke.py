"""`fgsync invoke NAME [--event FILE|-]` through `main([...])`, against the emulator on a loopback port.

The emulator runs the handlers for real (a Python subprocess per call), so these tests see the same status,
result and log tail a user would.
"""

from __future__ import annotations

import io
import json
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRETS, TOKEN, make_tree, write_config

from fgsync.cli import main
from fgsync.cli.invoke_cmd import MAX_EVENT_BYTES, describe_failure
from fgsync.remote import Invocation

ECHO_PY = textwrap.dedent(
    """\
    def handler(event, context):
        print("got", sorted(event))
        return {"hello": event.get("name", "world"), "version": 1}
    """
)

RAISING_PY = textwrap.dedent(
    """\
    def handler(event, context):
        raise ValueError("bad input: " + event.get("name", "nobody"))
    """
)

SLOW_PY = textwrap.dedent(
    """\
    import time


    def handler(event, context):
        print("going to sleep")
        time.sleep(30)
        return "never"
    """
)

CHATTY_PY = textwrap.dedent(
    """\
    def handler(event, context):
        for i in range(3000):
            print("log line %04d" % i)
        return "done"
    """
)

HANDLERS = {"echo": ECHO_PY, "boom": RAISING_PY, "slow": SLOW_PY, "chatty": CHATTY_PY}
LINE = re.compile(
    r"^\d\d:\d\d:\d\d (?P<function>\S+)  invoked: status (?P<status>\d+) in (?P<ms>\d+) ms  "
    r"(?:result (?P<result>.*)|failed: (?P<failure>.*))$"
)


@pytest.fixture
def project(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four functions on disk, in fgsync.toml and in the emulator (slow with a 1 s timeout); cwd is the project."""
    functions = []
    for name, code in HANDLERS.items():
        make_tree(tmp_path / "functions" / name, {"index.py": code})
        functions.append({"name": name, "source": f"functions/{name}"})
        emulator.emulator.create_function(name, timeout=1 if name == "slow" else 3)
    write_config(tmp_path, endpoint=emulator.url, functions=functions)
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def push(capsys: pytest.CaptureFixture[str], *names: str) -> None:
    assert main(["push", *names]) == 0
    capsys.readouterr()


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["invoke", *args])
    out, err = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in out and secret not in err
    return code, out, err


def json_events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def set_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_invoke_prints_status_result_and_log_tail(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    push(capsys, "echo")
    code, out, err = invoke(capsys, "echo")
    assert (code, err) == (0, "")
    head, *log = out.splitlines()
    match = LINE.match(head)
    assert match, head
    assert (match["function"], match["status"]) == ("echo", "200")
    assert json.loads(match["result"]) == {"hello": "world", "version": 1}  # no event: {}
    assert all(line.startswith("    | ") for line in log)
    assert "    | got []" in log
    assert "Start invoke request" in log[0] and "Finish invoke request" in log[-1]


def test_json_is_one_invoked_event_with_status_result_log_and_ms(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    push(capsys, "echo")
    code, out, err = invoke(capsys, "echo", "--json")
    assert (code, err) == (0, "")
    (event,) = json_events(out)
    assert set(event) == {"event", "ts", "function", "status", "result", "log", "ms"}
    assert (event["event"], event["function"], event["status"]) == ("invoked", "echo", 200)
    assert json.loads(event["result"]) == {"hello": "world", "version": 1}  # the JSON-encoded return value
    assert "got []\n" in event["log"]
    assert isinstance(event["ms"], int) and event["ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["ts"])


def test_a_raising_handler_exits_1_with_a_readable_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    push(capsys, "boom")
    code, out, err = invoke(capsys, "boom")
    assert code == 1
    assert err == "Error: boom: the handler failed with status 500: ValueError: bad input: nobody\n"
    match = LINE.match(out.splitlines()[0])
    assert match and match["status"] == "500"
    assert match["failure"] == "ValueError: bad input: nobody"
    assert "    | ValueError: bad input: nobody" in out.splitlines()  # the traceback is in the log tail


def test_a_raising_handler_in_json_mode_is_invoked_then_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    push(capsys, "boom")
    code, out, err = invoke(capsys, "--json", "boom")
    assert code == 1
    invoked, error = json_events(out)
    assert (invoked["event"], invoked["status"]) == ("invoked", 500)
    assert json.loads(invoked["result"])["errorMessage"] == "bad input: nobody"
    assert (error["event"], error["code"], error["retryable"]) == ("error", "function", False)
    assert error["message"] == "boom: the handler failed with status 500: ValueError: bad input: nobody"
    assert err == f"Error: {error['message']}\n"


def test_a_handler_over_its_timeout_is_stopped_and_reported(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    push(capsys, "slow")
    started = time.monotonic()
    code, out, _ = invoke(capsys, "slow", "--json")
    assert time.monotonic() - started < 10  # killed after its 1 s timeout, not after the 30 s sleep
    assert code == 1
    invoked, error = json_events(out)
    assert invoked["status"] == 408
    assert json.loads(invoked["result"])["errorType"] == "TimeoutError"
    assert error["message"].startswith("slow: the handler failed with status 408: TimeoutError: ")
    assert "going to sleep" in invoked["log"]


def test_the_log_tail_of_a_print_heavy_handler_is_its_last_4_kb(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    push(capsys, "chatty")
    code, out, _ = invoke(capsys, "chatty", "--json")
    assert code == 0
    (event,) = json_events(out)
    log = event["log"]
    assert 3500 < len(log.encode()) <= 4096
    assert "log line 2999\n" in log and "log line 0000" not in log
    assert "Finish invoke request" in log.splitlines()[-1]
    # A person sees the last lines of that tail under the `invoked` line.
    code, out, _ = invoke(capsys, "chatty")
    head, *log = out.splitlines()
    match = LINE.match(head)
    assert code == 0 and match and json.loads(match["result"]) == "done"
    assert log[-2] == "    | log line 2999" and len(log) <= 15


def test_event_from_stdin(project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    push(capsys, "echo")
    set_stdin(monkeypatch, '{"name": "from stdin", "ünï": 1}'.encode())
    code, out, _ = invoke(capsys, "echo", "--event", "-", "--json")
    (event,) = json_events(out)
    assert code == 0
    assert json.loads(event["result"])["hello"] == "from stdin"
    assert "got ['name', 'ünï']" in event["log"]


def test_empty_stdin_is_an_empty_event(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    push(capsys, "echo")
    set_stdin(monkeypatch, b"")
    code, out, _ = invoke(capsys, "echo", "--event", "-", "--json")
    assert code == 0 and "got []" in json_events(out)[0]["log"]


def test_event_from_a_file_and_from_invoke_event(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    make_tree(project / "events", {"echo.json": '{"name": "configured"}', "other.json": '{"name": "flag"}'})
    write_config(
        project,
        endpoint=emulator.url,
        functions=[{"name": "echo", "source": "functions/echo", "invoke_event": "events/echo.json"}],
    )
    push(capsys, "echo")
    results = []
    for args in ((), ("--event", "events/other.json"), ("--event", str(project / "events" / "other.json"))):
        code, out, _ = invoke(capsys, "echo", "--json", *args)
        assert code == 0
        results.append(json.loads(json_events(out)[0]["result"])["hello"])
    assert results == ["configured", "flag", "flag"]  # --event wins over invoke_event


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Error: cannot read the event file missing.json: No such file or directory\n"),
        (b"{not json", "Error: the event from bad.json is not JSON: Expecting property name enclosed in double quotes"),
        (b"\xff\xfe\x00garbage", "Error: the event from bad.json is not JSON: "),
    ],
    ids=["missing", "not-json", "not-text"],
)
def test_a_bad_event_file_is_a_usage_error_and_nothing_runs(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    name = "missing.json" if content is None else "bad.json"
    if content is not None:
        (project / name).write_bytes(content)
    code, out, err = invoke(capsys, "echo", "--event", name)
    assert (code, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1
    assert emulator.emulator.calls("invoke") == 0


def test_a_missing_invoke_event_file_names_its_path(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(
        project,
        endpoint=emulator.url,
        functions=[{"name": "echo", "source": "functions/echo", "invoke_event": "events/gone.json"}],
    )
    code, _, err = invoke(capsys, "echo")
    assert code == 2
    assert err == f"Error: cannot read the event file {project / 'events' / 'gone.json'}: No such file or directory\n"


def test_an_event_over_6_mb_is_refused_before_sending(
    project: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_stdin(monkeypatch, b'"' + b"x" * MAX_EVENT_BYTES + b'"')
    code, _, err = invoke(capsys, "echo", "--event", "-")
    assert code == 2
    assert err == f"Error: the event from stdin is {MAX_EVENT_BYTES + 2} bytes; a sync invocation takes at most 6 MB\n"
    assert emulator.emulator.calls("invoke") == 0


def test_unknown_local_and_remote_functions(project: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "nope")
    assert code == 2 and err == "Error: unknown function 'nope'; fgsync.toml defines: boom, chatty, echo, slow\n"
    make_tree(project / "functions" / "ghost", {"index.py": ECHO_PY})
    write_config(project, endpoint=emulator.url, functions=[{"name": "ghost", "source": "functions/ghost"}])
    code, _, err = invoke(capsys, "ghost")
    assert code == 1
    assert err.startswith("Error: ") and "FSS.1051" in err and "Not found the function" in err


def test_an_updated_function_runs_its_new_code(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    push(capsys, "echo")
    _, out, _ = invoke(capsys, "echo", "--json")
    assert json.loads(json_events(out)[0]["result"])["version"] == 1
    (project / "functions" / "echo" / "index.py").write_text(ECHO_PY.replace('"version": 1', '"version": 2'))
    push(capsys, "echo")
    _, out, _ = invoke(capsys, "echo", "--json")
    assert json.loads(json_events(out)[0]["result"])["version"] == 2


def test_describe_failure_without_an_error_object() -> None:
    def failed(result: str, status: int = 500) -> Invocation:
        return Invocation("id", status, result, "", 1, True)

    assert describe_failure(failed("")) == "the handler failed with status 500"
    assert describe_failure(failed('"plain text"')) == 'the handler failed with status 500: "plain text"'
    assert describe_failure(failed("x" * 500)) == "the handler failed with status 500: " + "x" * 200 + "…"
    assert describe_failure(failed('{"errorMessage": "only a message"}', 502)) == (
        "the handler failed with status 502: only a message"
    )
    assert describe_failure(failed('{"errorType": "KeyError", "errorMessage": "first\\n  second"}')) == (
        "the handler failed with status 500: KeyError: first second"
    )
