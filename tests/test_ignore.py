"""IgnoreRules: built-in list, .fgsyncignore, exclude, .gitignore (nested), folder pruning, outside paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from fgsync.errors import PackageError
from fgsync.ignore import IgnoreRules

Tree = Callable[..., Path]


@pytest.mark.parametrize(
    ("relpath", "is_dir"),
    [
        (".git", True),
        (".git/config", False),
        ("lib/.git/HEAD", False),
        (".hg/store/data", False),
        (".svn/entries", False),
        ("__pycache__", True),
        ("pkg/__pycache__/mod.cpython-311.pyc", False),
        ("mod.pyc", False),
        ("pkg/mod.pyc", False),
        (".DS_Store", False),
        ("pkg/.DS_Store", False),
        (".index.py.swp", False),
        (".index.py.swx", False),
        ("index.py~", False),
        ("4913", False),
        ("pkg/4913", False),
        ("#index.py#", False),
        (".#index.py", False),
        ("index.py___jb_tmp___", False),
        ("index.py___jb_old___", False),
        (".fgsync", True),
        (".fgsync/state.json", False),
    ],
)
def test_builtin_list_ignores(tree: Tree, relpath: str, is_dir: bool) -> None:
    rules = IgnoreRules.for_function(tree({"index.py": ""}))
    assert rules.is_ignored(relpath, is_dir=is_dir)


@pytest.mark.parametrize(
    "relpath",
    ["index.py", "pkg/mod.py", "git/config", "49130", "notes.swpx", "x.pyc.txt", "node_modules/a/index.js"],
)
def test_ordinary_files_are_kept(tree: Tree, relpath: str) -> None:
    rules = IgnoreRules.for_function(tree({"index.py": ""}))
    assert not rules.is_ignored(relpath)


def test_builtin_is_a_class_level_tuple() -> None:
    assert isinstance(IgnoreRules.BUILTIN, tuple)
    for pattern in (".git/", "__pycache__/", "*.pyc", "4913", "\\#*#", ".#*", "*___jb_tmp___", ".fgsync/"):
        assert pattern in IgnoreRules.BUILTIN


def test_folder_only_pattern_does_not_match_a_file(tree: Tree) -> None:
    rules = IgnoreRules.for_function(tree({"index.py": ""}))
    assert rules.is_ignored(".git", is_dir=True)
    assert not rules.is_ignored(".git", is_dir=False)  # a worktree's .git pointer file is an ordinary file


def test_fgsyncignore_with_negation(tree: Tree) -> None:
    src = tree({".fgsyncignore": "# logs\n*.log\n!keep.log\n/top.txt\n!vendored.pyc\n", "index.py": ""})
    rules = IgnoreRules.for_function(src)
    assert rules.is_ignored("debug.log")
    assert rules.is_ignored("sub/debug.log")
    assert not rules.is_ignored("keep.log")
    assert rules.is_ignored("top.txt")
    assert not rules.is_ignored("sub/top.txt")  # anchored to the source root
    assert not rules.is_ignored("vendored.pyc")  # a negation brings back what the built-in list drops
    assert rules.is_ignored("other.pyc")


def test_nothing_inside_an_ignored_folder_comes_back(tree: Tree) -> None:
    src = tree({".fgsyncignore": "build/\n!build/keep.txt\n", "index.py": ""})
    rules = IgnoreRules.for_function(src)
    assert rules.is_ignored("build", is_dir=True)
    assert rules.is_ignored("build/keep.txt")
    assert rules.is_ignored("build/deep/er/file.py")
    assert rules.is_ignored(".git/objects/ab/cdef")


def test_exclude_patterns_and_precedence(tree: Tree) -> None:
    src = tree({".fgsyncignore": "*.txt\n", "index.py": ""})
    rules = IgnoreRules.for_function(src, exclude=("tests/", "*.md", "!keep.txt"))
    assert rules.is_ignored("tests/test_x.py")
    assert rules.is_ignored("README.md")
    assert rules.is_ignored("notes.txt")
    assert not rules.is_ignored("keep.txt")  # exclude is applied after .fgsyncignore
    assert not rules.is_ignored("docs/guide.rst")


def test_gitignore_is_off_by_default_and_on_when_asked(tree: Tree) -> None:
    src = tree({".gitignore": "node_modules/\n*.env\n", "index.js": "", "node_modules/x/index.js": ""})
    assert not IgnoreRules.for_function(src).is_ignored("node_modules/x/index.js")
    rules = IgnoreRules.for_function(src, use_gitignore=True)
    assert rules.is_ignored("node_modules/x/index.js")
    assert rules.is_ignored("prod.env")
    assert not rules.is_ignored("index.js")


def test_nested_gitignore_applies_to_its_own_folder(tree: Tree) -> None:
    src = tree(
        {
            ".gitignore": "*.dat\n",
            "a/.gitignore": "*.tmp\n/local.txt\n!keep.dat\n",
            "a/b/.gitignore": "!again.tmp\n",
            "index.py": "",
        }
    )
    rules = IgnoreRules.for_function(src, use_gitignore=True)
    assert rules.is_ignored("a/x.tmp")
    assert rules.is_ignored("a/b/y.tmp")
    assert not rules.is_ignored("x.tmp")  # a/.gitignore says nothing about the root
    assert rules.is_ignored("a/local.txt")
    assert not rules.is_ignored("a/b/local.txt")  # "/local.txt" is anchored to a/
    assert rules.is_ignored("keep.dat")
    assert not rules.is_ignored("a/keep.dat")  # the deeper file overrides the shallower one
    assert not rules.is_ignored("a/b/again.tmp")


@pytest.mark.parametrize("relpath", ["../x.py", "..", "a/../../x.py", "/etc/passwd"])
def test_paths_outside_source_are_ignored(tree: Tree, relpath: str) -> None:
    rules = IgnoreRules.for_function(tree({"index.py": ""}))
    assert rules.is_ignored(relpath) is True


def test_absolute_paths_inside_source_and_the_source_itself(tree: Tree) -> None:
    src = tree({"index.py": "", "pkg/mod.pyc": ""})
    rules = IgnoreRules.for_function(src)
    assert not rules.is_ignored(str(src / "index.py"))
    assert rules.is_ignored(src / "pkg" / "mod.pyc")
    assert not rules.is_ignored(str(src), is_dir=True)
    assert not rules.is_ignored("", is_dir=True)
    assert rules.is_ignored(str(src.parent / "other" / "index.py"))
    assert not rules.is_ignored("./pkg//mod.py")


def test_invalid_pattern_names_the_file_and_line(tree: Tree) -> None:
    src = tree({".fgsyncignore": "*.log\n!\n", "index.py": ""})
    with pytest.raises(PackageError, match=r"\.fgsyncignore, line 2"):
        IgnoreRules.for_function(src)
    with pytest.raises(PackageError, match="exclude"):
        IgnoreRules.for_function(tree({"index.py": ""}, name="other"), exclude=("ok/", "!"))


def test_fgsyncignore_that_is_a_folder_is_an_error(tree: Tree) -> None:
    src = tree({".fgsyncignore/x": "", "index.py": ""})
    with pytest.raises(PackageError, match=r"\.fgsyncignore is a folder"):
        IgnoreRules.for_function(src)


def test_staleness_fingerprint_and_rule_files(tree: Tree) -> None:
    src = tree({"index.py": "", "a/x.py": ""})
    rules = IgnoreRules.for_function(src, use_gitignore=True)
    assert not rules.is_ignored("a/x.py")
    before = rules.fingerprint()
    assert not rules.is_stale()
    (src / "a" / ".gitignore").write_text("x.py\n")  # appears in a folder already consulted
    assert rules.is_stale()
    fresh = rules.reload()
    assert fresh.is_ignored("a/x.py")
    assert fresh.fingerprint() != before
    (src / ".fgsyncignore").write_text("*.md\n")
    assert fresh.is_stale()
    assert rules.is_rule_file(".fgsyncignore")
    assert rules.is_rule_file("a/.gitignore")
    assert not IgnoreRules.for_function(src).is_rule_file("a/.gitignore")
    assert not rules.is_rule_file("index.py")


def test_reading_rules_never_writes_into_source(tree: Tree) -> None:
    src = tree({".fgsyncignore": "*.log\n", ".gitignore": "x\n", "index.py": ""})
    before = sorted(os.listdir(src))
    rules = IgnoreRules.for_function(src, use_gitignore=True)
    rules.is_ignored("deep/a/b/c.py")
    rules.fingerprint()
    assert sorted(os.listdir(src)) == before


# -- the built-in list's fast path -------------------------------------------------------------------------------

_FRAGMENTS = [
    "", ".", "#", "~", "/", "a", "x", ".git", ".hg", ".svn", "__pycache__", ".pyc", "pyc", ".DS_Store", ".swp",
    ".swx", "4913", ".#", "___jb_tmp___", "___jb_old___", ".fgsync", ".fgsyncignore", "node_modules", "é", " ",
]  # fmt: skip


def _names(count: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    names = set()
    while len(names) < count:
        rel = "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randrange(1, 5))).strip("/")
        rel = "/".join(part for part in rel.split("/") if part)
        if rel and rel not in (".", "..") and not any(part in (".", "..") for part in rel.split("/")):
            names.add(rel)
    return sorted(names)


@pytest.mark.parametrize("seed", range(4))
def test_the_builtin_fast_path_decides_as_pathspec(seed: int, tmp_path: Path) -> None:
    """The plain-Python matcher of the built-in list against pathspec's own answer, on many made-up paths."""
    from fgsync.ignore import basename_matcher

    spec = IgnoreRules._builtin_spec()
    fast = basename_matcher(IgnoreRules.BUILTIN)
    assert fast is not None
    checked = 0
    for rel in [*_names(3000, seed), "#", "##", "#a#", "a#", ".#", "~", "4913", "a/4913", "b/.fgsyncignore"]:
        parts = rel.split("/")
        if any(spec.check_file("/".join(parts[:depth]) + "/").include for depth in range(1, len(parts))):
            continue  # below an ignored folder: decide is never asked (the walk prunes, is_ignored stops first)
        for is_dir in (False, True):
            expected = bool(spec.check_file(rel + "/" if is_dir else rel).include)
            assert fast(rel, is_dir) is expected, (rel, is_dir)
            checked += 1
    assert checked > 2000


def test_patterns_the_fast_path_does_not_know_keep_pathspec() -> None:
    from fgsync.ignore import basename_matcher

    unknown = ("!keep.pyc", "a/b", "**/x", "?.pyc", "[ab].txt", "a*b*c", "/dir/", "\\!x", "*.pyc/", "#c", "x ", "")
    for pattern in unknown:
        assert basename_matcher(("*.pyc", pattern)) is None, pattern
    assert basename_matcher(("node_modules/", "*.log", "tmp*", "/build", "a*z")) is not None
