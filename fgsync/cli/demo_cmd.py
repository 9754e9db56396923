"""`fgsync demo`: the whole live-reload loop with no account.

Starts the emulator on a free loopback port, writes a sample function (Python, or Node.js with ``--runtime
nodejs``), its event and an ``fgsync.toml`` into a fresh folder, and runs ``fgsync watch --invoke`` on it, telling
the user which file to edit. Ctrl+C stops everything and says where the files are.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import secrets
import shutil
import tempfile
import textwrap
import zipfile
from pathlib import Path
from typing import Optional

import click

from fgsync.cli.common import common_options
from fgsync.cli.context import app_context
from fgsync.cli.watch_cmd import watch_command
from fgsync.emulator import Emulator, serve
from fgsync.emulator.runtimes import NODE_INSTALL_HINT
from fgsync.errors import FgsyncError, UsageError

SAMPLE_HANDLER = textwrap.dedent(
    '''\
    """The fgsync demo function. Change GREETING (or anything else), save, and watch the new result appear."""

    GREETING = "Hello"


    def handler(event, context):
        name = event.get("name", "world")
        print(f"request {context.getRequestID()} for {name}")  # shows up in the log tail
        return {"message": f"{GREETING}, {name}!"}
    '''
)

TEMPLATE_HANDLER = textwrap.dedent(
    """\
    def handler(event, context):
        return {"message": "template code: fgsync has not pushed yet"}
    """
)

SAMPLE_HANDLER_JS = textwrap.dedent(
    """\
    // The fgsync demo function. Change GREETING (or anything else), save, and watch the new result appear.

    const GREETING = "Hello";

    exports.handler = async (event, context) => {
      const name = event.name || "world";
      context.getLogger().info(`saying ${GREETING} to ${name}`); // shows up in the log tail
      return { message: `${GREETING}, ${name}!` };
    };
    """
)

TEMPLATE_HANDLER_JS = textwrap.dedent(
    """\
    exports.handler = async (event, context) => ({ message: "template code: fgsync has not pushed yet" });
    """
)


@dataclasses.dataclass(frozen=True)
class _Sample:
    """One runtime's sample function: the emulator's runtime name, the handler file and its two versions."""

    runtime: str
    filename: str
    sample: str
    template: str


SAMPLES = {
    "python": _Sample("Python3.9", "index.py", SAMPLE_HANDLER, TEMPLATE_HANDLER),
    "nodejs": _Sample("Node.js18.15", "index.js", SAMPLE_HANDLER_JS, TEMPLATE_HANDLER_JS),
}


@click.command("demo")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the sample function (default: a new temporary folder). Must be new or empty.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Emulator port (0: any).")
@click.option(
    "--runtime",
    type=click.Choice(list(SAMPLES)),
    default="python",
    show_default=True,
    help="The sample function's language (nodejs needs `node` on PATH).",
)
@common_options
def demo_command(folder: Optional[Path], port: int, runtime: str) -> int:
    """A live-reload tour against a local emulator: edit the sample function and see it run."""
    app = app_context()
    sample = SAMPLES[runtime]
    if runtime == "nodejs":
        _require_node()
    root = _fresh_folder(folder)
    token = "MII" + secrets.token_urlsafe(48)
    emulator = Emulator(token=token, user="demo", password=secrets.token_urlsafe(12), domain="demo")
    emulator.create_function("hello", runtime=sample.runtime, code=_zip({sample.filename: sample.template}))
    with serve(emulator, host="127.0.0.1", port=port) as server:
        config_path = _write_project(root, sample, endpoint=server.url, project_id=emulator.project_id)
        handler = root / "hello" / sample.filename
        # The demo's own credentials and state: nothing from (or into) the user's real setup.
        previous_token = os.environ.get("FGSYNC_TOKEN")
        os.environ["FGSYNC_TOKEN"] = token
        app.config_path = str(config_path)
        app.state_root = root / ".fgsync-state"
        app.reporter.info(_banner(server.url, root, handler, sample.runtime))
        try:
            code = click.get_current_context().invoke(
                watch_command, names=("hello",), invoke=True, debounce_ms=None, max_wait_ms=None, poll=None
            )
        finally:
            if previous_token is None:
                os.environ.pop("FGSYNC_TOKEN", None)
            else:
                os.environ["FGSYNC_TOKEN"] = previous_token
    app.reporter.info(
        f"\nThe demo stopped; its files are in {root}\n"
        f"To set up your own functions: cd to your project, run `fgsync init`, then `fgsync login` and `fgsync watch`."
    )
    return int(code)


def _require_node() -> None:
    """Checked before anything starts: without node the emulator could only answer every invoke with a 400."""
    if shutil.which("node") is None:
        raise FgsyncError(
            f"fgsync demo --runtime nodejs needs Node.js, and there is no `node` on PATH; {NODE_INSTALL_HINT}, "
            "then run it again (or try `fgsync demo`, the Python sample)"
        )


def _fresh_folder(folder: Optional[Path]) -> Path:
    if folder is None:
        return Path(tempfile.mkdtemp(prefix="fgsync-demo-")).resolve()
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"--dir {folder} is not empty; the demo writes into a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def _write_project(root: Path, sample: _Sample, *, endpoint: str, project_id: str) -> Path:
    (root / "hello").mkdir()
    (root / "hello" / sample.filename).write_text(sample.sample)
    (root / "events").mkdir()
    (root / "events" / "hello.json").write_text(json.dumps({"name": "developer"}, indent=2) + "\n")
    config = root / "fgsync.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            # Written by `fgsync demo`: a local emulator stands in for FunctionGraph.
            project_id = "{project_id}"
            region = "cn-north-4"
            endpoint = "{endpoint}"
            iam_endpoint = "{endpoint}"

            [watch]
            debounce_ms = 200

            [[function]]
            name = "hello"
            source = "hello"
            invoke_event = "events/hello.json"
            """
        )
    )
    return config


def _banner(url: str, root: Path, handler: Path, runtime: str) -> str:
    return textwrap.dedent(
        f"""\
        fgsync demo: live reload against a local FunctionGraph emulator (no account needed)

          emulator   {url}
          function   hello ({runtime})  <-  {root / "hello"}

        Edit {handler}
        (change GREETING, for example) and save. fgsync packages it, pushes it to the emulator and invokes it:
        look for the new message on the "invoked" line. Ctrl+C stops the demo.
        """
    )


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()
