"""The dependency split: which files `auto` and patterns take, two reproducible zips from one walk, the shared
incremental cache, and the dependency package's limits."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import posixpath
import random
import shutil
import time
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

import pytest

from fgsync.errors import PackageError
from fgsync.ignore import IgnoreRules
from fgsync.package import (
    MAX_DEPENDENCY_BYTES,
    MAX_DEPENDENCY_FILES,
    MAX_DEPENDENCY_OBS_BYTES,
    MAX_PACKAGE_BYTES,
    DependencySpec,
    Package,
    PackageBuilder,
    SplitPackage,
    build_package,
    build_split_package,
)
from fgsync.package.dependencies import dependency_size_fix, record_paths
from fgsync.package.walk import open_source_file
from tests.conftest import HELLO_PY, make_tree, write_config

Tree = Callable[..., Path]
Setting = Union[str, tuple[str, ...]]

#: As in test_package: a short racy margin, so files written a moment ago can be trusted after settle().
MARGIN_NS = 50_000_000


def rules(src: Path) -> IgnoreRules:
    return IgnoreRules.for_function(src)


def split(
    src: Path,
    setting: Setting = "auto",
    *,
    max_bytes: int = MAX_PACKAGE_BYTES,
    max_dependency_bytes: int = MAX_DEPENDENCY_BYTES,
    max_dependency_files: int = MAX_DEPENDENCY_FILES,
) -> SplitPackage:
    return build_split_package(
        src,
        rules=rules(src),
        dependencies=setting,
        max_bytes=max_bytes,
        max_dependency_bytes=max_dependency_bytes,
        max_dependency_files=max_dependency_files,
    )


def single(src: Path) -> Package:
    """The package of the same tree with dependencies = "off"."""
    return build_package(src, rules=rules(src))


def contents(pkg: Package) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def settle() -> None:
    time.sleep(2 * MARGIN_NS / 1e9)


def age(root: Path, seconds: int = 3600) -> None:
    past = time.time_ns() - seconds * 10**9
    for folder, _, files in os.walk(root):
        for name in files:
            os.utime(Path(folder, name), ns=(past, past), follow_symlinks=False)


class CountingOpen:
    """open_file seam that records every file the builder reads."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def __call__(self, path: str) -> BinaryIO:
        self.opened.append(path)
        return open_source_file(path)


# --- layouts -----------------------------------------------------------------------------------------------


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def pip_install(
    root: Path,
    name: str,
    modules: dict[str, str],
    *,
    version: str = "1.0",
    scripts: tuple[str, ...] = ("tool",),
    missing: tuple[str, ...] = (),
) -> str:
    """What `pip install -t root NAME` leaves: the modules, NAME-VERSION.dist-info with its RECORD, bin/ launchers.

    RECORD lists the modules, a .pyc for each (never written: the walk drops .pyc anyway), the launchers as
    ``../../bin/x`` (outside the target, as pip records them), every .dist-info file, and ``missing`` paths
    that do not exist. Returns the .dist-info folder's name.
    """
    dist = f"{name}-{version}.dist-info"
    files = dict(modules)
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist}/INSTALLER"] = "pip\n"
    files[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist}/licenses/LICENSE"] = "MIT\n"
    for script in scripts:
        files[f"bin/{script}"] = f"#!/usr/bin/env python\nimport {name}\n"
    make_tree(root, files)
    rows = []
    for rel, body in files.items():
        if rel.startswith("bin/"):
            rows.append(f"../../bin/{rel[4:]},{record_hash(body.encode())},{len(body.encode())}")
        else:
            rows.append(f"{rel},{record_hash(body.encode())},{len(body.encode())}")
        if rel.endswith(".py"):
            folder, _, base = rel.rpartition("/")
            pyc = f"{folder}/__pycache__/{base[:-3]}.cpython-311.pyc" if folder else f"__pycache__/{base[:-3]}.pyc"
            rows.append(f"{pyc},,")
    rows += [f"{rel},," for rel in missing]
    rows.append(f"{dist}/RECORD,,")
    (root / dist / "RECORD").write_text("\n".join(rows) + "\n")
    return dist


