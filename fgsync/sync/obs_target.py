"""``[obs]`` as a sync sees it: the bucket (through its client) and the key prefix; put, URL and cleanup of a
function's objects (:mod:`fgsync.sync.upload` decides when a package goes this way). A module of its own: only a
config with ``[obs]`` builds one."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from fgsync.config import urn_package_and_name
from fgsync.errors import ApiError

if TYPE_CHECKING:
    from fgsync.config import FunctionConfig
    from fgsync.package import Package
    from fgsync.remote import ObsClient, ProgressHook

log = logging.getLogger(__name__)

#: How many of a function's objects stay in the bucket besides those in use.
KEEP_OBJECTS = 2


@dataclass(frozen=True)
class ObsTarget:
    """``[obs]``: the bucket (through its client) and the key prefix."""

    client: ObsClient
    prefix: str

    def folder(self, fn: FunctionConfig) -> str:
        """Where the function's objects live: ``<prefix><package>/<function name>/``."""
        package, name = urn_package_and_name(fn.urn)
        return f"{self.prefix}{package}/{name}/"

    def key(self, fn: FunctionConfig, package: Package) -> str:
        return f"{self.folder(fn)}{package.sha256}.zip"

    def put(self, fn: FunctionConfig, package: Package, *, progress: Optional[ProgressHook] = None) -> str:
        """Put the package into the bucket (unless an object of the same key and size is there); its URL."""
        key = self.key(fn, package)
        found = self.client.head(key)
        if found is not None and found.size == package.size:
            log.info("%s: %s is already in the bucket; not sent again", fn.name, key)
        else:
            self.client.put(key, package.data, progress=progress)
        return self.client.object_url(key)

    def clean(self, fn: FunctionConfig, in_use: Collection[str]) -> None:
        """Delete the function's objects it no longer uses, but the newest two; never raises (the push worked)."""
        try:
            objects = self.client.list(self.folder(fn))
            objects.sort(key=lambda o: o.last_modified, reverse=True)
            for info in objects[KEEP_OBJECTS:]:
                if info.key not in in_use:
                    self.client.delete(info.key)
                    log.info("%s: deleted %s from the bucket (no longer used)", fn.name, info.key)
        except ApiError as error:
            log.warning("%s: could not clean up old objects in the bucket: %s", fn.name, error.message)
