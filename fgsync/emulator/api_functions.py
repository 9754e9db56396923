"""Handlers of the emulated calls: IAM token, CreateFunction, Show/UpdateFunctionCode, ShowFunctionConfig, Invoke.

Field names, status codes and error codes follow FUNCTIONGRAPH.md and the official SDK's models. A function's
``depend_version_list`` is checked against the dependency store (:mod:`fgsync.emulator.api_dependencies`).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

from fgsync.emulator import obs
from fgsync.emulator.api_dependencies import attached_json, check_depend_list
from fgsync.emulator.invoke import LOG_TAIL_BYTES, billing_ms, tail
from fgsync.emulator.runtimes import runner_command
from fgsync.emulator.store import (
    MAX_PACKAGE_BYTES,
    EmulatorError,
    FunctionRecord,
    format_time,
    valid_name,
    valid_package,
)
from fgsync.emulator.wsgi import Answer, header, iam_error, json_answer, parse_json_object

if TYPE_CHECKING:
    from fgsync.emulator.app import Emulator

CODE_TYPES = ("zip", "jar", "inline", "obs")
MAX_EVENT_BYTES = 6 * 1024 * 1024
_IAM_TIME = "%Y-%m-%dT%H:%M:%S"
_DEFAULT_HANDLER_CODE = (
    "import json\n\n\n"
    "def handler(event, context):\n"
    '    return {"statusCode": 200, "isBase64Encoded": False,\n'
    '            "headers": {"Content-Type": "application/json"},\n'
    '            "body": json.dumps({"hello": "FunctionGraph", "event": event})}\n'
)


def _iam_time(epoch: float) -> str:
    """IAM's ``2019-02-13T06:52:13.855000Z``."""
    micros = round((epoch % 1) * 1_000_000) % 1_000_000
    return time.strftime(_IAM_TIME, time.gmtime(epoch)) + f".{micros:06d}Z"


def _dig(data: Mapping[str, Any], *keys: str) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def iam_token(emu: Emulator, body: bytes) -> Answer:
    """``POST /v3/auth/tokens`` with the password method and a project scope: 201, token in X-Subject-Token."""
    try:
        request = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        request = None
    if not isinstance(request, dict):
        raise iam_error(400, "The request body is not valid JSON.")
    methods = _dig(request, "auth", "identity", "methods")
    if not isinstance(methods, list) or "password" not in methods:
        raise iam_error(400, "Only the password method is supported: auth.identity.methods must be ['password'].")
    user = _dig(request, "auth", "identity", "password", "user")
    name, password = _dig(user, "name"), _dig(user, "password")
    domain = _dig(user, "domain", "name")
    if not all(isinstance(v, str) and v for v in (name, password, domain)):
        raise iam_error(400, "auth.identity.password.user needs name, password and domain.name.")
    project = _dig(request, "auth", "scope", "project")
    if not isinstance(project, Mapping):
        raise iam_error(400, "auth.scope.project is required: the emulator issues project-scoped tokens only.")
    if project.get("id") not in (None, emu.project_id) or project.get("name") not in (None, emu.region):
        raise iam_error(400, "The project in auth.scope.project does not exist or is not this account's.")
    if not emu.password_ok(str(name), str(password), str(domain)):
        raise iam_error(401, "The username or password is wrong.")
    token, issued, expires = emu.issue_token()
    domain_info = {"name": str(domain), "id": emu.domain_id}  # the login matched, so this is the account's
    payload = {
        "token": {
            "methods": ["password"],
            "expires_at": _iam_time(expires),
            "issued_at": _iam_time(issued),
            "user": {"name": name, "id": emu.domain_id[::-1], "domain": domain_info, "password_expires_at": ""},
            "project": {"id": emu.project_id, "name": emu.region, "domain": domain_info},
            "domain": domain_info,
            "roles": [{"name": "FunctionGraph FullAccess", "id": "0"}],
            "catalog": [],
        }
    }
    return json_answer(201, payload, [("X-Subject-Token", token)])


def _dependency_fields(emu: Emulator, record: FunctionRecord) -> dict[str, Any]:
    """``depend_list`` (dependency ids), ``depend_version_list`` (version ids) and ``dependencies[]``."""
    dep_ids, described = attached_json(emu, record.depend_version_list)
    return {
        "depend_list": dep_ids,
        "depend_version_list": list(record.depend_version_list),
        "dependencies": described,
    }


