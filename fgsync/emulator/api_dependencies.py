"""Handlers of the dependency calls: Create/List/Show/Delete DependencyVersion and ListDependencies.

Paths, fields, status codes and error codes follow FUNCTIONGRAPH.md "Dependency packages" and the official
SDK's models (``CreateDependencyVersionResponse``, ``ListDependenciesResult``, ``ListDependencyVersionsResult``,
``ShowDependencyVersionResponse``); error codes are the service's (FSS.1005 runtime, FSS.1019 description,
FSS.1024 invalid dependency, FSS.1032 depend_type, FSS.1033 in use, FSS.1045 too many, FSS.1056 not found).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import parse_qs

from fgsync.emulator.dependency_store import DependencyVersion
from fgsync.emulator.store import EmulatorError
from fgsync.emulator.wsgi import Answer, json_answer, parse_json_object

if TYPE_CHECKING:
    from fgsync.emulator.app import Emulator

#: ``depend_file`` sent in the request: 40 MB decoded (larger packages go through OBS).
MAX_DEPENDENCY_BYTES = 40 * 1024 * 1024
#: A dependency through OBS (``depend_type: obs``).
MAX_OBS_DEPENDENCY_BYTES = 300 * 1024 * 1024
MAX_DEPENDENCY_FILES = 30_000
MAX_DEPENDENCIES_PER_FUNCTION = 20
MAX_DESCRIPTION = 512
DEFAULT_MAXITEMS = 400
#: The runtimes CreateDependencyVersion accepts (the SDK's list, plus the newer Python and Node.js ones).
RUNTIMES = (
    "Java8", "Java11", "Java17", "Java21",
    "Python2.7", "Python3.6", "Python3.9", "Python3.10", "Python3.11", "Python3.12",
    "Go1.8", "Go1.x",
    "Node.js6.10", "Node.js8.10", "Node.js10.16", "Node.js12.13", "Node.js14.18", "Node.js16.17", "Node.js18.15",
    "Node.js20.15",
    "C#(.NET Core 2.0)", "C#(.NET Core 2.1)", "C#(.NET Core 3.1)", "C#(.NET Core 6.0)",
    "Custom", "PHP7.3", "PHP8.3", "Cangjie1.0", "http", "Custom Image",
)  # fmt: skip
#: The route names of these calls (for call counts and faults).
ROUTES = (
    "create_dependency_version",
    "list_dependencies",
    "list_dependency_versions",
    "show_dependency_version",
    "delete_dependency_version",
)
_NAME_RE = re.compile(r"^[A-Za-z](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?$")


def not_found_dependency(what: str) -> EmulatorError:
    """The service's answer for a dependency (or version) that does not exist."""
    return EmulatorError(404, "FSS.1056", f"The dependency does not exist: {what}")


def version_json(emu: Emulator, version: DependencyVersion) -> dict[str, Any]:
    """A dependency version as the service answers it (CreateDependencyVersion, ``dependencies[]`` of a function)."""
    return {
        "id": version.id,
        "owner": emu.domain_id,
        # Where the service keeps the package in its own OBS bucket; nothing answers there (see download_link).
        "link": f"https://functiongraph-{emu.region}.obs.{emu.region}.myhuaweicloud.com/depends/"
        f"{emu.domain_id}/{version.id}.zip",
        "runtime": version.runtime,
        "etag": version.etag,
        "size": version.size,
        "name": version.name,
        "description": version.description,
        "file_name": version.file_name,
        "version": version.version,
        "dep_id": version.dep_id,
        "last_modified": version.last_modified,
    }


