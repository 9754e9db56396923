"""Strict validation of a parsed fgsync.toml: converts values and collects every problem before raising.

What only a problem or a pattern needs (``difflib`` for "did you mean", ``json`` to show a value, ``pathspec`` to
check a pattern) is imported there: a valid file without patterns, the case of every command run on a save, loads
without them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from fgsync.config.model import (
    _SECRET_KEYS,
    _URN_CHARS_RE,
    AUTH_KEYS,
    BUCKET_RE,
    CONFIG_FILENAME,
    DEFAULT_BUILD_TIMEOUT_S,
    DEFAULT_DEBOUNCE_MS,
    DEFAULT_MAX_WAIT_MS,
    DEFAULT_OBS_PREFIX,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEPENDENCIES_AUTO,
    DEPENDENCIES_OFF,
    FUNCTION_KEYS,
    MAX_BUILD_TIMEOUT_S,
    MAX_REQUEST_TIMEOUT_S,
    NAME_RE,
    OBS_KEYS,
    PROJECT_ID_RE,
    REGION_RE,
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
    default_obs_endpoint,
    default_urn,
)


def _show(value: Any, depth: int = 0) -> str:
    """A value as TOML would spell it, shortened so one bad line stays one line.

    Nesting below a few levels shows as ``...``: the line is cut at 160 characters anyway, and a value nested
    hundreds of levels deep (which tomllib still parses) must not exhaust the stack here.
    """
    if isinstance(value, (list, dict)) and depth >= 8:
        text = "[...]" if isinstance(value, list) else "{...}"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        import json

        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(item, depth + 1) for item in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k} = {_show(v, depth + 1)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= 160 else text[:157] + "..."


class _Checker:
    """Walks the parsed TOML, converting values and recording problems instead of stopping at the first."""

    def __init__(self, shown: str, folder: Path) -> None:
        self.shown = shown
        self.folder = folder
        self.problems: list[tuple[str, str]] = []
        self.region_given = False

    def bad(self, key: str, value: Any, allowed: str) -> None:
        self.problems.append((key, f"{self.shown}: {key} = {_show(value)}: {allowed}"))

    def missing(self, key: str, allowed: str) -> None:
        self.problems.append((key, f"{self.shown}: {key} is missing: {allowed}"))

    def config(self, path: Path, data: dict[str, Any]) -> Optional[Config]:
        top = _Table(self, data, "", TOP_KEYS)
        # Without region the default URNs need one from somewhere, but say so only when region may be absent.
        self.region_given = "region" in data or not ("endpoint" in data and "iam_endpoint" in data)
        region = top.string("region", 'must be a region id such as "cn-north-4"', pattern=REGION_RE)
        project_id = top.string(
            "project_id",
            "must be 32 letters and digits (the project id of the region)",
            pattern=PROJECT_ID_RE,
            required=True,
        )
        endpoint, iam_endpoint = top.url("endpoint"), top.url("iam_endpoint")
        if "region" not in data and not ("endpoint" in data and "iam_endpoint" in data):
            self.missing(
                "region", 'required (a region id such as "cn-north-4") unless both endpoint and iam_endpoint are given'
            )
        if region:
            endpoint = endpoint or default_endpoint(region)
            iam_endpoint = iam_endpoint or default_iam_endpoint(region)
        ca_bundle = top.path("ca_bundle", "a PEM file of extra CA certificates", kind="file")
        request_timeout_s = top.seconds("request_timeout_s", MAX_REQUEST_TIMEOUT_S)
        auth = _Table(self, top.table("auth"), "auth.", AUTH_KEYS)
        auth_config = AuthConfig(
            method=auth.choice("method", ("token", "aksk")) or "token",
            user=auth.string("user", "must be an IAM user name (a non-empty string)"),
            domain=auth.string("domain", "must be an account (domain) name (a non-empty string)"),
        )
        watch = self.watch(_Table(self, top.table("watch"), "watch.", WATCH_KEYS))
        obs = self.obs(_Table(self, top.table("obs"), "obs.", OBS_KEYS), region) if "obs" in data else None
        functions = self.functions(data.get("function"), region, project_id)
        if self.problems or not (project_id and endpoint and iam_endpoint):
            return None
        return Config(
            path=path,
            region=region,
            project_id=project_id,
            endpoint=endpoint,
            iam_endpoint=iam_endpoint,
            ca_bundle=ca_bundle,
            auth=auth_config,
            watch=watch,
            functions=functions,
            request_timeout_s=DEFAULT_REQUEST_TIMEOUT_S if request_timeout_s is None else request_timeout_s,
            obs=obs,
        )

    def obs(self, table: _Table, region: Optional[str]) -> Optional[ObsConfig]:
        """``[obs]``: a bucket (its name rules), a key prefix, and an endpoint in the functions' region."""
        before = len(self.problems)
        bucket = table.string(
            "bucket",
            "must be an OBS bucket name: 3 to 63 lower-case letters, digits, - and ., starting and ending with a "
            'letter or digit (such as "my-fgsync-bucket")',
            pattern=BUCKET_RE,
            required=True,
        )
        if bucket is not None and (".." in bucket or ".-" in bucket or "-." in bucket or _looks_like_ip(bucket)):
            self.bad("obs.bucket", bucket, "must not hold .., .- or -., nor look like an IP address (OBS's rules)")
            bucket = None
        prefix = table.data.get("prefix", DEFAULT_OBS_PREFIX)
        if not isinstance(prefix, str) or prefix.startswith("/") or any(ord(c) < 32 for c in prefix):
            self.bad("obs.prefix", prefix, 'must be a key prefix such as "fgsync/" (no leading /; "" for none)')
            prefix = None
        endpoint = table.url("endpoint")
        if endpoint is None and "endpoint" not in table.data:
            if region:
                endpoint = default_obs_endpoint(region)
            else:
                self.missing("obs.endpoint", "required when region is not set (the OBS endpoint of the functions' "
                             "region)")  # fmt: skip
        if endpoint is not None and region:
            found = re.match(r"^https?://obs\.([a-z0-9-]+)\.myhuaweicloud\.(com|eu)(:\d+)?$", endpoint, re.IGNORECASE)
            if found and found.group(1).lower() != region:
                self.bad(
                    "obs.endpoint",
                    endpoint,
                    f"must be in the functions' region ({region}): FunctionGraph reads code only from a bucket in "
                    "its own region",
                )
        if len(self.problems) > before or bucket is None or prefix is None or endpoint is None:
            return None
        return ObsConfig(bucket=bucket, prefix=prefix, endpoint=endpoint)

    def watch(self, table: _Table) -> WatchConfig:
        allowed = "must be an integer >= 0 (milliseconds)"
        debounce_ms = table.integer("debounce_ms", allowed)
        debounce_ms = DEFAULT_DEBOUNCE_MS if debounce_ms is None else debounce_ms
        max_wait_ms = table.integer("max_wait_ms", allowed)
        if max_wait_ms is None:
            # A long debounce without an explicit cap lifts the default cap rather than contradicting it.
            max_wait_ms = max(DEFAULT_MAX_WAIT_MS, debounce_ms)
        elif max_wait_ms < debounce_ms:
            self.bad("watch.max_wait_ms", max_wait_ms, f"must be >= watch.debounce_ms ({debounce_ms})")
        return WatchConfig(debounce_ms=debounce_ms, max_wait_ms=max_wait_ms, poll=table.boolean("poll"))

    def functions(self, value: Any, region: Optional[str], project_id: Optional[str]) -> tuple[FunctionConfig, ...]:
        needed = "at least one [[function]] table (with name and source) is required"
        if value is None:
            self.missing("function", needed)
            return ()
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.bad(
                "function",
                value,
                "must be an array of tables: write [[function]] (double brackets) before each function's keys",
            )
            return ()
        if not value:
            self.bad("function", value, needed)
        result: list[FunctionConfig] = []
        first_index: dict[str, int] = {}
        for index, table in enumerate(value, start=1):
            fn = self.function(_Table(self, table, f"function[{index}].", FUNCTION_KEYS), region, project_id)
            name = table.get("name")
            if not isinstance(name, str) or not NAME_RE.match(name):
                continue
            if name in first_index:
                self.bad(
                    f"function[{index}].name", name, f"must be unique; function[{first_index[name]}] already uses it"
                )
            else:
                first_index[name] = index
                if fn is not None:
                    result.append(fn)
        return tuple(result)

    def function(self, t: _Table, region: Optional[str], project_id: Optional[str]) -> Optional[FunctionConfig]:
        before = len(self.problems)
        name = t.string(
            "name",
            "must be letters, digits, - and _ (the local name used on the command line)",
            pattern=NAME_RE,
            required=True,
        )
        source = t.path("source", "an existing folder", kind="folder", required=True)
        package = t.string("package", "must be a package name: letters, digits, - and _", pattern=NAME_RE)
        urn = self.urn(t, region, project_id, package)
        code_type = t.choice("code_type", ("zip", "jar")) or "zip"
        artifact = t.path("artifact", "the path of the file to upload (such as target/app.jar)")
        if code_type == "jar" and "artifact" not in t.data:
            self.missing(t.prefix + "artifact", 'required when code_type = "jar": the jar file to upload')
        if code_type == "zip" and "artifact" in t.data:
            self.bad(
                t.prefix + "artifact",
                t.data["artifact"],
                'only allowed with code_type = "jar"; a zip function packages its source folder',
            )
        code_filename = t.string(
            "code_filename",
            'must be a file name such as "index.zip", without folders',
            pattern=re.compile(r"^[^/\\]+$"),
        )
        build = t.string("build", "must be a shell command (a non-empty string)")
        exclude = t.strings("exclude", "gitignore-style patterns")
        use_gitignore = t.boolean("use_gitignore")
        depends = t.strings("depend_version_list", "dependency version ids")
        kms_key_id = t.string("kms_key_id", "must be a KMS key id (a non-empty string)")
        invoke_event = t.path("invoke_event", "the path of a JSON event file")
        build_timeout_s = t.seconds("build_timeout_s", MAX_BUILD_TIMEOUT_S)
        dependencies = self.dependencies(t, code_type, source)
        if len(self.problems) > before or name is None or source is None or urn is None:
            return None
        return FunctionConfig(
            name=name,
            source=source,
            urn=urn,
            package=urn.split(":")[5],
            code_type=code_type,
            code_filename=code_filename or (artifact.name if artifact else "index.zip"),
            artifact=artifact,
            build=build,
            exclude=exclude or (),
            use_gitignore=use_gitignore,
            depend_version_list=depends,
            kms_key_id=kms_key_id,
            invoke_event=invoke_event,
            build_timeout_s=DEFAULT_BUILD_TIMEOUT_S if build_timeout_s is None else build_timeout_s,
            dependencies=dependencies,
        )

    def dependencies(self, t: _Table, code_type: str, source: Optional[Path]) -> DependencySetting:
        """``dependencies``: "off" (default), "auto", or a non-empty array of gitignore-style patterns."""
        key = t.prefix + "dependencies"
        if "dependencies" not in t.data:
            return DEPENDENCIES_OFF
        value = t.data["dependencies"]
        allowed = (
            'must be "off", "auto", or an array of gitignore-style patterns relative to source '
            '(such as ["node_modules/", "vendor/"])'
        )
        if isinstance(value, str):
            if value not in (DEPENDENCIES_OFF, DEPENDENCIES_AUTO):
                self.bad(key, value, allowed)
                return DEPENDENCIES_OFF
            setting: DependencySetting = value
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            bad = [(pattern, why) for pattern in value if (why := _pattern_problem(pattern, source, self.folder))]
            for pattern, why in bad:
                self.bad(key, value, f"pattern {_show(pattern)} {why}")
            if bad:
                return DEPENDENCIES_OFF
            setting = tuple(value)
        elif value == []:
            self.bad(
                key,
                value,
                'an empty array names no files: list patterns such as ["node_modules/"], or write "auto", '
                'or "off" to package everything together',
            )
            return DEPENDENCIES_OFF
        else:
            self.bad(key, value, allowed)
            return DEPENDENCIES_OFF
        if setting != DEPENDENCIES_OFF and code_type != "zip":
            self.bad(key, value, 'only allowed with code_type = "zip": a jar function uploads its artifact as it is')
            return DEPENDENCIES_OFF
        return setting

    def urn(self, t: _Table, region: Optional[str], project_id: Optional[str], package: Optional[str]) -> Optional[str]:
        """The function's URN, ending in ``:latest``: the given one checked, or the default built."""
        key = t.prefix + "urn"
        if "urn" not in t.data:
            name = t.data.get("name")
            if region is None and not self.region_given:
                self.missing(key, "required when region is not set (the default URN needs a region)")
            if region is None or project_id is None or not isinstance(name, str) or not NAME_RE.match(name):
                return None
            return default_urn(region, project_id, package or "default", name)
        allowed = "must be a function URN urn:fss:<region>:<project_id>:function:<package>:<name>[:latest]"
        value = t.string("urn", allowed)
        if value is None:
            return None
        parts = value.split(":")
        if not (
            _URN_CHARS_RE.match(value)
            and len(parts) in (7, 8)
            and parts[:2] == ["urn", "fss"]
            and parts[4] == "function"
            and REGION_RE.match(parts[2])
            and PROJECT_ID_RE.match(parts[3])
            and NAME_RE.match(parts[5])
            and NAME_RE.match(parts[6])
        ):
            self.bad(key, value, allowed)
            return None
        if len(parts) == 8 and parts[7] != "latest":
            what = "an alias" if parts[7].startswith("!") else "a published version"
            self.bad(
                key,
                value,
                f"names {what}; only the latest version can be updated: end the URN with "
                ":latest or leave the version out",
            )
            return None
        expected = (
            ("region", region, parts[2]),
            ("project_id", project_id, parts[3]),
            (t.prefix + "package", package, parts[5]),
        )
        mismatches = [(what, mine) for what, mine, theirs in expected if mine is not None and mine != theirs]
        for what, mine in mismatches:
            self.bad(key, value, f'must match {what} = "{mine}"')
        return None if mismatches else ":".join([*parts[:7], "latest"])


