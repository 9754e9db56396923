"""The control API under ``/_emulator/``, for tests that run ``fgsync emulator`` as a subprocess.

=======  ===============================  ===================================================================
method   path                             what it does
=======  ===============================  ===================================================================
POST     /_emulator/faults                inject a fault: JSON {route, status, code, message, delay_ms, drop,
                                          drop_after, retry_after, times, function}
DELETE   /_emulator/faults                clear every fault
GET      /_emulator/stats                 calls per route, uploads per function URN, functions, pending faults,
                                          API requests in flight and their peak
POST     /_emulator/requests/reset        the peak of requests in flight starts again from now
POST     /_emulator/expire-tokens         every token issued so far (and the start-up token) answers 401
PUT      /_emulator/functions/{name}/code set a function's code from the raw body (a zip), behind clients' back
PUT      /_emulator/link                  the emulated link: JSON {latency_ms, bandwidth_kbit (null: unlimited)}
GET      /_emulator/dependency-files/     a dependency version's zip (ShowDependencyVersion's download_link)
         {version_id}.zip
PUT      /_emulator/buckets/{name}        create an OBS bucket (201; 200 when it exists; 400 for a bad name)
=======  ===============================  ===================================================================

No authentication: the emulator is a loopback development tool.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fgsync.emulator.store import EmulatorError
from fgsync.emulator.wsgi import MAX_BODY, Answer, json_answer, parse_json_object, read_body

if TYPE_CHECKING:
    from fgsync.emulator.app import Emulator

_CODE_PATH = re.compile(r"^/_emulator/functions/(?P<name>[^/]+)/code/?$")
_DEPENDENCY_FILE = re.compile(r"^/_emulator/dependency-files/(?P<id>[^/]+)\.zip$")
_BUCKET_PATH = re.compile(r"^/_emulator/buckets/(?P<name>[^/]+)/?$")


def _fault_args(body: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``Emulator.inject`` from the JSON body (400 on wrong types)."""
    known = {"route", "status", "code", "message", "delay_ms", "drop", "drop_after", "retry_after", "times", "function"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise EmulatorError(400, "FSS.0400", f"unknown fault fields: {', '.join(unknown)}")
    checks: dict[str, tuple[type, ...]] = {
        "status": (int,),
        "code": (str,),
        "message": (str,),
        "delay_ms": (int, float),
        "drop": (bool,),
        "drop_after": (bool,),
        "retry_after": (int, float),
        "times": (int,),
        "function": (str,),
    }
    for key, types in checks.items():
        value = body.get(key)
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise EmulatorError(400, "FSS.0400", f"fault field {key!r} has the wrong type")
    return {
        "status": body.get("status"),
        "code": body.get("code"),
        "message": body.get("message"),
        "delay": float(body.get("delay_ms") or 0) / 1000.0,
        "drop": bool(body.get("drop", False)),
        "drop_after": bool(body.get("drop_after", False)),
        "retry_after": float(body["retry_after"]) if body.get("retry_after") is not None else None,
        "times": int(body.get("times", 1)),
        "function": body.get("function"),
    }


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def handle(emu: Emulator, method: str, path: str, environ: Mapping[str, Any]) -> Answer:
    """Answer one control request.

    Raises:
        EmulatorError: 400 for a bad request, 404 for an unknown path or function.
    """
    body = read_body(environ, limit=MAX_BODY)
    stripped = path.rstrip("/")
    if stripped == "/_emulator/faults" and method == "POST":
        request = parse_json_object(body)
        route = request.get("route")
        if not isinstance(route, str):
            raise EmulatorError(400, "FSS.0400", "fault needs a route")
        try:
            emu.inject(route, **_fault_args(request))
        except ValueError as exc:
            raise EmulatorError(400, "FSS.0400", str(exc)) from None
        return json_answer(201, {"ok": True, "faults": emu.faults.pending()})
    if stripped == "/_emulator/faults" and method == "DELETE":
        emu.clear_faults()
        return json_answer(200, {"ok": True})
    if stripped == "/_emulator/stats" and method == "GET":
        return json_answer(200, emu.stats())
    if stripped == "/_emulator/requests/reset" and method == "POST":
        emu.requests.reset_peak()
        return json_answer(200, emu.requests.describe())
    if stripped == "/_emulator/expire-tokens" and method == "POST":
        emu.expire_tokens()
        return json_answer(200, {"ok": True})
    if stripped == "/_emulator/link" and method == "PUT":
        request = parse_json_object(body)
        unknown = sorted(set(request) - {"latency_ms", "bandwidth_kbit"})
        latency, bandwidth = request.get("latency_ms", 0), request.get("bandwidth_kbit")
        if unknown or not _number(latency) or not (bandwidth is None or _number(bandwidth)):
            message = "link takes latency_ms (a number) and bandwidth_kbit (a number or null)"
            raise EmulatorError(400, "FSS.0400", message)
        try:
            emu.link.configure(latency_ms=latency, bandwidth_kbit=bandwidth)
        except ValueError as exc:
            raise EmulatorError(400, "FSS.0400", str(exc)) from None
        return json_answer(200, emu.link.describe())
    download = _DEPENDENCY_FILE.match(path)
    if download and method == "GET":
        try:
            version = emu.dependency_version(download.group("id"))
        except KeyError:
            raise EmulatorError(404, "FSS.1056", "The dependency does not exist") from None
        return Answer(200, version.data, content_type="application/zip")
    bucket = _BUCKET_PATH.match(path)
    if bucket and method == "PUT":
        try:
            created = emu.create_bucket(bucket.group("name"))
        except ValueError as exc:
            raise EmulatorError(400, "FSS.0400", str(exc)) from None
        return json_answer(201 if created else 200, {"bucket": bucket.group("name"), "created": created})
    found = _CODE_PATH.match(path)
    if found and method == "PUT":
        if not body:
            raise EmulatorError(400, "FSS.0400", "the body must be the new package (raw bytes)")
        try:
            digest = emu.set_code(found.group("name"), body)
        except KeyError:
            raise EmulatorError(404, "FSS.1051", "Not found the function") from None
        return json_answer(200, {"digest": digest, "code_size": len(body)})
    raise EmulatorError(404, "FSS.0404", f"no control endpoint {method} {path}")
