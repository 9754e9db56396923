"""fgsync's own folders on the user's machine: where state, locks and caches live.

They are never packaged and never watched, wherever they are (a devcontainer's ``XDG_CACHE_HOME`` or a
``FGSYNC_CACHE_DIR`` inside a function's source is common): :mod:`fgsync.ignore` leaves them out.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FGSYNC_CACHE_DIR``, else the platform's user cache folder for fgsync (read at each call)."""
    override = os.environ.get("FGSYNC_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs  # here: ~7 ms with the tempfile it imports, for nothing when the variable is set

    return Path(platformdirs.user_cache_dir("fgsync"))


def own_folders() -> tuple[Path, ...]:
    """Every folder fgsync writes to on its own (state, locks, caches all live under the cache folder)."""
    return (cache_dir(),)