def node_modules(rng: random.Random, count: int) -> dict[str, str]:
    """A node_modules/ tree: packages with package.json, nested lib/ folders and a nested node_modules."""
    files: dict[str, str] = {}
    packages = [f"pkg{i}" for i in range(max(1, count // 6))] + ["@scope/thing"]
    for index in range(count):
        pkg = rng.choice(packages)
        depth = rng.choice(["", "lib/", "lib/util/", "node_modules/inner/", "dist/esm/"])
        files[f"node_modules/{pkg}/{depth}f{index}.js"] = f"module.exports = {index};\n" * rng.randrange(1, 40)
    for pkg in packages:
        files[f"node_modules/{pkg}/package.json"] = f'{{"name": "{pkg}", "main": "index.js"}}\n'
    files["node_modules/.package-lock.json"] = "{}\n"
    return files


# --- auto --------------------------------------------------------------------------------------------------


def test_auto_takes_node_modules_at_the_root_only(tree: Tree) -> None:
    rng = random.Random(1)
    deps = node_modules(rng, 60)
    src = tree({"index.js": "exports.handler = async () => 1;\n", "lib/node_modules/x.js": "1", **deps})
    result = split(src)
    assert result.dependency is not None
    assert set(result.dependency.paths) == set(deps)
    assert result.code.paths == ("index.js", "lib/node_modules/x.js")  # only the root's node_modules/
    assert contents(result.dependency) == {rel: body.encode() for rel, body in deps.items()}


def test_auto_takes_what_pip_install_t_put_at_the_root(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, "app/logic.py": "x = 1\n", "requirements.txt": "requests\n"})
    requests_info = pip_install(
        src,
        "requests",
        {"requests/__init__.py": "from .api import get\n", "requests/api.py": "def get(): ...\n"},
        missing=("requests/deleted_since.py", "/abs/elsewhere.py", "C:/win/path.py"),
    )
    six_info = pip_install(src, "six", {"six.py": "PY3 = True\n"}, version="1.16.0", scripts=())
    # A package folder pip did not install (no RECORD names it) and a .dist-info without a RECORD stay code,
    # as does a RECORD deeper than the root.
    make_tree(
        src, {"mine/__init__.py": "", "orphan-0.1.dist-info/METADATA": "x", "sub/x-1.dist-info/RECORD": "sub/a.py,,\n"}
    )
    make_tree(src, {"requests/__pycache__/api.cpython-311.pyc": b"\0", "sub/a.py": ""})
    result = split(src)
    assert result.dependency is not None
    assert set(result.dependency.paths) == {
        "requests/__init__.py",
        "requests/api.py",
        "six.py",
        *(f"{info}/{name}" for info in (requests_info, six_info) for name in
          ("METADATA", "INSTALLER", "WHEEL", "licenses/LICENSE", "RECORD")),
    }  # fmt: skip
    assert set(result.code.paths) == {
        "index.py",
        "app/logic.py",
        "requirements.txt",
        "bin/tool",  # the launcher RECORD lists as ../../bin/tool: outside the target, so not taken
        "mine/__init__.py",
        "orphan-0.1.dist-info/METADATA",
        "sub/x-1.dist-info/RECORD",
        "sub/a.py",
    }


def test_auto_takes_both_layouts_together(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, **node_modules(random.Random(2), 10)})
    pip_install(src, "attrs", {"attrs/__init__.py": ""})
    result = split(src)
    assert result.dependency is not None
    assert {p.split("/")[0] for p in result.dependency.paths} == {"node_modules", "attrs", "attrs-1.0.dist-info"}


def test_auto_without_either_layout_means_no_dependency_package(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, "lib/util.py": "x = 1\n"})
    result = split(src)
    assert result.dependency is None
    assert result.code == single(src)  # the very same zip as dependencies = "off"


def test_record_rows_are_normalised_and_the_escaping_ones_dropped() -> None:
    text = "\n".join(
        [
            "pkg/a.py,sha256=x,1",
            "pkg/./b.py,,",
            "pkg/sub/../c.py,,",
            "pkg\\win.py,,",
            '"pkg/with,comma.py",,',
            "../../bin/tool,,",
            "pkg/../../out.py,,",
            "/etc/passwd,,",
            "C:\\Python\\x.py,,",
            "",
            ",,",
            ".,,",
        ]
    )
    assert record_paths(text) == ["pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/win.py", "pkg/with,comma.py"]


def test_a_changed_record_moves_its_files_on_the_next_build(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, "vendored/x.py": "x = 1\n"})
    builder = PackageBuilder(src, rules=rules(src), dependencies="auto", racy_margin_ns=MARGIN_NS)
    assert builder.build_split().dependency is None
    make_tree(src, {"vendored-1.dist-info/RECORD": "vendored/x.py,,\n"})
    first = builder.build_split()
    assert first.dependency is not None and "vendored/x.py" in first.dependency.paths
    (src / "vendored-1.dist-info" / "RECORD").write_text("vendored-1.dist-info/RECORD,,\n")
    second = builder.build_split()
    assert second.dependency is not None and "vendored/x.py" in second.code.paths
    assert (second.code.data, second.dependency.data) == (split(src).code.data, split(src).dependency.data)  # type: ignore[union-attr]


# --- patterns ----------------------------------------------------------------------------------------------


def test_patterns_pick_files_with_gitignore_rules(tree: Tree) -> None:
    src = tree(
        {
            "index.py": HELLO_PY,
            "vendor/a.py": "",
            "vendor/keep/k.py": "",
            "vendor/deep/b.py": "",
            "lib/vendor/c.py": "",
            "data/x.json": "{}",
            "models/m.bin": b"\1\2",
        }
    )
    result = split(src, ("/vendor/*", "!/vendor/keep/", "*.bin"))
    assert result.dependency is not None
    assert result.dependency.paths == ("models/m.bin", "vendor/a.py", "vendor/deep/b.py")
    # Unanchored folder patterns match at any depth, as in .gitignore.
    result = split(src, ("vendor/",))
    assert result.dependency is not None
    assert result.dependency.paths == ("lib/vendor/c.py", "vendor/a.py", "vendor/deep/b.py", "vendor/keep/k.py")


