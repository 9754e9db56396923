"""Whether a git operation holds a source tree (``index.lock``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def git_lock_held(source: Path) -> Optional[Path]:
    """The ``index.lock`` in the git folder of ``source`` or of any repository above it, or None.

    A ``.git`` file (worktrees, submodules) is followed to the folder its ``gitdir:`` line names.
    """
    for folder in (source, *source.parents):
        dotgit = folder / ".git"
        try:
            if dotgit.is_dir():
                lock = dotgit / "index.lock"
                if lock.exists():
                    return lock
            elif dotgit.is_file():
                line = dotgit.read_text(encoding="utf-8", errors="replace").strip()
                lock = folder / line[7:].strip() / "index.lock"
                if line.startswith("gitdir:") and lock.exists():
                    return lock
        except OSError:
            continue
    return None
