"""Which program runs a function's handler: Python runtimes with this interpreter, Node.js ones with ``node``.

Both runners read the same invocation spec on stdin and write the same outcome file (see ``_runner.py`` and
``_runner.js``), so everything around them — the code folder, the timeout, the log and the answer — is shared.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

from fgsync.emulator.store import EmulatorError

PYTHON_RUNNER = Path(__file__).with_name("_runner.py")
NODE_RUNNER = Path(__file__).with_name("_runner.js")

#: The Node.js runtimes FunctionGraph offers: the official SDK's list (3.1.219) and FUNCTIONGRAPH.md's Node.js20.15.
#: They all run with whatever ``node`` is on PATH.
NODE_RUNTIMES = (
    "Node.js6.10",
    "Node.js8.10",
    "Node.js10.16",
    "Node.js12.13",
    "Node.js14.18",
    "Node.js16.17",
    "Node.js18.15",
    "Node.js20.15",
)

NODE_INSTALL_HINT = (
    "install Node.js (Debian/Ubuntu: sudo apt-get install nodejs; macOS: brew install node; others: https://nodejs.org)"
)


def is_python_runtime(runtime: str) -> bool:
    """``Python2.7`` … ``Python3.12``: run with the emulator's own interpreter."""
    return runtime.lower().startswith("python")


def is_node_runtime(runtime: str) -> bool:
    """One of FunctionGraph's ``Node.js…`` runtimes (:data:`NODE_RUNTIMES`)."""
    return runtime in NODE_RUNTIMES


def runner_command(runtime: str, *, which: Callable[[str], Optional[str]] = shutil.which) -> list[str]:
    """The command that runs one invocation of a ``runtime`` handler.

    Raises:
        EmulatorError: 400 FSS.0400 for a runtime the emulator cannot run, or a Node.js runtime without
            ``node`` on PATH; the message says what to do.
    """
    if is_python_runtime(runtime):
        return [sys.executable, str(PYTHON_RUNNER)]
    if is_node_runtime(runtime):
        node = which("node")
        if node is None:
            raise EmulatorError(
                400,
                "FSS.0400",
                f"{runtime} functions need Node.js: the emulator runs them with the node on PATH, and there is "
                f"none; {NODE_INSTALL_HINT}, then invoke again",
            )
        return [node, str(NODE_RUNNER)]
    if runtime.lower().startswith("node"):
        raise EmulatorError(
            400, "FSS.0400", f"Unknown Node.js runtime {runtime!r}; the emulator runs {', '.join(NODE_RUNTIMES)}"
        )
    raise EmulatorError(
        400,
        "FSS.0400",
        f"The emulator runs Python and Node.js handlers only; {runtime} functions cannot be invoked",
    )
