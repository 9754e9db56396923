"""`push` and `status` over many functions: at most 8 at once, one connection pool, output in config order."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HELLO_PY, TOKEN, make_tree, write_config

from fgsync.cli import main, sync_cmds
from fgsync.cli.context import AppContext
from fgsync.cli.output import Reporter
from fgsync.cli.sync_cmds import PARALLEL_FUNCTIONS, _each_function
from fgsync.config import load_config
from fgsync.errors import EXIT_CREDENTIALS, EXIT_FAILED, EXIT_OK, CredentialsError, PackageError
from fgsync.events import Event

NAMES = [f"fn{i:02d}" for i in range(14)]


@pytest.fixture
def many(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fourteen small functions on disk and in the emulator, a config in that order, FGSYNC_TOKEN set."""
    for name in NAMES:
        make_tree(tmp_path / "functions" / name, {"index.py": HELLO_PY.replace("hello", name)})
        emulator.emulator.create_function(name)
    write_config(tmp_path, endpoint=emulator.url, functions=[{"name": n, "source": f"functions/{n}"} for n in NAMES])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["--json", *args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def _blocks(events: list[dict[str, Any]]) -> list[str]:
    """The functions in the order their runs of events come, one entry per run."""
    blocks: list[str] = []
    for event in events:
        if not blocks or blocks[-1] != event["function"]:
            blocks.append(event["function"])
    return blocks


def test_push_prints_in_config_order_when_the_first_function_is_slow(
    many: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator.emulator
    emu.inject("show_code", delay=1.5, function=NAMES[0])
    code, events = _run(capsys, "push")
    assert code == EXIT_OK
    assert _blocks(events) == NAMES  # each function's events together, in the configuration's order
    assert [e["function"] for e in events if e["event"] == "pushed"] == NAMES
    assert all(emu.uploads(name) == 1 for name in NAMES)
    assert 1 < emu.requests.describe()["peak"] <= PARALLEL_FUNCTIONS  # worked on at once, never more than 8
    code, events = _run(capsys, "push")  # everything unchanged: skipped, still in order
    assert code == EXIT_OK
    assert [(e["function"], e["event"]) for e in events if e["event"] == "skipped"] == [(n, "skipped") for n in NAMES]


def test_never_more_than_8_requests_in_flight(many: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator.emulator
    emu.inject("show_config", delay=0.3, times=-1)  # every status call held: the workers pile up
    code, events = _run(capsys, "status")
    assert code == EXIT_OK
    assert [e["function"] for e in events] == NAMES
    assert emu.calls("show_config") == len(NAMES)
    assert 1 < emu.requests.describe()["peak"] <= PARALLEL_FUNCTIONS
    assert emulator.connections_accepted <= PARALLEL_FUNCTIONS  # one pool: its connections are kept and reused


def test_a_failing_function_does_not_stop_the_others_and_the_worst_code_wins(
    many: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.emulator.inject("show_code", status=404, code="FSS.1051", function=NAMES[3])
    code, events = _run(capsys, "push")
    assert code == EXIT_FAILED
    assert _blocks(events) == NAMES
    assert [e["function"] for e in events if e["event"] == "error"] == [NAMES[3]]
    assert len([e for e in events if e["event"] == "pushed"]) == len(NAMES) - 1


def test_a_refused_token_stops_the_push_with_exit_3(
    many: Path, emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FGSYNC_TOKEN", "MIIwrong-" + "z" * 40)
    code, events = _run(capsys, "push")
    assert code == EXIT_CREDENTIALS
    errors = [e for e in events if e["event"] == "error"]
    assert errors and len(errors) <= PARALLEL_FUNCTIONS  # only the functions under way when it was found
    assert all(emulator.emulator.uploads(name) == 0 for name in NAMES)
    assert emulator.emulator.calls("show_code") <= PARALLEL_FUNCTIONS


# -- _each_function itself, with a scripted action ---------------------------------------------------------------


class _Client:
    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def app(many: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AppContext, list[Event]]]:
    context = AppContext(json=True)
    written: list[Event] = []
    reporter = Reporter(json_mode=True)
    monkeypatch.setattr(reporter, "write_event", written.append)
    context._reporter = reporter
    monkeypatch.setattr(AppContext, "make_client", lambda self, config: _Client())
    yield context, written


def test_events_of_later_functions_wait_for_the_first_and_the_work_does_not(
    app: tuple[AppContext, list[Event]],
) -> None:
    context, written = app
    config = load_config(Path("fgsync.toml"))
    first_may_end = threading.Event()
    others_done = threading.Semaphore(0)

    def action(fn: Any, client: Any) -> None:
        context.reporter.emit(Event("packaged", fn.name, {}))
        if fn.name == NAMES[0]:
            # Every other function finishes while the first is still working: the work is not held back.
            for _ in NAMES[1:]:
                assert others_done.acquire(timeout=30)
            assert [e.function for e in written] == [NAMES[0]]  # the head writes through; the rest is held
            first_may_end.set()
        else:
            others_done.release()
        context.reporter.emit(Event("pushed", fn.name, {}))

    assert _each_function(context, config, config.functions, action) == EXIT_OK
    assert first_may_end.is_set()
    assert [(e.function, e.event) for e in written] == [(n, k) for n in NAMES for k in ("packaged", "pushed")]


def test_a_credentials_error_starts_nothing_new_and_is_raised(
    app: tuple[AppContext, list[Event]], monkeypatch: pytest.MonkeyPatch
) -> None:
    context, written = app
    config = load_config(Path("fgsync.toml"))
    started: list[str] = []
    lock = threading.Lock()
    all_under_way = threading.Barrier(PARALLEL_FUNCTIONS)
    failed_one_done = threading.Event()
    finish = sync_cmds._InOrder.finish

    def noting_finish(self: Any, index: int) -> None:
        finish(self, index)
        if index == 2:
            failed_one_done.set()  # after the error was seen: the stop is set by then

    monkeypatch.setattr(sync_cmds._InOrder, "finish", noting_finish)

    def action(fn: Any, client: Any) -> None:
        with lock:
            started.append(fn.name)
        all_under_way.wait(30)  # the first eight are all under way when the error comes
        if fn.name == NAMES[2]:
            raise CredentialsError("run `fgsync login`")
        assert failed_one_done.wait(30)
        if fn.name == NAMES[5]:
            raise PackageError("broken")
        context.reporter.emit(Event("skipped", fn.name, {"reason": "unchanged"}))

    with pytest.raises(CredentialsError):
        _each_function(context, config, config.functions, action)
    assert sorted(started) == NAMES[:PARALLEL_FUNCTIONS]  # none started after the error
    reported = [(e.function, e.event) for e in written]
    under_way = [n for n in NAMES[:PARALLEL_FUNCTIONS] if n != NAMES[2]]
    expected = [(n, "error" if n == NAMES[5] else "skipped") for n in under_way]
    assert reported == expected  # those under way finished and were reported, in order


def test_one_function_runs_in_this_thread_with_its_progress_bar(app: tuple[AppContext, list[Event]]) -> None:
    context, _written = app
    config = load_config(Path("fgsync.toml"))
    threads: list[str] = []
    routed: list[bool] = []

    def action(fn: Any, client: Any) -> None:
        threads.append(threading.current_thread().name)
        routed.append(getattr(context.reporter._local, "route", None) is not None)

    _each_function(context, config, config.functions[:1], action)
    assert threads == [threading.current_thread().name] and routed == [False]
    _each_function(context, config, config.functions[:3], action)
    assert routed[1:] == [True, True, True]  # several: routed, so no progress bar
