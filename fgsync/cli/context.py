"""The object every command gets in ``ctx.obj``: global options, and the wiring of config, state and client."""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import click

from fgsync.cli.output import Reporter
from fgsync.config import Config, find_config, load_config

if TYPE_CHECKING:  # imported where used: httpx and keyring are slow to import and not every command needs them
    from fgsync.auth.credentials import Credentials
    from fgsync.remote import FunctionGraphClient
    from fgsync.state import StateStore

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

    @property
    def reporter(self) -> Reporter:
        if self._reporter is None:
            self._reporter = Reporter(json_mode=self.json, quiet=self.quiet)
        return self._reporter

    def find_config_path(self) -> Path:
        """The config file the command should use (flag, $FGSYNC_CONFIG, nearest fgsync.toml)."""
        return find_config(self.config_path, env=os.environ, cwd=Path.cwd())

    def load_config(self) -> Config:
        """Find and load fgsync.toml once per command."""
        if self._config is None:
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
        FunctionGraph client (rebuilt by `watch` when credentials change) share it.
        """
        context = self._ssl.get(config.ca_bundle)
        if context is None:
            import httpx

            context = httpx.create_ssl_context()
            if config.ca_bundle is not None:
                context.load_verify_locations(cafile=str(config.ca_bundle))
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


def app_context() -> AppContext:
    """The AppContext of the running command."""
    return click.get_current_context().ensure_object(AppContext)