def test_a_file_inside_a_matched_folder_cannot_be_taken_back(tree: Tree) -> None:
    """As in git: once a folder matches, a negation of a file inside it changes nothing."""
    src = tree({"index.py": HELLO_PY, "vendor/a.py": "", "vendor/keep.py": ""})
    result = split(src, ("vendor/", "!vendor/keep.py"))
    assert result.dependency is not None and result.dependency.paths == ("vendor/a.py", "vendor/keep.py")
    assert all(
        rules_with(src, ("vendor/", "!vendor/keep.py")).is_ignored(p) for p in result.dependency.paths
    )  # the ignore engine agrees


def test_patterns_matching_nothing_mean_no_dependency_package(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY})
    result = split(src, ("node_modules/",))
    assert result.dependency is None and result.code == single(src)


def test_ignored_files_are_in_neither_package(tree: Tree) -> None:
    src = tree(
        {"index.py": HELLO_PY, "node_modules/a.js": "1", "node_modules/a.js~": "backup", "node_modules/x.pyc": b""}
    )
    (src / ".fgsyncignore").write_text("node_modules/big/\n")
    make_tree(src, {"node_modules/big/huge.js": "x" * 1000})
    result = split(src)
    assert result.dependency is not None and result.dependency.paths == ("node_modules/a.js",)
    assert result.code.paths == ("index.py",)


def test_the_setting_is_checked_when_the_builder_is_made(tree: Tree) -> None:
    src = tree({"index.py": ""})
    for bad, message in (("on", r'must be "off", "auto"'), ((), "empty list"), (("!",), "invalid pattern")):
        with pytest.raises(PackageError, match=message):
            PackageBuilder(src, rules=rules(src), dependencies=bad)
    assert DependencySpec.from_setting("off") is None
    assert DependencySpec.from_setting(["a/"]) == DependencySpec(patterns=("a/",))
    assert DependencySpec.from_setting("auto") == DependencySpec(auto=True)


# --- one walk, two reproducible zips -----------------------------------------------------------------------


def make_mixed(root: Path, *, reverse: bool, mtime_seed: int, umask: int = 0o022) -> Path:
    files: dict[str, Union[str, bytes]] = {
        "index.py": HELLO_PY,
        "lib/util.py": "def double(x):\n    return 2 * x\n" * 20,
        "bin/run.sh": "#!/bin/sh\necho run\n",
        **node_modules(random.Random(3), 30),
        "node_modules/blob.bin": random.Random(4).randbytes(5000),
        "node_modules/café/ünï.js": "1;\n",
    }
    items = list(files.items())
    if reverse:
        items.reverse()
    old = os.umask(umask)
    try:
        for rel, body in items:
            make_tree(root, {rel: body})
        for rel in ("bin/run.sh", "node_modules/pkg0/package.json"):
            (root / rel).chmod(0o777 & ~umask)
        pip_install(root, "six", {"six.py": "PY3 = True\n"}, scripts=())
    finally:
        os.umask(old)
    rng = random.Random(mtime_seed)
    for folder, _, names in os.walk(root):
        for name in names:
            stamp = rng.randrange(10**9, 2 * 10**9)
            os.utime(Path(folder, name), (stamp, stamp))
    return root


def test_both_zips_are_byte_reproducible(tmp_path: Path) -> None:
    one = split(make_mixed(tmp_path / "one", reverse=False, mtime_seed=0))
    two = split(make_mixed(tmp_path / "elsewhere" / "two", reverse=True, mtime_seed=9, umask=0o077))
    assert one.dependency is not None and two.dependency is not None
    assert one.code.data == two.code.data and one.dependency.data == two.dependency.data
    for pkg in (one.code, one.dependency):
        assert pkg.sha512 == hashlib.sha512(pkg.data).hexdigest()
        assert pkg.sha256 == hashlib.sha256(pkg.data).hexdigest()
        assert pkg.files == len(pkg.paths) and list(pkg.paths) == sorted(pkg.paths)
    with zipfile.ZipFile(io.BytesIO(one.dependency.data)) as archive:
        for info in archive.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0) and info.create_system == 3 and info.extra == b""
            expected = 0o100755 if info.filename == "node_modules/pkg0/package.json" else 0o100644
            assert info.external_attr >> 16 == expected, info.filename
    assert (one.code.filename, one.dependency.filename) == ("index.zip", "dependency.zip")


def test_the_two_zips_merge_into_the_single_package(tmp_path: Path) -> None:
    src = make_mixed(tmp_path / "src", reverse=False, mtime_seed=1)
    result = split(src)
    assert result.dependency is not None
    assert not set(result.code.paths) & set(result.dependency.paths)
    assert contents(result.code) | contents(result.dependency) == contents(single(src))


def rules_with(src: Path, patterns: tuple[str, ...]) -> IgnoreRules:
    """The ignore engine with the patterns as `exclude` and nothing else of fgsync's own: an oracle."""
    return IgnoreRules(src, exclude=patterns, private=())


