"""fgsync.toml -> frozen dataclasses; strict errors that name the file, the key, the value and what is allowed.

Validation collects every problem before raising, so one run shows everything to fix (as flit_core's loader
does with unknown keys). Array-of-table indexes in key paths are 1-based: ``function[1]`` is the first
``[[function]]`` table of the file.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

from fgsync.config.check import _Checker
from fgsync.config.model import (
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
    OBS_KEYS,
    PROJECT_ID_RE,
    REGION_RE,
    SCHEMA,
    TOP_KEYS,
    WATCH_KEYS,
    AuthConfig,
    Config,
    DependencySetting,
    FunctionConfig,
    ObsConfig,
    WatchConfig,
    default_endpoint,
    default_iam_endpoint,
    default_urn,
    urn_package_and_name,
)
from fgsync.errors import ConfigError, UsageError

log = logging.getLogger(__name__)


def find_config(explicit: Optional[str], *, env: Mapping[str, str], cwd: Path) -> Path:
    """Locate fgsync.toml: the explicit path, else ``$FGSYNC_CONFIG``, else the nearest in cwd or a parent.

    Args:
        explicit: the ``--config`` value, or None.
        env: the environment to read ``FGSYNC_CONFIG`` from.
        cwd: the folder the search starts in; relative paths are relative to it.

    Returns:
        The absolute path of the file.

    Raises:
        ConfigError: the named file does not exist, or no fgsync.toml was found.
    """
    for value, origin in ((explicit, "--config"), (env.get(CONFIG_ENV) or None, f"${CONFIG_ENV}")):
        if value is None:
            continue
        path = Path(os.path.abspath(cwd / Path(value).expanduser()))
        if path.is_dir():
            raise ConfigError(
                f"{value} (from {origin}) is a folder; give the path of the fgsync.toml file", path=str(path)
            )
        if not path.is_file():
            raise ConfigError(f"config file not found: {value} (from {origin})", path=str(path))
        log.debug("using %s (from %s)", path, origin)
        return path
    start = Path(os.path.abspath(cwd))
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILENAME
        if candidate.is_file():
            log.debug("using %s (the nearest %s)", candidate, CONFIG_FILENAME)
            return candidate
    raise ConfigError(
        f"no {CONFIG_FILENAME} found in {start} or any parent folder, and neither --config nor ${CONFIG_ENV} "
        f"is set; run `fgsync init` to create one"
    )


def load_config(path: Path) -> Config:
    """Read and validate fgsync.toml.

    Args:
        path: the file; relative paths inside it are resolved against its folder.

    Returns:
        The configuration with every default applied.

    Raises:
        ConfigError: the file is unreadable or not TOML, or it has problems; the message lists all of them,
            one per line, each naming the file, the key path, the value and what is allowed.
    """
    path = Path(os.path.abspath(path))
    shown = display_path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {shown}", path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not UTF-8 text (byte {exc.start})", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror or exc}", path=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: {_syntax_error(str(exc), text)}", path=str(path)) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively and has no depth limit of its own.
        raise ConfigError(
            f"{shown}: a value is nested too deeply (arrays or inline tables inside each other hundreds of levels "
            f"deep); no key of {CONFIG_FILENAME} takes more than one level",
            path=str(path),
        ) from None
    checker = _Checker(shown, path.parent)
    config = checker.config(path, data)
    if checker.problems:
        lines = [line for _key, line in checker.problems]
        if len(lines) == 1:
            message = lines[0]
        else:
            message = f"{shown} has {len(lines)} problems:\n" + "\n".join("  " + line for line in lines)
        raise ConfigError(message, path=str(path), key=checker.problems[0][0])
    assert config is not None  # the checker only returns None along with a problem
    return config


def select_functions(config: Config, names: Sequence[str]) -> tuple[FunctionConfig, ...]:
    """The functions named on the command line, in the order given (duplicates dropped); none means all.

    Raises:
        UsageError: a name is not defined in the file; the message lists the known names.
    """
    if not names:
        return config.functions
    by_name = {fn.name: fn for fn in config.functions}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        import difflib

        hints = [
            f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(n, by_name, 1)) else "" for n in unknown
        ]
        listed = ", ".join(f"{n!r}{h}" for n, h in zip(unknown, hints))
        known = ", ".join(sorted(by_name))
        noun = "function" if len(unknown) == 1 else "functions"
        raise UsageError(f"unknown {noun} {listed}; {display_path(config.path)} defines: {known}")
    return tuple(by_name[name] for name in dict.fromkeys(names))


def display_path(path: Path) -> str:
    """The path as the user will recognise it: relative to cwd when it lies below it (how messages name files)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def _syntax_error(message: str, text: str) -> str:
    """Rewrite tomllib's "(at line 3, column 5)" tail into a leading "line 3, column 5"."""
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        return f"line {found.group(1)}, column {found.group(2)}: invalid TOML: {message[: found.start()]}"
    found = re.search(r"\s*\(at end of document\)$", message)
    if found:
        lines = text.split("\n")
        return f"line {len(lines)}, column {len(lines[-1]) + 1} (end of file): invalid TOML: {message[: found.start()]}"
    return f"invalid TOML: {message}"


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
    "OBS_KEYS",
    "PROJECT_ID_RE",
    "REGION_RE",
    "SCHEMA",
    "TOP_KEYS",
    "WATCH_KEYS",
    "AuthConfig",
    "Config",
    "DependencySetting",
    "FunctionConfig",
    "ObsConfig",
    "WatchConfig",
    "default_endpoint",
    "default_iam_endpoint",
    "default_urn",
    "display_path",
    "find_config",
    "load_config",
    "select_functions",
    "urn_package_and_name",
]