def check_zip(data: bytes) -> None:
    """The service's checks of a dependency package: a zip, at most 30,000 files, no name ending in ``~``.

    Raises:
        EmulatorError: 400 FSS.1024 (invalid dependency) saying which rule.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise EmulatorError(400, "FSS.1024", f"Invalid dependency: the package is not a valid zip ({exc})") from None
    files = [info for info in infos if not info.is_dir()]
    if len(files) > MAX_DEPENDENCY_FILES:
        raise EmulatorError(
            400, "FSS.1024", f"Invalid dependency: {len(files)} files; a dependency holds at most 30,000 files"
        )
    for info in infos:
        name = info.filename
        if name.rstrip("/").endswith("~"):
            raise EmulatorError(400, "FSS.1024", f"Invalid dependency: file names must not end with '~': {name!r}")
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
            raise EmulatorError(400, "FSS.1024", f"Invalid dependency: {name!r} points outside the package")


def _text_field(body: Mapping[str, Any], key: str) -> Optional[str]:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise EmulatorError(400, "FSS.0400", f"{key} must be a string")
    return value


def _decode_depend_file(text: Optional[str]) -> bytes:
    if not text:
        raise EmulatorError(400, "FSS.1024", "Invalid dependency: depend_file (the base64 zip) is required for zip")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise EmulatorError(400, "FSS.1024", "Invalid dependency: depend_file is not standard base64") from None
    if len(data) > MAX_DEPENDENCY_BYTES:
        raise EmulatorError(
            400,
            "FSS.1024",
            f"Invalid dependency: the zip is {len(data)} bytes; depend_file is limited to 40 MB "
            f"({MAX_DEPENDENCY_BYTES} bytes): upload larger packages through OBS (depend_type obs)",
        )
    return data


def create_dependency_version(emu: Emulator, raw: bytes) -> Answer:
    """``POST /v2/{project_id}/fgs/dependencies/version``: 200 with the new version."""
    body = parse_json_object(raw)
    depend_type = body.get("depend_type")
    if depend_type not in ("zip", "obs"):
        raise EmulatorError(
            400, "FSS.1032", f"Invalid dependency type {depend_type!r}: depend_type is zip (depend_file) or obs"
        )
    name = _text_field(body, "name")
    if not name or not _NAME_RE.match(name):
        raise EmulatorError(
            400,
            "FSS.0400",
            f"Invalid dependency name {name!r}: at most 96 letters, digits, _ . and -, starting with a letter "
            "and ending with a letter or digit",
        )
    runtime = _text_field(body, "runtime")
    if runtime not in RUNTIMES:
        raise EmulatorError(400, "FSS.1005", f"Invalid runtime {runtime!r}: one of {', '.join(RUNTIMES)}")
    description = _text_field(body, "description") or ""
    if len(description) > MAX_DESCRIPTION:
        raise EmulatorError(400, "FSS.1019", f"The description is {len(description)} characters; the limit is 512")
    if depend_type == "zip":
        data = _decode_depend_file(_text_field(body, "depend_file"))
    else:
        link = _text_field(body, "depend_link")
        if not link:
            raise EmulatorError(400, "FSS.1024", "Invalid dependency: depend_link (the OBS URL) is required for obs")
        data = emu.resolve_obs_link(link)
        if len(data) > MAX_OBS_DEPENDENCY_BYTES:
            message = f"Invalid dependency: {len(data)} bytes; through OBS the limit is 300 MB"
            raise EmulatorError(400, "FSS.1024", message)
    check_zip(data)
    version = emu.dependencies.create_version(name, runtime=runtime, description=description, data=data)
    return json_answer(200, version_json(emu, version))


def _paging(query: Mapping[str, Sequence[str]]) -> tuple[int, int]:
    """(marker, maxitems) from the query: marker is an offset (default 0); maxitems (or limit) default 400."""

    def number(key: str, default: int, low: int) -> int:
        values = query.get(key)
        if not values or values[-1] == "":
            return default
        text = values[-1].strip()
        if not text.isdigit() or int(text) < low:
            raise EmulatorError(400, "FSS.1001", f"Invalid query parameter {key}={values[-1]!r}")
        return int(text)

    limit = number("limit", DEFAULT_MAXITEMS, 1)
    return number("marker", 0, 0), number("maxitems", limit, 1)


def _page(items: list[dict[str, Any]], marker: int, maxitems: int) -> dict[str, Any]:
    page = items[marker : marker + maxitems]
    return {"dependencies": page, "next_marker": min(len(items), marker) + len(page), "count": len(items)}


def list_dependencies(emu: Emulator, query_string: str) -> Answer:
    """``GET /dependencies?marker=&maxitems=&dependency_type=&runtime=&name=``: the account's dependencies.

    ``id`` is the dependency id; the other fields describe its newest version. ``name`` matches any part of
    the name (the service's filter is not exact either: clients compare names themselves).
    """
    query = parse_qs(query_string, keep_blank_values=True)
    marker, maxitems = _paging(query)
    kind = (query.get("dependency_type") or ["all"])[-1] or "all"
    if kind not in ("public", "private", "all"):
        message = f"Invalid query parameter dependency_type={kind!r}: public, private or all"
        raise EmulatorError(400, "FSS.1001", message)
    public_only = kind == "public" or (query.get("ispublic") or [""])[-1].lower() == "true"
    runtime = (query.get("runtime") or [""])[-1]
    name = (query.get("name") or [""])[-1]
    items: list[dict[str, Any]] = []
    if not public_only:  # the emulator has no public dependencies (the service lists Huawei's own)
        for dep_id, dep_name, versions in emu.dependencies.dependencies():
            newest = versions[-1]
            if (runtime and newest.runtime != runtime) or (name and name not in dep_name):
                continue
            entry = version_json(emu, newest)
            entry["id"] = dep_id
            del entry["dep_id"]
            items.append(entry)
    return json_answer(200, _page(items, marker, maxitems))


def list_dependency_versions(emu: Emulator, dep_id: str, query_string: str) -> Answer:
    """``GET /dependencies/{depend_id}/version``: the dependency's versions, oldest first, paged."""
    marker, maxitems = _paging(parse_qs(query_string, keep_blank_values=True))
    versions = emu.dependencies.versions(dep_id)
    if versions is None:
        raise not_found_dependency(f"dependency id {dep_id}")
    items = [{**version_json(emu, v), "is_shared": False} for v in versions]
    return json_answer(200, _page(items, marker, maxitems))


def _version_number(text: str) -> int:
    if not text.isdigit():
        raise EmulatorError(400, "FSS.0400", f"Invalid dependency version {text!r}: the version number")
    return int(text)


def find_version(emu: Emulator, dep_id: str, version_text: str) -> DependencyVersion:
    """A version by dependency id and version number from a path (400 / 404 FSS.1056)."""
    version = emu.dependencies.get(dep_id, _version_number(version_text))
    if version is None:
        raise not_found_dependency(f"dependency id {dep_id}, version {version_text}")
    return version


def show_dependency_version(emu: Emulator, dep_id: str, version_text: str, base_url: str) -> Answer:
    """``GET /dependencies/{depend_id}/version/{version}``: the version, with a ``download_link``."""
    version = find_version(emu, dep_id, version_text)
    payload = version_json(emu, version)
    # The service hands out a temporary OBS link; the emulator serves the zip itself (no authentication).
    payload["download_link"] = f"{base_url}/_emulator/dependency-files/{version.id}.zip"
    payload["is_shared"] = False
    return json_answer(200, payload)


def delete_dependency_version(emu: Emulator, dep_id: str, version_text: str) -> Answer:
    """``DELETE /dependencies/{depend_id}/version/{version}``: 204; 412 FSS.1033 while a function uses it."""
    with emu.store.lock:  # no function may attach it between the check and the delete
        version = find_version(emu, dep_id, version_text)
        users = [f"{r.package}:{r.name}" for r in emu.store.all() if version.id in r.depend_version_list]
        if users:
            raise EmulatorError(
                412, "FSS.1033", f"The dependency is currently in use: version {version.version} by {', '.join(users)}"
            )
        emu.dependencies.delete(dep_id, version.version)
    return Answer(204, b"")


def check_depend_list(emu: Emulator, ids: Sequence[str]) -> None:
    """What CreateFunction and UpdateFunctionCode check in ``depend_version_list`` (callers hold the store lock).

    Raises:
        EmulatorError: 403 FSS.1045 over 20 versions; 404 FSS.1056 for an id that names no version.
    """
    if len(ids) > MAX_DEPENDENCIES_PER_FUNCTION:
        raise EmulatorError(
            403, "FSS.1045", f"The number of dependencies exceeds the maximum allowed limit: {len(ids)} of 20"
        )
    for version_id in ids:
        if emu.dependencies.by_id(version_id) is None:
            raise not_found_dependency(f"dependency version id {version_id}")


def attached_json(emu: Emulator, ids: Sequence[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """A function's ``depend_list`` (dependency ids) and ``dependencies[]`` (its versions) for its version ids."""
    dep_ids: list[str] = []
    described: list[dict[str, Any]] = []
    for version_id in ids:
        version = emu.dependencies.by_id(version_id)
        if version is None:  # attached through the Python API without a check
            continue
        if version.dep_id not in dep_ids:
            dep_ids.append(version.dep_id)
        described.append(version_json(emu, version))
    return dep_ids, described


def dispatch(emu: Emulator, route: str, params: Mapping[str, str], environ: Mapping[str, Any], body: bytes) -> Answer:
    """Answer one of :data:`ROUTES` (authenticated and project-checked already)."""
    query = str(environ.get("QUERY_STRING", ""))
    if route == "create_dependency_version":
        return create_dependency_version(emu, body)
    if route == "list_dependencies":
        return list_dependencies(emu, query)
    if route == "list_dependency_versions":
        return list_dependency_versions(emu, params["depend_id"], query)
    if route == "show_dependency_version":
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
        base_url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}"
        return show_dependency_version(emu, params["depend_id"], params["version"], base_url)
    return delete_dependency_version(emu, params["depend_id"], params["version"])


def dependency_zips(emu: Emulator, version_ids: Sequence[str]) -> list[tuple[str, bytes]]:
    """(version id, zip) of each attached version, in list order: what the invoker merges into the code folder.

    Raises:
        ValueError: a version that does not exist (attached through the Python API without a check).
    """
    out = []
    for version_id in version_ids:
        version = emu.dependencies.by_id(version_id)
        if version is None:
            raise ValueError(f"the attached dependency version {version_id} does not exist")
        out.append((version_id, version.data))
    return out
