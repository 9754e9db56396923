"""docs/editors.md, checked against what fgsync really prints.

The VS Code `tasks.json` and the Vim `errorformat` are read from the page itself. A real `fgsync watch --invoke`
(a subprocess against the emulator, stderr merged into stdout as in an editor's terminal) goes through a
success, a handler that raises, a refused upload (403), a fix, an identical rewrite and a package error. Its
lines are matched with the page's regexes, replayed through a model of VS Code's background problem collector,
and parsed with the `errorformat`, by a small converter and by Vim itself when it is installed.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from conftest import AK, DOMAIN, PASSWORD, PROJECT_ID, REGION, SECRETS, SK, TOKEN, USER, make_tree, write_config

from fgsync.cli.output import Reporter
from fgsync.events import error_event

DOC = Path(__file__).resolve().parent.parent / "docs" / "editors.md"

GOOD_PY = "def handler(event, context):\n    return {'version': %d}\n"
RAISING_PY = "def handler(event, context):\n    raise ValueError('broken on purpose')\n"


def fenced(language: str) -> list[str]:
    """The fenced blocks of docs/editors.md in that language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def tasks() -> dict[str, dict[str, Any]]:
    (block,) = fenced("json")
    return {task["label"]: task for task in json.loads(block)["tasks"]}


class Watch:
    """`fgsync watch ...` as a subprocess; stdout and stderr together, read line by line on a thread."""

    def __init__(self, project: Path, *args: str) -> None:
        # Started from a module-scoped fixture, before the hygiene fixture runs: HOME is set here.
        home = project / ".home"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FGSYNC_", "CLOUD_SDK_", "XDG_"))}
        env.update(FGSYNC_TOKEN=TOKEN, FGSYNC_CACHE_DIR=str(home / "cache"), PYTHONUNBUFFERED="1", HOME=str(home))
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # FGSYNC_TOKEN wins; never the real one
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fgsync", "watch", *args],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait(self, predicate: Callable[[str], bool], *, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until `count` lines in all satisfy the predicate."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for line in self.lines if predicate(line)) < count:
                assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.lines}"
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; output so far: {self.lines}"
                self._cond.wait(min(left, 0.1))

    def stop(self) -> int:
        try:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)
            assert self.proc.stdout is not None
            self.proc.stdout.close()


