"""`fgsync watch` with `dependencies = "auto"`: a code edit uploads only the code; a change in node_modules
republishes the dependency and then updates the code (one `dependency` event, one `pushed`); an `npm install`
that writes for seconds settles into one republish. A real watch process against the emulator over loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_tree, write_config
from test_watch_e2e import Proc

from fgsync.config import load_config
from fgsync.sync import package_split

INDEX = "const pad = require('left-pad');\nexports.handler = async (e) => pad(String(e.v || 'x'), 5, '*');\n"
NAME = "fgsync-default-api"


@pytest.fixture
def project(tmp_path: Path, emulator: Any) -> Path:
    make_tree(
        tmp_path / "functions" / "api",
        {
            "index.js": INDEX,
            "node_modules/left-pad/index.js": "module.exports = (s, n, c) => s.padStart(n, c);\n",
            "node_modules/left-pad/package.json": '{"name": "left-pad", "version": "1.0.0"}\n',
        },
    )
    write_config(
        tmp_path, endpoint=emulator.url, functions=[{"name": "api", "source": "functions/api", "dependencies": "auto"}]
    )
    emulator.emulator.create_function("api", runtime="Node.js18.15")
    return tmp_path


def wait_for(predicate: Any, watch: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert watch.proc.poll() is None, watch.lines[-10:]
        assert time.monotonic() < deadline, watch.lines[-20:]
        time.sleep(0.05)


def settled(emu: Any, watch: Proc, *, uploads: int, published: int, quiet: float = 1.0) -> None:
    wait_for(lambda: emu.uploads("api") >= uploads and emu.calls("create_dependency_version") >= published, watch)
    time.sleep(quiet)
    assert (emu.uploads("api"), emu.calls("create_dependency_version")) == (uploads, published), watch.lines[-10:]


def remote_is_local(emu: Any, project: Path) -> None:
    split = package_split(load_config(project / "fgsync.toml").functions[0])
    assert emu.function("api").digest == split.code.sha512
    (version,) = emu.dependency_versions(NAME)
    assert version.description == f"fgsync sha256={split.dependency.sha256}"
    assert emu.function("api").depend_version_list == [version.id]


def test_code_edits_upload_the_code_and_node_modules_changes_republish_once(project: Path, emulator: Any) -> None:
    emu = emulator.emulator
    src = project / "functions" / "api"
    with Proc(project, "--json", "--debounce-ms", "150") as watch:
        settled(emu, watch, uploads=1, published=1)
        remote_is_local(emu, project)

        (src / "index.js").write_text(INDEX + "// a code edit\n")
        settled(emu, watch, uploads=2, published=1)  # the code alone
        remote_is_local(emu, project)

        (src / "node_modules" / "left-pad" / "index.js").write_text("module.exports = (s, n, c) => s.padEnd(n, c);\n")
        settled(emu, watch, uploads=3, published=2)  # one new version, then one code update attaching it
        remote_is_local(emu, project)

        # an `npm install`: 200 files over ~4 s with pauses, far past max_wait_ms (3 s)
        for batch in range(8):
            for n in range(25):
                make_tree(src / "node_modules" / f"pkg{batch}", {f"f{n}.js": f"module.exports = {batch * 100 + n};\n"})
            time.sleep(0.5)
        settled(emu, watch, uploads=4, published=3, quiet=3.0)
        remote_is_local(emu, project)
        watch.proc.terminate()
        code, err = watch.finish()
    assert code == 0 and "Traceback" not in err
    events = watch.events()
    actions = [e["action"] for e in events if e["event"] == "dependency"]
    assert actions == ["published", "unchanged", "published", "published"]
    assert [v.version for v in emu.dependency_versions(NAME)] == [3]  # the replaced ones deleted
