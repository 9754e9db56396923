"""FunctionGraph dependency packages: the five calls, as methods of the client (models in ``remote/models.py``).

:class:`DependencyCalls` is a mixin of :class:`~fgsync.remote.client.FunctionGraphClient`, so callers write
``client.create_dependency_version(...)``; every request goes through the client's ``_call`` (retries, the
overall deadline, typed errors, token or AK/SK auth, the AK/SK 12 MB body limit of the signer).

A dependency (``dep_id``) is a name; its versions are numbered from 1, and each has its own **version id**
(``DependencyVersion.id``): that id is what a function lists in ``depend_version_list``. fgsync keeps the
SHA-256 of the zip in the version's ``description`` (:func:`~fgsync.remote.models.dependency_description`).

Errors: 412 FSS.1033 (in use) is a :class:`~fgsync.errors.DependencyInUseError`, 404 FSS.1056 (no such
dependency or version) a :class:`~fgsync.errors.DependencyNotFoundError`; FSS.1024, FSS.1032 and FSS.1045 are
``ApiError`` with a hint (:mod:`fgsync.remote.errors`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional, Union
from urllib.parse import quote

import httpx

from fgsync.errors import ApiError, NetworkError, TransientApiError
from fgsync.remote.errors import json_object, service_code_number
from fgsync.upload import UploadBody

# The wire models are imported where an answer is parsed: this mixin is part of every client, and a function
# without dependencies never needs them.
if TYPE_CHECKING:
    from fgsync.remote.client import ProgressHook, RetryPolicy
    from fgsync.remote.models import DependencySummary, DependencyVersion

log = logging.getLogger(__name__)

#: Items asked for per page of ListDependencies / ListDependencyVersion (terraform's provider asks for 100).
PAGE_SIZE = 100
#: A listing that has not ended after this many pages is a server that does not page as documented.
_MAX_PAGES = 10_000


class DependencyCalls:
    """The dependency calls of :class:`~fgsync.remote.client.FunctionGraphClient` (a mixin: it uses the
    client's ``_call``, so every call has the client's retries, deadline, errors and auth)."""

    endpoint: str
    project_id: str
    _retry: RetryPolicy

    if TYPE_CHECKING:

        def _call(
            self,
            call: str,
            method: str,
            url: str,
            *,
            body: Union[bytes, UploadBody, None] = None,
            headers: Optional[Mapping[str, str]] = None,
            progress: Optional[ProgressHook] = None,
            retries: Optional[int] = None,
        ) -> httpx.Response: ...

        def _wait_to_retry(self, call: str, error: ApiError, attempt: int, attempts: int) -> None: ...

    def _dependencies_url(self, *parts: str) -> str:
        tail = "".join(f"/{quote(part, safe='')}" for part in parts)
        return f"{self.endpoint}/v2/{self.project_id}/fgs/dependencies{tail}"

    def create_dependency_version(
        self,
        *,
        name: str,
        runtime: str,
        data: bytes = b"",
        description: str = "",
        depend_type: str = "zip",
        depend_link: Optional[str] = None,
        progress: Optional[ProgressHook] = None,
    ) -> DependencyVersion:
        """CreateDependencyVersion: publish ``data`` (a zip) as the next version of dependency ``name``.

        A new name makes a new dependency at version 1. ``depend_type="obs"`` takes the package from
        ``depend_link`` (its OBS address) instead, and no ``data``.

        A request whose answer is lost (a dropped connection, a 500, 502 or 504) may still have created the
        version. So, when ``description`` carries fgsync's SHA-256 (``dependency_description``), such a failure
        is followed by a look for a version of ``name`` with that description, runtime and size, which is
        returned instead of publishing the same package twice. Other descriptions identify no content:
        those requests are simply retried (a lost answer may then leave a second, identical version).

        Raises:
            ValueError: ``zip`` with no data (fgsync never publishes an empty package) or with a ``depend_link``;
                ``obs`` with data or without a ``depend_link``.
            SignedRequestTooLargeError: with AK/SK, the request body is over 12 MB (``data`` over about 9 MB).
            ApiError: the service refused it; FSS.1024 says what a dependency package may hold.
        """
        fields: dict[str, Any] = {"depend_type": depend_type, "name": name, "runtime": runtime}
        fields["description"] = description
        if depend_type == "zip":
            if not data:
                raise ValueError("refusing to publish an empty dependency package")
            if depend_link:
                raise ValueError("a zip dependency is sent in the request: depend_link is for depend_type obs")
            # The base64 goes in first and is made in pieces as the body is sent: no copy of the package, the
            # base64 or the body is ever whole (fgsync/upload.py).
            rest = json.dumps(fields, separators=(",", ":")).encode("ascii")
            payload: Union[bytes, UploadBody] = UploadBody.json_around(b'{"depend_file":"', data, b'",' + rest[1:])
        else:
            if data or not depend_link:
                raise ValueError(f"depend_type {depend_type} takes depend_link (the package's address), not data")
            fields["depend_link"] = depend_link
            payload = json.dumps(fields, separators=(",", ":")).encode("ascii")
        call = "CreateDependencyVersion"
        url = self._dependencies_url("version")
        attempts = self._retry.attempts + 1
        for attempt in range(attempts):
            try:
                response = self._call(call, "POST", url, body=payload, progress=progress, retries=0)
                return _with_version_id(json_object(response, call), call, response)
            except (NetworkError, TransientApiError) as error:
                if not error.retryable:
                    raise
                landed = None
                if depend_type == "zip" and _may_have_landed(error):
                    landed = self._landed_version(name, runtime, description, len(data))
                if landed is not None:
                    log.info("%s: %s; version %d of %s was created all the same", call, error, landed.version, name)
                    return landed
                if attempt + 1 >= attempts:
                    raise
                self._wait_to_retry(call, error, attempt, attempts)
            except ApiError as error:
                if service_code_number(error.code) == "1024":
                    error.hint = (
                        f"FunctionGraph refused the package of dependency {name} ({len(data):,} bytes zipped): a "
                        "dependency is a zip of at most 40 MB (300 MB through OBS) and 30,000 files, with no file "
                        "name ending in `~` and no path leaving the zip"
                    )
                raise
        raise AssertionError("unreachable")

    def _landed_version(self, name: str, runtime: str, description: str, size: int) -> Optional[DependencyVersion]:
        """The version a lost CreateDependencyVersion answer may have made: same name, runtime, size and fgsync
        description (so the same SHA-256). None when there is none, or when looking fails."""
        from fgsync.remote.models import description_sha256  # here: see the TYPE_CHECKING import

        if description_sha256(description) is None:
            return None
        try:
            dependency = self._find(name, retries=0)
            if dependency is None:
                return None
            versions = self._versions(dependency.id, retries=0)
        except ApiError as error:
            log.info("CreateDependencyVersion: cannot look for a version the last try made (%s)", error)
            return None
        for version in reversed(versions):
            if (version.description, version.runtime, version.size) == (description, runtime, size):
                return version
        return None

    def list_dependencies(
        self,
        *,
        name: Optional[str] = None,
        runtime: Optional[str] = None,
        dependency_type: str = "private",
        page_size: int = PAGE_SIZE,
    ) -> list[DependencySummary]:
        """ListDependencies, every page: the account's dependencies (``private``: its own; ``public``, ``all``).

        ``name`` and ``runtime`` are sent as the service's filters, whose ``name`` matches parts of names, and
        then compared exactly here: only dependencies called exactly ``name`` come back.
        """
        return self._list(name=name, runtime=runtime, dependency_type=dependency_type, page_size=page_size)

    def find_dependency(self, name: str) -> Optional[DependencySummary]:
        """The account's own dependency called exactly ``name``, or None."""
        return self._find(name)

    def list_dependency_versions(self, dep_id: str, *, page_size: int = PAGE_SIZE) -> list[DependencyVersion]:
        """ListDependencyVersion, every page: the dependency's versions, as the service orders them (oldest first).

        Raises:
            DependencyNotFoundError: there is no dependency ``dep_id``.
        """
        return self._versions(dep_id, page_size=page_size)

    def show_dependency_version(self, dep_id: str, version: int) -> DependencyVersion:
        """ShowDependencyVersion: version number ``version`` of dependency ``dep_id`` (with a ``download_link``).

        Raises:
            DependencyNotFoundError: no such dependency, or no such version of it.
        """
        call = "ShowDependencyVersion"
        url = self._dependencies_url(dep_id, "version", str(_version_number(version)))
        response = self._call(call, "GET", url)
        return _with_version_id(json_object(response, call), call, response)

    def delete_dependency_version(self, dep_id: str, version: int) -> None:
        """DeleteDependencyVersion: remove version number ``version`` of dependency ``dep_id`` (204).

        The dependency goes with its last version.

        Raises:
            DependencyInUseError: 412 FSS.1033, a function (or a published version of one) still lists it.
            DependencyNotFoundError: 404 FSS.1056, no such dependency or version (already deleted).
        """
        call = "DeleteDependencyVersion"
        url = self._dependencies_url(dep_id, "version", str(_version_number(version)))
        try:
            self._call(call, "DELETE", url)
        except ApiError as error:
            if service_code_number(error.code) == "1033":
                error.hint = (
                    f"version {version} stays: a function, or a published version of one, still lists it in "
                    "depend_version_list"
                )
            raise

    # -- listing -------------------------------------------------------------------------------------------

    def _find(self, name: str, *, retries: Optional[int] = None) -> Optional[DependencySummary]:
        found = self._list(name=name, runtime=None, dependency_type="private", page_size=PAGE_SIZE, retries=retries)
        return found[0] if found else None

    def _list(
        self,
        *,
        name: Optional[str],
        runtime: Optional[str],
        dependency_type: str,
        page_size: int,
        retries: Optional[int] = None,
    ) -> list[DependencySummary]:
        from fgsync.remote.models import parse_dependency_summary  # here: see the TYPE_CHECKING import

        params = {"dependency_type": dependency_type}
        if name:
            params["name"] = name
        if runtime:
            params["runtime"] = runtime
        found = []
        for item in self._pages("ListDependencies", self._dependencies_url(), params, page_size, retries):
            summary = parse_dependency_summary(item)
            # The service's name filter matches parts of names ("fgsync-a" finds "fgsync-a-b"): compare here.
            if (name is None or summary.name == name) and (runtime is None or summary.runtime == runtime):
                found.append(summary)
        return found

    def _versions(
        self, dep_id: str, *, page_size: int = PAGE_SIZE, retries: Optional[int] = None
    ) -> list[DependencyVersion]:
        from fgsync.remote.models import parse_dependency_version  # here: see the TYPE_CHECKING import

        url = self._dependencies_url(dep_id, "version")
        items = self._pages("ListDependencyVersion", url, {}, page_size, retries)
        return [parse_dependency_version(item) for item in items]

    def _pages(
        self, call: str, url: str, params: Mapping[str, str], page_size: int, retries: Optional[int]
    ) -> Iterator[Mapping[str, Any]]:
        """Every item of a listing that pages with ``marker`` (an offset), ``maxitems``, ``next_marker``, ``count``.

        Items without an ``id`` are skipped: nothing can be done with them. The listing ends at an empty page, a
        ``next_marker`` that does not move forward (or is 0, as terraform's provider reads the last page), or one
        that reaches ``count``.
        """
        from fgsync.remote.models import as_int, as_text  # here: see the TYPE_CHECKING import

        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        marker = 0
        for _ in range(_MAX_PAGES):
            query = {**params, "marker": str(marker), "maxitems": str(page_size)}
            response = self._call(call, "GET", str(httpx.URL(url, params=query)), retries=retries)
            data = json_object(response, call)
            page = data.get("dependencies")
            items = [item for item in page if isinstance(item, Mapping)] if isinstance(page, list) else []
            for item in items:
                if as_text(item.get("id")):
                    yield item
                else:
                    log.debug("%s: skipping an entry without an id", call)
            next_marker = as_int(data.get("next_marker"))
            count = as_int(data.get("count")) if "count" in data else None
            if not items or next_marker <= marker or (count is not None and next_marker >= count):
                return
            marker = next_marker
        raise ApiError(f"{call} was still answering pages after {_MAX_PAGES:,}: the listing does not end")


def _with_version_id(data: dict[str, Any], call: str, response: httpx.Response) -> DependencyVersion:
    """The version in an answer, which must carry its version id: without one, nothing can attach it.

    Raises:
        ApiError: the answer has no ``id`` (not retried: a complete 200 answer is what the server means).
    """
    from fgsync.remote.models import parse_dependency_version  # here: see the TYPE_CHECKING import

    version = parse_dependency_version(data)
    if version.id:
        return version
    raise ApiError(
        f"{call} answered without a version id: is `endpoint` in fgsync.toml the FunctionGraph API?",
        status=response.status_code,
        request_id=response.headers.get("X-Request-Id"),
    )


def _may_have_landed(error: ApiError) -> bool:
    """Whether a failed request may have been carried out: its answer was lost, or a 500, 502 or 504 came
    back (the service may have failed after the work). A refused connection, 408, 429 and 503 say it was not."""
    if isinstance(error, NetworkError):
        return error.sent
    return error.status in (500, 502, 504)


def _version_number(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"a dependency version number is an integer from 1, not {version!r}")
    return version