class Collector:
    """VS Code's WatchingProblemCollector (src/vs/workbench/contrib/tasks/common/problemCollectors.ts), reduced
    to what these matchers use: one owner, single-line patterns, markers delivered at once.

    - A line that begins a cycle (matcher idle) or ends one (matcher active) is consumed: no problem match.
    - Begin: drop the cycle's marker cache, and note every resource that has markers, to clean at the end.
    - A problem removes its resource from that note and replaces the resource's markers with the cycle's.
    - End: remove the markers of the resources still noted.
    """

    def __init__(self, matchers: list[dict[str, Any]], workspace: Path) -> None:
        self.matchers = matchers
        self.workspace = str(workspace)
        self.background = [m for m in matchers if "background" in m]
        self.active = {i: bool(m["background"].get("activeOnStart")) for i, m in enumerate(self.background)}
        self.markers: dict[str, dict[str, dict[str, Optional[str]]]] = {}  # resource -> message -> marker
        self.cache: dict[str, dict[str, dict[str, Optional[str]]]] = {}
        self.to_clean: set[str] = set()
        self.begins: list[str] = []
        self.ends: list[str] = []

    @property
    def busy(self) -> bool:
        return any(self.active.values())

    def feed(self, line: str) -> None:
        if self._begin(line) or self._end(line):
            return
        for matcher in self.matchers:
            pattern = matcher["pattern"]
            match = re.search(pattern["regexp"], line)
            if not match:
                continue
            resource = self._resource(matcher, match.group(pattern["file"]))
            message = match.group(pattern["message"])
            if pattern.get("kind") != "file":  # a location: VS Code drops a match without a line
                assert match.group(pattern["line"]), line
                message = f"{match.group(pattern['line'])}:{match.group(pattern['column'])}: {message}"
            marker = {"message": message, "code": None, "severity": matcher["severity"]}
            if "code" in pattern:
                marker["code"] = match.group(pattern["code"])
            self.to_clean.discard(resource)
            self.cache.setdefault(resource, {})[marker["message"]] = marker
            self.markers[resource] = dict(self.cache[resource])
            return

    def problems(self) -> dict[str, list[str]]:
        """resource (relative to the workspace) -> "code: message" (or "line:column: message") of each problem."""
        out = {}
        for resource, markers in self.markers.items():
            key = os.path.relpath(resource, self.workspace)
            out[key] = [f"{m['code']}: {m['message']}" if m["code"] else str(m["message"]) for m in markers.values()]
        return out

    def _resource(self, matcher: dict[str, Any], file: str) -> str:
        kind, prefix = matcher["fileLocation"]
        prefix = prefix.replace("${workspaceFolder}", self.workspace)
        assert kind in ("relative", "autoDetect")
        return file if kind == "autoDetect" and os.path.isabs(file) else os.path.join(prefix, file)

    def _begin(self, line: str) -> bool:
        began = False
        for i, matcher in enumerate(self.background):
            if re.search(matcher["background"]["beginsPattern"], line) and not self.active[i]:
                self.active[i] = began = True
                self.begins.append(line)
                self.cache.clear()
                self.to_clean |= set(self.markers)
        return began

    def _end(self, line: str) -> bool:
        ended = False
        for i, matcher in enumerate(self.background):
            if re.search(matcher["background"]["endsPattern"], line) and self.active[i]:
                self.active[i] = False
                ended = True
                self.ends.append(line)
                for resource in self.to_clean:
                    self.markers.pop(resource, None)
                self.to_clean.clear()
                self.cache.clear()
        return ended


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real `fgsync watch --invoke` through every case the recipes care about (about 5 s)."""
    from fgsync.emulator import Emulator, serve

    project = tmp_path_factory.mktemp("editors")
    src = make_tree(project / "functions" / "hello", {"index.py": GOOD_PY % 1})
    make_tree(project / "events", {"hello.json": "{}"})
    emu = Emulator(
        project_id=PROJECT_ID, region=REGION, token=TOKEN, ak=AK, sk=SK, user=USER, password=PASSWORD, domain=DOMAIN
    )
    emu.create_function("hello")
    steps: dict[str, list[str]] = {}
    with serve(emu, host="127.0.0.1", port=0) as server:
        write_config(
            project,
            endpoint=server.url,
            functions=[{"name": "hello", "source": "functions/hello", "invoke_event": "events/hello.json"}],
        )
        watch = Watch(project, "--invoke", "--debounce-ms", "50")
        try:
            mark = 0

            def step(name: str, action: Callable[[], None], predicate: Callable[[str], bool], count: int = 1) -> None:
                nonlocal mark
                action()
                watch.wait(predicate, count=count)
                with watch._cond:  # an indented log line may land in the next step: it matches nothing
                    steps[name] = watch.lines[mark:]
                    mark = len(watch.lines)

            def write(text: str) -> Callable[[], None]:
                return lambda: (src / "index.py").write_text(text)

            def invoked(status: int) -> Callable[[str], bool]:
                return lambda line: f"invoked: status {status} " in line

            step("start", lambda: None, invoked(200))
            step("raises", write(RAISING_PY), invoked(500))
            emu.inject("update_code", status=403, code="FSS.0403", message="no permission to update the code")
            step("refused", write(GOOD_PY % 2), lambda line: "  error FSS.0403: " in line)
            step("fixed", write(GOOD_PY % 3), invoked(200), count=2)
            step("same", write(GOOD_PY % 3), lambda line: "  skipped (unchanged)" in line)
            step(
                "symlink", lambda: (src / "link").symlink_to("/etc/hostname"), lambda line: "  error package: " in line
            )
            step("unlinked", lambda: (src / "link").unlink(), lambda line: "  skipped (unchanged)" in line, count=2)
        finally:
            code = watch.stop()
        assert code == 0, watch.lines
    assert emu.uploads("hello") == 3  # start, raises, fixed
    output = "\n".join(watch.lines)
    for secret in SECRETS:
        assert secret not in output
    return {"project": project, "steps": steps, "lines": watch.lines}


def kind(line: str) -> str:
    """What a line of fgsync's human output is: 'packaged', 'error', 'log' (an indented detail line) …"""
    if line.startswith("    | "):
        return "log"
    match = re.match(r"^\d\d:\d\d:\d\d (?:\S+  )?(\w+)", line)
    return match.group(1) if match else "other"


