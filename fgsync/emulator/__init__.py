"""A local FunctionGraph: the calls fgsync makes, with the real paths, fields, status codes and errors.

It imports nothing from the rest of fgsync — tests of the client against it catch the client's bugs instead
of sharing them — and only the standard library.

Python API::

    from fgsync.emulator import Emulator, serve
    emu = Emulator(project_id=..., token=..., ak=..., sk=..., user=..., password=..., domain=...)
    urn = emu.create_function("hello", code=zip_bytes)
    with serve(emu, host="127.0.0.1", port=0) as server:
        server.url                      # http://127.0.0.1:PORT: FunctionGraph and IAM endpoint
        emu.inject("update_code", status=503, times=2)
        emu.calls("update_code"), emu.uploads("hello"), emu.function("hello").digest

Served calls (see docs/emulator.md): ``POST /v3/auth/tokens``, ``POST /v2/{project_id}/fgs/functions``,
``GET|PUT .../functions/{urn}/code``, ``GET .../config``, ``POST .../invocations``, the dependency calls under
``/v2/{project_id}/fgs/dependencies``, IAM's ``POST /v3.0/OS-CREDENTIAL/securitytokens``, the OBS object calls
path style (``PUT|HEAD|GET|DELETE /{bucket}/{key}``, ``GET /{bucket}?prefix=``: any first path segment that is not
``v2``, ``v3``, ``v3.0`` or ``_emulator`` is a bucket), and the control API under ``/_emulator/``
(:mod:`fgsync.emulator.control`).

Modules: ``app`` (Emulator, the WSGI app), ``api_functions`` and ``api_dependencies`` (the calls), ``auth``
(tokens, signatures), ``store`` (functions, URNs, persistence), ``dependency_store`` (dependency versions),
``obs`` + ``obs_auth`` + ``obs_store`` (the emulated OBS: calls, signatures and keys, buckets), ``api_iam``
(temporary keys),
``invoke`` + ``runtimes`` + ``_runner.py`` / ``_runner.js`` (running Python and Node.js handlers), ``faults``,
``control``, ``wsgi`` (plumbing), ``server`` (the loopback server) over ``httpserver`` + ``httpbody`` (HTTP/1.1,
keep-alive) and ``link`` (latency, bandwidth).
"""

from __future__ import annotations

from fgsync.emulator.app import Emulator
from fgsync.emulator.dependency_store import DependencyVersion
from fgsync.emulator.faults import ROUTES, DroppedConnection
from fgsync.emulator.obs_store import ObsObject
from fgsync.emulator.server import EmulatorServer, serve
from fgsync.emulator.store import MAX_PACKAGE_BYTES, FunctionRecord

__all__ = [
    "MAX_PACKAGE_BYTES",
    "ROUTES",
    "DependencyVersion",
    "DroppedConnection",
    "Emulator",
    "EmulatorServer",
    "FunctionRecord",
    "ObsObject",
    "serve",
]
