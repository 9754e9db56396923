"""The emulator's OBS buckets and objects, in memory and (with a data folder) as files on disk.

With ``data_dir``, each bucket is a folder ``DIR/obs/<bucket>/``: ``objects/<sha256 of the key>`` holds each
object's bytes and ``index.json`` the keys with their size, ETag (MD5), content type and time. An object file is
written before the index that names it and removed after the index that no longer does, each write-then-rename,
so a crash never leaves a key without its bytes; an object whose bytes do not match its ETag is dropped with a
warning when the folder is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from fgsync.emulator.store import atomic_write

log = logging.getLogger(__name__)

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: First path segments that are the emulator's own APIs, never a bucket.
RESERVED_SEGMENTS = ("v2", "v3", "v3.0", "_emulator")
_INDEX = "index.json"


def bucket_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be an OBS bucket (OBS's naming rules, and the emulator's own paths), or None."""
    if not _BUCKET_RE.match(name):
        return "3 to 63 characters: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "no '..', '.-' or '-.'"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return "not an IP address"
    if name in RESERVED_SEGMENTS:
        return f"{name!r} is one of the emulator's API paths"
    return None


@dataclasses.dataclass(frozen=True)
class ObsObject:
    """One object: ``data`` is its bytes, ``etag`` their MD5 (hex), ``last_modified`` epoch seconds."""

    bucket: str
    key: str
    etag: str
    content_type: str
    last_modified: float
    data: bytes = dataclasses.field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


class ObjectStore:
    """Thread-safe buckets of objects, optionally persisted in ``data_dir/obs``."""

    def __init__(self, data_dir: Optional[Path], *, clock: Callable[[], float]) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._buckets: dict[str, dict[str, ObsObject]] = {}
        self._folder = data_dir / "obs" if data_dir is not None else None
        if self._folder is not None:
            self._folder.mkdir(parents=True, exist_ok=True)
            self._load()

    def create_bucket(self, name: str) -> bool:
        """Create a bucket (True), or nothing when it exists (False).

        Raises:
            ValueError: not a valid bucket name.
        """
        problem = bucket_name_problem(name)
        if problem is not None:
            raise ValueError(f"invalid bucket name {name!r}: {problem}")
        with self._lock:
            if name in self._buckets:
                return False
            self._buckets[name] = {}
            self._save(name)
            return True

    def has_bucket(self, name: str) -> bool:
        with self._lock:
            return name in self._buckets

    def buckets(self) -> list[str]:
        with self._lock:
            return sorted(self._buckets)

    def put(self, bucket: str, key: str, data: bytes, *, content_type: str = "") -> ObsObject:
        """Store an object (replacing one with the same key).

        Raises:
            KeyError: no such bucket.
        """
        with self._lock:
            objects = self._buckets[bucket]
            obj = ObsObject(
                bucket=bucket,
                key=key,
                etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),
                content_type=content_type,
                last_modified=self._clock(),
                data=data,
            )
            if self._folder is not None:
                atomic_write(self._object_file(bucket, key), data)
            objects[key] = obj
            self._save(bucket)
            return obj

    def get(self, bucket: str, key: str) -> Optional[ObsObject]:
        with self._lock:
            return self._buckets.get(bucket, {}).get(key)

    def delete(self, bucket: str, key: str) -> bool:
        """Remove an object; False when there was none (KeyError: no such bucket)."""
        with self._lock:
            objects = self._buckets[bucket]
            if objects.pop(key, None) is None:
                return False
            self._save(bucket)
            if self._folder is not None:
                self._object_file(bucket, key).unlink(missing_ok=True)
            return True

    def objects(self, bucket: str, prefix: str = "") -> list[ObsObject]:
        """The bucket's objects whose key starts with ``prefix``, in key order (KeyError: no such bucket)."""
        with self._lock:
            found = [o for k, o in self._buckets[bucket].items() if k.startswith(prefix)]
        return sorted(found, key=lambda o: o.key)

    def summary(self) -> dict[str, dict[str, int]]:
        """``{bucket: {"objects": n, "bytes": total}}`` for the stats answer."""
        with self._lock:
            return {
                name: {"objects": len(objects), "bytes": sum(o.size for o in objects.values())}
                for name, objects in sorted(self._buckets.items())
            }

    # ------------------------------------------------------------------ persistence

    def _object_file(self, bucket: str, key: str) -> Path:
        assert self._folder is not None
        folder = self._folder / bucket / "objects"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / hashlib.sha256(key.encode("utf-8")).hexdigest()

    def _save(self, bucket: str) -> None:
        if self._folder is None:
            return
        folder = self._folder / bucket
        folder.mkdir(parents=True, exist_ok=True)
        index = {
            key: {"etag": o.etag, "content_type": o.content_type, "last_modified": o.last_modified, "size": o.size}
            for key, o in sorted(self._buckets[bucket].items())
        }
        atomic_write(folder / _INDEX, json.dumps({"objects": index}, indent=2, sort_keys=True).encode("utf-8"))

    def _load(self) -> None:
        assert self._folder is not None
        for index_path in sorted(self._folder.glob(f"*/{_INDEX}")):
            bucket = index_path.parent.name
            if bucket_name_problem(bucket) is not None:
                continue
            try:
                entries: dict[str, Any] = json.loads(index_path.read_text(encoding="utf-8"))["objects"]
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("ignoring unreadable bucket index %s: %s", index_path, exc)
                continue
            objects: dict[str, ObsObject] = {}
            for key, meta in entries.items():
                try:
                    data = self._object_file(bucket, key).read_bytes()
                    obj = ObsObject(bucket, key, str(meta["etag"]), str(meta["content_type"]),
                                    float(meta["last_modified"]), data)  # fmt: skip
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    log.warning("ignoring object %r of bucket %s: %s", key, bucket, exc)
                    continue
                if hashlib.md5(data, usedforsecurity=False).hexdigest() != obj.etag:
                    log.warning("ignoring object %r of bucket %s: its bytes do not match its ETag", key, bucket)
                    continue
                objects[key] = obj
            self._buckets[bucket] = objects
