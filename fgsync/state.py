"""What fgsync last pushed, per function: the SHA-512 of the zip it sent and the `digest` the service answered.

Kept in the user cache folder (``$FGSYNC_CACHE_DIR``, else ``platformdirs.user_cache_dir("fgsync")``), never in
the source tree, one small JSON file per (endpoint, URN) so two emulators or two accounts never share a record.
A record is written only after the service confirmed a push, through write-then-rename, so a crash mid-write
leaves the previous record (or none), never half a file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import platformdirs

log = logging.getLogger(__name__)

_FORMAT = 1


@dataclass(frozen=True)
class PushRecord:
    """The last confirmed push of one function."""

    sha512: str
    digest: str
    pushed_at: str


def default_cache_dir() -> Path:
    """``$FGSYNC_CACHE_DIR``, else the platform's user cache folder for fgsync."""
    override = os.environ.get("FGSYNC_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("fgsync"))


class StateStore:
    """Reads and writes push records under ``root/state``."""

    def __init__(self, root: Optional[Path] = None) -> None:
        self.root = (root if root is not None else default_cache_dir()) / "state"

    def _path(self, endpoint: str, urn: str) -> Path:
        key = hashlib.sha256(f"{endpoint.rstrip('/')}\n{urn}".encode()).hexdigest()[:32]
        return self.root / f"{key}.json"

    def get(self, endpoint: str, urn: str) -> Optional[PushRecord]:
        """The last push of ``urn`` at ``endpoint``, or None (never pushed, or an unreadable record)."""
        path = self._path(endpoint, urn)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable state file %s: %s", path, error)
            return None
        if not isinstance(data, dict) or data.get("urn") != urn or data.get("format") != _FORMAT:
            return None
        try:
            return PushRecord(sha512=str(data["sha512"]), digest=str(data["digest"]), pushed_at=str(data["pushed_at"]))
        except KeyError:
            return None

    def put(self, endpoint: str, urn: str, sha512: str, digest: str) -> PushRecord:
        """Record a confirmed push (atomically: temp file, fsync, rename)."""
        record = PushRecord(
            sha512=sha512,
            digest=digest,
            pushed_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        payload = {
            "format": _FORMAT,
            "endpoint": endpoint.rstrip("/"),
            "urn": urn,
            "sha512": record.sha512,
            "digest": record.digest,
            "pushed_at": record.pushed_at,
        }
        path = self._path(endpoint, urn)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return record