class _Table:
    """One TOML table being checked: typed getters that record a problem and return None on a bad value."""

    def __init__(self, checker: _Checker, data: dict[str, Any], prefix: str, allowed: Sequence[str]) -> None:
        self.checker, self.data, self.prefix = checker, data, prefix
        for key in data:
            if key not in allowed:
                self._unknown(key, allowed)

    def _unknown(self, key: str, allowed: Sequence[str]) -> None:
        full = self.prefix + key
        if key.lower() in _SECRET_KEYS:
            # The value is never echoed: it is probably a secret.
            hint = "credentials never go in fgsync.toml; use `fgsync login` or the FGSYNC_TOKEN variable"
        else:
            import difflib

            close = difflib.get_close_matches(key, allowed, 1)
            hint = f'did you mean "{close[0]}"?' if close else "allowed keys: " + ", ".join(allowed)
        self.checker.problems.append((full, f"{self.checker.shown}: {full}: unknown key; {hint}"))

    def string(
        self, key: str, allowed: str, *, pattern: Optional[re.Pattern[str]] = None, required: bool = False
    ) -> Optional[str]:
        """A non-empty string (matching pattern), or None when absent or bad."""
        if key not in self.data:
            if required:
                self.checker.missing(self.prefix + key, allowed)
            return None
        value = self.data[key]
        if not isinstance(value, str) or not value.strip() or (pattern and not pattern.match(value)):
            self.checker.bad(self.prefix + key, value, allowed)
            return None
        return value

    def choice(self, key: str, choices: Sequence[str]) -> Optional[str]:
        allowed = "must be " + " or ".join(f'"{c}"' for c in choices)
        value = self.string(key, allowed)
        if value is not None and value not in choices:
            self.checker.bad(self.prefix + key, value, allowed)
            return None
        return value

    def boolean(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            self.checker.bad(self.prefix + key, value, "must be true or false (a TOML boolean, no quotes)")
            return False
        return value

    def integer(self, key: str, allowed: str) -> Optional[int]:
        value = self.data.get(key)
        # bool is an int subclass in Python, but `true` is not a number of milliseconds.
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            self.checker.bad(self.prefix + key, value, allowed)
            return None
        return value

    def seconds(self, key: str, maximum: float) -> Optional[float]:
        """A duration in seconds: an integer or float, > 0 and <= maximum; None when absent or bad."""
        value = self.data.get(key)
        if value is None:
            return None
        # bool is an int subclass; nan fails every comparison and inf fails the maximum.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= maximum:
            self.checker.bad(self.prefix + key, value, f"must be a number of seconds, > 0 and at most {maximum:g}")
            return None
        return float(value)

    def strings(self, key: str, what: str) -> Optional[tuple[str, ...]]:
        value = self.data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            self.checker.bad(self.prefix + key, value, f"must be an array of non-empty strings ({what})")
            return None
        return None if value is None else tuple(value)

    def table(self, key: str) -> dict[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.checker.bad(key, value, f"must be a table: write [{key}] on its own line, then its keys")
            return {}
        return value

    def url(self, key: str) -> Optional[str]:
        allowed = 'must be an http:// or https:// URL such as "https://functiongraph.cn-north-4.myhuaweicloud.com"'
        value = self.string(key, allowed)
        if value is not None and not re.match(r"^https?://[^/\s?#@]+(/[^\s?#]*)?$", value, re.IGNORECASE):
            self.checker.bad(self.prefix + key, value, allowed)
            return None
        if value is not None and value.lower().startswith("http://") and not _is_loopback_url(value):
            # Tokens, passwords and code would cross the network in clear text.
            self.checker.bad(
                self.prefix + key,
                value,
                "must be https://; plain http:// is only for a local emulator on 127.0.0.1, ::1 or localhost",
            )
            return None
        return None if value is None else value.rstrip("/")

    def path(self, key: str, what: str, *, kind: Optional[str] = None, required: bool = False) -> Optional[Path]:
        """A path relative to the config's folder; kind "file" or "folder" means it must exist as one."""
        allowed = f"must be {what}, relative to the folder of {CONFIG_FILENAME}"
        value = self.string(key, allowed, required=required)
        if value is None:
            return None
        resolved = Path(os.path.abspath(self.checker.folder / Path(value).expanduser()))
        ok = {"file": resolved.is_file, "folder": resolved.is_dir}.get(kind or "", lambda: True)()
        if not ok:
            state = f"is not a {kind}" if resolved.exists() else "does not exist"
            self.checker.bad(self.prefix + key, value, f"{allowed}; {resolved} {state}")
        return resolved


def _pattern_problem(pattern: str, source: Optional[Path], folder: Path) -> Optional[str]:
    """What is wrong with one ``dependencies`` pattern, or None when it is usable.

    A leading ``/`` anchors a pattern at ``source`` (as in .gitignore), so only what is clearly a path of this
    machine counts as absolute: a drive or UNC path, ``~``, or the absolute path of the source or of the
    config's folder. ``.`` and ``..`` never match anything in gitignore syntax: a pattern holding one is a
    mistake, not a rule.
    """
    if not pattern.strip():
        return 'is blank: give a path pattern such as "node_modules/"'
    if pattern.startswith("#"):
        return "is a comment in gitignore syntax and matches nothing (write \\# for a name starting with #)"
    body = pattern[1:] if pattern.startswith("!") else pattern
    absolute = re.match(r"^([A-Za-z]:[\\/]|\\\\|~)", body) is not None or any(
        body == root or body.startswith(root.rstrip("/") + "/")
        for root in {Path(p).as_posix() for p in (source, folder) if p is not None}
    )
    if absolute:
        return (
            "is an absolute path: patterns are relative to the function's source folder "
            '(such as "node_modules/"; a leading / anchors a pattern there, as in .gitignore)'
        )
    parts = body.strip("/").split("/")
    if ".." in parts:
        return "leaves the source folder (..): patterns can only name files inside source"
    if "." in parts:
        return f'has a "." folder, which never matches in gitignore syntax: write {_show(_without_dots(pattern))}'
    from pathspec import GitIgnoreSpec

    try:
        GitIgnoreSpec.from_lines([pattern])
    except ValueError as exc:
        return f"is not a valid gitignore-style pattern ({exc})"
    return None


def _without_dots(pattern: str) -> str:
    negated = pattern.startswith("!")
    body = pattern[1:] if negated else pattern
    anchored = body.startswith("/") or body.startswith("./")
    kept = "/".join(part for part in body.split("/") if part not in (".", ""))
    trailing = "/" if body.endswith("/") and kept else ""
    return ("!" if negated else "") + ("/" if anchored else "") + kept + trailing


def _looks_like_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