def test_the_watch_task_patterns_match_the_right_lines_of_real_output(session: dict[str, Any]) -> None:
    (errors, invoked, *configs) = tasks()["fgsync watch"]["problemMatcher"]
    background = errors["background"]
    lines: list[str] = session["lines"]
    kinds = {kind(line) for line in lines}
    assert {"watching", "changed", "packaged", "pushed", "skipped", "invoked", "error", "log"} <= kinds
    for line in lines:
        k = kind(line)
        assert bool(re.search(background["beginsPattern"], line)) == (k == "packaged"), line
        assert bool(re.search(background["endsPattern"], line)) == (k in ("pushed", "skipped", "changed")), line
        assert bool(re.search(errors["pattern"]["regexp"], line)) == (k == "error"), line
        failed_invoke = k == "invoked" and not line.split("invoked: status ")[1].startswith("200 ")
        assert bool(re.search(invoked["pattern"]["regexp"], line)) == failed_invoke, line
        assert not any(re.search(config["pattern"]["regexp"], line) for config in configs), line
    (refused,) = [line for line in session["steps"]["refused"] if kind(line) == "error"]
    match = re.search(errors["pattern"]["regexp"], refused)
    assert match
    assert match.group(errors["pattern"]["file"]) == "hello"
    assert match.group(errors["pattern"]["code"]) == "FSS.0403"
    assert match.group(errors["pattern"]["message"]).startswith("no permission to update the code (HTTP 403")


def test_a_retry_line_ends_the_cycle_and_its_message_drops_the_retry_note() -> None:
    # fgsync's own renderer, the same that writes to the terminal
    err = io.StringIO()
    Reporter(out=io.StringIO(), err=err).emit(
        error_event("hello", "network", "connection refused", retryable=True, retry_in_ms=2000)
    )
    line = err.getvalue().rstrip("\n")
    assert re.fullmatch(r"\d\d:\d\d:\d\d hello  error network: connection refused — retrying in 2\.0 s", line)
    errors = tasks()["fgsync watch"]["problemMatcher"][0]
    assert re.search(errors["background"]["endsPattern"], line)
    match = re.search(errors["pattern"]["regexp"], line)
    assert match and match.group(3) == "connection refused"


def test_an_error_without_a_code_is_read_by_both_patterns() -> None:
    err = io.StringIO()
    Reporter(out=io.StringIO(), err=err).emit(error_event("hello", "error", "ShowFunctionCode answered an empty body"))
    line = err.getvalue().rstrip("\n")
    assert re.fullmatch(r"\d\d:\d\d:\d\d hello  error: ShowFunctionCode answered an empty body", line)
    errors = tasks()["fgsync watch"]["problemMatcher"][0]
    match = re.search(errors["pattern"]["regexp"], line)
    assert match and match.group(1) == "hello" and match.group(2) is None
    assert match.group(3) == "ShowFunctionCode answered an empty body"
    (entry,) = efm_parse(vim_settings()["errorformat"], [line])
    assert entry == {"module": "hello", "type": "e", "text": "ShowFunctionCode answered an empty body"}


def test_vs_code_shows_each_failure_once_and_clears_it_after_the_next_good_sync(session: dict[str, Any]) -> None:
    collector = Collector(tasks()["fgsync watch"]["problemMatcher"], session["project"])
    seen: dict[str, tuple[dict[str, list[str]], bool]] = {}
    for name, lines in session["steps"].items():
        for line in lines:
            collector.feed(line)
        seen[name] = (collector.problems(), collector.busy)
    where = os.path.join("functions", "hello")
    assert seen["start"] == ({}, False)
    assert len(seen["raises"][0][where]) == 1 and seen["raises"][0][where][0].startswith("status 500 ")
    assert "ValueError" in seen["raises"][0][where][0]
    assert seen["refused"][0] == {where: [f"FSS.0403: {m}" for m in _messages(session, "refused")]}
    assert seen["refused"][1]  # busy until a sync of this function goes through
    assert seen["fixed"] == ({}, False)
    assert seen["same"] == ({}, False)
    assert seen["symlink"][0] == {where: [f"package: {m}" for m in _messages(session, "symlink")]}
    assert seen["unlinked"] == ({}, False)
    # a cycle per sync that got as far as packaging, but the first (activeOnStart): raises, refused, fixed,
    # same, unlinked
    assert len(collector.begins) == 5


def _messages(session: dict[str, Any], step: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in session["steps"][step] if kind(line) == "error"]