NAMES = ["a", "b", "lib", "src", "vendor", "data", "node_modules", "keep", "x.dist-info", "models"]
LEAVES = ["index.py", "m.py", "x.js", "y.txt", "z.bin", "w.pyc", "notes~", "RECORD", "package.json", "#t#"]
PATTERN_POOL = [
    "node_modules/", "/vendor/", "*.js", "!keep.js", "lib/**/x*", "a/", "!a/b/", "/b/*", "**/data/",
    "!vendor/keep/", "*.txt", "models/*.bin", "src/**", "!*.txt", "/lib/", "[ab]/m.py",
]  # fmt: skip


def random_tree(root: Path, rng: random.Random) -> None:
    """Random folders and files, some that the built-in rules drop, sometimes node_modules/ and a pip layout."""
    files: dict[str, Union[str, bytes]] = {"index.py": HELLO_PY}
    for _ in range(rng.randrange(5, 60)):
        depth = rng.randrange(0, 4)
        rel = "/".join([*(rng.choice(NAMES) for _ in range(depth)), rng.choice(LEAVES)])
        files[rel] = rng.randbytes(rng.randrange(0, 300)) if rng.random() < 0.3 else f"# {rel}\n" * rng.randrange(9)
    if rng.random() < 0.5:
        files.update(node_modules(rng, rng.randrange(1, 30)))
    items = list(files.items())
    rng.shuffle(items)  # creation order
    for rel, body in items:
        if (root / rel).exists() or any((root / p).is_file() for p in Path(rel).parents if str(p) != "."):
            continue  # a file where a folder is wanted, or the reverse
        make_tree(root, {rel: body})
    if rng.random() < 0.5 and not (root / "lib0").exists():
        modules = {f"lib0/m{i}.py": f"v = {i}\n" for i in range(rng.randrange(1, 6))}
        pip_install(root, "lib0", modules, missing=("lib0/gone.py",))
        if rng.random() < 0.5:  # a RECORD that also claims a file of the code
            record = root / "lib0-1.0.dist-info" / "RECORD"
            record.write_text(record.read_text() + "index.py,,\n")
    for folder, _, names in os.walk(root):
        for name in names:
            stamp = rng.randrange(10**9, 2 * 10**9)
            os.utime(Path(folder, name), (stamp, stamp))


@pytest.mark.parametrize("kind", ["auto", "patterns"])
def test_property_code_and_dependency_partition_the_single_package(tmp_path: Path, kind: str) -> None:
    """Over many generated trees: the two path sets are disjoint, their union is the single package's, the
    merged contents are the single package's contents, and the dependency set is what the rules say."""
    seen_both = 0
    for seed in range(60):
        rng = random.Random(seed)
        src = tmp_path / f"{kind}{seed}"
        random_tree(src, rng)
        whole = single(src)
        setting: Setting = "auto"
        if kind == "patterns":
            setting = tuple(rng.sample(PATTERN_POOL, rng.randrange(1, 5)))
        try:
            result = split(src, setting)
        except PackageError as error:  # every file a dependency: refused, as an empty code upload would be
            assert "nothing to package" in str(error), (seed, setting)
            assert expected_dependencies(src, setting, whole) == set(whole.paths)
            continue
        code, dependency = set(result.code.paths), set(result.dependency.paths if result.dependency else ())
        assert not code & dependency, (seed, setting)
        assert code | dependency == set(whole.paths), (seed, setting)
        assert dependency == expected_dependencies(src, setting, whole), (seed, setting)
        merged = contents(result.code) | (contents(result.dependency) if result.dependency else {})
        assert merged == contents(whole)
        if result.dependency is None:
            assert result.code.data == whole.data
        else:
            seen_both += 1
    assert seen_both > 20  # the generator does exercise the split


def expected_dependencies(src: Path, setting: Setting, whole: Package) -> set[str]:
    """The dependency set computed another way: the ignore engine for patterns, a plain reading for auto."""
    if setting != "auto":
        assert isinstance(setting, tuple)
        oracle = rules_with(src, setting)
        return {p for p in whole.paths if oracle.is_ignored(p)}
    expected = {p for p in whole.paths if p.startswith("node_modules/")}
    for info in src.glob("*.dist-info"):
        if (info / "RECORD").is_file():
            expected |= {p for p in whole.paths if p.startswith(info.name + "/")}
            text = (info / "RECORD").read_bytes().decode("utf-8", errors="replace")
            for row in csv.reader(io.StringIO(text)):
                path = posixpath.normpath(row[0].strip()) if row and row[0].strip() else ""
                if path in whole.paths:  # never "../"-prefixed: those are not in the walk
                    expected.add(path)
    return expected


# --- the incremental builder serves both -------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    src = make_mixed(tmp_path / "src", reverse=False, mtime_seed=2)
    age(src)
    return src


def assert_like_cold(warm: SplitPackage, src: Path) -> None:
    reference = split(src)
    assert warm.code.data == reference.code.data
    assert (warm.dependency.data if warm.dependency else None) == (
        reference.dependency.data if reference.dependency else None
    )


