"""The emulator's function store: records, URN resolution and on-disk persistence.

Every public method takes the store's lock, so the threaded server can serve requests concurrently. With a
data folder, each change is written to disk at once (package first, then metadata, each write-then-rename),
so a crash leaves either the old or the new function, never half of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

MAX_PACKAGE_BYTES = 52_428_800
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,59}$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_URN_CHARS_RE = re.compile(r"^[A-Za-z0-9_:!-]+$")
_CST_OFFSET = 8 * 3600  # FunctionGraph answers times in UTC+08:00


class EmulatorError(Exception):
    """An error the emulator answers as ``{"error_code", "error_msg"}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: Optional[float] = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: Seconds for a ``Retry-After`` header (a throttled gateway says how long to wait).
        self.retry_after = retry_after


def not_found_function() -> EmulatorError:
    """The service's answer for a function that does not exist."""
    return EmulatorError(404, "FSS.1051", "Not found the function")


@dataclasses.dataclass
class FunctionRecord:
    """One function (its ``latest`` version) as the emulator keeps it."""

    name: str
    package: str
    runtime: str
    handler: str
    memory_size: int
    timeout: float
    code_type: str
    code_filename: str
    code: bytes
    digest: str
    code_size: int
    last_modified: float
    depend_version_list: list[str]
    func_id: str
    user_data: dict[str, str] = dataclasses.field(default_factory=dict)
    description: str = ""
    code_encrypt_kms_key_id: str = ""
    uploads: int = 0
    code_url: str = ""  # code_type obs: the OBS URL the code came from

    def urn(self, region: str, project_id: str) -> str:
        """The function's URN, with the ``latest`` version."""
        return f"urn:fss:{region}:{project_id}:function:{self.package}:{self.name}:latest"

    def set_code(self, data: bytes, now: float) -> None:
        """Replace the code; digest is the SHA-512 of the decoded package bytes."""
        self.code = data
        self.digest = hashlib.sha512(data).hexdigest()
        self.code_size = len(data)
        self.last_modified = now


def format_time(epoch: float) -> str:
    """FunctionGraph's ``last_modified`` style: ``2018-03-28T11:30:32+08:00``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(epoch + _CST_OFFSET))


def valid_name(name: str) -> bool:
    """True for a valid function name: a letter, then letters, digits, ``_`` and ``-`` (at most 60)."""
    return bool(_NAME_RE.match(name))


def valid_package(package: str) -> bool:
    """True for a valid package (application) name."""
    return bool(_PACKAGE_RE.match(package))


def parse_urn(text: str, region: str, project_id: str) -> tuple[str, str, str]:
    """Split a function reference into (package, name, version).

    Accepts what the API accepts: ``name``, ``package:name``, the 7-field URN without a version and the full
    8-field URN (version or ``!alias``). A URN for another region or project cannot name one of this
    emulator's functions, so it answers "not found", as the service does for a function it cannot see.

    Raises:
        EmulatorError: 400 FSS.1309 for a malformed reference, 404 FSS.1051 for another project's URN.
    """
    if not text or not _URN_CHARS_RE.match(text):
        raise EmulatorError(400, "FSS.1309", f"Invalid function urn: {text!r}")
    parts = text.split(":")
    if len(parts) == 1:
        package, name, version = "default", parts[0], "latest"
    elif len(parts) == 2:
        package, name, version = parts[0], parts[1], "latest"
    elif len(parts) in (7, 8) and parts[0] == "urn" and parts[1] == "fss" and parts[4] == "function":
        if parts[2] != region or parts[3] != project_id:
            raise not_found_function()
        package, name = parts[5], parts[6]
        version = parts[7] if len(parts) == 8 else "latest"
        if not version:
            raise EmulatorError(400, "FSS.1309", f"Invalid function urn: {text!r}")
    else:
        raise EmulatorError(400, "FSS.1309", f"Invalid function urn: {text!r}")
    if not valid_package(package) or not valid_name(name):
        raise EmulatorError(400, "FSS.1309", f"Invalid function urn: {text!r}")
    return package, name, version


class FunctionStore:
    """Thread-safe functions by (package, name), optionally persisted in ``data_dir/functions``."""

    def __init__(self, data_dir: Optional[Path], *, clock: Callable[[], float]) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._functions: dict[tuple[str, str], FunctionRecord] = {}
        self._folder = data_dir / "functions" if data_dir is not None else None
        if self._folder is not None:
            self._folder.mkdir(parents=True, exist_ok=True)
            self._load()

    @property
    def lock(self) -> threading.RLock:
        """The lock around every read and change of the store."""
        return self._lock

    def get(self, package: str, name: str) -> Optional[FunctionRecord]:
        """The live record (callers hold ``lock`` while they use it), or None."""
        with self._lock:
            return self._functions.get((package, name))

    def snapshot(self, package: str, name: str) -> Optional[FunctionRecord]:
        """A copy of the record that later changes do not touch, or None."""
        with self._lock:
            record = self._functions.get((package, name))
            if record is None:
                return None
            return dataclasses.replace(
                record, depend_version_list=list(record.depend_version_list), user_data=dict(record.user_data)
            )

    def all(self) -> list[FunctionRecord]:
        """Copies of every record, sorted by package and name."""
        with self._lock:
            keys = sorted(self._functions)
        out = []
        for key in keys:
            record = self.snapshot(*key)
            if record is not None:
                out.append(record)
        return out

    def create(
        self,
        name: str,
        *,
        package: str,
        runtime: str,
        handler: str,
        memory_size: int,
        timeout: float,
        code_type: str,
        code_filename: str,
        code: bytes,
        depend_version_list: list[str],
        user_data: dict[str, str],
        description: str = "",
    ) -> FunctionRecord:
        """Add a function; 409 FSS.0409 when it exists already."""
        with self._lock:
            if (package, name) in self._functions:
                raise EmulatorError(409, "FSS.0409", f"The function {package}:{name} already exists")
            record = FunctionRecord(
                name=name,
                package=package,
                runtime=runtime,
                handler=handler,
                memory_size=memory_size,
                timeout=timeout,
                code_type=code_type,
                code_filename=code_filename,
                code=b"",
                digest="",
                code_size=0,
                last_modified=0.0,
                depend_version_list=list(depend_version_list),
                func_id=str(uuid.uuid4()),
                user_data=dict(user_data),
                description=description,
            )
            record.set_code(code, self._clock())
            self._functions[(package, name)] = record
            self.save(record)
            return record

    def save(self, record: FunctionRecord) -> None:
        """Persist one record (no-op without a data folder). Callers hold the lock."""
        if self._folder is None:
            return
        stem = f"{record.package}.{record.name}"
        atomic_write(self._folder / f"{stem}.code", record.code)
        meta = dataclasses.asdict(record)
        del meta["code"]
        atomic_write(self._folder / f"{stem}.json", json.dumps(meta, indent=2, sort_keys=True).encode())

    def _load(self) -> None:
        assert self._folder is not None
        for meta_path in sorted(self._folder.glob("*.json")):
            try:
                meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
                code = meta_path.with_suffix(".code").read_bytes()
                record = FunctionRecord(code=code, **meta)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("ignoring unreadable function file %s: %s", meta_path, exc)
                continue
            if hashlib.sha512(code).hexdigest() != record.digest:
                log.warning("ignoring %s: its package does not match the recorded digest", meta_path)
                continue
            self._functions[(record.package, record.name)] = record


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename over the target."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
