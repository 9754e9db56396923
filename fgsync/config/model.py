"""The shape of fgsync.toml: its keys, defaults and the frozen dataclasses it loads into."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

CONFIG_FILENAME = "fgsync.toml"
CONFIG_ENV = "FGSYNC_CONFIG"

TOP_KEYS = (
    "region", "project_id", "endpoint", "iam_endpoint", "ca_bundle", "request_timeout_s", "auth", "watch", "obs",
    "function",
)  # fmt: skip
AUTH_KEYS = ("method", "user", "domain")
OBS_KEYS = ("bucket", "prefix", "endpoint")
WATCH_KEYS = ("debounce_ms", "max_wait_ms", "poll")
FUNCTION_KEYS = (
    "name", "source", "urn", "package", "code_type", "code_filename", "artifact", "build", "exclude",
    "use_gitignore", "depend_version_list", "kms_key_id", "invoke_event", "build_timeout_s", "dependencies",
)  # fmt: skip
#: Every key the file may hold, per table ("" is the top level); docs and tests check against it.
SCHEMA: Mapping[str, tuple[str, ...]] = {
    "": TOP_KEYS, "auth": AUTH_KEYS, "watch": WATCH_KEYS, "obs": OBS_KEYS, "function": FUNCTION_KEYS,
}  # fmt: skip

DEFAULT_DEBOUNCE_MS = 300
DEFAULT_MAX_WAIT_MS = 3000
#: Seconds one HTTP request may take, connect to the last byte of the answer (plus its body's time at 100 KB/s).
DEFAULT_REQUEST_TIMEOUT_S = 60.0
#: An hour: longer than any sane wait for one answer, short enough that a typo (6000 for 60) is caught.
MAX_REQUEST_TIMEOUT_S = 3600.0
#: Seconds a function's `build` command may run before it is stopped.
DEFAULT_BUILD_TIMEOUT_S = 600.0
#: A day: a build that needs longer is not part of a save-and-reload loop.
MAX_BUILD_TIMEOUT_S = 86400.0

#: ``dependencies`` as fgsync.toml spells it: ``"off"``, ``"auto"``, or a non-empty tuple of gitignore-style
#: patterns relative to ``source``. Packaging turns it into a ``fgsync.package.DependencySpec``.
DependencySetting = Union[str, tuple[str, ...]]
DEPENDENCIES_OFF = "off"
DEPENDENCIES_AUTO = "auto"

REGION_RE = re.compile(r"^[a-z]{2}-[a-z]+-\d+$")
PROJECT_ID_RE = re.compile(r"^[A-Za-z0-9]{32}$")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_URN_CHARS_RE = re.compile(r"^[A-Za-z0-9_:!-]+$")
# Names people reach for when they try to put a credential in the file; we refuse to read them.
_SECRET_KEYS = frozenset({"password", "token", "sk", "ak", "secret", "secret_key", "access_key"})


@dataclass(frozen=True)
class FunctionConfig:
    """One ``[[function]]`` table, with defaults applied and paths made absolute."""

    name: str
    source: Path
    urn: str
    package: str
    code_type: str
    code_filename: str
    artifact: Optional[Path]
    build: Optional[str]
    exclude: tuple[str, ...]
    use_gitignore: bool
    depend_version_list: Optional[tuple[str, ...]]
    kms_key_id: Optional[str]
    invoke_event: Optional[Path]
    build_timeout_s: float = DEFAULT_BUILD_TIMEOUT_S
    #: ``"off"`` (everything in one zip), ``"auto"``, or the patterns (a tuple, never empty): see
    #: :data:`DependencySetting` and docs/dependencies.md.
    dependencies: DependencySetting = DEPENDENCIES_OFF

    @property
    def has_dependencies(self) -> bool:
        """Whether the function has a dependency package (``dependencies`` is not ``"off"``)."""
        return self.dependencies != DEPENDENCIES_OFF


@dataclass(frozen=True)
class WatchConfig:
    """The ``[watch]`` table."""

    debounce_ms: int = DEFAULT_DEBOUNCE_MS
    max_wait_ms: int = DEFAULT_MAX_WAIT_MS
    poll: bool = False


@dataclass(frozen=True)
class AuthConfig:
    """The ``[auth]`` table."""

    method: str = "token"
    user: Optional[str] = None
    domain: Optional[str] = None


#: Where objects go in the bucket when ``[obs]`` has no ``prefix``.
DEFAULT_OBS_PREFIX = "fgsync/"
#: OBS bucket names: 3 to 63 lower-case letters, digits, "-" and ".", starting and ending with a letter or digit.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class ObsConfig:
    """The ``[obs]`` table: large packages go through this bucket."""

    bucket: str
    prefix: str
    endpoint: str


@dataclass(frozen=True)
class Config:
    """A loaded, validated fgsync.toml."""

    path: Path
    region: Optional[str]
    project_id: str
    endpoint: str
    iam_endpoint: str
    ca_bundle: Optional[Path]
    auth: AuthConfig
    watch: WatchConfig
    functions: tuple[FunctionConfig, ...]
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    obs: Optional[ObsConfig] = None


def default_endpoint(region: str) -> str:
    """The FunctionGraph endpoint of a region."""
    return f"https://functiongraph.{region}.myhuaweicloud.com"


def default_obs_endpoint(region: str) -> str:
    """The OBS endpoint of a region (buckets are addressed as ``{bucket}.obs.{region}.myhuaweicloud.com``)."""
    return f"https://obs.{region}.myhuaweicloud.com"


def default_iam_endpoint(region: str) -> str:
    """The IAM endpoint of a region; eu-west-101 lives under the .eu domain."""
    if region == "eu-west-101":
        return "https://iam.eu-west-101.myhuaweicloud.eu"
    return f"https://iam.{region}.myhuaweicloud.com"


def default_urn(region: str, project_id: str, package: str, name: str) -> str:
    """The URN of a function's ``latest`` version."""
    return f"urn:fss:{region}:{project_id}:function:{package}:{name}:latest"


def urn_package_and_name(urn: str) -> tuple[str, str]:
    """The package and the function name a URN names, as the service has them (``default``, ``hello``)."""
    parts = urn.split(":")
    if len(parts) < 7:
        raise ValueError(f"not a function URN: {urn!r}")
    return parts[5], parts[6]