def test_incremental_split_equals_cold_builds_across_edits(mixed: Path) -> None:
    src = mixed
    builder = PackageBuilder(src, rules=rules(src), dependencies="auto", racy_margin_ns=MARGIN_NS)
    assert_like_cold(builder.build_split(), src)
    edits: list[Callable[[], object]] = [
        lambda: (src / "lib" / "util.py").write_text("changed = True\n"),
        lambda: (src / "node_modules" / "pkg1" / "package.json").write_text('{"name": "pkg1", "v": 2}\n'),
        lambda: (src / "node_modules" / "aaa" / "first.js").parent.mkdir(),
        lambda: (src / "node_modules" / "aaa" / "first.js").write_text("first\n"),
        lambda: (src / "node_modules" / "pkg0" / "package.json").chmod(0o644),
        lambda: (src / "aaa.py").write_text("first code file\n"),
        lambda: (src / "node_modules" / "blob.bin").unlink(),
        lambda: (src / "six.py").rename(src / "six_renamed.py"),  # leaves the dependency: RECORD no longer names it
        lambda: (src / "six_renamed.py").rename(src / "six.py"),  # and comes back
        lambda: (src / "index.py").write_text(HELLO_PY + "# edited\n"),
        lambda: None,
    ]
    for edit in edits:
        edit()
        assert_like_cold(builder.build_split(), src)
    shutil.rmtree(src / "node_modules")
    (src / "six-1.0.dist-info" / "RECORD").unlink()
    result = builder.build_split()
    assert result.dependency is None
    assert_like_cold(result, src)


@pytest.mark.parametrize("seed", range(8))
def test_property_incremental_split_equals_cold_over_random_edits(tmp_path: Path, seed: int) -> None:
    rng = random.Random(1000 + seed)
    src = tmp_path / "src"
    random_tree(src, rng)
    setting: Setting = "auto" if seed % 2 else (*rng.sample(PATTERN_POOL, 2), "node_modules/")
    builder = PackageBuilder(src, rules=rules(src), dependencies=setting, racy_margin_ns=MARGIN_NS)

    def check() -> None:
        try:
            warm = builder.build_split()
        except PackageError as error:
            assert "nothing to package" in str(error)
            with pytest.raises(PackageError, match="nothing to package"):
                split(src, setting)
            return
        reference = split(src, setting)
        assert warm.code.data == reference.code.data
        assert (warm.dependency and warm.dependency.data) == (reference.dependency and reference.dependency.data)

    check()
    for _ in range(8):
        files = [p for p in src.rglob("*") if p.is_file() and p.name != "index.py"]
        action = rng.choice(["write", "write", "delete", "add", "chmod", "nothing"])
        if action == "write" and files:
            rng.choice(files).write_text(f"edited {rng.random()}\n")
        elif action == "delete" and files:
            rng.choice(files).unlink()
        elif action == "add":
            make_tree(src, {rng.choice(["node_modules/new/", "lib/", "vendor/", ""]) + f"n{rng.randrange(99)}.js": "n"})
        elif action == "chmod" and files:
            rng.choice(files).chmod(rng.choice([0o644, 0o755]))
        check()


def test_a_code_edit_recompresses_nothing_of_the_dependency(mixed: Path) -> None:
    src = mixed
    opener = CountingOpen()
    builder = PackageBuilder(src, rules=rules(src), dependencies="auto", open_file=opener, racy_margin_ns=MARGIN_NS)
    settle()
    first = builder.build_split()
    assert first.dependency is not None
    assert builder.dependency_stats.compressed == first.dependency.files
    assert builder.code_stats.compressed == first.code.files
    first_sha256 = first.dependency.sha256
    settle()
    (src / "lib" / "util.py").write_text("edited = 1\n")
    opener.opened.clear()
    second = builder.build_split()
    assert [Path(p).name for p in opener.opened] == ["util.py"]
    assert (builder.code_stats.reused, builder.code_stats.compressed) == (first.code.files - 1, 1)
    assert builder.dependency_stats == type(builder.dependency_stats)(first.dependency.files, 0, 0)
    assert second.dependency is first.dependency  # not even laid out again; its sha256 is not recomputed
    assert second.dependency.sha256 == first_sha256
    assert second.code.data != first.code.data
    assert_like_cold(second, src)


def test_a_dependency_edit_recompresses_nothing_of_the_code(mixed: Path) -> None:
    src = mixed
    builder = PackageBuilder(src, rules=rules(src), dependencies="auto", racy_margin_ns=MARGIN_NS)
    settle()
    first = builder.build_split()
    settle()
    (src / "node_modules" / "pkg2" / "added.js").write_text("npm install\n")
    (src / "node_modules" / "pkg1" / "package.json").write_text('{"name": "pkg1", "version": "2.0.0"}\n')
    second = builder.build_split()
    assert second.code is first.code
    assert builder.code_stats == type(builder.code_stats)(first.code.files, 0, 0)
    assert builder.dependency_stats.compressed == 2
    assert builder.stats.compressed == 2
    assert second.dependency is not None and first.dependency is not None
    assert second.dependency.sha256 != first.dependency.sha256
    assert_like_cold(second, src)


