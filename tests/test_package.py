"""build_package / run_build: reproducible bytes, layout, ignore rules, symlinks, errors, jar, build command."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import pytest

from fgsync.errors import BuildError, PackageError, SourceError
from fgsync.ignore import IgnoreRules
from fgsync.package import MAX_PACKAGE_BYTES, Package, PackageBuilder, build_package, run_build
from fgsync.package import walk as package_walk
from fgsync.package.build import BuildProcesses
from fgsync.package.walk import open_source_file
from tests.conftest import HELLO_PY, make_tree

Tree = Callable[..., Path]

GOLDEN_FILES: dict[str, str | bytes] = {
    "index.py": HELLO_PY,
    "lib/util.py": "def double(x):\n    return 2 * x\n" * 20,
    "bin/run.sh": "#!/bin/sh\necho run\n",
    "data/blob.bin": bytes(range(256)),
    "empty.txt": "",
}
GOLDEN_EXECUTABLE = "bin/run.sh"
# Pinned: a change in the writer, the layout or zlib's deflate output changes this and must be deliberate.
GOLDEN_SHA512 = (
    "2793e39e7df855f4a7b05c308889608babd9484a03eb57b046671c1923342cc6"
    "641ab109a6df0e3553bba2aafda0abd3571d919a9b7e04f5e470fc8845af2fe2"
)


def package(source: Path, **rule_options: object) -> Package:
    return build_package(source, rules=IgnoreRules.for_function(source, **rule_options))  # type: ignore[arg-type]


def names(pkg: Package) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as archive:
        return archive.namelist()


def contents(pkg: Package) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every entry under root with its mode, mtime and content (or link target)."""
    seen: dict[str, tuple[int, int, bytes | str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            if path.is_symlink():
                body: bytes | str = os.readlink(path)
            elif path.is_file():
                body = path.read_bytes()
            else:
                body = ""
            seen[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, body)
    return seen


def make_golden(root: Path, *, reverse: bool = False, umask: int = 0o022, mtime_seed: int = 0) -> Path:
    items = list(GOLDEN_FILES.items())
    if reverse:
        items.reverse()
    old = os.umask(umask)
    try:
        for rel, body in items:
            make_tree(root, {rel: body})
        (root / GOLDEN_EXECUTABLE).chmod(0o777 & ~umask)
    finally:
        os.umask(old)
    rng = random.Random(mtime_seed)
    for rel in GOLDEN_FILES:
        stamp = rng.randrange(10**9, 2 * 10**9)
        os.utime(root / rel, (stamp, stamp))
    return root


def test_same_tree_gives_identical_bytes_and_golden_hash(tmp_path: Path) -> None:
    first = package(make_golden(tmp_path / "one"))
    second = package(make_golden(tmp_path / "elsewhere" / "two", reverse=True, umask=0o077, mtime_seed=7))
    assert first.data == second.data
    assert first.sha512 == second.sha512 == hashlib.sha512(first.data).hexdigest()
    assert first.sha512 == GOLDEN_SHA512
    assert first.files == 5
    assert first.size == len(first.data)
    assert first.filename == "index.zip" and first.code_type == "zip"


def test_zip_layout_is_pinned(tmp_path: Path) -> None:
    src = make_golden(tmp_path / "src")
    make_tree(src, {"café/ünï.py": "x = 1\n", "a-b/x.py": "", "a/b.py": "", "a.py": ""})
    pkg = package(src)
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as archive:
        infos = archive.infolist()
        assert archive.testzip() is None
    listed = [i.filename for i in infos]
    assert listed == sorted(listed)  # a global sort of POSIX paths, not a per-folder walk order
    assert listed.index("a-b/x.py") < listed.index("a.py") < listed.index("a/b.py")
    assert not any(name.endswith("/") for name in listed)  # files only, like zip -D
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.create_system == 3
        assert info.create_version == 20
        assert info.extra == b"" and info.comment == b""
        expected_mode = 0o100755 if info.filename == GOLDEN_EXECUTABLE else 0o100644
        assert info.external_attr >> 16 == expected_mode, info.filename
        assert info.flag_bits == (0x800 if not info.filename.isascii() else 0)
        assert info.compress_type == (zipfile.ZIP_DEFLATED if info.compress_size < info.file_size else 0)
    assert contents(pkg)["data/blob.bin"] == bytes(range(256))
    assert contents(pkg)["café/ünï.py"] == b"x = 1\n"


def test_zipfile_with_every_field_pinned_writes_the_same_bytes(tmp_path: Path) -> None:
    """Cross-check of the hand-rolled writer against the standard library's zipfile."""
    pkg = package(make_golden(tmp_path / "src"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as source, zipfile.ZipFile(buffer, "w") as out:
        for info in source.infolist():
            pinned = zipfile.ZipInfo(info.filename, (1980, 1, 1, 0, 0, 0))
            pinned.compress_type = info.compress_type
            pinned.create_system = 3
            pinned.create_version = 20
            pinned.extract_version = 20 if info.compress_type == zipfile.ZIP_DEFLATED else 10
            pinned.external_attr = info.external_attr
            pinned.flag_bits = info.flag_bits
            out.writestr(pinned, source.read(info.filename), compresslevel=6)
    assert buffer.getvalue() == pkg.data


def test_unzip_accepts_the_archive(tmp_path: Path) -> None:
    if shutil.which("unzip") is None:
        pytest.skip("unzip is not installed")
    pkg = package(make_golden(tmp_path / "src"))
    zip_path = tmp_path / "out.zip"
    zip_path.write_bytes(pkg.data)
    tested = subprocess.run(["unzip", "-t", str(zip_path)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout
    listing = subprocess.run(["unzip", "-Z", str(zip_path)], capture_output=True, text=True, check=True).stdout
    assert "-rwxr-xr-x" in listing and "80-Jan-01 00:00" in listing.replace("1980", "80")


def test_handler_at_root_and_contents_not_folder(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, "pkg/mod.py": "x = 1\n"}, name="hello")
    assert names(package(src)) == ["index.py", "pkg/mod.py"]
    assert contents(package(src))["index.py"] == HELLO_PY.encode()


def test_ignored_files_are_left_out(tree: Tree) -> None:
    src = tree(
        {
            "index.py": "",
            ".git/config": "",
            "__pycache__/index.cpython-311.pyc": "",
            "pkg/stale.pyc": "",
            ".DS_Store": "",
            ".index.py.swp": "",
            "index.py~": "",
            "4913": "",
            "#index.py#": "",
            ".fgsync/cache": "",
            ".fgsyncignore": "*.log\n!keep.log\nbuild/\n",
            "debug.log": "",
            "keep.log": "",
            "build/out.txt": "",
            "tests/test_x.py": "",
            "README.md": "",
            ".gitignore": "node_modules/\n",
            "node_modules/dep/index.js": "",
            "sub/.gitignore": "*.tmp\n",
            "sub/a.tmp": "",
            "sub/a.py": "",
        }
    )
    plain = names(package(src, exclude=("tests/", "*.md")))
    assert plain == [
        ".gitignore",
        "index.py",
        "keep.log",
        "node_modules/dep/index.js",
        "sub/.gitignore",
        "sub/a.py",
        "sub/a.tmp",
    ]
    with_git = names(package(src, exclude=("tests/", "*.md"), use_gitignore=True))
    assert with_git == [".gitignore", "index.py", "keep.log", "sub/.gitignore", "sub/a.py"]


def test_packaged_paths_agree_with_is_ignored(tree: Tree) -> None:
    """The watcher and the packager share one engine: a file is packaged iff is_ignored says no."""
    src = tree(
        {
            "index.py": "",
            ".fgsyncignore": "gen/\n*.bak\n!important.bak\n",
            ".gitignore": "dist/\n",
            "gen/a.py": "",
            "x.bak": "",
            "important.bak": "",
            "dist/x.js": "",
            "lib/__pycache__/m.pyc": "",
            "lib/m.py": "",
        }
    )
    for use_gitignore in (False, True):
        rules = IgnoreRules.for_function(src, use_gitignore=use_gitignore)
        every = sorted(
            str(Path(folder, name).relative_to(src).as_posix())
            for folder, _, files in os.walk(src)
            for name in files
        )
        kept = [rel for rel in every if not rules.is_ignored(rel)]
        assert list(build_package(src, rules=rules).paths) == kept


def test_symlink_to_file_and_folder_inside_source(tree: Tree) -> None:
    src = tree({"index.py": "print('real')\n", "shared/util.py": "u = 1\n"})
    (src / "alias.py").symlink_to("index.py")
    (src / "linked").symlink_to("shared", target_is_directory=True)
    pkg = package(src)
    files = contents(pkg)
    assert files["alias.py"] == b"print('real')\n"
    assert files["linked/util.py"] == b"u = 1\n"
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as archive:
        assert archive.getinfo("alias.py").external_attr >> 16 == 0o100644  # a regular file, not a link


@pytest.mark.parametrize(
    ("make_link", "message"),
    [
        (lambda src, outside: (src / "evil.py").symlink_to(outside / "secret.py"), r"symlink evil\.py points outside"),
        (lambda src, outside: (src / "up").symlink_to(outside), r"symlink up points outside"),
        (lambda src, outside: (src / "gone.py").symlink_to(src / "missing.py"), r"symlink gone\.py is dangling"),
        (lambda src, outside: (src / "self").symlink_to("self"), r"symlink self is a loop"),
        (lambda src, outside: (src / "pkg" / "again").symlink_to(".."), r"symlink pkg/again is a loop"),
    ],
    ids=["file-outside", "folder-outside", "dangling", "self-loop", "folder-loop"],
)
def test_bad_symlinks_are_errors_that_name_them(
    tmp_path: Path, make_link: Callable[[Path, Path], None], message: str
) -> None:
    src = make_tree(tmp_path / "src", {"index.py": "", "pkg/mod.py": ""})
    outside = make_tree(tmp_path / "outside", {"secret.py": "KEY = 1\n"})
    make_link(src, outside)
    before = snapshot(src)
    with pytest.raises(PackageError, match=message):
        package(src)
    assert snapshot(src) == before


def test_fgsync_own_folders_inside_the_source_are_never_packaged(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FGSYNC_CACHE_DIR (or XDG_CACHE_HOME) under `source = "."`: the state written there is not code, whatever
    the rules say, or every push would change the next package."""
    src = tree({"index.py": HELLO_PY, ".fgsyncignore": "!.cache/\n!.cache/**\n", ".cache/other/tool.txt": "x"})
    cache = src / ".cache" / "fgsync"
    make_tree(cache, {"state/0123.json": "{}", "locks/watch.lock": "123"})
    monkeypatch.setenv("FGSYNC_CACHE_DIR", str(cache))
    assert names(package(src)) == [".cache/other/tool.txt", "index.py"]
    monkeypatch.setenv("FGSYNC_CACHE_DIR", str(src.parent / "elsewhere"))
    assert "locks/watch.lock" not in names(package(src))
    assert ".cache/fgsync/locks/watch.lock" in names(package(src))  # not fgsync's folder any more: plain files


def test_the_ignore_file_itself_is_not_packaged(tree: Tree) -> None:
    src = tree({"index.py": HELLO_PY, ".fgsyncignore": "*.md\n", "sub/.fgsyncignore": "nested: a plain file\n"})
    assert names(package(src)) == ["index.py", "sub/.fgsyncignore"]


def test_ignored_bad_symlink_is_not_an_error(tree: Tree, tmp_path: Path) -> None:
    src = tree({"index.py": "", ".fgsyncignore": "venv/\n"})
    (src / "venv").symlink_to(tmp_path)
    (src / "stale.pyc").symlink_to(src / "nowhere.pyc")
    assert names(package(src)) == ["index.py"]


def test_fifo_is_refused_without_blocking(tree: Tree) -> None:
    src = tree({"index.py": ""})
    os.mkfifo(src / "pipe")
    with pytest.raises(PackageError, match="cannot package pipe: a FIFO"):
        package(src)
    with pytest.raises(OSError, match="not a regular file"):
        open_source_file(str(src / "pipe"))


def test_unreadable_file_is_named(tree: Tree) -> None:
    """As root every mode-000 file is readable, so the read error comes through the open_file seam."""
    src = tree({"index.py": "", "secret/key.pem": "x"})

    def deny_key(path: str) -> BinaryIO:
        if path.endswith("key.pem"):
            raise PermissionError(13, "Permission denied")
        return open_source_file(path)

    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src), open_file=deny_key)
    with pytest.raises(PackageError, match=r"cannot read secret/key\.pem: Permission denied"):
        builder.build()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads mode-000 files")
def test_unreadable_file_for_real(tree: Tree) -> None:
    src = tree({"index.py": "", "key.pem": "x"})
    (src / "key.pem").chmod(0)
    try:
        with pytest.raises(PackageError, match=r"cannot read key\.pem"):
            package(src)
    finally:
        (src / "key.pem").chmod(0o600)


def test_empty_tree_is_refused(tree: Tree) -> None:
    for files in ({}, {"__pycache__/a.pyc": "", ".git/HEAD": ""}):
        src = tree(files, name=f"empty{len(files)}")
        with pytest.raises(PackageError, match="template code"):
            package(src)


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope is missing \(deleted or moved\?\)") as caught:
        build_package(tmp_path / "nope", rules=IgnoreRules(tmp_path / "nope"))
    assert caught.value.code == "source" and isinstance(caught.value, PackageError)


def test_size_limit_with_a_small_limit(tree: Tree) -> None:
    src = tree({"index.py": "", "a.bin": os.urandom(2500), "b.bin": os.urandom(2500)})
    with pytest.raises(PackageError, match=r"package is 5,\d{3} bytes, over the limit of 4,000 bytes"):
        build_package(src, rules=IgnoreRules.for_function(src), max_bytes=4000)
    with pytest.raises(PackageError, match=r"a\.bin is 2,500 bytes and does not compress.* limit of 2,000 bytes"):
        build_package(src, rules=IgnoreRules.for_function(src), max_bytes=2000)
    assert build_package(src, rules=IgnoreRules.for_function(src), max_bytes=6000).size <= 6000


def test_size_limit_for_real(tree: Tree) -> None:
    src = tree({"index.py": "", "model.bin": os.urandom(MAX_PACKAGE_BYTES)})
    with pytest.raises(PackageError, match=r"over the limit of 52,428,800 bytes"):
        package(src)


def test_jar_artifact(tree: Tree) -> None:
    src = tree({"pom.xml": "<project/>", "target/app.jar": b"PK\x03\x04jar-bytes"})
    rules = IgnoreRules.for_function(src)
    pkg = build_package(src, rules=rules, code_type="jar", artifact=Path("target/app.jar"))
    assert pkg.data == b"PK\x03\x04jar-bytes"
    assert pkg.sha512 == hashlib.sha512(pkg.data).hexdigest()
    assert (pkg.filename, pkg.code_type, pkg.files, pkg.paths) == ("app.jar", "jar", 1, ("app.jar",))
    absolute = build_package(src, rules=rules, code_type="jar", artifact=src / "target" / "app.jar")
    assert absolute.data == pkg.data
    with pytest.raises(PackageError, match=r"target/missing\.jar not found.*mvn"):
        build_package(src, rules=rules, code_type="jar", artifact=Path("target/missing.jar"))
    (src / "target" / "empty.jar").write_bytes(b"")
    with pytest.raises(PackageError, match="empty"):
        build_package(src, rules=rules, code_type="jar", artifact=Path("target/empty.jar"))
    with pytest.raises(PackageError, match="artifact"):
        build_package(src, rules=rules, code_type="jar")
    with pytest.raises(PackageError, match="unsupported code_type"):
        build_package(src, rules=rules, code_type="inline")


def test_nothing_is_written_into_source(tree: Tree, tmp_path: Path) -> None:
    src = make_golden(tmp_path / "src")
    before = snapshot(src)
    package(src)
    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src, use_gitignore=True))
    builder.build()
    builder.build()
    (tmp_path / "huge").write_bytes(b"")
    with pytest.raises(PackageError):
        build_package(src, rules=IgnoreRules.for_function(src), max_bytes=10)
    with pytest.raises(PackageError):
        build_package(src, rules=IgnoreRules.for_function(src), code_type="jar", artifact=Path("x.jar"))
    assert snapshot(src) == before


def test_run_build_success_captures_output(tree: Tree) -> None:
    src = tree({"index.py": ""})
    out = run_build("echo built; echo warn >&2; pwd", src)
    lines = out.splitlines()
    assert lines[0] == "built" and "warn" in lines
    assert Path(lines[-1]).resolve() == src.resolve()


def test_run_build_failure_carries_tail_and_code(tree: Tree) -> None:
    src = tree({"index.py": ""})
    with pytest.raises(BuildError) as caught:
        run_build("for i in $(seq 1 100); do echo line$i; done; echo boom >&2; exit 3", src)
    error = caught.value
    assert error.returncode == 3
    assert "exit code 3" in error.message and "boom" in error.message
    assert "line1\n" in error.output and "line5\n" not in error.message  # the message keeps only the tail


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line holds marker (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to look for left-over processes")
def test_run_build_timeout_kills_the_tree(tree: Tree) -> None:
    src = tree({"index.py": ""})
    marker = f"fgsync-build-timeout-{os.getpid()}"
    # A child in the background and one in the foreground: both must go, not just the shell.
    command = (
        f"echo started; {sys.executable} -c 'import time; time.sleep(60)' {marker} & "
        f"{sys.executable} -c 'import time; time.sleep(60)' {marker}"
    )
    with pytest.raises(BuildError, match=r"timed out after 0\.5 s") as caught:
        run_build(command, src, timeout=0.5)
    assert caught.value.returncode is None
    assert "started" in caught.value.output
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


def test_build_processes_stop_all_stops_a_running_build(tree: Tree) -> None:
    src = tree({"index.py": ""})
    marker = f"fgsync-build-abort-{os.getpid()}"
    processes = BuildProcesses()
    failure: list[BaseException] = []

    def build() -> None:
        try:
            run_build(f"{sys.executable} -c 'import time; time.sleep(60)' {marker}", src, processes=processes)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=build)
    worker.start()
    deadline = time.monotonic() + 5
    while not processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert processes.running() == [str(src)]
    processes.stop_all(grace=0.5)
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert isinstance(failure[0], BuildError) and "killed by signal" in failure[0].message
    assert processes_with(marker) == []


# --- incremental builds (PackageBuilder) -------------------------------------------------------------------

def age(root: Path, seconds: int = 3600) -> None:
    """Set every file's mtime in the past, like a project that existed before the daemon started."""
    past = time.time_ns() - seconds * 10**9
    for folder, _, files in os.walk(root):
        for name in files:
            os.utime(Path(folder, name), ns=(past, past), follow_symlinks=False)


#: The builders below use a short racy margin: a file's ctime cannot be set back like its mtime, so with the
#: real 2 s every file of a tree made a moment ago would be "fresh" and re-read.
MARGIN_NS = 50_000_000


class PinnedClock:
    """The builder's wall clock: real time, or pinned to an instant the test chooses."""

    def __init__(self) -> None:
        self.pinned: int | None = None

    def __call__(self) -> int:
        return self.pinned if self.pinned is not None else time.time_ns()


def settle() -> None:
    """Let the margin pass, so the files written so far are safely older than the next build's read."""
    time.sleep(2 * MARGIN_NS / 1e9)


class CountingOpen:
    """open_file seam that counts what the builder reads."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def __call__(self, path: str) -> BinaryIO:
        self.opened.append(Path(path).name)
        return open_source_file(path)


def cold(src: Path, **rule_options: object) -> Package:
    return package(src, **rule_options)


def text(seed: int, size: int = 3000) -> str:
    rng = random.Random(seed)
    return "".join(f"value_{rng.randrange(1000)} = {rng.random()!r}\n" for _ in range(size // 30))


@pytest.fixture
def project(tree: Tree) -> Path:
    files: dict[str, str | bytes] = {f"pkg{i % 3}/mod{i:02d}.py": text(i) for i in range(24)}
    files["index.py"] = HELLO_PY
    files["zz_last.txt"] = "the last entry\n"
    src = tree(files)
    age(src)
    return src


def test_incremental_equals_cold_across_edits(project: Path) -> None:
    src = project
    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src))
    assert builder.build().data == cold(src).data

    def step(change: Callable[[], object]) -> None:
        change()
        warm = builder.build()
        reference = cold(src)
        assert warm.data == reference.data
        assert warm.sha512 == reference.sha512 and warm.paths == reference.paths

    step(lambda: (src / "pkg1" / "mod04.py").write_text(text(99)))  # content and size change
    step(lambda: (src / "pkg0" / "mod00.py").unlink())  # delete the first-sorted file
    step(lambda: (src / "zz_last.txt").unlink())  # delete the last one: the archive is a prefix of before
    step(lambda: (src / "pkg2" / "mod05.py").rename(src / "pkg2" / "renamed.py"))
    step(lambda: (src / "pkg1" / "mod07.py").chmod(0o755))  # mode only: same data, new attributes
    step(lambda: (src / "aaa_first.py").write_text("x = 1\n"))  # a new first entry shifts every offset
    step(lambda: (src / "pkg0" / "junk.pyc").write_bytes(b"ignored"))
    step(lambda: (src / "pkg2" / "mod08.py").write_text(""))  # emptied
    step(lambda: None)  # nothing changed


def test_incremental_from_reported_paths_equals_cold_across_edits(project: Path) -> None:
    """The same edits, each built from the paths a watcher reports (as the daemon does)."""
    src = project
    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src))
    builder.build()

    def step(change: Callable[[], object], *paths: str) -> None:
        change()
        warm = builder.build(changed=paths)
        reference = cold(src)
        assert warm.data == reference.data and warm.paths == reference.paths

    step(lambda: (src / "pkg1" / "mod04.py").write_text(text(99)), "pkg1/mod04.py")
    step(lambda: (src / "pkg0" / "mod00.py").unlink(), "pkg0/mod00.py")
    step(lambda: (src / "zz_last.txt").unlink(), "zz_last.txt")
    step(lambda: (src / "pkg2" / "mod05.py").rename(src / "pkg2" / "renamed.py"), "pkg2/mod05.py", "pkg2/renamed.py")
    step(lambda: (src / "pkg1" / "mod07.py").chmod(0o755), "pkg1/mod07.py")
    step(lambda: (src / "aaa_first.py").write_text("x = 1\n"), "aaa_first.py")
    step(lambda: shutil.rmtree(src / "pkg0"), "pkg0")
    step(lambda: None)


def test_same_size_same_mtime_edit_is_caught(project: Path) -> None:
    """A rewrite within the timestamp granularity keeps size and mtime; the racy check still sees it."""
    src = project
    target = src / "pkg1" / "mod01.py"
    target.write_text("a = 1\n")  # fresh mtime: racy when cached
    stat_before = target.stat()
    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src))
    builder.build()
    target.write_text("b = 2\n")  # same size, same inode
    os.utime(target, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))
    assert target.stat().st_mtime_ns == stat_before.st_mtime_ns
    warm = builder.build()
    assert contents(warm)["pkg1/mod01.py"] == b"b = 2\n"
    assert warm.data == cold(src).data
    assert builder.stats.compressed == 1


def test_one_file_change_reads_and_deflates_one_file(project: Path) -> None:
    src = project
    opener = CountingOpen()
    clock = PinnedClock()
    builder = PackageBuilder(
        src, rules=IgnoreRules.for_function(src), open_file=opener, clock_ns=clock, racy_margin_ns=MARGIN_NS
    )
    settle()
    first = builder.build()
    assert len(opener.opened) == first.files
    opener.opened.clear()
    builder.build()
    assert opener.opened == []  # every file trusted: nothing re-read
    assert builder.stats.reused == first.files
    edited = src / "pkg2" / "mod02.py"
    edited.write_text(text(1234))
    clock.pinned = edited.stat().st_ctime_ns + 1  # the read comes within the tick of the write
    warm = builder.build()
    assert opener.opened == ["mod02.py"]
    assert (builder.stats.reused, builder.stats.rechecked, builder.stats.compressed) == (first.files - 1, 0, 1)
    assert warm.data == cold(src).data
    opener.opened.clear()
    builder.build()  # the edited file is fresh, hence racy: re-read and compared, not re-deflated
    assert opener.opened == ["mod02.py"]
    assert (builder.stats.rechecked, builder.stats.compressed) == (1, 0)
    clock.pinned = None
    settle()
    builder.build()  # a re-check of a file that is no longer fresh makes it trusted again
    opener.opened.clear()
    builder.build()
    assert opener.opened == []


def test_touch_without_change_is_rechecked_not_recompressed(project: Path) -> None:
    src = project
    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src), racy_margin_ns=MARGIN_NS)
    settle()
    builder.build()
    os.utime(src / "index.py")  # new mtime, same content
    builder.build()
    assert (builder.stats.rechecked, builder.stats.compressed) == (1, 0)


def test_in_place_rewrite_keeping_size_and_mtime_is_caught(project: Path) -> None:
    """`cp -p` / `shutil.copy2` / `rsync -a --inplace` over a file: same inode, size and mtime, new bytes.

    Only the ctime tells, and the file is not "fresh" by its mtime: the cache key must hold the ctime.
    """
    src = project
    target = src / "pkg1" / "mod01.py"
    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src), racy_margin_ns=MARGIN_NS)
    settle()
    builder.build()
    before = target.stat()
    other = src.parent / "incoming.py"
    original = target.read_bytes()
    other.write_bytes(original.replace(b"value_", b"VALUE_"))  # same size, different bytes
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    shutil.copyfile(other, target)  # in place: same inode
    shutil.copystat(other, target)  # cp -p: the old mtime back
    after = target.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    settle()
    warm = builder.build()
    assert contents(warm)["pkg1/mod01.py"] == other.read_bytes()
    assert warm.data == cold(src).data
    assert builder.stats.compressed == 1


def test_rule_change_drops_the_cache(project: Path) -> None:
    src = project
    clock = PinnedClock()
    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src), clock_ns=clock, racy_margin_ns=MARGIN_NS)
    settle()
    builder.build()
    rule_file = src / ".fgsyncignore"
    rule_file.write_text("pkg1/\n")
    clock.pinned = rule_file.stat().st_ctime_ns + 1
    warm = builder.build()
    assert not any(path.startswith("pkg1/") for path in warm.paths)
    assert warm.data == cold(src).data
    assert builder.stats.reused == 0  # cache dropped: every entry rebuilt
    builder.build()
    assert (builder.stats.reused, builder.stats.rechecked, builder.stats.compressed) == (warm.files, 0, 0)
    (src / ".fgsyncignore").unlink()
    assert builder.build().data == cold(src).data


def test_cache_is_bounded_and_still_exact(project: Path) -> None:
    src = project
    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src), cache_bytes=2000)
    for seed in range(3):
        (src / "pkg0" / "mod03.py").write_text(text(500 + seed))
        assert builder.build().data == cold(src).data
        assert builder._cached_bytes <= 2000
        assert sum(len(c.entry.data) for c in builder._cache.values()) == builder._cached_bytes
    builder.invalidate()
    assert builder.build().data == cold(src).data
    assert builder.stats.reused == 0


def test_failed_build_leaves_the_builder_usable(project: Path) -> None:
    src = project
    denied: set[str] = set()

    def flaky(path: str) -> BinaryIO:
        if Path(path).name in denied:
            raise PermissionError(13, "Permission denied")
        return open_source_file(path)

    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src), open_file=flaky)
    builder.build()
    (src / "pkg1" / "mod10.py").write_text(text(7))
    denied.add("mod10.py")
    with pytest.raises(PackageError, match=r"cannot read pkg1/mod10\.py"):
        builder.build()
    denied.clear()
    assert builder.build().data == cold(src).data


def test_parallel_compression_gives_the_same_bytes(tree: Tree) -> None:
    files: dict[str, str | bytes] = {f"data/file{i:03d}.txt": text(i, 40_000) for i in range(80)}  # ~3 MB
    files["blob.bin"] = random.Random(5).randbytes(300_000)
    src = tree(files)
    rules = IgnoreRules.for_function(src)
    serial = PackageBuilder(src, rules=rules, workers=1, cache_bytes=0).build()
    parallel = PackageBuilder(src, rules=rules, workers=2, cache_bytes=0).build()
    assert serial.data == parallel.data
    assert not [t for t in threading.enumerate() if t.name.startswith(("fgsync-deflate", "fgsync-sha512"))]


def test_incompressible_files_are_stored_compressible_ones_deflated(tree: Tree) -> None:
    rng = random.Random(11)
    noise = rng.randbytes(70_000)
    src = tree(
        {
            "noise.bin": noise,
            "text.txt": text(1, 70_000),
            "mixed.bin": noise[:8192] + text(2, 70_000).encode(),  # noisy head, compressible body
        }
    )
    with zipfile.ZipFile(io.BytesIO(package(src).data)) as archive:
        assert archive.getinfo("noise.bin").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("text.txt").compress_type == zipfile.ZIP_DEFLATED
        assert archive.getinfo("mixed.bin").compress_type == zipfile.ZIP_DEFLATED
        assert archive.read("noise.bin") == noise


def test_runaway_tree_is_refused_early(tree: Tree) -> None:
    rng = random.Random(3)
    src = tree({f"f{i}.bin": rng.randbytes(600) for i in range(20)})
    with pytest.raises(PackageError, match=r"package would be at least [\d,]+ bytes, over the limit of 1,000"):
        build_package(src, rules=IgnoreRules.for_function(src), max_bytes=1000)


def test_walk_by_path_equals_walk_by_descriptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows lists folders by path; the descriptor walk used elsewhere must find exactly the same."""
    src = make_golden(tmp_path / "src")
    make_tree(src, {"shared/lib.py": "x = 1\n", "deep/a/b/c.txt": "c"})
    (src / "alias").symlink_to("shared", target_is_directory=True)
    (src / "alias.py").symlink_to("index.py")
    by_descriptor = package(src)
    monkeypatch.setattr(package_walk, "_FD_WALK", False)
    by_path = package(src)
    assert by_path.data == by_descriptor.data
    assert "alias/lib.py" in by_path.paths and "deep/a/b/c.txt" in by_path.paths


def test_file_vanishing_mid_build_starts_the_build_over(project: Path) -> None:
    src = project
    victim = src / "pkg1" / "mod04.py"

    def racing_delete(path: str) -> BinaryIO:
        if Path(path).name == "mod01.py" and victim.exists():
            victim.unlink()  # gone after the walk saw it, before it is read
        return open_source_file(path)

    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src), open_file=racing_delete, cache_bytes=0)
    pkg = builder.build()
    assert "pkg1/mod04.py" not in pkg.paths
    assert pkg.data == cold(src).data


def test_file_that_keeps_vanishing_is_reported(project: Path) -> None:
    src = project

    def always_gone(path: str) -> BinaryIO:
        if Path(path).name == "mod04.py":
            raise FileNotFoundError(2, "No such file or directory")
        return open_source_file(path)

    builder = PackageBuilder(src, rules=IgnoreRules.for_function(src), open_file=always_gone)
    with pytest.raises(PackageError, match=r"cannot read pkg1/mod04\.py: No such file or directory"):
        builder.build()
