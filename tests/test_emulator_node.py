"""Node.js handlers in the emulator: pushed with `fgsync push`, invoked with `fgsync invoke` and over HTTP.

The emulator runs them for real (`node _runner.js` per call, with the node on PATH), so these tests see what a
user sees. They need node: without it they skip, or fail under FGSYNC_REQUIRE_NODE=1 (CI).
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import AK, PASSWORD, SECRETS, SK, TOKEN, make_tree, write_config
from test_emulator import BASE, code_body, make_emulator, zip_bytes

from fgsync.cli import main
from fgsync.emulator import Emulator, serve
from fgsync.emulator.runtimes import NODE_RUNTIMES

pytestmark = pytest.mark.usefixtures("node")

TAIL = {"X-Cff-Log-Type": "tail"}
RUNTIME = "Node.js18.15"

ASYNC_JS = textwrap.dedent(
    """\
    const VERSION = 1;

    exports.handler = async (event, context) => {
      console.log("got", Object.keys(event).sort());
      context.getLogger().info("via the logger, version", VERSION);
      await new Promise((resolve) => setTimeout(resolve, 5));
      return { hello: event.name || "world", version: VERSION };
    };
    """
)

CALLBACK_JS = textwrap.dedent(
    """\
    const VERSION = 1;

    exports.handler = function (event, context, callback) {
      console.log("got", Object.keys(event).sort());
      context.getLogger().info("via the logger, version", VERSION);
      setTimeout(() => callback(null, { hello: event.name || "world", version: VERSION }), 5);
    };
    """
)


def js_zip(source: str, module: str = "index", **more: str) -> bytes:
    return zip_bytes({f"{module}.js": textwrap.dedent(source), **more})


# ----------------------------------------------------------------- through fgsync push and fgsync invoke


@pytest.fixture
def project(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Node.js function `hello` in the emulator (template code), fgsync.toml pointing at it; cwd is the project."""
    emulator.emulator.create_function("hello", runtime=RUNTIME)
    write_config(tmp_path, endpoint=emulator.url)
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def push(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", "hello"]) == 0
    out, err = capsys.readouterr()
    assert "pushed" in out, (out, err)


def invoke_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["--json", "invoke", "hello"])
    out, err = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in out and secret not in err
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("source", [ASYNC_JS, CALLBACK_JS], ids=["async", "callback"])
def test_a_pushed_function_returns_the_new_result_after_an_edit(
    project: Path, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    handler = make_tree(project / "functions" / "hello", {"index.js": source}) / "index.js"
    (project / "event.json").write_text('{"name": "ada"}')
    push(capsys)
    code, (event,), err = invoke_json(capsys)
    assert (code, err) == (0, "")
    assert (event["event"], event["status"]) == ("invoked", 200)
    assert json.loads(event["result"]) == {"hello": "world", "version": 1}  # no event file: {}
    log = event["log"].splitlines()
    assert "Start invoke request" in log[0] and "Finish invoke request" in log[-1] and "invoke Success" in log[-1]
    assert "got []" in log
    request_id = re.search(r"Start invoke request '([^']+)'", log[0])
    assert request_id and any(
        re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ {request_id[1]} INFO via the logger, version 1", line)
        for line in log
    ), log

    handler.write_text(source.replace("const VERSION = 1;", "const VERSION = 2;"))
    push(capsys)
    code = main(["--json", "invoke", "hello", "--event", "event.json"])
    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and json.loads(event["result"]) == {"hello": "ada", "version": 2}
    assert "got [ 'name' ]" in event["log"] and "via the logger, version 2" in event["log"]


def test_a_module_from_node_modules_in_the_package_is_found(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(
        project / "functions" / "hello",
        {
            "index.js": 'const shout = require("shout");\nexports.handler = async (e) => shout(e.name || "hi");\n',
            "node_modules/shout/package.json": '{"name": "shout", "version": "1.0.0", "main": "lib/shout.js"}\n',
            "node_modules/shout/lib/shout.js": "module.exports = (s) => s.toUpperCase() + '!';\n",
        },
    )
    push(capsys)
    code, (event,), _ = invoke_json(capsys)
    assert code == 0 and json.loads(event["result"]) == "HI!"


def test_a_throwing_handler_is_status_500_with_its_stack(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(
        project / "functions" / "hello",
        {"index.js": 'exports.handler = async (event) => {\n  throw new TypeError("bad input: " + event.x);\n};\n'},
    )
    push(capsys)
    code, (invoked, error), err = invoke_json(capsys)
    assert code == 1 and invoked["status"] == 500
    result = json.loads(invoked["result"])
    assert (result["errorType"], result["errorMessage"]) == ("TypeError", "bad input: undefined")
    assert result["stackTrace"][0] == "TypeError: bad input: undefined"
    assert re.search(r"at exports\.handler \(.*index\.js:2:\d+\)", result["stackTrace"][1])
    assert "_runner.js" not in invoked["result"]  # the user's frames, not the emulator's
    assert "TypeError: bad input: undefined\n    at exports.handler" in invoked["log"]
    assert "invoke Failed" in invoked["log"]
    assert error["message"] == "hello: the handler failed with status 500: TypeError: bad input: undefined"
    assert err == f"Error: {error['message']}\n"


# ----------------------------------------------------------------- over HTTP, the answer in detail


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = make_emulator()
    yield emulator
    emulator.close()


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with serve(emu) as server, httpx.Client(base_url=server.url, headers={"X-Auth-Token": TOKEN}, timeout=30) as c:
        yield c


def invoke(client: httpx.Client, name: str, event: object = None, headers: dict[str, str] | None = None) -> Any:
    return client.post(f"{BASE}/{name}/invocations", json={} if event is None else event, headers=headers or TAIL)


def create(emu: Emulator, name: str, source: str, **kwargs: Any) -> None:
    emu.create_function(name, runtime=kwargs.pop("runtime", RUNTIME), code=js_zip(source), **kwargs)


def test_context_offers_what_the_python_runner_offers(
    emu: Emulator, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUD_SDK_SK", SK)
    create(
        emu,
        "ctx",
        """
        exports.handler = async (event, context) => ({
          requestId: context.getRequestID(),
          function: context.getFunctionName(),
          greeting: context.getUserData("GREETING"),
          missing: context.getUserData("NOPE", "default"),
          absent: context.getUserData("NOPE") === undefined,
          remainingOk: 0 < context.getRemainingTimeInMilliSeconds() && context.getRemainingTimeInMilliSeconds() <= 3000,
          keys: [context.getAccessKey(), context.getSecretKey(), context.getToken()],
          more: [context.getVersion(), context.getMemorySize(), context.getPackage(), context.getProjectID()],
          logger: ["info", "warn", "error", "debug"].every((m) => typeof context.getLogger()[m] === "function"),
          env: [process.env.GREETING, process.env.RUNTIME_FUNC_NAME, process.env.CLOUD_SDK_SK === undefined],
          cwdIsCode: process.cwd() === process.env.RUNTIME_CODE_ROOT,
        });
        """,
        user_data={"GREETING": "hi"},
        memory_size=256,
    )
    response = invoke(client, "ctx")
    body = response.json()
    assert body["status"] == 200 and response.headers["X-Is-Func-Err"] == "false"
    assert response.headers["X-Func-Err-Code"] == "0"
    assert json.loads(body["result"]) == {
        "requestId": body["request_id"],
        "function": "ctx",
        "greeting": "hi",
        "missing": "default",
        "absent": True,
        "remainingOk": True,
        "keys": ["", "", ""],
        "more": ["latest", 256, "default", emu.project_id],
        "logger": True,
        "env": ["hi", "ctx", True],
        "cwdIsCode": True,
    }
    summary = json.loads(response.headers["X-Cff-Invoke-Summary"])
    assert summary["memorySize"] == 256 and summary["memoryUsed"] > 0 and summary["duration"] > 0
    for secret in (SK, TOKEN, PASSWORD, AK):
        assert secret not in body["result"]


def test_console_and_logger_lines_reach_the_tail_between_start_and_finish(emu: Emulator, client: httpx.Client) -> None:
    create(
        emu,
        "logs",
        """
        exports.handler = async (event, context) => {
          console.log("to stdout %d", 1);
          console.error("to stderr");
          const log = context.getLogger();
          log.info("an info"); log.warn("a warning"); log.error("an error"); log.debug({ deep: [1, 2] });
          return "done";
        };
        """,
    )
    response = invoke(client, "logs")
    body = response.json()
    rid = body["request_id"]
    lines = body["log"].splitlines()
    assert lines[0].endswith(f"Start invoke request '{rid}', version: latest")
    assert f"Finish invoke request '{rid}'(invoke Success)" in lines[-1]
    middle = [re.sub(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", "", line) for line in lines[1:-1]]
    assert middle == [
        "to stdout 1",
        "to stderr",
        f"{rid} INFO an info",
        f"{rid} WARN a warning",
        f"{rid} ERROR an error",
        f"{rid} DEBUG {{ deep: [ 1, 2 ] }}",
    ]
    assert base64.b64decode(response.headers["X-Cff-Function-Log"]).decode() == body["log"]
    quiet = invoke(client, "logs", headers={"X-Cff-Log-Type": "None"})
    assert quiet.json()["log"] == "" and "X-Cff-Function-Log" not in quiet.headers
    raw = invoke(client, "logs", headers={"X-CFF-Request-Version": "v0"})
    assert raw.content == b'"done"'


@pytest.mark.parametrize(
    "source",
    [
        'exports.handler = async () => { console.log("about to fail"); throw new RangeError("out of range"); };',
        'exports.handler = () => { console.log("about to fail");'
        ' return Promise.reject(new RangeError("out of range")); };',
        'exports.handler = (e, c, cb) => { console.log("about to fail"); cb(new RangeError("out of range")); };',
        'exports.handler = (e, c, cb) => { console.log("about to fail"); throw new RangeError("out of range"); };',
        'exports.handler = async () => { console.log("about to fail");'
        ' setTimeout(() => { throw new RangeError("out of range"); }, 1); await new Promise(() => {}); };',
    ],
    ids=["thrown", "rejected", "callback-error", "callback-style-throws", "uncaught-in-a-timer"],
)
def test_a_failing_handler_is_a_500_with_name_message_and_stack(
    emu: Emulator, client: httpx.Client, source: str
) -> None:
    create(emu, "boom", source)
    response = invoke(client, "boom")
    body = response.json()
    assert body["status"] == 500
    assert response.headers["X-Is-Func-Err"] == "true" and response.headers["X-Func-Err-Code"] == "500"
    error = json.loads(body["result"])
    assert set(error) == {"errorMessage", "errorType", "stackTrace"}
    assert (error["errorType"], error["errorMessage"]) == ("RangeError", "out of range")
    assert error["stackTrace"][0] == "RangeError: out of range" and "index.js:1:" in error["stackTrace"][1]
    assert "about to fail\nRangeError: out of range\n    at " in body["log"] and "invoke Failed" in body["log"]


def test_a_thrown_value_that_is_not_an_error_still_reads(emu: Emulator, client: httpx.Client) -> None:
    create(emu, "plain", 'exports.handler = async () => { throw "just a string"; };')
    body = invoke(client, "plain").json()
    assert body["status"] == 500
    assert json.loads(body["result"]) == {"errorMessage": "just a string", "errorType": "Error", "stackTrace": []}
    assert "Error: just a string" in body["log"]


def test_a_timeout_is_the_timeout_status(emu: Emulator, client: httpx.Client) -> None:
    create(
        emu,
        "slow",
        'exports.handler = async () => { console.log("sleeping"); await new Promise((r) => setTimeout(r, 60000)); };',
        timeout=1,
    )
    started = time.monotonic()
    response = invoke(client, "slow")
    assert 1.0 <= time.monotonic() - started < 10
    body = response.json()
    assert body["status"] == 408 and response.headers["X-Is-Func-Err"] == "true"
    error = json.loads(body["result"])
    assert error["errorType"] == "TimeoutError" and "timeout" in error["errorMessage"]
    assert "sleeping" in body["log"]


def test_a_callback_still_pending_at_the_timeout_is_a_timeout(emu: Emulator, client: httpx.Client) -> None:
    create(emu, "late", "exports.handler = (e, c, cb) => { setTimeout(() => cb(null, 1), 60000); };", timeout=1)
    assert invoke(client, "late").json()["status"] == 408


@pytest.mark.parametrize(
    "source",
    ["exports.handler = (event, context, callback) => {};", "exports.handler = async () => new Promise(() => {});"],
    ids=["callback-never-called", "promise-never-settles"],
)
def test_a_handler_that_can_never_answer_says_so_at_once(emu: Emulator, client: httpx.Client, source: str) -> None:
    create(emu, "forgot", source, timeout=30)
    started = time.monotonic()
    body = invoke(client, "forgot").json()
    assert time.monotonic() - started < 10 and body["status"] == 500
    error = json.loads(body["result"])
    assert error["errorType"] == "HandlerError" and "never answered" in error["errorMessage"]


@pytest.mark.parametrize(
    ("files", "handler", "expected"),
    [
        ({"index.js": "exports.handler = async ( => 1;\n"}, "index.handler", "SyntaxError"),
        ({"main.js": "exports.handler = async () => 1;\n"}, "index.handler", "Cannot find module 'index' (index.js)"),
        ({"index.js": "exports.other = () => 1;\n"}, "index.handler", "index has no function exports.handler"),
        ({"index.js": 'require("not-installed");\n'}, "index.handler", "Cannot find module 'not-installed'"),
        ({"index.js": "exports.handler = async () => 1;\n"}, "handler", "bad handler 'handler'"),
    ],
    ids=["syntax-error", "missing-module", "missing-export", "missing-dependency", "bad-handler-name"],
)
def test_a_handler_that_cannot_load_is_reported_like_pythons(
    emu: Emulator, client: httpx.Client, files: dict[str, str], handler: str, expected: str
) -> None:
    emu.create_function("broken", runtime=RUNTIME, handler=handler, code=zip_bytes(files))
    response = invoke(client, "broken")
    body = response.json()
    assert body["status"] == 500 and response.headers["X-Is-Func-Err"] == "true"
    error = json.loads(body["result"])
    assert expected in error["errorMessage"] or expected == error["errorType"], error
    if handler == "index.handler":
        assert error["errorMessage"].startswith("cannot load handler 'index.handler': ")


def test_a_syntax_error_points_at_the_line_in_the_log(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function("typo", runtime=RUNTIME, code=zip_bytes({"index.js": "const a = 1;\nconst b = ;\n"}))
    body = invoke(client, "typo").json()
    error = json.loads(body["result"])
    assert error["errorType"] == "SyntaxError"
    assert error["errorMessage"] == "cannot load handler 'index.handler': Unexpected token ';'"
    assert re.search(r"index\.js:2\nconst b = ;\n +\^", body["log"]), body["log"]


def test_a_handler_in_a_subfolder_and_node_modules_in_the_zip(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function(
        "nested",
        runtime=RUNTIME,
        handler="src/app.main",
        code=zip_bytes(
            {
                "src/app.js": 'const pad = require("left-pad");\nexports.main = async (e) => pad(e.v, 5, "*");\n',
                "node_modules/left-pad/index.js": "module.exports = (s, n, c) => String(s).padStart(n, c);\n",
            }
        ),
    )
    body = invoke(client, "nested", {"v": "ab"}).json()
    assert body["status"] == 200 and json.loads(body["result"]) == "***ab"


def test_a_module_from_node_modules_in_an_attached_dependency_is_found(emu: Emulator, client: httpx.Client) -> None:
    """FunctionGraph merges dependency packages into the code folder: `require` finds their node_modules."""
    version = emu.create_dependency_version(
        "fgsync-default-api",
        zip_bytes({"node_modules/shout/index.js": "module.exports = (s) => String(s).toUpperCase() + '!';\n"}),
        runtime=RUNTIME,
    )
    source = 'const shout = require("shout");\nexports.handler = async (e) => shout(e.v);\n'
    emu.create_function("api", runtime=RUNTIME, code=js_zip(source), depend_version_list=[version.id])
    body = invoke(client, "api", {"v": "hi"}).json()
    assert body["status"] == 200, body["log"]
    assert json.loads(body["result"]) == "HI!"
    emu.create_function("bare", runtime=RUNTIME, code=js_zip(source))  # the same code without the dependency
    body = invoke(client, "bare", {"v": "hi"}).json()
    assert body["status"] == 500 and "Cannot find module 'shout'" in body["log"]


def test_a_crashed_invocation_does_not_break_the_next(emu: Emulator, client: httpx.Client) -> None:
    create(
        emu,
        "flaky",
        """
        let calls = 0;
        exports.handler = async (event) => {
          calls += 1;
          if (event.crash) { process.exit(7); }
          return calls;
        };
        """,
    )
    crashed = invoke(client, "flaky", {"crash": True}).json()
    assert crashed["status"] == 500
    assert "exited with code 7" in json.loads(crashed["result"])["errorMessage"]
    # A fresh node per invocation: module state never leaks from one call into the next.
    assert [json.loads(invoke(client, "flaky").json()["result"]) for _ in range(2)] == [1, 1]


def test_concurrent_invocations_keep_their_own_logs_and_results(emu: Emulator, client: httpx.Client) -> None:
    create(
        emu,
        "par",
        """
        exports.handler = async (event, context) => {
          for (let i = 0; i < 5; i++) {
            console.log("call", event.n, "step", i);
            await new Promise((r) => setTimeout(r, 20));
          }
          return event.n;
        };
        """,
    )
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda n: invoke(client, "par", {"n": n}).json(), range(4)))
    for n, body in enumerate(bodies):
        assert json.loads(body["result"]) == n
        calls = set(re.findall(r"^call (\d+) step", body["log"], re.M))
        assert calls == {str(n)}, body["log"]


def test_results_are_json_and_a_handler_may_leave_timers_behind(emu: Emulator, client: httpx.Client) -> None:
    create(emu, "nothing", "exports.handler = async () => {};")
    assert invoke(client, "nothing").json()["result"] == "null"
    create(emu, "timers", 'exports.handler = async () => { setInterval(() => {}, 1000); return "back"; };')
    started = time.monotonic()
    assert json.loads(invoke(client, "timers").json()["result"]) == "back"
    assert time.monotonic() - started < 2.5  # answered at once, not at the 3 s timeout
    create(emu, "circular", "exports.handler = async () => { const a = {}; a.self = a; return a; };")
    body = invoke(client, "circular").json()
    assert body["status"] == 500 and "not JSON" in json.loads(body["result"])["errorMessage"]


def test_a_print_heavy_handler_gets_a_4_kb_tail_and_text_stays_utf8(emu: Emulator, client: httpx.Client) -> None:
    create(
        emu,
        "chatty",
        """
        exports.handler = async () => {
          for (let i = 0; i < 20000; i++) { console.log("line " + String(i).padStart(5, "0") + " " + ".".repeat(40)); }
          console.log("héllo ✓");
          return { text: "naïve ✓" };
        };
        """,
    )
    body = invoke(client, "chatty").json()
    assert body["status"] == 200 and json.loads(body["result"]) == {"text": "naïve ✓"}
    assert 4000 < len(body["log"].encode()) <= 4096
    assert "line 19999" in body["log"] and "héllo ✓\n" in body["log"] and "line 00000" not in body["log"]


def test_updated_code_is_what_runs_next(emu: Emulator, client: httpx.Client) -> None:
    create(emu, "hello", "exports.handler = async () => 'v1';")
    assert json.loads(invoke(client, "hello").json()["result"]) == "v1"
    put = client.put(f"{BASE}/hello/code", json=code_body(js_zip("exports.handler = async () => 'v2';")))
    assert put.status_code == 200
    assert json.loads(invoke(client, "hello").json()["result"]) == "v2"


def test_inline_node_code_runs_as_the_handlers_file(emu: Emulator, client: httpx.Client) -> None:
    emu.create_function("inline", runtime=RUNTIME, handler="main.entry")
    source = b"exports.entry = async (event) => 'inline ' + event.v;\n"
    body = {"code_type": "inline", "func_code": {"file": base64.b64encode(source).decode()}}
    assert client.put(f"{BASE}/inline/code", json=body).status_code == 200
    assert json.loads(invoke(client, "inline", {"v": "ok"}).json()["result"]) == "inline ok"


@pytest.mark.parametrize("runtime", NODE_RUNTIMES)
def test_every_node_runtime_runs_the_template_code(emu: Emulator, client: httpx.Client, runtime: str) -> None:
    emu.create_function("tpl", runtime=runtime)
    body = invoke(client, "tpl", {"a": 1}).json()
    assert body["status"] == 200 and json.loads(json.loads(body["result"])["body"])["event"] == {"a": 1}


def test_fgsync_emulator_function_with_a_node_runtime_gets_a_working_index_js(tmp_path: Path) -> None:
    from test_emulator_cli import Running

    emu = Running(["--function", f"js:{RUNTIME}"], tmp_path)
    try:
        assert f"js ({RUNTIME})" in emu.banner and "no node on PATH" not in emu.banner
        project, token = emu.value("project id"), emu.value("token")
        with httpx.Client(base_url=emu.url, headers={"X-Auth-Token": token}, timeout=30) as c:
            response = c.post(f"/v2/{project}/fgs/functions/js/invocations", json={"a": 1}, headers=TAIL)
        body = response.json()
        assert body["status"] == 200, body
        result = json.loads(body["result"])
        assert result["statusCode"] == 200 and json.loads(result["body"]) == {
            "hello": "FunctionGraph",
            "event": {"a": 1},
        }
    finally:
        emu.proc.terminate()
        emu.proc.communicate(timeout=30)