def test_a_file_moving_between_the_packages_is_not_compressed_again(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, "vendored/x.py": "x = 1\n" * 50})
    builder = PackageBuilder(src, rules=rules(src), dependencies="auto", racy_margin_ns=MARGIN_NS)
    settle()
    builder.build_split()
    make_tree(src, {"vendored-1.dist-info/RECORD": "vendored/x.py,,\n"})
    result = builder.build_split()
    assert result.dependency is not None and "vendored/x.py" in result.dependency.paths
    assert builder.dependency_stats.reused == 1  # x.py's entry came from the code's last build
    assert builder.dependency_stats.compressed + builder.dependency_stats.rechecked == 1  # the new RECORD


def test_build_is_the_code_part_and_off_is_unchanged(mixed: Path) -> None:
    src = mixed
    with_deps = PackageBuilder(src, rules=rules(src), dependencies="auto")
    code = with_deps.build()
    assert code.data == split(src).code.data
    assert code.data == build_package(src, rules=rules(src), dependencies="auto").data
    off = PackageBuilder(src, rules=rules(src))
    assert off.dependencies is None
    assert off.build_split() == SplitPackage(off.build(), None)
    assert off.build().data == single(src).data
    assert off.dependency_stats == type(off.dependency_stats)()


# --- limits ------------------------------------------------------------------------------------------------


NARROW = (
    "leave out what the function does not need at run time (exclude, .fgsyncignore, or a narrower list of "
    "dependencies patterns)"
)
OBS_FIX = f'set [obs] bucket = "..." in fgsync.toml to send it through OBS (up to 314,572,800 bytes), or {NARROW}'


def test_too_many_dependency_files_are_refused_before_anything_is_compressed(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, **{f"node_modules/m/f{i}.js": "1" for i in range(6)}})
    opener = CountingOpen()
    builder = PackageBuilder(src, rules=rules(src), dependencies="auto", open_file=opener, max_dependency_files=5)
    with pytest.raises(PackageError) as info:
        builder.build_split()
    assert str(info.value) == (
        f"dependency package has 6 files, over FunctionGraph's limit of 5 files per dependency: {NARROW}"
    )
    assert opener.opened == []
    assert MAX_DEPENDENCY_FILES == 30_000
    assert split(src, max_dependency_files=6).dependency is not None


def test_too_many_dependency_files_for_real(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY})
    folder = src / "node_modules" / "many"
    folder.mkdir(parents=True)
    for index in range(MAX_DEPENDENCY_FILES + 1):
        (folder / f"{index}.js").write_bytes(b"")
    with pytest.raises(PackageError, match=r"^dependency package has 30,001 files, over FunctionGraph's limit of "
                       r"30,000 files per dependency: leave out"):  # fmt: skip
        split(src)


def test_a_dependency_over_the_size_limit_names_the_size_the_limit_and_obs(tree: Tree) -> None:
    rng = random.Random(8)
    src = tree(
        {"index.py": HELLO_PY, "node_modules/a.bin": rng.randbytes(2500), "node_modules/b.bin": rng.randbytes(2500)}
    )
    with pytest.raises(PackageError) as info:
        split(src, max_dependency_bytes=4000)
    assert str(info.value).startswith("dependency package is 5,")
    assert str(info.value).endswith(f" bytes, over the limit of 4,000 bytes: {OBS_FIX}")
    with pytest.raises(PackageError) as info:
        split(src, max_dependency_bytes=2000)  # one file alone is over it
    assert str(info.value) == (
        "node_modules/a.bin is 2,500 bytes and does not compress: the dependency package would be over the limit "
        f"of 2,000 bytes: {OBS_FIX}"
    )
    assert split(src, max_dependency_bytes=6000).dependency is not None


def test_the_dependency_size_limit_for_real_and_through_obs(tree: Tree) -> None:
    half = MAX_DEPENDENCY_BYTES // 2 + 1000
    rng = random.Random(9)
    src = tree(
        {"index.py": HELLO_PY, "node_modules/a.bin": rng.randbytes(half), "node_modules/b.bin": rng.randbytes(half)}
    )
    with pytest.raises(PackageError, match=r"^dependency package is 41,94\d,\d{3} bytes, over the limit of "
                       r"41,943,040 bytes: set \[obs\] bucket"):  # fmt: skip
        split(src)
    through_obs = split(src, max_dependency_bytes=MAX_DEPENDENCY_OBS_BYTES)
    assert through_obs.dependency is not None and through_obs.dependency.size > MAX_DEPENDENCY_BYTES
    assert dependency_size_fix(MAX_DEPENDENCY_OBS_BYTES) == NARROW  # past OBS's limit [obs] is no fix


