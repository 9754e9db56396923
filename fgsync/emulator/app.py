"""The Emulator: FunctionGraph's API (and IAM's token call) as a WSGI application, plus its Python API.

Each request goes: route → count the call → read the body within the gateway's limits → injected fault →
authenticate → project check → handle. Answers carry ``X-Request-Id``; errors use the service's body
``{"error_code": "FSS.xxxx", "error_msg": "..."}`` (IAM's calls answer IAM's ``{"error": {...}}``).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable, Optional

from fgsync.emulator import api_dependencies, api_functions, api_iam, control, obs
from fgsync.emulator.api_functions import default_code
from fgsync.emulator.auth import MAX_SIGNED_BODY, TokenBook, check_request, signature_declared
from fgsync.emulator.dependency_store import DependencyStore, DependencyVersion
from fgsync.emulator.faults import ROUTES, DroppedConnection, FaultBook, make_fault
from fgsync.emulator.httpserver import RequestGauge
from fgsync.emulator.invoke import Invoker
from fgsync.emulator.link import Link
from fgsync.emulator.obs_auth import ObsKeyBook
from fgsync.emulator.obs_store import ObjectStore, ObsObject
from fgsync.emulator.store import EmulatorError, FunctionRecord, FunctionStore, atomic_write, parse_urn
from fgsync.emulator.wsgi import (
    MAX_BODY,
    Answer,
    IamError,
    StartResponse,
    WsgiEnviron,
    error_answer,
    iam_error_answer,
    match_route,
    new_request_id,
    read_body,
    respond,
)

log = logging.getLogger(__name__)

_STATE_FILE = "emulator.json"


class Emulator:
    """A local FunctionGraph: call it as a WSGI app (``wsgi_app``) or drive it from Python.

    Args:
        project_id: the project the emulator serves (random 32 hex digits when None, or the one kept in
            ``data_dir`` from a previous run).
        region: the region in URNs.
        token: a token accepted besides the ones it issues.
        ak: access key accepted in SDK-HMAC-SHA256 signatures; sk: its secret key.
        user, password, domain: the IAM password login it accepts (domain None: any domain name).
        data_dir: folder that keeps functions and issued-token fingerprints across restarts.
        clock: epoch seconds; drives token expiry, ``last_modified`` and the X-Sdk-Date window.
        token_ttl: lifetime of issued tokens, seconds.
        latency_ms: the emulated link's delay each way per request, milliseconds (served sockets only).
        bandwidth_kbit: the emulated link's rate in kilobits (1,000 bits) per second in each direction, shared
            by every connection; None: unlimited. Both can change while serving: ``emu.link.configure(...)``.
        buckets: OBS buckets to create (kept ones from ``data_dir`` stay); more with :meth:`create_bucket`.
    """

    def __init__(
        self,
        *,
        project_id: Optional[str] = None,
        region: str = "cn-north-4",
        token: Optional[str] = None,
        ak: Optional[str] = None,
        sk: Optional[str] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        domain: Optional[str] = None,
        data_dir: Optional[Path] = None,
        clock: Callable[[], float] = time.time,
        token_ttl: float = 86400,
        latency_ms: float = 0.0,
        bandwidth_kbit: Optional[float] = None,
        buckets: Iterable[str] = (),
    ) -> None:
        if (ak is None) != (sk is None):
            raise ValueError("ak and sk go together")
        self.region = region
        self.clock = clock
        self.link = Link(latency_ms=latency_ms, bandwidth_kbit=bandwidth_kbit)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._ak = ak
        self._sk = sk
        self._user = user
        self._password = password
        self._domain = domain
        self.tokens = TokenBook(static_token=token, ttl=token_ttl, clock=clock)
        state = self._load_state()
        self.project_id: str = project_id or str(state.get("project_id") or secrets.token_hex(16))
        self.domain_id = hashlib.sha256(("domain:" + self.project_id).encode()).hexdigest()[:32]
        self.tokens.restore(state.get("tokens", {}))
        self.store = FunctionStore(self.data_dir, clock=clock)
        self.dependencies = DependencyStore(self.data_dir, clock=clock)
        self.faults = FaultBook()
        #: API requests in flight on the served sockets, and the most at once (``serve`` counts them).
        self.requests = RequestGauge()
        self.obs = ObjectStore(self.data_dir, clock=clock)
        for bucket in buckets:
            self.obs.create_bucket(bucket)
        self.obs_keys = ObsKeyBook(ak=ak, sk=sk, clock=clock)
        self.invoker = Invoker(dependency_zips=lambda ids: api_dependencies.dependency_zips(self, ids))
        self._counts_lock = threading.Lock()
        self._calls = dict.fromkeys(ROUTES, 0)
        self._save_state()

    # ----------------------------------------------------------------- Python API

    @property
    def wsgi_app(self) -> Callable[[WsgiEnviron, StartResponse], Iterable[bytes]]:
        """The WSGI callable (for ``httpx.WSGITransport`` or any WSGI server)."""
        return self

    def count_call(self, route: str) -> None:
        """Count one request of a route (for :meth:`calls` and the stats)."""
        with self._counts_lock:
            self._calls[route] += 1

    def create_function(
        self,
        name: str,
        *,
        runtime: str = "Python3.9",
        handler: str = "index.handler",
        code: Optional[bytes] = None,
        package: str = "default",
        memory_size: int = 128,
        timeout: float = 3,
        code_type: str = "zip",
        code_filename: Optional[str] = None,
        depend_version_list: Optional[list[str]] = None,
        user_data: Optional[dict[str, str]] = None,
    ) -> str:
        """Create a function directly (no auth, no limits; any positive timeout, for fast tests).

        Returns:
            The function's URN (``...:latest``).
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        record = self.store.create(
            name,
            package=package,
            runtime=runtime,
            handler=handler,
            memory_size=memory_size,
            timeout=timeout,
            code_type=code_type,
            code_filename=code_filename or ("index.zip" if code_type == "zip" else f"{name}.{code_type}"),
            code=code if code is not None else default_code(handler, runtime),
            depend_version_list=list(depend_version_list or []),
            user_data=dict(user_data or {}),
        )
        return record.urn(self.region, self.project_id)

    def function(self, name_or_urn: str) -> FunctionRecord:
        """A snapshot of a function: ``.code``, ``.digest``, ``.code_size``, ``.depend_version_list``, ...

        Raises:
            KeyError: no such function.
        """
        record = self._find(name_or_urn)
        snapshot = self.store.snapshot(record.package, record.name)
        assert snapshot is not None
        return snapshot

    def set_code(self, name_or_urn: str, data: bytes) -> str:
        """Change a function's code behind any client's back (drift tests); returns the new digest."""
        record = self._find(name_or_urn)
        with self.store.lock:
            record.set_code(data, self.clock())
            self.store.save(record)
            return record.digest

    def set_depend_version_list(self, name_or_urn: str, version_ids: list[str]) -> None:
        """Attach exactly these dependency versions, behind any client's back (drift tests; not checked)."""
        record = self._find(name_or_urn)
        with self.store.lock:
            record.depend_version_list = list(version_ids)
            self.store.save(record)

    def inject(
        self,
        route: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        message: Optional[str] = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int = 1,
        drop_after: bool = False,
        retry_after: Optional[float] = None,
        function: Optional[str] = None,
    ) -> None:
        """Make the next ``times`` calls of ``route`` fail (negative ``times``: until :meth:`clear_faults`).

        With ``function`` (a function's name), only that function's calls of the route meet the fault: the calls
        about other functions go by (e.g. a delay on the first of several functions).

        A fault waits ``delay`` seconds, then drops the connection (``drop``), answers the error
        (``status``/``code``/``message``; code defaults to ``FSS.0<status>``), or lets the call through.
        ``drop_after`` lets the call through (an update is applied and counted) and then drops the connection
        instead of answering: the client cannot tell whether it worked. ``retry_after`` adds a ``Retry-After``
        header (seconds) to the error answer, as a throttling gateway does.
        """
        fault = make_fault(
            route,
            status=status,
            code=code,
            message=message,
            delay=delay,
            drop=drop,
            times=times,
            drop_after=drop_after,
            retry_after=retry_after,
            function=function,
        )
        self.faults.add(route, fault)

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        self.faults.clear()

    def calls(self, route: str) -> int:
        """Requests seen for a route, faulted ones included."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of: {', '.join(ROUTES)}")
        with self._counts_lock:
            return self._calls[route]

    def uploads(self, name_or_urn: str) -> int:
        """Successful UpdateFunctionCode calls for a function."""
        return self.function(name_or_urn).uploads

    def create_dependency_version(
        self, name: str, data: bytes, *, runtime: str = "Python3.9", description: str = ""
    ) -> DependencyVersion:
        """Publish a dependency version directly (no auth, no validation): version 1 for a new name, else the next.

        Returns:
            The new version: ``.id`` (for ``depend_version_list``), ``.dep_id``, ``.version``, ``.data``, ...
        """
        return self.dependencies.create_version(name, runtime=runtime, description=description, data=data)

    def dependency_versions(self, name: str) -> list[DependencyVersion]:
        """The versions of the dependency called ``name``, oldest first (empty when there is no such dependency)."""
        return self.dependencies.versions_named(name)

    def dependency_version(self, version_id: str) -> DependencyVersion:
        """A dependency version by its version id (what ``depend_version_list`` holds).

        Raises:
            KeyError: no such version.
        """
        version = self.dependencies.by_id(version_id)
        if version is None:
            raise KeyError(f"{version_id}: no such dependency version")
        return version

    def resolve_obs_link(self, url: str) -> bytes:
        """The bytes of the OBS object a request names (``depend_link`` of a dependency with ``depend_type: obs``).

        Path style to the emulator itself (``http://127.0.0.1:PORT/{bucket}/{key}``), or virtual-host style naming
        one of its buckets (``https://{bucket}.obs.{region}.myhuaweicloud.com/{key}``).

        Raises:
            EmulatorError: 400 FSS.1010 (not an object URL), 404 FSS.1054 (no such bucket or object).
        """
        return obs.resolve_url(self, url).data

    # ----------------------------------------------------------------- OBS

    def create_bucket(self, name: str) -> bool:
        """Create an OBS bucket (True), or nothing when it exists (False). ValueError for an invalid name."""
        return self.obs.create_bucket(name)

    def buckets(self) -> list[str]:
        """The OBS buckets, sorted."""
        return self.obs.buckets()

    def objects(self, bucket: str, prefix: str = "") -> list[ObsObject]:
        """The bucket's objects (``.key``, ``.data``, ``.etag``, ``.size``, ...), in key order; KeyError: no bucket."""
        return self.obs.objects(bucket, prefix)

    def object(self, bucket: str, key: str) -> ObsObject:
        """One object; KeyError when the bucket or the object does not exist."""
        found = self.obs.get(bucket, key)
        if found is None:
            raise KeyError(f"{bucket}/{key}: no such object")
        return found

    def put_object(self, bucket: str, key: str, data: bytes, *, content_type: str = "") -> ObsObject:
        """Store an object directly (no auth); KeyError when the bucket does not exist."""
        return self.obs.put(bucket, key, data, content_type=content_type)

    def issue_temporary_keys(self, duration: float = 900) -> tuple[str, str, str, float]:
        """Temporary OBS keys without an IAM call: (access, secret, security token, expires_at epoch seconds)."""
        return self.obs_keys.issue(duration)

    def expire_temporary_keys(self) -> None:
        """Every temporary key issued so far now answers 403 InvalidAccessKeyId."""
        self.obs_keys.expire_all()

    def expire_tokens(self, *, include_static: bool = True) -> None:
        """Every token issued so far (and, by default, the ``token`` given at start) now answers 401."""
        self.tokens.expire_all(include_static=include_static)
        self._save_state()

    def issue_token(self) -> tuple[str, float, float]:
        """A fresh valid token, without an IAM call: (token, issued_at, expires_at) in epoch seconds."""
        token, issued, expires = self.tokens.issue()
        self._save_state()
        return token, issued, expires

    def stats(self) -> dict[str, Any]:
        """Calls per route, uploads per function URN, and a summary of each function."""
        with self._counts_lock:
            calls = dict(self._calls)
        functions = []
        for record in self.store.all():
            functions.append(
                {
                    "name": record.name,
                    "package": record.package,
                    "urn": record.urn(self.region, self.project_id),
                    "runtime": record.runtime,
                    "digest": record.digest,
                    "code_size": record.code_size,
                    "uploads": record.uploads,
                }
            )
        dependencies = [
            {"name": name, "dep_id": dep_id, "versions": [{"id": v.id, "version": v.version} for v in versions]}
            for dep_id, name, versions in self.dependencies.dependencies()
        ]
        return {
            "project_id": self.project_id,
            "calls": calls,
            "uploads": {f["urn"]: f["uploads"] for f in functions},
            "functions": functions,
            "dependencies": dependencies,
            "faults": self.faults.pending(),
            "link": self.link.describe(),
            "requests": self.requests.describe(),
            "obs": {"buckets": self.obs.summary(), "temporary_keys": self.obs_keys.count()},
        }

    def close(self) -> None:
        """Remove the extracted-code cache (the store itself needs no closing)."""
        self.invoker.close()

    # ----------------------------------------------------------------- credentials

    def password_ok(self, user: str, password: str, domain: str) -> bool:
        """True when the IAM login matches the configured user, password and (if set) domain."""
        if self._user is None or self._password is None:
            return False
        ok = secrets.compare_digest(user.encode(), self._user.encode())
        ok = secrets.compare_digest(password.encode(), self._password.encode()) and ok
        return ok and (self._domain is None or domain == self._domain)

    # ----------------------------------------------------------------- WSGI

    def __call__(self, environ: WsgiEnviron, start_response: StartResponse) -> Iterable[bytes]:
        request_id = new_request_id()
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "")) or "/"
        if path.startswith("/_emulator/"):
            try:
                answer = control.handle(self, method, path, environ)
            except EmulatorError as exc:
                answer = error_answer(exc)
            return self._respond(start_response, answer, request_id)
        located = obs.locate(self, environ, path)
        if located is not None:
            answer = obs.serve_call(self, method, *located, environ=environ, request_id=request_id)
            return self._respond(start_response, answer, request_id)
        route, params, known = match_route(method, path)
        if route is None:
            code, status = ("APIGW.0101", 404) if not known else ("FSS.0405", 405)
            text = "The API does not exist or has not been published in the environment"
            return self._respond(start_response, error_answer(EmulatorError(status, code, text)), request_id)
        with self._counts_lock:
            self._calls[route] += 1
        try:
            answer = self._dispatch(route, params, environ, request_id)
        except EmulatorError as exc:
            answer = iam_error_answer(exc) if isinstance(exc, IamError) else error_answer(exc)
        log.debug("%s %s -> %d", method, path, answer.status)
        return self._respond(start_response, answer, request_id)

    def _respond(self, start_response: StartResponse, answer: Answer, request_id: str) -> Iterable[bytes]:
        # The gateway's Date is its own clock (RFC 9110 asks every origin server with a clock to send one);
        # a client whose signed requests are refused for their time compares it with its X-Sdk-Date.
        answer.headers.append(("Date", email.utils.formatdate(self.clock(), usegmt=True)))
        return respond(start_response, answer, request_id)

    def _dispatch(self, route: str, params: dict[str, str], environ: WsgiEnviron, request_id: str) -> Answer:
        signed = signature_declared(environ) and not environ.get("HTTP_X_AUTH_TOKEN")
        limit = MAX_BODY
        if signed:
            limit = MAX_SIGNED_BODY  # the gateway's limit for AK/SK-signed bodies
        body_error: Optional[EmulatorError] = None
        body = b""
        try:
            body = read_body(environ, limit=limit)
        except EmulatorError as exc:
            if signed and exc.status == 413:
                exc.message += "; AK/SK-signed requests are limited to 12 MB, use token authentication"
            body_error = exc
        fault = self.faults.take(route, self._function_name(params.get("urn")))
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                raise DroppedConnection(f"injected fault: connection dropped on {route}")
            error = fault.error()
            if error is not None:
                raise EmulatorError(*error, retry_after=fault.retry_after)
        if body_error is not None:
            raise body_error
        if fault is None or not fault.drop_after:
            return self._handle(route, params, environ, body, request_id)
        # Whatever the answer (an error too), the client never gets it.
        with contextlib.suppress(EmulatorError):
            self._handle(route, params, environ, body, request_id)
        raise DroppedConnection(f"injected fault: connection dropped after {route} was handled")

    def _handle(self, route: str, params: dict[str, str], environ: WsgiEnviron, body: bytes, request_id: str) -> Answer:
        if route == "iam_token":
            return api_functions.iam_token(self, body)
        if route == "iam_securitytokens":
            return api_iam.securitytokens(self, environ, body)
        check_request(environ, body, tokens=self.tokens, ak=self._ak, sk=self._sk, now=self.clock())
        if params.get("project") != self.project_id:
            raise EmulatorError(
                403, "FSS.0403", "Forbidden: the project id in the URL does not match the authorized project"
            )
        project_header = environ.get("HTTP_X_PROJECT_ID")
        if project_header and project_header != self.project_id:
            raise EmulatorError(403, "FSS.0403", "Forbidden: X-Project-Id does not match the project in the URL")
        if route == "create_function":
            return api_functions.create_function(self, body)
        if route in api_dependencies.ROUTES:
            return api_dependencies.dispatch(self, route, params, environ, body)
        record = self._resolve(params["urn"])
        if route == "show_code":
            return api_functions.show_code(self, record)
        if route == "show_config":
            return api_functions.show_config(self, record)
        if route == "update_code":
            return api_functions.update_code(self, record, body)
        return api_functions.invoke(self, record, environ, body, request_id)

    # ----------------------------------------------------------------- lookup and state

    def _function_name(self, reference: Optional[str]) -> Optional[str]:
        """The function a request is about (from the URN in its path), for faults aimed at one function."""
        if not reference:
            return None
        try:
            return parse_urn(reference, self.region, self.project_id)[1]
        except EmulatorError:
            return None

    def _resolve(self, reference: str) -> FunctionRecord:
        """The live record for a URN from a request path (FSS.1051 / FSS.1052 / FSS.1309 errors)."""
        package, name, version = parse_urn(reference, self.region, self.project_id)
        record = self.store.get(package, name)
        if record is None:
            raise EmulatorError(404, "FSS.1051", "Not found the function")
        if version != "latest":
            raise EmulatorError(404, "FSS.1052", "Not found the function version")
        return record

    def _find(self, name_or_urn: str) -> FunctionRecord:
        try:
            return self._resolve(name_or_urn)
        except EmulatorError as exc:
            raise KeyError(f"{name_or_urn}: {exc.message}") from None

    def _load_state(self) -> dict[str, Any]:
        if self.data_dir is None:
            return {}
        path = self.data_dir / _STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable emulator state %s: %s", path, exc)
            return {}
        return state if isinstance(state, dict) else {}

    def _save_state(self) -> None:
        """Project id and issued-token fingerprints (never tokens) survive a restart with ``--data``."""
        if self.data_dir is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = {"project_id": self.project_id, "tokens": self.tokens.export()}
        atomic_write(self.data_dir / _STATE_FILE, json.dumps(state, indent=2).encode("utf-8"))
