"""`fgsync emulator`: a local FunctionGraph-compatible server for development and tests."""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import signal
import string
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Optional

import click

from fgsync.cli.common import common_options
from fgsync.emulator import Emulator, serve
from fgsync.emulator.runtimes import NODE_INSTALL_HINT, is_node_runtime
from fgsync.emulator.store import valid_name
from fgsync.errors import EXIT_OK, FgsyncError, UsageError

HIDDEN = "<hidden>"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _parse_functions(specs: tuple[str, ...]) -> list[tuple[str, str]]:
    """``NAME[:RUNTIME]`` values as (name, runtime); runtime defaults to Python3.9."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, _, runtime = spec.partition(":")
        if not valid_name(name):
            raise UsageError(
                f"--function {spec!r}: the name must start with a letter and hold only letters, digits, _ and -"
            )
        if any(name == seen for seen, _ in out):
            raise UsageError(f"--function {name!r} is given twice")
        out.append((name, runtime or "Python3.9"))
    return out


def describe_link(latency_ms: float, bandwidth_kbit: Optional[float]) -> str:
    """``latency 15 ms each way (30 ms round trip), bandwidth 20,000 kbit/s`` for the banner."""
    parts = []
    if latency_ms:
        parts.append(f"latency {latency_ms:g} ms each way ({2 * latency_ms:g} ms round trip)")
    if bandwidth_kbit is not None:
        parts.append(f"bandwidth {bandwidth_kbit:,g} kbit/s each way, shared by all connections")
    return ", ".join(parts)


def _random_ak() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20))


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=8808, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@click.option(
    "--data",
    "data_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep functions here across restarts.",
)
@click.option("--project-id", metavar="P", help="Project id to serve (default: random, or the one kept in --data).")
@click.option("--region", default="cn-north-4", show_default=True, help="Region used in function URNs.")
@click.option("--token", metavar="T", help="An X-Auth-Token to accept (besides the tokens it issues).")
@click.option("--ak", metavar="AK", help="Access key to accept in SDK-HMAC-SHA256 signatures.")
@click.option("--sk", metavar="SK", help="Secret key of --ak.")
@click.option("--user", metavar="U", help="IAM user for POST /v3/auth/tokens.")
@click.option("--password", metavar="PW", help="Password of --user.")
@click.option("--domain", metavar="D", help="Account (domain) name of --user (default: any).")
@click.option(
    "--function",
    "functions",
    metavar="NAME[:RUNTIME]",
    multiple=True,
    help="Create this function at start with a tiny handler (repeatable; runtime defaults to Python3.9).",
)
@click.option(
    "--bucket",
    "buckets",
    metavar="NAME",
    multiple=True,
    help="Create this OBS bucket at start (repeatable); objects are served path-style under the endpoint.",
)
@click.option(
    "--latency",
    "latency_ms",
    metavar="MS",
    type=click.FloatRange(min=0),
    default=0,
    help="Hold each request MS before it is read and MS before it is answered (a round trip of 2 x MS).",
)
@click.option(
    "--bandwidth",
    "bandwidth_kbit",
    metavar="KBIT",
    type=click.FloatRange(min=0, min_open=True),
    help="Pace request bodies and answers to KBIT kilobits (1,000 bits) per second, shared by all connections.",
)
@common_options
def emulator_command(
    host: str,
    port: int,
    data_dir: Optional[Path],
    project_id: Optional[str],
    region: str,
    token: Optional[str],
    ak: Optional[str],
    sk: Optional[str],
    user: Optional[str],
    password: Optional[str],
    domain: Optional[str],
    functions: tuple[str, ...],
    buckets: tuple[str, ...],
    latency_ms: float,
    bandwidth_kbit: Optional[float],
) -> int:
    """Serve a local FunctionGraph (and IAM token) API until Ctrl+C.

    With no credentials given, it makes up a token, an AK/SK pair and the login dev/dev (domain dev), and
    prints them: this is a local development server.
    """
    if (ak is None) != (sk is None):
        raise UsageError("--ak and --sk go together")
    if (user is None) != (password is None):
        raise UsageError("--user and --password go together")
    if project_id is not None and (len(project_id) != 32 or not project_id.isalnum()):
        raise UsageError(f"--project-id {project_id!r}: a project id is 32 letters and digits")
    wanted = _parse_functions(functions)
    generated = not any((token, ak, user))
    shown: dict[str, str] = {}
    if generated:
        token = "MIIdev-" + secrets.token_hex(24)
        ak, sk = _random_ak(), secrets.token_hex(20)
        user, password, domain = "dev", "dev", "dev"
        shown = {"token": token, "ak": ak, "sk": sk, "password": password}
    if not _is_loopback(host):
        click.echo(
            f"Warning: listening on {host}, not a loopback address: anyone who can reach it can use these credentials.",
            err=True,
        )
    emulator = Emulator(
        project_id=project_id,
        region=region,
        token=token,
        ak=ak,
        sk=sk,
        user=user,
        password=password,
        domain=domain,
        data_dir=data_dir,
        latency_ms=latency_ms,
        bandwidth_kbit=bandwidth_kbit,
        buckets=buckets,
    )
    for name, runtime in wanted:
        try:
            emulator.function(name)
        except KeyError:
            emulator.create_function(name, runtime=runtime)
    try:
        server = serve(emulator, host=host, port=port)
    except OSError as error:
        raise FgsyncError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    with server:
        _print_banner(server.url, emulator, data_dir, token, ak, sk, user, password, domain, shown)
        _wait_for_signal()
    emulator.close()
    click.echo("Emulator stopped.", err=True)
    return EXIT_OK


def _print_banner(
    url: str,
    emulator: Emulator,
    data_dir: Optional[Path],
    token: Optional[str],
    ak: Optional[str],
    sk: Optional[str],
    user: Optional[str],
    password: Optional[str],
    domain: Optional[str],
    shown: dict[str, str],
) -> None:
    """What to point fgsync (or the SDK) at. Secrets given on the command line print as <hidden>."""
    lines = [
        "fgsync emulator: a local FunctionGraph for development and tests",
        f"  endpoint     {url}   (FunctionGraph and IAM)",
        f"  region       {emulator.region}",
        f"  project id   {emulator.project_id}",
    ]
    if token:
        lines.append(f"  token        {shown.get('token', HIDDEN)}   (X-Auth-Token, or FGSYNC_TOKEN)")
    if ak:
        lines.append(f"  AK / SK      {ak} / {shown.get('sk', HIDDEN)}   (CLOUD_SDK_AK / CLOUD_SDK_SK)")
    if user:
        who = f"user {user}, password {shown.get('password', HIDDEN)}, domain {domain or '(any)'}"
        lines.append(f"  IAM login    {who}")
    records = emulator.store.all()
    if records:
        listed = ", ".join(f"{r.name} ({r.runtime})" for r in records)
        lines.append(f"  functions    {listed}")
        if any(is_node_runtime(r.runtime) for r in records) and shutil.which("node") is None:
            lines.append(f"               no node on PATH: Node.js functions cannot be invoked; {NODE_INSTALL_HINT}")
    if emulator.buckets():
        lines.append(f"  OBS buckets  {', '.join(emulator.buckets())}   (path style: {url}/BUCKET/KEY)")
    if emulator.link.shaped:
        lines.append(f"  link         {describe_link(emulator.link.latency_ms, emulator.link.bandwidth_kbit)}")
    lines.append(f"  data         {data_dir if data_dir is not None else '(in memory: lost on exit)'}")
    lines += [
        "",
        "In fgsync.toml:",
        f'  endpoint = "{url}"',
        f'  iam_endpoint = "{url}"',
        f'  project_id = "{emulator.project_id}"',
    ]
    if emulator.buckets():
        lines += ["  [obs]", f'  bucket = "{emulator.buckets()[0]}"', f'  endpoint = "{url}"']
    lines += [
        "",
        "Serving until Ctrl+C.",
    ]
    click.echo("\n".join(lines))


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM; both end the server cleanly."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Optional[FrameType]) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, on_signal)
    try:
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
