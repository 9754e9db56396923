"""`fgsync login`, `fgsync logout` and `fgsync auth`: the OS keyring entries of the config's IAM endpoint + project.

Secrets come in through a hidden prompt or standard input only (never a flag: flags land in shell history and
``ps``), and never go out: `auth` shows where credentials come from, whose they are and when they expire.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from typing import Any, Optional

import click

from fgsync.auth.iam import IssuedToken, format_remaining, login_with_password, parse_expires, token_problem
from fgsync.auth.keyring_store import KeyringStore, forget_credentials, keyring_timeout, save_aksk, save_token
from fgsync.auth.signer import mask_ak
from fgsync.cli.common import common_options
from fgsync.cli.context import AppContext, app_context
from fgsync.config import Config
from fgsync.errors import EXIT_CREDENTIALS, EXIT_OK, CredentialsError, KeyringError, UsageError

__all__ = ["auth_command", "login_command", "logout_command"]

_ENV_NAMES = ("FGSYNC_TOKEN", "CLOUD_SDK_AK", "CLOUD_SDK_SK")


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _read_stdin(what: str, flag: str) -> str:
    """One secret from standard input: the first line, without its line ending."""
    if _stdin_is_tty():
        raise UsageError(f"{flag} reads the {what} from standard input, but it is a terminal: pipe it in")
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError(f"{flag}: standard input is empty, expected the {what}")
    return line


def _ask(label: str, *, hide: bool, missing: str) -> str:
    """Prompt on a terminal (hidden for secrets); without one, a usage error saying what to pass instead."""
    if not _stdin_is_tty():
        raise UsageError(missing)
    value = str(click.prompt(label, hide_input=hide, err=True)).strip("\r\n")
    if not value:
        raise UsageError(f"{label} cannot be empty")
    return value


def _store(config: Config) -> KeyringStore:
    return KeyringStore(config.iam_endpoint, config.project_id, timeout=keyring_timeout(os.environ))


def _env_note(app: AppContext) -> None:
    shadowing = [name for name in _ENV_NAMES if os.environ.get(name, "").strip()]
    if shadowing:
        app.reporter.info(f"note: {' and '.join(shadowing)} set in the environment take precedence over the keyring")


def _expiry_text(expires_at: Optional[str]) -> str:
    if not expires_at:
        return "unknown"
    expires = parse_expires(expires_at)
    if expires is None:
        return expires_at
    remaining = expires.timestamp() - _dt.datetime.now(_dt.timezone.utc).timestamp()
    when = "expired" if remaining <= 0 else f"expires in {format_remaining(remaining)}"
    return f"{expires_at} ({when})"


@click.command("login")
@click.option("--user", "-u", metavar="USER", help="IAM user name (default: auth.user in fgsync.toml).")
@click.option("--domain", "-d", metavar="DOMAIN", help="Account (domain) name (default: auth.domain).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of a prompt.")
@click.option("--token-stdin", is_flag=True, help="Store a token read from standard input instead of logging in.")
@click.option(
    "--remember-password",
    is_flag=True,
    help="Also keep the password in the OS keyring, so fgsync renews the token before it expires.",
)
@click.option(
    "--ak",
    metavar="AK",
    help='With auth.method = "aksk": the access key; the secret key is read from standard input (or a prompt).',
)
@common_options
def login_command(
    user: Optional[str],
    domain: Optional[str],
    password_stdin: bool,
    token_stdin: bool,
    remember_password: bool,
    ak: Optional[str],
) -> int:
    """Get an IAM token (password login) or take a pasted one, and keep it in the OS keyring.

    \b
    The password comes from a hidden prompt or, with --password-stdin, from standard input:
      printf '%s\\n' "$PASSWORD" | fgsync login --user dev --domain my-account --password-stdin
    With auth.method = "aksk" in fgsync.toml, store an access key pair instead:
      printf '%s\\n' "$SK" | fgsync login --ak AKXXXXXXXX
    """
    app = app_context()
    config = app.load_config()
    if password_stdin and token_stdin:
        raise UsageError("--password-stdin and --token-stdin cannot be used together")
    if token_stdin and remember_password:
        raise UsageError("--remember-password needs a password login; --token-stdin stores a token only")
    if config.auth.method == "aksk" or ak is not None:
        return _login_aksk(app, config, ak, password_stdin or token_stdin or remember_password)
    store = _store(config)
    if token_stdin:
        token = _read_stdin("token", "--token-stdin").strip()
        problem = token_problem(token)
        if problem is not None:  # not stored: every request would fail, and httpx's error quotes the header
            raise UsageError(
                f"the token on standard input is not a usable token: {problem} (an IAM token is one line of "
                "letters, digits and symbols)"
            )
        save_token(store, IssuedToken(token), user=user or config.auth.user, domain=domain or config.auth.domain)
        app.reporter.info(
            f"stored the token for project {config.project_id} in the OS keyring (its expiry is unknown: "
            "fgsync learns it is expired when the service answers 401)"
        )
        _env_note(app)
        return _report_stored(app, config)

    user = (
        user
        or config.auth.user
        or _ask("IAM user", hide=False, missing="no IAM user: pass --user or set auth.user in fgsync.toml")
    )
    domain = (
        domain
        or config.auth.domain
        or _ask(
            "Account (domain) name",
            hide=False,
            missing="no account name: pass --domain or set auth.domain in fgsync.toml",
        )
    )
    if password_stdin:
        password = _read_stdin("password", "--password-stdin")
    else:
        password = _ask(
            f"Password for {user}",
            hide=True,
            missing="no terminal to ask for the password: pipe it in with --password-stdin",
        )
    issued = login_with_password(
        iam_endpoint=config.iam_endpoint,
        project_id=config.project_id,
        user=user,
        domain=domain,
        password=password,
        verify=app.verify(config),
        timeout=config.request_timeout_s,
    )
    save_token(store, issued, user=user, domain=domain, password=password if remember_password else None)
    app.reporter.info(f"logged in as {user} ({domain}); token for project {config.project_id} stored in the OS keyring")
    app.reporter.info(f"token {_expiry_text(issued.expires_at)}")
    if remember_password:
        app.reporter.info("password kept in the OS keyring: fgsync renews the token before it expires")
    else:
        app.reporter.info("run `fgsync login` again when it expires (--remember-password lets fgsync renew it)")
    _env_note(app)
    return _report_stored(app, config)


def _login_aksk(app: AppContext, config: Config, ak: Optional[str], token_flags: bool) -> int:
    if config.auth.method != "aksk":
        raise UsageError(
            f'--ak stores an access key pair, which fgsync uses when auth.method = "aksk" in {config.path.name}; '
            "set it there, or log in with a password (without --ak)"
        )
    if token_flags:
        raise UsageError(
            '--password-stdin, --token-stdin and --remember-password are for token logins; with auth.method = "aksk" '
            "use --ak AK and give the secret key on standard input"
        )
    ak = (ak or "").strip() or _ask(
        "Access key (AK)", hide=False, missing='no access key: pass --ak AK (auth.method = "aksk")'
    )
    if _stdin_is_tty():
        sk = _ask("Secret access key (SK)", hide=True, missing="")
    else:
        sk = _read_stdin("secret access key", "--ak").strip()
    save_aksk(_store(config), ak, sk)
    app.reporter.info(f"stored access key {mask_ak(ak)} for project {config.project_id} in the OS keyring")
    _env_note(app)
    return _report_stored(app, config)


def _report_stored(app: AppContext, config: Config) -> int:
    """With --json, the same document `fgsync auth --json` prints, read back from the keyring."""
    if app.json:
        app.reporter.document(_describe(app, config)[0])
    return EXIT_OK


@click.command("logout")
@common_options
def logout_command() -> int:
    """Remove everything fgsync stored in the OS keyring for this config (token, password, access keys)."""
    app = app_context()
    config = app.load_config()
    removed = forget_credentials(_store(config))
    if app.json:
        app.reporter.document(
            {"removed": removed, "project": config.project_id, "iam_endpoint": config.iam_endpoint.rstrip("/")}
        )
    elif removed:
        app.reporter.info(f"removed {removed} keyring entries for project {config.project_id}")
    else:
        app.reporter.info(f"nothing was stored for project {config.project_id} at {config.iam_endpoint.rstrip('/')}")
    shadowing = [name for name in _ENV_NAMES if os.environ.get(name, "").strip()]
    if shadowing:
        app.reporter.info(f"note: {' and '.join(shadowing)} still set in the environment")
    return EXIT_OK


def _describe(app: AppContext, config: Config) -> tuple[dict[str, Any], Optional[str]]:
    """(the `auth` document, the reason there are no credentials or None)."""
    try:
        creds = app.credentials(config)
    except KeyringError:
        raise
    except CredentialsError as error:
        doc: dict[str, Any] = {
            "source": "none",
            "kind": None,
            "user": config.auth.user,
            "domain": config.auth.domain,
            "project": config.project_id,
            "iam_endpoint": config.iam_endpoint.rstrip("/"),
            "expires_at": None,
            "expired": None,
            "expires_in_s": None,
            "password_remembered": None,
            "ak": None,
        }
        return doc, error.message
    return creds.describe(), None


@click.command("auth")
@common_options
def auth_command() -> int:
    """Where fgsync's credentials come from, whose they are and when the token expires (never a secret).

    Exit status 3 when there are none, or when the token has expired and cannot be renewed.
    """
    app = app_context()
    config = app.load_config()
    doc, missing = _describe(app, config)
    expired_for_good = bool(doc["expired"]) and not doc["password_remembered"]
    if app.json:
        app.reporter.document(doc)
    else:
        _print_human(doc)
    if missing is not None:
        if not app.json:
            click.echo(f"Error: {missing}", err=True)
        return EXIT_CREDENTIALS
    if expired_for_good:
        if not app.json:
            click.echo("Error: the token has expired: run `fgsync login`", err=True)
        return EXIT_CREDENTIALS
    return EXIT_OK


def _print_human(doc: dict[str, Any]) -> None:
    source = {"env": "environment", "keyring": "OS keyring", "none": "none"}.get(doc["source"], doc["source"])
    if doc["source"] == "env":
        source += " (FGSYNC_TOKEN)" if doc["kind"] == "token" else " (CLOUD_SDK_AK, CLOUD_SDK_SK)"
    rows = [("source", source)]
    if doc["kind"] is not None:
        rows.append(("kind", "IAM token" if doc["kind"] == "token" else "access key (AK/SK signature)"))
    if doc["ak"]:
        rows.append(("access key", doc["ak"]))
    rows += [
        ("user", doc["user"] or "-"),
        ("domain", doc["domain"] or "-"),
        ("project", doc["project"]),
        ("iam", doc["iam_endpoint"]),
    ]
    if doc["kind"] == "token":
        rows.append(("expires", _expiry_text(doc["expires_at"])))
        if doc["source"] == "keyring":
            renewal = (
                "remembered password (fgsync renews the token)"
                if doc["password_remembered"]
                else "none: run `fgsync login` when it expires"
            )
            rows.append(("renewal", renewal))
    for key, value in rows:
        click.echo(f"{key:<11} {value}")