def test_the_code_limit_applies_to_the_code_part_only(tree: Tree) -> None:
    rng = random.Random(10)
    src = tree({"index.py": HELLO_PY, "node_modules/a.bin": rng.randbytes(5000)})
    result = split(src, max_bytes=4000)  # the whole tree would be over 4,000 bytes; the code alone is not
    assert result.dependency is not None and result.code.size < 4000
    with pytest.raises(PackageError, match=r"over the limit of 4,000 bytes"):
        build_package(src, rules=rules(src), max_bytes=4000)
    make_tree(src, {"model1.bin": rng.randbytes(2500), "model2.bin": rng.randbytes(2500)})
    with pytest.raises(PackageError) as info:
        split(src, max_bytes=4000)
    message = str(info.value)
    assert message.startswith("package is 5,") and " bytes, over the limit of 4,000 bytes: set [obs]" in message


def test_the_code_limit_for_real_with_a_big_dependency(tree: Tree) -> None:
    rng = random.Random(12)
    src = tree(
        {"index.py": HELLO_PY, "model.bin": rng.randbytes(25_000_000), "node_modules/w.bin": rng.randbytes(30_000_000)}
    )
    assert single_size_over(src)
    result = split(src)
    assert result.code.size < MAX_PACKAGE_BYTES and result.dependency is not None


def single_size_over(src: Path) -> bool:
    try:
        single(src)
    except PackageError as error:
        return "over the limit of 52,428,800 bytes" in str(error)
    return False


def test_a_dependency_file_name_ending_in_tilde_is_refused_by_name(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, "node_modules/a/README~": "x", "node_modules/b~": "y", "code~": "z"})
    (src / ".fgsyncignore").write_text("!*~\n")  # bring back what the built-in list drops
    opener = CountingOpen()
    with pytest.raises(PackageError) as info:
        PackageBuilder(src, rules=rules(src), dependencies="auto", open_file=opener).build_split()
    assert str(info.value) == (
        "dependency package: the file name node_modules/a/README~ (and 1 more) ends in ~, which FunctionGraph "
        "refuses in a dependency: delete it, or leave it out (exclude or .fgsyncignore)"
    )
    assert opener.opened == []
    (src / "node_modules" / "b~").unlink()
    with pytest.raises(PackageError, match=r"the file name node_modules/a/README~ ends in ~"):
        split(src)
    (src / "node_modules" / "a" / "README~").unlink()
    assert "code~" in split(src).code.paths  # only the dependency is FunctionGraph's concern


def test_every_file_a_dependency_is_nothing_to_package(tree: Tree) -> None:
    src = tree({"node_modules/a.js": "1"})
    with pytest.raises(PackageError) as info:
        split(src)
    assert str(info.value) == (
        f"nothing to package in {src}: every file left after the ignore rules goes to the dependency package "
        '(dependencies = "auto"), and an empty code upload would reset the function to template code'
    )
    with pytest.raises(PackageError, match=r'\(dependencies = \["node_modules/"\]\)'):
        split(src, ("node_modules/",))


def test_dependencies_need_a_zip_function(tree: Tree) -> None:
    src = tree({"app.jar": b"PK"})
    builder = PackageBuilder(src, rules=rules(src), code_type="jar", artifact=Path("app.jar"), dependencies="auto")
    with pytest.raises(PackageError, match=r'dependencies need code_type = "zip"'):
        builder.build_split()
    jar = PackageBuilder(src, rules=rules(src), code_type="jar", artifact=Path("app.jar")).build_split()
    assert jar.dependency is None and jar.code.code_type == "jar"


def test_a_record_that_cannot_be_read_is_named(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, "x-1.dist-info/RECORD": "x.py,,\n", "x.py": ""})

    def deny(path: str) -> BinaryIO:
        if path.endswith("RECORD"):
            raise PermissionError(13, "Permission denied")
        return open_source_file(path)

    with pytest.raises(PackageError, match=r"^cannot read x-1\.dist-info/RECORD: Permission denied$"):
        PackageBuilder(src, rules=rules(src), dependencies="auto", open_file=deny).build_split()


# --- fgsync package [--dependencies] -----------------------------------------------------------------------