def fgsync_push(folder: Path) -> list[str]:
    """The stderr lines of a real `fgsync push` in that folder, which must fail with a config error (exit 2)."""
    result = subprocess.run(
        [sys.executable, "-m", "fgsync", "push"], cwd=folder, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    return result.stderr.splitlines()


def toml_problems(lines: list[str], folder: Path) -> dict[str, list[str]]:
    """What each task's fgsync.toml matchers make of these lines (they must agree)."""
    seen = []
    for label in ("fgsync watch", "fgsync push"):
        matchers = [m for m in tasks()[label]["problemMatcher"] if "toml" in m["pattern"]["regexp"]]
        assert len(matchers) == 2
        collector = Collector(matchers, folder)
        for line in lines:
            collector.feed(line)
        seen.append(collector.problems())
    assert seen[0] == seen[1]
    return seen[0]


@pytest.mark.parametrize("problems", [1, 2])
def test_a_config_error_becomes_a_problem_on_fgsync_toml(tmp_path: Path, problems: int) -> None:
    write_config(tmp_path, extra="bogus = 1")
    if problems == 1:
        (tmp_path / "functions" / "hello").mkdir(parents=True)  # else a second problem: no source folder
    lines = fgsync_push(tmp_path)
    assert len(lines) == (1 if problems == 1 else 3)
    # each problem is "<file>: <message>", after "Error: " or, when there are several, indented by two spaces
    messages = [re.sub(r"^(Error: |  )fgsync\.toml: ", "", line) for line in lines if "fgsync.toml: " in line]
    assert len(messages) == problems and "bogus: unknown key" in messages[0]
    assert toml_problems(lines, tmp_path) == {"fgsync.toml": messages}
    # Vim: one entry, the indented lines appended to the `Error:` line's text
    (entry,) = efm_parse(vim_settings()["errorformat"], lines)
    assert entry == {"type": "E", "text": "\n".join(line.split(" ", 1)[1].lstrip() for line in lines)}


def test_a_toml_syntax_error_points_at_its_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "fgsync.toml").write_text('region = "cn-north-4"\nproject_id "0123"\n')
    (line,) = fgsync_push(tmp_path)
    assert line.startswith("Error: fgsync.toml: line 2, column 12: invalid TOML: ")
    message = line.split(": ", 3)[3]
    assert toml_problems([line], tmp_path) == {"fgsync.toml": [f"2:12: {message}"]}
    (entry,) = efm_parse(vim_settings()["errorformat"], [line])
    assert entry == {"type": "E", "file": "fgsync.toml", "lnum": "2", "col": "12", "text": message}
    if shutil.which("vim"):  # and Vim itself
        (item,) = vim_quickfix([line], tmp_path)
        assert (item["lnum"], item["col"], item["type"], item["text"]) == (2, 12, "E", message)
        assert item["bufnr"] > 0 and item["valid"]


def test_the_push_task_matches_the_error_lines_of_a_failed_push(session: dict[str, Any]) -> None:
    errors = tasks()["fgsync push"]["problemMatcher"][0]
    watch_errors = tasks()["fgsync watch"]["problemMatcher"][0]
    assert errors["pattern"] == watch_errors["pattern"]  # push prints the same lines
    assert "background" not in errors and not tasks()["fgsync push"].get("isBackground")


# --- Vim -----------------------------------------------------------------------------------------------------


def vim_settings() -> dict[str, str]:
    """The `set makeprg=...` and `set errorformat=...` values of the page's first vim block, as Vim stores them."""
    settings = {}
    for line in fenced("vim")[0].splitlines():
        match = re.match(r"^set (\w+)=(.*)$", line)
        if match:
            # `:set` takes a backslash as an escape: "\ " is a space, "\\" a backslash.
            settings[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2))
    return settings


def efm_regexes(efm: str) -> list[tuple[str, re.Pattern[str]]]:
    """The errorformat's items as (flags, regex), for the few `%` items the page uses."""
    items = []
    for item in re.split(r"(?<!\\),", efm):
        flags = ""
        match = re.match(r"^%([-+]?[EWICZG])", item)
        if match:
            flags, item = match.group(1), item[match.end() :]
        pattern, i = "", 0
        while i < len(item):
            if item[i] == "%":
                token = item[i + 1]
                if token == "\\":
                    pattern += "\\" + item[i + 2]
                    i += 3
                    continue
                if item[i + 1 : i + 3] == ".%" and item[i + 3] == "#":
                    pattern, i = pattern + ".*", i + 4
                    continue
                names = {
                    "o": r"(?P<module>.+)",
                    "t": r"(?P<type>.)",
                    "m": r"(?P<text>.+)",
                    "f": r"(?P<file>.+?)",
                    "l": r"(?P<lnum>\d+)",
                    "c": r"(?P<col>\d+)",
                }
                pattern += names[token]  # a KeyError names an item this converter does not know
                i += 2
            elif item[i] == "\\":  # an escaped character, e.g. "\\," for a comma
                pattern += re.escape(item[i + 1])
                i += 2
            else:
                pattern += re.escape(item[i])
                i += 1
        items.append((flags, re.compile(f"^{pattern}$")))
    return items