def _function_config(emu: Emulator, record: FunctionRecord) -> dict[str, Any]:
    urn = record.urn(emu.region, emu.project_id)
    return {
        "func_id": record.func_id,
        "resource_id": record.func_id,
        "func_urn": urn,
        "func_name": record.name,
        "domain_id": emu.domain_id,
        "namespace": emu.project_id,
        "project_name": emu.region,
        "package": record.package,
        "runtime": record.runtime,
        "timeout": int(record.timeout) if float(record.timeout).is_integer() else record.timeout,
        "handler": record.handler,
        "memory_size": record.memory_size,
        "cpu": record.memory_size * 300 // 128,
        "code_type": record.code_type,
        "code_url": record.code_url,
        "code_filename": record.code_filename,
        "code_size": record.code_size,
        "user_data": json.dumps(record.user_data) if record.user_data else "",
        "digest": record.digest,
        "version": "latest",
        "image_name": "latest-" + record.digest[:12],
        "description": record.description,
        "last_modified": format_time(record.last_modified),
        **_dependency_fields(emu, record),
        "strategy_config": {"concurrency": 400, "concurrent_num": 1},
        "type": "v2",
        "enable_dynamic_memory": False,
        "is_stateful_function": False,
    }


def _function_code(emu: Emulator, record: FunctionRecord) -> dict[str, Any]:
    return {
        "func_urn": record.urn(emu.region, emu.project_id),
        "func_name": record.name,
        "domain_id": emu.domain_id,
        "runtime": record.runtime,
        "code_type": record.code_type,
        "code_url": record.code_url,
        "code_filename": record.code_filename,
        "code_size": record.code_size,
        "digest": record.digest,
        "last_modified": format_time(record.last_modified),
        # The service no longer hands the code back: file and link come back empty.
        "func_code": {"file": "", "link": ""},
        **_dependency_fields(emu, record),
        "strategy_config": {"concurrency": 400, "concurrent_num": 1},
    }


