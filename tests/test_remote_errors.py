"""What a user reads when a request fails: `fgsync push` against loopback servers that refuse, drop, redirect,
answer HTML pages or half answers. Every message names the host and port, and says what to check."""

from __future__ import annotations

import io
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    AK,
    DOMAIN,
    HELLO_PY,
    PASSWORD,
    PROJECT_ID,
    REGION,
    SECRETS,
    SK,
    TOKEN,
    USER,
    http_answer,
    make_tree,
    write_config,
)

from fgsync.cli import main
from fgsync.emulator import Emulator, serve
from fgsync.errors import NetworkError
from fgsync.remote import FunctionGraphClient, RetryPolicy

URN = f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"


class TokenAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["X-Auth-Token"] = TOKEN
        yield request


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FGSYNC_TOKEN", TOKEN)
    return tmp_path


def fgsync(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for secret in SECRETS:
        assert secret not in out + err
    return code, out, err


def errors(out: str) -> list[dict[str, Any]]:
    return [event for event in map(json.loads, out.splitlines()) if event["event"] == "error"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- network errors name the host and port (item 14 a) ----------------------------------------------------------


def test_connection_refused_names_host_and_port_and_is_retried(
    project: Path, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    write_config(project, endpoint=f"http://127.0.0.1:{port}")
    code, _out, err = fgsync(capsys, "push")
    assert code == 1
    assert re.search(rf"^\d\d:\d\d:\d\d hello  error network: cannot connect to 127\.0\.0\.1:{port} "
                     r"\(Connection refused\)$", err, re.MULTILINE), err  # fmt: skip
    assert len(retry_sleeps) == 4  # retried like every network error, then reported


def test_a_dropped_connection_names_host_and_port(
    project: Path, emulator: Any, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.emulator.create_function("hello")
    emulator.emulator.inject("show_code", drop=True, times=-1)
    write_config(project, endpoint=emulator.url)
    code, out, _err = fgsync(capsys, "push", "--json")
    assert code == 1
    (error,) = errors(out)
    assert error["message"] == (
        f"the connection to 127.0.0.1:{emulator.port} was dropped before a complete answer "
        "(Server disconnected without sending a response.)"
    )
    assert error["retryable"] is True and len(retry_sleeps) == 4


def test_a_name_that_does_not_resolve_is_named_with_its_port() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as error:
            raise httpx.ConnectError("[Errno -2] Name or service not known", request=request) from error

    client = FunctionGraphClient(
        "https://functiongraph.nowhere.example", PROJECT_ID, auth=TokenAuth(), transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=0),
    )  # fmt: skip
    with pytest.raises(NetworkError) as caught:
        client.show_code(URN)
    assert caught.value.message == "cannot connect to functiongraph.nowhere.example:443 (Name or service not known)"


# -- -v: one clean line per retry (item 15 b) -------------------------------------------------------------------


def test_verbose_retry_lines_name_the_call_once(
    project: Path, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    write_config(project, endpoint=f"http://127.0.0.1:{port}")
    code, _out, err = fgsync(capsys, "-v", "push")
    assert code == 1
    retries = [line for line in err.splitlines() if "retry" in line]
    assert len(retries) == 4, err
    for n, line in enumerate(retries, start=1):
        assert re.fullmatch(
            rf"INFO fgsync\.remote\.http: ShowFunctionCode: network: cannot connect to 127\.0\.0\.1:{port} "
            rf"\(Connection refused\); retry {n} of 4 in \d+\.\d s",
            line,
        ), line
        assert "/v2/" not in line


# -- answers that are not FunctionGraph's (item 14 b, c) --------------------------------------------------------

NGINX_502 = (
    b"<!DOCTYPE html>\r\n<html>\r\n<head><title>502 Bad Gateway</title>\r\n<style>body{font:1em sans-serif}</style>"
    b"</head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    + b"<!-- a padding comment to make the page long enough to hurt -->\r\n" * 40
    + b"</body>\r\n</html>\r\n"
)


def answering(raw: bytes) -> Any:
    def answer(conn: socket.socket, _request: bytes, _server: Any) -> None:
        conn.sendall(raw)

    return answer


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("https://login.example/sso?next=%2Fv2", "https://login.example/sso?next=%2Fv2"),
        ("/moved/v2", "http://127.0.0.1:{port}/moved/v2"),
    ],
)
def test_a_redirect_shows_its_location_and_that_fgsync_does_not_follow_it(
    project: Path, raw_server: Any, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str], location: str,
    shown: str,
) -> None:  # fmt: skip
    server = raw_server(answering(http_answer("302 Found", headers={"Location": location})))
    write_config(project, endpoint=server.url)
    code, _out, err = fgsync(capsys, "push")
    assert code == 1
    assert (
        f"hello  error HTTP.302: 127.0.0.1:{server.port} redirected the request to {shown.format(port=server.port)}; "
        "fgsync does not follow redirects; check `endpoint` in fgsync.toml (HTTP 302)\n"
    ) in err
    assert server.connections == 1 and retry_sleeps == []


def test_an_html_error_page_is_summarised_by_its_title(
    project: Path, raw_server: Any, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    page = http_answer("502 Bad Gateway", NGINX_502, headers={"Content-Type": "text/html"})
    server = raw_server(answering(page))
    write_config(project, endpoint=server.url)
    code, out, err = fgsync(capsys, "push", "--json")
    assert code == 1
    (error,) = errors(out)
    assert error["code"] == "HTTP.502" and error["retryable"] is True  # a 5xx: retried, then reported
    assert error["message"] == (
        f'an HTML page ("502 Bad Gateway") instead of a FunctionGraph answer: a proxy or gateway answered for '
        f"127.0.0.1:{server.port} (HTTP 502)"
    )
    assert "<" not in out + err and "nginx" not in out + err and "padding" not in out + err
    assert len(retry_sleeps) == 4


def test_an_html_page_answering_200_is_not_read_as_code(
    project: Path, raw_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    portal = b"<html><head><title>Sign in to the guest Wi-Fi</title></head><body><form>...</form></body></html>"
    server = raw_server(answering(http_answer("200 OK", portal, headers={"Content-Type": "text/html"})))
    write_config(project, endpoint=server.url)
    code, out, _err = fgsync(capsys, "push", "--json")
    assert code == 1
    (error,) = errors(out)
    assert error["message"] == (
        'ShowFunctionCode answered with an HTML page ("Sign in to the guest Wi-Fi") instead of a FunctionGraph '
        f"answer: a proxy or gateway answered for 127.0.0.1:{server.port} (HTTP 200)"
    )
    assert error["retryable"] is False and not [e for e in map(json.loads, out.splitlines()) if e["event"] == "pushed"]


def test_login_redirected_names_iam_endpoint(
    project: Path, raw_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = "https://iam.example/v3/auth/tokens"
    server = raw_server(answering(http_answer("301 Moved Permanently", headers={"Location": target})))
    write_config(project, endpoint=server.url)
    monkeypatch.delenv("FGSYNC_TOKEN")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code, _out, err = fgsync(capsys, "login", "--user", USER, "--domain", DOMAIN, "--password-stdin")
    assert code == 1
    assert err == (
        f"Error: HTTP.301: IAM login: 127.0.0.1:{server.port} redirected the request to {target}; fgsync does not "
        "follow redirects; check `iam_endpoint` in fgsync.toml (HTTP 301)\n"
    )


# -- a clock-skew 401 says to fix the clock, not to log in (item 14 e) -------------------------------------------


@pytest.fixture
def fast_clock_emulator() -> Iterator[Any]:
    """An emulator whose clock is 90 minutes ahead of this machine's, accepting the test AK/SK."""
    emu = Emulator(project_id=PROJECT_ID, region=REGION, ak=AK, sk=SK, clock=lambda: time.time() + 90 * 60)
    emu.create_function("hello")
    with serve(emu, host="127.0.0.1", port=0) as server:
        yield server


def test_a_signature_refused_for_its_time_says_to_fix_the_clock(
    project: Path, fast_clock_emulator: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FGSYNC_TOKEN")
    monkeypatch.setenv("CLOUD_SDK_AK", AK)
    monkeypatch.setenv("CLOUD_SDK_SK", SK)
    write_config(project, endpoint=fast_clock_emulator.url)
    code, _out, err = fgsync(capsys, "push")
    assert code == 3
    assert re.search(
        r"hello  error APIGW\.0301: Incorrect IAM authentication information: X-Sdk-Date is more than 15 minutes "
        r"away from the server's clock \(HTTP 401, request id [0-9a-f]+\); this machine's clock is 90 minutes "
        r"behind the service's, and an AK/SK-signed request must be within 15 minutes of it: set the system clock "
        r"right \(turn on automatic time / NTP\), then try again\n",
        err,
    ), err
    assert "fgsync login" not in err
    assert SK not in err


def test_a_clock_skew_401_without_a_date_header_still_points_at_the_clock() -> None:
    from fgsync.auth.signer import SdkHmacSigner
    from fgsync.errors import ClockSkewError

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information: x-sdk-date expired"}
        return httpx.Response(401, json=body)

    client = FunctionGraphClient(
        "https://fg.example", PROJECT_ID, auth=SdkHmacSigner(AK, SK, PROJECT_ID), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(ClockSkewError) as caught:
        client.show_code(URN)
    assert caught.value.offset_s is None and caught.value.exit_code == 3
    assert caught.value.message.endswith(
        "; an AK/SK-signed request carries its time (X-Sdk-Date), which must be within 15 minutes of the service's "
        "clock: check this machine's clock and time zone, set the system clock right (turn on automatic time / "
        "NTP), then try again"
    )
    assert "fgsync login" not in caught.value.message


# -- ShowFunctionCode without a digest is an error, never an empty digest (item 13) ------------------------------


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"{}", "without a digest"),
        (b"", "an empty body"),
        (b'{"func_urn": "x", "digest": ""}', 'an unusable digest ("")'),
        (b'{"digest": null, "code_size": 3}', "without a digest"),
    ],
    ids=["empty-object", "empty-body", "empty-string", "null"],
)
def test_show_code_without_a_digest_stops_the_push_before_any_upload(
    project: Path, raw_server: Any, retry_sleeps: list[float], capsys: pytest.CaptureFixture[str], body: bytes,
    what: str,
) -> None:  # fmt: skip
    server = raw_server(answering(http_answer("200 OK", body, headers={"Content-Type": "application/json"})))
    write_config(project, endpoint=server.url)
    code, out, _err = fgsync(capsys, "push", "--json")
    assert code == 1
    (error,) = errors(out)
    assert error["message"] == (
        f"ShowFunctionCode at 127.0.0.1:{server.port} answered {what}: fgsync cannot tell what code the function "
        "runs, so it neither skips nor uploads; is `endpoint` in fgsync.toml the FunctionGraph API? (HTTP 200)"
    )
    assert error["retryable"] is False and retry_sleeps == []
    assert [request.split(b" ", 1)[0] for request in server.requests] == [b"GET"]  # no PUT: nothing uploaded
    assert "pushed" not in out


def test_status_without_a_digest_is_an_error_not_drift(
    project: Path, raw_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = raw_server(answering(http_answer("200 OK", b'{"runtime": "Python3.9"}')))
    write_config(project, endpoint=server.url)
    code, out, _err = fgsync(capsys, "status", "--json")
    assert code == 1
    (error,) = errors(out)
    assert error["message"].startswith(f"ShowFunctionConfig at 127.0.0.1:{server.port} answered without a digest")
    (status,) = [e for e in map(json.loads, out.splitlines()) if e["event"] == "status"]
    assert status["state"] == "unknown"


# -- the generic code is not printed twice (item 15 a) ----------------------------------------------------------


def test_an_error_without_a_code_of_its_own_reads_error_once(
    project: Path, raw_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = raw_server(answering(http_answer("200 OK", b"{}")))
    write_config(project, endpoint=server.url)
    code, _out, err = fgsync(capsys, "push")
    assert code == 1
    assert re.search(r"^\d\d:\d\d:\d\d hello  error: ShowFunctionCode at 127\.0\.0\.1:\d+ answered without a "
                     r"digest: ", err, re.MULTILINE), err  # fmt: skip
    assert "error error" not in err


def test_a_fatal_error_without_a_code_of_its_own_reads_error_once(
    project: Path, raw_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    portal = b"<html><head><title>Sign in</title></head></html>"
    server = raw_server(answering(http_answer("200 OK", portal, headers={"Content-Type": "text/html"})))
    write_config(project, endpoint=server.url)
    code, _out, err = fgsync(capsys, "invoke", "hello")
    assert code == 1
    assert err == (
        'Error: InvokeFunction answered with an HTML page ("Sign in") instead of a FunctionGraph answer: a proxy or '
        f"gateway answered for 127.0.0.1:{server.port} (HTTP 200)\n"
    )


def test_a_malformed_header_never_quotes_the_header() -> None:
    secret = "MIIsecret-token-value"

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(f"Illegal header value b'{secret}\\n'")

    client = FunctionGraphClient(
        "https://fg.example", PROJECT_ID, auth=TokenAuth(), transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=0),
    )  # fmt: skip
    with pytest.raises(NetworkError) as caught:
        client.show_code(URN)
    assert secret not in str(caught.value)
    assert caught.value.message == (
        "fgsync could not build a valid request for fg.example:443 (a header value is malformed)"
    )
    assert not caught.value.retryable  # the same request would be as malformed the next time