@pytest.fixture
def cli_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """hello (auto, with node_modules and a pip install), world (off), api (patterns matching nothing)."""
    hello = make_tree(tmp_path / "functions" / "hello", {"index.py": HELLO_PY, **node_modules(random.Random(5), 12)})
    pip_install(hello, "six", {"six.py": "PY3 = True\n"}, scripts=())
    make_tree(tmp_path / "functions" / "world", {"index.py": HELLO_PY})
    make_tree(tmp_path / "functions" / "api", {"index.py": HELLO_PY})
    write_config(
        tmp_path,
        functions=[
            {"name": "hello", "source": "functions/hello", "dependencies": "auto"},
            {"name": "world", "source": "functions/world"},
            {"name": "api", "source": "functions/api", "dependencies": ["vendor/"]},
        ],
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from fgsync.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_package_dependencies_writes_and_reports_the_dependency_package(
    cli_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hello = cli_project / "functions" / "hello"
    expected = split(hello)
    assert expected.dependency is not None
    out = tmp_path / "out" / "deps.zip"
    code, stdout, stderr = run_cli(capsys, "package", "hello", "--dependencies", "-o", str(out), "--json")
    assert code == 0, stderr
    (event,) = [json.loads(line) for line in stdout.splitlines()]
    assert out.read_bytes() == expected.dependency.data
    assert event["event"] == "packaged" and event["function"] == "hello" and event["package"] == "dependency"
    assert (event["files"], event["bytes"]) == (expected.dependency.files, expected.dependency.size)
    assert event["sha512"] == hashlib.sha512(out.read_bytes()).hexdigest()
    assert event["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert stderr == f"wrote {out} ({human(expected.dependency.size)})\n"

    code, stdout, _ = run_cli(capsys, "package", "hello", "--dependencies")
    assert code == 0
    lines = stdout.splitlines()
    assert f"hello  packaged dependency package: {expected.dependency.files} files, " in lines[0]
    assert lines[1:] == [f"sha512 {expected.dependency.sha512}", f"sha256 {expected.dependency.sha256}"]


def human(size: int) -> str:
    from fgsync.cli.output import human_size

    return human_size(size)


def test_package_of_a_function_with_dependencies_is_its_code(
    cli_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = split(cli_project / "functions" / "hello")
    assert expected.dependency is not None
    out = tmp_path / "code.zip"
    code, stdout, stderr = run_cli(capsys, "--json", "package", "hello", "-o", str(out))
    assert code == 0, stderr
    (event,) = [json.loads(line) for line in stdout.splitlines()]
    assert out.read_bytes() == expected.code.data
    assert set(event) == {"event", "ts", "function", "files", "bytes", "sha512", "ms"}  # the packaged event as ever
    assert (event["files"], event["sha512"]) == (expected.code.files, expected.code.sha512)
    moved = (
        f"{expected.dependency.files} files ({human(expected.dependency.size)} zipped) went to the dependency "
        "package: fgsync package hello --dependencies"
    )
    assert stderr.splitlines() == [moved, f"wrote {out} ({human(expected.code.size)})"]
    code, stdout, _ = run_cli(capsys, "package", "hello")
    assert code == 0 and stdout.splitlines()[1:] == [moved, f"sha512 {expected.code.sha512}"]
    # A function without dependencies is packaged as before, whole and without the extra line.
    code, stdout, _ = run_cli(capsys, "package", "world")
    assert code == 0 and "dependency" not in stdout and len(stdout.splitlines()) == 2


def test_package_dependencies_of_a_function_without_any_is_a_clear_error(
    cli_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, stderr = run_cli(capsys, "package", "world", "--dependencies")
    assert (code, stdout) == (2, "")
    assert stderr == (
        'Error: world has dependencies = "off", so it has no dependency package: set dependencies = "auto" (or a '
        "list of patterns) for it in fgsync.toml\n"
    )
    api = cli_project / "functions" / "api"
    code, stdout, stderr = run_cli(capsys, "package", "api", "--dependencies")
    assert (code, stdout) == (1, "")
    assert stderr == (
        f'Error: api has no dependency package: dependencies = ["vendor/"] matches no file in {api} (after the '
        "ignore rules)\n"
    )
    code, _, _ = run_cli(capsys, "package", "api")  # its code is fine, and it says why there is no dependency
    assert code == 0
    code, stdout, stderr = run_cli(capsys, "--json", "package", "api", "--dependencies")
    assert code == 1
    (event,) = [json.loads(line) for line in stdout.splitlines()]
    assert (event["event"], event["code"]) == ("error", "package")
    shutil.rmtree(cli_project / "functions" / "hello" / "node_modules")
    for info in (cli_project / "functions" / "hello").glob("*.dist-info"):
        shutil.rmtree(info)
    code, _, stderr = run_cli(capsys, "package", "hello", "--dependencies")
    assert code == 1
    hello = cli_project / "functions" / "hello"
    assert stderr == (
        'Error: hello has no dependency package: dependencies = "auto" found no node_modules/ and no '
        f"*.dist-info/RECORD at the root of {hello}\n"
    )


def test_package_dependencies_without_a_name_builds_the_functions_that_have_them(
    cli_project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (cli_project / "functions" / "api" / "vendor").mkdir()
    (cli_project / "functions" / "api" / "vendor" / "lib.py").write_text("x = 1\n")
    code, stdout, stderr = run_cli(capsys, "--json", "package", "--dependencies")
    assert code == 0, stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    assert [(e["function"], e["package"]) for e in events] == [("hello", "dependency"), ("api", "dependency")]
    code, _, stderr = run_cli(capsys, "package", "--dependencies", "-o", str(tmp_path / "x.zip"))
    assert code == 2
    assert stderr == (
        "Error: -o writes one package, but fgsync.toml has 2 functions with dependencies: name one, e.g. "
        f"`fgsync package hello --dependencies -o {tmp_path / 'x.zip'}`\n"
    )


def test_package_dependencies_runs_the_build_first(cli_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(
        cli_project,
        functions=[
            {
                "name": "world",
                "source": "functions/world",
                "dependencies": "auto",
                "build": "mkdir -p node_modules/m && echo 1 > node_modules/m/i.js",
            },
        ],
    )
    code, stdout, stderr = run_cli(capsys, "--json", "package", "world", "--dependencies")
    assert code == 0, stderr
    (event,) = [json.loads(line) for line in stdout.splitlines()]
    assert event["files"] == 1