def _decode_code(body: Mapping[str, Any], code_type: str, *, allow_empty: bool) -> Optional[bytes]:
    """The package from ``func_code.file`` (strict standard base64), checked against the service's limits."""
    func_code = body.get("func_code")
    if func_code is not None and not isinstance(func_code, Mapping):
        raise EmulatorError(400, "FSS.0400", 'func_code must be an object: {"file": "<base64>"}')
    text = (func_code or {}).get("file")
    if text in (None, ""):
        if allow_empty:
            return None
        # The service would reset the function to template code; the emulator refuses, as fgsync must never ask.
        raise EmulatorError(400, "FSS.1011", "Invalid function code: func_code.file is empty")
    if not isinstance(text, str):
        raise EmulatorError(400, "FSS.1011", "Invalid function code: func_code.file must be a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise EmulatorError(400, "FSS.1011", "Invalid function code: func_code.file is not standard base64") from None
    if len(data) > MAX_PACKAGE_BYTES:
        raise EmulatorError(
            413, "FSS.1071", f"The code package is {len(data)} bytes; the limit is {MAX_PACKAGE_BYTES} bytes (50 MB)"
        )
    if not data:
        raise EmulatorError(400, "FSS.1011", "Invalid function code: the package is empty")
    # Like the service's file-type check, look at the magic number only: a damaged archive is found when the
    # function runs (invocation reports it), as it would be on the real service.
    if code_type in ("zip", "jar") and not data.startswith(b"PK"):
        raise EmulatorError(400, "FSS.1013", f"Invalid file type: the package is not a {code_type} archive")
    return data


def _code_fields(body: Mapping[str, Any]) -> tuple[str, str]:
    code_type = body.get("code_type")
    if not isinstance(code_type, str) or not code_type:
        raise EmulatorError(400, "FSS.0400", "code_type is required: zip, jar, inline or obs")
    if code_type not in CODE_TYPES:
        raise EmulatorError(400, "FSS.0400", f"Invalid code_type {code_type!r}: zip, jar, inline or obs")
    filename = body.get("code_filename")
    if code_type in ("zip", "jar") and (not isinstance(filename, str) or not filename):
        raise EmulatorError(400, "FSS.0400", f"code_filename is required when code_type is {code_type}")
    return code_type, str(filename or "")


def _code(emu: Emulator, body: Mapping[str, Any], code_type: str, filename: str, *, allow_empty: bool
          ) -> tuple[Optional[bytes], str, str]:  # fmt: skip
    """(package or None, code_filename, code_url): from ``func_code.file``, or for ``obs`` from ``code_url``."""
    if code_type != "obs":
        return _decode_code(body, code_type, allow_empty=allow_empty), filename, ""
    url = body.get("code_url")
    if not isinstance(url, str) or not url:
        raise EmulatorError(400, "FSS.0400", "code_url is required when code_type is obs")
    data, object_name = obs.code_from_obs(emu, url)
    return data, filename or object_name, url


def _depend_list(body: Mapping[str, Any]) -> Optional[list[str]]:
    value = body.get("depend_version_list")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EmulatorError(400, "FSS.0400", "depend_version_list must be a list of strings")
    return list(value)


def _int_field(body: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise EmulatorError(400, "FSS.0400", f"{key} is required: an integer from {low} to {high}")
    return value


def create_function(emu: Emulator, raw: bytes) -> Answer:
    """``POST /v2/{project_id}/fgs/functions``: 200 with the new function's configuration."""
    body = parse_json_object(raw)
    name = body.get("func_name")
    if not isinstance(name, str) or not valid_name(name):
        raise EmulatorError(400, "FSS.0400", "func_name is required: a letter, then letters, digits, _ or - (max 60)")
    package = body.get("package") or "default"
    if not isinstance(package, str) or not valid_package(package):
        raise EmulatorError(400, "FSS.0400", "package must be letters, digits, _ or - (max 64)")
    runtime, handler = body.get("runtime"), body.get("handler")
    if not isinstance(runtime, str) or not runtime:
        raise EmulatorError(400, "FSS.0400", "runtime is required, e.g. Python3.9")
    if not isinstance(handler, str) or not handler:
        raise EmulatorError(400, "FSS.0400", "handler is required, e.g. index.handler")
    memory_size = _int_field(body, "memory_size", 128, 10240)
    timeout = _int_field(body, "timeout", 3, 259200)
    code_type, filename = _code_fields(body)
    code, filename, code_url = _code(emu, body, code_type, filename, allow_empty=True)
    user_data: dict[str, str] = {}
    raw_user_data = body.get("user_data")
    if raw_user_data:
        try:
            parsed = json.loads(raw_user_data) if isinstance(raw_user_data, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise EmulatorError(400, "FSS.0400", "user_data must be a JSON object encoded as a string")
        user_data = {str(k): str(v) for k, v in parsed.items()}
    description = body.get("description")
    depend = _depend_list(body) or []
    with emu.store.lock:  # no dependency version may be deleted between the check and the create
        check_depend_list(emu, depend)
        record = emu.store.create(
            name,
            package=package,
            runtime=runtime,
            handler=handler,
            memory_size=memory_size,
            timeout=timeout,
            code_type=code_type,
            code_filename=filename or ("index.py" if code_type == "inline" else "index.zip"),
            code=code if code is not None else default_code(handler, runtime),
            depend_version_list=depend,
            user_data=user_data,
            description=description if isinstance(description, str) else "",
        )
        if code_url:
            record.code_url = code_url
            emu.store.save(record)
        return json_answer(200, _function_config(emu, record))


def show_code(emu: Emulator, record: FunctionRecord) -> Answer:
    """``GET .../code``."""
    with emu.store.lock:
        return json_answer(200, _function_code(emu, record))


def show_config(emu: Emulator, record: FunctionRecord) -> Answer:
    """``GET .../config``."""
    with emu.store.lock:
        return json_answer(200, _function_config(emu, record))


def update_code(emu: Emulator, record: FunctionRecord, raw: bytes) -> Answer:
    """``PUT .../code``: synchronous; the answer carries the new digest, code_size and last_modified."""
    body = parse_json_object(raw)
    code_type, filename = _code_fields(body)
    data, filename, code_url = _code(emu, body, code_type, filename, allow_empty=False)
    assert data is not None
    depend = _depend_list(body)
    kms = body.get("code_encrypt_kms_key_id")
    with emu.store.lock:
        if depend is not None:  # the list sent replaces the function's list
            check_depend_list(emu, depend)
        record.code_type = code_type
        record.code_filename = filename or ("index.py" if code_type == "inline" else record.code_filename)
        record.set_code(data, emu.clock())
        record.code_url = code_url
        if depend is not None:  # left out: keep the current list
            record.depend_version_list = depend
        if isinstance(kms, str):
            record.code_encrypt_kms_key_id = kms
        record.uploads += 1
        emu.store.save(record)
        payload = _function_code(emu, record)
        payload["code_encrypt_kms_key_id"] = record.code_encrypt_kms_key_id
        return json_answer(200, payload)


def invoke(emu: Emulator, record: FunctionRecord, environ: Mapping[str, Any], body: bytes, request_id: str) -> Answer:
    """``POST .../invocations``: run the handler now and answer v1 JSON (or v0: the raw result)."""
    snapshot = emu.store.snapshot(record.package, record.name)
    assert snapshot is not None
    runner_command(snapshot.runtime)  # a runtime it cannot run (or Node.js without node) is a 400 before anything
    if len(body) > MAX_EVENT_BYTES:
        raise EmulatorError(413, "FSS.0413", f"The event is {len(body)} bytes; the sync invoke limit is 6 MB")
    if body.strip():
        try:
            json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise EmulatorError(400, "FSS.0400", "The event (request body) is not valid JSON") from None
    outcome = emu.invoker.invoke(snapshot, body, request_id=request_id, project_id=emu.project_id, region=emu.region)
    memory_used = outcome.memory_used_mb
    verdict = "Success" if not outcome.failed else "Failed"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(emu.clock()))
    full_log = (
        f"{stamp} Start invoke request '{request_id}', version: latest\n"
        + outcome.log
        + ("" if not outcome.log or outcome.log.endswith("\n") else "\n")
        + f"{stamp} Finish invoke request '{request_id}'(invoke {verdict}), duration: {outcome.duration_ms:.3f}ms, "
        f"billing duration: {billing_ms(outcome.duration_ms)}ms, memory used: {memory_used:.3f}MB\n"
    )
    want_tail = (header(environ, "X-Cff-Log-Type") or "").lower() == "tail"
    log_tail = tail(full_log, LOG_TAIL_BYTES) if want_tail else ""
    summary = {
        "funcServiceDuration": round(outcome.duration_ms, 3),
        "funcExecuteDuration": round(outcome.duration_ms, 3),
        "duration": round(outcome.duration_ms, 3),
        "billingDuration": billing_ms(outcome.duration_ms),
        "memorySize": snapshot.memory_size,
        "memoryUsed": memory_used,
    }
    headers = [
        ("X-Cff-Request-Id", request_id),
        ("X-Cff-Invoke-Summary", json.dumps(summary)),
        ("X-Func-Err-Code", "0" if not outcome.failed else str(outcome.status)),
        ("X-Is-Func-Err", "true" if outcome.failed else "false"),
    ]
    if want_tail:
        headers.append(("X-Cff-Function-Log", base64.b64encode(log_tail.encode("utf-8")).decode("ascii")))
    if (header(environ, "X-Cff-Request-Version") or "v1").lower() == "v0":
        return Answer(200, outcome.result.encode("utf-8"), headers)
    payload = {"request_id": request_id, "result": outcome.result, "log": log_tail, "status": outcome.status}
    return json_answer(200, payload, headers)


def default_code(handler: str = "index.handler", runtime: str = "Python3.9") -> bytes:
    """The template code the service gives a new function: a zip with a tiny valid handler.

    Python and Node.js runtimes get a handler in their language; others get the Python one (the emulator
    cannot run them anyway).
    """
    module, _, attr = handler.rpartition(".")
    module = module or "index"
    attr = attr or "handler"
    if runtime.lower().startswith("node"):
        filename = module + ".js"
        source = (
            f"exports.{attr} = async (event, context) => ({{\n"
            '  statusCode: 200, isBase64Encoded: false, headers: {"Content-Type": "application/json"},\n'
            '  body: JSON.stringify({hello: "FunctionGraph", event: event}),\n'
            "});\n"
        )
    else:
        filename = module.replace(".", "/") + ".py"
        source = _DEFAULT_HANDLER_CODE.replace("def handler(", f"def {attr}(")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(filename, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, source)
    return buffer.getvalue()
