"""The object every command gets in ``ctx.obj``: global options, and the wiring of config, state and client.

Everything beyond click is imported where it is first used: `fgsync --version` and shell completion must not
pay for the config loader, and `fgsync package` not for httpx (nor an env-credential `push` for keyring).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import click

if TYPE_CHECKING:  # imported where used: see the module docstring
    import ssl  # ~15 ms with socket: `fgsync package` and `--version` never need it

    from fgsync.auth.credentials import Credentials
    from fgsync.cli.output import Reporter
    from fgsync.config import Config
    from fgsync.remote import FunctionGraphClient
    from fgsync.state import StateStore
    from fgsync.sync.upload import UploadRoute

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    """Global options (they may come before or after the command name) and lazily built parts."""

    config_path: Optional[str] = None
    json: bool = False
    verbose: int = 0
    quiet: bool = False
    #: Where push records live; None: $FGSYNC_CACHE_DIR or the user cache folder.
    state_root: Optional[Path] = None
    _reporter: Optional[Reporter] = field(default=None, repr=False)
    _config: Optional[Config] = field(default=None, repr=False)
    _store: Optional[StateStore] = field(default=None, repr=False)
    _ssl: dict[Optional[Path], ssl.SSLContext] = field(default_factory=dict, repr=False)
    _bare_ssl: Optional[ssl.SSLContext] = field(default=None, repr=False)

    @property
    def reporter(self) -> Reporter:
        if self._reporter is None:
            from fgsync.cli.output import Reporter

            self._reporter = Reporter(json_mode=self.json, quiet=self.quiet)
        return self._reporter

    def find_config_path(self) -> Path:
        """The config file the command should use (flag, $FGSYNC_CONFIG, nearest fgsync.toml)."""
        from fgsync.config import find_config

        return find_config(self.config_path, env=os.environ, cwd=Path.cwd())

    def load_config(self) -> Config:
        """Find and load fgsync.toml once per command."""
        if self._config is None:
            from fgsync.config import load_config

            self._config = load_config(self.find_config_path())
        return self._config

    @property
    def store(self) -> StateStore:
        if self._store is None:
            from fgsync.state import StateStore

            self._store = StateStore(self.state_root)
        return self._store

    def verify(self, config: Config) -> ssl.SSLContext:
        """TLS settings: the default trust store, plus `ca_bundle` when set. Verification is never off.

        Built once per CA bundle: loading the trust store costs milliseconds, and the IAM client and the
        FunctionGraph client (rebuilt by `watch` when credentials change) share it. With no https:// endpoint
        (a local emulator) and no ``ca_bundle`` to check, there is nothing to verify and no trust store is loaded:
        the context has no CA at all, so a TLS connection it were ever used for would fail, never pass unverified.
        """
        import ssl

        if not _uses_tls(config) and config.ca_bundle is None:
            if self._bare_ssl is None:
                self._bare_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, and trusts no one
            return self._bare_ssl
        context = self._ssl.get(config.ca_bundle)
        if context is None:
            import httpx

            context = httpx.create_ssl_context()
            if config.ca_bundle is not None:
                _load_ca_bundle(context, config)
            self._ssl[config.ca_bundle] = context
        return context

    def credentials(self, config: Config) -> Credentials:
        """Resolve credentials in SPEC order: FGSYNC_TOKEN, CLOUD_SDK_AK/SK, the OS keyring."""
        from fgsync.auth.credentials import resolve_credentials

        return resolve_credentials(
            iam_endpoint=config.iam_endpoint,
            project_id=config.project_id,
            auth_method=config.auth.method,
            user=config.auth.user,
            domain=config.auth.domain,
            env=os.environ,
            verify=self.verify(config),
            request_timeout=config.request_timeout_s,
        )

    def make_route(self, config: Config, credentials: Credentials) -> UploadRoute:
        """How this command sends packages: in the request, or through ``[obs]`` (an OBS client signed with the
        AK/SK, or with temporary keys IAM issues for the token)."""
        from fgsync.sync.upload import UploadRoute

        obs = None
        if config.obs is not None:
            from fgsync.auth.temporary import ObsAuth
            from fgsync.remote import ObsClient
            from fgsync.sync.obs_target import ObsTarget

            client = ObsClient(
                config.obs.endpoint,
                config.obs.bucket,
                auth=ObsAuth(credentials.obs_keys(), bucket=config.obs.bucket),
                verify=self.verify(config),
                timeout=config.request_timeout_s,
            )
            obs = ObsTarget(client, config.obs.prefix)
        return UploadRoute(obs=obs, signed=credentials.kind == "aksk", obs_configured=config.obs is not None)

    def make_client(self, config: Config, credentials: Optional[Credentials] = None) -> FunctionGraphClient:
        """A FunctionGraph client for this config, authenticated with the resolved credentials."""
        from fgsync.remote import FunctionGraphClient

        creds = credentials if credentials is not None else self.credentials(config)
        return FunctionGraphClient(
            config.endpoint,
            config.project_id,
            auth=creds.auth(),
            verify=self.verify(config),
            timeout=config.request_timeout_s,
        )


def _uses_tls(config: Config) -> bool:
    """Whether any endpoint of the config speaks https (only loopback emulators may be plain http)."""
    urls = [config.endpoint, config.iam_endpoint, *([config.obs.endpoint] if config.obs is not None else [])]
    return any(url.lower().startswith("https:") for url in urls)


def _load_ca_bundle(context: ssl.SSLContext, config: Config) -> None:
    """Add ``ca_bundle`` to the trust store, or a ConfigError (exit 2) that names the file, the key and the fix.

    Loading checks what the config check cannot cheaply: that the file holds PEM certificates. OpenSSL's own
    words (``[X509: NO_CERTIFICATE_OR_CRL_FOUND]``) would not tell a user that the file is the problem.

    Raises:
        ConfigError: the file is not PEM, holds no certificate, or cannot be read.
    """
    import ssl

    from fgsync.config import CONFIG_FILENAME, display_path
    from fgsync.errors import ConfigError

    bundle = config.ca_bundle
    assert bundle is not None
    try:
        context.load_verify_locations(cafile=str(bundle))
        return
    except ssl.SSLError as error:
        problem = _pem_problem(bundle, error)
    except OSError as error:
        problem = f"cannot be read ({error.strerror or error})"
    try:
        written = str(bundle.relative_to(config.path.parent))
    except ValueError:
        written = str(bundle)
    raise ConfigError(
        f'{display_path(config.path)}: ca_bundle = "{written}": must be a PEM file of CA certificates '
        f'("-----BEGIN CERTIFICATE-----" blocks), relative to the folder of {CONFIG_FILENAME}; {bundle} {problem}',
        path=str(config.path),
        key="ca_bundle",
    )


def _pem_problem(bundle: Path, error: ssl.SSLError) -> str:
    """What is wrong with a CA file OpenSSL refused, in words, with the fix when it is a common mistake."""
    try:
        head = bundle.read_bytes()[:65536]
    except OSError:
        head = b""
    if getattr(error, "reason", None) != "NO_CERTIFICATE_OR_CRL_FOUND":
        words = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(error.args[-1] if error.args else error))
        return f"has a damaged certificate in it (OpenSSL: {words})"
    if head[:1] == b"\x30":  # an ASN.1 SEQUENCE: a binary (DER) certificate
        return (
            "is a binary (DER) certificate; convert it with "
            f"`openssl x509 -inform der -in {bundle.name} -out {bundle.stem}.pem` and point ca_bundle at the .pem"
        )
    if b"PRIVATE KEY-----" in head:
        return "holds a private key but no certificate"
    return "has no certificate in it"


def app_context() -> AppContext:
    """The AppContext of the running command."""
    return click.get_current_context().ensure_object(AppContext)
