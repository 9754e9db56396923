"""The client's dependency calls: the service's dependency errors as typed errors with hints; the five calls
against the real emulator over loopback with token and AK/SK auth (paging, exact names, retries, lost answers,
the deadline, the 12 MB signed-body limit); the wire models; and the official SDK reading what fgsync made."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fgsync.errors import ApiError, DependencyInUseError, DependencyNotFoundError, NetworkError
from fgsync.remote import error_from_response, network_error


def answer(status: int, code: str, message: str = "refused") -> httpx.Response:
    request = httpx.Request("DELETE", "https://functiongraph.example/v2/p/fgs/dependencies/d/version/1")
    body: dict[str, Any] = {"error_code": code, "error_msg": message}
    return httpx.Response(status, json=body, headers={"X-Request-Id": "req-7"}, request=request)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("code", ["FSS.1033", "FGS.1033", "fss.1033"])
def test_in_use_is_its_own_error_class_whatever_the_prefix(code: str) -> None:
    error = error_from_response(answer(412, code, "The dependency is currently in use"))
    assert type(error) is DependencyInUseError and not error.retryable
    assert (error.status, error.code, error.request_id) == (412, code, "req-7")
    assert error.error_msg == "The dependency is currently in use"
    assert "depend_version_list" in error.message and error.message.startswith("The dependency is currently in use")
    assert "depend_version_list" not in str(error)  # the hint is for users, not for log lines


def test_no_such_dependency_is_its_own_error_class() -> None:
    error = error_from_response(answer(404, "FSS.1056", "The dependency does not exist"))
    assert type(error) is DependencyNotFoundError and error.code == "FSS.1056"
    assert "deleted" in error.message


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (403, "FSS.1045", "a function takes at most 20 dependencies"),
        (400, "FSS.1024", "30,000 files"),
        (400, "FSS.1032", "depend_type is `zip`"),
    ],
)
def test_dependency_codes_carry_a_hint(status: int, code: str, hint: str) -> None:
    error = error_from_response(answer(status, code, "the service's words"))
    assert type(error) is ApiError and error.code == code and error.status == status
    assert error.message == f"the service's words (HTTP {status}, request id req-7); {error.hint}"
    assert error.hint is not None and hint in error.hint


@pytest.mark.parametrize("code", ["FSS.1051", "APIGW.0301X", "HTTP.400", "FSS.10331", ""])
def test_other_codes_have_no_hint_and_no_dependency_class(code: str) -> None:
    error = error_from_response(answer(400, code))
    assert type(error) is ApiError and error.hint is None
    assert error.message == "refused (HTTP 400, request id req-7)"


def test_a_network_error_says_whether_the_request_can_have_reached_the_service() -> None:
    url = httpx.URL("https://functiongraph.example/v2")
    request = httpx.Request("POST", url)
    refused = network_error(httpx.ConnectError("[Errno 111] Connection refused", request=request), url)
    dropped = network_error(httpx.RemoteProtocolError("Server disconnected", request=request), url)
    assert isinstance(refused, NetworkError) and not refused.sent and refused.retryable
    assert isinstance(dropped, NetworkError) and dropped.sent and dropped.retryable
