"""fgsync.toml: discovery, loading and function selection (the face the rest of fgsync imports).

Modules: ``load`` (find, parse, select), ``model`` (keys, defaults, the frozen dataclasses), ``check`` (strict
validation, every problem at once), ``template`` (the commented file `fgsync init` writes).
"""

from __future__ import annotations

from fgsync.config.load import (
    AUTH_KEYS,
    CONFIG_ENV,
    CONFIG_FILENAME,
    DEFAULT_BUILD_TIMEOUT_S,
    DEFAULT_DEBOUNCE_MS,
    DEFAULT_MAX_WAIT_MS,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEPENDENCIES_AUTO,
    DEPENDENCIES_OFF,
    FUNCTION_KEYS,
    NAME_RE,
    PROJECT_ID_RE,
    REGION_RE,
    SCHEMA,
    TOP_KEYS,
    WATCH_KEYS,
    AuthConfig,
    Config,
    DependencySetting,
    FunctionConfig,
    WatchConfig,
    default_endpoint,
    default_iam_endpoint,
    default_urn,
    display_path,
    find_config,
    load_config,
    select_functions,
)

__all__ = [
    "AUTH_KEYS",
    "CONFIG_ENV",
    "CONFIG_FILENAME",
    "DEFAULT_BUILD_TIMEOUT_S",
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_MAX_WAIT_MS",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DEPENDENCIES_AUTO",
    "DEPENDENCIES_OFF",
    "FUNCTION_KEYS",
    "NAME_RE",
    "PROJECT_ID_RE",
    "REGION_RE",
    "SCHEMA",
    "TOP_KEYS",
    "WATCH_KEYS",
    "AuthConfig",
    "Config",
    "DependencySetting",
    "FunctionConfig",
    "WatchConfig",
    "default_endpoint",
    "default_iam_endpoint",
    "default_urn",
    "display_path",
    "find_config",
    "load_config",
    "select_functions",
]