def efm_parse(efm: str, lines: list[str]) -> list[dict[str, str]]:
    """Entries as Vim makes them: the first item that matches wins; %-G drops the line; %E starts an entry of
    type E that the %C lines right after it continue (joined with newlines); %C matches only inside one."""
    entries: list[dict[str, str]] = []
    open_entry: Optional[dict[str, str]] = None
    for line in lines:
        for flags, regex in efm_regexes(efm):
            if flags == "C" and open_entry is None:
                continue
            match = regex.match(line)
            if not match:
                continue
            fields = {k: v for k, v in match.groupdict().items() if v is not None}
            if flags == "C" and open_entry is not None:
                open_entry["text"] += "\n" + fields["text"]
                break
            open_entry = None
            if flags == "E":
                open_entry = {"type": "E", **fields}
                entries.append(open_entry)
            elif flags != "-G":
                entries.append(fields)
            break
        else:
            open_entry = None
    return entries


def expected_quickfix(lines: list[str]) -> list[dict[str, str]]:
    out = []
    for line in lines:
        match = re.match(r"^\d\d:\d\d:\d\d (\S+)  error:? (.*)$", line)
        if match:
            out.append({"module": match.group(1), "type": "e", "text": match.group(2)})
        elif line.startswith("Error: "):
            out.append({"type": "E", "text": line[len("Error: ") :]})
    return out


@pytest.fixture(scope="module")
def make_output(session: dict[str, Any]) -> list[str]:
    """What `:make` would read: the watch lines, plus a real fatal `Error:` line of `fgsync push`."""
    result = subprocess.run(
        [sys.executable, "-m", "fgsync", "push", "nosuch"],
        cwd=session["project"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FGSYNC_TOKEN": TOKEN},
    )
    assert result.returncode == 2
    return [*session["lines"], *result.stderr.splitlines()]


def test_vim_makeprg_and_errorformat_as_regexes(make_output: list[str]) -> None:
    settings = vim_settings()
    assert settings["makeprg"] == "fgsync push"
    entries = efm_parse(settings["errorformat"], make_output)
    assert entries == expected_quickfix(make_output)
    assert [e.get("module") for e in entries] == ["hello", "hello", None]
    assert entries[0]["text"].startswith("FSS.0403: no permission to update the code (HTTP 403")
    assert entries[-1]["text"].startswith("unknown function 'nosuch'")


def vim_quickfix(lines: list[str], folder: Path) -> list[dict[str, Any]]:
    """The quickfix list Vim makes of these lines with the page's settings (`:cgetfile`)."""
    (folder / "make.out").write_text("\n".join(lines) + "\n")
    (block,) = [b for b in fenced("vim") if "errorformat" in b]
    script = textwrap.dedent(
        f"""\
        cd {folder}
        {block.strip()}
        cgetfile {folder / "make.out"}
        call writefile([json_encode(getqflist())], '{folder / "qf.json"}')
        qall!
        """
    )
    (folder / "script.vim").write_text(script)
    subprocess.run(
        ["vim", "-N", "-u", "NONE", "-i", "NONE", "-n", "-es", "-S", str(folder / "script.vim")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    items: list[dict[str, Any]] = json.loads((folder / "qf.json").read_text())
    return items


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed (the regex check above still runs)")
def test_vim_itself_reads_the_output_into_the_quickfix_list(make_output: list[str], tmp_path: Path) -> None:
    items = vim_quickfix(make_output, tmp_path)
    valid = [{"module": i["module"], "type": i["type"], "text": i["text"]} for i in items if i["valid"]]
    assert valid == [{"module": "", **e} if "module" not in e else e for e in expected_quickfix(make_output)]
    assert all(i["bufnr"] == 0 for i in items)  # no buffer named after a function
