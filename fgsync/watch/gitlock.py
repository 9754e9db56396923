"""Whether a git operation holds a source tree (``index.lock``)."""

from __future__ import annotations

from pathlib import Path


def git_lock_held(source: Path) -> bool:
    """Whether ``index.lock`` exists in the git folder of ``source`` or of any repository above it.

    A ``.git`` file (worktrees, submodules) is followed to the folder its ``gitdir:`` line names.
    """
    for folder in (source, *source.parents):
        dotgit = folder / ".git"
        try:
            if dotgit.is_dir():
                if (dotgit / "index.lock").exists():
                    return True
            elif dotgit.is_file():
                line = dotgit.read_text(encoding="utf-8", errors="replace").strip()
                if line.startswith("gitdir:") and (folder / line[7:].strip() / "index.lock").exists():
                    return True
        except OSError:
            continue
    return False
